//! How the peer table looks from outside: one row per peer, for the CLI's
//! `peers` table, JSON output and applications.

use std::net::SocketAddr;
use std::time::Duration;

use p2pa_protocol::{Capabilities, NodeId};

/// How a peer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Multicast,
    Mdns,
    Bootstrap,
    /// It dialed us.
    Inbound,
}

impl Via {
    /// Lowercase name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Multicast => "multicast",
            Self::Mdns => "mdns",
            Self::Bootstrap => "bootstrap",
            Self::Inbound => "inbound",
        }
    }
}

/// A peer's state as seen from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Known, no session.
    Known,
    /// Session up, heard from recently.
    Connected,
    /// Session up, but silent for longer than `slow_after`.
    Slow,
}

impl PeerState {
    /// Lowercase name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Known => "known",
            Self::Connected => "connected",
            Self::Slow => "slow",
        }
    }
}

/// One row of the peer table, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub id: NodeId,
    pub addr: Option<SocketAddr>,
    pub via: Via,
    pub caps: Capabilities,
    pub last_seen_ago: Duration,
    pub rtt: Option<Duration>,
    pub state: PeerState,
}
