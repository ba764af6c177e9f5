//! The sans-IO node: discovery, sessions and task exchange as one deterministic
//! state machine. Time comes in as `now`, randomness through [`Entropy`];
//! events go in through `handle_*`, work comes out through `poll_*`.
//! No sockets, no async, no clock reads: N cores can run in one simulation.

mod blobs;
mod discovery;
mod exchange;
mod rng;
mod session;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pa_protocol::{
    Capabilities, Keypair, KindSet, NodeId, Receipt, TaskKind, TaskStatus, MAX_FRAME_LEN,
};

pub use discovery::{PeerInfo, PeerState, Via};
pub use exchange::{TaskOutcome, TaskRequest, TaskState};
pub use rng::{Entropy, OsEntropy, SeededEntropy};
use session::Conn;

/// Identifies one TCP connection between the core and its shell.
pub type ConnId = u64;

/// A job the worker side asked the shell to run.
pub type JobId = u64;

/// Who may open a session with this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Any node that completes the handshake.
    Open,
    /// Only the listed node ids.
    Allowlist(Vec<NodeId>),
}

/// Limits and timings of a node. Every limit is named and bounded.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP port this node listens on (advertised in beacons and Hello).
    pub listen_port: u16,
    /// Task kinds this node runs as a worker.
    pub kinds: KindSet,
    /// Tasks run at once.
    pub workers: u16,
    /// Jobs handed to the shell's executor beyond `workers`, so a slot that
    /// finishes starts the next job at once instead of waiting for the node
    /// to sign the last result and hand the next one over (measured in
    /// BENCHMARKS.md, inference overhead). They count as running.
    pub prefetch: u16,
    /// Tasks queued beyond the running ones before offers are rejected `Busy`.
    pub queue_len: usize,
    /// Who may connect.
    pub trust: Trust,
    /// Static peers to dial (for networks multicast does not reach).
    pub bootstrap: Vec<SocketAddr>,
    /// Whether to send and act on multicast beacons.
    pub multicast: bool,
    /// Peers kept in the table.
    pub max_peers: usize,
    /// TCP connections open at once (handshaking or established).
    pub max_conns: usize,
    /// Handshakes in flight at once.
    pub max_handshakes: usize,
    /// A handshake not finished after this is dropped (slow-loris guard).
    pub handshake_timeout: Duration,
    /// Period between beacons (jittered by up to a quarter).
    pub beacon_interval: Duration,
    /// Beacons sent in the start-up burst, 100 ms apart.
    pub beacon_burst: u32,
    /// Keepalive ping after this much silence on a session.
    pub ping_interval: Duration,
    /// A peer silent this long is *slow*.
    pub slow_after: Duration,
    /// A peer silent this long is *dead*: its session is closed.
    pub dead_after: Duration,
    /// A peer not heard from (beacon or session) this long leaves the table.
    pub forget_after: Duration,
    /// First redial delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest redial delay.
    pub max_backoff: Duration,
    /// Attempts per task (first try included) before it is reported failed.
    pub max_attempts: u32,
    /// Tasks a requester keeps in flight to one peer at most.
    pub max_inflight_per_peer: usize,
    /// Largest model this node fetches and caches, in bytes.
    pub model_cache_bytes: u64,
    /// First beacon counter. Receivers drop beacons whose counter does not
    /// grow, so a restarted node must start above where it stopped: the shell
    /// passes the wall clock in microseconds.
    pub beacon_counter_start: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_port: 0,
            kinds: KindSet::default()
                .with(TaskKind::Echo)
                .with(TaskKind::Hash)
                .with(TaskKind::Sleep),
            workers: 1,
            prefetch: 1,
            queue_len: 16,
            trust: Trust::Open,
            bootstrap: Vec::new(),
            multicast: true,
            max_peers: 256,
            max_conns: 128,
            max_handshakes: 32,
            handshake_timeout: Duration::from_secs(3),
            beacon_interval: Duration::from_secs(2),
            beacon_burst: 3,
            ping_interval: Duration::from_secs(1),
            slow_after: Duration::from_secs(3),
            dead_after: Duration::from_secs(10),
            forget_after: Duration::from_secs(30),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            max_attempts: 3,
            max_inflight_per_peer: 64,
            model_cache_bytes: 256 * 1024 * 1024,
            beacon_counter_start: 0,
        }
    }
}

/// Work for the shell's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Send this datagram to the multicast group.
    Multicast(Vec<u8>),
    /// Open a TCP connection; report it with `handle_connected` or
    /// `handle_connect_failed`.
    Connect { conn: ConnId, addr: SocketAddr },
    /// Write these bytes (length-prefixed frames) to the connection.
    Send { conn: ConnId, bytes: Vec<u8> },
    /// Close the connection once what was queued before is written.
    Close { conn: ConnId },
}

