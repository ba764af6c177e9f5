//! Each part's slice of the node's [`Config`]: what that part reads of it
//! and nothing else, built once from it (`From<&Config>`) when the core
//! starts. A part's unit tests build theirs from a `Config` the same way.

use std::time::Duration;

use p2pa_protocol::{KindSet, TaskKind};

use super::{Config, Trust};

/// The worker's: what it runs, how much it takes on, its buffers.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) kinds: KindSet,
    pub(crate) workers: u16,
    pub(crate) prefetch: u16,
    pub(crate) queue_len: usize,
    pub(crate) max_task_deadline: Duration,
    pub(crate) max_tensor_bytes: u64,
    pub(crate) model_cache_bytes: u64,
    pub(crate) input_buffer_bytes: u64,
    pub(crate) output_buffer_bytes: u64,
    inline_kinds: KindSet,
    inline_max_input: usize,
}

impl From<&Config> for WorkerConfig {
    fn from(c: &Config) -> Self {
        Self {
            kinds: c.kinds,
            workers: c.workers,
            prefetch: c.prefetch,
            queue_len: c.queue_len,
            max_task_deadline: c.max_task_deadline,
            max_tensor_bytes: c.max_tensor_bytes,
            model_cache_bytes: c.model_cache_bytes,
            input_buffer_bytes: c.input_buffer_bytes,
            output_buffer_bytes: c.output_buffer_bytes,
            inline_kinds: c.inline_kinds,
            inline_max_input: c.inline_max_input,
        }
    }
}

impl WorkerConfig {
    /// Whether a task runs inline (no slot): only echo and hash ever do (a
    /// `sleep` or a model on the node's own loop would stall it, whatever
    /// `inline_kinds` says).
    pub(crate) fn runs_inline(&self, kind: TaskKind, input_len: usize) -> bool {
        matches!(kind, TaskKind::Echo | TaskKind::Hash)
            && self.inline_kinds.contains(kind)
            && input_len <= self.inline_max_input
    }

    /// Jobs a worker holds at once: its slots plus its queue.
    pub(crate) fn queue_capacity(&self) -> usize {
        usize::from(self.workers).saturating_add(self.queue_len)
    }

    /// Slot jobs running or handed to the shell at once: the slots plus the
    /// prefetch (none on a node without slots).
    pub(crate) fn slot_limit(&self) -> usize {
        if self.workers == 0 {
            0
        } else {
            usize::from(self.workers).saturating_add(usize::from(self.prefetch))
        }
    }
}

/// The blobs part's: how large a fetch may be, how slow before it is
/// given up.
#[derive(Debug, Clone)]
pub(crate) struct BlobConfig {
    pub(crate) fetch_stall: Duration,
    pub(crate) min_transfer_rate: u64,
    pub(crate) transfer_window: Duration,
    pub(crate) model_cache_bytes: u64,
    pub(crate) max_tensor_bytes: u64,
    pub(crate) max_fetch_bytes: u64,
}

impl From<&Config> for BlobConfig {
    fn from(c: &Config) -> Self {
        Self {
            fetch_stall: c.fetch_stall,
            min_transfer_rate: c.min_transfer_rate,
            transfer_window: c.transfer_window,
            model_cache_bytes: c.model_cache_bytes,
            max_tensor_bytes: c.max_tensor_bytes,
            max_fetch_bytes: c.max_fetch_bytes,
        }
    }
}

/// The requester's: how much it sends one worker, how often it retries.
#[derive(Debug, Clone)]
pub(crate) struct RequesterConfig {
    pub(crate) max_tensor_bytes: u64,
    pub(crate) max_inflight_per_peer: usize,
    pub(crate) max_attempts: u32,
}

impl From<&Config> for RequesterConfig {
    fn from(c: &Config) -> Self {
        Self {
            max_tensor_bytes: c.max_tensor_bytes,
            max_inflight_per_peer: c.max_inflight_per_peer,
            max_attempts: c.max_attempts,
        }
    }
}

/// The sessions part's: who may hold a session, how long a handshake and
/// a silence may last, how many connections at once.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub(crate) trust: Trust,
    pub(crate) handshake_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) dead_after: Duration,
    pub(crate) max_conns: usize,
    pub(crate) max_dials: usize,
    pub(crate) max_handshakes: usize,
    pub(crate) max_handshakes_per_ip: usize,
}

impl From<&Config> for SessionConfig {
    fn from(c: &Config) -> Self {
        Self {
            trust: c.trust.clone(),
            handshake_timeout: c.handshake_timeout,
            ping_interval: c.ping_interval,
            dead_after: c.dead_after,
            max_conns: c.max_conns,
            max_dials: c.max_dials,
            max_handshakes: c.max_handshakes,
            max_handshakes_per_ip: c.max_handshakes_per_ip,
        }
    }
}

/// The peer table's: who is kept, how many, how soon a dial is tried
/// again, when a silent peer is slow or forgotten.
#[derive(Debug, Clone)]
pub(crate) struct PeerConfig {
    pub(crate) trust: Trust,
    pub(crate) max_peers: usize,
    pub(crate) max_peers_per_ip: usize,
    pub(crate) max_conns: usize,
    pub(crate) max_sessions_per_ip: usize,
    pub(crate) max_requester_sessions: usize,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) slow_after: Duration,
    pub(crate) forget_after: Duration,
    pub(crate) beacon_interval: Duration,
    /// This node runs no tasks (a requester): it waits only a short grace
    /// for a worker to dial it before dialing itself.
    pub(crate) runs_nothing: bool,
}

impl From<&Config> for PeerConfig {
    fn from(c: &Config) -> Self {
        Self {
            trust: c.trust.clone(),
            max_peers: c.max_peers,
            max_peers_per_ip: c.max_peers_per_ip,
            max_conns: c.max_conns,
            max_sessions_per_ip: c.max_sessions_per_ip,
            max_requester_sessions: c.max_requester_sessions,
            min_backoff: c.min_backoff,
            max_backoff: c.max_backoff,
            slow_after: c.slow_after,
            forget_after: c.forget_after,
            beacon_interval: c.beacon_interval,
            runs_nothing: c.kinds == KindSet::default() || c.workers == 0,
        }
    }
}
