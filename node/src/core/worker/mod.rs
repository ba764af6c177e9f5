//! The worker's side of the task exchange: admission (kinds, duplicates,
//! queue bound, budget), a bounded queue, `workers` jobs at once (plus
//! `prefetch`), deadlines, and a result whose signed frame is the receipt. It owns
//! the jobs; a job that waits for a model waits until the blobs part has it.
//!
//! It sees the blobs part only through [`BlobFacts`] (which models are here,
//! which outputs are lent) and asks for an output to be lent by returning a
//! [`Lend`] from [`Worker::job_done`]: the router carries it out. Its unit
//! tests (`tests.rs`) run it on a fake link and fake facts, with no `Core`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use std::sync::Arc;

use p2pa_protocol::{
    Capabilities, FailReason, Hash32, KindSet, Message, NodeId, RejectReason, TaskAccept,
    TaskInput, TaskKind, TaskOffer, TaskOutput, TaskReject, TaskResult, TaskStatus,
    MAX_BEACON_MODELS,
};

use super::config::{WorkerConfig, MAX_INLINE_TENSOR};
use super::ids::JobId;
use super::link::Link;
use super::output::Order;
use super::receipt::sha256;
use super::state::{TaskState, Work};
use super::tally::Tally;

mod handback;
mod holds;
mod inputs;
mod limits;
#[cfg(test)]
mod tests;

use limits::output_room;

/// What the worker needs to know of the blobs part. The router lends it
/// the blobs part; a unit test, a fake.
pub(crate) trait BlobFacts {
    /// Whether model `hash` is here to run.
    fn holds(&self, hash: &Hash32) -> bool;
    /// The models held, most recently added first, at most `n`.
    fn models(&self, n: usize) -> Vec<Hash32>;
    /// Bytes of outputs lent and not fetched yet, per requester.
    fn lent_outputs(&self) -> Tally;
}

/// An output too large for a result frame, to lend to its requester (who
/// fetches it by hash): the router hands it to the blobs part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lend {
    pub(crate) hash: Hash32,
    pub(crate) bytes: Arc<Vec<u8>>,
    pub(crate) owner: NodeId,
}

/// How a job ended: its status, and why when it failed.
pub(crate) type Ending = (TaskStatus, Option<FailReason>);

/// Sent as the output of a job whose deadline passed.
const DEADLINE_PASSED: &[u8] = b"deadline passed before the task finished";
/// Sent as the output of a job its requester cancelled.
const CANCELLED: &[u8] = b"cancelled by the requester";

#[derive(Debug)]
struct Job {
    peer: NodeId,
    task_id: u64,
    kind: TaskKind,
    /// Its input, once here (a blob input arrives later).
    input: Option<Vec<u8>>,
    /// The input blob (hash, length) when the input is one.
    blob: Option<(Hash32, u64)>,
    /// Its input blob is being fetched.
    fetching: bool,
    input_hash: [u8; 32],
    model: Option<[u8; 32]>,
    deadline: Instant,
    max_output: u32,
    /// Queued → Running → a final state. Once final the requester has its
    /// answer, and a late result from the executor is dropped.
    state: TaskState,
    /// It runs on a worker slot (not inline) and counts in `running`.
    slot: bool,
}

impl Job {
    /// Whether it can start: its input is here, and an `infer` job's model.
    fn runnable(&self, blobs: &dyn BlobFacts) -> bool {
        self.input.is_some()
            && (self.kind != TaskKind::Infer || self.model.is_none_or(|m| blobs.holds(&m)))
    }

    /// Queued, waiting for its input blob.
    fn awaits_input(&self, hash: &Hash32) -> bool {
        self.state == TaskState::Queued
            && self.input.is_none()
            && self.blob.is_some_and(|(h, _)| h == *hash)
    }

    /// Not started, its input blob here or on its way (it counts in the
    /// input buffer).
    fn holds_input(&self) -> bool {
        self.state == TaskState::Queued
            && self.blob.is_some()
            && (self.input.is_some() || self.fetching)
    }

    /// Not started, its input blob neither here nor asked for.
    fn wants_input_fetched(&self) -> bool {
        self.state == TaskState::Queued
            && self.blob.is_some()
            && self.input.is_none()
            && !self.fetching
    }