/// Things the application (or the shell) should know or do.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A peer was seen for the first time.
    PeerDiscovered {
        id: NodeId,
        addr: SocketAddr,
        via: Via,
    },
    /// A session with a peer is up.
    PeerConnected { id: NodeId, addr: SocketAddr },
    /// A session with a peer ended.
    PeerDisconnected { id: NodeId, reason: String },
    /// Worker side: run this job and report it with `handle_job_done`.
    Execute {
        job: JobId,
        kind: TaskKind,
        input: Vec<u8>,
        model: Option<[u8; 32]>,
        deadline: Instant,
    },
    /// Worker side: this job's result is no longer wanted.
    Abandon { job: JobId },
    /// Requester side: a task ended (reported exactly once).
    TaskDone(Box<TaskOutcome>),
    /// Worker side: a model was fetched and verified; store it.
    ModelFetched { hash: [u8; 32], bytes: Vec<u8> },
}

/// Counters of what the node refused or dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub beacons_accepted: u64,
    pub beacons_forged: u64,
    pub beacons_replayed: u64,
    pub beacons_malformed: u64,
    pub beacons_wrong_version: u64,
    pub frames_rejected: u64,
    pub frames_replayed: u64,
    pub handshakes_completed: u64,
    pub handshakes_failed: u64,
    pub handshakes_timed_out: u64,
    pub peers_refused: u64,
    pub conns_refused: u64,
    pub results_rejected: u64,
    pub tasks_retried: u64,
    pub blob_bytes_served: u64,
    pub blob_bytes_fetched: u64,
}

/// Each kind of bad input is logged at `warn` once, then at `debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Noise {
    ForgedBeacon,
    ReplayedBeacon,
    MalformedBeacon,
    WrongVersion,
    BadFrame,
    ReplayedFrame,
    HandshakeFailed,
    HandshakeTimeout,
    Refused,
    BadResult,
}

/// The node's state machine.
pub struct Core {
    key: Keypair,
    id: NodeId,
    cfg: Config,
    rng: Box<dyn Entropy>,
    peers: BTreeMap<NodeId, discovery::Peer>,
    bootstrap: Vec<discovery::Bootstrap>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    beacon_seq: u64,
    next_beacon: Option<Instant>,
    burst_left: u32,
    answer_query_at: Option<Instant>,
    exchange: exchange::Exchange,
    blobs: blobs::Blobs,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    warned: u32,
    scratch: Box<[u8]>,
    shutting_down: bool,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .field("peers", &self.peers.len())
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A node with key `key`, started at `now`.
    pub fn new(key: Keypair, cfg: Config, mut rng: Box<dyn Entropy>, now: Instant) -> Self {
        let id = key.node_id();
        let beacon_seq = cfg.beacon_counter_start;
        let bootstrap = cfg
            .bootstrap
            .iter()
            .map(|&addr| discovery::Bootstrap::new(addr, Via::Bootstrap, now))
            .collect();
        let next_beacon = cfg.multicast.then_some(now);
        let burst_left = if cfg.multicast { cfg.beacon_burst } else { 0 };
        let exchange = exchange::Exchange::new(rng.next_u64() >> 1);
        Self {
            key,
            id,
            cfg,
            rng,
            peers: BTreeMap::new(),
            bootstrap,
            conns: BTreeMap::new(),
            next_conn: 1,
            beacon_seq,
            next_beacon,
            burst_left,
            answer_query_at: None,
            exchange,
            blobs: blobs::Blobs::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            warned: 0,
            scratch: vec![0u8; MAX_FRAME_LEN + p2pa_protocol::LEN_PREFIX_LEN].into_boxed_slice(),
            shutting_down: false,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters of refused input.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The peer table.
    pub fn peers(&self, now: Instant) -> Vec<PeerInfo> {
        self.peers
            .values()
            .map(|p| p.info(now, &self.cfg))
            .collect()
    }

    /// Memory held by the peer table (entries × entry size), for scale reports.
    pub fn peer_table_bytes(&self) -> usize {
        self.peers
            .len()
            .saturating_mul(std::mem::size_of::<discovery::Peer>())
    }

    /// Open TCP connections (handshaking or established).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Peers with a live session.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.peers
            .values()
            .filter(|p| p.conn.is_some())
            .map(|p| p.id)
            .collect()
    }

    /// What this node offers now.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kinds: self.cfg.kinds,
            free_slots: self.exchange.free_slots(&self.cfg),
            models: self
                .blobs
                .advertised(p2pa_protocol::MAX_BEACON_MODELS)
                .collect(),
        }
    }

    /// Next transmission for the shell.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Whether transmits or events are waiting to be polled.
    pub fn has_pending_output(&self) -> bool {
        !self.transmits.is_empty() || !self.events.is_empty()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn_deadlines = self.conns.values().map(|c| c.next_deadline(&self.cfg));
        let forget = self.forget_after();
        let dial = self
            .peers
            .values()
            .map(|p| p.next_check(self.id, forget))
            .chain(
                self.bootstrap
                    .iter()
                    .filter(|b| b.conn.is_none())
                    .map(|b| b.next_dial),
            );
        [
            self.next_beacon,
            self.answer_query_at,
            self.exchange.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .chain(conn_deadlines)
        .chain(dial)
        .min()
    }

    /// Timers: beacons, keepalive, handshake and task deadlines, redials.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.beacon_timers(now);
        self.session_timers(now);
        self.discovery_timers(now);
        self.exchange_timers(now);
    }

    /// Starts a graceful shutdown: Goodbye to every peer, no new work taken.
    /// Tasks this node requested are reported as cancelled.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.next_beacon = None;
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.goodbye(now, conn, p2pa_protocol::GoodbyeReason::Shutdown);
        }
        self.exchange_cancel_all(now);
    }

    pub(crate) fn warn_once(&mut self, noise: Noise, msg: std::fmt::Arguments<'_>) {
        let bit = 1u32 << (noise as u32);
        if self.warned & bit == 0 {
            self.warned |= bit;
            log::warn!("{msg} (further such events are logged at debug level)");
        } else {
            log::debug!("{msg}");
        }
    }

    fn new_conn_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn = self.next_conn.saturating_add(1);
        id
    }

    fn jitter(&mut self, base: Duration) -> Duration {
        // base ± base/8, uniformly.
        let quarter = base.checked_div(4).unwrap_or_default();
        let quarter_ms = u64::try_from(quarter.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let offset = self.rng.next_u64().checked_rem(quarter_ms).unwrap_or(0);
        base.saturating_sub(quarter.checked_div(2).unwrap_or_default())
            .saturating_add(Duration::from_millis(offset))
    }
}

