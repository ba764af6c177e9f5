//! Scale report (run by bench/run.sh, not in CI): N simulated nodes on one
//! LAN with the deterministic core. Prints beacon traffic per node and
//! peer-table memory as N grows, with the default peer and connection caps.
//!
//!     cargo test --release -p p2pa-node --test scale -- --ignored --nocapture
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::Duration;

use p2pa_node::core::Config;
use p2pa_node::sim::Sim;

#[test]
#[ignore = "a benchmark report, minutes of CPU; run by bench/run.sh"]
fn scale_report() {
    let sizes: Vec<usize> = std::env::var("P2PA_SCALE_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![25, 50, 100]);
    let secs = 30u64;
    println!("| nodes | beacons sent /node/s | beacons received /node/s | beacon bytes received /node/s | peers known (mean) | sessions (mean) | peer table /node |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let mut sim = Sim::new(n, 99, 0, |_| Config {
            // Peer caps: sessions with at most 16 peers; the table keeps up to 256.
            max_conns: 16,
            max_handshakes: 8,
            ..Config::default()
        });
        // Warm up 10 s (start-up bursts), then measure the steady state.
        sim.run_until(Duration::from_secs(10));
        let sent0 = sim.datagrams_sent;
        sim.run_until(Duration::from_secs(10 + secs));
        let sent = (sim.datagrams_sent - sent0) as f64;
        let per_node_sent = sent / n as f64 / secs as f64;
        let per_node_recv = per_node_sent * (n - 1) as f64;
        let beacon_len = 42.0 + 64.0 + 8.0; // header + signature + typical body
        let mean = |f: &dyn Fn(&p2pa_node::core::Core) -> usize| {
            sim.nodes.iter().flatten().map(|c| f(c) as f64).sum::<f64>() / n as f64
        };
        let known = mean(&|c| c.peers(sim.now).len());
        let sessions = mean(&|c| c.connected_peers().len());
        let table = mean(&|c| c.peer_table_bytes());
        println!(
            "| {n} | {per_node_sent:.2} | {per_node_recv:.1} | {:.0} | {known:.0} | {sessions:.1} | {:.1} KiB |",
            per_node_recv * beacon_len,
            table / 1024.0
        );
    }
}
