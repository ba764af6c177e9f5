//! The worker alone: a fake link, fake blob facts, no `Core`.

#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

use std::time::{Duration, Instant};

use p2pa_protocol::{
    Budget, FailReason, Hash32, KindSet, NodeId, RejectReason, TaskInput, TaskKind, TaskOffer,
    TaskStatus,
};

use super::{Admitted, BlobFacts, Lend, Worker};
use crate::core::config::{Config, WorkerConfig, MAX_INLINE_TENSOR};
use crate::core::ids::JobId;
use crate::core::link::fake::{FakeLink, Sent};
use crate::core::output::Order;
use crate::core::receipt::sha256;
use crate::core::state::TaskState;
use crate::core::tally::Tally;

/// The blobs part as the worker sees it: models held, outputs lent.
#[derive(Default)]
struct Facts {
    held: Vec<Hash32>,
    lent: Vec<(NodeId, u64)>,
}

impl BlobFacts for Facts {
    fn holds(&self, hash: &Hash32) -> bool {
        self.held.contains(hash)
    }

    fn models(&self, n: usize) -> Vec<Hash32> {
        self.held.iter().rev().take(n).copied().collect()
    }

    fn lent_outputs(&self) -> Tally {
        self.lent.iter().copied().collect()
    }
}

fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn offer<'a>(task_id: u64, kind: TaskKind, input: &'a [u8]) -> TaskOffer<'a> {
    TaskOffer {
        task_id,
        kind,
        input: TaskInput::Inline(input),
        model: None,
        deadline_ms: 5_000,
        budget: Budget {
            max_output_len: 1 << 24,
            max_model_len: 0,
        },
    }
}

/// A node that runs sleep jobs on one slot (nothing inline).
fn sleeper() -> Config {
    Config {
        kinds: KindSet::default()
            .with(TaskKind::Sleep)
            .with(TaskKind::Infer),
        ..Config::default()
    }
}

/// A worker, its link and the blob facts it sees, at one time.
struct Bench {
    t0: Instant,
    cfg: Config,
    facts: Facts,
    w: FakeLink,
    worker: Worker,
}

impl Bench {
    fn new(cfg: Config, peers: &[NodeId]) -> Self {
        Self {
            t0: Instant::now(),
            cfg: cfg.clone(),
            facts: Facts::default(),
            w: FakeLink::with(peers),
            worker: Worker::new(WorkerConfig::from(&cfg)),
        }
    }

    fn admit(&mut self, peer: NodeId, o: &TaskOffer<'_>) -> Option<Admitted> {
        (self.worker).admit(self.t0, false, peer, o, &self.facts, &mut self.w)
    }

    /// Admits a sleep job of `peer` that must be taken.
    fn sleep(&mut self, peer: NodeId, task_id: u64) -> JobId {
        self.admit(peer, &offer(task_id, TaskKind::Sleep, b"1"))
            .unwrap()
            .job
    }

    /// Starts what can start: the jobs handed to the shell, (job, inline).
    fn start(&mut self) -> Vec<(JobId, bool)> {
        (self.worker).start_jobs(&self.facts, &mut self.w);
        self.executed()
    }

    fn executed(&mut self) -> Vec<(JobId, bool)> {
        let events = std::mem::take(&mut self.w.out.orders);
        (events.into_iter())
            .filter_map(|e| match e {
                Order::Execute { job, inline, .. } => Some((job, inline)),
                _ => None,
            })
            .collect()
    }

    fn abandoned(&mut self) -> Vec<JobId> {
        let events = std::mem::take(&mut self.w.out.orders);
        (events.into_iter())
            .filter_map(|e| match e {
                Order::Abandon { job } => Some(job),
                _ => None,
            })
            .collect()
    }

    fn done(&mut self, job: JobId, status: TaskStatus, output: &[u8]) -> Option<Lend> {
        let ran = Duration::from_millis(30);
        self.worker
            .job_done(job, ((status, None), output, ran), &mut self.w)
    }

    fn timers(&mut self, after: Duration) {
        let now = self.t0 + after;
        (self.worker).timers(now, &self.facts, &mut self.w);
    }

    /// The results sent since the last look: (requester, task, status).
    fn results(&mut self) -> Vec<(NodeId, u64, TaskStatus)> {
        let results = self.results_why();
        (results.into_iter())
            .map(|(p, t, s, _)| (p, t, s))
            .collect()
    }

