//! What applications hold: [`NodeOptions`] to start a node, a [`NodeHandle`]
//! to ask it for work, and [`LocalNode`] to run it on the caller's thread.

pub use super::options::{NodeEvent, NodeOptions};

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use async_channel::{bounded, Receiver, Sender};
use async_executor::LocalExecutor;
use async_io::Timer;
use p2pa_protocol::{Keypair, KindSet, NodeId, TaskKind};

use super::entropy::OsEntropy;
use super::mdns;
use super::shell::Shell;
use super::udp::{self, MulticastConfig};
use super::{Cmd, Input, EVENT_QUEUE, INPUT_QUEUE};
use crate::core::{Core, PeerInfo, PeerState, Stats, TaskOutcome, TaskRequest};

/// How often [`NodeHandle::wait_for_peers`] looks at the peer table.
const PEER_POLL: Duration = Duration::from_millis(5);
/// How long the workers found must stay the same, with no handshake under
/// way, before [`NodeHandle::settle_workers`] takes them as the pool: the
/// peers that answered one discovery round connect within a few
/// milliseconds of each other.
pub const SETTLE_QUIET: Duration = Duration::from_millis(50);

/// Whether `p` takes a task of `kind` now: not paused, and with the
/// capability flags `needs` (an engine, say).
fn takes(p: &PeerInfo, kind: Option<TaskKind>, needs: u8) -> bool {
    !p.caps.kinds.has_flags(KindSet::PAUSED)
        && kind.is_none_or(|k| p.caps.kinds.contains(k))
        && p.caps.kinds.has_flags(needs)
}

/// The node's whole life as one future (it owns its executor, so it is not `Send`).
type NodeFuture = std::pin::Pin<Box<dyn Future<Output = ()>>>;

/// A future to run on the node's thread ([`NodeHandle::run_on_node`]).
pub type LocalJob = std::pin::Pin<Box<dyn Future<Output = ()>>>;

/// What makes a [`LocalJob`], sent to the node's thread.
type Job = Box<dyn FnOnce() -> LocalJob + Send>;

/// A node started with [`NodeHandle::start_local`]: it runs only inside
/// [`block_on`](Self::block_on), on the calling thread.
pub struct LocalNode(Option<NodeFuture>);

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalNode")
    }
}

impl LocalNode {
    /// Runs `work` and the node together on this thread until `work` ends.
    /// Call it as often as needed; between calls the node does not run
    /// (sockets buffer in the kernel, timers fire late). Prefer one call
    /// around a whole sequence of requests to one call per request: each
    /// call costs a few wake-ups (about 25 % more CPU per echo task in
    /// BENCHMARKS.md). After [`NodeHandle::shutdown`] completes inside
    /// `work`, the node is gone.
    pub fn block_on<T>(&mut self, work: impl Future<Output = T>) -> T {
        // Two tasks, each with its own waker: a socket event polls the node,
        // not `work` too (which may poll a signal pipe or a channel each time).
        let ex = LocalExecutor::new();
        let slot = &mut self.0;
        ex.spawn(async move {
            if let Some(f) = slot.as_mut() {
                f.await;
                *slot = None;
            }
        })
        .detach();
        let work = ex.spawn(work);
        async_io::block_on(ex.run(work))
    }
}

/// Why a request to the node failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStopped;

impl std::fmt::Display for NodeStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the node has stopped")
    }
}

impl std::error::Error for NodeStopped {}

/// Hands a running node addresses found by other means (a host name
/// resolved again), from any thread.
#[derive(Debug, Clone)]
pub struct AddressFeed(Sender<Input>);

impl AddressFeed {
    /// Tells the node about `addr`, which it dials as it would an address
    /// mDNS found; `false` once the node has stopped.
    pub fn add(&self, addr: SocketAddr) -> bool {
        self.0.send_blocking(Input::Found(addr)).is_ok()
    }
}

/// A running node. Dropping it does not stop the node; call [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct NodeHandle {
    id: NodeId,
    addr: SocketAddr,
    inputs: Sender<Input>,
    events: Receiver<NodeEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Work for the node's thread ([`NodeHandle::run_on_node`]).
    jobs: Option<Sender<Job>>,
}

