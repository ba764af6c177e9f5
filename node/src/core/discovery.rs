//! Discovery: signed multicast beacons in and out, the peer table, and dialing
//! (peers found by beacon, mDNS or bootstrap address) with backoff.
//! Sessions themselves live in `session.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pa_protocol::{
    encode_datagram, verify_datagram, Beacon, Capabilities, FrameError, Message, NodeId,
    ReplayGuard, MAX_DATAGRAM_LEN,
};

use super::{Config, ConnId, Core, Event, Noise, Transmit};

/// Gap between the beacons of the start-up burst.
const BURST_GAP: Duration = Duration::from_millis(100);
/// Most a node waits before answering a query beacon (spreads the answers).
const QUERY_ANSWER_SPREAD_MS: u64 = 20;
/// How long a node at its connection cap waits before trying new peers again.
const CAPPED_RETRY: Duration = Duration::from_secs(10);
/// Known peers per beacon period: past this many, a node stretches its beacon
/// interval in proportion, so the beacons each node receives stay bounded as
/// the LAN grows (beacon suppression).
const PEERS_PER_PERIOD: usize = 32;
/// The most a beacon interval is stretched.
const MAX_STRETCH: u32 = 8;
/// The node with the higher id waits this long for the lower one to dial
/// before it dials itself (one connection per pair, and no pair left unlinked).
const DIAL_GRACE: Duration = Duration::from_secs(2);

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

#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: NodeId,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) via: Via,
    pub(crate) caps: Capabilities,
    pub(crate) first_seen: Instant,
    pub(crate) last_seen: Instant,
    pub(crate) rtt: Option<Duration>,
    /// Established session.
    pub(crate) conn: Option<ConnId>,
    /// Outbound connection being set up.
    pub(crate) dialing: Option<ConnId>,
    pub(crate) next_dial: Instant,
    pub(crate) backoff: Duration,
    guard: ReplayGuard,
}

impl Peer {
    pub(crate) fn new(
        id: NodeId,
        addr: Option<SocketAddr>,
        via: Via,
        now: Instant,
        cfg: &Config,
    ) -> Self {
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
        }
    }

    pub(crate) fn info(&self, now: Instant, cfg: &Config) -> PeerInfo {
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
    /// after a grace period in which the peer should dial us.
    pub(crate) fn dial_at(&self, me: NodeId) -> Instant {
        if me < self.id {
            self.next_dial
        } else {
            let grace = self
                .first_seen
                .checked_add(DIAL_GRACE)
                .unwrap_or(self.first_seen);
            self.next_dial.max(grace)
        }
    }

    /// When this peer needs attention: a dial, or forgetting it.
    pub(crate) fn next_check(&self, me: NodeId, forget_after: Duration) -> Instant {
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
            Some(_) => self.dial_at(me).min(forget),
            None => forget,
        }
    }
}

/// A static address to keep a session with.
#[derive(Debug)]
pub(crate) struct Bootstrap {
    pub(crate) addr: SocketAddr,
    /// How the address was learned (`Bootstrap` or `Mdns`).
    pub(crate) via: Via,
    pub(crate) conn: Option<ConnId>,
    pub(crate) next_dial: Instant,
    pub(crate) backoff: Duration,
}

impl Bootstrap {
    pub(crate) fn new(addr: SocketAddr, via: Via, now: Instant) -> Self {
        Self {
            addr,
            via,
            conn: None,
            next_dial: now,
            backoff: Duration::ZERO,
        }
    }
}