    /// The same, with the reason each failure gave.
    fn results_why(&mut self) -> Vec<(NodeId, u64, TaskStatus, Option<FailReason>)> {
        (self.w.take().into_iter())
            .filter_map(|(p, s)| match s {
                Sent::Result {
                    task_id,
                    status,
                    reason,
                    ..
                } => Some((p, task_id, status, reason)),
                _ => None,
            })
            .collect()
    }

    /// The one refusal sent since the last look.
    fn refusal(&mut self) -> RejectReason {
        match self.w.take().as_slice() {
            [(_, Sent::Reject { reason, .. })] => *reason,
            other => panic!("expected one reject, got {other:?}"),
        }
    }
}

#[test]
fn a_small_echo_runs_inline_and_its_result_carries_the_output() {
    let mut b = Bench::new(Config::default(), &[id(1)]);
    let admitted = b.admit(id(1), &offer(7, TaskKind::Echo, b"hi")).unwrap();
    assert_eq!(admitted.fetch, None);
    assert_eq!(b.start(), vec![(admitted.job, true)]);
    assert_eq!(b.done(admitted.job, TaskStatus::Completed, b"hi"), None);
    let result = Sent::Result {
        task_id: 7,
        status: TaskStatus::Completed,
        reason: None,
        inline: Some(b"hi".to_vec()),
        blob: None,
    };
    assert_eq!(b.w.take(), vec![(id(1), result)]);
    assert!(!b.worker.serves(id(1)));
    assert_eq!(b.worker.work(&b.facts).completed, 1);
}

#[test]
fn an_output_too_large_for_a_frame_is_returned_to_lend_to_its_requester() {
    let mut b = Bench::new(sleeper(), &[id(1)]);
    let job = b.sleep(id(1), 3);
    assert_eq!(b.start(), vec![(job, false)]);
    let output = vec![5u8; MAX_INLINE_TENSOR + 1];
    let lend = b.done(job, TaskStatus::Completed, &output).unwrap();
    assert_eq!((lend.hash, lend.owner), (sha256(&output), id(1)));
    assert_eq!(&*lend.bytes, output.as_slice());
    let result = Sent::Result {
        task_id: 3,
        status: TaskStatus::Completed,
        reason: None,
        inline: None,
        blob: Some(lend.hash),
    };
    assert_eq!(b.w.take(), vec![(id(1), result)]);
}

#[test]
fn an_output_over_the_requesters_budget_fails_the_task_and_lends_nothing() {
    let mut b = Bench::new(sleeper(), &[id(1)]);
    let mut o = offer(4, TaskKind::Sleep, b"1");
    o.budget.max_output_len = 8;
    let job = b.admit(id(1), &o).unwrap().job;
    b.start();
    assert_eq!(b.done(job, TaskStatus::Completed, &[0u8; 9]), None);
    let why = Some(FailReason::OutputOverBudget);
    assert_eq!(b.results_why(), vec![(id(1), 4, TaskStatus::Failed, why)]);
}

#[test]
fn one_slot_runs_one_job_plus_the_prefetch_and_the_next_starts_when_one_ends() {
    let mut b = Bench::new(sleeper(), &[id(1)]);
    let jobs: Vec<JobId> = (1..=4).map(|t| b.sleep(id(1), t)).collect();
    // One slot and a prefetch of one: two handed to the shell.
    assert_eq!(b.start(), vec![(jobs[0], false), (jobs[1], false)]);
    assert_eq!(b.worker.work(&b.facts).queued, 2);
    assert_eq!(b.start(), vec![]);
    assert_eq!(b.done(jobs[0], TaskStatus::Completed, b"ok"), None);
    assert_eq!(b.start(), vec![(jobs[2], false)]);
}

