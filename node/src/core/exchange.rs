//! Task exchange, both roles. Requester: pick a worker, offer, verify the
//! receipt, retry elsewhere on failure, report each task exactly once.
//! Worker: bounded queue, `workers` jobs at once, deadlines, signed receipts.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use p2pa_protocol::{
    Budget, Cancel, Hash32, Message, NodeId, Receipt, RejectReason, Signature64, TaskAccept,
    TaskInput, TaskKind, TaskOffer, TaskReject, TaskResult, TaskStatus, MAX_BODY_LEN,
};

use super::{check_receipt, sha256, Config, ConnId, Core, Event, JobId, Noise};

/// Delay before offering a task again after a `Busy` or when no worker is free.
const RETRY_DELAY: Duration = Duration::from_millis(50);
/// Largest output a requester accepts by default.
const DEFAULT_MAX_OUTPUT: u32 = 60 * 1024;

/// A task to run on some peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    pub kind: TaskKind,
    pub input: Vec<u8>,
    pub model: Option<[u8; 32]>,
    /// Time for the whole task, retries included.
    pub timeout: Duration,
    /// Only this peer may run it.
    pub peer: Option<NodeId>,
}

/// How a task ended, reported once per task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    pub task_id: u64,
    pub status: TaskStatus,
    /// The worker's output (for `Failed`, its error message).
    pub output: Vec<u8>,
    /// Who ran it, if anyone answered.
    pub worker: Option<NodeId>,
    /// The worker's signed receipt, checked.
    pub receipt: Option<Receipt>,
    /// Offers made (1 when the first worker succeeded).
    pub attempts: u32,
    pub elapsed: Duration,
    /// Why it failed, when it did not come from a worker.
    pub error: Option<String>,
}

#[derive(Debug)]
struct Req {
    req: TaskRequest,
    started: Instant,
    deadline: Instant,
    /// Failures so far (bounded by `max_attempts`).
    failures: u32,
    offers: u32,
    /// Peers that failed or refused it.
    tried: Vec<NodeId>,
    /// Peers holding an offer now.
    offered: Vec<NodeId>,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

/// Where a task is in its life. Worker jobs go through all of these; a
/// requester's task is `Queued` until offered, then `Running` until reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    Running,
    Completed,
    Failed,
    Timeout,
    Cancelled,
}

impl TaskState {
    /// The final state for a result status.
    pub fn from_status(status: TaskStatus) -> Self {
        match status {
            TaskStatus::Completed => Self::Completed,
            TaskStatus::Failed => Self::Failed,
            TaskStatus::Timeout => Self::Timeout,
            TaskStatus::Cancelled => Self::Cancelled,
        }
    }

    /// Whether the task has its answer.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

#[derive(Debug)]
struct Job {
    peer: NodeId,
    task_id: u64,
    kind: TaskKind,
    input: Option<Vec<u8>>,
    input_hash: [u8; 32],
    model: Option<[u8; 32]>,
    deadline: Instant,
    max_output: u32,
    /// Queued → Running → a final state. Once final the requester has its
    /// answer, and a late result from the executor is dropped.
    state: TaskState,
}

#[derive(Debug)]
pub(crate) struct Exchange {
    next_task: u64,
    reqs: BTreeMap<u64, Req>,
    next_job: JobId,
    jobs: BTreeMap<JobId, Job>,
    queue: VecDeque<JobId>,
    running: usize,
}

impl Exchange {
    pub(crate) fn new(first_task_id: u64) -> Self {
        Self {
            next_task: first_task_id,
            reqs: BTreeMap::new(),
            next_job: 1,
            jobs: BTreeMap::new(),
            queue: VecDeque::new(),
            running: 0,
        }
    }

