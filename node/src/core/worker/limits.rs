//! How much room a requester has in the worker's output buffer (the queue
//! and slot limits are `WorkerConfig`'s).

use p2pa_protocol::NodeId;

use super::BlobFacts;

use crate::core::config::WorkerConfig;

/// Whether a requester has room in the output buffer for one more job.
/// Outputs not fetched yet hold memory too. A requester whose unfetched
/// outputs reach half the output buffer waits until it fetches (or drops)
/// them; past the whole buffer, only requesters with nothing unfetched
/// start, and past twice the buffer nobody (until outputs are fetched, or
/// dropped: `fetch_stall` without a request, or fetched under the floor
/// rate). One requester that never fetches cannot hold the slots of the
/// others, and many requesters together hold at most twice the buffer (plus
/// the outputs of the jobs running when it filled).
pub(super) fn output_room(cfg: &WorkerConfig, blobs: &dyn BlobFacts) -> impl Fn(NodeId) -> bool {
    let lent = blobs.lent_outputs();
    let total = lent.total();
    let buffer = cfg.output_buffer_bytes;
    move |peer: NodeId| {
        let own = lent.of(peer);
        (own == 0 && total < buffer.saturating_mul(2)) || (own < buffer / 2 && total < buffer)
    }
}