#[test]
fn a_full_queue_refuses_busy_but_keeps_a_quarter_for_other_requesters() {
    let cfg = Config {
        workers: 0, // nothing starts: every job stays queued
        queue_len: 8,
        ..sleeper()
    };
    let mut b = Bench::new(cfg, &[id(1), id(2)]);
    let admit = |b: &mut Bench, peer, t| b.admit(peer, &offer(t, TaskKind::Sleep, b"1")).is_some();
    // A requester gets all but a quarter of 8 places.
    assert_eq!((1..=8).filter(|&t| admit(&mut b, id(1), t)).count(), 6);
    let refused: Vec<_> = b.w.take().into_iter().map(|(_, s)| s).collect();
    let busy = |task_id| Sent::Reject {
        task_id,
        reason: RejectReason::Busy,
    };
    assert_eq!(refused, vec![busy(7), busy(8)]);
    // The reserve is another requester's.
    assert!(admit(&mut b, id(2), 1));
    assert!(admit(&mut b, id(2), 2));
    assert!(!admit(&mut b, id(2), 3));
}

#[test]
fn offers_it_cannot_take_are_refused_with_the_reason() {
    let mut b = Bench::new(sleeper(), &[id(1)]);
    assert!(b.admit(id(1), &offer(1, TaskKind::Echo, b"x")).is_none());
    assert_eq!(b.refusal(), RejectReason::Unsupported);
    let o = offer(2, TaskKind::Sleep, b"x");
    assert!((b.worker.admit(b.t0, true, id(1), &o, &b.facts, &mut b.w)).is_none());
    assert_eq!(b.refusal(), RejectReason::ShuttingDown);
    let mut late = offer(3, TaskKind::Sleep, b"x");
    late.deadline_ms = u32::MAX;
    assert!(b.admit(id(1), &late).is_none());
    assert_eq!(b.refusal(), RejectReason::OverBudget);
    let mut huge = offer(4, TaskKind::Sleep, b"x");
    huge.input = TaskInput::Blob {
        hash: [1; 32],
        len: b.cfg.max_tensor_bytes + 1,
    };
    assert!(b.admit(id(1), &huge).is_none());
    assert_eq!(b.refusal(), RejectReason::OverBudget);
    b.sleep(id(1), 5);
    assert!(b.admit(id(1), &offer(5, TaskKind::Sleep, b"x")).is_none());
    assert_eq!(b.refusal(), RejectReason::Duplicate);
}

#[test]
fn an_infer_job_waits_for_its_model_says_so_and_starts_once_it_is_here() {
    let mut b = Bench::new(sleeper(), &[id(1)]);
    let model = [9u8; 32];
    let mut o = offer(6, TaskKind::Infer, b"tensor");
    o.model = Some(model);
    let admitted = b.admit(id(1), &o).unwrap();
    assert_eq!(admitted.fetch, Some(model));
    assert!(b.worker.wants_model(&model));
    assert_eq!(b.start(), vec![]);
    (b.worker).accept_if_waiting(admitted.job, &b.facts, &mut b.w);
    assert_eq!(b.w.take(), vec![(id(1), Sent::Accept { task_id: 6 })]);
    b.facts.held.push(model);
    assert_eq!(b.start(), vec![(admitted.job, false)]);
    // Its run time is what the worker advertises beside the model.
    assert_eq!(b.done(admitted.job, TaskStatus::Completed, b"y"), None);
    let caps = b.worker.capabilities(&b.facts);
    assert_eq!(caps.models.as_slice(), &[model]);
    assert_eq!(caps.run_us.as_slice(), &[30_000]);
}

#[test]
fn a_model_that_cannot_be_fetched_fails_the_jobs_waiting_for_it() {
    let mut b = Bench::new(sleeper(), &[id(1)]);
    let mut o = offer(8, TaskKind::Infer, b"tensor");
    o.model = Some([9u8; 32]);
    b.admit(id(1), &o).unwrap();
    (b.worker).fail_jobs_needing([9u8; 32], "no such model", &mut b.w);
    let why = Some(FailReason::Model);
    assert_eq!(b.results_why(), vec![(id(1), 8, TaskStatus::Failed, why)]);
    assert!(!b.worker.wants_model(&[9u8; 32]));
}