    /// Waiting for its input blob, which is being fetched for it.
    fn fetches_input(&self, hash: &Hash32) -> bool {
        self.fetching && self.awaits_input(hash)
    }
}

/// An offer the worker took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted {
    pub(crate) job: JobId,
    /// The model it needs and this node lacks: fetch it from the requester.
    pub(crate) fetch: Option<Hash32>,
}

/// The jobs this node runs for others.
#[derive(Debug)]
pub(crate) struct Worker {
    cfg: WorkerConfig,
    next_job: JobId,
    jobs: BTreeMap<JobId, Job>,
    queue: VecDeque<JobId>,
    running: usize,
    completed: u64,
    failed: u64,
    /// Paused by its owner (`p2pa pause`): no new work, nothing offered.
    paused: bool,
    /// Its mean run time of each model it ran (microseconds, a moving
    /// average: a quarter the newest), advertised beside the model.
    speeds: BTreeMap<Hash32, u32>,
}

/// Models whose run time a worker keeps (the oldest-keyed goes first).
const MAX_SPEEDS: usize = 64;

impl Worker {
    pub(crate) fn new(cfg: WorkerConfig) -> Self {
        Self {
            cfg,
            next_job: 1,
            jobs: BTreeMap::new(),
            queue: VecDeque::new(),
            running: 0,
            completed: 0,
            failed: 0,
            paused: false,
            speeds: BTreeMap::new(),
        }
    }

    /// What this worker is doing now.
    pub(crate) fn work(&self, blobs: &dyn BlobFacts) -> Work {
        Work {
            slots: self.cfg.workers,
            running: self.running,
            queued: self.queue.len(),
            completed: self.completed,
            failed: self.failed,
            paused: self.paused,
            models: blobs.models(usize::MAX),
        }
    }

    pub(crate) fn free_slots(&self) -> u16 {
        let running = u16::try_from(self.running).unwrap_or(u16::MAX);
        self.cfg.workers.saturating_sub(running)
    }

    /// What this node offers now: its kinds, free slots, the models it
    /// holds (flagged [`KindSet::PAUSED`], no slots, while paused).
    pub(crate) fn capabilities(&self, blobs: &dyn BlobFacts) -> Capabilities {
        let (kinds, free_slots) = match self.paused {
            true => (self.cfg.kinds.with_flags(KindSet::PAUSED), 0),
            false => (self.cfg.kinds, self.free_slots()),
        };
        let models: heapless::Vec<Hash32, MAX_BEACON_MODELS> =
            blobs.models(MAX_BEACON_MODELS).into_iter().collect();
        let run_us = models
            .iter()
            .map(|m| self.speeds.get(m).copied().unwrap_or(0))
            .collect();
        Capabilities {
            kinds,
            free_slots,
            models,
            run_us,
        }
    }

    /// Counts `ran` in the model's mean run time.
    fn note_run(&mut self, model: Hash32, ran: Duration) {
        let us = u32::try_from(ran.as_micros()).unwrap_or(u32::MAX).max(1);
        let mean = match self.speeds.get(&model) {
            // 3/4 the old and 1/4 the new, in u64: no overflow.
            Some(&old) => {
                let m = u64::from(old)
                    .saturating_mul(3)
                    .saturating_add(u64::from(us))
                    / 4;
                u32::try_from(m).unwrap_or(u32::MAX).max(1)
            }
            None => {
                if self.speeds.len() >= MAX_SPEEDS {
                    self.speeds.pop_first();
                }
                us
            }
        };
        self.speeds.insert(model, mean);
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.jobs
            .values()
            .filter(|j| !j.state.is_final())
            .map(|j| j.deadline)
            .min()
    }

    pub(crate) fn states(&self) -> Vec<(NodeId, u64, TaskState)> {
        self.jobs
            .values()
            .map(|j| (j.peer, j.task_id, j.state))
            .collect()
    }