    pub(crate) fn free_slots(&self, cfg: &Config) -> u16 {
        let running = u16::try_from(self.running).unwrap_or(u16::MAX);
        cfg.workers.saturating_sub(running)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let reqs = self
            .reqs
            .values()
            .map(|r| r.retry_at.map_or(r.deadline, |t| t.min(r.deadline)));
        let jobs = self
            .jobs
            .values()
            .filter(|j| !j.state.is_final())
            .map(|j| j.deadline);
        reqs.chain(jobs).min()
    }

    fn inflight_to(&self, peer: NodeId) -> usize {
        self.reqs
            .values()
            .filter(|r| r.offered.contains(&peer))
            .count()
    }
}

impl Core {
    /// Queues a task for some peer; its outcome arrives as `Event::TaskDone`.
    pub fn submit(&mut self, now: Instant, req: TaskRequest) -> u64 {
        let id = self.exchange.next_task;
        self.exchange.next_task = self.exchange.next_task.wrapping_add(1);
        let deadline = now.checked_add(req.timeout).unwrap_or(now);
        self.exchange.reqs.insert(
            id,
            Req {
                req,
                started: now,
                deadline,
                failures: 0,
                offers: 0,
                tried: Vec::new(),
                offered: Vec::new(),
                retry_at: Some(now),
                last_error: None,
            },
        );
        self.dispatch(now, id);
        id
    }

    /// The state of a task this node requested, while it is not yet reported.
    pub fn task_state(&self, task_id: u64) -> Option<TaskState> {
        self.exchange.reqs.get(&task_id).map(|r| {
            if r.offered.is_empty() {
                TaskState::Queued
            } else {
                TaskState::Running
            }
        })
    }

    /// The state of each job this node runs for others, by (requester, task id).
    pub fn job_states(&self) -> Vec<(NodeId, u64, TaskState)> {
        self.exchange
            .jobs
            .values()
            .map(|j| (j.peer, j.task_id, j.state))
            .collect()
    }

    /// Withdraws a task: peers running it are told to stop; reported `Cancelled`.
    pub fn cancel(&mut self, now: Instant, task_id: u64) {
        if self.exchange.reqs.contains_key(&task_id) {
            self.finish(
                now,
                task_id,
                TaskStatus::Cancelled,
                Vec::new(),
                None,
                None,
                Some("cancelled".into()),
            );
        }
    }

    pub(super) fn exchange_cancel_all(&mut self, now: Instant) {
        let ids: Vec<u64> = self.exchange.reqs.keys().copied().collect();
        for id in ids {
            self.finish(
                now,
                id,
                TaskStatus::Cancelled,
                Vec::new(),
                None,
                None,
                Some("node shut down".into()),
            );
        }
    }

