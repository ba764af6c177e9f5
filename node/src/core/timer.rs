//! The core's timers: one enum, in the order `handle_timeout` runs them.
//! Each part keeps its own deadlines; the router asks it by name.

/// The node's timers, in the order `handle_timeout` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Beacon burst and period, query answers.
    Beacons,
    /// Handshake timeouts, keepalive, dead peers.
    Sessions,
    /// Dials, redials with backoff, forgetting silent peers.
    Peers,
    /// Task deadlines and retries of the tasks this node requested.
    Requester,
    /// Deadlines of the jobs this node runs; free slots filled.
    Worker,
    /// Model fetches that stalled.
    Blobs,
}

impl Timer {
    pub(crate) const ALL: [Timer; 6] = [
        Self::Beacons,
        Self::Sessions,
        Self::Peers,
        Self::Requester,
        Self::Worker,
        Self::Blobs,
    ];
}
