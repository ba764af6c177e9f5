//! Models travel peer to peer, simulated: a worker fetches a model it lacks
//! from the requester in chunks, verifies it, advertises it, and resumes a
//! fetch from another requester when the first one dies. Bad models are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::Arc;
use std::time::Duration;

use p2pa_node::core::{sha256, Config, TaskError, TaskRequest, TaskState};
use p2pa_node::protocol::{KindSet, RejectReason, TaskKind, TaskStatus, BLOB_CHUNK_LEN};
use p2pa_node::sim::Sim;

fn cfg(worker: bool) -> Config {
    Config {
        kinds: if worker {
            KindSet::default().with(TaskKind::Infer)
        } else {
            KindSet::default()
        },
        ..Config::default()
    }
}

fn model(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn infer(model: [u8; 32], timeout_ms: u64) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Infer,
        input: b"x".to_vec().into(),
        model: Some(model),
        timeout: Duration::from_millis(timeout_ms),
        peer: None,
        needs: 0,
    }
}

#[test]
fn a_worker_fetches_a_missing_model_in_chunks_verifies_it_and_advertises_it() {
    let mut sim = Sim::new(2, 21, 0, |i| cfg(i == 1));
    sim.run_until(Duration::from_secs(1));
    let bytes = model(3 * BLOB_CHUNK_LEN + 123);
    let hash = sha256(&bytes);
    sim.core(0).provide_model(hash, Arc::from(bytes.clone()));
    sim.submit(0, infer(hash, 10_000));
    sim.run_until(Duration::from_secs(3));
    assert_eq!(sim.outcomes.len(), 1);
    let o = &sim.outcomes[0].1;
    assert_eq!(o.status, TaskStatus::Completed, "{o:?}");
    assert_eq!(o.output, b"inferred:x");
    assert_eq!(sim.fetched, vec![(1, hash, bytes.len())]);
    assert_eq!(sim.core(1).stats().blob_bytes_fetched, bytes.len() as u64);
    // The worker now advertises the model; a second task needs no transfer.
    sim.run_until(Duration::from_secs(6));
    let now = sim.now;
    let peers = sim.core(0).peers(now);
    assert!(
        peers[0].caps.models.contains(&hash),
        "model advertised in beacons"
    );
    sim.submit(0, infer(hash, 10_000));
    sim.run_until(Duration::from_secs(7));
    assert_eq!(sim.outcomes.len(), 2);
    assert_eq!(
        sim.core(1).stats().blob_bytes_fetched,
        bytes.len() as u64,
        "fetched once"
    );
}

/// A worker advertises how long it takes per model (its mean run time),
/// so a requester that has sent it nothing yet still sees how fast it is;
/// a model it never ran says nothing.
#[test]
fn a_worker_advertises_its_measured_run_time_per_model() {
    let mut sim = Sim::new(2, 23, 0, |i| cfg(i == 1));
    sim.job_time.insert(1, Duration::from_millis(40));
    sim.run_until(Duration::from_secs(1));
    let ran = sha256(&model(1000));
    sim.core(0).provide_model(ran, Arc::from(model(1000)));
    for _ in 0..3 {
        sim.submit(0, infer(ran, 10_000));
    }
    // The requester holds a model the worker never ran.
    let idle = sha256(&model(2000));
    sim.run_until(Duration::from_secs(3));
    assert_eq!(sim.outcomes.len(), 3);
    assert!(sim.all_completed());
    sim.run_until(Duration::from_secs(8)); // a beacon after the tasks
    let now = sim.now;
    let caps = &sim.core(0).peers(now)[0].caps;
    assert!(caps.models.contains(&ran), "{caps:?}");
    assert_eq!(caps.run_time_us(&ran), Some(40_000), "{caps:?}");
    assert_eq!(caps.run_time_us(&idle), None, "never on the worker");
    let me = &sim.core(1).peers(now)[0].caps;
    assert_eq!(me.run_time_us(&ran), None, "the requester ran nothing");
}

#[test]
fn a_model_whose_bytes_do_not_match_its_hash_is_refused() {
    let mut sim = Sim::new(2, 22, 0, |i| cfg(i == 1));
    sim.run_until(Duration::from_secs(1));
    let claimed = sha256(b"the real model");
    sim.core(0).provide_model(claimed, Arc::from(model(5000)));
    sim.submit(0, infer(claimed, 5_000));
    sim.run_until(Duration::from_secs(7));
    assert_eq!(sim.outcomes.len(), 1);
    let o = &sim.outcomes[0].1;
    assert_ne!(o.status, TaskStatus::Completed);
    let why = format!("{:?} {}", o.error, String::from_utf8_lossy(&o.output));
    assert!(why.contains("refused"), "{why}");
    assert!(sim.fetched.is_empty(), "nothing stored");
}

