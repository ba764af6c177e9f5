//! Sessions: the TCP connections, their handshake (the protocol crate's
//! type-state machine), keepalive and framing. It owns every connection's
//! state; what a session means for the peer table and the tasks is the
//! router's business (`Step` reports it). Its unit tests (`tests.rs`) run
//! two of them against each other, bytes carried by hand, with no `Core`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use p2pa_protocol::{
    version_notice, AwaitAck, AwaitConfirm, EncodeError, GoodbyeReason, GrowBuf, HandshakeError,
    Identity, Initiator, Intro, Keypair, Message, NodeId, Ping, Pong, Responder, Seal, Session,
    StreamDecoder, Transport, LEN_PREFIX_LEN, MAX_RECORD_LEN,
};

use super::config::SessionConfig;
use super::ids::ConnId;
use super::output::{bump, BadInput, Outbox, Transmit};
use super::reason::CloseReason;
use super::rng::{Entropy, EntropyError};

#[cfg(test)]
mod tests;

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // most connections are in session: unboxed
enum State {
    /// Outbound TCP connect in progress.
    Dialing {
        /// The key we mean to reach, if known.
        expected: Option<NodeId>,
        /// Attempts made before this one (each timed out).
        retries: u32,
        /// How long this attempt may take ([`connect_wait`]).
        wait: Duration,
    },
    /// Initiator: message 1 sent, waiting for message 2.
    AwaitAck(Box<AwaitAck>),
    /// Responder: waiting for message 1.
    AwaitHello(Responder),
    /// Responder: message 2 sent, waiting for message 3.
    AwaitConfirm(Box<AwaitConfirm>),
    /// Both sides proved their keys.
    Established(Session),
    /// Between two states (a step consumed the old one and failed).
    Closing,
}

#[derive(Debug)]
struct Conn {
    addr: SocketAddr,
    initiator: bool,
    state: State,
    decoder: Option<StreamDecoder<GrowBuf>>,
    opened: Instant,
    last_rx: Instant,
    ping: Option<(u64, Instant)>,
    last_ping: Instant,
    /// When the session last changed its sending key.
    last_rekey: Instant,
}

impl Conn {
    fn new(addr: SocketAddr, initiator: bool, state: State, now: Instant) -> Self {
        Self {
            addr,
            initiator,
            state,
            decoder: None,
            opened: now,
            last_rx: now,
            ping: None,
            last_ping: now,
            last_rekey: now,
        }
    }

    fn session(&self) -> Option<&Session> {
        match &self.state {
            State::Established(s) => Some(s),
            _ => None,
        }
    }

    fn handshaking(&self) -> bool {
        !matches!(self.state, State::Established(_))
    }

    /// How long after `opened` a handshake gives up: a dial attempt has its
    /// own wait first (the shell reports its timeout well before).
    fn handshake_limit(&self, cfg: &SessionConfig) -> Duration {
        match self.state {
            State::Dialing { wait, .. } => wait.saturating_add(cfg.handshake_timeout),
            _ => cfg.handshake_timeout,
        }
    }

    fn next_deadline(&self, cfg: &SessionConfig) -> Instant {
        let at = |base: Instant, d: Duration| base.checked_add(d).unwrap_or(base);
        if self.handshaking() {
            return at(self.opened, self.handshake_limit(cfg));
        }
        let dead = at(self.last_rx, cfg.dead_after);
        match self.ping {
            Some(_) => dead,
            None => dead.min(at(self.last_ping, cfg.ping_interval)),
        }
    }
}

/// A finished handshake, for the router to register.
#[derive(Debug)]
pub(crate) struct Up {
    pub(crate) conn: ConnId,
    pub(crate) peer: NodeId,
    /// This node opened the connection.
    pub(crate) initiator: bool,
    /// The peer's TCP address (its listen port on the connection's IP).
    pub(crate) listen_addr: SocketAddr,
    pub(crate) intro: Intro,
}

/// What one received frame means.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned and matched at once, never stored
pub(crate) enum Step<'f> {
    /// Nothing for the router (a handshake step, a frame while dialing).
    Handled,
    /// The handshake finished.
    Up(Up),
    /// The handshake reached a peer the trust policy refuses; a Goodbye is queued.
    Refused(NodeId),
    /// A session message from `peer`, with its frame's seal (a result's
    /// receipt keeps it).
    Message(NodeId, Message<'f>, Seal),
    /// The connection must close for this reason.
    Close(CloseReason),
}

