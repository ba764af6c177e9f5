//! The simulation's golden fingerprint: fixed seeds, fixed scenarios, and a
//! digest of every byte the cores sent. A refactor that keeps behaviour keeps
//! `golden/simulation.txt` byte for byte; a deliberate change regenerates it
//! (`P2PA_BLESS=1 cargo test -p p2pa-node --test golden_simulation`) and says
//! why in its commit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use p2pa_node::core::{sha256, Config};
use p2pa_node::protocol::{KindSet, TaskKind};
use p2pa_node::sim::{echo_task, peer_list, requester_at_zero, Sim};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/simulation.txt");

fn report(out: &mut String, name: &str, sim: &mut Sim) {
    writeln!(out, "## {name}").unwrap();
    writeln!(
        out,
        "trace={:016x} datagrams={}",
        sim.trace, sim.datagrams_sent
    )
    .unwrap();
    for c in sim.nodes.iter().flatten() {
        writeln!(out, "{} peers={:?}", c.id().short(), peer_list(c)).unwrap();
        writeln!(out, "  {:?}", c.stats()).unwrap();
    }
    let mut outcomes: Vec<String> = sim
        .outcomes
        .iter()
        .map(|(n, o)| {
            format!(
                "node {n} task {:x} {} attempts={} worker={:?} out={}",
                o.task_id,
                o.status,
                o.attempts,
                o.worker.map(|w| w.short().to_string()),
                o.output.len()
            )
        })
        .collect();
    outcomes.sort();
    for o in outcomes {
        writeln!(out, "  {o}").unwrap();
    }
}

fn requester_and_workers(i: usize) -> Config {
    requester_at_zero(i, 2, KindSet::default().with(TaskKind::Infer))
}

fn fingerprint() -> String {
    let mut out = String::new();

    // Discovery of 20 nodes with 10 % datagram loss and reordering.
    let mut sim = Sim::new(20, 3, 10, |_| Config::default());
    sim.run_until(Duration::from_secs(10));
    report(&mut out, "20 nodes, 10 % loss", &mut sim);

    // Tasks survive a worker that dies mid-batch; one task is cancelled.
    let mut sim = Sim::new(4, 11, 0, requester_and_workers);
    sim.run_until(Duration::from_secs(1));
    let ids: Vec<u64> = (0..40).map(|k| sim.submit(0, echo_task(k))).collect();
    let now = sim.now;
    sim.core(0).cancel(now, ids[39]);
    sim.run_until(Duration::from_millis(1_003));
    sim.kill(2);
    sim.run_until(Duration::from_secs(20));
    report(
        &mut out,
        "4 nodes, a worker dies, a task is cancelled",
        &mut sim,
    );

    // A model travels in chunks from the requester to the workers.
    let mut sim = Sim::new(3, 21, 0, requester_and_workers);
    sim.run_until(Duration::from_secs(1));
    let model: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let hash = sha256(&model);
    sim.core(0).provide_model(hash, Arc::from(model));
    for k in 0..6u32 {
        let mut req = echo_task(k);
        req.kind = TaskKind::Infer;
        req.model = Some(hash);
        sim.submit(0, req);
    }
    sim.run_until(Duration::from_secs(5));
    report(&mut out, "3 nodes, a model is fetched", &mut sim);
    writeln!(
        out,
        "fetched={:?}",
        sim.fetched.iter().map(|f| (f.0, f.2)).collect::<Vec<_>>()
    )
    .unwrap();
    out
}

#[test]
fn the_simulation_matches_its_golden_fingerprint() {
    let got = fingerprint();
    if std::env::var_os("P2PA_BLESS").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
        return;
    }
    let want =
        std::fs::read_to_string(GOLDEN).expect("golden/simulation.txt (P2PA_BLESS=1 writes it)");
    assert!(
        got == want,
        "the simulation changed; if that is deliberate, regenerate with P2PA_BLESS=1 and say why in the commit\n--- want\n{want}\n--- got\n{got}"
    );
}
