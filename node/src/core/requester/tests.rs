//! The requester alone, on a fake link: no `Core`.

#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
use super::*;
use crate::core::config::Config;
use crate::core::link::fake::{FakeLink, Sent};
use p2pa_protocol::KindSet;

fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn echo(timeout: Duration) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Echo,
        input: b"hello".to_vec().into(),
        model: None,
        timeout,
        peer: None,
        needs: 0,
    }
}

fn submit(r: &mut Requester, now: Instant, w: &mut FakeLink) -> u64 {
    let req = echo(Duration::from_secs(5));
    let hash = req.input.sha256();
    let len = req.input.len();
    r.submit(now, req, hash, len, 0, w)
}

fn offers(w: &mut FakeLink) -> Vec<(NodeId, u64)> {
    w.take()
        .into_iter()
        .filter_map(|(p, s)| match s {
            Sent::Offer { task_id } => Some((p, task_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_task_waits_for_a_capable_worker_and_is_offered_when_one_connects() {
    let (t0, cfg) = (Instant::now(), Config::default());
    let mut w = FakeLink::default();
    // Connected, but it runs only `hash`: not a worker for echo.
    w.connect(id(1), KindSet::default().with(TaskKind::Hash));
    let mut r = Requester::new(RequesterConfig::from(&cfg), 1);
    let task = submit(&mut r, t0, &mut w);
    assert!(offers(&mut w).is_empty());
    assert_eq!(r.state(task), Some(TaskState::Queued));
    w.connect(id(2), KindSet::default().with(TaskKind::Echo));
    r.peer_up(t0, &mut w);
    assert_eq!(offers(&mut w), vec![(id(2), task)]);
    assert_eq!(r.state(task), Some(TaskState::Running));
    assert!(r.uses(id(2)));
}

#[test]
fn a_worker_that_goes_away_has_its_task_offered_to_another() {
    let (t0, cfg) = (Instant::now(), Config::default());
    let mut w = FakeLink::default();
    let echo_kinds = KindSet::default().with(TaskKind::Echo);
    w.connect(id(1), echo_kinds);
    let mut r = Requester::new(RequesterConfig::from(&cfg), 1);
    let task = submit(&mut r, t0, &mut w);
    assert_eq!(offers(&mut w), vec![(id(1), task)]);
    w.connect(id(2), echo_kinds);
    w.disconnect(id(1));
    r.peer_down(t0, id(1), &mut w);
    assert_eq!(offers(&mut w), vec![(id(2), task)]);
    assert_eq!(r.stats.tasks_retried, 1);
    assert!(
        w.out.events.is_empty(),
        "no outcome yet: {:?}",
        w.out.events
    );
}

#[test]
fn a_task_no_worker_can_run_times_out_saying_so() {
    let (t0, cfg) = (Instant::now(), Config::default());
    let mut w = FakeLink::default();
    let mut r = Requester::new(RequesterConfig::from(&cfg), 1);
    let task = r.submit(t0, echo(Duration::from_millis(100)), [0; 32], 5, 0, &mut w);
    r.timers(t0 + Duration::from_millis(50), &mut w);
    assert!(w.out.events.is_empty());
    r.timers(t0 + Duration::from_millis(150), &mut w);
    let done: Vec<&TaskOutcome> = w
        .out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::TaskDone(o) => Some(&**o),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 1, "{:?}", w.out.events);
    assert_eq!(
        (done[0].task_id, done[0].status),
        (task, TaskStatus::Timeout)
    );
    assert!(
        matches!(
            done[0].error,
            Some(TaskError::TimedOut { no_peer: true, .. })
        ),
        "{:?}",
        done[0].error
    );
    assert_eq!(r.state(task), None);
}

/// Two tasks waiting on the same output blob (redundant workers that
/// agreed) both complete with its bytes: the last takes them, the first a
/// copy.
#[test]
fn an_output_blob_two_tasks_wait_for_ends_both_with_its_bytes() {
    let (t0, cfg) = (Instant::now(), Config::default());
    let mut w = FakeLink::default();
    w.connect(id(1), KindSet::default().with(TaskKind::Echo));
    w.connect(id(2), KindSet::default().with(TaskKind::Echo));
    let mut r = Requester::new(RequesterConfig::from(&cfg), 1);
    let tasks = [submit(&mut r, t0, &mut w), submit(&mut r, t0, &mut w)];
    let offered = offers(&mut w);
    assert_eq!(offered.len(), 2, "{offered:?}");
    let bytes = vec![7u8; 100_000];
    let hash = crate::core::receipt::sha256(&bytes);
    for &(worker, task) in &offered {
        let receipt = Receipt {
            task_id: task,
            requester: id(9),
            worker,
            status: TaskStatus::Completed,
            reason: None,
            model: [0; 32],
            input: [0; 32],
            output: hash,
            blob_len: Some(bytes.len() as u64),
            seq: 1,
            session: p2pa_protocol::SessionId {
                initiator: [0; 32],
                responder: [0; 32],
            },
            signature: p2pa_protocol::Signature64([0; 64]),
        };
        let pending = Pending {
            worker,
            status: TaskStatus::Completed,
            receipt,
            hash,
        };
        r.reqs.get_mut(&task).unwrap().pending = Some(pending);
    }
    assert!(r.wants_output(&hash));
    let mut credited = r.output_arrived(t0, &hash, bytes.clone(), &mut w);
    credited.sort();
    let mut workers: Vec<NodeId> = offered.iter().map(|(p, _)| *p).collect();
    workers.sort();
    assert_eq!(credited, workers);
    let mut done: Vec<(u64, &[u8])> = w
        .out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::TaskDone(o) => Some((o.task_id, o.output.as_slice())),
            _ => None,
        })
        .collect();
    done.sort();
    let mut want = tasks;
    want.sort();
    assert_eq!(done.len(), 2, "{:?}", w.out.events);
    for ((task, output), want) in done.iter().zip(want) {
        assert_eq!(*task, want);
        assert!(*output == bytes.as_slice(), "task {task}: wrong output");
    }
    assert!(!r.wants_output(&hash));
}
