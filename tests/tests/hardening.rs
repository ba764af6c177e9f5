//! Availability under attack (issue 13): a hostile process on loopback tries
//! to take a worker out of service; an honest requester beside it is served
//! all the same. Each attack is bounded in count and time.
//!
//! Timing: the node's handshake timeout is set to 10 s here, so without the
//! mitigation an honest requester would wait 10 s or fail; the assertions
//! allow a few seconds on a loaded machine (the point is "served at all,
//! promptly", not a latency figure; BENCHMARKS.md has those).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use p2pa_node::core::{Stats, TaskOutcome, TaskRequest};
use p2pa_node::io::{NodeHandle, NodeOptions};
use p2pa_node::protocol::*;
use p2pa_tests::unique_port;

/// Generous: a refused or locked-out requester would take 10 s or fail.
const PROMPT: Duration = Duration::from_secs(4);

fn key(n: u64) -> Keypair {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&n.to_le_bytes());
    s[8] = 0x13;
    Keypair::from_seed(s)
}

fn worker_opts(port: u16) -> NodeOptions {
    let mut o = p2pa_tests::loopback_options(port);
    o.multicast = None;
    o.core.handshake_timeout = Duration::from_secs(10);
    o
}

fn stats(h: &NodeHandle) -> Stats {
    async_io::block_on(h.stats()).unwrap()
}

/// Options of an in-process requester (runs nothing) that dials `target` only.
fn requester_opts(target: SocketAddr) -> NodeOptions {
    let mut o = p2pa_tests::loopback_options(unique_port());
    o.multicast = None;
    o.core.kinds = KindSet::default();
    o.core.workers = 0;
    o.core.bootstrap = vec![target];
    o
}

/// A fresh requester (key `n`, as the CLI makes a new one) that dials
/// `target`, runs one task of `kind` and stops; returns whether it got a
/// session and the task's outcome.
fn submit_once(
    target: SocketAddr,
    n: u64,
    kind: TaskKind,
    input: &[u8],
    timeout: Duration,
) -> (bool, TaskOutcome) {
    let (h, mut node) = NodeHandle::start_local(key(n), requester_opts(target)).unwrap();
    node.block_on(async {
        let up = h
            .wait_for_peers(Some(kind), 1, Duration::from_secs(15))
            .await;
        let req = TaskRequest {
            kind,
            input: input.to_vec().into(),
            model: None,
            timeout,
            peer: None,
            needs: 0,
        };
        let o = h.submit(req).await.unwrap();
        h.shutdown().await;
        (!up.is_empty(), o)
    })
}

/// An honest echo task through a fresh requester; returns how long it took.
fn honest_task(target: SocketAddr, n: u64, text: &str) -> Duration {
    let t = Instant::now();
    let (connected, out) = submit_once(
        target,
        n,
        TaskKind::Echo,
        text.as_bytes(),
        Duration::from_secs(15),
    );
    assert!(connected, "the honest requester never got a session");
    assert_eq!(out.status, TaskStatus::Completed, "{out:?}");
    assert_eq!(out.output, text.as_bytes());
    t.elapsed()
}

