//! The smol shell: moves bytes between sockets and the [`Core`], runs tasks on
//! worker slot threads, and offers a small async handle to applications.
//! It decides nothing: every protocol decision is the core's.

pub mod mdns;
pub mod udp;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{bounded, Receiver, Sender, TrySendError};
use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use p2pa_protocol::{Keypair, NodeId, TaskKind, TaskStatus};

use crate::core::{
    Config, ConnId, Core, Event, JobId, OsEntropy, PeerInfo, Stats, TaskOutcome, TaskRequest,
    Transmit,
};
pub use udp::MulticastConfig;

/// Frames queued per connection before the peer counts as too slow and is
/// dropped (backpressure: a stalled reader cannot make us buffer without end).
/// Twice the tasks a requester keeps in flight to one peer; the queue's slots
/// are allocated up front (about 40 bytes each), so it is also most of what a
/// session costs in memory.
pub const SEND_QUEUE: usize = 128;
/// Inputs (socket reads, finished jobs, commands) queued for the core.
const INPUT_QUEUE: usize = 1024;
/// Bytes read from a socket at once (zeroed up front per connection: small).
const READ_CHUNK: usize = 8 * 1024;
/// Frames the core handles from one read before the shell lets the writers
/// send what those frames produced. With a whole read at once, a window of
/// pipelined requests came back as one batch after all of them were done,
/// and the two peers took turns idling (pipelined throughput 0.66 of the
/// raw-TCP floor); one frame per turn keeps both busy (1.0 of the floor,
/// BENCHMARKS.md).
const FRAMES_PER_TURN: usize = 1;
/// Most bytes gathered into one `write`.
const WRITE_BATCH: usize = 64 * 1024;
/// First wait for an outbound TCP connect; each retry waits twice as long.
/// On a LAN a connect that takes 250 ms lost its SYN: a fresh attempt beats
/// the kernel's 1 s retransmission timer.
const CONNECT_FIRST_WAIT: Duration = Duration::from_millis(250);
/// Connect attempts before the dial counts as failed (250 + 500 + 1000 + 2000 ms).
const CONNECT_ATTEMPTS: u32 = 4;

/// Connects with quick retries (see [`CONNECT_FIRST_WAIT`]).
async fn connect(addr: SocketAddr) -> Result<Async<TcpStream>, String> {
    let mut wait = CONNECT_FIRST_WAIT;
    let mut last = String::from("connect timed out");
    for _ in 0..CONNECT_ATTEMPTS {
        let attempt = async {
            Async::<TcpStream>::connect(addr)
                .await
                .map_err(|e| e.to_string())
        };
        let timeout = async {
            Timer::after(wait).await;
            Err(String::from("connect timed out"))
        };
        match future::or(attempt, timeout).await {
            Ok(s) => return Ok(s),
            Err(e) if e == "connect timed out" => last = e,
            Err(e) => return Err(e), // refused or unreachable: an answer, not a loss
        }
        wait = wait.saturating_mul(2);
    }
    Err(last)
}
/// Time allowed to flush Goodbyes on shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);
/// Application events buffered for a slow reader before some are dropped.
const EVENT_QUEUE: usize = 4096;
/// Bound on drain rounds per wakeup (each inline task can add one round).
const INLINE_ROUNDS: usize = 64;
/// Largest input an `echo` or `hash` task runs with inline, on the reactor:
/// microseconds of work, cheaper than a hop to a slot thread and back.
const INLINE_MAX_INPUT: usize = 64 * 1024;

fn runs_inline(kind: TaskKind, input: &[u8]) -> bool {
    matches!(kind, TaskKind::Echo | TaskKind::Hash) && input.len() <= INLINE_MAX_INPUT
}

/// Runs one task: `(kind, input, model) → (status, output)`. Runs on the
/// slot threads, so it may take as long as it needs.
pub type Executor =
    Arc<dyn Fn(TaskKind, &[u8], Option<[u8; 32]>) -> (TaskStatus, Vec<u8>) + Send + Sync>;

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeOptions {
    pub core: Config,
    /// TCP listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// Beacon transport; `None` turns multicast off.
    pub multicast: Option<MulticastConfig>,
    /// Advertise and browse `_p2pa._tcp.local`.
    pub mdns: bool,
    pub executor: Executor,
    /// Where fetched models are kept (and models already held are found).
    pub models: Option<crate::models::ModelStore>,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("core", &self.core)
            .field("listen", &self.listen)
            .field("multicast", &self.multicast)
            .field("mdns", &self.mdns)
            .field("models", &self.models)
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
            executor: Arc::new(crate::task::execute),
            models: None,
        }
    }
}

