//! The peer table: who is out there (from beacons, mDNS, bootstrap
//! addresses or inbound sessions), which of them hold a session, and when to
//! dial whom, with backoff. It owns the table and the bootstrap list; it
//! learns of sessions from the router and asks it to dial.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use p2pa_protocol::{Beacon, Capabilities, KindSet, NodeId, ReplayGuard};

use super::budget::{DialBudget, RESERVED};
use super::config::{Config, PeerConfig};
use super::ids::ConnId;
use super::output::{bump, BadInput, Event, Outbox};
use super::peer_info::{PeerInfo, PeerState, Via};
use super::recent::Recent;
use super::rng::{jitter, Entropy};

mod evict;
#[cfg(test)]
mod tests;

/// How long a node at its connection cap waits before trying new peers again.
const CAPPED_RETRY: Duration = Duration::from_secs(10);
/// Known peers per beacon period: past this many, a node stretches its beacon
/// interval in proportion, so the beacons each node receives stay bounded as
/// the LAN grows (beacon suppression).
const PEERS_PER_PERIOD: usize = 32;
/// Addresses learned from mDNS answers kept for dialing at once.
const MAX_MDNS_FOUND: usize = 64;
/// The most a beacon interval is stretched.
const MAX_STRETCH: u32 = 8;
/// The node with the higher id waits this long for the lower one to dial
/// before it dials itself (one connection per pair, and no pair left unlinked).
const DIAL_GRACE: Duration = Duration::from_millis(500);
/// The same wait for a requester facing a worker: a worker that dials at
/// all does so within a round trip of hearing the requester's first beacon,
/// so this spares the duplicate handshake on a LAN and costs a requester
/// that must dial itself little.
const REQUESTER_DIAL_GRACE: Duration = Duration::from_millis(50);
/// Beacons counted per entry: a key heard this often ranks with any other.
const HEARD_CAP: u8 = 8;

#[derive(Debug)]
pub(crate) struct Peer {
    id: NodeId,
    addr: Option<SocketAddr>,
    via: Via,
    caps: Capabilities,
    first_seen: Instant,
    last_seen: Instant,
    rtt: Option<Duration>,
    /// Established session.
    conn: Option<ConnId>,
    /// Outbound connection being set up.
    dialing: Option<ConnId>,
    next_dial: Instant,
    backoff: Duration,
    guard: ReplayGuard,
    /// It completed a task for this node: kept when the table is full.
    credited: bool,
    /// When a query beacon last cut its backoff short (at most once per
    /// `max_backoff`: fresh beacons cannot make the node redial at will).
    query_reset: Option<Instant>,
    /// Beacons accepted from it (up to `HEARD_CAP`): an honest node beacons
    /// again and again, a flood of throw-away keys names each key once.
    heard: u8,
    /// It held a session with this node once: its key answers at its address.
    proven: bool,
    /// The last dial to it failed (cleared by a session).
    failed: bool,
    /// When its session last carried work (or began).
    useful: Instant,
}

impl Peer {
    fn new(id: NodeId, addr: Option<SocketAddr>, via: Via, now: Instant, cfg: &PeerConfig) -> Self {
        Self {
            id,
            addr,
            via,
            caps: Capabilities::default(),
            first_seen: now,
            last_seen: now,
            rtt: None,
            conn: None,
            dialing: None,
            next_dial: now,
            backoff: cfg.min_backoff,
            guard: ReplayGuard::new(),
            credited: false,
            query_reset: None,
            heard: 0,
            proven: false,
            failed: false,
            useful: now,
        }
    }

    /// How much an entry without a session is worth keeping and dialing:
    /// a failed dial ranks lowest, then unproven keys by how often they were
    /// heard. Under a flood of fresh keys from a peer's own address (the
    /// per-address share cannot tell them apart) the honest entry, heard
    /// more than once, is neither evicted by the fakes nor dialed after them.
    fn worth(&self) -> (bool, bool, u8) {
        (!self.failed, self.proven, self.heard)
    }

    fn info(&self, now: Instant, cfg: &PeerConfig) -> PeerInfo {
        let silent = now.saturating_duration_since(self.last_seen);
        let state = match self.conn {
            None => PeerState::Known,
            Some(_) if silent >= cfg.slow_after => PeerState::Slow,
            Some(_) => PeerState::Connected,
        };
        PeerInfo {
            id: self.id,
            addr: self.addr,
            via: self.via,
            caps: self.caps.clone(),
            last_seen_ago: silent,
            rtt: self.rtt,
            state,
        }
    }

