//! How a part of the core reaches peers: the [`Wire`] lends it the
//! sessions, the peer table (to find a peer's connection), the key and the
//! outbox, and nothing else.

use p2pa_protocol::{Keypair, Message, NodeId};

use super::output::Outbox;
use super::peers::Peers;
use super::sessions::Sessions;

/// How a part reaches peers: through their sessions, signed with this
/// node's key, into the outbox.
pub(crate) struct Wire<'a> {
    pub(crate) key: &'a Keypair,
    pub(crate) peers: &'a Peers,
    pub(crate) sessions: &'a mut Sessions,
    pub(crate) out: &'a mut Outbox,
}

impl Wire<'_> {
    /// Sends a session message to `peer`, if it has a session.
    pub(crate) fn send_to(&mut self, peer: NodeId, message: &Message<'_>) -> bool {
        match self.peers.conn_of(&peer) {
            Some(conn) => self.sessions.send(conn, self.key, message, self.out),
            None => false,
        }
    }
}

/// Lends `core`'s sessions, peer table, key and outbox as a [`Wire`], next
/// to the other parts it names.
macro_rules! wire {
    ($core:expr) => {
        Wire {
            key: &$core.key,
            peers: &$core.peers,
            sessions: &mut $core.sessions,
            out: &mut $core.out,
        }
    };
}
pub(crate) use wire;
