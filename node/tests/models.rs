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

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Sim;
use p2pa_node::core::{sha256, Config, TaskError, TaskRequest};
use p2pa_node::protocol::{KindSet, RejectReason, TaskKind, TaskStatus, BLOB_CHUNK_LEN};

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
        input: b"x".to_vec(),
        model: Some(model),
        timeout: Duration::from_millis(timeout_ms),
        peer: None,
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
