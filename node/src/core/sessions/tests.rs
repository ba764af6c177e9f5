//! Two sessions parts, one dialing the other, the bytes between them
//! carried by the test: the handshake, trust, keepalive, limits. No `Core`.

#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pa_protocol::{Capabilities, GoodbyeReason, Identity, Intro, Keypair, Message, NodeId, Ping};

use super::{Sessions, Step};
use crate::core::config::{Config, SessionConfig, Trust};
use crate::core::ids::ConnId;
use crate::core::output::{Outbox, Transmit};
use crate::core::rng::SeededEntropy;

/// What a frame meant, owned (a `Step` borrows its frame).
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Handled,
    Up(NodeId),
    Refused(NodeId),
    Message(NodeId, String),
    Close(String),
}

fn seen(step: Step<'_>) -> Seen {
    match step {
        Step::Handled => Seen::Handled,
        Step::Up(up) => Seen::Up(up.peer),
        Step::Refused(peer) => Seen::Refused(peer),
        Step::Message(peer, m, _) => Seen::Message(peer, m.kind().to_string()),
        Step::Close(reason) => Seen::Close(format!("{reason:?}")),
    }
}

/// One side: its sessions, key, config and outbox.
struct Side {
    key: Keypair,
    sessions: Sessions,
    cfg: Config,
    out: Outbox,
    rng: SeededEntropy,
}

impl Side {
    fn new(seed: u8, cfg: Config) -> Self {
        let key = Keypair::from_seed([seed; 32]);
        Self {
            sessions: Sessions::new(SessionConfig::from(&cfg), Identity::new(key.clone())),
            key,
            cfg,
            out: Outbox::default(),
            rng: SeededEntropy::new(u64::from(seed)),
        }
    }

    fn id(&self) -> NodeId {
        self.key.node_id()
    }

    /// The bytes queued for `conn`, taken (other transmits are dropped).
    fn sent(&mut self, conn: ConnId) -> Vec<u8> {
        let mut bytes = Vec::new();
        for t in std::mem::take(&mut self.out.transmits) {
            if let Transmit::Send { conn: c, bytes: b } = t {
                if c == conn {
                    bytes.extend_from_slice(&b);
                }
            }
        }
        bytes
    }

    /// Reads `data` on `conn`, frame by frame.
    fn read(&mut self, now: Instant, conn: ConnId, mut data: &[u8]) -> Vec<Seen> {
        let mut decoder = self.sessions.take_decoder(conn).unwrap();
        let intro = || Intro {
            listen_port: 4000,
            caps: Capabilities::default(),
        };
        let mut steps = Vec::new();
        while let Some(frame) = decoder.decode(&mut data).unwrap() {
            let step = (self.sessions).read(now, conn, frame, &intro, &mut self.out);
            steps.push(seen(step));
        }
        self.sessions.put_decoder(conn, decoder);
        steps
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `a` dials `b` and they run the handshake: what each side saw, in order,
/// and the two connection ids.
fn handshake(a: &mut Side, b: &mut Side, now: Instant) -> (Vec<Seen>, Vec<Seen>, ConnId, ConnId) {
    let ca = (a.sessions).dial(now, addr(2), None, &mut a.out).unwrap();
    assert!(matches!(
        a.out.transmits.pop_front(),
        Some(Transmit::Connect { conn, .. }) if conn == ca
    ));
    let cb = b.sessions.incoming(now, addr(1), &mut b.rng).unwrap();
    (a.sessions)
        .connected(now, ca, &mut a.rng, &mut a.out)
        .unwrap();
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let to_b = a.sent(ca);
        seen_b.extend(b.read(now, cb, &to_b));
        let to_a = b.sent(cb);
        seen_a.extend(a.read(now, ca, &to_a));
    }
    (seen_a, seen_b, ca, cb)
}

#[test]
fn two_sessions_finish_the_handshake_and_carry_a_message() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Side::new(1, Config::default()),
        Side::new(2, Config::default()),
    );
    let (seen_a, seen_b, ca, cb) = handshake(&mut a, &mut b, t0);
    assert_eq!(seen_a, vec![Seen::Up(b.id())]);
    assert_eq!(seen_b, vec![Seen::Handled, Seen::Up(a.id())]);
    assert!(!a.sessions.is_handshaking(ca) && !b.sessions.is_handshaking(cb));
    assert!(a
        .sessions
        .send(ca, &a.key, &Message::Ping(Ping { nonce: 7 }), &mut a.out));
    let bytes = a.sent(ca);
    assert_eq!(
        b.read(t0, cb, &bytes),
        vec![Seen::Message(a.id(), "Ping".into())]
    );
}

#[test]
fn a_frame_changed_on_the_way_closes_the_session() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Side::new(1, Config::default()),
        Side::new(2, Config::default()),
    );
    let (_, _, ca, cb) = handshake(&mut a, &mut b, t0);
    a.sessions
        .send(ca, &a.key, &Message::Ping(Ping { nonce: 7 }), &mut a.out);
    let mut bytes = a.sent(ca);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let seen = b.read(t0, cb, &bytes);
    assert!(matches!(seen.as_slice(), [Seen::Close(why)] if why.starts_with("Session(")));
}