#[test]
fn a_model_larger_than_the_cache_limit_is_refused_with_a_clear_reason() {
    let mut sim = Sim::new(2, 23, 0, |i| Config {
        model_cache_bytes: 1000,
        ..cfg(i == 1)
    });
    sim.run_until(Duration::from_secs(1));
    let bytes = model(5000);
    let hash = sha256(&bytes);
    sim.core(0).provide_model(hash, Arc::from(bytes));
    sim.submit(0, infer(hash, 2_000));
    sim.run_until(Duration::from_secs(4));
    let o = &sim.outcomes[0].1;
    assert_ne!(o.status, TaskStatus::Completed);
    let rejected_over_budget = |e: &TaskError| {
        matches!(
            e,
            TaskError::Rejected {
                reason: RejectReason::OverBudget,
                ..
            }
        )
    };
    match &o.error {
        Some(TaskError::TimedOut {
            last: Some(last), ..
        }) => {
            assert!(rejected_over_budget(last), "{o:?}")
        }
        other => panic!("expected a timeout after OverBudget rejections: {other:?}"),
    }
    assert_eq!(sim.core(1).stats().blob_bytes_fetched, 0);
}

#[test]
fn a_fetch_resumes_from_another_requester_when_the_first_dies() {
    // Node 0 and 2 request, node 1 works.
    let mut sim = Sim::new(3, 24, 0, |i| cfg(i == 1));
    sim.run_until(Duration::from_secs(1));
    let bytes = model(8 * BLOB_CHUNK_LEN);
    let hash = sha256(&bytes);
    for r in [0, 2] {
        sim.core(r).provide_model(hash, Arc::from(bytes.clone()));
    }
    sim.submit(0, infer(hash, 20_000));
    // Let a few chunks through, then kill the first requester.
    let mut t = Duration::from_secs(1);
    while sim.core(1).stats().blob_bytes_fetched < 2 * BLOB_CHUNK_LEN as u64 {
        t += Duration::from_micros(100);
        sim.run_until(t);
        assert!(t < Duration::from_secs(3));
    }
    sim.submit(2, infer(hash, 20_000));
    sim.kill(0);
    let fetched_before = sim.core(1).stats().blob_bytes_fetched;
    assert!(fetched_before < bytes.len() as u64, "killed mid-transfer");
    sim.run_until(Duration::from_secs(8));
    let done: Vec<_> = sim.outcomes.iter().filter(|(n, _)| *n == 2).collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1.status, TaskStatus::Completed, "{:?}", done[0].1);
    assert_eq!(
        sim.core(1).stats().blob_bytes_fetched,
        bytes.len() as u64,
        "resumed, not restarted"
    );
    assert_eq!(sim.fetched, vec![(1, hash, bytes.len())]);
}

/// Node 0 serves a 64-chunk model and asks node 1 to infer with it; runs
/// until node 1 holds two chunks of it (the fetch asks for 8 at a time).
fn fetch_under_way(sim: &mut Sim, timeout_ms: u64) {
    sim.run_until(Duration::from_secs(1));
    let bytes = model(64 * BLOB_CHUNK_LEN);
    let hash = sha256(&bytes);
    sim.core(0).provide_model(hash, Arc::from(bytes));
    sim.submit(0, infer(hash, timeout_ms));
    while sim.core(1).fetching_bytes() < 2 * BLOB_CHUNK_LEN {
        let t = sim.now - sim.start + Duration::from_micros(100);
        sim.run_until(t);
        assert!(t < Duration::from_secs(3), "the fetch never started");
    }
}

#[test]
fn a_fetch_nobody_waits_for_is_freed_when_its_source_leaves() {
    let mut sim = Sim::new(2, 31, 0, |i| cfg(i == 1));
    fetch_under_way(&mut sim, 10_000);
    sim.kill(0);
    sim.run_until(Duration::from_secs(3));
    assert_eq!(
        sim.core(1).fetching_bytes(),
        0,
        "the partial model was freed"
    );
}

