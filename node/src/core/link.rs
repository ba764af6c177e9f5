//! How a part of the core reaches peers: a [`Link`] sends a session message
//! to a peer, says whether a peer is connected, and lends the outbox (events
//! and counters), and nothing else. The router lends one over its sessions
//! and peer table ([`link_of!`]); a part's unit test lends a fake.

use std::time::Duration;

use p2pa_protocol::{Capabilities, Keypair, Message, NodeId};

use super::output::Outbox;
use super::peers::Peers;
use super::sessions::Sessions;

/// What a part of the core may do to reach peers.
pub(crate) trait Link {
    /// Sends a session message to `peer`; false when it has no session (the
    /// message is not sent).
    fn send_to(&mut self, peer: NodeId, message: &Message<'_>) -> bool;
    /// Whether `peer` has a session now.
    fn is_connected(&self, peer: &NodeId) -> bool;
    /// The peers with a session now: their capabilities and round trip.
    fn connected(&self) -> Connected<'_>;
    /// The outbox: events for the application, counters, rate-limited logs.
    fn out(&mut self) -> &mut Outbox;
}

/// What [`Link::connected`] yields.
pub(crate) type Connected<'a> =
    Box<dyn Iterator<Item = (NodeId, &'a Capabilities, Option<Duration>)> + 'a>;

/// The router's link: the sessions, the peer table (to find a peer's
/// connection), the key and the outbox, lent by [`link_of!`].
pub(crate) struct CoreLink<'a> {
    pub(crate) key: &'a Keypair,
    pub(crate) peers: &'a Peers,
    pub(crate) sessions: &'a mut Sessions,
    pub(crate) out: &'a mut Outbox,
}

impl Link for CoreLink<'_> {
    fn send_to(&mut self, peer: NodeId, message: &Message<'_>) -> bool {
        match self.peers.conn_of(&peer) {
            Some(conn) => self.sessions.send(conn, self.key, message, self.out),
            None => false,
        }
    }

    fn is_connected(&self, peer: &NodeId) -> bool {
        self.peers.conn_of(peer).is_some()
    }

    fn connected(&self) -> Connected<'_> {
        Box::new(self.peers.connected())
    }

    fn out(&mut self) -> &mut Outbox {
        self.out
    }
}

/// Lends `core`'s sessions, peer table, key and outbox as a [`CoreLink`],
/// next to the other parts it names.
macro_rules! link_of {
    ($core:expr) => {
        CoreLink {
            key: &$core.key,
            peers: &$core.peers,
            sessions: &mut $core.sessions,
            out: &mut $core.out,
        }
    };
}
pub(crate) use link_of;

/// A link for a part's unit tests: a set of connected peers, the messages
/// sent to them (owned, so a test can read them after the part returns)
/// and an outbox. No session, no router, no `Core`.
#[cfg(test)]
pub(crate) mod fake {
    use std::time::Duration;

    use p2pa_protocol::{
        Capabilities, ErrorCode, FailReason, Hash32, KindSet, Message, NodeId, RejectReason,
        TaskOutput, TaskStatus,
    };

    use super::{Connected, Link, Outbox};

    /// A message a part sent, as far as the tests read it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Sent {
        Offer {
            task_id: u64,
        },
        Request {
            hash: Hash32,
            offset: u64,
        },
        Chunk {
            hash: Hash32,
            offset: u64,
            total_len: u64,
            data: Vec<u8>,
        },
        Error(ErrorCode),
        Accept {
            task_id: u64,
        },
        Reject {
            task_id: u64,
            reason: RejectReason,
        },
        /// A result: its output inline, or the hash of an output lent.
        Result {
            task_id: u64,
            status: TaskStatus,
            reason: Option<FailReason>,
            inline: Option<Vec<u8>>,
            blob: Option<Hash32>,
        },
        /// Any other message, by its `Debug` text.
        Other(String),
    }

    #[derive(Debug, Default)]
    pub(crate) struct FakeLink {
        pub(crate) peers: Vec<(NodeId, Capabilities, Option<Duration>)>,
        pub(crate) sent: Vec<(NodeId, Sent)>,
        pub(crate) out: Outbox,
    }

    impl FakeLink {
        /// A link on which `peers` are connected (running no task kind).
        pub(crate) fn with(peers: &[NodeId]) -> Self {
            let mut link = Self::default();
            for p in peers {
                link.connect(*p, KindSet::default());
            }
            link
        }

        /// `peer` connects, running `kinds`.
        pub(crate) fn connect(&mut self, peer: NodeId, kinds: KindSet) {
            let caps = Capabilities {
                kinds,
                free_slots: 1,
                ..Capabilities::default()
            };
            self.peers.push((peer, caps, None));
        }

        pub(crate) fn disconnect(&mut self, peer: NodeId) {
            self.peers.retain(|(p, _, _)| *p != peer);
        }

        /// What was sent since the last call.
        pub(crate) fn take(&mut self) -> Vec<(NodeId, Sent)> {
            std::mem::take(&mut self.sent)
        }
    }

    impl Link for FakeLink {
        fn send_to(&mut self, peer: NodeId, message: &Message<'_>) -> bool {
            if !self.is_connected(&peer) {
                return false;
            }
            let sent = match message {
                Message::TaskOffer(o) => Sent::Offer { task_id: o.task_id },
                Message::BlobRequest(r) => Sent::Request {
                    hash: r.hash,
                    offset: r.offset,
                },
                Message::BlobChunk(c) => Sent::Chunk {
                    hash: c.hash,
                    offset: c.offset,
                    total_len: c.total_len,
                    data: c.data.to_vec(),
                },
                Message::Error(e) => Sent::Error(e.code),
                Message::TaskAccept(a) => Sent::Accept { task_id: a.task_id },
                Message::TaskReject(r) => Sent::Reject {
                    task_id: r.task_id,
                    reason: r.reason,
                },
                Message::TaskResult(r) => {
                    let (inline, blob) = match r.output {
                        TaskOutput::Inline(b) => (Some(b.to_vec()), None),
                        TaskOutput::Blob { hash, .. } => (None, Some(hash)),
                    };
                    Sent::Result {
                        task_id: r.task_id,
                        status: r.status,
                        reason: r.reason,
                        inline,
                        blob,
                    }
                }
                other => Sent::Other(format!("{other:?}")),
            };
            self.sent.push((peer, sent));
            true
        }

        fn is_connected(&self, peer: &NodeId) -> bool {
            self.peers.iter().any(|(p, _, _)| p == peer)
        }

        fn connected(&self) -> Connected<'_> {
            Box::new(self.peers.iter().map(|(p, c, r)| (*p, c, *r)))
        }

        fn out(&mut self) -> &mut Outbox {
            &mut self.out
        }
    }
}