    /// When this node may dial the peer: at once if our id is lower, else
    /// after a grace period in which the peer should dial us. A node that
    /// runs no tasks (`eager`: a requester) gives a peer that runs some
    /// only [`REQUESTER_DIAL_GRACE`]: it is the one that wants the session,
    /// and a worker may not dial it at all (its dial budget spent on other
    /// newcomers), which cost every other `p2pa submit` half a second.
    /// Should both dial, the session keeps the connection the lower id made.
    fn dial_at(&self, me: NodeId, eager: bool) -> Instant {
        if me < self.id {
            return self.next_dial;
        }
        let wait = if eager && self.caps.kinds != KindSet::default() {
            REQUESTER_DIAL_GRACE
        } else {
            DIAL_GRACE
        };
        let grace = self.first_seen.checked_add(wait).unwrap_or(self.first_seen);
        self.next_dial.max(grace)
    }

    /// When this peer needs attention: a dial, or forgetting it.
    fn next_check(&self, me: NodeId, eager: bool, forget_after: Duration) -> Instant {
        if self.conn.is_some() || self.dialing.is_some() {
            return self
                .last_seen
                .checked_add(forget_after.saturating_mul(4))
                .unwrap_or(self.last_seen);
        }
        let forget = self
            .last_seen
            .checked_add(forget_after)
            .unwrap_or(self.last_seen);
        match self.addr {
            Some(_) => self.dial_at(me, eager).min(forget),
            None => forget,
        }
    }
}

/// A static address to keep a session with.
#[derive(Debug)]
struct Bootstrap {
    addr: SocketAddr,
    /// How the address was learned (`Bootstrap` or `Mdns`).
    via: Via,
    conn: Option<ConnId>,
    next_dial: Instant,
    backoff: Duration,
}

impl Bootstrap {
    fn new(addr: SocketAddr, via: Via, now: Instant) -> Self {
        Self {
            addr,
            via,
            conn: None,
            next_dial: now,
            backoff: Duration::ZERO,
        }
    }
}

/// What the table decided about a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    /// The peer was not in the table before.
    pub(crate) new_peer: bool,
    /// It had no session before this one.
    pub(crate) first: bool,
}

/// The peer table and the static addresses to keep sessions with.
#[derive(Debug)]
pub(crate) struct Peers {
    cfg: PeerConfig,
    pub(crate) stats: PeerStats,
    table: BTreeMap<NodeId, Peer>,
    bootstrap: Vec<Bootstrap>,
    budget: DialBudget,
    /// Keys of beacons heard lately, also those whose entries were evicted.
    recent: Recent,
}

/// What the peer table counted of beacons and entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerStats {
    pub(crate) beacons_accepted: u64,
    pub(crate) beacons_replayed: u64,
    pub(crate) beacons_untrusted: u64,
    pub(crate) peers_evicted: u64,
}

