//! A driver that feeds a [`Core`] an arbitrary sequence of datagrams, stream
//! bytes, handshakes, signed session messages, timer ticks and job results
//! read from fuzz input, with honest peers built on the protocol's own
//! handshake machine (so the fuzzer reaches sessions, offers, results and
//! blobs, not only the frame parser). After every step it checks what must
//! always hold: limits respected, no deadline in the past after a timeout.
//! Used by `fuzz/fuzz_targets/core_driver.rs` and by a property test.

// A test harness, never built into a node: small-number arithmetic on fuzz
// input (bounded by u8 operands and checked lengths), asserts as its oracle.
#![allow(clippy::arithmetic_side_effects, clippy::panic)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use p2pa_protocol::{
    encode_datagram, AwaitAck, Beacon, BlobChunk, BlobRequest, Budget, Cancel, Capabilities,
    FailReason, GrowBuf, Identity, Initiator, Intro, Keypair, Message, Ping, Session,
    StreamDecoder, TaskInput, TaskKind, TaskOffer, TaskOutput, TaskResult, TaskStatus,
    LEN_PREFIX_LEN, MAX_DATAGRAM_LEN, MAX_RECORD_LEN,
};

use crate::core::{
    Config, ConnId, ConnectError, Core, JobId, Order, PeerState, SeededEntropy, TaskRequest,
    Transmit,
};

/// Steps one input may drive (a bound on the work of one fuzz case).
const MAX_STEPS: usize = 256;
/// Peers the driver plays.
const PEERS: u8 = 8;

/// Reads fuzz input as small numbers and byte strings; zeros once empty.
#[derive(Debug)]
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.byte()).min(max).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// A peer the driver plays: an honest handshake, then signed messages.
#[derive(Debug)]
struct Peer {
    id: Identity,
    conn: ConnId,
    init: Option<AwaitAck>,
    session: Option<Session>,
    rx: StreamDecoder<GrowBuf>,
    inbox: Vec<u8>,
}

/// The core under test and what the driver knows of it.
#[derive(Debug)]
pub struct Driver {
    core: Core,
    now: Instant,
    peers: BTreeMap<u8, Peer>,
    dials: Vec<ConnId>,
    jobs: Vec<JobId>,
    out: Vec<u8>,
}

impl Driver {
    /// A core with small limits, so that inputs reach them.
    pub fn new() -> Self {
        let cfg = Config {
            listen_port: 7421,
            max_peers: 8,
            max_peers_per_ip: 4,
            max_conns: 6,
            max_handshakes: 3,
            max_handshakes_per_ip: 2,
            max_dials: 2,
            queue_len: 3,
            workers: 1,
            bootstrap: vec![SocketAddr::from((Ipv4Addr::new(10, 9, 9, 9), 7421))],
            kinds: Config::default().kinds.with(TaskKind::Infer),
            ..Config::default()
        };
        let now = Instant::now();
        let key = Keypair::from_seed([42; 32]);
        Self {
            core: Core::new(key, cfg, Box::new(SeededEntropy::new(7)), now),
            now,
            peers: BTreeMap::new(),
            dials: Vec::new(),
            jobs: Vec::new(),
            out: vec![0; MAX_RECORD_LEN + LEN_PREFIX_LEN],
        }
    }

