//! What every benchmark shares: worker processes, requester nodes, CPU and
//! memory probes, timing summaries.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use p2pa_node::core::{TaskOutcome, TaskRequest};
use p2pa_node::io::{LocalNode, NodeHandle, NodeOptions};
use p2pa_node::measure::percentile;
use p2pa_node::protocol::*;

/// How long a requester waits for its workers' sessions.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// CPU seconds this process has used.
pub fn cpu_seconds() -> f64 {
    proc_cpu("/proc/self/stat")
}

/// CPU seconds of the process whose `/proc/PID/stat` is `path`.
pub fn proc_cpu(path: &str) -> f64 {
    // utime + stime, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Options of a node on loopback that talks only to the peers it is given,
/// offering AES-256-GCM as `p2pa` would on this machine (and as the floor
/// seals: [`aes`]).
pub fn local_opts() -> NodeOptions {
    let mut o = NodeOptions::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    o.multicast = None;
    o.mdns = false;
    o.core.aes_gcm = aes();
    o
}

/// A distinct, repeatable key seed.
pub fn seed(n: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&n.to_le_bytes());
    s[8] = 0xbe;
    s
}

/// The `p2pa` binary to run workers with: `$P2PA_BIN`, else next to this one.
pub fn p2pa_bin() -> std::path::PathBuf {
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
    pub dir: TempDir,
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
                // The memory row opens 100 sessions from this one address.
                "--max-sessions-per-ip",
                "1000",
                "--max-requester-sessions",
                "1000",
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
        Self { child, addr, dir }
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
pub struct Requester {
    pub h: NodeHandle,
    pub node: LocalNode,
}

impl Requester {
    pub fn shutdown(mut self) {
        let h = self.h;
        self.node.block_on(h.shutdown());
    }
}

/// A requester node connected to the worker at `addr`.
pub fn requester_for(addr: SocketAddr) -> Requester {
    requester_for_all(&[addr])
}

/// A requester node connected to every worker in `addrs`.
pub fn requester_for_all(addrs: &[SocketAddr]) -> Requester {
    let mut r = local_opts();
    r.core.kinds = KindSet::default();
    r.core.workers = 0;
    r.core.bootstrap = addrs.to_vec();
    let (h, mut node) = NodeHandle::start_local(Keypair::from_seed(seed(2)), r).expect("requester");
    let up = node.block_on(h.wait_for_peers(None, addrs.len(), CONNECT_WAIT));
    assert!(up.len() >= addrs.len(), "requester did not connect");
    Requester { h, node }
}

/// A worker node and a requester node (threads of this process) with a
/// session between them.
pub fn pair(workers: u16, kinds: KindSet) -> (NodeHandle, NodeHandle) {
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
    let up = async_io::block_on(requester.wait_for_peers(None, 1, CONNECT_WAIT));
    assert!(!up.is_empty(), "peers did not connect");
    (worker, requester)
}

/// An echo task.
pub fn echo(input: &[u8]) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Echo,
        input: input.to_vec().into(),
        model: None,
        timeout: Duration::from_secs(10),
        peer: None,
        needs: 0,
    }
}

/// Latency and CPU of one kind of round trip.
pub struct Rtt {
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_us: f64,
}

/// Times `n` calls of `one` (after a warm-up); `other_cpu` adds the CPU of
/// the other side's process.
pub fn measure(n: usize, other_cpu: impl Fn() -> f64, mut one: impl FnMut(u64)) -> Rtt {
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

/// Summarizes latencies (µs) and CPU per task.
pub fn rtt_of(mut lat: Vec<f64>, cpu_us: f64) -> Rtt {
    lat.sort_by(f64::total_cmp);
    Rtt {
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        cpu_us,
    }
}

/// A floor worker in a process of its own (this binary, `floor-server`).
pub struct FloorProc(std::process::Child, pub SocketAddr);

impl FloorProc {
    pub fn start() -> Self {
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

    pub fn cpu(&self) -> f64 {
        proc_cpu(&format!("/proc/{}/stat", self.0.id()))
    }
}

impl Drop for FloorProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `reqs` with `window` in flight, each checked `Completed`; returns
/// tasks per second.
pub fn run_all(r: &mut Requester, reqs: Vec<TaskRequest>, window: usize) -> f64 {
    let n = reqs.len();
    let t = Instant::now();
    let check = |o: TaskOutcome| {
        assert_eq!(
            o.status,
            TaskStatus::Completed,
            "{:?} {}",
            o.error,
            String::from_utf8_lossy(&o.output)
        )
    };
    let h = &r.h;
    r.node
        .block_on(h.submit_windowed(reqs, window, check))
        .expect("node running");
    n as f64 / t.elapsed().as_secs_f64()
}

/// Echo tasks per second with 32 in flight on one session.
pub fn pipelined(r: &mut Requester, total: usize) -> f64 {
    let input = [0x5au8; 64];
    run_all(r, (0..total).map(|_| echo(&input)).collect(), 32)
}

/// Median of `v` (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    p2pa_node::measure::percentile(v, 0.5)
}

/// The sessions' AEAD, by name.
pub fn aead_name() -> &'static str {
    if aes() {
        "AES-256-GCM"
    } else {
        "ChaCha20-Poly1305"
    }
}

/// Whether the floor seals with AES-256-GCM: what two p2pa nodes on this
/// machine agree on (`P2PA_CIPHER=chacha` makes it ChaCha20-Poly1305, as it
/// does for the node).
pub fn aes() -> bool {
    p2pa_node::core::Config::aes_gcm_in_hardware()
        && std::env::var("P2PA_CIPHER").map_or(true, |v| v != "chacha")
}
