//! The requester's side of the task exchange: pick a worker, offer, check the
//! receipt, retry elsewhere on failure, report each task exactly once. It
//! owns the tasks this node asked for; it reaches peers through a [`Link`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use p2pa_protocol::{
    Budget, Cancel, Hash32, Message, NodeId, Receipt, RejectReason, TaskInput, TaskKind, TaskOffer,
    TaskStatus,
};

mod results;

pub(crate) use results::Resulted;

use super::config::{RequesterConfig, MAX_INLINE_TENSOR};
use super::link::Link;
use super::observed::Observed;
use super::outcome::TaskOutcome;
use super::output::{bump, Event};
use super::reason::TaskError;
use super::state::TaskState;

/// Delay before offering a task again after a `Busy` or when no worker is free.
const RETRY_DELAY: Duration = Duration::from_millis(50);

/// A task to run on some peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    /// What to run.
    pub kind: TaskKind,
    /// Its input, hashed once where it was made (`bytes.into()` hashes it).
    pub input: super::Hashed,
    /// The model an `infer` task runs (served to workers that lack it).
    pub model: Option<[u8; 32]>,
    /// Time for the whole task, retries included.
    pub timeout: Duration,
    /// Only this peer may run it.
    pub peer: Option<NodeId>,
    /// Flags the worker must advertise beside the kind (an engine:
    /// [`p2pa_protocol::KindSet::ONNXRUNTIME`], [`p2pa_protocol::KindSet::TRACT`]); 0 for any worker.
    pub needs: u8,
}

/// A result whose output is a blob on its way from the worker.
#[derive(Debug, Clone, Copy)]
struct Pending {
    worker: NodeId,
    status: TaskStatus,
    receipt: Receipt,
    hash: Hash32,
}

#[derive(Debug)]
struct Req {
    /// The request (its input moved out into a lent blob when large).
    req: TaskRequest,
    input_hash: [u8; 32],
    input_len: usize,
    /// The answer, while its output blob is fetched.
    pending: Option<Pending>,
    started: Instant,
    deadline: Instant,
    /// Failures so far (bounded by `max_attempts`).
    failures: u32,
    offers: u32,
    /// Offers refused `Busy` (not counted in `offers`).
    busy: u32,
    /// Peers that failed or refused it.
    tried: Vec<NodeId>,
    /// Peers holding an offer now.
    offered: Vec<NodeId>,
    retry_at: Option<Instant>,
    last_error: Option<TaskError>,
    /// Size of the model this node serves for it (the offer's budget).
    model_len: u64,
    /// When the latest offer went out.
    offered_at: Option<Instant>,
    /// When the latest offer counts as stalled.
    attempt_until: Option<Instant>,
    /// The offers out have stalled: another worker may be asked too.
    stalled: bool,
    /// Tasks of ours the latest offer's worker held with it (it included).
    depth: u32,
}

/// A result as the router hands it over: who answered what.
#[derive(Debug)]
struct Answer<'a> {
    status: TaskStatus,
    /// Owned when it is a fetched blob's (moved into the outcome, not
    /// copied), borrowed from the result frame when inline.
    output: Cow<'a, [u8]>,
    worker: Option<NodeId>,
    receipt: Option<Receipt>,
    error: Option<TaskError>,
}

impl Answer<'_> {
    fn none(status: TaskStatus, error: TaskError) -> Self {
        Self {
            status,
            output: Cow::Borrowed(&[]),
            worker: None,
            receipt: None,
            error: Some(error),
        }
    }
}

/// What the requester counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequesterStats {
    pub(crate) tasks_retried: u64,
    pub(crate) results_rejected: u64,
}

/// The tasks this node requested and has not reported yet.
#[derive(Debug)]
pub(crate) struct Requester {
    cfg: RequesterConfig,
    pub(crate) stats: RequesterStats,
    next_task: u64,
    reqs: BTreeMap<u64, Req>,
    observed: Observed,
}

