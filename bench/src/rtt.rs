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
    p2pa_rounds(n, input, n * 4)
}

/// `n` sequential round trips, then `pipelined` tasks 32 at a time (none
/// when 0).
fn p2pa_rounds(n: usize, input: &[u8], pipelined_n: usize) -> (Rtt, f64) {
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
    let tps = if pipelined_n > 0 {
        pipelined(&mut r, pipelined_n)
    } else {
        0.0
    };
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

/// A table row: name, the figure, its unit, the targets against the floor
/// and against libp2p.
type Metric = (
    &'static str,
    fn(&Run) -> f64,
    &'static str,
    &'static str,
    &'static str,
);

/// Rounds of the interleaved comparison: `P2PA_RTT_ROUNDS`, default 11 (with 5, the median ratio moved by ±0.07 between runs a minute apart).
fn rounds() -> usize {
    std::env::var("P2PA_RTT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(11)
}

/// `p / q` per round: the median and the range, as "1.04 (0.92 – 1.21)".
fn ratio(p: &[f64], q: &[f64]) -> String {
    let r: Vec<f64> = p.iter().zip(q).map(|(a, b)| a / b).collect();
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} ({lo:.2} – {hi:.2})", median(r))
}

/// The floor, p2pa and (when built) rust-libp2p, interleaved round by
/// round; each cell is the median over the rounds, each ratio the median of
/// the per-round ratios with their range (this machine is shared and noisy:
/// one round alone moves by ±20 %).
pub fn bench_rtt(n: usize) {
    let input = [0x5au8; 64];
    let bin = libp2p_bin();
    let rounds = rounds();
    let (mut floor, mut p2pa, mut libp2p) = (Vec::new(), Vec::new(), Vec::new());
    let (mut p2pa_connect, mut libp2p_connect) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (rtt, tps) = floor_run(n, &input);
        floor.push(Run { rtt, tps });
        let (rtt, tps) = p2pa_run(n, &input);
        p2pa.push(Run { rtt, tps });
        if let Some((run, connect)) = bin.as_deref().and_then(|b| libp2p_run(b, n)) {
            libp2p.push(run);
            libp2p_connect.push(connect);
            p2pa_connect.push(crate::memory::handshake_times(50).0);
        }
    }
    let with_libp2p = libp2p.len() == rounds;
    match &bin {
        None => {
            println!("SKIPPED: rust-libp2p column (build bench/libp2p, or set P2PA_LIBP2P_BIN)\n")
        }
        Some(b) if !with_libp2p => println!(
            "SKIPPED: rust-libp2p column ({} did not run every round)\n",
            b.display()
        ),
        Some(_) => {}
    }
    let libp2p = with_libp2p.then_some((
        libp2p.as_slice(),
        p2pa_connect.as_slice(),
        libp2p_connect.as_slice(),
    ));
    print_table(n, rounds, &floor, &p2pa, libp2p);
}

/// p2pa's sequential round trips only (`p2pa-bench rtt-only`, for strace).
pub fn p2pa_sequential(n: usize) -> Rtt {
    p2pa_rounds(n, &[0x5au8; 64], 0).0
}

/// The table: medians per figure, ratios per round; `libp2p` is its runs
/// with both connect times, when it ran every round.
fn print_table(
    n: usize,
    rounds: usize,
    floor: &[Run],
    p2pa: &[Run],
    libp2p: Option<(&[Run], &[f64], &[f64])>,
) {
    let col = |runs: &[Run], f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let metrics: [Metric; 4] = [
        (
            "round trip p50",
            |r| r.rtt.p50_us,
            " µs",
            " (≤ 1.1)",
            " (≤ 0.6)",
        ),
        ("round trip p99", |r| r.rtt.p99_us, " µs", "", ""),
        (
            "CPU per task, both sides",
            |r| r.rtt.cpu_us,
            " µs",
            " (≤ 1.1)",
            "",
        ),
        (
            "pipelined tasks/s, one connection, 32 in flight",
            |r| r.tps,
            "",
            " (≥ 0.9)",
            " (≥ 1.5)",
        ),
    ];
    let aead = crate::harness::aead_name();
    let head = format!("signed, sealed echo (floor: TCP + 4 signatures + {aead}), 64-byte input, loopback, worker in its own process, {n} round trips; medians of {rounds} interleaved rounds");
    if libp2p.is_some() {
        println!("| {head} | floor | p2pa | rust-libp2p | p2pa / floor (target) | p2pa / libp2p (target) |");
        println!("|---|---|---|---|---|---|");
    } else {
        println!("| {head} | floor | p2pa | p2pa / floor (target) |");
        println!("|---|---|---|---|");
    }
    for (name, f, unit, tf, tl) in metrics {
        let (fl, pp) = (col(floor, f), col(p2pa, f));
        let cells = format!(
            "| {name} | {:.1}{unit} | {:.1}{unit} |",
            median(fl.clone()),
            median(pp.clone())
        );
        if let Some((libp2p, _, _)) = libp2p {
            let lp = col(libp2p, f);
            println!(
                "{cells} {:.1}{unit} | {}{tf} | {}{tl} |",
                median(lp.clone()),
                ratio(&pp, &fl),
                ratio(&pp, &lp)
            );
        } else {
            println!("{cells} {}{tf} |", ratio(&pp, &fl));
        }
    }
    if let Some((_, p2pa_connect, libp2p_connect)) = libp2p {
        println!(
            "| connect + Noise XX handshake p50 (fresh connection, fresh keys) | - | {:.1} µs | {:.1} µs | - | {} (≤ 0.5) |",
            median(p2pa_connect.to_vec()),
            median(libp2p_connect.to_vec()),
            ratio(p2pa_connect, libp2p_connect)
        );
    }
}