    /// Offers task `id` to the best available peer, if any.
    fn dispatch(&mut self, now: Instant, id: u64) {
        let Some(r) = self.exchange.reqs.get(&id) else {
            return;
        };
        if !r.offered.is_empty() {
            return;
        }
        let kind = r.req.kind;
        let only = r.req.peer;
        let mut best: Option<(bool, bool, usize, Duration, NodeId)> = None;
        for p in self.peers.values() {
            if p.conn.is_none() || !p.caps.kinds.contains(kind) || only.is_some_and(|o| o != p.id) {
                continue;
            }
            let inflight = self.exchange.inflight_to(p.id);
            if inflight >= self.cfg.max_inflight_per_peer {
                continue;
            }
            // Untried peers first, then those holding the model, then fewest
            // tasks per free slot, then RTT.
            let lacks_model = r.req.model.is_some_and(|m| !p.caps.models.contains(&m));
            let load = inflight
                .saturating_mul(4)
                .checked_div(usize::from(p.caps.free_slots.max(1)))
                .unwrap_or(inflight);
            let key = (
                r.tried.contains(&p.id),
                lacks_model,
                load,
                p.rtt.unwrap_or(Duration::from_millis(1)),
                p.id,
            );
            if best.as_ref().is_none_or(|b| key < *b) {
                best = Some(key);
            }
        }
        let Some((_, _, _, _, peer)) = best else {
            if let Some(r) = self.exchange.reqs.get_mut(&id) {
                r.retry_at = now.checked_add(RETRY_DELAY);
            }
            return;
        };
        let remaining = r.deadline.saturating_duration_since(now);
        let deadline_ms = u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX);
        if r.req.input.len() > MAX_BODY_LEN.saturating_sub(256) {
            let msg = format!(
                "input of {} bytes is larger than a frame can carry",
                r.req.input.len()
            );
            self.finish(
                now,
                id,
                TaskStatus::Failed,
                Vec::new(),
                None,
                None,
                Some(msg),
            );
            return;
        }
        // The offer borrows the input; copy it out so `self` can send.
        let (input, model) = (r.req.input.clone(), r.req.model);
        let offer = Message::TaskOffer(TaskOffer {
            task_id: id,
            kind,
            input: TaskInput::Inline(&input),
            model,
            deadline_ms,
            budget: Budget {
                max_output_len: DEFAULT_MAX_OUTPUT,
                max_model_len: model.and_then(|m| self.blobs.provided_len(&m)).unwrap_or(0),
            },
        });
        if self.send_to_peer(peer, &offer) {
            if let Some(r) = self.exchange.reqs.get_mut(&id) {
                r.offered.push(peer);
                r.offers = r.offers.saturating_add(1);
                r.retry_at = None;
            }
            log::debug!("offered task {id} ({kind}) to {}", peer.short());
        } else if let Some(r) = self.exchange.reqs.get_mut(&id) {
            r.retry_at = now.checked_add(RETRY_DELAY);
        }
    }