/// Application-level news from a running node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    Discovered {
        id: NodeId,
        addr: SocketAddr,
        via: &'static str,
    },
    Connected {
        id: NodeId,
        addr: SocketAddr,
    },
    Disconnected {
        id: NodeId,
        reason: String,
    },
    /// This node (as a worker) started a task.
    TaskStarted {
        job: JobId,
        kind: TaskKind,
    },
    /// A task this node requested ended.
    TaskDone(Box<TaskOutcome>),
}

enum Cmd {
    Submit(TaskRequest, Sender<TaskOutcome>),
    Peers(Sender<Vec<PeerInfo>>),
    Stats(Sender<Stats>),
    ProvideModel([u8; 32], Arc<[u8]>),
    Shutdown(Sender<()>),
}

enum Input {
    Datagram(SocketAddr, Vec<u8>),
    Incoming(Async<TcpStream>, SocketAddr),
    Connected(ConnId, Async<TcpStream>),
    ConnectFailed(ConnId, String),
    Data(ConnId, Vec<u8>),
    Closed(ConnId, String),
    JobDone(JobId, TaskStatus, Vec<u8>),
    Found(SocketAddr),
    Cmd(Cmd),
}

enum Outgoing {
    Bytes(Vec<u8>),
    Close,
}

/// A running node. Dropping it does not stop the node; call [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct NodeHandle {
    id: NodeId,
    addr: SocketAddr,
    inputs: Sender<Input>,
    events: Receiver<NodeEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Input")
    }
}

/// The node's whole life as one future (it owns its executor, so it is not `Send`).
type NodeFuture = std::pin::Pin<Box<dyn Future<Output = ()>>>;

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