impl Peers {
    /// `secret` keys the filter of recent beacon keys (see [`Recent`]).
    pub(crate) fn new(cfg: &Config, now: Instant, secret: &[u8; 32]) -> Self {
        Self {
            cfg: PeerConfig::from(cfg),
            stats: PeerStats::default(),
            table: BTreeMap::new(),
            bootstrap: cfg
                .bootstrap
                .iter()
                .map(|&addr| Bootstrap::new(addr, Via::Bootstrap, now))
                .collect(),
            budget: DialBudget::new(now),
            recent: Recent::new(secret, now),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn contains(&self, id: &NodeId) -> bool {
        self.table.contains_key(id)
    }

    /// The connection of `id`'s session, if it has one.
    pub(crate) fn conn_of(&self, id: &NodeId) -> Option<ConnId> {
        self.table.get(id).and_then(|p| p.conn)
    }

    /// Peers with a session: (id, capabilities, RTT).
    pub(crate) fn connected(
        &self,
    ) -> impl Iterator<Item = (NodeId, &Capabilities, Option<Duration>)> + '_ {
        self.table
            .values()
            .filter(|p| p.conn.is_some())
            .map(|p| (p.id, &p.caps, p.rtt))
    }

    pub(crate) fn connected_ids(&self) -> Vec<NodeId> {
        self.connected().map(|(id, _, _)| id).collect()
    }

    pub(crate) fn info(&self, now: Instant) -> Vec<PeerInfo> {
        let cfg = &self.cfg;
        self.table.values().map(|p| p.info(now, cfg)).collect()
    }

    /// Bytes held by the table's entries.
    pub(crate) fn table_bytes(&self) -> usize {
        self.table.len().saturating_mul(std::mem::size_of::<Peer>())
    }

    /// The beacon interval now: longer on a crowded LAN.
    pub(crate) fn beacon_period(&self) -> Duration {
        let cfg = &self.cfg;
        let stretch = u32::try_from(self.table.len().checked_div(PEERS_PER_PERIOD).unwrap_or(0))
            .unwrap_or(MAX_STRETCH)
            .clamp(1, MAX_STRETCH);
        cfg.beacon_interval.saturating_mul(stretch)
    }

    /// How long a peer without a session may stay silent before it is
    /// forgotten: at least four of the (possibly stretched) beacon periods.
    fn forget_after(&self) -> Duration {
        let cfg = &self.cfg;
        cfg.forget_after.max(self.beacon_period().saturating_mul(4))
    }

    /// When a peer or a bootstrap address next needs a dial or forgetting.
    pub(crate) fn next_deadline(&self, me: NodeId) -> Option<Instant> {
        let forget = self.forget_after();
        self.table
            .values()
            .map(|p| p.next_check(me, self.cfg.runs_nothing, forget))
            .chain(
                self.bootstrap
                    .iter()
                    .filter(|b| b.conn.is_none())
                    .map(|b| b.next_dial),
            )
            .min()
    }

    /// A verified beacon from `sender`. Returns `None` if it is not kept
    /// (a key outside the allowlist, a full table, a replay), else whether
    /// it asks for an answer (a query from a peer just started).
    pub(crate) fn accept_beacon(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        seq: u64,
        beacon: Beacon,
        out: &mut Outbox,
    ) -> Option<bool> {
        let addr = SocketAddr::new(from.ip(), beacon.tcp_port);
        if !self.cfg.trust.admits(sender) {
            bump(&mut self.stats.beacons_untrusted);
            return None; // allowlist mode: nothing from other keys is kept
        }
        let known = self.table.contains_key(&sender);
        let heard_lately = self.recent.heard(now, &sender);
        if !known && !self.make_room(from.ip()) {
            log::debug!("peer table full; ignoring beacon from {}", sender.short());
            return None;
        }
        let cfg = &self.cfg;
        let peer = self
            .table
            .entry(sender)
            .or_insert_with(|| Peer::new(sender, Some(addr), Via::Multicast, now, cfg));
        if !known && heard_lately {
            peer.heard = 1; // its entry was evicted since: this is its second beacon
        }
        if let Err(e) = peer.guard.check(seq) {
            bump(&mut self.stats.beacons_replayed);
            out.warn_once(
                BadInput::ReplayedBeacon,
                format_args!("dropped beacon from {} at {from}: {e}", sender.short()),
            );
            return None;
        }
        bump(&mut self.stats.beacons_accepted);
        peer.last_seen = now;
        peer.heard = peer.heard.saturating_add(1).min(HEARD_CAP);
        peer.caps = beacon.caps;
        let reset_due = peer
            .query_reset
            .is_none_or(|t| now.saturating_duration_since(t) >= cfg.max_backoff);
        if beacon.query && peer.conn.is_none() && peer.dialing.is_none() && reset_due {
            // A query means the peer just started: whatever failed before,
            // it is worth a dial now rather than after the backoff (once per
            // `max_backoff`).
            peer.next_dial = now;
            peer.backoff = cfg.min_backoff;
            peer.query_reset = Some(now);
        }
        if peer.via == Via::Inbound {
            peer.via = Via::Multicast; // it dialed us first; it beacons too
        }
        if peer.conn.is_none() {
            peer.addr = Some(addr);
        }
        if !known {
            log::info!("discovered {} at {addr} by multicast", sender.short());
            out.event(Event::PeerDiscovered {
                id: sender,
                addr,
                via: Via::Multicast,
            });
        }
        Some(beacon.query)
    }

    /// Makes room for a new entry from `ip`: evicts, if the table (or that
    /// address's share) is full, an entry without a session, a dial or a
    /// completed task: the least worth keeping ([`Peer::worth`]), the
    /// stalest of those. False if every entry is worth keeping.
    pub(crate) fn make_room(&mut self, ip: IpAddr) -> bool {
        let cfg = &self.cfg;
        let same_ip = |p: &Peer| p.addr.is_some_and(|a| a.ip() == ip);
        let per_ip_full =
            self.table.values().filter(|p| same_ip(p)).count() >= cfg.max_peers_per_ip;
        if !per_ip_full && self.table.len() < cfg.max_peers {
            return true;
        }
        let victim = self
            .table
            .values()
            .filter(|p| p.conn.is_none() && p.dialing.is_none() && !p.credited)
            .filter(|p| !per_ip_full || same_ip(p))
            .min_by_key(|p| (p.worth(), p.last_seen, p.id))
            .map(|p| p.id);
        let Some(victim) = victim else {
            return false;
        };
        self.table.remove(&victim);
        bump(&mut self.stats.peers_evicted);
        log::debug!("peer table: evicted {} to make room", victim.short());
        true
    }

    /// `peer` completed a task for this node: it stays when the table is full.
    pub(crate) fn credit(&mut self, peer: NodeId) {
        if let Some(p) = self.table.get_mut(&peer) {
            p.credited = true;
        }
    }

    /// An address found by mDNS (or any out-of-band means): dial it once.
    pub(crate) fn found_addr(&mut self, now: Instant, addr: SocketAddr) {
        let cfg = &self.cfg;
        let known = self.table.values().any(|p| p.addr == Some(addr))
            || self.bootstrap.iter().any(|b| b.addr == addr);
        if known {
            return;
        }
        let found = self.bootstrap.iter().filter(|b| b.via == Via::Mdns).count();
        if found >= MAX_MDNS_FOUND {
            // The list of mDNS answers stays bounded: the oldest idle one goes.
            let idle = self
                .bootstrap
                .iter()
                .position(|b| b.via == Via::Mdns && b.conn.is_none());
            match idle {
                Some(i) => {
                    self.bootstrap.remove(i);
                }
                None => return,
            }
        }
        log::info!("found {addr} by mDNS; dialing");
        let mut b = Bootstrap::new(addr, Via::Mdns, now);
        b.backoff = cfg.min_backoff;
        self.bootstrap.push(b);
    }

    /// How the peer behind connection `conn` was found.
    pub(crate) fn via_of(&self, conn: ConnId, initiator: bool) -> Via {
        match self.bootstrap.iter().find(|b| b.conn == Some(conn)) {
            Some(b) => b.via,
            None if initiator => Via::Bootstrap,
            None => Via::Inbound,
        }
    }

    /// A session with `peer` is up on `conn`: record it.
    pub(crate) fn session_up(
        &mut self,
        now: Instant,
        peer: NodeId,
        conn: ConnId,
        listen_addr: SocketAddr,
        via: Via,
        caps: Capabilities,
    ) -> Joined {
        let cfg = &self.cfg;
        let new_peer = !self.table.contains_key(&peer);
        let entry = self
            .table
            .entry(peer)
            .or_insert_with(|| Peer::new(peer, Some(listen_addr), via, now, cfg));
        let first = entry.conn.is_none();
        entry.conn = Some(conn);
        if entry.dialing == Some(conn) {
            entry.dialing = None;
        }
        entry.addr = Some(listen_addr);
        entry.caps = caps;
        entry.last_seen = now;
        entry.backoff = cfg.min_backoff;
        entry.proven = true;
        entry.failed = false;
        if first {
            entry.useful = now;
        }
        for b in &mut self.bootstrap {
            if b.conn == Some(conn) {
                b.backoff = cfg.min_backoff;
            }
        }
        Joined { new_peer, first }
    }

    /// `peer`'s session on `conn` ended. Returns whether that was its session.
    pub(crate) fn session_down(&mut self, now: Instant, peer: NodeId, conn: ConnId) -> bool {
        match self.table.get_mut(&peer) {
            Some(p) if p.conn == Some(conn) => {
                p.conn = None;
                p.next_dial = now.checked_add(p.backoff).unwrap_or(now);
                true
            }
            _ => false,
        }
    }

    /// A session frame from `peer` arrived.
    pub(crate) fn heard(&mut self, now: Instant, peer: NodeId) {
        if let Some(p) = self.table.get_mut(&peer) {
            p.last_seen = now;
        }
    }

    pub(crate) fn set_rtt(&mut self, peer: NodeId, rtt: Duration) {
        if let Some(p) = self.table.get_mut(&peer) {
            p.rtt = Some(rtt);
        }
    }

    /// Forgets silent peers, dials those due (through `dial`, which returns
    /// the connection or `None` at a limit) and redials bootstrap addresses.
    /// `at_cap`: no connection can be opened now.
    pub(crate) fn timers(
        &mut self,
        now: Instant,
        me: NodeId,
        at_cap: bool,
        dial: &mut dyn FnMut(SocketAddr, Option<NodeId>) -> Option<ConnId>,
    ) {
        let cfg = &self.cfg;
        let forget_after = self.forget_after();
        self.table.retain(|id, p| {
            let forget = p.conn.is_none()
                && p.dialing.is_none()
                && now.saturating_duration_since(p.last_seen) >= forget_after;
            if forget {
                log::info!(
                    "forgot {}: not heard from in {:?}",
                    id.short(),
                    forget_after
                );
            }
            !forget
        });
        // At the connection cap, dialing cannot succeed: look again later
        // rather than spinning on every known peer.
        let retry = now
            .checked_add(if at_cap {
                CAPPED_RETRY
            } else {
                cfg.min_backoff
            })
            .unwrap_or(now);
        // Those due, the most worth dialing first (the dial budget may not
        // cover them all).
        let eager = self.cfg.runs_nothing;
        let mut due: Vec<&mut Peer> = self
            .table
            .values_mut()
            .filter(|p| p.conn.is_none() && p.dialing.is_none() && p.dial_at(me, eager) <= now)
            .collect();
        due.sort_by_key(|p| (core::cmp::Reverse(p.worth()), p.first_seen));
        for p in due {
            let Some(addr) = p.addr else { continue };
            if at_cap {
                p.next_dial = retry;
                continue;
            }
            let reserve = if p.proven || p.heard > 1 { 0 } else { RESERVED };
            if !self.budget.take(now, addr.ip(), reserve) {
                p.next_dial = self.budget.ready_at(now, addr.ip(), reserve);
                continue;
            }
            p.dialing = dial(addr, Some(p.id));
            if p.dialing.is_none() {
                p.next_dial = retry; // limits reached: try again later
            }
        }
        let table = &self.table;
        let in_session = |a: SocketAddr| {
            table
                .values()
                .any(|p| p.conn.is_some() && p.addr == Some(a))
        };
        for b in &mut self.bootstrap {
            if b.conn.is_some() || b.next_dial > now {
                continue;
            }
            if in_session(b.addr) {
                // Already in session with whoever is there: look again later.
                b.next_dial = now.checked_add(cfg.max_backoff).unwrap_or(now);
                continue;
            }
            if !self.budget.take(now, b.addr.ip(), 0) {
                b.next_dial = self.budget.ready_at(now, b.addr.ip(), 0);
                continue;
            }
            b.conn = dial(b.addr, None);
            if b.conn.is_none() {
                b.next_dial = now.checked_add(Duration::from_secs(1)).unwrap_or(now);
            }
        }
    }

    /// A dial to a peer or bootstrap address failed or its session ended:
    /// schedule the next try with exponential backoff and jitter.
    pub(crate) fn dial_failed(&mut self, now: Instant, conn: ConnId, rng: &mut dyn Entropy) {
        let cfg = &self.cfg;
        let (min, max) = (cfg.min_backoff, cfg.max_backoff);
        for p in self.table.values_mut() {
            if p.dialing == Some(conn) {
                p.dialing = None;
                p.failed = true;
                let delay = p.backoff;
                p.backoff = p.backoff.saturating_mul(2).clamp(min, max);
                p.next_dial = now.checked_add(jitter(rng, delay)).unwrap_or(now);
            }
        }
        for b in &mut self.bootstrap {
            if b.conn == Some(conn) {
                b.conn = None;
                let delay = b.backoff.max(min);
                b.backoff = b.backoff.saturating_mul(2).clamp(min, max);
                b.next_dial = now.checked_add(jitter(rng, delay)).unwrap_or(now);
            }
        }
    }
}