    pub(super) fn exchange_peer_up(&mut self, now: Instant) {
        let waiting: Vec<u64> = self
            .exchange
            .reqs
            .iter()
            .filter(|(_, r)| r.offered.is_empty())
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.dispatch(now, id);
        }
    }

    pub(super) fn exchange_peer_down(&mut self, now: Instant, peer: NodeId) {
        // Requester: tasks on that peer go elsewhere.
        let hit: Vec<u64> = self
            .exchange
            .reqs
            .iter()
            .filter(|(_, r)| r.offered.contains(&peer))
            .map(|(&id, _)| id)
            .collect();
        for id in hit {
            self.stats.tasks_retried = self.stats.tasks_retried.saturating_add(1);
            log::info!(
                "task {id}: worker {} went away; retrying elsewhere",
                peer.short()
            );
            self.attempt_failed(
                now,
                id,
                peer,
                TaskStatus::Failed,
                Vec::new(),
                "worker disconnected",
            );
        }
        self.blobs_peer_down(peer);
        // Worker: that requester's jobs are no longer wanted.
        let jobs: Vec<JobId> = self
            .exchange
            .jobs
            .iter()
            .filter(|(_, j)| j.peer == peer && !j.state.is_final())
            .map(|(&id, _)| id)
            .collect();
        for job in jobs {
            self.abandon(job);
        }
    }

    /// One peer failed the task: retry on another, or report the failure.
    fn attempt_failed(
        &mut self,
        now: Instant,
        id: u64,
        peer: NodeId,
        status: TaskStatus,
        output: Vec<u8>,
        why: &str,
    ) {
        let max = self.cfg.max_attempts;
        let Some(r) = self.exchange.reqs.get_mut(&id) else {
            return;
        };
        r.offered.retain(|p| *p != peer);
        if !r.tried.contains(&peer) {
            r.tried.push(peer);
        }
        r.failures = r.failures.saturating_add(1);
        r.last_error = Some(format!("{why} (worker {})", peer.short()));
        if r.failures >= max {
            let err = r.last_error.clone();
            self.finish(now, id, status, output, Some(peer), None, err);
        } else {
            r.retry_at = Some(now);
            self.dispatch(now, id);
        }
    }

    pub(super) fn on_accept(&mut self, _now: Instant, peer: NodeId, task_id: u64) {
        log::debug!("task {task_id} accepted by {}", peer.short());
    }

    pub(super) fn on_reject(
        &mut self,
        now: Instant,
        peer: NodeId,
        task_id: u64,
        reason: RejectReason,
    ) {
        let Some(r) = self.exchange.reqs.get_mut(&task_id) else {
            return;
        };
        if !r.offered.contains(&peer) {
            return;
        }
        log::debug!("task {task_id} rejected by {}: {reason}", peer.short());
        r.offered.retain(|p| *p != peer);
        if reason != RejectReason::Busy && !r.tried.contains(&peer) {
            r.tried.push(peer);
        }
        r.last_error = Some(format!("rejected by {}: {reason}", peer.short()));
        r.retry_at = now.checked_add(RETRY_DELAY);
    }

    pub(super) fn on_result(&mut self, now: Instant, peer: NodeId, res: &TaskResult<'_>) {
        let Some(r) = self.exchange.reqs.get(&res.task_id) else {
            return; // already reported (or never ours): exactly once
        };
        if !r.offered.contains(&peer) {
            return;
        }
        if let Err(why) = check_receipt(
            &res.receipt,
            self.id,
            peer,
            res.task_id,
            res.status,
            &r.req.input,
            res.output,
        ) {
            self.stats.results_rejected = self.stats.results_rejected.saturating_add(1);
            self.warn_once(
                Noise::BadResult,
                format_args!(
                    "task {}: result from {} refused: {why}",
                    res.task_id,
                    peer.short()
                ),
            );
            self.attempt_failed(now, res.task_id, peer, TaskStatus::Failed, Vec::new(), why);
            return;
        }
        match res.status {
            TaskStatus::Completed => {
                self.finish(
                    now,
                    res.task_id,
                    TaskStatus::Completed,
                    res.output.to_vec(),
                    Some(peer),
                    Some(res.receipt),
                    None,
                );
            }
            status => {
                let why = String::from_utf8_lossy(res.output).into_owned();
                self.attempt_failed(now, res.task_id, peer, status, res.output.to_vec(), &why);
            }
        }
    }

    /// Reports task `id` (once) and withdraws outstanding offers.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        now: Instant,
        id: u64,
        status: TaskStatus,
        output: Vec<u8>,
        worker: Option<NodeId>,
        receipt: Option<Receipt>,
        error: Option<String>,
    ) {
        let Some(r) = self.exchange.reqs.remove(&id) else {
            return;
        };
        for p in r.offered.iter().filter(|p| Some(**p) != worker) {
            self.send_to_peer(*p, &Message::Cancel(Cancel { task_id: id }));
        }
        self.events.push_back(Event::TaskDone(Box::new(TaskOutcome {
            task_id: id,
            status,
            output,
            worker,
            receipt,
            attempts: r.offers,
            elapsed: now.saturating_duration_since(r.started),
            error: error.or(r.last_error.filter(|_| status != TaskStatus::Completed)),
        })));
    }

    pub(super) fn exchange_timers(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .exchange
            .reqs
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            let why = self
                .exchange
                .reqs
                .get(&id)
                .and_then(|r| r.last_error.clone());
            let msg = match why {
                Some(w) => format!("timed out; last problem: {w}"),
                None if self.connected_peers().is_empty() => {
                    "timed out: no peer to run it".to_owned()
                }
                None => "timed out".to_owned(),
            };
            self.finish(
                now,
                id,
                TaskStatus::Timeout,
                Vec::new(),
                None,
                None,
                Some(msg),
            );
        }
        let due: Vec<u64> = self
            .exchange
            .reqs
            .iter()
            .filter(|(_, r)| r.offered.is_empty() && r.retry_at.is_some_and(|t| t <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.dispatch(now, id);
        }
        // Worker side: jobs past their deadline are answered `Timeout`.
        let late: Vec<JobId> = self
            .exchange
            .jobs
            .iter()
            .filter(|(_, j)| !j.state.is_final() && j.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for job in late {
            let msg = b"deadline passed before the task finished".to_vec();
            self.answer(job, TaskStatus::Timeout, &msg);
        }
        self.start_jobs();
    }

    // ---- worker side ----

    pub(super) fn on_offer(
        &mut self,
        now: Instant,
        _conn: ConnId,
        peer: NodeId,
        offer: &TaskOffer<'_>,
    ) {
        let reject = |reason| {
            Message::TaskReject(TaskReject {
                task_id: offer.task_id,
                reason,
            })
        };
        let ex = &self.exchange;
        let reason = if self.shutting_down {
            Some(RejectReason::ShuttingDown)
        } else if !self.cfg.kinds.contains(offer.kind) {
            Some(RejectReason::Unsupported)
        } else if ex
            .jobs
            .values()
            .any(|j| j.peer == peer && j.task_id == offer.task_id)
        {
            Some(RejectReason::Duplicate)
        } else if ex.jobs.values().filter(|j| !j.state.is_final()).count()
            >= usize::from(self.cfg.workers).saturating_add(self.cfg.queue_len)
        {
            Some(RejectReason::Busy)
        } else if offer.budget.max_model_len > self.cfg.model_cache_bytes {
            Some(RejectReason::OverBudget)
        } else {
            None
        };
        let TaskInput::Inline(input) = offer.input else {
            self.send_to_peer(peer, &reject(RejectReason::Unsupported));
            return;
        };
        if let Some(reason) = reason {
            self.send_to_peer(peer, &reject(reason));
            return;
        }
        let job = self.exchange.next_job;
        self.exchange.next_job = self.exchange.next_job.saturating_add(1);
        let deadline = now
            .checked_add(Duration::from_millis(u64::from(offer.deadline_ms)))
            .unwrap_or(now);
        self.exchange.jobs.insert(
            job,
            Job {
                peer,
                task_id: offer.task_id,
                kind: offer.kind,
                input: Some(input.to_vec()),
                input_hash: sha256(input),
                model: offer.model,
                deadline,
                max_output: offer.budget.max_output_len,
                state: TaskState::Queued,
            },
        );
        self.exchange.queue.push_back(job);
        if let Some(m) = offer
            .model
            .filter(|m| offer.kind == TaskKind::Infer && !self.blobs.holds(m))
        {
            self.fetch_model(m, peer);
        }
        self.start_jobs();
        // `TaskAccept` says "this will wait": sent only while the model is
        // fetched. A task that runs now or soon needs none (its result
        // follows), which saves a signature and a verification per task.
        let waits_for_model = self
            .exchange
            .jobs
            .get(&job)
            .is_some_and(|j| j.state == TaskState::Queued && !self.runnable(j));
        if waits_for_model {
            self.send_to_peer(
                peer,
                &Message::TaskAccept(TaskAccept {
                    task_id: offer.task_id,
                }),
            );
        }
    }

    /// Whether a queued job can start: an `infer` job needs its model here.
    fn runnable(&self, j: &Job) -> bool {
        j.kind != TaskKind::Infer || j.model.is_none_or(|m| self.blobs.holds(&m))
    }

    pub(super) fn start_jobs(&mut self) {
        let limit = if self.cfg.workers == 0 {
            0
        } else {
            usize::from(self.cfg.workers).saturating_add(usize::from(self.cfg.prefetch))
        };
        while self.exchange.running < limit {
            let next = self.exchange.queue.iter().position(|id| {
                self.exchange
                    .jobs
                    .get(id)
                    .is_none_or(|j| j.state != TaskState::Queued || self.runnable(j))
            });
            let Some(id) = next.and_then(|pos| self.exchange.queue.remove(pos)) else {
                break;
            };
            let Some(j) = self.exchange.jobs.get_mut(&id) else {
                continue;
            };
            if j.state != TaskState::Queued {
                self.exchange.jobs.remove(&id);
                continue;
            }
            j.state = TaskState::Running;
            self.exchange.running = self.exchange.running.saturating_add(1);
            self.events.push_back(Event::Execute {
                job: id,
                kind: j.kind,
                input: j.input.take().unwrap_or_default(),
                model: j.model,
                deadline: j.deadline,
            });
        }
    }

    /// Fails every queued job waiting for model `hash`.
    pub(super) fn fail_jobs_needing(&mut self, hash: Hash32, why: &str) {
        let waiting: Vec<JobId> = self
            .exchange
            .jobs
            .iter()
            .filter(|(_, j)| {
                j.state == TaskState::Queued && j.model == Some(hash) && j.kind == TaskKind::Infer
            })
            .map(|(&id, _)| id)
            .collect();
        for job in waiting {
            self.answer(job, TaskStatus::Failed, why.as_bytes());
        }
    }

    /// A requester other than `not` with a job queued for model `hash`.
    pub(super) fn requester_waiting_for(&self, hash: Hash32, not: NodeId) -> Option<NodeId> {
        self.exchange
            .jobs
            .values()
            .find(|j| j.state == TaskState::Queued && j.model == Some(hash) && j.peer != not)
            .map(|j| j.peer)
    }

    /// The shell finished a job.
    pub fn handle_job_done(
        &mut self,
        _now: Instant,
        job: JobId,
        status: TaskStatus,
        output: &[u8],
    ) {
        let Some(j) = self.exchange.jobs.get(&job) else {
            return;
        };
        if j.state.is_final() {
            self.exchange.jobs.remove(&job);
            return;
        }
        let max = usize::try_from(j.max_output).unwrap_or(usize::MAX);
        if output.len() > max {
            let msg = format!(
                "output of {} bytes exceeds the budget of {max}",
                output.len()
            );
            self.answer(job, TaskStatus::Failed, msg.as_bytes());
        } else {
            self.answer(job, status, output);
        }
        self.exchange.jobs.remove(&job);
        self.start_jobs();
    }

    pub(super) fn on_cancel(&mut self, _now: Instant, peer: NodeId, task_id: u64) {
        let found = self
            .exchange
            .jobs
            .iter()
            .find(|(_, j)| j.peer == peer && j.task_id == task_id && !j.state.is_final())
            .map(|(&id, _)| id);
        if let Some(job) = found {
            self.answer(job, TaskStatus::Cancelled, b"cancelled by the requester");
            self.events.push_back(Event::Abandon { job });
        }
    }

    fn abandon(&mut self, job: JobId) {
        if let Some(j) = self.exchange.jobs.get_mut(&job) {
            let was_running = j.state == TaskState::Running;
            j.state = TaskState::Cancelled;
            if was_running {
                self.exchange.running = self.exchange.running.saturating_sub(1);
                self.events.push_back(Event::Abandon { job });
            } else {
                self.exchange.jobs.remove(&job);
            }
        }
    }

    /// Sends the signed result of `job` and frees its slot.
    fn answer(&mut self, job: JobId, status: TaskStatus, output: &[u8]) {
        let Some(j) = self.exchange.jobs.get_mut(&job) else {
            return;
        };
        if j.state == TaskState::Running {
            self.exchange.running = self.exchange.running.saturating_sub(1);
        }
        j.state = TaskState::from_status(status);
        let (peer, task_id) = (j.peer, j.task_id);
        let mut receipt = Receipt {
            task_id,
            requester: peer,
            worker: self.id,
            status,
            model: j.model.unwrap_or([0u8; 32]),
            input: j.input_hash,
            output: sha256(output),
            signature: Signature64([0u8; 64]),
        };
        self.key.sign_receipt(&mut receipt);
        let result = Message::TaskResult(TaskResult {
            task_id,
            status,
            output,
            receipt,
        });
        if !self.send_to_peer(peer, &result) {
            log::info!(
                "task {task_id}: requester {} is gone; result dropped (it retries elsewhere)",
                peer.short()
            );
        }
    }
}