impl NodeHandle {
    /// Binds the sockets (errors come back here: a port in use, a bad
    /// interface) and starts the node on its own thread.
    ///
    /// For a process whose main thread only waits on the node (a requester,
    /// a CLI command), [`start_local`](Self::start_local) is cheaper: the node
    /// then runs on that thread and no request crosses threads.
    pub fn start(key: Keypair, opts: NodeOptions) -> io::Result<Self> {
        let (mut handle, node) = Self::build(key, opts)?;
        let thread = std::thread::Builder::new()
            .name("p2pa-node".into())
            // async_io::block_on: this thread runs the reactor itself (no hop
            // through async-io's helper thread on every socket event).
            .spawn(move || async_io::block_on(node()))?;
        handle.thread = Some(thread);
        Ok(handle)
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
        let listener = TcpListener::bind(opts.listen)?;
        let addr = listener.local_addr()?;
        opts.core.listen_port = addr.port();
        let udp = match &opts.multicast {
            Some(m) => Some(udp::open(m).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "multicast socket {}:{} on {}: {e}",
                        m.group, m.port, m.interface
                    ),
                )
            })?),
            None => None,
        };
        opts.core.multicast = udp.is_some();
        opts.core.beacon_counter_start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let id = key.node_id();
        let (inputs_tx, inputs_rx) = bounded(INPUT_QUEUE);
        let (events_tx, events_rx) = bounded(EVENT_QUEUE);
        let mdns = if opts.mdns {
            let iface = opts
                .multicast
                .map(|m| m.interface)
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            let (found_tx, found_rx) = bounded::<SocketAddr>(64);
            match mdns::start(id, addr.port(), iface, found_tx) {
                Ok(sd) => {
                    let fwd = inputs_tx.clone();
                    std::thread::Builder::new()
                        .name("p2pa-mdns-fwd".into())
                        .spawn(move || {
                            while let Ok(a) = found_rx.recv_blocking() {
                                if fwd.send_blocking(Input::Found(a)).is_err() {
                                    break;
                                }
                            }
                        })?;
                    Some(sd)
                }
                Err(e) => {
                    log::warn!("mDNS is off: {e}");
                    None
                }
            }
        } else {
            None
        };
        let tx = inputs_tx.clone();
        let node = move || -> NodeFuture {
            Box::pin(async move {
                let _mdns = mdns; // one instance for the node's lifetime
                let mut core =
                    Core::new(key, opts.core.clone(), Box::new(OsEntropy), Instant::now());
                if let Some(store) = &opts.models {
                    for (hash, _) in store.list().into_iter().rev() {
                        core.add_held_model(hash);
                    }
                }
                let ex = LocalExecutor::new();
                let shell = Shell {
                    core,
                    slots: None,
                    conns: BTreeMap::new(),
                    inputs: tx,
                    events: events_tx,
                    executor: opts.executor.clone(),
                    udp_target: opts.multicast.map(|m| SocketAddr::from((m.group, m.port))),
                    models: opts.models.clone(),
                    waiters: BTreeMap::new(),
                };
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

    /// Runs a task on some peer and waits for its outcome.
    pub async fn submit(&self, req: TaskRequest) -> Result<TaskOutcome, NodeStopped> {
        self.ask(|tx| Cmd::Submit(req, tx)).await
    }

    /// The peer table now.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeStopped> {
        self.ask(Cmd::Peers).await
    }

    /// Counters of refused input.
    pub async fn stats(&self) -> Result<Stats, NodeStopped> {
        self.ask(Cmd::Stats).await
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

    /// Says Goodbye to every peer, hands back unfinished work, and stops.
    pub async fn shutdown(mut self) {
        let _ = self.ask(Cmd::Shutdown).await;
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

/// One thread per worker slot, fed from a FIFO: a slot that finishes a job
/// takes the next one (prefetched by the core) without a wake-up in between.
/// The threads end when the shell (and so the queue's sender) goes away.
struct Slots {
    jobs: Sender<SlotJob>,
}

/// A job for a slot thread: id, kind, input, model.
type SlotJob = (JobId, TaskKind, Vec<u8>, Option<[u8; 32]>);

impl Slots {
    fn start(workers: u16, exec: Executor, done: Sender<Input>) -> Self {
        let depth = usize::from(workers).saturating_mul(2).max(2);
        let (tx, rx) = bounded::<SlotJob>(depth);
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let exec = exec.clone();
            let done = done.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("p2pa-slot-{i}"))
                .spawn(move || {
                    while let Ok((job, kind, input, model)) = rx.recv_blocking() {
                        let (status, out) = exec(kind, &input, model);
                        if done
                            .send_blocking(Input::JobDone(job, status, out))
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start worker slot {i}: {e}");
            }
        }
        Self { jobs: tx }
    }
}

struct Shell {
    core: Core,
    /// Worker slot threads, started with the first job that needs one.
    slots: Option<Slots>,
    conns: BTreeMap<ConnId, Sender<Outgoing>>,
    inputs: Sender<Input>,
    events: Sender<NodeEvent>,
    executor: Executor,
    udp_target: Option<SocketAddr>,
    /// Requests submitted through the handle, by task id.
    waiters: BTreeMap<u64, Sender<TaskOutcome>>,
    models: Option<crate::models::ModelStore>,
}

impl Shell {
    async fn run(
        mut self,
        ex: &LocalExecutor<'_>,
        inputs: Receiver<Input>,
        listener: TcpListener,
        udp: Option<UdpSocket>,
    ) -> io::Result<()> {
        let listener = Async::new(listener)?;
        let udp = match udp {
            Some(u) => Some(Arc::new(Async::new(u)?)),
            None => None,
        };
        // Accept loop.
        let tx = self.inputs.clone();
        ex.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((s, a)) => {
                        if tx.send(Input::Incoming(s, a)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        log::warn!("accept failed: {e}");
                        Timer::after(Duration::from_millis(100)).await;
                    }
                }
            }
        })
        .detach();
        // Beacon receive loop.
        if let Some(u) = udp.clone() {
            let tx = self.inputs.clone();
            ex.spawn(async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    match u.recv_from(&mut buf).await {
                        Ok((n, from)) => {
                            let data = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                            if tx.send(Input::Datagram(from, data)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            log::debug!("multicast receive failed: {e}");
                            Timer::after(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
            .detach();
        }
        let mut stopping: Option<Sender<()>> = None;
        // One timer, re-armed only when the core's deadline moves.
        let mut timer = Timer::never();
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = self.core.poll_timeout();
            if deadline != armed {
                match deadline {
                    Some(t) => timer.set_at(t),
                    None => timer = Timer::never(),
                }
                armed = deadline;
            }
            let fired = async {
                (&mut timer).await;
                None
            };
            let input = future::or(async { inputs.recv().await.ok() }, fired).await;
            if input.is_none() {
                armed = None; // a fired timer must be re-armed
            }
            let now = Instant::now();
            match input {
                Some(Input::Data(conn, data)) => {
                    self.feed(ex, udp.as_deref(), conn, &data).await;
                }
                Some(input) => self.handle(ex, now, input, &mut stopping),
                None => {}
            }
            if deadline.is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.drain(ex, udp.as_deref()).await;
            if let Some(done) = stopping.take() {
                // Let writers flush the Goodbyes, then stop.
                let flush = Instant::now();
                while !self.conns.is_empty() && flush.elapsed() < SHUTDOWN_FLUSH {
                    self.conns.retain(|_, tx| !tx.is_closed());
                    Timer::after(Duration::from_millis(10)).await;
                }
                Timer::after(Duration::from_millis(50)).await;
                let _ = done.send(()).await;
                return Ok(());
            }
        }
    }

    fn handle(
        &mut self,
        ex: &LocalExecutor<'_>,
        now: Instant,
        input: Input,
        stopping: &mut Option<Sender<()>>,
    ) {
        match input {
            Input::Datagram(from, data) => self.core.handle_datagram(now, from, &data),
            Input::Incoming(stream, addr) => match self.core.handle_incoming(now, addr) {
                Some(conn) => self.attach(ex, conn, stream),
                None => drop(stream),
            },
            Input::Connected(conn, stream) => {
                self.attach(ex, conn, stream);
                self.core.handle_connected(now, conn);
            }
            Input::ConnectFailed(conn, why) => self.core.handle_connect_failed(now, conn, &why),
            Input::Data(conn, data) => self.core.handle_stream_data(now, conn, &data),
            Input::Closed(conn, why) => {
                self.conns.remove(&conn);
                self.core.handle_closed(now, conn, &why);
            }
            Input::JobDone(job, status, output) => {
                self.core.handle_job_done(now, job, status, &output)
            }
            Input::Found(addr) => self.core.handle_found_addr(now, addr),
            Input::Cmd(Cmd::Submit(req, reply)) => {
                let id = self.core.submit(now, req);
                self.waiters.insert(id, reply);
            }
            Input::Cmd(Cmd::Peers(reply)) => {
                let _ = reply.try_send(self.core.peers(now));
            }
            Input::Cmd(Cmd::Stats(reply)) => {
                let _ = reply.try_send(self.core.stats().clone());
            }
            Input::Cmd(Cmd::ProvideModel(hash, bytes)) => self.core.provide_model(hash, bytes),
            Input::Cmd(Cmd::Shutdown(reply)) => {
                self.core.shutdown(now);
                *stopping = Some(reply);
            }
        }
    }

    /// Starts the reader and writer tasks of a connection.
    fn attach(&mut self, ex: &LocalExecutor<'_>, conn: ConnId, stream: Async<TcpStream>) {
        if let Err(e) = stream.get_ref().set_nodelay(true) {
            log::debug!("TCP_NODELAY failed: {e}");
        }
        let stream = Arc::new(stream);
        let (tx, rx) = bounded::<Outgoing>(SEND_QUEUE);
        self.conns.insert(conn, tx);
        let reader = stream.clone();
        let inputs = self.inputs.clone();
        ex.spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK];
            let why = loop {
                match (&*reader).read(&mut buf).await {
                    Ok(0) => break "closed by peer".to_owned(),
                    Ok(n) => {
                        let data = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                        if inputs.send(Input::Data(conn, data)).await.is_err() {
                            return;
                        }
                        // A short read drained the socket: wait for readiness
                        // instead of a read that would only say EAGAIN.
                        if n < buf.len() {
                            if let Err(e) = reader.readable().await {
                                break e.to_string();
                            }
                        }
                    }
                    Err(e) => break e.to_string(),
                }
            };
            let _ = inputs.send(Input::Closed(conn, why)).await;
        })
        .detach();
        ex.spawn(async move {
            let mut batch = Vec::with_capacity(4096);
            'outer: while let Ok(msg) = rx.recv().await {
                let mut close = false;
                match msg {
                    Outgoing::Bytes(b) => batch.extend_from_slice(&b),
                    Outgoing::Close => close = true,
                }
                while !close && batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(Outgoing::Bytes(b)) => batch.extend_from_slice(&b),
                        Ok(Outgoing::Close) => close = true,
                        Err(_) => break,
                    }
                }
                if !batch.is_empty() && (&*stream).write_all(&batch).await.is_err() {
                    break 'outer;
                }
                batch.clear();
                if close {
                    break;
                }
            }
            let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
            rx.close();
        })
        .detach();
    }

    /// Carries out the core's transmits and events until it has none left
    /// (an inline task's result makes more).
    /// Hands `data` from connection `conn` to the core [`FRAMES_PER_TURN`]
    /// frames at a time; after each turn the output goes to the writers and
    /// the executor runs them (and the caller's tasks) before the next turn.
    async fn feed(
        &mut self,
        ex: &LocalExecutor<'_>,
        udp: Option<&Async<UdpSocket>>,
        conn: ConnId,
        data: &[u8],
    ) {
        let mut rest = data;
        loop {
            let used = self
                .core
                .handle_stream_frames(Instant::now(), conn, rest, FRAMES_PER_TURN);
            rest = rest.get(used..).unwrap_or_default();
            if rest.is_empty() || used == 0 {
                return;
            }
            self.drain(ex, udp).await;
            future::yield_now().await;
        }
    }

    async fn drain(&mut self, ex: &LocalExecutor<'_>, udp: Option<&Async<UdpSocket>>) {
        for _ in 0..INLINE_ROUNDS {
            self.drain_once(ex, udp).await;
            if !self.core.has_pending_output() {
                break;
            }
        }
    }

    async fn drain_once(&mut self, ex: &LocalExecutor<'_>, udp: Option<&Async<UdpSocket>>) {
        while let Some(t) = self.core.poll_transmit() {
            match t {
                Transmit::Multicast(bytes) => {
                    if let (Some(u), Some(to)) = (udp, self.udp_target) {
                        if let Err(e) = u.send_to(&bytes, to).await {
                            log::debug!("beacon send to {to} failed: {e}");
                        }
                    }
                }
                Transmit::Connect { conn, addr } => {
                    let tx = self.inputs.clone();
                    ex.spawn(async move {
                        let input = match connect(addr).await {
                            Ok(s) => Input::Connected(conn, s),
                            Err(e) => Input::ConnectFailed(conn, e),
                        };
                        let _ = tx.send(input).await;
                    })
                    .detach();
                }
                Transmit::Send { conn, bytes } => {
                    let full = match self.conns.get(&conn) {
                        Some(tx) => matches!(
                            tx.try_send(Outgoing::Bytes(bytes)),
                            Err(TrySendError::Full(_))
                        ),
                        None => false,
                    };
                    if full {
                        log::warn!("connection {conn}: peer is not reading ({SEND_QUEUE} frames queued); closing it");
                        if let Some(tx) = self.conns.remove(&conn) {
                            tx.close();
                        }
                        self.core
                            .handle_closed(Instant::now(), conn, "send queue full");
                    }
                }
                Transmit::Close { conn } => {
                    if let Some(tx) = self.conns.get(&conn) {
                        let _ = tx.try_send(Outgoing::Close);
                    }
                }
            }
        }
        while let Some(e) = self.core.poll_event() {
            let app = match e {
                Event::PeerDiscovered { id, addr, via } => Some(NodeEvent::Discovered {
                    id,
                    addr,
                    via: via.name(),
                }),
                Event::PeerConnected { id, addr } => Some(NodeEvent::Connected { id, addr }),
                Event::PeerDisconnected { id, reason } => {
                    Some(NodeEvent::Disconnected { id, reason })
                }
                Event::Execute {
                    job,
                    kind,
                    input,
                    model,
                    ..
                } if runs_inline(kind, &input) => {
                    let (status, out) = (self.executor)(kind, &input, model);
                    self.core.handle_job_done(Instant::now(), job, status, &out);
                    Some(NodeEvent::TaskStarted { job, kind })
                }
                Event::Execute {
                    job,
                    kind,
                    input,
                    model,
                    ..
                } => {
                    let slots = self.slots.get_or_insert_with(|| {
                        Slots::start(
                            self.core.config().workers,
                            self.executor.clone(),
                            self.inputs.clone(),
                        )
                    });
                    // The core starts at most workers + prefetch jobs, so the
                    // queue (that size) has room; if it has not, say so.
                    if slots.jobs.try_send((job, kind, input, model)).is_err() {
                        self.core.handle_job_done(
                            Instant::now(),
                            job,
                            TaskStatus::Failed,
                            b"executor queue full",
                        );
                    }
                    Some(NodeEvent::TaskStarted { job, kind })
                }
                Event::Abandon { .. } => None,
                Event::ModelFetched { hash, bytes } => {
                    // Written before the jobs waiting for it start (they come
                    // later in this same queue).
                    match &self.models {
                        Some(store) => {
                            if let Err(e) = store.put(Some(hash), &bytes) {
                                log::error!("could not store a fetched model: {e}");
                            }
                        }
                        None => log::warn!("fetched a model but this node has no model store"),
                    }
                    None
                }
                Event::TaskDone(outcome) => {
                    if let Some(w) = self.waiters.remove(&outcome.task_id) {
                        let _ = w.try_send((*outcome).clone());
                    }
                    Some(NodeEvent::TaskDone(outcome))
                }
            };
            if let Some(app) = app {
                if let Err(TrySendError::Full(_)) = self.events.try_send(app) {
                    log::debug!("event queue full; an event was dropped");
                }
            }
        }
    }
}
