//! Results on the requester's side: the signed result checked against what
//! was asked and kept as the receipt, an output blob fetched before the task
//! completes, failures retried elsewhere.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use p2pa_protocol::{Hash32, NodeId, Receipt, Seal, TaskOutput, TaskResult, TaskStatus};

use super::{Answer, Pending, Requester};
use crate::core::config::MAX_INLINE_TENSOR;
use crate::core::link::Link;
use crate::core::output::{bump, BadInput};
use crate::core::reason::{FetchError, TaskError};
use crate::core::receipt::{check_result, sha256};

/// What a result asks of the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resulted {
    /// Nothing more (refused, failed and retried, or not ours).
    Nothing,
    /// The task completed: credit the worker.
    Completed,
    /// The output is a blob (hash, declared length): fetch it from the worker.
    Fetch(Hash32, u64),
}

impl Requester {
    /// A result from the peer that sealed it: completed, failed (and
    /// retried), or with an output blob to fetch first.
    pub(crate) fn on_result(
        &mut self,
        now: Instant,
        me: NodeId,
        seal: &Seal,
        res: &TaskResult<'_>,
        w: &mut dyn Link,
    ) -> Resulted {
        let peer = seal.signer;
        let Some(r) = self.reqs.get(&res.task_id) else {
            return Resulted::Nothing; // already reported (or never ours): exactly once
        };
        if !r.offered.contains(&peer) || r.pending.is_some() {
            return Resulted::Nothing;
        }
        let output_hash = match res.output {
            TaskOutput::Inline(bytes) => sha256(bytes),
            TaskOutput::Blob { hash, .. } => hash,
        };
        let model = r.req.model.unwrap_or([0u8; 32]);
        let checked = check_result(res, me, &r.input_hash, &model);
        if let Err(why) = checked {
            bump(&mut self.stats.results_rejected);
            w.out().warn_once(
                BadInput::BadResult,
                format_args!(
                    "task {}: result from {} refused: {why}",
                    res.task_id,
                    peer.short()
                ),
            );
            let error = TaskError::BadReceipt { worker: peer, why };
            let id = res.task_id;
            self.attempt_failed(now, (id, peer), TaskStatus::Failed, &[], error, w);
            return Resulted::Nothing;
        }
        let receipt = Receipt::new(seal, res, output_hash);
        match res.output {
            TaskOutput::Inline(output) => {
                let id = res.task_id;
                let output = Cow::Borrowed(output);
                self.answered(now, (id, peer), res.status, receipt, output, w)
            }
            TaskOutput::Blob { hash, len } if len <= self.cfg.max_tensor_bytes => {
                if let Some(r) = self.reqs.get_mut(&res.task_id) {
                    r.pending = Some(Pending {
                        worker: peer,
                        status: res.status,
                        receipt,
                        hash,
                    });
                    r.attempt_until = None; // answered; the fetch has its own stall timeout
                }
                Resulted::Fetch(hash, len)
            }
            TaskOutput::Blob { len, .. } => {
                let limit = self.cfg.max_tensor_bytes;
                let error = TaskError::OutputTooLarge {
                    worker: peer,
                    len,
                    limit,
                };
                let id = res.task_id;
                self.attempt_failed(now, (id, peer), TaskStatus::Failed, &[], error, w);
                Resulted::Nothing
            }
        }
    }

    /// A checked answer with its output at hand: the task completes, or
    /// this attempt failed.
    fn answered(
        &mut self,
        now: Instant,
        (id, peer): (u64, NodeId),
        status: TaskStatus,
        receipt: Receipt,
        output: Cow<'_, [u8]>,
        w: &mut dyn Link,
    ) -> Resulted {
        let Some(r) = self.reqs.get(&id) else {
            return Resulted::Nothing;
        };
        if status == TaskStatus::Completed {
            let took = r
                .offered_at
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            let key = (peer, r.req.kind, r.req.model);
            self.observed.paced(key, took, r.depth);
            self.learned(peer, r.req.kind, took);
            let answer = Answer {
                status: TaskStatus::Completed,
                output,
                worker: Some(peer),
                receipt: Some(receipt),
                error: None,
            };
            self.finish(now, id, answer, w);
            Resulted::Completed
        } else {
            let error = TaskError::Failed {
                worker: peer,
                status,
                reason: receipt.reason,
                message: String::from_utf8_lossy(&output).into_owned(),
            };
            self.attempt_failed(now, (id, peer), status, &output, error, w);
            Resulted::Nothing
        }
    }

    /// An output blob arrived (hash-checked): the tasks waiting for it end,
    /// the last of them with the bytes themselves (one task, but for
    /// redundancy: no copy of the output). Returns the workers to credit.
    pub(crate) fn output_arrived(
        &mut self,
        now: Instant,
        hash: &Hash32,
        bytes: Vec<u8>,
        w: &mut dyn Link,
    ) -> Vec<NodeId> {
        let mut waiting: Vec<(u64, Pending)> = self
            .reqs
            .iter()
            .filter_map(|(id, r)| r.pending.filter(|p| p.hash == *hash).map(|p| (*id, p)))
            .collect();
        let last = waiting.pop();
        let mut credit = Vec::new();
        for each in waiting {
            credit.extend(self.fetched_answer(now, each, Cow::Borrowed(&bytes), w));
        }
        if let Some(each) = last {
            credit.extend(self.fetched_answer(now, each, Cow::Owned(bytes), w));
        }
        credit
    }

    /// A task waiting for its output blob gets it: the worker to credit if
    /// it completed.
    fn fetched_answer(
        &mut self,
        now: Instant,
        (id, p): (u64, Pending),
        output: Cow<'_, [u8]>,
        w: &mut dyn Link,
    ) -> Option<NodeId> {
        if let Some(r) = self.reqs.get_mut(&id) {
            r.pending = None;
        }
        let done = self.answered(now, (id, p.worker), p.status, p.receipt, output, w);
        (done == Resulted::Completed).then_some(p.worker)
    }

    /// Fetching an output blob failed: those attempts failed (retried
    /// elsewhere while attempts remain).
    pub(crate) fn output_failed(
        &mut self,
        now: Instant,
        hash: &Hash32,
        why: FetchError,
        w: &mut dyn Link,
    ) {
        let waiting: Vec<(u64, NodeId)> = self
            .reqs
            .iter()
            .filter_map(|(id, r)| {
                r.pending
                    .filter(|p| p.hash == *hash)
                    .map(|p| (*id, p.worker))
            })
            .collect();
        for (id, worker) in waiting {
            let error = TaskError::OutputFetch { worker, why };
            self.attempt_failed(now, (id, worker), TaskStatus::Failed, &[], error, w);
        }
    }

    /// Whether a task waits for output blob `hash`.
    pub(crate) fn wants_output(&self, hash: &Hash32) -> bool {
        self.reqs
            .values()
            .any(|r| r.pending.is_some_and(|p| p.hash == *hash))
    }

    /// Whether a live task has input blob `hash` (lent while it lives).
    pub(crate) fn wants_input(&self, hash: &Hash32) -> bool {
        self.reqs
            .values()
            .any(|r| r.input_len > MAX_INLINE_TENSOR && r.input_hash == *hash)
    }
}