#[test]
fn a_job_past_its_deadline_is_answered_timeout_and_its_run_abandoned() {
    let mut b = Bench::new(sleeper(), &[id(1)]);
    let mut o = offer(2, TaskKind::Sleep, b"1");
    o.deadline_ms = 100;
    let job = b.admit(id(1), &o).unwrap().job;
    assert_eq!(b.start(), vec![(job, false)]);
    assert_eq!(
        b.worker.next_deadline(),
        Some(b.t0 + Duration::from_millis(100))
    );
    b.timers(Duration::from_millis(99));
    assert_eq!(b.results(), vec![]);
    b.timers(Duration::from_millis(100));
    assert_eq!(b.results(), vec![(id(1), 2, TaskStatus::Timeout)]);
    assert_eq!(b.abandoned(), vec![job]);
    // The executor's late report is dropped: no second result.
    assert_eq!(b.done(job, TaskStatus::Completed, b"late"), None);
    assert_eq!(b.results(), vec![]);
    assert_eq!(b.worker.next_deadline(), None);
}

#[test]
fn a_requester_that_goes_away_has_its_running_jobs_abandoned_and_the_slot_freed() {
    let mut b = Bench::new(sleeper(), &[id(1), id(2)]);
    let first = b.sleep(id(1), 1);
    b.sleep(id(1), 2);
    let other = b.sleep(id(2), 1);
    // Fair across requesters: one of each on the slot and the prefetch.
    assert_eq!(b.start(), vec![(first, false), (other, false)]);
    b.w.disconnect(id(1));
    b.worker.peer_down(id(1), &mut b.w);
    assert_eq!(b.abandoned(), vec![first]);
    // Its queued job is gone; its running one waits for the shell's report.
    let states = vec![
        (id(1), 1, TaskState::Cancelled),
        (id(2), 1, TaskState::Running),
    ];
    assert_eq!(b.worker.states(), states);
    assert_eq!(b.start(), vec![]);
    assert_eq!(b.done(first, TaskStatus::Completed, b"late"), None);
    assert_eq!(b.results(), vec![], "nothing goes to a requester that left");
    assert_eq!(b.worker.states(), vec![(id(2), 1, TaskState::Running)]);
}

#[test]
fn a_requester_with_outputs_unfetched_waits_while_others_start() {
    let mut b = Bench::new(sleeper(), &[id(1), id(2)]);
    b.facts.lent = vec![(id(1), b.cfg.output_buffer_bytes / 2)];
    let held_back = b.sleep(id(1), 1);
    assert!(b.worker.waits_for_output_room(&b.facts));
    assert_eq!(b.start(), vec![]);
    let other = b.sleep(id(2), 1);
    assert_eq!(b.start(), vec![(other, false)]);
    // Its outputs fetched, it starts.
    b.facts.lent.clear();
    assert_eq!(b.start(), vec![(held_back, false)]);
}

#[test]
fn a_cancelled_job_is_answered_cancelled_once_and_abandoned() {
    let mut b = Bench::new(sleeper(), &[id(1)]);
    let job = b.sleep(id(1), 5);
    b.start();
    b.worker.on_cancel(id(1), 5, &mut b.w);
    assert_eq!(b.results(), vec![(id(1), 5, TaskStatus::Cancelled)]);
    assert_eq!(b.abandoned(), vec![job]);
    b.worker.on_cancel(id(1), 5, &mut b.w);
    assert_eq!(b.results(), vec![]);
}

#[test]
fn a_failure_carries_the_executors_reason_and_a_reasonless_one_is_the_workers() {
    let mut b = Bench::new(sleeper(), &[id(1)]);
    let (first, second) = (b.sleep(id(1), 1), b.sleep(id(1), 2));
    b.start();
    let ran = Duration::ZERO;
    let task = (TaskStatus::Failed, Some(FailReason::Task));
    (b.worker).job_done(first, (task, b"not a number", ran), &mut b.w);
    (b.worker).job_done(second, ((TaskStatus::Failed, None), b"?", ran), &mut b.w);
    let sent = b.results_why();
    assert_eq!(
        sent,
        vec![
            (id(1), 1, TaskStatus::Failed, Some(FailReason::Task)),
            (id(1), 2, TaskStatus::Failed, Some(FailReason::Worker)),
        ]
    );
    // A completed job carries none, whatever the executor said.
    let third = b.sleep(id(1), 3);
    b.start();
    let odd = (TaskStatus::Completed, Some(FailReason::Task));
    (b.worker).job_done(third, (odd, b"ok", ran), &mut b.w);
    assert_eq!(
        b.results_why(),
        vec![(id(1), 3, TaskStatus::Completed, None)]
    );
}