impl Requester {
    pub(crate) fn new(cfg: RequesterConfig, first_task_id: u64) -> Self {
        Self {
            cfg,
            stats: RequesterStats::default(),
            next_task: first_task_id,
            reqs: BTreeMap::new(),
            observed: Observed::default(),
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.reqs
            .values()
            .flat_map(|r| [Some(r.deadline), r.retry_at, r.attempt_until])
            .flatten()
            .min()
    }

    /// Whether a task of this node is with `peer` now (offered, or its
    /// output being fetched).
    pub(crate) fn uses(&self, peer: NodeId) -> bool {
        self.inflight_to(peer) > 0
            || (self.reqs.values()).any(|r| r.pending.is_some_and(|p| p.worker == peer))
    }

    fn inflight_to(&self, peer: NodeId) -> usize {
        self.reqs
            .values()
            .filter(|r| r.offered.contains(&peer))
            .count()
    }

    /// Queues a task and offers it if a worker is free. `input_hash` and
    /// `input_len` describe its input (which the router may have moved out
    /// into a lent blob); `model_len` is the size of the model this node
    /// serves for it (0 if none).
    pub(crate) fn submit(
        &mut self,
        now: Instant,
        req: TaskRequest,
        input_hash: [u8; 32],
        input_len: usize,
        model_len: u64,
        w: &mut dyn Link,
    ) -> u64 {
        let id = self.next_task;
        self.next_task = self.next_task.wrapping_add(1);
        let deadline = now.checked_add(req.timeout).unwrap_or(now);
        self.reqs.insert(
            id,
            Req {
                req,
                input_hash,
                input_len,
                pending: None,
                started: now,
                deadline,
                failures: 0,
                offers: 0,
                busy: 0,
                tried: Vec::new(),
                offered: Vec::new(),
                retry_at: Some(now),
                last_error: None,
                model_len,
                offered_at: None,
                depth: 1,
                attempt_until: None,
                stalled: false,
            },
        );
        self.dispatch(now, id, w);
        id
    }

    pub(crate) fn state(&self, task_id: u64) -> Option<TaskState> {
        self.reqs.get(&task_id).map(|r| {
            if r.offered.is_empty() {
                TaskState::Queued
            } else {
                TaskState::Running
            }
        })
    }

    /// Withdraws one task (`Cancelled`, with `why`).
    pub(crate) fn cancel(&mut self, now: Instant, task_id: u64, why: TaskError, w: &mut dyn Link) {
        if self.reqs.contains_key(&task_id) {
            self.finish(now, task_id, Answer::none(TaskStatus::Cancelled, why), w);
        }
    }

    /// Withdraws every task (shutdown).
    pub(crate) fn cancel_all(&mut self, now: Instant, w: &mut dyn Link) {
        let ids: Vec<u64> = self.reqs.keys().copied().collect();
        for id in ids {
            self.cancel(now, id, TaskError::ShutDown, w);
        }
    }

    /// The best peer for `r` now: untried first, then the one expected to
    /// finish it soonest: the tasks of ours it holds, plus this one, times
    /// its pace for this kind and model (what it showed so far; a worker
    /// that has not answered one yet gets the others' best, and, where
    /// there is another worker to choose, no more tasks than its free slots
    /// and one until it has), counting a missing
    /// model as one task more (so a worker without the model gets work, and
    /// fetches the model, as soon as the holders are busy, instead of the
    /// batch queueing on the holders); then fewest tasks per free slot and
    /// RTT. A task waits instead when a worker at its in-flight limit would
    /// still finish it sooner than any free one: a slow worker does not take
    /// the last tasks while a fast one is about to be free.
    fn pick(&self, r: &Req, w: &dyn Link) -> Option<NodeId> {
        type Key = (bool, u32, Duration, usize, bool, Duration, NodeId);
        let (kind, model) = (r.req.kind, r.req.model);
        let capable: Vec<_> = w
            .connected()
            .filter(|(id, caps, _)| {
                caps.takes(kind, r.req.needs)
                    && r.req.peer.is_none_or(|o| o == *id)
                    && !r.offered.contains(id)
            })
            .collect();
        let paces: Vec<Option<Duration>> = capable
            .iter()
            .map(|(id, _, _)| self.observed.pace(&(*id, kind, model)))
            .collect();
        let best_known = paces.iter().flatten().min().copied();
        let mut best: Option<Key> = None;
        let mut capped: Option<Duration> = None;
        for ((id, caps, rtt), pace) in capable.iter().zip(&paces) {
            let inflight = self.inflight_to(*id);
            let lacks_model = model.is_some_and(|m| !caps.models.contains(&m));
            let ahead = inflight
                .saturating_add(1)
                .saturating_add(usize::from(lacks_model));
            let each = pace.or(best_known).unwrap_or(Duration::ZERO);
            let finish = each.saturating_mul(u32::try_from(ahead).unwrap_or(u32::MAX));
            // Probing holds back only where there is a choice.
            let probing =
                pace.is_none() && capable.len() > 1 && inflight > usize::from(caps.free_slots);
            if inflight >= self.cfg.max_inflight_per_peer || probing {
                if pace.is_some() {
                    capped = Some(capped.map_or(finish, |c| c.min(finish)));
                }
                continue;
            }
            let load = inflight
                .saturating_mul(4)
                .checked_div(usize::from(caps.free_slots.max(1)))
                .unwrap_or(inflight)
                .saturating_add(if lacks_model { 4 } else { 0 });
            let key = (
                r.tried.contains(id),
                self.observed.strikes(*id),
                finish,
                load,
                lacks_model,
                rtt.unwrap_or(Duration::from_millis(1)),
                *id,
            );
            if best.as_ref().is_none_or(|b| key < *b) {
                best = Some(key);
            }
        }
        let best = best?;
        if capped.is_some_and(|c| c < best.2) && !best.0 {
            return None; // a faster worker frees up first
        }
        Some(best.6)
    }

    /// Offers task `id` to the best available peer, if any.
    fn dispatch(&mut self, now: Instant, id: u64, w: &mut dyn Link) {
        let Some(r) = self.reqs.get(&id) else {
            return;
        };
        if !r.offered.is_empty() && !r.stalled {
            return;
        }
        let Some(peer) = self.pick(r, w) else {
            if let Some(r) = self.reqs.get_mut(&id) {
                r.retry_at = now.checked_add(RETRY_DELAY);
            }
            return;
        };
        let len = r.input_len;
        let limit = self.cfg.max_tensor_bytes;
        if u64::try_from(len).unwrap_or(u64::MAX) > limit {
            let error = TaskError::InputTooLarge { len, limit };
            self.finish(now, id, Answer::none(TaskStatus::Failed, error), w);
            return;
        }
        let input = if len > MAX_INLINE_TENSOR {
            TaskInput::Blob {
                hash: r.input_hash,
                len: u64::try_from(len).unwrap_or(u64::MAX),
            }
        } else {
            TaskInput::Inline(r.req.input.bytes())
        };
        let remaining = r.deadline.saturating_duration_since(now);
        let model = r.req.model;
        let offer = Message::TaskOffer(TaskOffer {
            task_id: id,
            kind: r.req.kind,
            input,
            model,
            deadline_ms: u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX),
            budget: Budget {
                max_output_len: u32::try_from(limit).unwrap_or(u32::MAX),
                max_model_len: r.model_len,
            },
        });
        let sent = w.send_to(peer, &offer);
        let kind = r.req.kind;
        let depth = u32::try_from(self.inflight_to(peer))
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let Some(r) = self.reqs.get_mut(&id) else {
            return;
        };
        if sent {
            r.offered.push(peer);
            r.depth = depth;
            r.offers = r.offers.saturating_add(1);
            r.retry_at = None;
            r.offered_at = Some(now);
            r.stalled = false;
            let timeout = self.observed.attempt_timeout(kind, remaining);
            r.attempt_until = now.checked_add(timeout);
            log::debug!("offered task {id} ({kind}) to {}", peer.short());
        } else {
            r.retry_at = now.checked_add(RETRY_DELAY);
        }
    }

