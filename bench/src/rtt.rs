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

pub fn bench_rtt(n: usize) {
    let input = [0x5au8; 64];
    let (floor, floor_tps) = floor_run(n, &input);
    let (p2pa, p2pa_tps) = p2pa_run(n, &input);
    println!("| signed echo, 64-byte input, loopback, worker in its own process, {n} round trips | floor | p2pa | ratio (target) |");
    println!("|---|---|---|---|");
    let row = |name: &str, f: f64, p: f64, target: &str| {
        println!("| {name} | {f:.1} µs | {p:.1} µs | {:.2}{target} |", p / f);
    };
    row("round trip p50", floor.p50_us, p2pa.p50_us, " (≤ 1.3)");
    row("round trip p99", floor.p99_us, p2pa.p99_us, "");
    row(
        "CPU per task, both sides",
        floor.cpu_us,
        p2pa.cpu_us,
        " (≤ 1.25)",
    );
    println!(
        "| pipelined tasks/s, one connection, {WINDOW} in flight | {floor_tps:.0} | {p2pa_tps:.0} | {:.2} (≥ 0.8) |",
        p2pa_tps / floor_tps
    );
}
