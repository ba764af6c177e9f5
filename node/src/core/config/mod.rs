//! The node's limits and timings: one [`Config`], whose `Default` is the one
//! source of every default (the CLI derives its flags' defaults from it).
//! Each part of the core keeps its own slice of it (`slices.rs`), built
//! once when the core starts.

use std::net::SocketAddr;
use std::time::Duration;

use p2pa_protocol::{KindSet, NodeId, TaskKind};

mod slices;
pub(crate) use slices::{BlobConfig, PeerConfig, RequesterConfig, SessionConfig, WorkerConfig};

/// TCP port a node listens on unless told otherwise (beacons carry the real one).
pub const DEFAULT_TCP_PORT: u16 = 7421;

/// Largest model a node fetches and keeps, by default: 256 MiB fits the
/// models p2pa targets and leaves a 1 GiB board room to run them.
pub const DEFAULT_MODEL_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Longest deadline a worker accepts by default: ten minutes covers a large
/// model's inference on a small board; anything longer is a job, not a task.
pub const DEFAULT_MAX_TASK_DEADLINE: Duration = Duration::from_secs(600);

/// Largest input an inline task (`echo`, `hash`) runs with by default.
pub const DEFAULT_INLINE_MAX_INPUT: usize = 64 * 1024;

/// Default [`Config::max_tensor_bytes`]: 256 MiB (a 1 GiB board holds one).
pub const DEFAULT_MAX_TENSOR_BYTES: u64 = 256 * 1024 * 1024;

/// Default [`Config::input_buffer_bytes`]: 24 MiB (two 10 MB inputs ahead).
pub const DEFAULT_INPUT_BUFFER_BYTES: u64 = 24 * 1024 * 1024;

/// Default [`Config::min_transfer_rate`]: 64 KiB a second (half a megabit;
/// any LAN moves a tensor far faster).
pub const DEFAULT_MIN_TRANSFER_RATE: u64 = 64 * 1024;
/// Default [`Config::output_buffer_bytes`]: 8 MiB.
pub const DEFAULT_OUTPUT_BUFFER_BYTES: u64 = 8 * 1024 * 1024;

/// Inputs and outputs up to this size ride in their task's frame; larger
/// ones are blobs (room is left for the offer's or result's other fields).
pub const MAX_INLINE_TENSOR: usize = p2pa_protocol::MAX_BODY_LEN - 512;

/// Who may open a session with this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Any node that completes the handshake.
    Open,
    /// Only the listed node ids.
    Allowlist(Vec<NodeId>),
}

