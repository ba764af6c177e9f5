//! Task inputs and outputs beyond a frame, simulated: they travel as blobs,
//! a worker holds only the inputs its buffer allows (the next ones arrive
//! while the current ones run), and every byte lent or fetched is freed when
//! its task ends or its peer leaves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::Duration;

use p2pa_node::core::{sha256, Config, TaskRequest};
use p2pa_node::protocol::{KindSet, TaskKind, TaskStatus};
use p2pa_node::sim::{requester_at_zero, Sim};

const MIB: usize = 1 << 20;

fn big(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8 ^ salt).collect()
}

fn echo(input: Vec<u8>, secs: u64) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Echo,
        input: input.into(),
        model: None,
        timeout: Duration::from_secs(secs),
        peer: None,
        needs: 0,
    }
}

#[test]
fn a_large_input_and_output_round_trip_and_nothing_stays_lent() {
    let mut sim = Sim::new(2, 41, 0, |i| requester_at_zero(i, 2, KindSet::default()));
    sim.run_until(Duration::from_secs(1));
    let input = big(3 * MIB + 5, 1);
    sim.submit(0, echo(input.clone(), 30));
    sim.run_until(Duration::from_secs(5));
    assert_eq!(sim.outcomes.len(), 1);
    let o = &sim.outcomes[0].1;
    assert_eq!(o.status, TaskStatus::Completed, "{o:?}");
    assert!(o.output == input, "the output came back whole");
    let r = o.receipt.unwrap();
    assert_eq!((r.input, r.output), (sha256(&input), sha256(&input)));
    for i in 0..2 {
        let c = sim.core(i);
        assert_eq!((c.lent_bytes(), c.fetching_bytes()), (0, 0), "node {i}");
        assert_eq!(c.held_input_bytes(), 0, "node {i}");
    }
}

#[test]
fn a_worker_holds_inputs_within_its_buffer_and_runs_them_all() {
    let budget = 3 * MIB as u64;
    let mut sim = Sim::new(2, 42, 0, |i| Config {
        input_buffer_bytes: budget,
        ..requester_at_zero(i, 1, KindSet::default())
    });
    sim.run_until(Duration::from_secs(1));
    for k in 0..8 {
        sim.submit(0, echo(big(MIB, k), 60));
    }
    let mut most = 0;
    let mut t = Duration::from_secs(1);
    while sim.outcomes.len() < 8 && t < Duration::from_secs(20) {
        t += Duration::from_millis(1);
        sim.run_until(t);
        most = most.max(sim.core(1).held_input_bytes());
    }
    assert_eq!(sim.outcomes.len(), 8, "every task ran");
    assert!(sim.all_completed(), "{:?}", sim.outcomes);
    assert!(most <= budget, "held {most} bytes, budget {budget}");
    assert!(
        most >= 2 * MIB as u64,
        "the next inputs were fetched ahead: {most}"
    );
}

#[test]
fn a_requester_that_leaves_mid_transfer_frees_what_the_worker_held() {
    let mut sim = Sim::new(2, 43, 0, |i| requester_at_zero(i, 1, KindSet::default()));
    sim.run_until(Duration::from_secs(1));
    sim.submit(0, echo(big(4 * MIB, 3), 30));
    let mut t = Duration::from_secs(1);
    while sim.core(1).fetching_bytes() < MIB {
        t += Duration::from_micros(200);
        sim.run_until(t);
        assert!(t < Duration::from_secs(3), "the fetch never started");
    }
    sim.kill(0);
    sim.run_until(t + Duration::from_secs(3));
    let w = sim.core(1);
    assert_eq!(
        (w.fetching_bytes(), w.held_input_bytes(), w.lent_bytes()),
        (0, 0, 0)
    );
}

#[test]
fn two_requesters_sending_the_same_input_both_get_the_output() {
    let mut sim = Sim::new(3, 44, 0, |i| Config {
        input_buffer_bytes: MIB as u64, // one input at a time
        ..requester_at_zero(if i == 2 { 1 } else { 0 }, 1, KindSet::default())
    });
    sim.run_until(Duration::from_secs(1));
    let input = big(2 * MIB, 9);
    sim.submit(0, echo(input.clone(), 30));
    sim.submit(1, echo(input.clone(), 30));
    sim.run_until(Duration::from_secs(8));
    assert_eq!(sim.outcomes.len(), 2);
    for (node, o) in &sim.outcomes {
        assert_eq!(o.status, TaskStatus::Completed, "node {node}: {o:?}");
        assert!(o.output == input, "node {node} got the whole output");
    }
    assert_eq!(sim.core(2).lent_bytes(), 0, "both fetched their copy");
}

