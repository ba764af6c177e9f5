//! Memory of a worker process (idle, after many tasks, per session) and the
//! cost of connecting with a handshake.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use p2pa_node::io::NodeHandle;
use p2pa_node::measure::percentile;
use p2pa_node::protocol::{Capabilities, Identity, Intro, Keypair, NodeId};

use crate::harness::{local_opts, p2pa_bin, pipelined, requester_for, rss_kib, seed, WorkerProc};

/// Memory of a worker process: idle, after `tasks` echo tasks, and per
/// connected peer.
pub fn bench_memory(tasks: usize) {
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
        .map(|i| {
            handshake(
                worker.addr,
                &Identity::new(Keypair::from_seed(seed(5000 + i as u64))),
                me,
            )
        })
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
    let path = w.dir.0.join(p2pa_node::identity::KEY_FILE);
    match p2pa_node::identity::load(&path) {
        Ok(key) => key.node_id(),
        Err(e) => panic!("the worker's key: {e}"),
    }
}

pub fn bench_handshake(n: usize) {
    let (p50, p99) = handshake_times(n);
    println!(
        "| connect + Noise XX handshake (TCP connect, 3 messages, certificates checked), {n} fresh keys | p50 {p50:.0} µs | p99 {p99:.0} µs | target ≤ 500 µs |"
    );
}

/// p50 and p99 of `n` connects + handshakes with fresh keys, in µs.
pub fn handshake_times(n: usize) -> (f64, f64) {
    let mut w = local_opts();
    w.core.max_handshakes = 1024;
    w.core.max_conns = 1024;
    let worker = NodeHandle::start(Keypair::from_seed(seed(9)), w).expect("worker");
    let addr = worker.local_addr();
    let target = worker.id();
    let mut times = Vec::new();
    // Identities made before the clock starts: a node makes its own once.
    let keys: Vec<Identity> = (0..n)
        .map(|i| Identity::new(Keypair::from_seed(seed(1000 + i as u64))))
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
    drop(streams);
    async_io::block_on(worker.shutdown());
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

/// The initiator's side of the handshake, as a peer (or a board) does it:
/// the protocol's state machine over a blocking socket.
fn handshake(addr: SocketAddr, k: &Identity, target: NodeId) -> TcpStream {
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