    /// Why `offer` cannot be queued, if it cannot. `inline_now`: it runs
    /// inline on an inline input, so it finishes as it is admitted and
    /// holds no place in the queue: a full queue does not refuse it.
    fn refusal(
        &self,
        shutting_down: bool,
        peer: NodeId,
        offer: &TaskOffer<'_>,
        inline_now: bool,
    ) -> Option<RejectReason> {
        if shutting_down {
            Some(RejectReason::ShuttingDown)
        } else if self.paused {
            Some(RejectReason::Busy)
        } else if !self.cfg.kinds.contains(offer.kind) {
            Some(RejectReason::Unsupported)
        } else if self
            .jobs
            .values()
            .any(|j| j.peer == peer && j.task_id == offer.task_id)
        {
            Some(RejectReason::Duplicate)
        } else if !inline_now && self.full_for(peer) {
            Some(RejectReason::Busy)
        } else if offer.budget.max_model_len > self.cfg.model_cache_bytes
            || u128::from(offer.deadline_ms) > self.cfg.max_task_deadline.as_millis()
        {
            Some(RejectReason::OverBudget)
        } else {
            None
        }
    }

    /// Whether the queue has no place for `peer`: it is full, or `peer`
    /// already holds its share (all but a quarter, kept for others).
    fn full_for(&self, peer: NodeId) -> bool {
        let capacity = self.cfg.queue_capacity();
        let reserve = capacity.checked_div(4).unwrap_or(0);
        let live = self.jobs.values().filter(|j| !j.state.is_final());
        let (total, mine) = live.fold((0usize, 0usize), |(t, m), j| {
            (
                t.saturating_add(1),
                m.saturating_add(usize::from(j.peer == peer)),
            )
        });
        total >= capacity || mine >= capacity.saturating_sub(reserve).max(1)
    }