    /// A session came up: tasks waiting for a worker are offered again.
    pub(crate) fn peer_up(&mut self, now: Instant, w: &mut dyn Link) {
        let waiting: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.offered.is_empty())
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.dispatch(now, id, w);
        }
    }

    /// `peer`'s session ended: its tasks go elsewhere.
    pub(crate) fn peer_down(&mut self, now: Instant, peer: NodeId, w: &mut dyn Link) {
        let hit: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.offered.contains(&peer))
            .map(|(&id, _)| id)
            .collect();
        for id in hit {
            bump(&mut self.stats.tasks_retried);
            log::info!(
                "task {id}: worker {} went away; retrying elsewhere",
                peer.short()
            );
            let error = TaskError::WorkerGone { worker: peer };
            self.attempt_failed(now, (id, peer), TaskStatus::Failed, &[], error, w);
        }
    }

    /// One attempt (task, peer) failed: retry on another peer, or report
    /// the failure (after `max_attempts`, or at once when the worker said
    /// the task itself fails so).
    fn attempt_failed(
        &mut self,
        now: Instant,
        (id, peer): (u64, NodeId),
        status: TaskStatus,
        output: &[u8],
        error: TaskError,
        w: &mut dyn Link,
    ) {
        let Some(r) = self.reqs.get_mut(&id) else {
            return;
        };
        r.offered.retain(|p| *p != peer);
        if r.pending.is_some_and(|p| p.worker == peer) {
            r.pending = None;
        }
        if !r.tried.contains(&peer) {
            r.tried.push(peer);
        }
        r.failures = r.failures.saturating_add(1);
        let hopeless = error.is_the_tasks();
        r.last_error = Some(error);
        if r.failures >= self.cfg.max_attempts || hopeless {
            let answer = Answer {
                status,
                output: Cow::Borrowed(output),
                worker: Some(peer),
                receipt: None,
                error: r.last_error.clone(),
            };
            self.finish(now, id, answer, w);
        } else {
            r.retry_at = Some(now);
            self.dispatch(now, id, w);
        }
    }

    pub(crate) fn on_accept(&mut self, peer: NodeId, task_id: u64) {
        log::debug!("task {task_id} accepted by {}", peer.short());
    }

    pub(crate) fn on_reject(
        &mut self,
        now: Instant,
        peer: NodeId,
        task_id: u64,
        reason: RejectReason,
    ) {
        let Some(r) = self.reqs.get_mut(&task_id) else {
            return;
        };
        if !r.offered.contains(&peer) {
            return;
        }
        log::debug!("task {task_id} rejected by {}: {reason}", peer.short());
        r.offered.retain(|p| *p != peer);
        if reason == RejectReason::Busy {
            // Not an attempt: the worker did not take it.
            r.offers = r.offers.saturating_sub(1);
            r.busy = r.busy.saturating_add(1);
        } else if !r.tried.contains(&peer) {
            r.tried.push(peer);
        }
        r.last_error = Some(TaskError::Rejected {
            worker: peer,
            reason,
        });
        r.retry_at = now.checked_add(RETRY_DELAY);
    }

    /// Reports task `id` (once) and withdraws outstanding offers.
    fn finish(&mut self, now: Instant, id: u64, a: Answer<'_>, w: &mut dyn Link) {
        let Some(r) = self.reqs.remove(&id) else {
            return;
        };
        for p in r.offered.iter().filter(|p| Some(**p) != a.worker) {
            w.send_to(*p, &Message::Cancel(Cancel { task_id: id }));
        }
        let error = a
            .error
            .or(r.last_error.filter(|_| a.status != TaskStatus::Completed));
        w.out().event(Event::TaskDone(Box::new(TaskOutcome {
            task_id: id,
            status: a.status,
            output: a.output.into_owned(),
            worker: a.worker,
            receipt: a.receipt,
            attempts: r.offers,
            busy: r.busy,
            elapsed: now.saturating_duration_since(r.started),
            error,
        })));
    }

    /// Deadlines and retries.
    pub(crate) fn timers(&mut self, now: Instant, w: &mut dyn Link) {
        let expired: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            let Some(r) = self.reqs.get(&id) else {
                continue;
            };
            let (kind, needs) = (r.req.kind, r.req.needs);
            let capable = w.connected().any(|(_, caps, _)| caps.takes(kind, needs));
            let error = TaskError::TimedOut {
                no_peer: r.last_error.is_none() && !capable,
                last: r.last_error.clone().map(Box::new),
            };
            self.finish(now, id, Answer::none(TaskStatus::Timeout, error), w);
        }
        self.stalls(now);
        let due: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.offered.is_empty() || r.stalled)
            .filter(|(_, r)| r.retry_at.is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.dispatch(now, id, w);
        }
    }

    /// Attempts that did not answer in time: their workers get a strike and
    /// the task may go to another worker too (retried at once).
    fn stalls(&mut self, now: Instant) {
        for r in self.reqs.values_mut() {
            if r.attempt_until.is_none_or(|t| t > now) {
                continue;
            }
            r.attempt_until = None; // passed: never a deadline in the past
            if r.offered.is_empty() {
                continue; // refused meanwhile; retried on its own schedule
            }
            r.stalled = true;
            r.retry_at = Some(now);
            for p in &r.offered {
                self.observed.stalled(*p);
                if !r.tried.contains(p) {
                    r.tried.push(*p);
                }
                log::debug!(
                    "an attempt at {} stalled; asking another worker too",
                    p.short()
                );
            }
        }
    }

    /// A completion taught how long `kind` takes: attempts of that kind in
    /// flight get their stall time from it (the first ones had a guess).
    fn learned(&mut self, peer: NodeId, kind: TaskKind, took: Duration) {
        self.observed.completed(peer, kind, took);
        for r in self.reqs.values_mut().filter(|r| r.req.kind == kind) {
            if let (Some(at), Some(_)) = (r.offered_at, r.attempt_until) {
                let remaining = r.deadline.saturating_duration_since(at);
                let timeout = self.observed.attempt_timeout(kind, remaining);
                r.attempt_until = at.checked_add(timeout);
            }
        }
    }
}

#[cfg(test)]
mod tests;