#[test]
fn a_stalled_fetch_is_given_up_and_freed() {
    let mut sim = Sim::new(2, 32, 0, |i| Config {
        fetch_stall: Duration::from_secs(2),
        ..cfg(i == 1)
    });
    fetch_under_way(&mut sim, 30_000);
    sim.mute = vec![0]; // the requester goes quiet, its session stays up for now
    let t = sim.now - sim.start;
    sim.run_until(t + Duration::from_millis(100)); // chunks already sent land
    let held = sim.core(1).fetching_bytes();
    assert!(held < 64 * BLOB_CHUNK_LEN, "the fetch is incomplete");
    sim.run_until(t + Duration::from_millis(1500));
    assert_eq!(
        sim.core(1).fetching_bytes(),
        held,
        "still waiting within fetch_stall"
    );
    sim.run_until(t + Duration::from_millis(2600));
    assert_eq!(
        sim.core(1).fetching_bytes(),
        0,
        "given up after fetch_stall"
    );
    assert!(sim
        .core(1)
        .job_states()
        .iter()
        .all(|(_, _, s)| *s == TaskState::Failed));
}

#[test]
fn model_fetches_in_flight_are_bounded_in_total() {
    let mut sim = Sim::new(3, 33, 0, |i| Config {
        max_fetch_bytes: 5 * BLOB_CHUNK_LEN as u64,
        ..cfg(i == 2)
    });
    sim.run_until(Duration::from_secs(1));
    let (a, b) = (model(4 * BLOB_CHUNK_LEN), model(4 * BLOB_CHUNK_LEN + 1));
    let (ha, hb) = (sha256(&a), sha256(&b));
    sim.core(0).provide_model(ha, Arc::from(a));
    sim.core(1).provide_model(hb, Arc::from(b));
    sim.submit(0, infer(ha, 5_000));
    sim.submit(1, infer(hb, 5_000));
    let mut most = 0;
    let t0 = sim.now - sim.start;
    for step in 1..=3000u32 {
        sim.run_until(t0 + Duration::from_micros(100) * step);
        most = most.max(sim.core(2).fetching_bytes());
    }
    sim.run_until(Duration::from_secs(5));
    assert!(most <= 5 * BLOB_CHUNK_LEN, "held {most} bytes");
    assert!(most > 3 * BLOB_CHUNK_LEN, "a fetch was in flight: {most}");
    // The second fetch did not fit beside the first: its task failed there
    // once and was retried, after the first model had landed.
    assert_eq!(sim.outcomes.len(), 2);
    assert!(sim.all_completed());
    assert!(
        sim.outcomes.iter().any(|(_, o)| o.attempts > 1),
        "{:?}",
        sim.outcomes
    );
}

#[test]
fn one_peer_holds_at_most_half_of_the_fetch_budget_with_its_models() {
    let mut sim = Sim::new(3, 34, 0, |i| Config {
        max_fetch_bytes: 10 * BLOB_CHUNK_LEN as u64,
        ..cfg(i == 2)
    });
    sim.run_until(Duration::from_secs(1));
    let models: Vec<Vec<u8>> = (0..3).map(|k| model(4 * BLOB_CHUNK_LEN + k)).collect();
    let hashes: Vec<[u8; 32]> = models.iter().map(|m| sha256(m)).collect();
    // Node 0 asks for two models at once, node 1 for a third a little later.
    sim.core(0)
        .provide_model(hashes[0], Arc::from(models[0].clone()));
    sim.core(0)
        .provide_model(hashes[1], Arc::from(models[1].clone()));
    sim.core(1)
        .provide_model(hashes[2], Arc::from(models[2].clone()));
    sim.submit(0, infer(hashes[0], 5_000));
    sim.submit(0, infer(hashes[1], 5_000));
    sim.run_until(Duration::from_millis(1005));
    sim.submit(1, infer(hashes[2], 5_000));
    sim.run_until(Duration::from_secs(6));
    assert_eq!(sim.outcomes.len(), 3);
    assert!(sim.all_completed(), "{:?}", sim.outcomes);
    // Node 0's second model did not fit beside its first (4 + 4 chunks over
    // its half of 10), which left room for node 1's on the first try.
    let other = sim.outcomes.iter().find(|(n, _)| *n == 1).unwrap();
    assert_eq!(other.1.attempts, 1, "{:?}", sim.outcomes);
    assert!(
        sim.outcomes.iter().any(|(n, o)| *n == 0 && o.attempts > 1),
        "{:?}",
        sim.outcomes
    );
}