#[test]
fn outputs_not_fetched_yet_hold_back_the_next_jobs() {
    let buffer = 2 * MIB as u64;
    let mut sim = Sim::new(2, 45, 0, |i| Config {
        output_buffer_bytes: buffer,
        ..requester_at_zero(i, 1, KindSet::default())
    });
    sim.run_until(Duration::from_secs(1));
    for k in 0..6 {
        sim.submit(0, echo(big(MIB, 20 + k), 60));
    }
    let mut most = 0;
    let mut t = Duration::from_secs(1);
    while sim.outcomes.len() < 6 && t < Duration::from_secs(20) {
        t += Duration::from_millis(1);
        sim.run_until(t);
        most = most.max(sim.core(1).lent_bytes());
    }
    assert_eq!(sim.outcomes.len(), 6, "every task ran");
    assert!(sim.all_completed());
    // The buffer, plus the output of the one job started below it.
    assert!(most as u64 <= buffer + MIB as u64, "lent {most} bytes");
}

#[test]
fn a_requester_with_a_backlog_of_inputs_does_not_keep_another_waiting_behind_it() {
    let mut sim = Sim::new(3, 46, 0, |i| Config {
        input_buffer_bytes: 2 * MIB as u64,
        ..requester_at_zero(if i == 2 { 1 } else { 0 }, 1, KindSet::default())
    });
    sim.run_until(Duration::from_secs(1));
    for k in 0..6 {
        sim.submit(0, echo(big(MIB, 30 + k), 60));
    }
    sim.run_until(Duration::from_millis(1002));
    sim.submit(1, echo(big(MIB, 40), 60));
    sim.run_until(Duration::from_secs(20));
    assert_eq!(sim.outcomes.len(), 7, "every task ran");
    assert!(sim.all_completed());
    // The buffer holds two inputs; node 1's goes in as soon as one of node
    // 0's starts, instead of after all six.
    let place = sim.outcomes.iter().position(|(n, _)| *n == 1).unwrap();
    assert!(place <= 3, "node 1's task finished {}th of 7", place + 1);
}

#[test]
fn a_requester_that_never_fetches_its_outputs_does_not_hold_back_the_others() {
    let buffer = 2 * MIB as u64;
    let mut sim = Sim::new(3, 47, 0, |i| Config {
        output_buffer_bytes: buffer,
        input_buffer_bytes: 8 * MIB as u64,
        dead_after: Duration::from_secs(60),
        ..requester_at_zero(if i == 2 { 1 } else { 0 }, 1, KindSet::default())
    });
    sim.run_until(Duration::from_secs(1));
    for k in 0..4 {
        sim.submit(0, echo(big(MIB, 50 + k), 60));
    }
    // Node 0 goes quiet once its first output waits on the worker: it never
    // fetches it, nor the ones after.
    let mut t = Duration::from_secs(1);
    while sim.core(2).lent_bytes() == 0 {
        t += Duration::from_micros(100);
        sim.run_until(t);
        assert!(t < Duration::from_secs(3), "no output was lent");
    }
    sim.mute = vec![0];
    for k in 0..2 {
        sim.submit(1, echo(big(MIB, 60 + k), 5));
    }
    sim.run_until(t + Duration::from_secs(4));
    let served: Vec<_> = sim.outcomes.iter().filter(|(n, _)| *n == 1).collect();
    assert_eq!(served.len(), 2, "node 1 was served: {:?}", sim.outcomes);
    assert!(served
        .iter()
        .all(|(_, o)| o.status == TaskStatus::Completed));
    // Node 0 holds at most half the buffer plus the output of the job that
    // started below it.
    let held = sim.core(2).lent_bytes() as u64;
    assert!(held <= buffer / 2 + MIB as u64, "lent {held} bytes");
}
