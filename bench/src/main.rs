//! `p2pa-bench`: measures p2pa against the floor (plain TCP plus the same
//! signatures), side by side in one process and one run, and prints Markdown.
//!
//!     cargo run --release -p p2pa-bench -- [rtt|handshake|infer|all] [--n N]
//!
//! Every loop is bounded by a count; the whole run stops by itself.

mod floor;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use p2pa_node::core::{PeerState, TaskRequest};
use p2pa_node::io::{LocalNode, NodeHandle, NodeOptions};
use p2pa_node::protocol::*;

fn cpu_seconds() -> f64 {
    proc_cpu("/proc/self/stat")
}

fn proc_cpu(path: &str) -> f64 {
    // utime + stime, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn local_opts() -> NodeOptions {
    let mut o = NodeOptions::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    o.multicast = None;
    o.mdns = false;
    o
}

fn seed(n: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&n.to_le_bytes());
    s[8] = 0xbe;
    s
}

/// The `p2pa` binary to run workers with: `$P2PA_BIN`, else next to this one.
fn p2pa_bin() -> std::path::PathBuf {
    std::env::var_os("P2PA_BIN")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .expect("own path")
                .with_file_name("p2pa")
        })
}

/// A `p2pa node` worker process on loopback (no multicast to anyone else).
pub struct WorkerProc {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl WorkerProc {
    pub fn start(workers: u16) -> Self {
        use std::io::BufRead;
        let dir = TempDir::new("worker");
        let port = 30_000 + (std::process::id() % 20_000) as u16;
        let mut child = std::process::Command::new(p2pa_bin())
            .args([
                "--multicast-ttl",
                "0",
                "--no-mdns",
                "--multicast-port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(&dir.0)
            // Plain output, as a user runs it: `--json` would add a stdout
            // line (a write here, a read in the harness) per task.
            .args([
                "node",
                "--listen",
                "127.0.0.1:0",
                "--queue",
                "256",
                "--workers",
                &workers.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start p2pa node (build it: cargo build --release -p p2pa)");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut line).expect("listening line");
        std::thread::spawn(move || for _ in out.lines() {});
        // "node 1a2b3c4d listening on 127.0.0.1:PORT (id …)"
        let addr = line
            .split_whitespace()
            .skip_while(|w| *w != "on")
            .nth(1)
            .and_then(|a| a.parse().ok())
            .expect("listening line");
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// CPU seconds this process has used.
    pub fn cpu(&self) -> f64 {
        proc_cpu(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("p2pa-bench-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A requester node as `p2pa submit` and `p2pa batch` run it: on the
/// calling thread ([`NodeHandle::start_local`]).
struct Requester {
    h: NodeHandle,
    node: LocalNode,
}

impl Requester {
    fn shutdown(mut self) {
        let h = self.h;
        self.node.block_on(h.shutdown());
    }
}

/// A requester node connected to the worker at `addr`.
fn requester_for(addr: SocketAddr) -> Requester {
    requester_for_all(&[addr])
}

/// A requester node connected to every worker in `addrs`.
fn requester_for_all(addrs: &[SocketAddr]) -> Requester {
    let mut r = local_opts();
    r.core.kinds = KindSet::default();
    r.core.workers = 0;
    r.core.bootstrap = addrs.to_vec();
    let (h, mut node) = NodeHandle::start_local(Keypair::from_seed(seed(2)), r).expect("requester");
    let up = node.block_on(async {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let peers = h.peers().await.unwrap_or_default();
            let up = peers.iter().filter(|p| p.state != PeerState::Known).count();
            if up >= addrs.len() {
                return true;
            }
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        false
    });
    assert!(up, "requester did not connect");
    Requester { h, node }
}

/// A worker node and a requester node with a session between them.
fn pair(workers: u16, kinds: KindSet) -> (NodeHandle, NodeHandle) {
    let mut w = local_opts();
    w.core.workers = workers;
    w.core.queue_len = 256;
    w.core.kinds = kinds;
    let worker = NodeHandle::start(Keypair::from_seed(seed(1)), w).expect("worker");
    let mut r = local_opts();
    r.core.kinds = KindSet::default();
    r.core.workers = 0;
    r.core.bootstrap = vec![worker.local_addr()];
    let requester = NodeHandle::start(Keypair::from_seed(seed(2)), r).expect("requester");
    wait_connected(&requester, 1);
    (worker, requester)
}

fn wait_connected(h: &NodeHandle, n: usize) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let up = async_io::block_on(h.peers())
            .unwrap_or_default()
            .iter()
            .filter(|p| p.state != PeerState::Known)
            .count();
        if up >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("peers did not connect");
}

fn echo(input: &[u8]) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Echo,
        input: input.to_vec(),
        model: None,
        timeout: Duration::from_secs(10),
        peer: None,
    }
}

struct Rtt {
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
}

fn measure(n: usize, other_cpu: impl Fn() -> f64, mut one: impl FnMut(u64)) -> Rtt {
    for i in 0..(n / 10).max(10) {
        one(i as u64); // warm up
    }
    let mut lat = Vec::with_capacity(n);
    let cpu0 = cpu_seconds() + other_cpu();
    for i in 0..n {
        let t = Instant::now();
        one(i as u64);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let cpu = (cpu_seconds() + other_cpu() - cpu0) / n as f64 * 1e6;
    rtt_of(lat, cpu)
}

fn rtt_of(mut lat: Vec<f64>, cpu_us: f64) -> Rtt {
    lat.sort_by(f64::total_cmp);
    Rtt {
        p50_us: pct(&lat, 0.5),
        p99_us: pct(&lat, 0.99),
        cpu_us,
    }
}

/// A floor worker in a process of its own (this binary, `floor-server`).
struct FloorProc(std::process::Child, SocketAddr);

impl FloorProc {
    fn start() -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
            .arg("floor-server")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("floor server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let addr = line.trim().parse().expect("addr");
        Self(child, addr)
    }

    fn cpu(&self) -> f64 {
        proc_cpu(&format!("/proc/{}/stat", self.0.id()))
    }
}

impl Drop for FloorProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bench_rtt(n: usize) {
    let input = [0x5au8; 64];
    // Floor: its worker in another process, like p2pa's below.
    let server = FloorProc::start();
    let mut client = floor::Client::connect(
        server.1,
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([1; 32])),
    );
    let floor = measure(n, || server.cpu(), |i| client.round_trip(i, &input));
    let floor_tps = {
        let window = 32u64;
        let total = n as u64 * 4;
        let t = Instant::now();
        for i in 0..window {
            client.send(i, &input);
        }
        for i in window..total {
            client.recv();
            client.send(i, &input);
        }
        for _ in 0..window {
            client.recv();
        }
        total as f64 / t.elapsed().as_secs_f64()
    };
    drop(client);
    drop(server);

    let worker = WorkerProc::start(1);
    let mut r = requester_for(worker.addr);
    // As an application (or `p2pa batch`) runs it: one block_on around the
    // whole sequence, each round trip timed inside.
    let h = &r.h;
    let p2pa = r.node.block_on(async {
        let one = || async {
            let o = h.submit(echo(&input)).await.expect("submit");
            assert_eq!(o.status, TaskStatus::Completed);
        };
        for _ in 0..(n / 10).max(10) {
            one().await; // warm up
        }
        let mut lat = Vec::with_capacity(n);
        let cpu0 = cpu_seconds() + worker.cpu();
        for _ in 0..n {
            let t = Instant::now();
            one().await;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let cpu = (cpu_seconds() + worker.cpu() - cpu0) / n as f64 * 1e6;
        rtt_of(lat, cpu)
    });
    let p2pa_tps = pipelined(&mut r, n * 4);
    r.shutdown();
    drop(worker);

    println!("| signed echo, 64-byte input, loopback, worker in its own process, {n} round trips | floor | p2pa | ratio (target) |");
    println!("|---|---|---|---|");
    println!(
        "| round trip p50 | {:.1} µs | {:.1} µs | {:.2} (≤ 1.3) |",
        floor.p50_us,
        p2pa.p50_us,
        p2pa.p50_us / floor.p50_us
    );
    println!(
        "| round trip p99 | {:.1} µs | {:.1} µs | {:.2} |",
        floor.p99_us,
        p2pa.p99_us,
        p2pa.p99_us / floor.p99_us
    );
    println!(
        "| CPU per task, both sides | {:.1} µs | {:.1} µs | {:.2} (≤ 1.25) |",
        floor.cpu_us,
        p2pa.cpu_us,
        p2pa.cpu_us / floor.cpu_us
    );
    println!(
        "| pipelined tasks/s, one connection, 32 in flight | {:.0} | {:.0} | {:.2} (≥ 0.8) |",
        floor_tps,
        p2pa_tps,
        p2pa_tps / floor_tps
    );
}

/// Echo tasks per second with 32 in flight on one session.
fn pipelined(r: &mut Requester, total: usize) -> f64 {
    let input = [0x5au8; 64];
    let t = Instant::now();
    let ex = async_executor::LocalExecutor::new();
    let requester = &r.h;
    r.node.block_on(ex.run(async {
        let mut left = total;
        let mut inflight = Vec::new();
        while left > 0 || !inflight.is_empty() {
            while inflight.len() < 32 && left > 0 {
                inflight.push(ex.spawn(requester.submit(echo(&input))));
                left -= 1;
            }
            let first = inflight.remove(0);
            assert_eq!(first.await.expect("submit").status, TaskStatus::Completed);
        }
    }));
    total as f64 / t.elapsed().as_secs_f64()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Memory of a worker process: idle, after `tasks` echo tasks, and per
/// connected peer.
fn bench_memory(tasks: usize) {
    let worker = WorkerProc::start(1);
    let pid = worker.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pid);
    let mut requester = requester_for(worker.addr);
    let mut done = 0;
    while done < tasks {
        let chunk = (tasks - done).min(10_000);
        let _ = pipelined(&mut requester, chunk);
        done += chunk;
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kib(pid);
    requester.shutdown();
    std::thread::sleep(Duration::from_millis(300));
    let before_peers = rss_kib(pid);
    let peers = 100;
    let me = worker_id_of(&worker);
    let streams: Vec<TcpStream> = (0..peers)
        .map(|i| handshake(worker.addr, &Keypair::from_seed(seed(5000 + i as u64)), me))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let with_peers = rss_kib(pid);
    drop(streams);
    println!(
        "| memory of a `p2pa node` process ({}) | RSS | target |",
        p2pa_bin().display()
    );
    println!("|---|---|---|");
    println!(
        "| idle, no peers | {:.2} MiB | ≤ 3 MiB |",
        idle as f64 / 1024.0
    );
    println!(
        "| after {tasks} echo tasks | {:.2} MiB | ≤ 4 MiB |",
        after as f64 / 1024.0
    );
    println!(
        "| per connected peer ({peers} sessions) | {:.1} KiB | |",
        with_peers.saturating_sub(before_peers) as f64 / peers as f64
    );
}

/// The worker's node id, read from its key file.
fn worker_id_of(w: &WorkerProc) -> NodeId {
    let text = std::fs::read_to_string(w._dir.0.join("identity.key")).expect("key file");
    Keypair::from_seed(p2pa_node::hex::parse_hex32(text.trim()).expect("seed")).node_id()
}

fn bench_handshake(n: usize) {
    let mut w = local_opts();
    w.core.max_handshakes = 1024;
    w.core.max_conns = 1024;
    let worker = NodeHandle::start(Keypair::from_seed(seed(9)), w).expect("worker");
    let addr = worker.local_addr();
    let target = worker.id();
    let mut times = Vec::new();
    let keys: Vec<Keypair> = (0..n)
        .map(|i| Keypair::from_seed(seed(1000 + i as u64)))
        .collect();
    let mut streams = Vec::new();
    for k in &keys {
        let t = Instant::now();
        let s = handshake(addr, k, target);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        streams.push(s);
        if streams.len() >= 64 {
            streams.clear(); // stay under the node's connection limit
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "| connect + mutual handshake (TCP connect, Hello, HelloAck, confirm), {n} fresh keys | p50 {:.0} µs | p99 {:.0} µs | target ≤ 500 µs |",
        pct(&times, 0.5),
        pct(&times, 0.99)
    );
    drop(streams);
    async_io::block_on(worker.shutdown());
}

/// The initiator's side of the handshake, as a peer (or a board) does it:
/// the protocol's state machine over a blocking socket.
fn handshake(addr: SocketAddr, k: &Keypair, target: NodeId) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let intro = Intro {
        listen_port: 1,
        caps: Capabilities::default(),
    };
    let mut reader = p2pa_tiny::FrameReader::<4096>::new();
    let mut tx = [0u8; 4096];
    p2pa_tiny::initiate(
        &mut s,
        &mut reader,
        k,
        [3u8; 32],
        Some(target),
        &intro,
        &mut tx,
    )
    .expect("handshake");
    s
}

#[cfg(feature = "onnx")]
fn bench_infer(rounds: usize) {
    use p2pa_node::models::ModelStore;
    use p2pa_node::task::infer::Engine;
    use p2pa_node::task::tensor::{encode, Tensor};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let model = std::fs::read(root.join("digits.onnx")).expect("model");
    let rows: Vec<Vec<f32>> = std::fs::read_to_string(root.join("digits_test.jsonl"))
        .expect("test split")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["input"]
                .as_array()
                .expect("input")
                .iter()
                .map(|x| x.as_f64().unwrap_or(0.0) as f32)
                .collect()
        })
        .collect();
    let inputs: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| encode(&[Tensor::f32(vec![1, 64], r.clone()).expect("tensor")]))
        .collect();
    let dir = std::env::temp_dir().join(format!("p2pa-bench-{}", std::process::id()));
    let store = ModelStore::new(dir.join("local"), 1 << 26);
    let hash = store.put(None, &model).expect("store");
    let engine = Engine::new(store);
    let _ = engine.run(Some(hash), &inputs[0]);
    let total = rows.len() * rounds;
    let t = Instant::now();
    for r in 0..rounds {
        for x in &inputs {
            let _ = r;
            assert_eq!(engine.run(Some(hash), x).0, TaskStatus::Completed);
        }
    }
    let local_ips = total as f64 / t.elapsed().as_secs_f64();
    let local_us = 1e6 / local_ips;

    // Three worker processes (`p2pa node`, one worker slot per core each)
    // and a requester on this thread, as `p2pa batch` runs it.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u16;
    let workers: Vec<WorkerProc> = (0..3).map(|_| WorkerProc::start(cores)).collect();
    let addrs: Vec<SocketAddr> = workers.iter().map(|w| w.addr).collect();
    let mut r = requester_for_all(&addrs);
    let mh = r
        .node
        .block_on(r.h.provide_model(model.clone()))
        .expect("provide");
    let req = |x: &Vec<u8>, model: [u8; 32]| TaskRequest {
        kind: TaskKind::Infer,
        input: x.clone(),
        model: Some(model),
        timeout: Duration::from_secs(60),
        peer: None,
    };
    let _ = run_all(
        &mut r,
        inputs.iter().take(60).map(|x| req(x, mh)).collect(),
        12,
    ); // warm
    let all: Vec<TaskRequest> = (0..rounds)
        .flat_map(|_| inputs.iter().map(|x| req(x, mh)))
        .collect();
    let dist_ips = run_all(&mut r, all, 12);
    r.shutdown();
    drop(workers);

    println!("| digits MLP, {total} single-image inferences | inferences/s | µs each |");
    println!("|---|---|---|");
    println!("| local, one process, one thread (tract) | {local_ips:.0} | {local_us:.1} |");
    println!(
        "| p2pa, 3 worker processes × {cores} slots on this machine, 12 in flight | {dist_ips:.0} | {:.1} |",
        1e6 / dist_ips
    );
    println!();

    // Protocol overhead for tasks of ≥ 1 ms: a heavier MLP (bench/run.sh
    // writes it), B images per task, B chosen for about 1, 2, 5 and 20 ms.
    let heavy_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-mlp.onnx");
    let Ok(bytes) = std::fs::read(&heavy_path) else {
        println!("SKIPPED: heavier model for the ≥ 1 ms overhead rows: target/bench-mlp.onnx missing (python3 models/make_bench_model.py needs numpy and onnx)");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let hh = engine_store_put(&engine_dir(&dir), &bytes);
    let heavy = Engine::new(ModelStore::new(engine_dir(&dir), 1 << 26));
    let task = |b: usize| {
        let x: Vec<f32> = rows.iter().cycle().take(b).flatten().copied().collect();
        encode(&[Tensor::f32(vec![b, 64], x).expect("batch tensor")])
    };
    let local_ms = |x: &[u8], reps: usize| {
        let _ = heavy.run(Some(hh), x);
        let t = Instant::now();
        for _ in 0..reps {
            assert_eq!(heavy.run(Some(hh), x).0, TaskStatus::Completed);
        }
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    };
    let per_image = local_ms(&task(8), 50) / 8.0;
    // One worker process with one slot: its core does the model and the
    // worker's share of the protocol; the requester's share runs on the
    // other core, as it would on another machine.
    let worker = WorkerProc::start(1);
    let mut r = requester_for(worker.addr);
    let rh = r.node.block_on(r.h.provide_model(bytes)).expect("provide");
    let x1 = task(1);
    let _ = run_all(&mut r, (0..10).map(|_| req(&x1, rh)).collect(), 1); // model fetched
    println!(
        "Per-task protocol overhead, 64-1536-1536-10 MLP ({per_image:.2} ms per image here), one worker process with one slot, requester in another process:"
    );
    println!();
    println!("| images per task | local, one thread | p2pa, one in flight | overhead (latency) | local tasks/s | p2pa tasks/s, 2 in flight | overhead (throughput, target ≤ 5 %) |");
    println!("|---|---|---|---|---|---|---|");
    for target_ms in [1.0f64, 2.0, 5.0, 20.0] {
        let b = ((target_ms / per_image).round() as usize).clamp(1, 200);
        let x = task(b);
        let reps = ((2000.0 / target_ms) as usize).clamp(50, 1000);
        let local = local_ms(&x, reps);
        let one = 1e3 / run_all(&mut r, (0..reps).map(|_| req(&x, rh)).collect(), 1);
        let tps = run_all(&mut r, (0..reps).map(|_| req(&x, rh)).collect(), 2);
        let local_tps = 1e3 / local;
        println!(
            "| {b} | {local:.2} ms | {one:.2} ms | {:.1} % | {local_tps:.0} | {tps:.0} | {:.1} % |",
            (one - local) / one * 100.0,
            (1.0 - tps / local_tps) * 100.0
        );
    }
    r.shutdown();
    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `reqs` with `window` in flight; returns tasks per second.
#[cfg(feature = "onnx")]
fn run_all(r: &mut Requester, reqs: Vec<TaskRequest>, window: usize) -> f64 {
    let n = reqs.len();
    let t = Instant::now();
    let ex = async_executor::LocalExecutor::new();
    let h = &r.h;
    r.node.block_on(ex.run(async {
        let mut queue = reqs.into_iter();
        let mut inflight = Vec::new();
        loop {
            while inflight.len() < window {
                let Some(rq) = queue.next() else { break };
                inflight.push(ex.spawn(h.submit(rq)));
            }
            if inflight.is_empty() {
                break;
            }
            let first = inflight.remove(0);
            let o = first.await.expect("submit");
            assert_eq!(
                o.status,
                TaskStatus::Completed,
                "{:?} {}",
                o.error,
                String::from_utf8_lossy(&o.output)
            );
        }
    }));
    n as f64 / t.elapsed().as_secs_f64()
}

#[cfg(feature = "onnx")]
fn engine_dir(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("heavy")
}

#[cfg(feature = "onnx")]
fn engine_store_put(dir: &std::path::Path, bytes: &[u8]) -> [u8; 32] {
    p2pa_node::models::ModelStore::new(dir, 1 << 26)
        .put(None, bytes)
        .expect("store heavy model")
}

#[cfg(not(feature = "onnx"))]
fn bench_infer(_: usize) {
    println!("SKIPPED: inference benchmark needs the `onnx` feature");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("all");
    let n = args
        .iter()
        .position(|a| a == "--n")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000usize);
    if what == "floor-server" {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        let client = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([1; 32])).pk;
        let _ = floor::serve(listener, client).join();
        return;
    }
    if what == "seq-only" {
        // For profiling: only p2pa's sequential round trips.
        let (worker, requester) = pair(1, KindSet::default().with(TaskKind::Echo));
        let input = [0x5au8; 64];
        for _ in 0..n {
            let _ = async_io::block_on(requester.submit(echo(&input)));
        }
        async_io::block_on(requester.shutdown());
        async_io::block_on(worker.shutdown());
        return;
    }
    if what == "floor-only" {
        let (mut client, server) = floor::start();
        for i in 0..n as u64 {
            client.round_trip(i, &[0x5au8; 64]);
        }
        drop(client);
        let _ = server.join();
        return;
    }
    if what == "pipe-only" {
        // For profiling: only p2pa's pipelined run, worker in its own process.
        let worker = WorkerProc::start(1);
        let mut requester = requester_for(worker.addr);
        let tps = pipelined(&mut requester, n);
        println!("p2pa pipelined: {tps:.0} tasks/s");
        requester.shutdown();
        drop(worker);
        return;
    }
    if matches!(what, "rtt" | "all") {
        bench_rtt(n);
        println!();
    }
    if matches!(what, "handshake" | "all") {
        bench_handshake(n.min(500));
        println!();
    }
    if matches!(what, "memory" | "all") {
        bench_memory(if what == "all" { 100_000 } else { n });
        println!();
    }
    if matches!(what, "infer" | "all") {
        bench_infer(5);
    }
}
