//! Sessions: TCP connections, the mutual handshake, keepalive, and routing of
//! verified session frames to the task exchange. One session per peer pair.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pa_protocol::{
    encode_stream_frame, verify_frame, Capabilities, Context, Goodbye, GoodbyeReason, Hello,
    HelloAck, Message, NodeId, Nonce, Ping, Pong, ReplayGuard, SessionId, StreamDecoder,
    MAX_FRAME_LEN,
};

use super::discovery::{Peer, Via};
use super::{ConnId, Core, Event, Noise, Transmit, Trust};

#[derive(Debug, Clone)]
enum State {
    /// Outbound TCP connect in progress.
    Dialing,
    /// Responder: waiting for `Hello`; our nonce is ready.
    AwaitHello { responder_nonce: Nonce },
    /// Initiator: `Hello` sent, waiting for the responder's `HelloAck`.
    AwaitAck { initiator_nonce: Nonce },
    /// Responder: `HelloAck` sent, waiting for the initiator's.
    AwaitConfirm {
        sid: SessionId,
        peer: NodeId,
        listen_port: u16,
        caps: Box<Capabilities>,
    },
    /// Both sides proved their keys.
    Established { sid: SessionId, peer: NodeId },
}

#[derive(Debug)]
pub(crate) struct Conn {
    addr: SocketAddr,
    initiator: bool,
    /// The peer we meant to reach, when dialing a known peer.
    expected: Option<NodeId>,
    state: State,
    decoder: Option<StreamDecoder<GrowBuf>>,
    send_seq: u64,
    recv: ReplayGuard,
    opened: Instant,
    last_rx: Instant,
    ping: Option<(u64, Instant)>,
    last_ping: Instant,
}

impl Conn {
    fn new(
        addr: SocketAddr,
        initiator: bool,
        expected: Option<NodeId>,
        state: State,
        now: Instant,
    ) -> Self {
        Self {
            addr,
            initiator,
            expected,
            state,
            decoder: None,
            send_seq: 0,
            recv: ReplayGuard::new(),
            opened: now,
            last_rx: now,
            ping: None,
            last_ping: now,
        }
    }

    fn established(&self) -> Option<(SessionId, NodeId)> {
        match &self.state {
            State::Established { sid, peer } => Some((*sid, *peer)),
            _ => None,
        }
    }

    fn handshaking(&self) -> bool {
        !matches!(self.state, State::Established { .. })
    }

    pub(crate) fn next_deadline(&self, cfg: &super::Config) -> Instant {
        let at = |base: Instant, d: Duration| base.checked_add(d).unwrap_or(base);
        if self.handshaking() {
            return at(self.opened, cfg.handshake_timeout);
        }
        let dead = at(self.last_rx, cfg.dead_after);
        match self.ping {
            Some(_) => dead,
            None => dead.min(at(self.last_ping, cfg.ping_interval)),
        }
    }
}

/// Context a frame is sent in.
#[derive(Clone, Copy)]
enum Ctx {
    Hello,
    Session(SessionId),
}

impl Core {
    /// Opens an outbound connection (the shell reports back).
    pub(super) fn dial(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> Option<ConnId> {
        if self.conns.len() >= self.cfg.max_conns || self.handshakes() >= self.cfg.max_handshakes {
            log::debug!("not dialing {addr}: connection or handshake limit reached");
            return None;
        }
        let id = self.new_conn_id();
        self.conns
            .insert(id, Conn::new(addr, true, expected, State::Dialing, now));
        self.transmits
            .push_back(Transmit::Connect { conn: id, addr });
        Some(id)
    }

    fn handshakes(&self) -> usize {
        self.conns.values().filter(|c| c.handshaking()).count()
    }

    /// A peer connected to our listener. Returns the id to report its bytes
    /// under, or `None` if a limit is reached (the shell drops the socket).
    pub fn handle_incoming(&mut self, now: Instant, addr: SocketAddr) -> Option<ConnId> {
        if self.shutting_down
            || self.conns.len() >= self.cfg.max_conns
            || self.handshakes() >= self.cfg.max_handshakes
        {
            self.stats.conns_refused = self.stats.conns_refused.saturating_add(1);
            self.warn_once(
                Noise::Refused,
                format_args!("refused connection from {addr}: limits reached"),
            );
            return None;
        }
        let mut responder_nonce = [0u8; 32];
        self.rng.fill(&mut responder_nonce);
        let id = self.new_conn_id();
        let mut conn = Conn::new(
            addr,
            false,
            None,
            State::AwaitHello { responder_nonce },
            now,
        );
        conn.decoder = Some(new_decoder());
        self.conns.insert(id, conn);
        Some(id)
    }

    /// Our outbound connection is open: start the handshake.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        let mut initiator_nonce = [0u8; 32];
        self.rng.fill(&mut initiator_nonce);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.state = State::AwaitAck { initiator_nonce };
        c.decoder = Some(new_decoder());
        c.opened = now;
        c.last_rx = now;
        let hello = Message::Hello(Hello {
            nonce: initiator_nonce,
            listen_port: self.cfg.listen_port,
            caps: self.capabilities(),
        });
        self.send(conn, Ctx::Hello, &hello);
    }

