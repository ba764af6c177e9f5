//! The worker's input buffer: which input blobs to fetch next (fairly
//! across requesters, within `input_buffer_bytes`), and what an arrived or
//! failed input does to the jobs waiting for it.

use p2pa_protocol::{FailReason, Hash32, NodeId};

use super::Worker;
use crate::core::link::Link;
use crate::core::tally::Tally;

impl Worker {
    /// Input blobs to fetch now, with their declared length and the
    /// requester to fetch each from,
    /// while the inputs held or on their way stay within `input_buffer_bytes`
    /// (one is always allowed), or within twice that for a requester that
    /// holds none (so whoever holds the buffer, slowly or not, cannot keep a
    /// newcomer out). The buffer is shared fairly: the next fetch goes to the
    /// requester holding the fewest input bytes (queue order among equals),
    /// so a requester with a long backlog of large inputs cannot keep
    /// another's input waiting behind all of it.
    pub(crate) fn inputs_to_fetch(&mut self) -> Vec<(Hash32, u64, NodeId)> {
        let mut held: Tally = (self.jobs.values())
            .filter(|j| j.holds_input())
            .map(|j| (j.peer, j.blob.map_or(0, |(_, len)| len)))
            .collect();
        let mut budget = held.total();
        let mut out: Vec<(Hash32, u64, NodeId)> = Vec::new();
        loop {
            let next = self
                .queue
                .iter()
                .filter_map(|id| self.jobs.get(id).map(|j| (*id, j)))
                .filter(|(_, j)| j.wants_input_fetched())
                .min_by_key(|(_, j)| held.of(j.peer))
                .map(|(id, _)| id);
            let Some(j) = next.and_then(|id| self.jobs.get_mut(&id)) else {
                break;
            };
            let Some((hash, len)) = j.blob else { break };
            // Every job's bytes count, even where two share a hash (each
            // gets its own copy): offering one input many times gains nothing.
            let after = budget.saturating_add(len);
            let buffer = self.cfg.input_buffer_bytes;
            let fits =
                after <= buffer || (held.of(j.peer) == 0 && after <= buffer.saturating_mul(2));
            if budget > 0 && !fits {
                break;
            }
            budget = budget.saturating_add(len);
            j.fetching = true;
            held.add(j.peer, len);
            out.push((hash, len, j.peer));
        }
        out
    }

    /// Bytes of input blobs for jobs not started yet, arrived or on their way.
    pub(crate) fn held_input_bytes(&self) -> u64 {
        self.jobs
            .values()
            .filter(|j| j.holds_input())
            .filter_map(|j| j.blob.map(|(_, len)| len))
            .fold(0, u64::saturating_add)
    }

    /// An input blob arrived: the jobs it was fetched for have their input
    /// (others with the same input wait for their turn in the buffer). A job
    /// whose offer declared another length fails: its requester lied.
    pub(crate) fn input_arrived(&mut self, hash: &Hash32, bytes: Vec<u8>, w: &mut dyn Link) {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let liars = self.ids(|j| j.fetches_input(hash) && j.blob.is_some_and(|(_, l)| l != len));
        for job in liars {
            let msg = format!("the offer declared its input blob's length wrongly ({len} bytes)");
            self.fail(job, FailReason::Input, msg.as_bytes(), w);
        }
        let mut bytes = Some(bytes);
        let waiting = self.ids(|j| j.fetches_input(hash));
        let n = waiting.len();
        for (i, id) in waiting.into_iter().enumerate() {
            if let Some(j) = self.jobs.get_mut(&id) {
                j.input = if i.saturating_add(1) == n {
                    bytes.take()
                } else {
                    bytes.clone()
                };
                j.fetching = false;
            }
        }
    }

    /// Fails the jobs input blob `hash` was being fetched for.
    pub(crate) fn input_failed(&mut self, hash: &Hash32, why: &str, w: &mut dyn Link) {
        let waiting = self.ids(|j| j.fetches_input(hash));
        for job in waiting {
            let msg = format!("fetching the input failed: {why}");
            self.fail(job, FailReason::Input, msg.as_bytes(), w);
        }
    }
}
