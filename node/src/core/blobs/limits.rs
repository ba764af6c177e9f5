//! The size limits a fetch must keep, per blob and beside the others.

use super::Want;
use crate::core::config::BlobConfig;
use crate::core::reason::FetchError;

/// Bytes other fetches hold (announced sizes).
pub(super) struct InFlight {
    pub(super) total: u64,
    /// Models fetched from the peer this blob comes from.
    pub(super) models_from_peer: u64,
}

/// Why a blob of `len` bytes is refused, if it is: over this node's limit
/// for what it is, beside the other fetches over the total, or (a model)
/// beside the other models from the same peer over half the total: one peer
/// that starts several large fetches and dribbles them cannot hold all of
/// `max_fetch_bytes` (its first model is always within the total).
pub(super) fn too_large(
    cfg: &BlobConfig,
    want: Want,
    len: u64,
    others: &InFlight,
) -> Option<FetchError> {
    let limit = match want {
        Want::Model => cfg.model_cache_bytes,
        Want::Input | Want::Output => cfg.max_tensor_bytes,
    };
    if len > limit {
        return Some(FetchError::TooLarge { len, limit });
    }
    let limit = cfg.max_fetch_bytes;
    if others.total.saturating_add(len) > limit {
        return Some(FetchError::TooMuchInFlight { len, limit });
    }
    let share = limit / 2;
    let own = others.models_from_peer;
    (want == Want::Model && own > 0 && own.saturating_add(len) > share)
        .then_some(FetchError::TooMuchFromPeer { len, limit: share })
}