    /// An offer from `peer`: queued, or refused with a `TaskReject`.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        shutting_down: bool,
        peer: NodeId,
        offer: &TaskOffer<'_>,
        blobs: &dyn BlobFacts,
        w: &mut dyn Link,
    ) -> Option<Admitted> {
        let reject = |reason| {
            Message::TaskReject(TaskReject {
                task_id: offer.task_id,
                reason,
            })
        };
        let (input, blob, input_hash, len) = match offer.input {
            TaskInput::Inline(input) => (Some(input.to_vec()), None, sha256(input), input.len()),
            TaskInput::Blob { hash, len } if len <= self.cfg.max_tensor_bytes => {
                let n = usize::try_from(len).unwrap_or(usize::MAX);
                (None, Some((hash, len)), hash, n)
            }
            TaskInput::Blob { .. } => {
                w.send_to(peer, &reject(RejectReason::OverBudget));
                return None;
            }
        };
        let inline_now = input.is_some() && self.cfg.runs_inline(offer.kind, len);
        let mut refusal = self.refusal(shutting_down, peer, offer, inline_now);
        if refusal == Some(RejectReason::Busy) && self.make_room_for(peer, w) {
            refusal = self.refusal(shutting_down, peer, offer, inline_now);
        }
        if let Some(reason) = refusal {
            w.send_to(peer, &reject(reason));
            return None;
        }
        let job = self.next_job;
        self.next_job = self.next_job.saturating_add(1);
        let deadline = now
            .checked_add(Duration::from_millis(u64::from(offer.deadline_ms)))
            .unwrap_or(now);
        self.jobs.insert(
            job,
            Job {
                peer,
                task_id: offer.task_id,
                kind: offer.kind,
                input,
                blob,
                fetching: false,
                input_hash,
                model: offer.model,
                deadline,
                max_output: offer.budget.max_output_len,
                state: TaskState::Queued,
                slot: !self.cfg.runs_inline(offer.kind, len),
            },
        );
        self.queue.push_back(job);
        let fetch = offer
            .model
            .filter(|m| offer.kind == TaskKind::Infer && !blobs.holds(m));
        Some(Admitted { job, fetch })
    }

    /// `TaskAccept` says "this will wait": sent only while the model is
    /// fetched. A task that runs now or soon needs none (its result
    /// follows), which saves a signature and a verification per task.
    pub(crate) fn accept_if_waiting(&self, job: JobId, blobs: &dyn BlobFacts, w: &mut dyn Link) {
        let Some(j) = self.jobs.get(&job) else {
            return;
        };
        if j.state == TaskState::Queued && !j.runnable(blobs) {
            let accept = Message::TaskAccept(TaskAccept { task_id: j.task_id });
            w.send_to(j.peer, &accept);
        }
    }

    /// Hands runnable jobs to the shell: inline ones at once, slot jobs while
    /// slots (plus prefetch) are free, fairly across requesters.
    pub(crate) fn start_jobs(&mut self, blobs: &dyn BlobFacts, w: &mut dyn Link) {
        let limit = self.cfg.slot_limit();
        let room = output_room(&self.cfg, blobs);
        while let Some(pos) = self.next_to_start(self.running < limit, &room, blobs) {
            let Some(id) = self.queue.remove(pos) else {
                break;
            };
            let Some(j) = self.jobs.get_mut(&id) else {
                continue;
            };
            if j.state != TaskState::Queued {
                self.jobs.remove(&id);
                continue;
            }
            j.state = TaskState::Running;
            if j.slot {
                self.running = self.running.saturating_add(1);
            }
            w.out().order(Order::Execute {
                job: id,
                kind: j.kind,
                input: j.input.take().unwrap_or_default(),
                model: j.model,
                deadline: j.deadline,
                inline: !j.slot,
            });
        }
    }

    /// Whether a job could start on a free slot but for the room its
    /// requester has in the output buffer (the unfetched outputs of others
    /// hold it back: they are dropped early if fetched too slowly).
    pub(crate) fn waits_for_output_room(&self, blobs: &dyn BlobFacts) -> bool {
        if self.running >= self.cfg.slot_limit() {
            return false;
        }
        // Asked at every poll of the core's timers: the output tally is
        // built only when a slot job is ready to start.
        let mut ready = (self.queue.iter())
            .filter_map(|id| self.jobs.get(id))
            .filter(|j| j.state == TaskState::Queued && j.slot && j.runnable(blobs))
            .peekable();
        if ready.peek().is_none() {
            return false;
        }
        let room = output_room(&self.cfg, blobs);
        ready.any(|j| !room(j.peer))
    }

    /// The queue position to start next, first in line among: stale entries
    /// (to drop), runnable inline jobs, and (when a slot is free) runnable
    /// slot jobs of the requesters with the fewest jobs on slots now and
    /// `room` for an output. A requester that filled every slot waits while
    /// others get theirs.
    fn next_to_start(
        &self,
        slot_free: bool,
        room: &impl Fn(NodeId) -> bool,
        blobs: &dyn BlobFacts,
    ) -> Option<usize> {
        let on_slots: Tally = (self.jobs.values())
            .filter(|j| j.slot && j.state == TaskState::Running)
            .map(|j| (j.peer, 1))
            .collect();
        let load = |peer: NodeId| on_slots.of(peer);
        let queued = |id: &JobId| self.jobs.get(id).filter(|j| j.state == TaskState::Queued);
        let fewest = self
            .queue
            .iter()
            .filter_map(queued)
            .filter(|j| slot_free && j.slot && j.runnable(blobs) && room(j.peer))
            .map(|j| load(j.peer))
            .min();
        self.queue.iter().position(|id| match queued(id) {
            None => true,
            Some(j) if !j.runnable(blobs) => false,
            Some(j) if !j.slot => true,
            Some(j) => room(j.peer) && Some(load(j.peer)) == fewest,
        })
    }

    /// The jobs for which `pred` holds, in id order.
    fn ids(&self, pred: impl Fn(&Job) -> bool) -> Vec<JobId> {
        self.jobs
            .iter()
            .filter(|(_, j)| pred(j))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Fails every queued job waiting for model `hash`.
    pub(crate) fn fail_jobs_needing(&mut self, hash: Hash32, why: &str, w: &mut dyn Link) {
        let waiting = self.ids(|j| {
            j.state == TaskState::Queued && j.model == Some(hash) && j.kind == TaskKind::Infer
        });
        for job in waiting {
            self.fail(job, FailReason::Model, why.as_bytes(), w);
        }
    }

    /// The shell finished a job: its result goes to the requester, with
    /// the executor's reason when it failed. An output too large for a
    /// frame is returned to lend (the requester fetches it); lend it, then
    /// [`Worker::start_jobs`].
    pub(crate) fn job_done(
        &mut self,
        job: JobId,
        ((status, reason), output, ran): (Ending, &[u8], Duration),
        w: &mut dyn Link,
    ) -> Option<Lend> {
        let j = self.jobs.get(&job)?;
        if j.state.is_final() {
            self.jobs.remove(&job);
            return None;
        }
        let (peer, model, max_output) = (j.peer, j.model, j.max_output);
        if let (TaskStatus::Completed, Some(model)) = (status, model) {
            self.note_run(model, ran);
        }
        let max = usize::try_from(max_output).unwrap_or(usize::MAX);
        let mut lend = None;
        if output.len() > max {
            let msg = format!(
                "output of {} bytes exceeds the budget of {max}",
                output.len()
            );
            self.fail(job, FailReason::OutputOverBudget, msg.as_bytes(), w);
        } else if output.len() > MAX_INLINE_TENSOR {
            let hash = sha256(output);
            let len = u64::try_from(output.len()).unwrap_or(u64::MAX);
            self.answer_with(job, (status, reason), TaskOutput::Blob { hash, len }, w);
            lend = Some(Lend {
                hash,
                bytes: Arc::new(output.to_vec()),
                owner: peer,
            });
        } else {
            self.answer(job, (status, reason), output, w);
        }
        self.jobs.remove(&job);
        lend
    }

    /// The requester withdrew its task.
    pub(crate) fn on_cancel(&mut self, peer: NodeId, task_id: u64, w: &mut dyn Link) {
        let found = self
            .jobs
            .iter()
            .find(|(_, j)| j.peer == peer && j.task_id == task_id && !j.state.is_final())
            .map(|(&id, _)| id);
        if let Some(job) = found {
            self.answer(job, (TaskStatus::Cancelled, None), CANCELLED, w);
            w.out().order(Order::Abandon { job });
        }
    }

    /// `peer`'s session ended: its jobs are no longer wanted.
    pub(crate) fn peer_down(&mut self, peer: NodeId, w: &mut dyn Link) {
        let running = &mut self.running;
        self.jobs.retain(|&job, j| {
            if j.peer != peer || j.state.is_final() {
                return true;
            }
            let was_running = j.state == TaskState::Running;
            j.state = TaskState::Cancelled;
            if was_running {
                if j.slot {
                    *running = running.saturating_sub(1);
                }
                w.out().order(Order::Abandon { job });
            }
            was_running // a running job stays until the shell reports it
        });
    }

    /// Jobs past their deadline are answered `Timeout`; then free slots fill.
    pub(crate) fn timers(&mut self, now: Instant, blobs: &dyn BlobFacts, w: &mut dyn Link) {
        let late = self.ids(|j| !j.state.is_final() && j.deadline <= now);
        for job in late {
            let running = self
                .jobs
                .get(&job)
                .is_some_and(|j| j.state == TaskState::Running);
            self.answer(job, (TaskStatus::Timeout, None), DEADLINE_PASSED, w);
            if running {
                w.out().order(Order::Abandon { job }); // stop its computation
            }
        }
        self.start_jobs(blobs, w);
    }

    /// Sends the signed result of `job` with `output` inline; frees its slot.
    fn answer(&mut self, job: JobId, end: Ending, output: &[u8], w: &mut dyn Link) {
        self.answer_with(job, end, TaskOutput::Inline(output), w);
    }

    /// Fails `job` for `reason`, `why` its text; frees its slot.
    pub(super) fn fail(&mut self, job: JobId, reason: FailReason, why: &[u8], w: &mut dyn Link) {
        self.answer(job, (TaskStatus::Failed, Some(reason)), why, w);
    }

    /// Sends the signed result of `job` and frees its slot.
    fn answer_with(
        &mut self,
        job: JobId,
        (status, reason): Ending,
        output: TaskOutput<'_>,
        w: &mut dyn Link,
    ) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        // A failure always says why (an executor that did not: this
        // worker's); nothing else carries a reason.
        let reason = (status == TaskStatus::Failed).then(|| reason.unwrap_or(FailReason::Worker));
        if j.state == TaskState::Running && j.slot {
            self.running = self.running.saturating_sub(1);
        }
        j.state = TaskState::from_status(status);
        let done = if status == TaskStatus::Completed {
            &mut self.completed
        } else {
            &mut self.failed
        };
        *done = done.saturating_add(1);
        let (peer, task_id) = (j.peer, j.task_id);
        // The signed frame is the receipt: it names the requester, the
        // model and the input's hash beside the output.
        let result = Message::TaskResult(TaskResult {
            task_id,
            status,
            reason,
            output,
            requester: peer,
            model: j.model.unwrap_or([0u8; 32]),
            input: j.input_hash,
        });
        if !w.send_to(peer, &result) {
            log::info!(
                "task {task_id}: requester {} is gone; result dropped (it retries elsewhere)",
                peer.short()
            );
        }
    }
}
