//! The router's endings: a connection said goodbye to, failed or closed,
//! and what a session's end means for the other parts (its tasks go
//! elsewhere, fetches from the peer find another source).

use std::net::IpAddr;
use std::time::Instant;

use p2pa_protocol::{GoodbyeReason, NodeId};

use crate::core::output::bump;
use crate::core::{link_of, CloseReason, ConnId, Core, CoreLink, Event};

/// Budgets a newcomer can find full at once (per address, requesters, all).
const BUDGETS: usize = 3;

impl Core {
    /// Makes room for a new session with a peer at `ip` (a requester or
    /// not) in every budget it finds full, by ending the least valuable
    /// idle session in that budget's scope (`peers/evict.rs`); false when
    /// some full budget has no session to spare (the newcomer is refused).
    pub(in crate::core) fn session_room(
        &mut self,
        now: Instant,
        ip: IpAddr,
        requester: bool,
    ) -> bool {
        for _ in 0..=BUDGETS {
            let Some(full) = self.peers.full_for(ip, requester) else {
                return true;
            };
            let (worker, requests, blobs) = (&self.worker, &self.requester, &self.blobs);
            let idle = |p: &NodeId| !worker.serves(*p) && !requests.uses(*p) && !blobs.involves(*p);
            let Some((victim, conn)) = self.peers.least_valuable(full, idle) else {
                return false;
            };
            log::debug!(
                "{full:?} full: idle session of {} makes room",
                victim.short()
            );
            bump(&mut self.conn_stats.sessions_evicted);
            self.goodbye(now, conn, GoodbyeReason::TooManyPeers);
        }
        false
    }

    /// Says goodbye (when a session context exists) and closes.
    pub(in crate::core) fn goodbye(&mut self, now: Instant, conn: ConnId, reason: GoodbyeReason) {
        self.end(now, conn, CloseReason::Sent(reason));
    }

    /// Ends a connection: tells the peer why where [`CloseReason::goodbye`]
    /// says so (and a session exists to say it in), then closes.
    fn end(&mut self, now: Instant, conn: ConnId, reason: CloseReason) {
        if let Some(goodbye) = reason.goodbye() {
            self.sessions
                .say_goodbye(conn, &self.key, goodbye, &mut self.out);
        }
        self.close(now, conn, reason);
    }

    /// Closes a connection for bad input: counted, logged once, told why
    /// where a session exists, closed.
    pub(in crate::core) fn fail(&mut self, now: Instant, conn: ConnId, reason: CloseReason) {
        let handshaking = self.sessions.is_handshaking(conn);
        if let Some(noise) = reason.count(&mut self.conn_stats, handshaking) {
            let addr = self.sessions.addr(conn);
            self.out.warn_once(
                noise,
                format_args!("closing connection with {addr:?}: {reason}"),
            );
        }
        self.end(now, conn, reason);
    }

    /// Forgets a connection; if it carried a session, the parts hear of it.
    pub(in crate::core) fn close(&mut self, now: Instant, conn: ConnId, reason: CloseReason) {
        let Some(closed) = self.sessions.remove(conn, &mut self.out) else {
            return;
        };
        if reason.is_violation() {
            log::debug!("closed connection {conn} with {}: {reason}", closed.addr);
        }
        if let Some(peer) = closed.peer {
            if self.peers.session_down(now, peer, conn) {
                log::info!("session with {} ended: {reason}", peer.short());
                self.out.event(Event::PeerDisconnected { id: peer, reason });
                self.peer_down(now, peer);
            }
        }
        self.peers.dial_failed(now, conn, &mut *self.rng);
    }

    /// `peer`'s session ended: its tasks go elsewhere, fetches from it find
    /// another source, its jobs here are dropped.
    fn peer_down(&mut self, now: Instant, peer: NodeId) {
        self.requester.peer_down(now, peer, &mut link_of!(self));
        self.blobs.peer_gone(peer);
        for (hash, want) in self.blobs.stalled_from(peer) {
            if let Some(other) = self.worker.requester_waiting_for(hash, peer) {
                self.blobs
                    .fetch(now, hash, want, other, None, &mut link_of!(self));
            }
        }
        self.worker.peer_down(peer, &mut link_of!(self));
        self.prune_fetches();
        self.fetch_inputs(now);
    }
}