    /// Our outbound connection could not be opened.
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, why: &str) {
        if let Some(c) = self.conns.remove(&conn) {
            log::debug!("dial to {} failed: {why}", c.addr);
        }
        self.dial_failed(now, conn);
    }

    /// The connection was closed by the peer or failed.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId, why: &str) {
        self.close(now, conn, why, false);
    }

    /// Bytes arrived on a connection.
    pub fn handle_stream_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        // With no frame limit it uses every byte (a partial frame is buffered).
        let _ = self.handle_stream_frames(now, conn, data, usize::MAX);
    }

    /// Like [`handle_stream_data`](Self::handle_stream_data), but stops after
    /// `max_frames` complete frames and returns how many bytes of `data` it
    /// used; the caller feeds the rest later. A shell uses it to send each
    /// result before it decodes the next request, which keeps a pipelined
    /// peer busy (see `FRAMES_PER_TURN` in the shell). Returns `data.len()`
    /// once the connection is gone (the rest is of no use).
    pub fn handle_stream_frames(
        &mut self,
        now: Instant,
        conn: ConnId,
        data: &[u8],
        max_frames: usize,
    ) -> usize {
        let total = data.len();
        let mut data = data;
        let Some(mut decoder) = self.conns.get_mut(&conn).and_then(|c| c.decoder.take()) else {
            return total;
        };
        let mut frames = 0usize;
        while frames < max_frames {
            match decoder.decode(&mut data) {
                Ok(Some(frame)) => {
                    frames = frames.saturating_add(1);
                    if !self.handle_frame(now, conn, frame) {
                        return total; // connection closed; drop its decoder
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.stats.frames_rejected = self.stats.frames_rejected.saturating_add(1);
                    let addr = self.conns.get(&conn).map(|c| c.addr);
                    self.warn_once(
                        Noise::BadFrame,
                        format_args!("closing connection from {addr:?}: {e}"),
                    );
                    self.close(now, conn, "bad length prefix", true);
                    return total;
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.decoder = Some(decoder);
        }
        total.saturating_sub(data.len())
    }

    /// Handles one frame; returns false if the connection was closed.
    fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: &[u8]) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        c.last_rx = now;
        let state = c.state.clone();
        let addr = c.addr;
        let ctx_sid;
        let ctx = match &state {
            State::Dialing => return true,
            State::AwaitHello { .. } | State::AwaitAck { .. } => Context::Hello,
            State::AwaitConfirm { sid, .. } | State::Established { sid, .. } => {
                ctx_sid = *sid;
                Context::Session(&ctx_sid)
            }
        };
        let verified = match verify_frame(frame, ctx, MAX_FRAME_LEN) {
            Ok(v) => v,
            Err(e) => {
                let handshaking = c.handshaking();
                self.stats.frames_rejected = self.stats.frames_rejected.saturating_add(1);
                if handshaking {
                    self.stats.handshakes_failed = self.stats.handshakes_failed.saturating_add(1);
                }
                self.warn_once(
                    Noise::BadFrame,
                    format_args!("closing connection with {addr}: {e}"),
                );
                self.close(now, conn, "invalid frame", true);
                return false;
            }
        };
        if let Err(e) = c.recv.check(verified.seq()) {
            self.stats.frames_replayed = self.stats.frames_replayed.saturating_add(1);
            self.warn_once(
                Noise::ReplayedFrame,
                format_args!("closing connection with {addr}: {e}"),
            );
            self.close(now, conn, "replayed frame", true);
            return false;
        }
        let sender = verified.sender();
        let message = verified.into_message();
        match (state, message) {
            (State::AwaitHello { responder_nonce }, Message::Hello(h)) => {
                self.on_hello(now, conn, sender, responder_nonce, h)
            }
            (State::AwaitAck { initiator_nonce }, Message::HelloAck(a)) => {
                self.on_ack(now, conn, sender, initiator_nonce, a)
            }
            (
                State::AwaitConfirm {
                    sid,
                    peer,
                    listen_port,
                    caps,
                },
                Message::HelloAck(a),
            ) if sender == peer
                && a.peer == self.id
                && a.initiator_nonce == sid.initiator
                && a.responder_nonce == sid.responder =>
            {
                self.established(now, conn, sid, peer, listen_port, *caps)
            }
            (State::Established { peer, .. }, message) if sender == peer => {
                self.on_session_message(now, conn, peer, message)
            }
            (_, Message::Goodbye(g)) => {
                log::info!(
                    "{} at {addr} said goodbye during the handshake: {}",
                    sender.short(),
                    g.reason
                );
                self.close(now, conn, "goodbye", false);
                false
            }
            (_, other) => {
                self.stats.handshakes_failed = self.stats.handshakes_failed.saturating_add(1);
                self.warn_once(
                    Noise::HandshakeFailed,
                    format_args!(
                        "closing connection with {addr}: unexpected {} from {}",
                        other.kind(),
                        sender.short()
                    ),
                );
                self.close(now, conn, "protocol violation", true);
                false
            }
        }
    }

    fn trusted(&self, peer: NodeId) -> bool {
        match &self.cfg.trust {
            Trust::Open => true,
            Trust::Allowlist(ids) => ids.contains(&peer),
        }
    }

    fn on_hello(
        &mut self,
        now: Instant,
        conn: ConnId,
        sender: NodeId,
        responder_nonce: Nonce,
        h: Hello,
    ) -> bool {
        if sender == self.id {
            self.close(now, conn, "connected to ourselves", false);
            return false;
        }
        let sid = SessionId {
            initiator: h.nonce,
            responder: responder_nonce,
        };
        let ack = Message::HelloAck(HelloAck {
            peer: sender,
            initiator_nonce: h.nonce,
            responder_nonce,
            listen_port: self.cfg.listen_port,
            caps: self.capabilities(),
        });
        self.send(conn, Ctx::Hello, &ack);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = State::AwaitConfirm {
                sid,
                peer: sender,
                listen_port: h.listen_port,
                caps: Box::new(h.caps),
            };
        }
        if !self.trusted(sender) {
            return self.refuse(now, conn, sender);
        }
        true
    }

    fn refuse(&mut self, now: Instant, conn: ConnId, peer: NodeId) -> bool {
        self.stats.peers_refused = self.stats.peers_refused.saturating_add(1);
        self.warn_once(
            Noise::Refused,
            format_args!("refused {}: not in the allowlist (--trust allowlist)", peer),
        );
        self.goodbye(now, conn, GoodbyeReason::NotAllowed);
        false
    }

    fn on_ack(
        &mut self,
        now: Instant,
        conn: ConnId,
        sender: NodeId,
        initiator_nonce: Nonce,
        a: HelloAck,
    ) -> bool {
        let expected = self.conns.get(&conn).and_then(|c| c.expected);
        if a.peer != self.id
            || a.initiator_nonce != initiator_nonce
            || expected.is_some_and(|e| e != sender)
        {
            self.stats.handshakes_failed = self.stats.handshakes_failed.saturating_add(1);
            self.warn_once(
                Noise::HandshakeFailed,
                format_args!(
                    "handshake with {} failed: acknowledgement does not match our Hello",
                    sender.short()
                ),
            );
            self.close(now, conn, "handshake mismatch", true);
            return false;
        }
        let sid = SessionId {
            initiator: initiator_nonce,
            responder: a.responder_nonce,
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = State::Established { sid, peer: sender };
        }
        if !self.trusted(sender) {
            return self.refuse(now, conn, sender);
        }
        let confirm = Message::HelloAck(HelloAck {
            peer: sender,
            initiator_nonce,
            responder_nonce: a.responder_nonce,
            listen_port: self.cfg.listen_port,
            caps: self.capabilities(),
        });
        self.send(conn, Ctx::Session(sid), &confirm);
        self.established(now, conn, sid, sender, a.listen_port, a.caps)
    }

    /// Both keys proven: register the session, unless a better one exists.
    fn established(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: SessionId,
        peer: NodeId,
        listen_port: u16,
        caps: Capabilities,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        c.state = State::Established { sid, peer };
        c.last_ping = now;
        let initiator = if c.initiator { self.id } else { peer };
        let listen_addr = SocketAddr::new(c.addr.ip(), listen_port);
        let via = match self.bootstrap.iter().find(|b| b.conn == Some(conn)) {
            Some(b) => b.via,
            None if c.initiator => Via::Bootstrap,
            None => Via::Inbound,
        };
        self.stats.handshakes_completed = self.stats.handshakes_completed.saturating_add(1);
        // One connection per pair: keep the one the lower id initiated.
        if let Some(other) = self.peers.get(&peer).and_then(|p| p.conn) {
            if other != conn {
                let keep_new = initiator == self.id.min(peer);
                let loser = if keep_new { other } else { conn };
                self.goodbye(now, loser, GoodbyeReason::Duplicate);
                if !keep_new {
                    return false;
                }
            }
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.cfg.max_peers {
            self.goodbye(now, conn, GoodbyeReason::TooManyPeers);
            return false;
        }
        let cfg = &self.cfg;
        let new_peer = !self.peers.contains_key(&peer);
        let entry = self
            .peers
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
        entry.backoff = self.cfg.min_backoff;
        for b in &mut self.bootstrap {
            if b.conn == Some(conn) {
                b.backoff = self.cfg.min_backoff;
            }
        }
        if new_peer {
            self.events.push_back(Event::PeerDiscovered {
                id: peer,
                addr: listen_addr,
                via,
            });
        }
        if first {
            log::info!("session up with {} at {listen_addr}", peer.short());
            self.events.push_back(Event::PeerConnected {
                id: peer,
                addr: listen_addr,
            });
        }
        self.exchange_peer_up(now);
        true
    }

    fn on_session_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: NodeId,
        message: Message<'_>,
    ) -> bool {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_seen = now;
        }
        match message {
            Message::Ping(p) => {
                if let Some(sid) = self
                    .conns
                    .get(&conn)
                    .and_then(Conn::established)
                    .map(|s| s.0)
                {
                    self.send(
                        conn,
                        Ctx::Session(sid),
                        &Message::Pong(Pong { nonce: p.nonce }),
                    );
                }
            }
            Message::Pong(p) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if let Some((nonce, sent)) = c.ping {
                        if nonce == p.nonce {
                            c.ping = None;
                            let rtt = now.saturating_duration_since(sent);
                            if let Some(pe) = self.peers.get_mut(&peer) {
                                pe.rtt = Some(rtt);
                            }
                        }
                    }
                }
            }
            Message::Goodbye(g) => {
                log::info!("{} said goodbye: {}", peer.short(), g.reason);
                self.close(
                    now,
                    conn,
                    &format!("peer said goodbye ({})", g.reason),
                    false,
                );
                return false;
            }
            Message::HelloAck(_) => {} // a late duplicate of the confirm: harmless
            Message::Error(e) => log::warn!(
                "{} reported an error: {:?}: {}",
                peer.short(),
                e.code,
                e.detail
            ),
            Message::TaskOffer(o) => self.on_offer(now, conn, peer, &o),
            Message::TaskAccept(a) => self.on_accept(now, peer, a.task_id),
            Message::TaskReject(r) => self.on_reject(now, peer, r.task_id, r.reason),
            Message::TaskResult(r) => self.on_result(now, peer, &r),
            Message::Cancel(c) => self.on_cancel(now, peer, c.task_id),
            Message::BlobRequest(r) => self.on_blob_request(peer, &r),
            Message::BlobChunk(c) => self.on_blob_chunk(peer, &c),
            Message::Beacon(_) | Message::Hello(_) => {} // refused by verify_frame
        }
        true
    }

    /// Sends a session message to `peer` over its session, if it has one.
    pub(super) fn send_to_peer(&mut self, peer: NodeId, message: &Message<'_>) -> bool {
        let Some(conn) = self.peers.get(&peer).and_then(|p| p.conn) else {
            return false;
        };
        let Some(sid) = self
            .conns
            .get(&conn)
            .and_then(Conn::established)
            .map(|s| s.0)
        else {
            return false;
        };
        self.send(conn, Ctx::Session(sid), message)
    }

    fn send(&mut self, conn: ConnId, ctx: Ctx, message: &Message<'_>) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let seq = c.send_seq;
        c.send_seq = c.send_seq.saturating_add(1);
        let result = match &ctx {
            Ctx::Hello => {
                encode_stream_frame(&self.key, Context::Hello, seq, message, &mut self.scratch)
            }
            Ctx::Session(sid) => encode_stream_frame(
                &self.key,
                Context::Session(sid),
                seq,
                message,
                &mut self.scratch,
            ),
        };
        match result {
            Ok(n) => {
                let bytes = self
                    .scratch
                    .get(..n)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                self.transmits.push_back(Transmit::Send { conn, bytes });
                true
            }
            Err(e) => {
                log::error!("could not encode {}: {e}", message.kind());
                false
            }
        }
    }

    /// Says goodbye (when a session context exists) and closes.
    pub(super) fn goodbye(&mut self, now: Instant, conn: ConnId, reason: GoodbyeReason) {
        let sid = self.conns.get(&conn).and_then(|c| match &c.state {
            State::Established { sid, .. } | State::AwaitConfirm { sid, .. } => Some(*sid),
            _ => None,
        });
        if let Some(sid) = sid {
            self.send(
                conn,
                Ctx::Session(sid),
                &Message::Goodbye(Goodbye { reason }),
            );
        }
        self.close(now, conn, &format!("goodbye ({reason})"), false);
    }

    fn close(&mut self, now: Instant, conn: ConnId, why: &str, violation: bool) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if violation {
            log::debug!("closing connection {conn} with {}: {why}", c.addr);
        }
        self.transmits.push_back(Transmit::Close { conn });
        if let Some((_, peer)) = c.established() {
            let mut down = false;
            if let Some(p) = self.peers.get_mut(&peer) {
                if p.conn == Some(conn) {
                    p.conn = None;
                    p.next_dial = now.checked_add(p.backoff).unwrap_or(now);
                    down = true;
                }
            }
            if down {
                log::info!("session with {} ended: {why}", peer.short());
                self.events.push_back(Event::PeerDisconnected {
                    id: peer,
                    reason: why.to_owned(),
                });
                self.exchange_peer_down(now, peer);
            }
        }
        self.dial_failed(now, conn);
    }

    /// Handshake timeouts, keepalive pings, dead peers.
    pub(super) fn session_timers(&mut self, now: Instant) {
        let cfg = &self.cfg;
        let mut timed_out = Vec::new();
        let mut dead = Vec::new();
        let mut pings = Vec::new();
        for (&id, c) in &self.conns {
            let age = now.saturating_duration_since(c.opened);
            let silent = now.saturating_duration_since(c.last_rx);
            match c.established() {
                None if age >= cfg.handshake_timeout => timed_out.push((id, c.addr)),
                None => {}
                Some(_) if silent >= cfg.dead_after => dead.push(id),
                Some((sid, _))
                    if c.ping.is_none()
                        && now.saturating_duration_since(c.last_ping) >= cfg.ping_interval =>
                {
                    pings.push((id, sid));
                }
                Some(_) => {}
            }
        }
        let limit = self.cfg.handshake_timeout;
        for (id, addr) in timed_out {
            self.stats.handshakes_timed_out = self.stats.handshakes_timed_out.saturating_add(1);
            self.warn_once(
                Noise::HandshakeTimeout,
                format_args!("dropped connection with {addr}: handshake not finished in {limit:?}"),
            );
            self.close(now, id, "handshake timeout", true);
        }
        for id in dead {
            self.goodbye(now, id, GoodbyeReason::Timeout);
        }
        for (id, sid) in pings {
            let nonce = self.rng.next_u64();
            if let Some(c) = self.conns.get_mut(&id) {
                c.ping = Some((nonce, now));
                c.last_ping = now;
            }
            self.send(id, Ctx::Session(sid), &Message::Ping(Ping { nonce }));
        }
        // A pong overdue by a ping interval: forget it, ping again next round.
        let interval = self.cfg.ping_interval;
        for c in self.conns.values_mut() {
            if let Some((_, sent)) = c.ping {
                if now.saturating_duration_since(sent) >= interval.saturating_mul(2) {
                    c.ping = None;
                }
            }
        }
    }
}

fn new_decoder() -> StreamDecoder<GrowBuf> {
    StreamDecoder::new(GrowBuf(Vec::new()))
}

/// A receive buffer that grows to the largest frame seen (at most
/// `MAX_FRAME_LEN`), so an idle connection holds almost nothing. The length
/// prefix is checked against the limit before it grows.
#[derive(Debug)]
struct GrowBuf(Vec<u8>);

impl p2pa_protocol::FrameBuffer for GrowBuf {
    fn frame_mut(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > MAX_FRAME_LEN {
            return None;
        }
        if self.0.len() < len {
            self.0.resize(len, 0);
        }
        self.0.get_mut(..len)
    }

    fn frame(&self, len: usize) -> Option<&[u8]> {
        self.0.get(..len)
    }

    fn max_len(&self) -> usize {
        MAX_FRAME_LEN
    }
}
