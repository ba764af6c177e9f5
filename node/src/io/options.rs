//! What a node is started with ([`NodeOptions`]) and what it tells the
//! application ([`NodeEvent`]): shared by the handle and the shell, so
//! neither needs the other for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use p2pa_protocol::{NodeId, TaskKind, TaskStatus};

use super::udp::MulticastConfig;
use crate::core::{CloseReason, Config, ConnectError, JobId, TaskOutcome};
use crate::task::Executor;

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeOptions {
    /// The core's limits and timings.
    pub core: Config,
    /// TCP listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// Beacon transport; `None` turns multicast off.
    pub multicast: Option<MulticastConfig>,
    /// Advertise and browse `_p2pa._tcp.local`.
    pub mdns: bool,
    /// Runs the tasks this node accepts as a worker.
    pub executor: Executor,
    /// Where fetched models are kept (and models already held are found).
    pub models: Option<crate::models::ModelStore>,
    /// Niceness of the worker slot threads (0 leaves them as they are): the
    /// work yields to the machine's other programs, the network thread not.
    pub nice: u8,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("core", &self.core)
            .field("listen", &self.listen)
            .field("multicast", &self.multicast)
            .field("mdns", &self.mdns)
            .field("models", &self.models)
            .field("nice", &self.nice)
            .finish_non_exhaustive()
    }
}

impl NodeOptions {
    /// Defaults: listen on `listen`, link-local multicast, mDNS on, built-in executors.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            core: Config::default(),
            listen,
            multicast: Some(MulticastConfig::default()),
            mdns: true,
            executor: Arc::new(crate::task::Builtin),
            models: None,
            nice: 0,
        }
    }
}

/// Application-level news from a running node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// A peer was seen for the first time.
    Discovered {
        /// Its key.
        id: NodeId,
        /// Its TCP address.
        addr: SocketAddr,
        /// How it was found (`multicast`, `mdns`, `bootstrap`, `inbound`).
        via: &'static str,
    },
    /// A session with a peer is up.
    Connected {
        /// Its key.
        id: NodeId,
        /// Its TCP address.
        addr: SocketAddr,
    },
    /// A session with a peer ended.
    Disconnected {
        /// Its key.
        id: NodeId,
        /// Why.
        reason: CloseReason,
    },
    /// This node (as a worker) started a task.
    TaskStarted {
        /// The job's id.
        job: JobId,
        /// What it runs.
        kind: TaskKind,
        /// The model an `infer` task runs.
        model: Option<[u8; 32]>,
    },
    /// A task this node ran as a worker ended (its result is on its way).
    TaskFinished {
        /// The job's id (as in `TaskStarted`).
        job: JobId,
        /// What it ran.
        kind: TaskKind,
        /// The model an `infer` task ran.
        model: Option<[u8; 32]>,
        /// How it ended.
        status: TaskStatus,
        /// How long it ran (on its slot: the wait in the slots' queue, where
        /// the core prefetches, is not counted).
        elapsed: Duration,
    },
    /// A task this node requested ended with nobody waiting on it: a
    /// submit's outcome goes to the submit itself
    /// ([`NodeHandle::submit`](super::NodeHandle::submit)), not here, so
    /// that no output is held twice.
    TaskDone(Box<TaskOutcome>),
    /// A TCP connection this node opened (to a peer or a bootstrap address)
    /// failed before any handshake: an application that found the address
    /// by name may want to resolve the name again.
    DialFailed {
        /// Where it dialed.
        addr: SocketAddr,
        /// Why it failed.
        why: ConnectError,
    },
}