impl Trust {
    /// Whether `peer` may hold a session with this node.
    pub fn admits(&self, peer: NodeId) -> bool {
        match self {
            Self::Open => true,
            Self::Allowlist(ids) => ids.contains(&peer),
        }
    }
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
    /// One requester may hold at most three quarters of `workers +
    /// queue_len` (the rest is kept for others).
    pub queue_len: usize,
    /// Kinds the node runs at once on its own thread, without a worker slot
    /// (microseconds of work: cheaper than a hop to a slot and back), when
    /// their input is at most `inline_max_input` bytes. They never wait
    /// behind slot jobs, however long those run. Only echo and hash count.
    pub inline_kinds: KindSet,
    /// Largest input of an inline task.
    pub inline_max_input: usize,
    /// Longest deadline a worker accepts (an offer asking more is refused
    /// `OverBudget`): no requester can park a job here indefinitely.
    pub max_task_deadline: Duration,
    /// Who may connect.
    pub trust: Trust,
    /// A key every node of this network holds (`--network-key`): mixed into
    /// the handshake, so a node without it completes none.
    pub network_key: Option<[u8; 32]>,
    /// Offer AES-256-GCM for sessions (`--cipher`); a session uses it when
    /// both ends offer it, ChaCha20-Poly1305 otherwise. Off by default, so
    /// the core (and the simulation) behaves the same on every machine; the
    /// CLI turns it on where [`Config::aes_gcm_in_hardware`] says so.
    pub aes_gcm: bool,
    /// Leave held models out of beacons (`--quiet-beacons`).
    pub quiet_beacons: bool,
    /// Static peers to dial (for networks multicast does not reach).
    pub bootstrap: Vec<SocketAddr>,
    /// Whether to send and act on multicast beacons.
    pub multicast: bool,
    /// Peers kept in the table. When full, a newcomer evicts the stalest
    /// peer that has no session and never ran a task for this node.
    pub max_peers: usize,
    /// Table entries that share one IP address (several nodes may run on one
    /// host; a flood of fresh keys from one address may not fill the table).
    pub max_peers_per_ip: usize,
    /// Sessions open at once (our own dials count in it while they
    /// handshake). Inbound handshakes in progress come on top, at most
    /// `max_handshakes`; one that completes while the sessions are full takes
    /// the place of the least valuable idle session, or is refused.
    pub max_conns: usize,
    /// Sessions with peers that run nothing (requesters, such as the CLI's
    /// fresh keys), so that a flood of them leaves room for workers.
    pub max_requester_sessions: usize,
    /// Sessions with peers at one IP address.
    pub max_sessions_per_ip: usize,
    /// Inbound handshakes in flight at once. When full, a newcomer evicts the
    /// oldest pending one (it cannot be locked out by silent sockets).
    pub max_handshakes: usize,
    /// Inbound handshakes in flight from one IP address; a newcomer from that
    /// address evicts its oldest.
    pub max_handshakes_per_ip: usize,
    /// This node's own dials in flight (a budget apart from inbound ones).
    pub max_dials: usize,
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
    /// Bytes of models being fetched held at once, all fetches together (a
    /// fetch that would pass it is refused; each is freed when it ends). The
    /// models fetched from one peer hold at most half of it (its first model
    /// only needs to fit in the whole).
    pub max_fetch_bytes: u64,
    /// A fetch that gets no chunk for this long is given up (its buffer is
    /// freed; the tasks waiting for the model fail).
    pub fetch_stall: Duration,
    /// Floor rate of a task input or output in transfer, in bytes a second
    /// of new bytes, judged over each `transfer_window`: an input this node
    /// fetches that moves slower is given up (its task fails), an output
    /// lent to its requester that it fetches slower is dropped (0: no floor).
    /// A transfer so ends within `len / min_transfer_rate` and a window,
    /// whatever the peer asks. While a job waits for room in the output
    /// buffer, outputs are judged early, from 1 s into their window.
    pub min_transfer_rate: u64,
    /// The window over which `min_transfer_rate` is judged.
    pub transfer_window: Duration,
    /// Largest task input or output this node sends, takes or fetches, in
    /// bytes (beyond a frame they travel as blobs).
    pub max_tensor_bytes: u64,
    /// Task inputs a worker holds ahead of running them (fetched or being
    /// fetched), in bytes, all requesters together; one input is always
    /// allowed, however large, and a requester holding none may pass the
    /// buffer up to twice its size (a requester that holds it cannot keep
    /// others out). The next inputs arrive while the current ones run, and
    /// no more: a worker's memory does not grow with its queue. The next
    /// input fetched is the one of the requester holding the fewest bytes,
    /// so requesters share the buffer.
    pub input_buffer_bytes: u64,
    /// Task outputs a worker holds until their requesters fetch them, in
    /// bytes. A requester whose unfetched outputs reach half of it waits to
    /// start more jobs; past all of it, only requesters with nothing
    /// unfetched start (an output is dropped after `fetch_stall` without a
    /// request, or when fetched under `min_transfer_rate`).
    pub output_buffer_bytes: u64,
    /// First beacon counter. Receivers drop beacons whose counter does not
    /// grow, so a restarted node must start above where it stopped: the shell
    /// passes the wall clock in microseconds.
    pub beacon_counter_start: u64,
}

impl Config {
    /// Whether a task runs inline (no slot) under this configuration: only
    /// echo and hash ever do (a `sleep` or a model on the node's own loop
    /// would stall it, whatever `inline_kinds` says).
    pub fn runs_inline(&self, kind: TaskKind, input_len: usize) -> bool {
        WorkerConfig::from(self).runs_inline(kind, input_len)
    }

    /// Whether this node can offer AES-256-GCM for its sessions: built with the
    /// `aes-gcm` feature, on a CPU that runs AES and GCM's carry-less multiply
    /// in hardware (x86-64: AES-NI and PCLMULQDQ; aarch64: AES and PMULL).
    /// Elsewhere AES in software is slower than ChaCha20-Poly1305, which stays.
    pub fn aes_gcm_in_hardware() -> bool {
        if !cfg!(feature = "aes-gcm") {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("pclmulqdq")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("aes")
                && std::arch::is_aarch64_feature_detected!("pmull")
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }
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
            max_task_deadline: DEFAULT_MAX_TASK_DEADLINE,
            inline_kinds: KindSet::default().with(TaskKind::Echo).with(TaskKind::Hash),
            inline_max_input: DEFAULT_INLINE_MAX_INPUT,
            trust: Trust::Open,
            network_key: None,
            aes_gcm: false,
            quiet_beacons: false,
            bootstrap: Vec::new(),
            multicast: true,
            max_peers: 256,
            max_peers_per_ip: 32,
            max_conns: 128,
            max_requester_sessions: 64,
            max_sessions_per_ip: 16,
            max_handshakes: 32,
            max_handshakes_per_ip: 4,
            max_dials: 32,
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
            model_cache_bytes: DEFAULT_MODEL_CACHE_BYTES,
            max_fetch_bytes: DEFAULT_MODEL_CACHE_BYTES,
            fetch_stall: Duration::from_secs(15),
            min_transfer_rate: DEFAULT_MIN_TRANSFER_RATE,
            transfer_window: Duration::from_secs(3),
            max_tensor_bytes: DEFAULT_MAX_TENSOR_BYTES,
            input_buffer_bytes: DEFAULT_INPUT_BUFFER_BYTES,
            output_buffer_bytes: DEFAULT_OUTPUT_BUFFER_BYTES,
            beacon_counter_start: 0,
        }
    }
}