impl NodeHandle {
    /// Binds the sockets (errors come back here: a port in use, a bad
    /// interface) and starts the node on its own thread.
    ///
    /// For a process whose main thread only waits on the node (a requester,
    /// a CLI command), [`start_local`](Self::start_local) is cheaper: the node
    /// then runs on that thread and no request crosses threads.
    pub fn start(key: Keypair, opts: NodeOptions) -> io::Result<Self> {
        let (mut handle, node) = Self::build(key, opts)?;
        let (jobs_tx, jobs) = async_channel::unbounded::<Job>();
        let thread = std::thread::Builder::new()
            .name("p2pa-node".into())
            // async_io::block_on: this thread runs the reactor itself (no hop
            // through async-io's helper thread on every socket event).
            .spawn(move || {
                let ex = LocalExecutor::new();
                let take_jobs = async {
                    while let Ok(job) = jobs.recv().await {
                        ex.spawn(job()).detach();
                    }
                    std::future::pending::<()>().await;
                };
                // The node's end ends the thread, and drops unfinished jobs.
                async_io::block_on(ex.run(futures_lite::future::or(node(), take_jobs)));
            })?;
        handle.thread = Some(thread);
        handle.jobs = Some(jobs_tx);
        Ok(handle)
    }

    /// Runs the future `job` makes on the node's own thread, next to the
    /// node (a node from [`start`](Self::start) only; `false` otherwise, or
    /// once it has stopped). Requests from there cross no thread: what
    /// [`start_local`](Self::start_local) gives a caller that can lend its
    /// thread, for one that cannot (a Python interpreter's). The future
    /// must not block; it is dropped when the node stops.
    pub fn run_on_node(&self, job: impl FnOnce() -> LocalJob + Send + 'static) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|j| j.try_send(Box::new(job)).is_ok())
    }

    /// Binds the sockets like [`start`](Self::start) but runs nothing yet:
    /// the node runs on the calling thread inside [`LocalNode::block_on`],
    /// next to the caller's own work. Every request and result then stays on
    /// one thread: no cross-thread wake-up per task (measured in
    /// BENCHMARKS.md: CPU per task 1.54 → 1.20 × the raw-TCP floor).
    pub fn start_local(key: Keypair, opts: NodeOptions) -> io::Result<(Self, LocalNode)> {
        let (handle, node) = Self::build(key, opts)?;
        Ok((handle, LocalNode(Some(node()))))
    }

    fn build(
        key: Keypair,
        mut opts: NodeOptions,
    ) -> io::Result<(Self, impl FnOnce() -> NodeFuture + Send + 'static)> {
        let entropy = OsEntropy::new()?;
        let listener = TcpListener::bind(opts.listen)?;
        let addr = listener.local_addr()?;
        opts.core.listen_port = addr.port();
        let udp = open_multicast(opts.multicast.as_ref());
        opts.core.multicast = udp.is_some();
        opts.core.beacon_counter_start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let id = key.node_id();
        let (inputs_tx, inputs_rx) = bounded(INPUT_QUEUE);
        let (events_tx, events_rx) = bounded(EVENT_QUEUE);
        let mdns = if opts.mdns {
            start_mdns(id, addr.port(), opts.multicast.as_ref(), inputs_tx.clone())?
        } else {
            None
        };
        let tx = inputs_tx.clone();
        let node = move || -> NodeFuture {
            Box::pin(async move {
                let _mdns = mdns; // one instance for the node's lifetime
                let mut core = Core::new(key, opts.core.clone(), Box::new(entropy), Instant::now());
                if let Some(store) = &opts.models {
                    for (hash, _) in store.list().into_iter().rev() {
                        core.add_held_model(hash);
                    }
                }
                let ex = LocalExecutor::new();
                let shell = Shell::new(core, &opts, tx, events_tx);
                if let Err(e) = ex.run(shell.run(&ex, inputs_rx, listener, udp)).await {
                    log::error!("node stopped: {e}");
                }
            })
        };
        let handle = Self {
            id,
            addr,
            inputs: inputs_tx,
            events: events_rx,
            thread: None,
            jobs: None,
        };
        Ok((handle, node))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The TCP address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// News from the node (discoveries, sessions, finished tasks).
    pub fn events(&self) -> &Receiver<NodeEvent> {
        &self.events
    }

    async fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Cmd) -> Result<T, NodeStopped> {
        let (tx, rx) = bounded(1);
        self.inputs
            .send(Input::Cmd(make(tx)))
            .await
            .map_err(|_| NodeStopped)?;
        rx.recv().await.map_err(|_| NodeStopped)
    }