/// Connections that a timer ended.
#[derive(Debug, Default)]
pub(crate) struct Expired {
    /// Handshakes not finished in time: (connection, address).
    pub(crate) handshakes: Vec<(ConnId, SocketAddr)>,
    /// Sessions silent for `dead_after`.
    pub(crate) dead: Vec<ConnId>,
}

/// A connection the router closed: who it was with, if in session.
#[derive(Debug)]
pub(crate) struct Closed {
    pub(crate) addr: SocketAddr,
    pub(crate) peer: Option<NodeId>,
}

/// How long the first attempt of an outbound TCP connect may take; each
/// retry waits twice as long. On a LAN a connect that takes 250 ms lost its
/// SYN: a fresh attempt beats the kernel's 1 s retransmission timer.
pub(crate) const CONNECT_FIRST_WAIT: Duration = Duration::from_millis(250);

/// Connect attempts before a dial counts as failed (250 + 500 + 1000 +
/// 2000 ms). Only a timed-out attempt is retried: a refusal is an answer.
pub(crate) const CONNECT_ATTEMPTS: u32 = 4;

/// How long connect attempt `retries + 1` may take.
pub(crate) fn connect_wait(retries: u32) -> Duration {
    CONNECT_FIRST_WAIT.saturating_mul(1u32.checked_shl(retries).unwrap_or(u32::MAX))
}

/// A session's sending key changes this often (and every
/// `p2pa_protocol::REKEY_FRAMES` records, whichever comes first).
pub(crate) const REKEY_INTERVAL: Duration = Duration::from_secs(600);

/// Certificates remembered (node id → static key): a handshake with a peer
/// seen before skips the certificate's signature check.
const KNOWN_CERTS: usize = 1024;

/// Every TCP connection of the node.
#[derive(Debug)]
pub(crate) struct Sessions {
    cfg: SessionConfig,
    pub(crate) stats: SessionStats,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    /// This node's handshake identity (the signing key, its certified
    /// static key, the network key if any).
    identity: Identity,
    /// Static keys whose certificates were checked, by node id.
    known: BTreeMap<NodeId, [u8; 32]>,
    /// Where frames are signed and sealed before they are copied into a transmit.
    scratch: Box<[u8]>,
}

/// What the sessions part counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionStats {
    pub(crate) handshakes_completed: u64,
    pub(crate) sessions_aes_gcm: u64,
    pub(crate) conns_refused: u64,
}

impl Sessions {
    pub(crate) fn new(cfg: SessionConfig, identity: Identity) -> Self {
        Self {
            cfg,
            stats: SessionStats::default(),
            conns: BTreeMap::new(),
            next_conn: 1,
            identity,
            known: BTreeMap::new(),
            scratch: vec![0u8; MAX_RECORD_LEN + LEN_PREFIX_LEN].into_boxed_slice(),
        }
    }

    /// Remembers that `peer` certified `statik` (the handshake checked it).
    fn remember(&mut self, peer: NodeId, statik: [u8; 32]) {
        if self.known.len() >= KNOWN_CERTS && !self.known.contains_key(&peer) {
            self.known.pop_first();
        }
        self.known.insert(peer, statik);
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether one more dial of our own would exceed a limit.
    fn dials_full(&self) -> bool {
        let cfg = &self.cfg;
        let dialing = self
            .conns
            .values()
            .filter(|c| c.initiator && c.handshaking())
            .count();
        self.conns.len() >= cfg.max_conns || dialing >= cfg.max_dials
    }

    /// Makes room for an inbound connection from `ip`: `Ok(None)` if there
    /// is room, `Ok(Some(victim))` if the oldest pending inbound handshake
    /// (of that address first) must go, `Err(())` if every connection is an
    /// established session or our own dial. Full sessions (`max_conns`) do
    /// not refuse a handshake: once it completes, the newcomer may take an
    /// idle session's place (`peers/evict.rs`); connections in all stay
    /// within `max_conns + max_handshakes`.
    pub(crate) fn room_for(&self, ip: IpAddr) -> Result<Option<ConnId>, ()> {
        let cfg = &self.cfg;
        let pending = || {
            self.conns
                .iter()
                .filter(|(_, c)| !c.initiator && c.handshaking())
        };
        let oldest = |from_ip: bool| {
            pending()
                .filter(|(_, c)| !from_ip || c.addr.ip() == ip)
                .min_by_key(|(id, c)| (c.opened, **id))
                .map(|(id, _)| *id)
        };
        let from_ip = pending().filter(|(_, c)| c.addr.ip() == ip).count();
        if from_ip >= cfg.max_handshakes_per_ip {
            return Ok(oldest(true));
        }
        let cap = cfg.max_conns.saturating_add(cfg.max_handshakes);
        if pending().count() >= cfg.max_handshakes || self.conns.len() >= cap {
            return oldest(false).map(Some).ok_or(());
        }
        Ok(None)
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .map(|c| c.next_deadline(&self.cfg))
            .min()
    }

    fn new_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn = self.next_conn.saturating_add(1);
        id
    }