/// A TCP connection from `from` to `to` that never says anything.
fn silent(from: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    s.connect(&to.into()).ok()?;
    let s: TcpStream = s.into();
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// Keeps `n` silent connections open from `from`, reopening those the node
/// drops, for `for_how_long`.
fn hold_silent(from: Ipv4Addr, to: SocketAddr, n: usize, for_how_long: Duration) {
    let end = Instant::now() + for_how_long;
    let mut held: Vec<TcpStream> = (0..n).filter_map(|_| silent(from, to)).collect();
    while Instant::now() < end {
        held.retain(|s| {
            let mut b = [0u8; 1];
            !matches!(s.peek(&mut b), Ok(0)) // 0: closed by the node
        });
        while held.len() < n {
            match silent(from, to) {
                Some(s) => held.push(s),
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn silent_sockets_from_another_address_cannot_lock_honest_requesters_out() {
    let worker = NodeHandle::start(key(1), worker_opts(unique_port())).unwrap();
    let target = worker.local_addr();
    let attacker = std::thread::spawn(move || {
        hold_silent(
            Ipv4Addr::new(127, 0, 0, 2),
            target,
            64,
            Duration::from_secs(4),
        );
    });
    std::thread::sleep(Duration::from_millis(300)); // the attack is in place
    for i in 0..3 {
        let took = honest_task(target, 100 + i, "served during the attack");
        assert!(took < PROMPT, "honest task {i} took {took:?}");
    }
    let s = stats(&worker);
    assert!(s.handshakes_evicted >= 1, "{s:?}");
    attacker.join().unwrap();
    let took = honest_task(target, 200, "served after the attack");
    assert!(took < PROMPT, "after the attack: {took:?}");
    async_io::block_on(worker.shutdown());
}

#[test]
fn silent_sockets_from_the_same_address_are_evicted_by_newcomers() {
    let worker = NodeHandle::start(key(2), worker_opts(unique_port())).unwrap();
    let target = worker.local_addr();
    // 40 silent sockets from 127.0.0.1, opened once (the node's limit is 32
    // pending, 4 from one address): the honest handshake evicts the oldest.
    let held: Vec<TcpStream> = (0..40)
        .filter_map(|_| silent(Ipv4Addr::LOCALHOST, target))
        .collect();
    assert!(held.len() >= 32);
    let took = honest_task(target, 300, "a newcomer wins its slot");
    assert!(took < PROMPT, "took {took:?}");
    let s = stats(&worker);
    assert!(s.handshakes_evicted >= 36, "{s:?}");
    drop(held);
    async_io::block_on(worker.shutdown());
}

/// A worker that also listens to beacons on `port`.
fn beaconing_worker(n: u64, port: u16) -> NodeHandle {
    let mut o = p2pa_tests::loopback_options(port);
    o.core.handshake_timeout = Duration::from_secs(10);
    NodeHandle::start(key(n), o).unwrap()
}

#[test]
fn a_flood_of_fresh_keys_cannot_fill_the_peer_table() {
    let port = unique_port();
    let worker = beaconing_worker(3, port);
    let target = worker.local_addr();
    let (udp, group) = p2pa_tests::raw::beacon_sender(port);
    // 600 beacons, each from a fresh key (twice the default table of 256).
    for i in 0..600u64 {
        let b = p2pa_tests::raw::beacon(&key(10_000 + i), 1, 9, false);
        udp.send_to(&b, group).unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // 300 handshakes with fresh keys, each hung up at once.
    for i in 0..300u64 {
        let mut s = TcpStream::connect(target).unwrap();
        let mut reader = p2pa_tiny::FrameReader::<4096>::new();
        let mut tx = [0u8; 4096];
        let intro = Intro::default();
        let k = key(20_000 + i);
        let _ = p2pa_tiny::initiate(
            &mut s,
            &mut reader,
            &Identity::new(k.clone()),
            [7; 32],
            None,
            &intro,
            &mut tx,
        );
    }
    let s = stats(&worker);
    assert!(s.peers_evicted > 0, "{s:?}");
    let table = async_io::block_on(worker.peers()).unwrap().len();
    assert!(table <= 256, "the table stays within its limit: {table}");
    let took = honest_task(target, 400, "a newcomer still gets a session");
    assert!(took < PROMPT, "took {took:?}");
    async_io::block_on(worker.shutdown());
}

#[test]
fn in_allowlist_mode_beacons_of_other_keys_are_not_stored() {
    let port = unique_port();
    let mut o = p2pa_tests::loopback_options(port);
    o.core.trust = p2pa_node::core::Trust::Allowlist(vec![key(501).node_id()]);
    let worker = NodeHandle::start(key(5), o).unwrap();
    let (udp, group) = p2pa_tests::raw::beacon_sender(port);
    for i in 0..50u64 {
        let b = p2pa_tests::raw::beacon(&key(30_000 + i), 1, 9, true);
        udp.send_to(&b, group).unwrap();
    }
    let end = Instant::now() + Duration::from_secs(5);
    while stats(&worker).beacons_untrusted < 50 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(stats(&worker).beacons_untrusted, 50);
    let peers = async_io::block_on(worker.peers()).unwrap();
    assert!(peers.is_empty(), "nothing stored: {peers:?}");
    async_io::block_on(worker.shutdown());
}

#[test]
fn beacons_naming_a_third_address_cannot_make_the_node_dial_it_at_will() {
    let port = unique_port();
    let worker = beaconing_worker(6, port);
    // The "victim": a listener that counts the connections it gets.
    let victim = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let victim_port = victim.local_addr().unwrap().port();
    victim.set_nonblocking(true).unwrap();
    let (udp, group) = p2pa_tests::raw::beacon_sender(port);
    let start = Instant::now();
    let mut dials = 0;
    let mut i = 0u64;
    // Two seconds of query beacons from fresh keys, each naming the victim.
    while start.elapsed() < Duration::from_secs(2) {
        let b = p2pa_tests::raw::beacon(&key(40_000 + i), 1, victim_port, true);
        udp.send_to(&b, group).unwrap();
        i += 1;
        while let Ok((s, _)) = victim.accept() {
            dials += 1;
            drop(s);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(200));
    while let Ok((s, _)) = victim.accept() {
        dials += 1;
        drop(s);
    }
    assert!(i > 300, "the flood was sent ({i} beacons)");
    // A burst of 8, then one a second (bench: without the budget, one per beacon).
    assert!(
        dials <= 12,
        "{dials} connections to the third address from {i} beacons"
    );
    async_io::block_on(worker.shutdown());
}

/// A requester on its own thread that keeps `n` sleep tasks of `ms` each
/// offered to `target` (more than the worker's queue takes) for a while.
fn hog(target: SocketAddr, n: usize, ms: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let o = requester_opts(target);
        let (h, mut node) = NodeHandle::start_local(key(700), o).unwrap();
        node.block_on(async {
            h.wait_for_peers(Some(TaskKind::Sleep), 1, Duration::from_secs(10))
                .await;
            let sleep = |_| TaskRequest {
                kind: TaskKind::Sleep,
                input: ms.to_string().into_bytes().into(),
                model: None,
                timeout: Duration::from_secs(8),
                peer: None,
                needs: 0,
            };
            let _ = h.submit_windowed((0..n).map(sleep), n, |_| {}).await;
            h.shutdown().await;
        });
    })
}

/// A requester (key `n`) on its own thread that sends `count` echo tasks
/// of `bytes` each to `target`, all in flight at once.
fn big_inputs(
    target: SocketAddr,
    n: u64,
    count: usize,
    bytes: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (h, mut node) = NodeHandle::start_local(key(n), requester_opts(target)).unwrap();
        node.block_on(async {
            h.wait_for_peers(Some(TaskKind::Echo), 1, Duration::from_secs(10))
                .await;
            let echo = |i: usize| TaskRequest {
                kind: TaskKind::Echo,
                input: (vec![(i % 251) as u8; bytes]).into(),
                model: None,
                timeout: Duration::from_secs(20),
                peer: None,
                needs: 0,
            };
            let _ = h.submit_windowed((0..count).map(echo), count, |_| {}).await;
            h.shutdown().await;
        });
    })
}

#[test]
fn a_requester_that_fills_the_queue_cannot_starve_the_others() {
    let mut o = worker_opts(unique_port());
    o.core.workers = 1;
    let worker = NodeHandle::start(key(7), o).unwrap();
    let target = worker.local_addr();
    let attack = hog(target, 30, 1500);
    std::thread::sleep(Duration::from_millis(500)); // the queue is the hog's
                                                    // Echo runs inline: it never waits behind slot jobs.
    let took = honest_task(target, 800, "not starved");
    assert!(took < PROMPT, "echo took {took:?}");
    // A slot task starts right after the hog's current ones, not after its
    // whole queue (13 × 1.5 s).
    let t = Instant::now();
    let (_, out) = submit_once(target, 801, TaskKind::Sleep, b"10", Duration::from_secs(30));
    assert_eq!(out.status, TaskStatus::Completed, "{out:?}");
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "slot task took {:?}",
        t.elapsed()
    );
    async_io::block_on(worker.shutdown());
    attack.join().unwrap();
}

#[test]
fn a_worker_refuses_deadlines_beyond_its_limit() {
    let mut o = worker_opts(unique_port());
    o.core.max_task_deadline = Duration::from_secs(5);
    let worker = NodeHandle::start(key(9), o).unwrap();
    let target = worker.local_addr();
    let (_, out) = submit_once(target, 901, TaskKind::Echo, b"x", Duration::from_secs(8));
    // Refused while the offer asked more than 5 s; taken once the time left
    // (what each new offer asks) fell under the limit.
    assert_eq!(out.status, TaskStatus::Completed, "{out:?}");
    assert!(out.attempts > 1, "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(2900), "{out:?}");
    async_io::block_on(worker.shutdown());
}

/// A session from `from` with a fresh key (a requester: it runs nothing),
/// kept open; `None` if the node said goodbye at once.
fn requester_session(from: Ipv4Addr, to: SocketAddr, n: u64) -> Option<TcpStream> {
    session_as(from, to, n, KindSet::default(), Duration::from_millis(100))
}

/// A session from `from` with a fresh key that claims to run `kinds` (a
/// worker, unless empty), kept open; `None` if the node said goodbye within
/// `wait` (zero: not waited for).
fn session_as(
    from: Ipv4Addr,
    to: SocketAddr,
    n: u64,
    kinds: KindSet,
    wait: Duration,
) -> Option<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    s.connect(&to.into()).ok()?;
    let mut s: TcpStream = s.into();
    let mut reader = p2pa_tiny::FrameReader::<4096>::new();
    let mut tx = [0u8; 4096];
    let k = key(n);
    let intro = Intro {
        listen_port: 0,
        caps: Capabilities {
            kinds,
            free_slots: 1,
            models: Default::default(),
            run_us: Default::default(),
        },
    };
    let (mut session, _) = p2pa_tiny::initiate(
        &mut s,
        &mut reader,
        &Identity::new(k.clone()),
        [9; 32],
        None,
        &intro,
        &mut tx,
    )
    .ok()?;
    // A refusal follows the handshake at once.
    if wait.is_zero() {
        return Some(s);
    }
    s.set_read_timeout(Some(wait)).ok()?;
    if let Ok(frame) = reader.next(&mut s) {
        if let Ok(Message::Goodbye(_)) = session.read(frame) {
            return None;
        }
    }
    Some(s)
}

/// Whether the node still holds the session on `s` (reads what it sent;
/// end of stream: it closed it).
fn alive(s: &mut TcpStream) -> bool {
    use std::io::Read;
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    true
}

#[test]
fn sessions_are_budgeted_per_address_and_requesters_apart_from_workers() {
    let worker = NodeHandle::start(key(11), worker_opts(unique_port())).unwrap();
    let target = worker.local_addr();
    let settle = || std::thread::sleep(Duration::from_millis(300));
    // Alive or not is judged after each round (the refusals and evictions
    // have arrived by then), quickly: these sessions answer no pings.
    let requester_session =
        |from, to, n| session_as(from, to, n, KindSet::default(), Duration::ZERO);
    // 20 sessions from one address: each newcomer past 16 takes an idle
    // one's place, so 16 stay.
    let mut one_ip: Vec<TcpStream> = (0..20)
        .filter_map(|i| requester_session(Ipv4Addr::new(127, 0, 0, 2), target, 50_000 + i))
        .collect();
    settle();
    one_ip.retain_mut(alive);
    assert_eq!(one_ip.len(), 16, "max_sessions_per_ip");
    // 64 requester sessions in all, from 5 addresses.
    let mut many = Vec::new();
    for ip in 3..=7u8 {
        for i in 0..16u64 {
            let n = 51_000 + u64::from(ip) * 100 + i;
            if let Some(s) = requester_session(Ipv4Addr::new(127, 0, 0, ip), target, n) {
                many.push(s);
            }
        }
    }
    settle();
    one_ip.retain_mut(alive);
    many.retain_mut(alive);
    assert_eq!(one_ip.len() + many.len(), 64, "max_requester_sessions");
    // The most crowded address gave up its sessions first.
    assert!(
        one_ip.len() < 16,
        "{} left from the first address",
        one_ip.len()
    );
    // A worker peer still gets a session (its own budget), and serves.
    let mut o = p2pa_tests::loopback_options(unique_port());
    o.multicast = None;
    o.core.bootstrap = vec![target];
    let (h, mut node) = NodeHandle::start_local(key(12), o).unwrap();
    let up = node.block_on(h.wait_for_peers(None, 1, Duration::from_secs(5)));
    assert_eq!(up.len(), 1, "a worker peer connects beside 64 requesters");
    node.block_on(h.shutdown());
    drop((one_ip, many));
    async_io::block_on(worker.shutdown());
}

/// A blocking TCP connection from `from` to `to`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    s.connect(&to.into()).ok()?;
    Some(s.into())
}

/// What the worker with `data_dir` still holds, as `p2pa status` says:
/// (sessions, tasks running, tasks queued); waits up to `within` for all
/// three to reach 0.
fn held_after(data_dir: &std::path::Path, within: Duration) -> (u64, u64, u64) {
    let end = Instant::now() + within;
    loop {
        let dir = data_dir.to_str().unwrap();
        let out = p2pa_tests::p2pa(
            &["--data-dir", dir, "status", "--json"],
            Duration::from_secs(10),
        );
        let v: serde_json::Value =
            serde_json::from_str(p2pa_tests::stdout(&out).trim()).unwrap_or_default();
        let n = |x: &serde_json::Value| x.as_u64().unwrap_or(u64::MAX);
        let held = (
            n(&v["peers"]["connected"]),
            n(&v["work"]["running"]),
            n(&v["work"]["queued"]),
        );
        if held == (0, 0, 0) || Instant::now() >= end {
            return held;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Resident memory of process `pid`, in KiB (0 if unreadable).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One round of every attack above against `w` (and the beacon group on
/// `port`), each bounded in count and time: silent sockets, a flood of
/// fresh-key beacons and handshakes, requester sessions held open, a queue
/// hog. The attacker is another host (127.0.0.2 – 4), as on a LAN; the hog
/// is a requester on the honest nodes' address.
fn attack_round(w: SocketAddr, port: u16, round: u64) {
    hold_silent(Ipv4Addr::new(127, 0, 0, 2), w, 40, Duration::from_secs(4));
    let (udp, group) = p2pa_tests::raw::beacon_sender_from(Ipv4Addr::new(127, 0, 0, 2), port);
    let base = 1_000_000 + round * 10_000;
    for i in 0..600u64 {
        let b = p2pa_tests::raw::beacon(&key(base + i), 1, 9, i % 2 == 0);
        let _ = udp.send_to(&b, group);
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for i in 0..200u64 {
        let Some(mut s) = connect_from(Ipv4Addr::new(127, 0, 0, 4), w) else {
            continue;
        };
        let mut reader = p2pa_tiny::FrameReader::<4096>::new();
        let mut tx = [0u8; 4096];
        let k = key(base + 1_000 + i);
        let intro = Intro::default();
        let _ = p2pa_tiny::initiate(
            &mut s,
            &mut reader,
            &Identity::new(k.clone()),
            [7; 32],
            None,
            &intro,
            &mut tx,
        );
    }
    let held: Vec<TcpStream> = (0..24)
        .filter_map(|i| requester_session(Ipv4Addr::new(127, 0, 0, 3), w, base + 2_000 + i))
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    drop(held);
    let _ = hog(w, 40, 2_000).join();
    // Issue 28's classes: held sessions, timed-out sleeps, lying lengths,
    // dribbled inputs, hoarded outputs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let four = Duration::from_secs(4);
    let _ = hold_sessions(stop.clone(), base + 3_000, w, 20, 16, 8, 400, four).join();
    let _ = timed_out_sleeps(w, 4, 6, Duration::from_millis(200)).join();
    let _ = lying_lengths(Ipv4Addr::new(127, 0, 0, 2), w, 4, base + 4_000);
    let _ = dribble_inputs(w, 2, 2, 32 << 20, base + 5_000, 6).join();
    let _ = hoard_outputs(w, 4, 2, 10 << 20, base + 6_000, 10, stop).join();
}

/// Resident memory of a worker process while an attack runs beside honest
/// requesters, per attack class: its peak must stay under this bound (a
/// debug build at rest holds about 21 MiB; every table, queue and buffer an
/// attacker can fill is bounded by count or bytes, see docs/threat-model.md).
const CLASS_RSS_BOUND_KIB: u64 = 48 * 1024;
/// The bound while requesters send large inputs: the idle bound, plus what
/// the worker's budgets allow to be held (twice `--input-buffer-mb 8`, for
/// requesters holding no input may pass it; twice `--output-buffer-mb 4`;
/// and the input and output of each of the 3 jobs running or prefetched,
/// 4 MiB each), plus 16 MiB of allocator slack.
const TENSOR_RSS_BOUND_KIB: u64 = (48 + 2 * 8 + 2 * 4 + 3 * 2 * 4 + 16) * 1024;

/// One attack class at a time against a `p2pa node` process, with a fresh
/// honest requester (a new key and session each, as the CLI does) running an
/// echo task every 200 ms beside it and once right after it: every honest
/// task completes, the worker's peak RSS stays under the bound, and the task
/// right after the attack is prompt. Prints a table (docs/threat-model.md has it).
#[test]
fn each_attack_class_leaves_the_worker_serving_with_bounded_memory() {
    use p2pa_tests::{scratch, NodeProc};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let port = unique_port();
    let data_dir = scratch("classes");
    let worker = NodeProc::start(
        port,
        &data_dir,
        &[
            "--workers",
            "2",
            "--input-buffer-mb",
            "8",
            "--output-buffer-mb",
            "4",
        ],
    );
    let pid = worker.child.id();
    let w: SocketAddr = worker.addr.parse().unwrap();
    let a2 = Ipv4Addr::new(127, 0, 0, 2);
    type Attack = Box<dyn Fn(SocketAddr, u16) + Send + Sync>;
    let classes: Vec<(&str, Attack)> = vec![
        (
            "handshake slots: 40 silent sockets, 3 s",
            Box::new(move |w, _| hold_silent(a2, w, 40, Duration::from_secs(3))),
        ),
        (
            "peer table: 1 500 fresh-key beacons",
            Box::new(move |_, port| {
                let (udp, group) = p2pa_tests::raw::beacon_sender_from(a2, port);
                for i in 0..1_500u64 {
                    let b = p2pa_tests::raw::beacon(&key(3_000_000 + i), 1, 9, i.is_multiple_of(3));
                    let _ = udp.send_to(&b, group);
                    if i % 50 == 49 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }),
        ),
        (
            "peer table: 300 fresh-key handshakes hung up",
            Box::new(|w, _| {
                for i in 0..300u64 {
                    let Some(mut s) = connect_from(Ipv4Addr::new(127, 0, 0, 4), w) else {
                        continue;
                    };
                    let mut reader = p2pa_tiny::FrameReader::<4096>::new();
                    let mut tx = [0u8; 4096];
                    let k = key(3_100_000 + i);
                    let intro = Intro::default();
                    let _ = p2pa_tiny::initiate(
                        &mut s,
                        &mut reader,
                        &Identity::new(k.clone()),
                        [7; 32],
                        None,
                        &intro,
                        &mut tx,
                    );
                }
            }),
        ),
        (
            "sessions: 40 requester sessions held 3 s",
            Box::new(|w, _| {
                let held: Vec<TcpStream> = (0..40)
                    .filter_map(|i| {
                        requester_session(Ipv4Addr::new(127, 0, 0, 3), w, 3_200_000 + i)
                    })
                    .collect();
                std::thread::sleep(Duration::from_secs(3));
                drop(held);
            }),
        ),
        (
            "worker queue: 30 sleeps of 500 ms from one requester",
            Box::new(|w, _| {
                let _ = hog(w, 30, 500).join();
            }),
        ),
        (
            "sessions: fresh keys from 20 addresses hold every session (400 keys, 4 s)",
            Box::new(|w, _| {
                let stop = Arc::new(AtomicBool::new(false));
                let four = Duration::from_secs(4);
                let _ = hold_sessions(stop, 3_400_000, w, 20, 16, 8, 400, four).join();
            }),
        ),
        (
            "deadlines: 8 rounds of six 20 s sleeps with 200 ms deadlines",
            Box::new(|w, _| {
                let _ = timed_out_sleeps(w, 8, 6, Duration::from_millis(200)).join();
            }),
        ),
        (
            "lengths: 8 inputs declared as 1 byte, answered with chunks of 64 MiB",
            Box::new(move |w, _| {
                let _ = lying_lengths(a2, w, 8, 3_500_000);
            }),
        ),
        (
            "transfers: 2 inputs of 32 MiB fed a byte every 0.8 s (8 s)",
            Box::new(|w, _| {
                let _ = dribble_inputs(w, 2, 2, 32 << 20, 3_600_000, 9).join();
            }),
        ),
        (
            "transfers: 2 outputs of 10 MiB asked a byte every 0.4 s (8 s of asking)",
            Box::new(|w, _| {
                let stop = Arc::new(AtomicBool::new(false));
                let _ = hoard_outputs(w, 4, 2, 10 << 20, 3_700_000, 20, stop).join();
            }),
        ),
        (
            "task tensors: 8 requesters, 6 echo inputs of 4 MiB each (input buffer 8 MiB, output buffer 4 MiB)",
            Box::new(|w, _| {
                let big: Vec<_> = (0..8u64)
                    .map(|r| big_inputs(w, 3_300_000 + r, 6, 4 << 20))
                    .collect();
                for b in big {
                    let _ = b.join();
                }
            }),
        ),
    ];
    let mut n = 5_000u64;
    let mut rows = Vec::new();
    for (name, attack) in classes {
        let bound = if name.starts_with("task tensors") || name.starts_with("transfers") {
            TENSOR_RSS_BOUND_KIB
        } else {
            CLASS_RSS_BOUND_KIB
        };
        let before = rss_kib(pid);
        let done = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(before));
        let sampler = {
            let (done, peak) = (done.clone(), peak.clone());
            std::thread::spawn(move || {
                for _ in 0..600 {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let attacker = {
            let done = done.clone();
            std::thread::spawn(move || {
                attack(w, port);
                done.store(true, Ordering::Relaxed);
            })
        };
        let mut during = Vec::new();
        for _ in 0..100 {
            if done.load(Ordering::Relaxed) {
                break;
            }
            n += 1;
            during.push(honest_task(w, n, "served during the attack"));
            std::thread::sleep(Duration::from_millis(200));
        }
        attacker.join().unwrap();
        n += 1;
        let after = honest_task(w, n, "served right after the attack");
        // Nothing stays held: within 10 s no session is left and no task
        // runs or waits (held sessions closed, sleeps stopped, fetches given up).
        let left = held_after(&data_dir, Duration::from_secs(10));
        assert_eq!(
            left,
            (0, 0, 0),
            "{name}: (sessions, running, queued) left after it"
        );
        sampler.join().unwrap();
        let peak = peak.load(Ordering::Relaxed);
        let worst = during.iter().max().copied().unwrap_or_default();
        rows.push(format!(
            "| {name} | {} | {worst:.0?} | {after:.0?} | {before} | {peak} | {bound} |",
            during.len()
        ));
        assert!(
            !during.is_empty(),
            "{name}: no honest task ran during the attack"
        );
        assert!(
            peak <= bound,
            "{name}: worker RSS {peak} KiB over {bound} KiB"
        );
        assert!(after < PROMPT, "{name}: the task after took {after:?}");
    }
    println!("| attack class | honest tasks during | slowest during | task right after | RSS before (KiB) | peak RSS (KiB) | bound (KiB) |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    drop(worker);
}

/// The soak of issue 13: three worker processes, a hostile thread cycling
/// through every attack against the first, and honest batches of 1 000
/// tasks over all three, for `P2PA_SOAK_SECS` (600). Every batch must
/// complete whole, and no worker's memory may grow after the first minutes.
#[test]
#[ignore = "a 10-minute soak; run by bench/soak.sh"]
fn soak_honest_batches_complete_and_memory_stays_flat_under_attack() {
    use p2pa_tests::{batch_local, jsonl, scratch, NodeProc};
    let secs: u64 = std::env::var("P2PA_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let port = unique_port();
    let workers: Vec<NodeProc> = (0..3)
        .map(|i| NodeProc::start(port, &scratch(&format!("soak-w{i}")), &[]))
        .collect();
    let pids: Vec<u32> = workers.iter().map(|w| w.child.id()).collect();
    let w0: SocketAddr = workers[0].addr.parse().unwrap();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let attacker = std::thread::spawn(move || {
        let mut round = 0u64;
        while Instant::now() < end {
            attack_round(w0, port, round);
            round += 1;
        }
        round
    });
    let sampler = std::thread::spawn(move || {
        let mut samples: Vec<(u64, Vec<u64>)> = Vec::new();
        while Instant::now() < end {
            let t = start.elapsed().as_secs();
            samples.push((t, pids.iter().map(|p| rss_kib(*p)).collect()));
            std::thread::sleep(Duration::from_secs(1));
        }
        samples
    });
    let dir = scratch("soak");
    let inputs = dir.join("in.jsonl");
    let lines: String = (0..1000).map(|i| format!("\"task {i}\"\n")).collect();
    std::fs::write(&inputs, lines).unwrap();
    let mut batches = 0;
    while Instant::now() + Duration::from_secs(30) < end {
        let out = dir.join(format!("out-{batches}.jsonl"));
        let extra = ["--timeout", "20"];
        let run = batch_local(
            port,
            "echo",
            &inputs,
            &out,
            &extra,
            Duration::from_secs(300),
        );
        let results = jsonl(&std::fs::read_to_string(&out).unwrap_or_default());
        let done = results
            .iter()
            .filter(|r| r["status"] == "completed")
            .count();
        assert_eq!(done, 1000, "batch {batches}: {}", p2pa_tests::stderr(&run));
        let lines: std::collections::BTreeSet<u64> =
            results.iter().filter_map(|r| r["line"].as_u64()).collect();
        assert_eq!(
            (results.len(), lines.len()),
            (1000, 1000),
            "batch {batches}: each line once"
        );
        batches += 1;
    }
    let rounds = attacker.join().unwrap();
    let samples = sampler.join().unwrap();
    assert!(
        batches >= 1 && rounds >= 1,
        "{batches} batches, {rounds} attack rounds"
    );
    // Flat: the last third's peak within 25 % (+ 2 MiB) of the peak of the
    // second minute, when every cache and buffer has been through a round.
    let peak = |from: u64, to: u64, i: usize| {
        samples
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, r)| r[i])
            .max()
            .unwrap_or(0)
    };
    println!("| worker | RSS at 1 min (KiB) | peak 1-2 min | peak last third | peak overall |");
    println!("|---|---|---|---|---|");
    for i in 0..3 {
        let early = peak(60, 120, i).max(peak(0, 120, i));
        let late = peak(secs * 2 / 3, secs, i);
        let at1 = samples
            .iter()
            .find(|(t, _)| *t >= 60)
            .map_or(0, |(_, r)| r[i]);
        println!("| {i} | {at1} | {early} | {late} | {} |", peak(0, secs, i));
        assert!(
            late <= early + early / 4 + 2048,
            "worker {i} grew: {early} KiB early, {late} KiB late"
        );
        // Issue 28's target for a release build with default limits.
        assert!(
            peak(0, secs, i) <= 128 * 1024,
            "worker {i} peaked at {} KiB",
            peak(0, secs, i)
        );
    }
    println!("{batches} honest batches of 1 000 tasks, all complete; {rounds} attack rounds");
}

/// Fresh-key beacons sent from 127.0.0.1 for `for_how_long` (at most
/// 20 000), naming `tcp_port` or a closed port in turn, every `query_every`th
/// a query (none if 0); returns how many went out.
fn beacon_flood(port: u16, tcp_port: u16, for_how_long: Duration, query_every: u64) -> u64 {
    let (udp, group) = p2pa_tests::raw::beacon_sender(port);
    let end = Instant::now() + for_how_long;
    let mut i = 0u64;
    while Instant::now() < end && i < 20_000 {
        let named = if i.is_multiple_of(2) { tcp_port } else { 9 };
        let query = query_every > 0 && i.is_multiple_of(query_every);
        let b = p2pa_tests::raw::beacon(&key(60_000 + i), 1, named, query);
        let _ = udp.send_to(&b, group);
        i += 1;
        if i.is_multiple_of(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    i
}

/// The attacker shares the honest nodes' address (everything on 127.0.0.1;
/// on a LAN, a spoofed source): per-address shares cannot tell the fakes
/// apart, so a fresh requester that finds workers by multicast alone must
/// still find the honest one among them in its discovery window (the CLI's
/// 3 s). Two floods: one that never asks (the worker answers only the
/// requester's own start-up queries), one where every fourth beacon asks.
/// Before entries were ranked by how often their key was heard (the filter
/// of recent keys included) and refused dials waited for the budget's next
/// token together, most runs had a requester find nothing.
#[test]
fn a_fresh_key_flood_from_the_workers_own_address_does_not_hide_it() {
    let port = unique_port();
    let worker = beaconing_worker(11, port);
    let wport = worker.local_addr().port();
    let mut n = 0u64;
    for query_every in [0, 4] {
        let flood = std::thread::spawn(move || {
            beacon_flood(port, wport, Duration::from_secs(5), query_every)
        });
        std::thread::sleep(Duration::from_millis(1500)); // the tables are full of fakes
        for _ in 0..2 {
            n += 1;
            let t = Instant::now();
            let mut o = p2pa_tests::loopback_options(port);
            o.core.kinds = KindSet::default();
            o.core.workers = 0;
            let (h, mut node) = NodeHandle::start_local(key(1_100 + n), o).unwrap();
            let found = node.block_on(async {
                let up = h
                    .wait_for_peers(Some(TaskKind::Echo), 1, Duration::from_secs(3))
                    .await;
                h.shutdown().await;
                up
            });
            println!(
                "queries 1 in {query_every}: requester {n} found {} in {:?}",
                found.len(),
                t.elapsed()
            );
            assert!(
                found.iter().any(|p| p.id == key(11).node_id()),
                "requester {n} did not find the worker in 3 s: {found:?}"
            );
        }
        let sent = flood.join().unwrap();
        assert!(sent > 2_000, "the flood was sent ({sent} beacons)");
    }
    async_io::block_on(worker.shutdown());
}

/// A requester on its own thread that offers `rounds` rounds of `n` sleeps
/// of 20 s, each with a deadline of `deadline` (so each times out), to
/// `target`.
fn timed_out_sleeps(
    target: SocketAddr,
    rounds: usize,
    n: usize,
    deadline: Duration,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let (h, mut node) = NodeHandle::start_local(key(710), requester_opts(target)).unwrap();
        node.block_on(async {
            h.wait_for_peers(Some(TaskKind::Sleep), 1, Duration::from_secs(10))
                .await;
            let mut timed_out = 0;
            for _ in 0..rounds {
                let sleep = |_| TaskRequest {
                    kind: TaskKind::Sleep,
                    input: b"20000".to_vec().into(),
                    model: None,
                    timeout: deadline,
                    peer: None,
                    needs: 0,
                };
                let _ = h
                    .submit_windowed((0..n).map(sleep), n, |o| {
                        timed_out += usize::from(o.status == TaskStatus::Timeout);
                    })
                    .await;
            }
            h.shutdown().await;
            timed_out
        })
    })
}

/// Issue 28, case 3: a task past its deadline holds no slot. Six 20 s
/// sleeps with 200 ms deadlines, again and again, on a 2-slot worker: each
/// sleep ends at its deadline (and one that waited for a slot past it never
/// starts), so an honest slot task beside them is served promptly. Before,
/// the sleeps kept sleeping after their `Timeout`, and honest tasks failed
/// with "executor queue full" or waited 20 s.
#[test]
fn a_task_past_its_deadline_frees_its_slot_at_once() {
    let mut o = worker_opts(unique_port());
    o.core.workers = 2;
    let worker = NodeHandle::start(key(13), o).unwrap();
    let target = worker.local_addr();
    let attack = timed_out_sleeps(target, 8, 6, Duration::from_millis(200));
    std::thread::sleep(Duration::from_millis(700)); // the first rounds have timed out
    for n in 0..3u64 {
        let t = Instant::now();
        let (_, out) = submit_once(
            target,
            1300 + n,
            TaskKind::Sleep,
            b"5",
            Duration::from_secs(15),
        );
        assert_eq!(out.status, TaskStatus::Completed, "{out:?}");
        assert!(
            t.elapsed() < PROMPT,
            "honest sleep {n} took {:?}",
            t.elapsed()
        );
    }
    let timed_out = attack.join().unwrap();
    assert!(timed_out >= 6, "the attack's sleeps timed out: {timed_out}");
    // Nothing stays on the slots: a task right after is prompt too.
    let t = Instant::now();
    let (_, out) = submit_once(target, 1310, TaskKind::Sleep, b"5", Duration::from_secs(15));
    assert_eq!(out.status, TaskStatus::Completed, "{out:?}");
    assert!(t.elapsed() < PROMPT, "after the attack: {:?}", t.elapsed());
    async_io::block_on(worker.shutdown());
}

/// A hand-driven requester session from `from` with a fresh key `n`: it
/// sends what a test writes and reads what the node answers.
struct RawSession {
    s: TcpStream,
    reader: p2pa_tiny::FrameReader<4096>,
    session: p2pa_node::protocol::Session,
    key: Keypair,
    tx: Vec<u8>,
}

impl RawSession {
    fn open(from: Ipv4Addr, to: SocketAddr, n: u64) -> Self {
        let mut s = connect_from(from, to).expect("connect");
        let mut reader = p2pa_tiny::FrameReader::<4096>::new();
        let mut tx = vec![0u8; MAX_FRAME_LEN + 64];
        let key = key(n);
        let (session, _) = p2pa_tiny::initiate(
            &mut s,
            &mut reader,
            &Identity::new(key.clone()),
            [11; 32],
            None,
            &Intro::default(),
            &mut tx,
        )
        .expect("handshake");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self {
            s,
            reader,
            session,
            key,
            tx,
        }
    }

    fn send(&mut self, m: &Message<'_>) -> bool {
        use std::io::Write;
        let Ok(n) = self.session.write(&self.key, m, &mut self.tx) else {
            return false;
        };
        self.s.write_all(&self.tx[..n]).is_ok()
    }

    /// The next message's summary within `wait`: `Some(Err(()))` when the
    /// connection closed, `None` when nothing came.
    fn next(&mut self, wait: Duration) -> Option<Result<Received, ()>> {
        let end = Instant::now() + wait;
        while Instant::now() < end {
            match self.reader.next(&mut self.s) {
                Ok(frame) => {
                    let Ok(m) = self.session.read(frame) else {
                        return Some(Err(()));
                    };
                    return Some(Ok(match m {
                        Message::BlobRequest(r) => Received::BlobRequest(r.hash, r.offset),
                        Message::TaskResult(r) => match r.output {
                            TaskOutput::Blob { hash, .. } => Received::Output(r.status, hash),
                            TaskOutput::Inline(_) => Received::Result(r.status),
                        },
                        Message::Goodbye(g) => Received::Goodbye(g.reason),
                        other => Received::Other(other.kind()),
                    }));
                }
                Err(p2pa_tiny::LinkError::Link(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(Err(())),
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Received {
    BlobRequest(Hash32, u64),
    Result(TaskStatus),
    /// A result whose output is a blob.
    Output(TaskStatus, Hash32),
    Goodbye(GoodbyeReason),
    Other(MessageKind),
}

/// Issue 28, case 7: lengths are checked, not trusted. A requester offers
/// an echo whose input blob it declares as 1 byte, then answers the
/// worker's request with a chunk of a 64 MiB blob: the worker fails the
/// task and closes the session (protocol violation) before it keeps a byte.
/// Before, it reserved 64 MiB and fetched on (several such took a worker
/// to 1 GiB), and the 1-byte declaration had made the job inline.
#[test]
fn an_input_blob_longer_than_its_offer_declared_fails_and_closes_the_session() {
    let worker = NodeHandle::start(key(14), worker_opts(unique_port())).unwrap();
    let target = worker.local_addr();
    let seen = lying_lengths(Ipv4Addr::new(127, 0, 0, 2), target, 1, 1400).remove(0);
    assert!(
        seen.iter().any(|r| matches!(r, Received::BlobRequest(..))),
        "the worker asked for the input: {seen:?}"
    );
    assert!(
        seen.contains(&Received::Result(TaskStatus::Failed)),
        "the task failed: {seen:?}"
    );
    assert!(
        seen.last() == Some(&Received::Goodbye(GoodbyeReason::ProtocolViolation)),
        "the session was closed for it: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|r| matches!(r, Received::BlobRequest(..)))
            .count(),
        1,
        "no more of the blob was asked for: {seen:?}"
    );
    // An honest requester is served as ever.
    let took = honest_task(target, 1401, "after the liar");
    assert!(took < PROMPT, "{took:?}");
    async_io::block_on(worker.shutdown());
}

/// Attack (issue 28, case 5): `count` requesters (keys from `base`, from
/// 127.0.0.`first` on) offer echoes of `bytes`-byte input blobs and feed
/// each a byte every 0.8 s, `rounds` times. Returns which of them got their
/// task failed, and when.
fn dribble_inputs(
    w: SocketAddr,
    first: u8,
    count: u8,
    bytes: u64,
    base: u64,
    rounds: usize,
) -> std::thread::JoinHandle<Vec<(usize, Duration)>> {
    let mut dribblers: Vec<(RawSession, Hash32, u64)> = (0..count)
        .map(|i| {
            let mut s =
                RawSession::open(Ipv4Addr::new(127, 0, 0, first + i), w, base + u64::from(i));
            let hash = [0x60 + i; 32];
            assert!(s.send(&blob_echo(1, hash, bytes)));
            (s, hash, 0)
        })
        .collect();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut failed = Vec::new();
        for _ in 0..rounds {
            for (i, (s, hash, fed)) in dribblers.iter_mut().enumerate() {
                let chunk = Message::BlobChunk(BlobChunk {
                    hash: *hash,
                    offset: *fed,
                    total_len: bytes,
                    data: &[7],
                });
                if s.send(&chunk) {
                    *fed += 1;
                }
                while let Some(Ok(r)) = s.next(Duration::from_millis(100)) {
                    if r == Received::Result(TaskStatus::Failed) {
                        failed.push((i, start.elapsed()));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(800));
        }
        failed
    })
}

/// Attack (issue 28, case 6): `count` requesters (keys from `base`, from
/// 127.0.0.`first` on) each leave an echo output of `bytes` on the worker
/// (serving its input properly first), then ask for one byte of it every
/// 0.4 s, `rounds` times or until `stop`. Returns the chunks answered.
fn hoard_outputs(
    w: SocketAddr,
    first: u8,
    count: u8,
    bytes: u32,
    base: u64,
    rounds: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let data: Vec<u8> = (0..bytes).map(|i| (i % 241) as u8).collect();
    let hash = p2pa_node::core::sha256(&data);
    let mut hoarders: Vec<(RawSession, Hash32)> = Vec::new();
    for i in 0..count {
        let mut s = RawSession::open(Ipv4Addr::new(127, 0, 0, first + i), w, base + u64::from(i));
        assert!(s.send(&blob_echo(1, hash, data.len() as u64)));
        match serve_input_until_result(&mut s, hash, &data) {
            Some(Received::Output(TaskStatus::Completed, out)) => hoarders.push((s, out)),
            other => panic!("hoarder {i}: {other:?}"),
        }
    }
    std::thread::spawn(move || {
        let mut answered = 0;
        for _ in 0..rounds {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            for (s, out) in hoarders.iter_mut() {
                let ask = Message::BlobRequest(BlobRequest {
                    hash: *out,
                    offset: 0,
                    max_len: 1,
                });
                s.send(&ask);
                while let Some(Ok(r)) = s.next(Duration::from_millis(50)) {
                    answered += usize::from(matches!(r, Received::Other(MessageKind::BlobChunk)));
                }
            }
            std::thread::sleep(Duration::from_millis(400));
        }
        answered
    })
}

/// Attack (issue 28, case 7): `n` requesters (keys from `base`) from
/// `from`, one after another, each offer an echo whose input blob they
/// declare as 1 byte and answer the worker's request for it with a chunk
/// of a 64 MiB blob. Returns what each saw, in order.
fn lying_lengths(from: Ipv4Addr, w: SocketAddr, n: u64, base: u64) -> Vec<Vec<Received>> {
    (0..n)
        .map(|i| {
            let mut liar = RawSession::open(from, w, base + i);
            let hash = [0x5a; 32];
            let mut seen = Vec::new();
            if !liar.send(&blob_echo(1, hash, 1)) {
                return seen;
            }
            let mut asked = false;
            for _ in 0..20 {
                match liar.next(Duration::from_secs(3)) {
                    Some(Ok(r @ Received::BlobRequest(h, 0))) if h == hash && !asked => {
                        asked = true;
                        seen.push(r);
                        let data = vec![0u8; BLOB_CHUNK_LEN];
                        let chunk = Message::BlobChunk(BlobChunk {
                            hash,
                            offset: 0,
                            total_len: 64 << 20,
                            data: &data,
                        });
                        liar.send(&chunk);
                    }
                    Some(Ok(r)) => seen.push(r),
                    Some(Err(())) | None => break,
                }
            }
            seen
        })
        .collect()
}

/// An echo offer of a blob input (`hash`, `len` bytes).
fn blob_echo(task_id: u64, hash: Hash32, len: u64) -> Message<'static> {
    Message::TaskOffer(TaskOffer {
        task_id,
        kind: TaskKind::Echo,
        input: TaskInput::Blob { hash, len },
        model: None,
        deadline_ms: 60_000,
        budget: Budget {
            max_output_len: 64 << 20,
            max_model_len: 0,
        },
    })
}

/// Options of a worker whose transfers are judged every second.
fn paced_worker_opts() -> NodeOptions {
    let mut o = worker_opts(unique_port());
    o.core.transfer_window = Duration::from_secs(1);
    o
}

/// Issue 28, case 5: transfers have a floor rate. Two requesters offer
/// 32 MiB input blobs and feed them a byte a second (the stall timeout never
/// fires): the first is given up within a window or two with its task
/// failed ("too slow"), and an honest 256 KiB blob input beside them is
/// fetched at once (a requester holding no input may pass the buffer, to
/// twice its size). Before, the dribbled inputs held the 24 MiB input buffer
/// for their whole deadline and the honest task timed out.
#[test]
fn inputs_dribbled_under_the_floor_rate_are_dropped_and_hold_no_one_out() {
    let worker = NodeHandle::start(key(15), paced_worker_opts()).unwrap();
    let target = worker.local_addr();
    let feed = dribble_inputs(target, 2, 2, 32 << 20, 1500, 8);
    std::thread::sleep(Duration::from_millis(500));
    let input: Vec<u8> = (0..256 * 1024).map(|i| (i % 253) as u8).collect();
    let t = Instant::now();
    let (_, out) = submit_once(
        target,
        1510,
        TaskKind::Echo,
        &input,
        Duration::from_secs(15),
    );
    assert_eq!(out.status, TaskStatus::Completed, "{out:?}");
    assert_eq!(out.output, input);
    assert!(
        t.elapsed() < PROMPT,
        "honest blob input took {:?}",
        t.elapsed()
    );
    let failed = feed.join().unwrap();
    assert!(
        failed
            .iter()
            .any(|(i, at)| *i == 0 && *at < Duration::from_secs(6)),
        "the first dribbled input was given up: {failed:?}"
    );
    async_io::block_on(worker.shutdown());
}

/// Serves `data` (whose hash is `hash`) to whatever chunks of it the node
/// asks `s` for, until a result comes; returns the result.
fn serve_input_until_result(s: &mut RawSession, hash: Hash32, data: &[u8]) -> Option<Received> {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        match s.next(Duration::from_millis(200)) {
            Some(Ok(Received::BlobRequest(h, offset))) if h == hash => {
                let from = (offset as usize).min(data.len());
                let to = (from + BLOB_CHUNK_LEN).min(data.len());
                let chunk = Message::BlobChunk(BlobChunk {
                    hash,
                    offset,
                    total_len: data.len() as u64,
                    data: &data[from..to],
                });
                if !s.send(&chunk) {
                    return None;
                }
            }
            Some(Ok(r @ (Received::Result(_) | Received::Output(..)))) => return Some(r),
            Some(Ok(_)) | None => {}
            Some(Err(())) => return None,
        }
    }
    None
}

/// Issue 28, case 6: outputs lent are dropped when fetched under the floor
/// rate, whatever their owner asks. Two requesters leave 10 MiB echo
/// outputs on the worker (past twice its output buffer: no slot job
/// starts) and ask for one byte of them a second: the outputs are dropped
/// within a window, and an honest slot task is served. Before, any request
/// counted as activity, the outputs were never dropped, and no slot job
/// started while they stayed.
#[test]
fn outputs_hoarded_under_the_floor_rate_are_dropped() {
    let worker = NodeHandle::start(key(16), paced_worker_opts()).unwrap();
    let target = worker.local_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asking = hoard_outputs(target, 4, 2, 10 << 20, 1600, 20, stop.clone());
    let t = Instant::now();
    let (_, out) = submit_once(target, 1610, TaskKind::Sleep, b"5", Duration::from_secs(15));
    assert_eq!(out.status, TaskStatus::Completed, "{out:?}");
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = asking.join().unwrap();
    assert!(answered > 0, "the hoarders' first asks were answered");
    assert!(
        took < PROMPT,
        "honest slot task after the outputs were lent: {took:?}"
    );
    async_io::block_on(worker.shutdown());
}

/// Keeps sessions with fresh keys open from `addrs` addresses (127.0.0.2
/// on), `per_addr` from each, the first `workers` addresses claiming to run
/// echo (worker peers) and the rest requesters; each session the node
/// closes is opened again with a new key (from `base` on), within `keys`
/// keys in all and
/// `for_how_long` (or until `stop`). Returns the keys used.
#[allow(clippy::too_many_arguments)]
fn hold_sessions(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    base: u64,
    to: SocketAddr,
    addrs: u8,
    per_addr: usize,
    workers: u8,
    keys: u64,
    for_how_long: Duration,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let end = Instant::now() + for_how_long;
        let mut next = 0u64;
        let open = |ip: u8, next: &mut u64| {
            let kinds = if ip - 2 < workers {
                KindSet::default().with(TaskKind::Echo)
            } else {
                KindSet::default()
            };
            *next += 1;
            let from = Ipv4Addr::new(127, 0, 0, ip);
            session_as(from, to, base + *next, kinds, Duration::ZERO)
        };
        let mut held: Vec<(u8, Option<TcpStream>)> = Vec::new();
        for ip in 2..2 + addrs {
            for _ in 0..per_addr {
                held.push((ip, None));
            }
        }
        // Held until `stop` or the end, also once the keys are spent.
        while Instant::now() < end && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (ip, s) in held.iter_mut() {
                if !s.as_mut().is_some_and(alive) && next < keys {
                    *s = open(*ip, &mut next);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        next
    })
}

/// Issue 28, case 1: sessions held open lock nobody out. Fresh keys from
/// 20 other addresses hold every session the node allows (8 addresses of
/// "workers", 12 of requesters, 16 each: past `max_conns` 128 and the
/// 64-requester budget), reopening each one the node closes, up to 400
/// keys. Eight honest requesters in turn, each a fresh key, are all served:
/// each takes the place of an idle session. Before, a full table could only
/// push out a half-finished handshake: honest 1/8.
#[test]
fn sessions_held_open_by_fresh_keys_cannot_lock_honest_requesters_out() {
    let worker = NodeHandle::start(key(17), worker_opts(unique_port())).unwrap();
    let target = worker.local_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = hold_sessions(
        stop.clone(),
        2_800_000,
        target,
        20,
        16,
        8,
        400,
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(3)); // the sessions are held
    let held = stats(&worker).handshakes_completed;
    assert!(
        held >= 128,
        "the attack holds the sessions: {held} handshakes"
    );
    for n in 0..8u64 {
        let took = honest_task(target, 1700 + n, "let me in");
        assert!(took < PROMPT, "honest requester {n} took {took:?}");
    }
    let s = stats(&worker);
    assert!(s.sessions_evicted >= 8, "{s:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let keys = attack.join().unwrap();
    assert!(keys >= 300, "the attack used {keys} keys");
    async_io::block_on(worker.shutdown());
}

/// Issue 28, case 6, within a window: while a job waits for room in the
/// output buffer, outputs fetched under the floor rate go early (1 s into
/// their window), not at its end. With 30 s windows the honest slot task
/// beside two hoarded 10 MiB outputs is still served promptly.
#[test]
fn hoarded_outputs_go_early_while_a_job_waits_for_room() {
    let mut o = worker_opts(unique_port());
    o.core.transfer_window = Duration::from_secs(30);
    let worker = NodeHandle::start(key(18), o).unwrap();
    let target = worker.local_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asking = hoard_outputs(target, 6, 2, 10 << 20, 1800, 40, stop.clone());
    let t = Instant::now();
    let (_, out) = submit_once(target, 1810, TaskKind::Sleep, b"5", Duration::from_secs(25));
    assert_eq!(out.status, TaskStatus::Completed, "{out:?}");
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        asking.join().unwrap() > 0,
        "the hoarders' first asks were answered"
    );
    assert!(
        took < PROMPT,
        "honest slot task beside hoarded outputs: {took:?}"
    );
    async_io::block_on(worker.shutdown());
}
