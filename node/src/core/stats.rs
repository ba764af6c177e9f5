//! Counters: the public [`Stats`] that `Core::stats` assembles from each
//! part's own (`BeaconStats` in beacons, `PeerStats` in peers,
//! `SessionStats` in sessions, `RequesterStats`, `BlobStats`, and the
//! router's [`ConnStats`] here, which the endings in `reason.rs` count
//! into), and the buckets bad input is logged in.

/// Counters of what the node refused or dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)] // each name says what it counts
pub struct Stats {
    pub beacons_accepted: u64,
    pub beacons_forged: u64,
    pub beacons_replayed: u64,
    pub beacons_malformed: u64,
    pub beacons_wrong_version: u64,
    pub frames_rejected: u64,
    pub frames_replayed: u64,
    pub handshakes_completed: u64,
    /// Of those, sessions sealed with AES-256-GCM (both ends offered it).
    pub sessions_aes_gcm: u64,
    pub handshakes_failed: u64,
    pub handshakes_timed_out: u64,
    pub handshakes_evicted: u64,
    pub peers_refused: u64,
    pub peers_evicted: u64,
    /// Idle sessions ended to make room for a newcomer.
    pub sessions_evicted: u64,
    pub beacons_untrusted: u64,
    pub conns_refused: u64,
    pub results_rejected: u64,
    pub tasks_retried: u64,
    pub blob_bytes_served: u64,
    pub blob_bytes_fetched: u64,
    /// Bytes the sessions' streams carried in (as read, sealed frames).
    pub stream_bytes_in: u64,
    /// Bytes the node handed the shell to send on streams.
    pub stream_bytes_out: u64,
}

/// What the router counts of connections: how they ended, what the
/// streams carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConnStats {
    pub(crate) frames_rejected: u64,
    pub(crate) frames_replayed: u64,
    pub(crate) handshakes_failed: u64,
    pub(crate) handshakes_timed_out: u64,
    pub(crate) handshakes_evicted: u64,
    pub(crate) peers_refused: u64,
    pub(crate) sessions_evicted: u64,
    pub(crate) stream_bytes_in: u64,
    pub(crate) stream_bytes_out: u64,
}

/// Buckets of bad input: each is logged at `warn` once, then at `debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum BadInput {
    ForgedBeacon,
    ReplayedBeacon,
    MalformedBeacon,
    WrongVersion,
    BadFrame,
    ReplayedFrame,
    HandshakeFailed,
    HandshakeTimeout,
    HandshakeEvicted,
    Refused,
    BadResult,
}

/// Adds one to a counter (saturating: a counter never wraps or panics).
pub(crate) fn bump(counter: &mut u64) {
    *counter = counter.saturating_add(1);
}

/// Adds `n` to a counter (saturating).
pub(crate) fn add(counter: &mut u64, n: usize) {
    *counter = counter.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
}