    /// Runs a task on some peer and waits for its outcome. Dropping the
    /// future before it ends withdraws the task: the node cancels it (its
    /// worker is told to stop) instead of running it for no one.
    pub async fn submit(&self, req: TaskRequest) -> Result<TaskOutcome, NodeStopped> {
        let (tx, rx) = bounded(1);
        self.inputs
            .send(Input::Cmd(Cmd::Submit(req, tx)))
            .await
            .map_err(|_| NodeStopped)?;
        let mut wait = Withdraw {
            inputs: &self.inputs,
            outcome: Some(rx),
        };
        let outcome = match &wait.outcome {
            Some(rx) => rx.recv().await.map_err(|_| NodeStopped),
            None => Err(NodeStopped),
        };
        wait.outcome = None; // answered: nothing to withdraw
        outcome
    }

    /// The peer table now.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeStopped> {
        self.ask(Cmd::Peers).await
    }

    /// Waits until `min` peers with a session run `kind` (any kind when
    /// `None`; paused ones too), or `wait` passes; returns those peers.
    pub async fn wait_for_peers(
        &self,
        kind: Option<TaskKind>,
        min: usize,
        wait: Duration,
    ) -> Vec<PeerInfo> {
        let runs = |p: &PeerInfo| kind.is_none_or(|k| p.caps.kinds.contains(k));
        self.wait_until(runs, min, wait).await
    }

    /// As [`NodeHandle::wait_for_peers`], counting only peers that take a
    /// task of `kind` now: not paused, and with the capability flags
    /// `needs` (an engine, say).
    pub async fn wait_for_workers(
        &self,
        kind: Option<TaskKind>,
        needs: u8,
        min: usize,
        wait: Duration,
    ) -> Vec<PeerInfo> {
        self.wait_until(|p| takes(p, kind, needs), min, wait).await
    }

    /// After the first worker, waits for the rest of the pool to answer so
    /// that work spreads over all of it: until no discovered peer whose
    /// beacon says it takes the work is still without a session and the
    /// workers (as [`NodeHandle::wait_for_workers`] counts them) have not
    /// changed for [`SETTLE_QUIET`], or `most` passes. (Other requesters on
    /// the LAN, which may take their time to connect, are not waited for.)
    /// Returns the workers. Workers that answer later still get work (the
    /// node offers tasks to every worker that connects); only the first
    /// spread misses them.
    pub async fn settle_workers(
        &self,
        kind: Option<TaskKind>,
        needs: u8,
        most: Duration,
    ) -> Vec<PeerInfo> {
        let start = Instant::now();
        let mut last: Vec<NodeId> = Vec::new();
        let mut since = start;
        loop {
            let peers = self.peers().await.unwrap_or_default();
            let handshaking = peers
                .iter()
                .any(|p| p.state == PeerState::Known && takes(p, kind, needs));
            let workers: Vec<PeerInfo> = peers
                .into_iter()
                .filter(|p| p.state != PeerState::Known && takes(p, kind, needs))
                .collect();
            let ids: Vec<NodeId> = workers.iter().map(|p| p.id).collect();
            let now = Instant::now();
            if ids != last {
                (last, since) = (ids, now);
            }
            let quiet = now.saturating_duration_since(since) >= SETTLE_QUIET;
            if (quiet && !handshaking) || now.saturating_duration_since(start) >= most {
                return workers;
            }
            Timer::after(PEER_POLL).await;
        }
    }

    /// Waits until `min` peers with a session pass `filter`, or `wait`
    /// passes; returns those peers.
    async fn wait_until(
        &self,
        filter: impl Fn(&PeerInfo) -> bool,
        min: usize,
        wait: Duration,
    ) -> Vec<PeerInfo> {
        let start = Instant::now();
        loop {
            let ready: Vec<PeerInfo> = self
                .peers()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.state != PeerState::Known && filter(p))
                .collect();
            if ready.len() >= min || start.elapsed() >= wait {
                return ready;
            }
            Timer::after(PEER_POLL).await;
        }
    }

    /// Runs `reqs` with at most `window` in flight (a pipelined peer stays
    /// busy); `done` gets each outcome, in the order the tasks were given.
    pub async fn submit_windowed(
        &self,
        reqs: impl IntoIterator<Item = TaskRequest>,
        window: usize,
        mut done: impl FnMut(TaskOutcome),
    ) -> Result<(), NodeStopped> {
        let ex = LocalExecutor::new();
        ex.run(async {
            let mut queue = reqs.into_iter();
            let mut inflight = std::collections::VecDeque::new();
            loop {
                while inflight.len() < window.max(1) {
                    let Some(req) = queue.next() else { break };
                    inflight.push_back(ex.spawn(self.submit(req)));
                }
                let Some(first) = inflight.pop_front() else {
                    return Ok(());
                };
                done(first.await?);
            }
        })
        .await
    }

    /// A feed of addresses into this node, for another thread.
    pub fn address_feed(&self) -> AddressFeed {
        AddressFeed(self.inputs.clone())
    }

    /// Counters of refused input.
    pub async fn stats(&self) -> Result<Stats, NodeStopped> {
        self.ask(Cmd::Stats).await
    }

    /// What the node's worker is doing: slots, jobs, models held.
    pub async fn work(&self) -> Result<crate::core::Work, NodeStopped> {
        self.ask(Cmd::Work).await
    }

    /// Pauses the node's worker (no new tasks; what runs finishes; its
    /// sessions stay) or, with `false`, resumes it. See [`crate::core::Core::set_paused`].
    pub async fn set_paused(&self, paused: bool) -> Result<(), NodeStopped> {
        self.ask(|tx| Cmd::Pause(paused, tx)).await
    }

    /// Serves `bytes` (a model) to workers that lack it; returns its hash,
    /// which tasks name in `TaskRequest::model`.
    pub async fn provide_model(&self, bytes: Vec<u8>) -> Result<[u8; 32], NodeStopped> {
        let hash = crate::core::sha256(&bytes);
        self.inputs
            .send(Input::Cmd(Cmd::ProvideModel(hash, bytes.into())))
            .await
            .map_err(|_| NodeStopped)?;
        Ok(hash)
    }

    /// Says Goodbye to every peer, hands back unfinished work, and stops
    /// (its tasks end `Cancelled`), without waiting for the node's thread:
    /// for a handle shared between threads, where
    /// [`shutdown`](Self::shutdown) cannot take it.
    pub async fn stop(&self) {
        let _ = self.ask(Cmd::Shutdown).await;
    }

    /// Says Goodbye to every peer, hands back unfinished work, and stops.
    pub async fn shutdown(mut self) {
        self.stop().await;
        if let Some(t) = self.thread.take() {
            // The node thread ends right after it answered. Wait for it
            // without blocking the caller's executor; bounded (5 s), after
            // which a stuck thread is left detached.
            for _ in 0..500 {
                if t.is_finished() {
                    let _ = t.join();
                    return;
                }
                Timer::after(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A submitted task's wait for its outcome. Dropped unanswered (the
/// caller gave up: a cancelled future, a Ctrl-C), it drops the reply
/// channel and then asks the shell to withdraw the tasks nobody waits for.
struct Withdraw<'a> {
    inputs: &'a Sender<Input>,
    outcome: Option<Receiver<TaskOutcome>>,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if self.outcome.take().is_some() {
            // A full queue leaves the task running; its outcome is dropped.
            let _ = self.inputs.try_send(Input::Cmd(Cmd::Withdraw));
        }
    }
}

/// Opens the beacon socket, if multicast is on. A host where it cannot
/// open (no multicast-capable interface; an emulator without the socket
/// options) runs without beacons, with one warning: peers come from mDNS,
/// `--bootstrap` and `--peer`.
fn open_multicast(m: Option<&MulticastConfig>) -> Option<udp::Beacons> {
    let m = m?;
    match udp::open(m) {
        Ok(b) => Some(b),
        Err(e) => {
            log::warn!(
                "multicast beacons are off: socket {}:{} on {}: {e}; peers come from mDNS, --bootstrap and --peer only",
                m.group,
                m.port,
                m.interface
            );
            None
        }
    }
}

/// Starts mDNS and a thread that forwards the addresses it finds to the
/// node. mDNS that cannot start is a warning, not an error.
fn start_mdns(
    id: NodeId,
    port: u16,
    multicast: Option<&MulticastConfig>,
    inputs: Sender<Input>,
) -> io::Result<Option<mdns::Mdns>> {
    let iface = multicast
        .map(|m| m.interface)
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let (found_tx, found_rx) = bounded::<SocketAddr>(64);
    match mdns::start(id, port, iface, found_tx) {
        Ok(sd) => {
            std::thread::Builder::new()
                .name("p2pa-mdns-fwd".into())
                .spawn(move || {
                    while let Ok(a) = found_rx.recv_blocking() {
                        if inputs.send_blocking(Input::Found(a)).is_err() {
                            break;
                        }
                    }
                })?;
            Ok(Some(sd))
        }
        Err(e) => {
            log::warn!("mDNS is off: {e}");
            Ok(None)
        }
    }
}