    /// Runs the steps `data` describes, checking the invariants after each.
    pub fn run(data: &[u8]) {
        let mut d = Self::new();
        let mut input = Input(data);
        for _ in 0..MAX_STEPS {
            if input.done() {
                break;
            }
            d.step(&mut input);
            d.drain();
            d.check();
        }
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, n % 4)),
            40_000 + u16::from(n),
        )
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        match input.byte() % 12 {
            0 => {
                let bytes = input.bytes(MAX_DATAGRAM_LEN);
                self.core
                    .handle_datagram(now, Self::addr(input.byte()), bytes);
            }
            1 => self.beacon(input),
            2 => self.connect_peer(input.byte() % PEERS),
            3 => {
                let conn = self.conn_of(input.byte());
                let bytes = input.bytes(usize::MAX);
                self.core.handle_stream_data(now, conn, bytes);
            }
            4 => self.peer_reads(input.byte() % PEERS),
            5 => self.peer_sends(input),
            6 => {
                let ms = u64::from(input.byte()) * u64::from(input.byte());
                self.now = now.checked_add(Duration::from_millis(ms)).unwrap_or(now);
                self.core.handle_timeout(self.now);
            }
            7 => {
                let conn = self.conn_of(input.byte());
                self.core
                    .handle_closed(now, conn, ConnectError::ClosedByPeer);
            }
            8 => self.job_done(input),
            9 => {
                let req = TaskRequest {
                    kind: kind(input.byte()),
                    input: input.bytes(64).to_vec().into(),
                    model: None,
                    timeout: Duration::from_millis(u64::from(input.byte()) * 100),
                    peer: None,
                    needs: 0,
                };
                self.core.submit(now, req);
            }
            10 => self.dial_result(input.byte()),
            _ => self.core.cancel(now, u64::from(input.byte())),
        }
    }

    fn conn_of(&self, n: u8) -> ConnId {
        self.peers
            .get(&(n % PEERS))
            .map_or(ConnId::from(n), |p| p.conn)
    }

    fn beacon(&mut self, input: &mut Input<'_>) {
        let n = input.byte();
        let Some(key) = Keypair::try_from_seed([n; 32]) else {
            return;
        };
        let msg = Message::Beacon(Beacon {
            tcp_port: u16::from(input.byte()),
            query: input.byte().is_multiple_of(2),
            caps: Capabilities::default(),
        });
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        if let Ok(len) = encode_datagram(&key, u64::from(input.byte()), &msg, &mut buf) {
            let frame = buf.get(..len).unwrap_or_default();
            self.core.handle_datagram(self.now, Self::addr(n), frame);
        }
    }

    /// Peer `n` connects to the core and sends handshake message 1.
    fn connect_peer(&mut self, n: u8) {
        let Some(conn) = self.core.handle_incoming(self.now, Self::addr(n)) else {
            return;
        };
        let Some(key) = Keypair::try_from_seed([n.wrapping_add(100); 32]) else {
            return;
        };
        let id = Identity::new(key);
        let Ok((init, len)) = Initiator::new([n; 32], None).write_hello(&id, &mut self.out) else {
            return;
        };
        let hello = self.out.get(..len).unwrap_or_default().to_vec();
        self.core.handle_stream_data(self.now, conn, &hello);
        let peer = Peer {
            id,
            conn,
            init: Some(init),
            session: None,
            rx: StreamDecoder::new(GrowBuf::new()),
            inbox: Vec::new(),
        };
        self.peers.insert(n, peer);
    }

    /// Peer `n` reads what the core sent it, confirming the handshake.
    fn peer_reads(&mut self, n: u8) {
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let inbox = std::mem::take(&mut p.inbox);
        let mut rest = inbox.as_slice();
        let mut reply = None;
        while let Ok(Some(frame)) = p.rx.decode(&mut rest) {
            if let Some(init) = p.init.take() {
                let intro = Intro {
                    listen_port: 0,
                    caps: Capabilities::default(),
                };
                let confirmed = init
                    .read_ack(&p.id, frame, &|_, _| false)
                    .ok()
                    .and_then(|c| c.confirm(&p.id, &intro, &mut self.out).ok());
                if let Some((session, _, len)) = confirmed {
                    p.session = Some(session);
                    reply = self.out.get(..len).map(<[u8]>::to_vec);
                }
            } else if let Some(s) = p.session.as_mut() {
                let _ = s.read(frame);
            }
        }
        if let Some(bytes) = reply {
            self.core.handle_stream_data(self.now, p.conn, &bytes);
        }
    }

    /// A peer with a session sends a signed message built from the input.
    fn peer_sends(&mut self, input: &mut Input<'_>) {
        let n = input.byte() % PEERS;
        let id = u64::from(input.byte());
        let data = input.bytes(256);
        let hash = [input.byte(); 32];
        let msg = match input.byte() % 6 {
            0 => Message::TaskOffer(TaskOffer {
                task_id: id,
                kind: kind(input.byte()),
                input: TaskInput::Inline(data),
                model: (input.byte().is_multiple_of(2)).then_some(hash),
                deadline_ms: u32::from(input.byte()) * 1000,
                budget: Budget {
                    max_output_len: 1024,
                    max_model_len: u64::from(input.byte()) * 1024,
                },
            }),
            1 => Message::Cancel(Cancel { task_id: id }),
            2 => Message::Ping(Ping { nonce: id }),
            3 => Message::BlobRequest(BlobRequest {
                hash,
                offset: id,
                max_len: 1024,
            }),
            4 => Message::BlobChunk(BlobChunk {
                hash,
                offset: id,
                total_len: u64::from(input.byte()) * 64,
                data,
            }),
            _ => Message::TaskResult(TaskResult {
                task_id: id,
                status: TaskStatus::Completed,
                reason: None,
                output: if input.byte().is_multiple_of(2) {
                    TaskOutput::Inline(data)
                } else {
                    TaskOutput::Blob { hash, len: id }
                },
                requester: self.core.id(),
                model: hash,
                input: hash,
            }),
        };
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let Some(s) = p.session.as_mut() else {
            return;
        };
        if let Ok(len) = s.write(p.id.keypair(), &msg, &mut self.out) {
            let frame = self.out.get(..len).unwrap_or_default().to_vec();
            self.core.handle_stream_data(self.now, p.conn, &frame);
        }
    }

    fn job_done(&mut self, input: &mut Input<'_>) {
        if self.jobs.is_empty() {
            return;
        }
        let i = usize::from(input.byte()) % self.jobs.len();
        let job = self.jobs.swap_remove(i);
        let b = input.byte();
        let status = match b % 3 {
            0 => TaskStatus::Completed,
            1 => TaskStatus::Failed,
            _ => TaskStatus::Timeout,
        };
        // Any reason with any status (the core keeps only a failure's, and
        // gives a failure without one the worker's).
        let reason = FailReason::ALL.get(usize::from(b / 3) % 6).copied();
        let ran = Duration::from_micros(u64::from(input.byte()) << 8);
        let output = input.bytes(2048);
        (self.core).handle_job_done(self.now, job, status, reason, output, ran);
    }

    fn dial_result(&mut self, b: u8) {
        if self.dials.is_empty() {
            return;
        }
        let conn = self.dials.swap_remove(usize::from(b) % self.dials.len());
        match b % 4 {
            0 | 2 => self.core.handle_connected(self.now, conn),
            1 => {
                let e = ConnectError::Io(std::io::ErrorKind::ConnectionRefused);
                self.core.handle_connect_failed(self.now, conn, e);
            }
            // A lost SYN: the core tries again (the same conn) or gives up.
            _ => {
                (self.core).handle_connect_failed(self.now, conn, ConnectError::TimedOut);
            }
        }
    }

    /// Takes the core's output: bytes to the peers' inboxes (bounded),
    /// dials and jobs to the driver's lists.
    fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            match t {
                Transmit::Send { conn, bytes } => {
                    if let Some(p) = self.peers.values_mut().find(|p| p.conn == conn) {
                        if p.inbox.len() < 1 << 20 {
                            p.inbox.extend_from_slice(&bytes);
                        }
                    }
                }
                Transmit::Connect { conn, .. } => self.dials.push(conn),
                Transmit::Close { conn } => self.peers.retain(|_, p| p.conn != conn),
                Transmit::Multicast(_) => {}
            }
        }
        while let Some(o) = self.core.poll_order() {
            if let Order::Execute { job, .. } = o {
                self.jobs.push(job);
            }
        }
        while self.core.poll_event().is_some() {}
    }

    /// What must hold after every step.
    fn check(&mut self) {
        let cfg = self.core.config();
        assert!(self.core.connection_count() <= cfg.max_conns + cfg.max_handshakes);
        let sessions = (self.core.peers(self.now).iter())
            .filter(|p| matches!(p.state, PeerState::Connected | PeerState::Slow))
            .count();
        assert!(sessions <= cfg.max_conns);
        assert!(self.core.peers(self.now).len() <= cfg.max_peers);
        // After a timeout, no deadline is left in the past (a busy loop).
        self.core.handle_timeout(self.now);
        self.drain();
        if let Some(t) = self.core.poll_timeout() {
            assert!(t > self.now, "a deadline in the past after handle_timeout");
        }
    }
}

impl Default for Driver {
    fn default() -> Self {
        Self::new()
    }
}

fn kind(b: u8) -> TaskKind {
    TaskKind::ALL
        .get(usize::from(b) % TaskKind::ALL.len())
        .copied()
        .unwrap_or(TaskKind::Echo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_sequence_keeps_the_core_within_its_limits(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            Driver::run(&data);
        }
    }

    #[test]
    fn a_scripted_session_reaches_the_worker() {
        // Peer 1 connects, reads the HelloAck and confirms, offers an echo
        // (task 9, input "abc", hash byte 0, offer, echo, no model, 5 s).
        let script = [2u8, 1, 4, 1, 5, 1, 9, 3, b'a', b'b', b'c', 0, 0, 0, 1, 5, 0];
        let mut d = Driver::new();
        let mut input = Input(&script);
        for _ in 0..3 {
            d.step(&mut input);
            d.drain();
            d.check();
        }
        assert_eq!(d.core.connected_peers().len(), 1, "the handshake completed");
        assert_eq!(d.jobs.len(), 1, "the offer became a job");
    }
}