    /// Opens an outbound connection (the shell reports back).
    pub(crate) fn dial(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: Option<NodeId>,
        out: &mut Outbox,
    ) -> Option<ConnId> {
        if self.dials_full() {
            log::debug!("not dialing {addr}: connection or dial limit reached");
            return None;
        }
        let id = self.new_id();
        let wait = connect_wait(0);
        let state = State::Dialing {
            expected,
            retries: 0,
            wait,
        };
        self.conns.insert(id, Conn::new(addr, true, state, now));
        out.transmit(Transmit::Connect {
            conn: id,
            addr,
            timeout: wait,
        });
        Some(id)
    }

    /// Our connect attempt on `conn` timed out: tries again, waiting twice
    /// as long, unless [`CONNECT_ATTEMPTS`] were made (then `false`: the
    /// dial failed).
    pub(crate) fn retry_dial(&mut self, now: Instant, conn: ConnId, out: &mut Outbox) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let State::Dialing {
            expected, retries, ..
        } = c.state
        else {
            return false;
        };
        let retries = retries.saturating_add(1);
        if retries >= CONNECT_ATTEMPTS {
            return false;
        }
        let wait = connect_wait(retries);
        c.state = State::Dialing {
            expected,
            retries,
            wait,
        };
        c.opened = now;
        out.transmit(Transmit::Connect {
            conn,
            addr: c.addr,
            timeout: wait,
        });
        true
    }

    /// A peer connected to our listener; `None` if there is no nonce for it.
    pub(crate) fn incoming(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        rng: &mut dyn Entropy,
    ) -> Option<ConnId> {
        let mut nonce = [0u8; 32];
        rng.fill(&mut nonce).ok()?;
        let id = self.new_id();
        let mut conn = Conn::new(addr, false, State::AwaitHello(Responder::new(nonce)), now);
        conn.decoder = Some(new_decoder());
        self.conns.insert(id, conn);
        Some(id)
    }

    /// Our outbound connection is open: send message 1 (an error when there
    /// is no ephemeral secret for it: the router closes the connection).
    pub(crate) fn connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        rng: &mut dyn Entropy,
        out: &mut Outbox,
    ) -> Result<(), EntropyError> {
        let mut nonce = [0u8; 32];
        rng.fill(&mut nonce)?;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        let State::Dialing { expected, .. } = c.state else {
            return Ok(());
        };
        c.decoder = Some(new_decoder());
        c.opened = now;
        c.last_rx = now;
        match Initiator::new(nonce, expected).write_hello(&self.identity, &mut self.scratch) {
            Ok((wait, n)) => {
                c.state = State::AwaitAck(Box::new(wait));
                emit(&self.scratch, conn, Ok(n), out);
            }
            // Only a too-small buffer: never with the scratch's size.
            Err(e) => log::error!("could not write a handshake message: {e}"),
        }
        Ok(())
    }

    pub(crate) fn take_decoder(&mut self, conn: ConnId) -> Option<StreamDecoder<GrowBuf>> {
        self.conns.get_mut(&conn).and_then(|c| c.decoder.take())
    }

    pub(crate) fn put_decoder(&mut self, conn: ConnId, decoder: StreamDecoder<GrowBuf>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.decoder = Some(decoder);
        }
    }

    pub(crate) fn addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(&conn).map(|c| c.addr)
    }

    pub(crate) fn is_handshaking(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(Conn::handshaking)
    }

    /// One received record on `conn` (opened in place). `intro` says what
    /// this node offers now (asked only while handshaking).
    pub(crate) fn read<'f>(
        &mut self,
        now: Instant,
        conn: ConnId,
        frame: &'f mut [u8],
        intro: &dyn Fn() -> Intro,
        out: &mut Outbox,
    ) -> Step<'f> {
        let cfg = &self.cfg;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Step::Handled;
        };
        c.last_rx = now;
        if let State::Established(s) = &mut c.state {
            return match s.read_sealed(frame) {
                Ok((message, seal)) => Step::Message(s.peer(), message, seal),
                Err(e) => Step::Close(CloseReason::Session(e)),
            };
        }
        let (id, known) = (&self.identity, &self.known);
        let known = |peer: NodeId, statik: &[u8; 32]| known.get(&peer) == Some(statik);
        let scratch = &mut self.scratch;
        let (state, step) = match std::mem::replace(&mut c.state, State::Closing) {
            State::AwaitHello(r) => match r.read_hello(id, frame, &intro(), scratch) {
                Ok((wait, n)) => {
                    emit(scratch, conn, Ok(n), out);
                    (State::AwaitConfirm(Box::new(wait)), Step::Handled)
                }
                Err(e @ HandshakeError::Version { .. }) => {
                    let n = version_notice(scratch);
                    emit(scratch, conn, n, out);
                    (State::Closing, Step::Close(CloseReason::Handshake(e)))
                }
                Err(e) => (State::Closing, Step::Close(CloseReason::Handshake(e))),
            },
            State::AwaitAck(wait) => match wait.read_ack(id, frame, &known) {
                Ok(confirm) if !cfg.trust.admits(confirm.peer()) => {
                    let peer = confirm.peer();
                    let n = confirm.refuse(id, GoodbyeReason::NotAllowed, scratch);
                    emit(scratch, conn, n.map_err(encode_error), out);
                    (State::Closing, Step::Refused(peer))
                }
                Ok(confirm) => match confirm.confirm(id, &intro(), scratch) {
                    Ok((session, theirs, n)) => {
                        emit(scratch, conn, Ok(n), out);
                        let up = up(conn, c, &session, theirs);
                        (State::Established(session), Step::Up(up))
                    }
                    Err(e) => (State::Closing, Step::Close(CloseReason::Handshake(e))),
                },
                Err(e) => (State::Closing, Step::Close(CloseReason::Handshake(e))),
            },
            State::AwaitConfirm(wait) => match wait.read_confirm(id, frame, &known) {
                Ok((session, _)) if !cfg.trust.admits(session.peer()) => {
                    let peer = session.peer();
                    let n = session.goodbye(id.keypair(), GoodbyeReason::NotAllowed, scratch);
                    emit(scratch, conn, n, out);
                    (State::Closing, Step::Refused(peer))
                }
                Ok((session, theirs)) => {
                    let up = up(conn, c, &session, theirs);
                    (State::Established(session), Step::Up(up))
                }
                Err(e) => (State::Closing, Step::Close(CloseReason::Handshake(e))),
            },
            other => (other, Step::Handled),
        };
        let aes = matches!(&state, State::Established(s) if s.transport() == Transport::AesGcm);
        if let State::Established(session) = &state {
            c.last_ping = now; // keepalive counts from the session's start
            c.last_rekey = now;
            let (peer, statik) = (session.peer(), *session.peer_static());
            c.state = state;
            self.remember(peer, statik);
        } else {
            c.state = state;
        }
        if matches!(step, Step::Up(_)) {
            bump(&mut self.stats.handshakes_completed);
            if aes {
                bump(&mut self.stats.sessions_aes_gcm);
            }
        }
        step
    }

    /// Sends a session message on `conn`, if it is in session.
    pub(crate) fn send(
        &mut self,
        conn: ConnId,
        key: &Keypair,
        message: &Message<'_>,
        out: &mut Outbox,
    ) -> bool {
        let Some(State::Established(s)) = self.conns.get_mut(&conn).map(|c| &mut c.state) else {
            return false;
        };
        let written = s.write(key, message, &mut self.scratch);
        let sent = written.is_ok();
        if let Err(e) = written {
            log::error!("could not encode {}: {e}", message.kind());
        }
        emit(&self.scratch, conn, written, out);
        sent
    }

    /// Queues a Goodbye on `conn` (when a session context exists).
    pub(crate) fn say_goodbye(
        &mut self,
        conn: ConnId,
        key: &Keypair,
        reason: GoodbyeReason,
        out: &mut Outbox,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let goodbye = Message::Goodbye(p2pa_protocol::Goodbye { reason });
        // Before the session there is no key to seal a Goodbye with, but an
        // initiator that has read message 2 can refuse in message 3.
        let written = match &mut c.state {
            State::Established(s) => s.write(key, &goodbye, &mut self.scratch),
            _ => return,
        };
        emit(&self.scratch, conn, written, out);
    }

    /// Forgets `conn` and tells the shell to close it.
    pub(crate) fn remove(&mut self, conn: ConnId, out: &mut Outbox) -> Option<Closed> {
        let c = self.conns.remove(&conn)?;
        out.transmit(Transmit::Close { conn });
        Some(Closed {
            addr: c.addr,
            peer: c.session().map(Session::peer),
        })
    }

    /// Forgets a connection that never opened; returns its address.
    pub(crate) fn forget(&mut self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.remove(&conn).map(|c| c.addr)
    }

    /// A Pong on `conn`: the round-trip time, if it answers our last Ping.
    pub(crate) fn pong(&mut self, conn: ConnId, nonce: u64, now: Instant) -> Option<Duration> {
        let c = self.conns.get_mut(&conn)?;
        let (sent_nonce, sent) = c.ping?;
        if sent_nonce != nonce {
            return None;
        }
        c.ping = None;
        Some(now.saturating_duration_since(sent))
    }

    /// Answers a Ping on `conn`.
    pub(crate) fn ping_back(&mut self, conn: ConnId, nonce: u64, key: &Keypair, out: &mut Outbox) {
        self.send(conn, key, &Message::Pong(Pong { nonce }), out);
    }

    /// Connections that a timer ends now (the router closes them).
    pub(crate) fn expired(&self, now: Instant) -> Expired {
        let cfg = &self.cfg;
        let mut ex = Expired::default();
        for (&id, c) in &self.conns {
            let age = now.saturating_duration_since(c.opened);
            let silent = now.saturating_duration_since(c.last_rx);
            if c.handshaking() {
                if age >= c.handshake_limit(cfg) {
                    ex.handshakes.push((id, c.addr));
                }
            } else if silent >= cfg.dead_after {
                ex.dead.push(id);
            }
        }
        ex
    }

    /// Keepalive: pings sessions quiet for `ping_interval`; forgets pongs
    /// overdue by two intervals (the next round pings again).
    pub(crate) fn keepalive(
        &mut self,
        now: Instant,
        key: &Keypair,
        rng: &mut dyn Entropy,
        out: &mut Outbox,
    ) {
        let interval = self.cfg.ping_interval;
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.handshaking()
                    && c.ping.is_none()
                    && now.saturating_duration_since(c.last_ping) >= interval
            })
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let nonce = rng.next_u64();
            if let Some(c) = self.conns.get_mut(&id) {
                c.ping = Some((nonce, now));
                c.last_ping = now;
            }
            self.send(id, key, &Message::Ping(Ping { nonce }), out);
        }
        for c in self.conns.values_mut() {
            if let State::Established(s) = &mut c.state {
                if now.saturating_duration_since(c.last_rekey) >= REKEY_INTERVAL {
                    s.rekey_soon();
                    c.last_rekey = now;
                }
            }
        }
        let overdue = interval.saturating_mul(2);
        for c in self.conns.values_mut() {
            if c.ping
                .is_some_and(|(_, sent)| now.saturating_duration_since(sent) >= overdue)
            {
                c.ping = None;
            }
        }
    }

    /// Counts a refused incoming connection.
    pub(crate) fn refuse_incoming(&mut self, addr: SocketAddr, out: &mut Outbox) {
        bump(&mut self.stats.conns_refused);
        out.warn_once(
            BadInput::Refused,
            format_args!("refused connection from {addr}: limits reached"),
        );
    }
}

/// The router's view of a finished handshake on `c`.
fn up(conn: ConnId, c: &Conn, session: &Session, intro: Intro) -> Up {
    Up {
        conn,
        peer: session.peer(),
        initiator: c.initiator,
        listen_addr: SocketAddr::new(c.addr.ip(), intro.listen_port),
        intro,
    }
}

/// A handshake error that only says our buffer was too small, as such.
fn encode_error(e: HandshakeError) -> EncodeError {
    match e {
        HandshakeError::Encode(e) => e,
        _ => EncodeError::TooLong {
            max: p2pa_protocol::MAX_HANDSHAKE_LEN,
        },
    }
}

/// Queues the frame written into `scratch` for `conn`.
fn emit(scratch: &[u8], conn: ConnId, written: Result<usize, EncodeError>, out: &mut Outbox) {
    match written {
        Ok(n) => {
            let bytes = scratch.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
            out.transmit(Transmit::Send { conn, bytes });
        }
        Err(e) => log::error!("could not encode a frame for connection {conn}: {e}"),
    }
}

fn new_decoder() -> StreamDecoder<GrowBuf> {
    StreamDecoder::new(GrowBuf::new())
}
