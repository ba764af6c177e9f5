//! What the worker's jobs hold and wait for: the router asks before it
//! frees a blob, refetches from another source or ends an idle session.

use p2pa_protocol::{Hash32, NodeId, TaskKind};

use super::Worker;
use crate::core::state::TaskState;

impl Worker {
    /// Whether a job of `peer` is here and not finished.
    pub(crate) fn serves(&self, peer: NodeId) -> bool {
        self.jobs
            .values()
            .any(|j| j.peer == peer && !j.state.is_final())
    }

    /// Whether input blob `hash` is being fetched for a queued job.
    pub(crate) fn wants_input(&self, hash: &Hash32) -> bool {
        self.jobs.values().any(|j| j.fetches_input(hash))
    }

    /// Whether a queued job waits for model `hash`.
    pub(crate) fn wants_model(&self, hash: &Hash32) -> bool {
        self.jobs.values().any(|j| {
            j.state == TaskState::Queued
                && j.model.as_ref() == Some(hash)
                && j.kind == TaskKind::Infer
        })
    }

    /// A requester other than `not` with a job queued for blob `hash` (its
    /// model or its input).
    pub(crate) fn requester_waiting_for(&self, hash: Hash32, not: NodeId) -> Option<NodeId> {
        self.jobs
            .values()
            .find(|j| {
                j.peer != not
                    && ((j.state == TaskState::Queued && j.model == Some(hash))
                        || j.awaits_input(&hash))
            })
            .map(|j| j.peer)
    }
}
