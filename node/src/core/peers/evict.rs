//! Which session a newcomer pushes out when a session budget is full. Every
//! session is a resource a peer holds; one that carries no work for this
//! node loses it to a newcomer that might: the least valuable idle session
//! goes (no task or transfer with it now, never a worker that completed a
//! task for this node), from the address holding the most sessions first,
//! then a requester before a worker, then the one least recently useful.
//! So keys that only keep sessions open cannot lock honest peers out: a
//! newcomer is the most recently useful of all, and once it offers work it
//! is busy and kept.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use p2pa_protocol::{KindSet, NodeId};

use super::Peers;
use crate::core::ids::ConnId;

/// The session budget a newcomer finds full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// `max_sessions_per_ip` sessions from its address.
    Addr(IpAddr),
    /// `max_requester_sessions` requesters (it is one).
    Requesters,
    /// `max_conns` sessions in all.
    Sessions,
}

impl Peers {
    /// Which budget a new session with a peer at `ip` (a requester: it runs
    /// no kind) finds full, if any.
    pub(crate) fn full_for(&self, ip: IpAddr, requester: bool) -> Option<Full> {
        let cfg = &self.cfg;
        let live = || self.table.values().filter(|p| p.conn.is_some());
        let from_ip = live()
            .filter(|p| p.addr.is_some_and(|a| a.ip() == ip))
            .count();
        if from_ip >= cfg.max_sessions_per_ip {
            return Some(Full::Addr(ip));
        }
        let requesters = live()
            .filter(|p| p.caps.kinds == KindSet::default())
            .count();
        if requester && requesters >= cfg.max_requester_sessions {
            return Some(Full::Requesters);
        }
        (live().count() >= cfg.max_conns).then_some(Full::Sessions)
    }

    /// The session to end so that a newcomer fits `full`, among those that
    /// `idle` says carry nothing now (see the module's order); `None` when
    /// every session in scope is worth keeping.
    pub(crate) fn least_valuable(
        &self,
        full: Full,
        idle: impl Fn(&NodeId) -> bool,
    ) -> Option<(NodeId, ConnId)> {
        let mut per_ip: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for a in self
            .table
            .values()
            .filter(|p| p.conn.is_some())
            .filter_map(|p| p.addr)
        {
            let n = per_ip.entry(a.ip()).or_insert(0);
            *n = n.saturating_add(1);
        }
        let crowd = |ip: Option<IpAddr>| ip.and_then(|ip| per_ip.get(&ip).copied()).unwrap_or(0);
        (self.table.values())
            .filter(|p| !p.credited && idle(&p.id))
            .filter_map(|p| Some((p, p.conn?)))
            .filter(|(p, _)| {
                let requester = p.caps.kinds == KindSet::default();
                match full {
                    Full::Addr(ip) => p.addr.is_some_and(|a| a.ip() == ip),
                    Full::Requesters => requester,
                    Full::Sessions => true,
                }
            })
            .max_by_key(|(p, conn)| {
                let requester = p.caps.kinds == KindSet::default();
                let ip = p.addr.map(|a| a.ip());
                (crowd(ip), requester, std::cmp::Reverse(p.useful), *conn)
            })
            .map(|(p, conn)| (p.id, conn))
    }

    /// `peer`'s session carried work (a task, a result, a blob).
    pub(crate) fn useful(&mut self, now: Instant, peer: NodeId) {
        if let Some(p) = self.table.get_mut(&peer) {
            p.useful = now;
        }
    }
}