impl Core {
    /// A UDP datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if !self.cfg.multicast || self.shutting_down {
            return;
        }
        let verified = match verify_datagram(data) {
            Ok(v) => v,
            Err(e) => {
                let noise = match e {
                    FrameError::UnsupportedVersion { .. } => {
                        self.stats.beacons_wrong_version =
                            self.stats.beacons_wrong_version.saturating_add(1);
                        Noise::WrongVersion
                    }
                    FrameError::BadSignature | FrameError::BadKey => {
                        self.stats.beacons_forged = self.stats.beacons_forged.saturating_add(1);
                        Noise::ForgedBeacon
                    }
                    _ => {
                        self.stats.beacons_malformed =
                            self.stats.beacons_malformed.saturating_add(1);
                        Noise::MalformedBeacon
                    }
                };
                self.warn_once(noise, format_args!("dropped datagram from {from}: {e}"));
                return;
            }
        };
        let sender = verified.sender();
        if sender == self.id {
            return; // our own beacon, looped back
        }
        let seq = verified.seq();
        let Message::Beacon(beacon) = verified.into_message() else {
            return; // verify_datagram admits only beacons
        };
        self.accept_beacon(now, from, sender, seq, beacon);
    }

    fn accept_beacon(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        seq: u64,
        beacon: Beacon,
    ) {
        let addr = SocketAddr::new(from.ip(), beacon.tcp_port);
        let known = self.peers.contains_key(&sender);
        if !known && self.peers.len() >= self.cfg.max_peers {
            log::debug!(
                "peer table full ({}); ignoring beacon from {}",
                self.cfg.max_peers,
                sender.short()
            );
            return;
        }
        let cfg = &self.cfg;
        let peer = self
            .peers
            .entry(sender)
            .or_insert_with(|| Peer::new(sender, Some(addr), Via::Multicast, now, cfg));
        if let Err(e) = peer.guard.check(seq) {
            self.stats.beacons_replayed = self.stats.beacons_replayed.saturating_add(1);
            self.warn_once(
                Noise::ReplayedBeacon,
                format_args!("dropped beacon from {} at {from}: {e}", sender.short()),
            );
            return;
        }
        self.stats.beacons_accepted = self.stats.beacons_accepted.saturating_add(1);
        peer.last_seen = now;
        peer.caps = beacon.caps;
        if beacon.query && peer.conn.is_none() && peer.dialing.is_none() {
            // A query means the peer just started: whatever failed before,
            // it is worth a dial now rather than after the backoff.
            peer.next_dial = now;
            peer.backoff = self.cfg.min_backoff;
        }
        if peer.via == Via::Inbound {
            peer.via = Via::Multicast; // it dialed us first; it beacons too
        }
        if peer.conn.is_none() {
            peer.addr = Some(addr);
        }
        if !known {
            log::info!("discovered {} at {addr} by multicast", sender.short());
            self.events.push_back(Event::PeerDiscovered {
                id: sender,
                addr,
                via: Via::Multicast,
            });
        }
        if beacon.query && self.answer_query_at.is_none() {
            let delay = self
                .rng
                .next_u64()
                .checked_rem(QUERY_ANSWER_SPREAD_MS)
                .unwrap_or(0);
            self.answer_query_at = now.checked_add(Duration::from_millis(delay));
        }
    }

    /// An address found by mDNS (or any out-of-band means): dial it once.
    pub fn handle_found_addr(&mut self, now: Instant, addr: SocketAddr) {
        let known = self.peers.values().any(|p| p.addr == Some(addr))
            || self.bootstrap.iter().any(|b| b.addr == addr);
        if known || self.shutting_down {
            return;
        }
        log::info!("found {addr} by mDNS; dialing");
        let mut b = Bootstrap::new(addr, Via::Mdns, now);
        b.backoff = self.cfg.min_backoff;
        self.bootstrap.push(b);
    }

    pub(super) fn beacon_timers(&mut self, now: Instant) {
        if self.answer_query_at.is_some_and(|t| t <= now) {
            self.answer_query_at = None;
            self.send_beacon(false);
        }
        let Some(at) = self.next_beacon else { return };
        if at > now {
            return;
        }
        let query = self.burst_left == self.cfg.beacon_burst && self.burst_left > 0;
        self.send_beacon(query);
        let gap = if self.burst_left > 1 {
            self.burst_left = self.burst_left.saturating_sub(1);
            BURST_GAP
        } else {
            self.burst_left = 0;
            let period = self.beacon_period();
            self.jitter(period)
        };
        self.next_beacon = now.checked_add(gap);
    }

    fn send_beacon(&mut self, query: bool) {
        let beacon = Message::Beacon(Beacon {
            tcp_port: self.cfg.listen_port,
            query,
            caps: self.capabilities(),
        });
        self.beacon_seq = self.beacon_seq.saturating_add(1);
        let mut out = [0u8; MAX_DATAGRAM_LEN];
        match encode_datagram(&self.key, self.beacon_seq, &beacon, &mut out) {
            Ok(n) => {
                let bytes = out.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                self.transmits.push_back(Transmit::Multicast(bytes));
            }
            Err(e) => log::error!("could not encode beacon: {e}"),
        }
    }

    /// The beacon interval now: longer on a crowded LAN.
    pub(super) fn beacon_period(&self) -> Duration {
        let stretch = u32::try_from(self.peers.len().checked_div(PEERS_PER_PERIOD).unwrap_or(0))
            .unwrap_or(MAX_STRETCH)
            .clamp(1, MAX_STRETCH);
        self.cfg.beacon_interval.saturating_mul(stretch)
    }

    /// How long a peer without a session may stay silent before it is
    /// forgotten: at least four of the (possibly stretched) beacon periods.
    pub(super) fn forget_after(&self) -> Duration {
        self.cfg
            .forget_after
            .max(self.beacon_period().saturating_mul(4))
    }

    /// Dials peers that need it, forgets silent ones, redials bootstrap addresses.
    pub(super) fn discovery_timers(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        let forget_after = self.forget_after();
        let forgotten: Vec<NodeId> = self
            .peers
            .values()
            .filter(|p| {
                p.conn.is_none()
                    && p.dialing.is_none()
                    && now.saturating_duration_since(p.last_seen) >= forget_after
            })
            .map(|p| p.id)
            .collect();
        for id in forgotten {
            log::info!(
                "forgot {}: not heard from in {:?}",
                id.short(),
                forget_after
            );
            self.peers.remove(&id);
        }
        let me = self.id;
        let to_dial: Vec<(NodeId, SocketAddr)> = self
            .peers
            .values()
            .filter(|p| p.conn.is_none() && p.dialing.is_none() && p.dial_at(me) <= now)
            .filter_map(|p| p.addr.map(|a| (p.id, a)))
            .collect();
        // At the connection cap, dialing cannot succeed: look again later
        // rather than spinning on every known peer.
        let at_cap = self.conns.len() >= self.cfg.max_conns;
        let retry = now
            .checked_add(if at_cap {
                CAPPED_RETRY
            } else {
                self.cfg.min_backoff
            })
            .unwrap_or(now);
        for (id, addr) in to_dial {
            if at_cap {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.next_dial = retry;
                }
                continue;
            }
            let conn = self.dial(now, addr, Some(id));
            if let Some(p) = self.peers.get_mut(&id) {
                p.dialing = conn;
                if conn.is_none() {
                    p.next_dial = retry; // limits reached: try again later
                }
            }
        }
        let connected_addrs: Vec<SocketAddr> = self
            .peers
            .values()
            .filter(|p| p.conn.is_some())
            .filter_map(|p| p.addr)
            .collect();
        for i in 0..self.bootstrap.len() {
            let Some(b) = self.bootstrap.get(i) else {
                break;
            };
            if b.conn.is_some() || b.next_dial > now {
                continue;
            }
            if connected_addrs.contains(&b.addr) {
                // Already in session with whoever is there: look again later.
                if let Some(b) = self.bootstrap.get_mut(i) {
                    b.next_dial = now.checked_add(self.cfg.max_backoff).unwrap_or(now);
                }
                continue;
            }
            let addr = b.addr;
            let conn = self.dial(now, addr, None);
            if let Some(b) = self.bootstrap.get_mut(i) {
                b.conn = conn;
                if conn.is_none() {
                    b.next_dial = now.checked_add(Duration::from_secs(1)).unwrap_or(now);
                }
            }
        }
    }

    /// A dial to a peer or bootstrap address failed or its session ended:
    /// schedule the next try with exponential backoff and jitter.
    pub(super) fn dial_failed(&mut self, now: Instant, conn: ConnId) {
        let (min, max) = (self.cfg.min_backoff, self.cfg.max_backoff);
        let mut delays = Vec::new();
        for p in self.peers.values_mut() {
            if p.dialing == Some(conn) {
                p.dialing = None;
                delays.push((Some(p.id), None, p.backoff));
                p.backoff = p.backoff.saturating_mul(2).clamp(min, max);
            }
        }
        for (i, b) in self.bootstrap.iter_mut().enumerate() {
            if b.conn == Some(conn) {
                b.conn = None;
                delays.push((None, Some(i), b.backoff.max(min)));
                b.backoff = b.backoff.saturating_mul(2).clamp(min, max);
            }
        }
        for (peer, boot, delay) in delays {
            let at = now.checked_add(self.jitter(delay)).unwrap_or(now);
            if let Some(p) = peer.and_then(|id| self.peers.get_mut(&id)) {
                p.next_dial = at;
            }
            if let Some(b) = boot.and_then(|i| self.bootstrap.get_mut(i)) {
                b.next_dial = at;
            }
        }
    }
}
