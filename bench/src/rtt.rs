//! Round trip, CPU per task and pipelined throughput: the floor (plain TCP
//! plus the same signatures) and p2pa, each worker in its own process.

use std::time::Instant;

use p2pa_node::protocol::TaskStatus;

use crate::floor;
use crate::harness::{
    cpu_seconds, echo, measure, pipelined, requester_for, rtt_of, FloorProc, Rtt, WorkerProc,
};

/// Requests in flight in the pipelined rows.
const WINDOW: u64 = 32;

/// The floor: its round trips, then pipelined tasks per second.
fn floor_run(n: usize, input: &[u8]) -> (Rtt, f64) {
    let server = FloorProc::start();
    let mut client = floor::Client::connect(
        server.1,
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([1; 32])),
    );
    let rtt = measure(n, || server.cpu(), |i| client.round_trip(i, input));
    let total = n as u64 * 4;
    let t = Instant::now();
    for i in 0..WINDOW {
        client.send(i, input);
    }
    for i in WINDOW..total {
        client.recv();
        client.send(i, input);
    }
    for _ in 0..WINDOW {
        client.recv();
    }
    (rtt, total as f64 / t.elapsed().as_secs_f64())
}

/// p2pa: a `p2pa node` worker and a requester on this thread, timed inside
/// one `block_on` (as an application or `p2pa batch` runs it).
fn p2pa_run(n: usize, input: &[u8]) -> (Rtt, f64) {
    let worker = WorkerProc::start(1);
    let mut r = requester_for(worker.addr);
    let h = &r.h;
    let rtt = r.node.block_on(async {
        let one = || async {
            let o = h.submit(echo(input)).await.expect("submit");
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
    let tps = pipelined(&mut r, n * 4);
    r.shutdown();
    (rtt, tps)
}

/// One run's figures: round trip, CPU per task, pipelined tasks/s.
struct Run {
    rtt: Rtt,
    tps: f64,
}

/// The rust-libp2p echo (`bench/libp2p`), if built: `P2PA_LIBP2P_BIN`, or
/// where `bench/run.sh` builds it.
fn libp2p_bin() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("P2PA_LIBP2P_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "bench/libp2p/target/release/p2pa-libp2p-echo".into());
    path.exists().then_some(path)
}

/// One run of the libp2p echo: its figures and its connect + handshake p50.
fn libp2p_run(bin: &std::path::Path, n: usize) -> Option<(Run, f64)> {
    let out = std::process::Command::new(bin)
        .args(["bench", &n.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let rtt = Rtt {
        p50_us: get("p50_us")?,
        p99_us: get("p99_us")?,
        cpu_us: get("cpu_us")?,
    };
    Some((
        Run {
            rtt,
            tps: get("tps")?,
        },
        get("connect_p50_us")?,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median of each figure over runs.
fn median_run(runs: &[Run]) -> Run {
    let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    Run {
        rtt: Rtt {
            p50_us: m(|r| r.rtt.p50_us),
            p99_us: m(|r| r.rtt.p99_us),
            cpu_us: m(|r| r.rtt.cpu_us),
        },
        tps: m(|r| r.tps),
    }
}

/// The floor, p2pa and (when built) rust-libp2p, interleaved: three rounds
/// of one run each, the median of each figure.
pub fn bench_rtt(n: usize) {
    let input = [0x5au8; 64];
    let bin = libp2p_bin();
    let rounds = if bin.is_some() { 3 } else { 1 };
    let (mut floor, mut p2pa, mut libp2p) = (Vec::new(), Vec::new(), Vec::new());
    let (mut p2pa_connect, mut libp2p_connect) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (rtt, tps) = floor_run(n, &input);
        floor.push(Run { rtt, tps });
        let (rtt, tps) = p2pa_run(n, &input);
        p2pa.push(Run { rtt, tps });
        if let Some(b) = &bin {
            p2pa_connect.push(crate::memory::handshake_times(50).0);
            match libp2p_run(b, n) {
                Some((run, connect)) => {
                    libp2p.push(run);
                    libp2p_connect.push(connect);
                }
                None => println!("SKIPPED: {} did not run", b.display()),
            }
        }
    }
    let (f, p) = (median_run(&floor), median_run(&p2pa));
    if libp2p.is_empty() {
        if bin.is_none() {
            println!("SKIPPED: rust-libp2p column (build bench/libp2p, or set P2PA_LIBP2P_BIN)\n");
        }
        println!("| signed echo, 64-byte input, loopback, worker in its own process, {n} round trips | floor | p2pa | ratio (target) |");
        println!("|---|---|---|---|");
        let row = |name: &str, f: f64, p: f64, target: &str| {
            println!("| {name} | {f:.1} µs | {p:.1} µs | {:.2}{target} |", p / f);
        };
        row("round trip p50", f.rtt.p50_us, p.rtt.p50_us, " (≤ 1.1)");
        row("round trip p99", f.rtt.p99_us, p.rtt.p99_us, "");
        row(
            "CPU per task, both sides",
            f.rtt.cpu_us,
            p.rtt.cpu_us,
            " (≤ 1.1)",
        );
        println!(
            "| pipelined tasks/s, one connection, {WINDOW} in flight | {:.0} | {:.0} | {:.2} (≥ 0.9) |",
            f.tps,
            p.tps,
            p.tps / f.tps
        );
        return;
    }
    let l = median_run(&libp2p);
    println!("| signed echo, 64-byte input, loopback, worker in its own process, {n} round trips; median of {rounds} interleaved runs | floor | p2pa | rust-libp2p | p2pa / floor (target) | p2pa / libp2p (target) |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, f: f64, p: f64, l: f64, unit: &str, tf: &str, tl: &str| {
        println!(
            "| {name} | {f:.1}{unit} | {p:.1}{unit} | {l:.1}{unit} | {:.2}{tf} | {:.2}{tl} |",
            p / f,
            p / l
        );
    };
    row(
        "round trip p50",
        f.rtt.p50_us,
        p.rtt.p50_us,
        l.rtt.p50_us,
        " µs",
        " (≤ 1.1)",
        " (≤ 0.8)",
    );
    row(
        "round trip p99",
        f.rtt.p99_us,
        p.rtt.p99_us,
        l.rtt.p99_us,
        " µs",
        "",
        "",
    );
    row(
        "CPU per task, both sides",
        f.rtt.cpu_us,
        p.rtt.cpu_us,
        l.rtt.cpu_us,
        " µs",
        " (≤ 1.1)",
        "",
    );
    row(
        &format!("pipelined tasks/s, one connection, {WINDOW} in flight"),
        f.tps,
        p.tps,
        l.tps,
        "",
        " (≥ 0.9)",
        " (≥ 1.4)",
    );
    let (pc, lc) = (median(p2pa_connect), median(libp2p_connect));
    println!(
        "| connect + mutual handshake p50 (fresh connection) | - | {pc:.1} µs | {lc:.1} µs | - | {:.2} (≤ 0.5) |",
        pc / lc
    );
}