/// SHA-256 of `data`: input and output hashes of receipts, the `hash` task.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    hmac_sha256::Hash::hash(data)
}

/// Checks a receipt the requester got back against what it asked and received.
pub fn check_receipt(
    receipt: &Receipt,
    requester: NodeId,
    worker: NodeId,
    task_id: u64,
    status: TaskStatus,
    input: &[u8],
    output: &[u8],
) -> Result<(), &'static str> {
    receipt
        .verify()
        .map_err(|_| "receipt signature does not verify")?;
    if receipt.worker != worker {
        return Err("receipt is signed by another node than the worker");
    }
    if receipt.requester != requester || receipt.task_id != task_id {
        return Err("receipt is for another task");
    }
    if receipt.status != status {
        return Err("receipt status differs from the result's");
    }
    if receipt.input != sha256(input) {
        return Err("receipt input hash differs from the task's input");
    }
    if receipt.output != sha256(output) {
        return Err("receipt output hash differs from the output");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pa_protocol::Signature64;

    fn receipt(worker: &Keypair, requester: NodeId, input: &[u8], output: &[u8]) -> Receipt {
        let mut r = Receipt {
            task_id: 9,
            requester,
            worker: worker.node_id(),
            status: TaskStatus::Completed,
            model: [0; 32],
            input: sha256(input),
            output: sha256(output),
            signature: Signature64([0; 64]),
        };
        worker.sign_receipt(&mut r);
        r
    }

    #[test]
    fn receipts_are_checked_against_the_task_and_the_worker() {
        let w = Keypair::from_seed([1; 32]);
        let me = Keypair::from_seed([2; 32]).node_id();
        let r = receipt(&w, me, b"in", b"out");
        let ok = |r: &Receipt, worker, id, status, input: &[u8], output: &[u8]| {
            check_receipt(r, me, worker, id, status, input, output)
        };
        assert_eq!(
            ok(&r, w.node_id(), 9, TaskStatus::Completed, b"in", b"out"),
            Ok(())
        );
        assert!(ok(
            &r,
            w.node_id(),
            9,
            TaskStatus::Completed,
            b"in",
            b"tampered"
        )
        .is_err());
        assert!(ok(
            &r,
            w.node_id(),
            9,
            TaskStatus::Completed,
            b"other input",
            b"out"
        )
        .is_err());
        assert!(ok(&r, w.node_id(), 10, TaskStatus::Completed, b"in", b"out").is_err());
        assert!(ok(&r, w.node_id(), 9, TaskStatus::Failed, b"in", b"out").is_err());
        assert!(
            ok(&r, me, 9, TaskStatus::Completed, b"in", b"out").is_err(),
            "signed by someone else than the sender"
        );
        let mut forged = r;
        forged.signature.0[0] ^= 1;
        assert!(ok(
            &forged,
            w.node_id(),
            9,
            TaskStatus::Completed,
            b"in",
            b"out"
        )
        .is_err());
        let other = receipt(&w, NodeId([7; 32]), b"in", b"out");
        assert!(
            ok(&other, w.node_id(), 9, TaskStatus::Completed, b"in", b"out").is_err(),
            "receipt for another requester"
        );
    }
}