#[test]
fn a_peer_outside_the_allowlist_is_refused_on_both_sides_of_the_handshake() {
    let t0 = Instant::now();
    let closed = Config {
        trust: Trust::Allowlist(Vec::new()),
        ..Config::default()
    };
    // The dialer refuses what it reached (in message 3).
    let (mut a, mut b) = (
        Side::new(1, closed.clone()),
        Side::new(2, Config::default()),
    );
    let (seen_a, seen_b, _, _) = handshake(&mut a, &mut b, t0);
    assert_eq!(seen_a, vec![Seen::Refused(b.id())]);
    // ... and the listener reads the refusal in place of message 3.
    let refusal = Seen::Close("Handshake(Goodbye(NotAllowed))".into());
    assert_eq!(seen_b, vec![Seen::Handled, refusal]);
    // The listener refuses who dialed it (after message 3).
    let (mut a, mut b) = (Side::new(1, Config::default()), Side::new(2, closed));
    let (seen_a, seen_b, _, _) = handshake(&mut a, &mut b, t0);
    assert_eq!(seen_b, vec![Seen::Handled, Seen::Refused(a.id())]);
    assert_eq!(
        seen_a,
        vec![Seen::Up(b.id()), Seen::Message(b.id(), "Goodbye".into())]
    );
}

#[test]
fn a_handshake_not_finished_in_time_expires_and_a_silent_session_dies() {
    let t0 = Instant::now();
    let cfg = Config::default();
    let mut b = Side::new(2, cfg.clone());
    let stalled = b.sessions.incoming(t0, addr(9), &mut b.rng).unwrap();
    assert_eq!(b.sessions.next_deadline(), Some(t0 + cfg.handshake_timeout));
    let just_before = t0 + cfg.handshake_timeout - Duration::from_millis(1);
    assert!(b.sessions.expired(just_before).handshakes.is_empty());
    let ex = b.sessions.expired(t0 + cfg.handshake_timeout);
    assert_eq!(ex.handshakes, vec![(stalled, addr(9))]);
    b.sessions.forget(stalled);

    let mut a = Side::new(1, cfg.clone());
    let (_, _, ca, _) = handshake(&mut a, &mut b, t0);
    assert!(a
        .sessions
        .expired(t0 + cfg.dead_after - Duration::from_millis(1))
        .dead
        .is_empty());
    assert_eq!(a.sessions.expired(t0 + cfg.dead_after).dead, vec![ca]);
}

#[test]
fn keepalive_pings_a_quiet_session_and_times_the_pong() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Side::new(1, Config::default()),
        Side::new(2, Config::default()),
    );
    let (_, _, ca, cb) = handshake(&mut a, &mut b, t0);
    let early = t0 + a.cfg.ping_interval - Duration::from_millis(1);
    (a.sessions).keepalive(early, &a.key, &mut a.rng, &mut a.out);
    assert!(a.sent(ca).is_empty());
    let due = t0 + a.cfg.ping_interval;
    (a.sessions).keepalive(due, &a.key, &mut a.rng, &mut a.out);
    let ping = a.sent(ca);
    assert_eq!(
        b.read(due, cb, &ping),
        vec![Seen::Message(a.id(), "Ping".into())]
    );
    // Only the nonce of the ping in flight counts.
    let nonce = a.sessions.conns.get(&ca).unwrap().ping.unwrap().0;
    let back = due + Duration::from_millis(5);
    assert_eq!(a.sessions.pong(ca, nonce ^ 1, back), None);
    assert_eq!(
        a.sessions.pong(ca, nonce, back),
        Some(Duration::from_millis(5))
    );
    assert_eq!(a.sessions.pong(ca, nonce, back), None, "answered once");
}

#[test]
fn one_address_cannot_hold_more_than_its_pending_handshakes() {
    let t0 = Instant::now();
    let cfg = Config {
        max_handshakes_per_ip: 2,
        ..Config::default()
    };
    let mut b = Side::new(2, cfg.clone());
    let ip = addr(1).ip();
    assert_eq!(b.sessions.room_for(ip), Ok(None));
    let first = b.sessions.incoming(t0, addr(1), &mut b.rng).unwrap();
    b.sessions
        .incoming(t0 + Duration::from_millis(1), addr(1), &mut b.rng)
        .unwrap();
    // The oldest of that address makes room; another address is not held back.
    assert_eq!(b.sessions.room_for(ip), Ok(Some(first)));
    let other = SocketAddr::from(([127, 0, 0, 2], 1)).ip();
    assert_eq!(b.sessions.room_for(other), Ok(None));
}

#[test]
fn dials_stop_at_the_dial_limit() {
    let t0 = Instant::now();
    let cfg = Config {
        max_dials: 2,
        ..Config::default()
    };
    let mut a = Side::new(1, cfg.clone());
    assert!(a.sessions.dial(t0, addr(2), None, &mut a.out).is_some());
    assert!(a.sessions.dial(t0, addr(3), None, &mut a.out).is_some());
    assert_eq!(a.sessions.dial(t0, addr(4), None, &mut a.out), None);
    assert_eq!(a.out.transmits.len(), 2, "one Connect per dial made");
}

#[test]
fn a_goodbye_is_sealed_only_in_session() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Side::new(1, Config::default()),
        Side::new(2, Config::default()),
    );
    let pending = b.sessions.incoming(t0, addr(5), &mut b.rng).unwrap();
    (b.sessions).say_goodbye(pending, &b.key, GoodbyeReason::Shutdown, &mut b.out);
    assert!(b.sent(pending).is_empty(), "no key to seal it with yet");
    let (_, _, ca, cb) = handshake(&mut a, &mut b, t0);
    (b.sessions).say_goodbye(cb, &b.key, GoodbyeReason::Shutdown, &mut b.out);
    let bytes = b.sent(cb);
    assert_eq!(
        a.read(t0, ca, &bytes),
        vec![Seen::Message(b.id(), "Goodbye".into())]
    );
    let closed = b.sessions.remove(cb, &mut b.out).unwrap();
    assert_eq!(closed.peer, Some(a.id()));
    assert!(matches!(b.out.transmits.pop_back(), Some(Transmit::Close { conn }) if conn == cb));
}
