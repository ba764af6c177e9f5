//! What the requester has seen of its workers: how long each kind of task
//! takes, and which peers let attempts stall. Worker choice and per-attempt
//! timeouts come from it, not from what workers say of themselves alone.

use std::collections::BTreeMap;
use std::time::Duration;

use p2pa_protocol::{Hash32, NodeId, TaskKind};

/// An attempt that has not answered in this long (at the least) counts as
/// stalled: the task is offered to another worker as well, the first answer
/// wins and the other is cancelled.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);
/// An attempt may take this many times the kind's usual latency.
const ATTEMPT_FACTOR: u32 = 8;
/// With no latency seen yet for a kind, an attempt gets this share of the
/// time left (1/3: two more tries fit).
const FIRST_ATTEMPT_SHARE: u32 = 3;
/// Peers whose stalls are remembered (the least struck go first), and
/// (peer, kind, model) paces kept (the first in order go first).
const MAX_TRACKED: usize = 1024;

/// What a pace is kept for: a worker, a kind and the model.
pub(crate) type PaceKey = (NodeId, TaskKind, Option<Hash32>);

/// A pace's key as stored (the kind as its number).
fn stored((peer, kind, model): PaceKey) -> (NodeId, u8, Option<Hash32>) {
    (peer, kind as u8, model)
}

/// What the requester has seen of its workers: how long each kind takes,
/// and which peers let attempts stall. Chooses workers by this, not by what
/// they say of themselves alone.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// Moving average of completed tasks' latency, per kind (in
    /// `TaskKind::ALL` order).
    latency: [Option<Duration>; TaskKind::ALL.len()],
    /// Attempts that stalled at a peer since its last completion.
    strikes: BTreeMap<NodeId, u32>,
    /// Each worker's pace per kind and model: the time one more task adds
    /// at it (an attempt's latency over the tasks of ours it held then,
    /// itself included), a moving average.
    pace: BTreeMap<(NodeId, u8, Option<Hash32>), Duration>,
}

impl Observed {
    /// How long an attempt of `kind` may take before it counts as stalled.
    pub(crate) fn attempt_timeout(&mut self, kind: TaskKind, remaining: Duration) -> Duration {
        let t = match self.latency_slot(kind).and_then(|l| *l) {
            Some(l) => l.saturating_mul(ATTEMPT_FACTOR),
            None => remaining
                .checked_div(FIRST_ATTEMPT_SHARE)
                .unwrap_or(remaining),
        };
        t.max(MIN_ATTEMPT)
    }

    pub(crate) fn completed(&mut self, peer: NodeId, kind: TaskKind, took: Duration) {
        if let Some(slot) = self.latency_slot(kind) {
            // avg += (took - avg) / 8
            let avg = slot.unwrap_or(took);
            *slot = avg.saturating_mul(7).saturating_add(took).checked_div(8);
        }
        self.strikes.remove(&peer);
    }

    /// A completed attempt at `peer` took `took` while it held `depth`
    /// tasks of ours (this one included): one task there costs about
    /// `took / depth` (a worker with k slots runs k at once, and so shows a
    /// k times shorter pace).
    pub(crate) fn paced(&mut self, key: PaceKey, took: Duration, depth: u32) {
        let one = took.checked_div(depth.max(1)).unwrap_or(took);
        let key = stored(key);
        if self.pace.len() >= MAX_TRACKED && !self.pace.contains_key(&key) {
            self.pace.pop_first();
        }
        let avg = self.pace.entry(key).or_insert(one);
        // avg += (one - avg) / 4: a worker that slows down shows it soon.
        *avg = avg
            .saturating_mul(3)
            .saturating_add(one)
            .checked_div(4)
            .unwrap_or(one);
    }

    /// The pace of `key`'s worker, if it has answered such a task.
    pub(crate) fn pace(&self, key: &PaceKey) -> Option<Duration> {
        self.pace.get(&stored(*key)).copied()
    }

    fn latency_slot(&mut self, kind: TaskKind) -> Option<&mut Option<Duration>> {
        let i = TaskKind::ALL.iter().position(|k| *k == kind)?;
        self.latency.get_mut(i)
    }

    pub(crate) fn stalled(&mut self, peer: NodeId) {
        if self.strikes.len() >= MAX_TRACKED && !self.strikes.contains_key(&peer) {
            let least = self
                .strikes
                .iter()
                .min_by_key(|(_, n)| **n)
                .map(|(p, _)| *p);
            if let Some(p) = least {
                self.strikes.remove(&p);
            }
        }
        let n = self.strikes.entry(peer).or_insert(0);
        *n = n.saturating_add(1);
    }

    pub(crate) fn strikes(&self, peer: NodeId) -> u32 {
        self.strikes.get(&peer).copied().unwrap_or(0)
    }
}
