//! How much a worker takes on at once: queue, slots, and room for outputs.

use p2pa_protocol::NodeId;

use super::BlobFacts;

use crate::core::config::Config;

/// Jobs a worker holds at once: its slots plus its queue.
pub(super) fn queue_capacity(cfg: &Config) -> usize {
    usize::from(cfg.workers).saturating_add(cfg.queue_len)
}

/// Slot jobs running or handed to the shell at once: the slots plus the
/// prefetch (none on a node without slots).
pub(super) fn slot_limit(cfg: &Config) -> usize {
    if cfg.workers == 0 {
        0
    } else {
        usize::from(cfg.workers).saturating_add(usize::from(cfg.prefetch))
    }
}

/// Whether a requester has room in the output buffer for one more job.
/// Outputs not fetched yet hold memory too. A requester whose unfetched
/// outputs reach half the output buffer waits until it fetches (or drops)
/// them; past the whole buffer, only requesters with nothing unfetched
/// start, and past twice the buffer nobody (until outputs are fetched, or
/// dropped: `fetch_stall` without a request, or fetched under the floor
/// rate). One requester that never fetches cannot hold the slots of the
/// others, and many requesters together hold at most twice the buffer (plus
/// the outputs of the jobs running when it filled).
pub(super) fn output_room(cfg: &Config, blobs: &dyn BlobFacts) -> impl Fn(NodeId) -> bool {
    let lent = blobs.lent_outputs();
    let total = lent.total();
    let buffer = cfg.output_buffer_bytes;
    move |peer: NodeId| {
        let own = lent.of(peer);
        (own == 0 && total < buffer.saturating_mul(2)) || (own < buffer / 2 && total < buffer)
    }
}
