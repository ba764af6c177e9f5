//! The `p2pa` command line. One function per subcommand; no protocol logic
//! here: everything goes through `p2pa_node`.

/// `println!` that does not panic when stdout is gone (`p2pa node | head -1`,
/// a closed pipe): a node keeps serving its peers; the line is lost.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod batch;
mod config;
mod demo;
mod output;
mod tensors;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use p2pa_node::core::{PeerInfo, PeerState, TaskRequest, Trust};
use p2pa_node::identity;
use p2pa_node::io::{LocalNode, MulticastConfig, NodeEvent, NodeHandle, NodeOptions};
use p2pa_node::protocol::{Keypair, KindSet, NodeId, TaskKind, TaskStatus};

/// Exit codes, as documented in `--help`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const TASK_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NETWORK: u8 = 3;
}

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 a task failed, 2 usage or input error, 3 network error or no peers.

Configuration: flags win over P2PA_* environment variables (P2PA_DATA_DIR,
P2PA_MULTICAST_TTL, P2PA_WORKERS, ...), which win over <data-dir>/p2pa.toml
(keys: listen, bootstrap, workers, trust, allowlist, multicast_ttl,
multicast_port, multicast_group, no_mdns). RUST_LOG=debug shows protocol details.

Quick start on one machine:
  p2pa demo                         three nodes, discovery, a batch, a killed worker
On a LAN (each machine):
  p2pa node                         then, anywhere on the LAN:
  p2pa submit --kind echo --input hello";

#[derive(Debug, Parser)]
#[command(
    name = "p2pa",
    version,
    about = "Pool idle machines on your LAN for compute: signed, peer-to-peer, no server",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Where the node keeps its key (default: $XDG_DATA_HOME/p2pa or ~/.local/share/p2pa)
    #[arg(long, global = true, env = "P2PA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(flatten)]
    net: NetArgs,

    #[command(subcommand)]
    cmd: Command,
}

/// How beacons travel; shared by every command that talks to peers.
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// Multicast TTL: 1 reaches this link (LAN), 0 keeps every packet on this host
    #[arg(
        long,
        global = true,
        env = "P2PA_MULTICAST_TTL",
        default_value_t = 1,
        value_name = "N"
    )]
    pub multicast_ttl: u32,
    /// UDP port of the beacon group
    #[arg(long, global = true, env = "P2PA_MULTICAST_PORT", default_value_t = p2pa_node::io::udp::DEFAULT_PORT, value_name = "PORT")]
    pub multicast_port: u16,
    /// Beacon group (administratively scoped 239.255.0.0/16)
    #[arg(long, global = true, env = "P2PA_MULTICAST_GROUP", default_value_t = p2pa_node::io::udp::DEFAULT_GROUP, value_name = "IPV4")]
    pub multicast_group: Ipv4Addr,
    /// Do not advertise or browse `_p2pa._tcp.local` over mDNS
    #[arg(long, global = true, env = "P2PA_NO_MDNS")]
    pub no_mdns: bool,
    /// peers/submit/batch: sign with this machine's key (<data-dir>/identity.key,
    /// see `p2pa keygen` and `p2pa id`) instead of a fresh one, so workers running
    /// `--trust allowlist` with this id on their list accept the requests
    #[arg(long, global = true, env = "P2PA_USE_IDENTITY")]
    pub use_identity: bool,
}

impl NetArgs {
    /// TTL 0 means host-local: send and join on loopback, never on a LAN.
    fn host_local(&self) -> bool {
        self.multicast_ttl == 0
    }

    fn multicast(&self) -> MulticastConfig {
        MulticastConfig {
            group: self.multicast_group,
            port: self.multicast_port,
            interface: if self.host_local() {
                Ipv4Addr::LOCALHOST
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            ttl: self.multicast_ttl,
        }
    }

    fn mdns(&self) -> bool {
        !self.no_mdns && !self.host_local()
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make this machine's node key (in the data directory)
    Keygen {
        /// Replace an existing key (the node id changes)
        #[arg(long)]
        force: bool,
    },
    /// Print this machine's node id (short and full form)
    Id,
    /// Run a node: discover peers, keep sessions, run tasks for them
    Node(NodeArgs),
    /// Discover peers and list them
    Peers {
        /// How long to listen for peers, in milliseconds
        #[arg(long, default_value_t = 1000, value_name = "MS")]
        wait: u64,
        /// One JSON object per peer
        #[arg(long)]
        json: bool,
    },
    /// Run one task on a peer and print its result
    Submit(SubmitArgs),
    /// Run many tasks from a JSONL file over all peers; resumable
    Batch(batch::BatchArgs),
    /// Start a few local nodes, discover them, run a batch, kill a worker, summarize
    Demo(demo::DemoArgs),
    /// Manage the models this machine holds (content-addressed by SHA-256)
    #[command(subcommand)]
    Model(ModelCmd),
}

#[derive(Debug, Subcommand)]
enum ModelCmd {
    /// Copy an ONNX model into the store and print its hash (tasks name models by hash)
    Add {
        /// The .onnx file
        file: PathBuf,
    },
    /// List the models in the store
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TrustArg {
    /// Any node that completes the handshake
    Open,
    /// Only node ids listed in --allowlist (one full id per line, # comments)
    Allowlist,
}

#[derive(Debug, Args)]
struct NodeArgs {
    /// TCP address to listen on
    #[arg(long, env = "P2PA_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Peer to dial at start and keep dialing (repeatable), for networks multicast does not reach
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "P2PA_BOOTSTRAP",
        value_delimiter = ','
    )]
    bootstrap: Vec<SocketAddr>,
    /// Tasks run at once (default: one per core)
    #[arg(long, env = "P2PA_WORKERS", value_name = "N")]
    workers: Option<u16>,
    /// Who may connect
    #[arg(long, value_enum, default_value_t = TrustArg::Open, env = "P2PA_TRUST")]
    trust: TrustArg,
    /// File of allowed node ids (default: <data-dir>/allowlist)
    #[arg(long, value_name = "FILE", env = "P2PA_ALLOWLIST")]
    allowlist: Option<PathBuf>,
    /// Print JSON lines on stdout: first {"event":"listening",...}, then one per event
    #[arg(long)]
    json: bool,
    /// Largest total size of fetched models kept in <data-dir>/models
    #[arg(
        long,
        default_value_t = 256,
        value_name = "MIB",
        env = "P2PA_MODEL_CACHE_MB"
    )]
    model_cache_mb: u64,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Limits of a node (defaults suit a LAN of up to a few hundred nodes).
#[derive(Debug, Args)]
struct LimitArgs {
    /// Peers kept in the peer table
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_peers: usize,
    /// TCP connections at once
    #[arg(long, default_value_t = 128, value_name = "N")]
    max_conns: usize,
    /// Handshakes in flight at once
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_handshakes: usize,
    /// Drop a connection whose handshake takes longer (slow-loris guard)
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    handshake_timeout_ms: u64,
    /// A silent peer is marked slow after this
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    slow_after_ms: u64,
    /// A silent peer is declared dead (session closed, its tasks retried) after this
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    dead_after_ms: u64,
    /// Tasks queued beyond the running ones before offers are refused as busy
    #[arg(long, default_value_t = 16, value_name = "N")]
    queue: usize,
}

#[derive(Debug, Args)]
struct SubmitArgs {
    /// Task kind: echo, hash (SHA-256 hex), sleep (input: milliseconds), infer (needs --model)
    #[arg(long, value_parser = parse_kind)]
    kind: TaskKind,
    /// Model for infer: a hash from `p2pa model add`, or an .onnx file; workers
    /// without it fetch it from this requester
    #[arg(long, value_name = "HASH|FILE")]
    model: Option<String>,
    /// Input text; for infer, JSON: [x, …] (one row), [[…], …] (rows) or
    /// {"shape": [..], "f32": [..]}
    #[arg(
        long,
        conflicts_with = "input_file",
        required_unless_present = "input_file"
    )]
    input: Option<String>,
    /// Read the input from a file (any bytes)
    #[arg(long, value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// Send to this node only (its TCP address) instead of discovering one
    #[arg(long, value_name = "HOST:PORT")]
    peer: Option<SocketAddr>,
    /// Seconds for the whole task, retries included
    #[arg(long, default_value_t = 30, value_name = "S")]
    timeout: u64,
    /// Milliseconds to look for a worker before giving up
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    wait: u64,
    /// Print one JSON object: task_id, status, worker, output (UTF-8 text; binary
    /// output goes in output_hex instead), elapsed_ms, attempts, receipt
    #[arg(long)]
    json: bool,
}

pub(crate) fn parse_kind(s: &str) -> Result<TaskKind, String> {
    TaskKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = TaskKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown task kind `{s}` (known: {})", names.join(", "))
    })
}

/// An error for the user, with its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub msg: String,
}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            msg: msg.into(),
        }
    }
    pub fn network(msg: impl Into<String>) -> Self {
        Self {
            code: exit::NETWORK,
            msg: msg.into(),
        }
    }
    pub fn failed(msg: impl Into<String>) -> Self {
        Self {
            code: exit::TASK_FAILED,
            msg: msg.into(),
        }
    }
}

pub type CliResult = Result<u8, CliError>;

/// The OS random source, or a clear error when it does not work.
fn os_entropy() -> Result<p2pa_node::io::OsEntropy, CliError> {
    p2pa_node::io::OsEntropy::new().map_err(|e| CliError::failed(e.to_string()))
}

fn main() -> ExitCode {
    if let Err(e) = config::load_into_env() {
        eprintln!("error: {e}");
        return ExitCode::from(exit::USAGE);
    }
    let cli = Cli::parse();
    let json_logs = matches!(&cli.cmd, Command::Node(a) if a.json);
    output::init_logging(json_logs);
    let result = match cli.cmd {
        Command::Keygen { force } => cmd_keygen(&data_dir(cli.data_dir.as_ref()), force),
        Command::Id => cmd_id(&data_dir(cli.data_dir.as_ref())),
        Command::Node(ref a) => cmd_node(&cli, a),
        Command::Peers { wait, json } => {
            cmd_peers(&cli.net, &data_dir(cli.data_dir.as_ref()), wait, json)
        }
        Command::Submit(ref a) => cmd_submit(&cli.net, &data_dir(cli.data_dir.as_ref()), a),
        Command::Batch(ref a) => batch::run(&cli.net, &data_dir(cli.data_dir.as_ref()), a),
        Command::Demo(ref a) => demo::run(a),
        Command::Model(ref m) => cmd_model(&data_dir(cli.data_dir.as_ref()), m),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", e.msg);
            ExitCode::from(e.code)
        }
    }
}

pub(crate) fn data_dir(flag: Option<&PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d.clone();
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("p2pa")
}

fn cmd_keygen(dir: &std::path::Path, force: bool) -> CliResult {
    let key = identity::create(dir, &mut os_entropy()?, force)
        .map_err(|e| CliError::usage(e.to_string()))?;
    say!("{}", key.node_id());
    eprintln!("new key in {}", dir.join(identity::KEY_FILE).display());
    Ok(exit::OK)
}

fn cmd_id(dir: &std::path::Path) -> CliResult {
    let key = identity::load_or_create(dir, &mut os_entropy()?)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let id = key.node_id();
    say!("{}  {}", id.short(), id);
    Ok(exit::OK)
}

fn read_allowlist(path: &std::path::Path) -> Result<Vec<NodeId>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read allowlist {}: {e}", path.display())))?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bytes = p2pa_node::hex::parse_hex32(line).ok_or_else(|| {
            CliError::usage(format!(
                "{}:{}: expected a full node id (64 hex digits, as `p2pa id` prints)",
                path.display(),
                n + 1
            ))
        })?;
        ids.push(NodeId(bytes));
    }
    Ok(ids)
}

fn cmd_node(cli: &Cli, a: &NodeArgs) -> CliResult {
    let dir = data_dir(cli.data_dir.as_ref());
    let key = identity::load_or_create(&dir, &mut os_entropy()?)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let default_listen = if cli.net.host_local() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7421))
    };
    let mut opts = NodeOptions::new(a.listen.unwrap_or(default_listen));
    opts.multicast = Some(cli.net.multicast());
    opts.mdns = cli.net.mdns();
    opts.core.bootstrap = a.bootstrap.clone();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    opts.core.workers = a
        .workers
        .unwrap_or(u16::try_from(cores).unwrap_or(1))
        .max(1);
    let l = &a.limits;
    opts.core.max_peers = l.max_peers;
    opts.core.max_conns = l.max_conns;
    opts.core.max_handshakes = l.max_handshakes;
    opts.core.handshake_timeout = Duration::from_millis(l.handshake_timeout_ms);
    opts.core.slow_after = Duration::from_millis(l.slow_after_ms);
    opts.core.dead_after = Duration::from_millis(l.dead_after_ms.max(l.slow_after_ms));
    opts.core.queue_len = l.queue;
    opts.core.trust = match a.trust {
        TrustArg::Open => Trust::Open,
        TrustArg::Allowlist => {
            let path = a.allowlist.clone().unwrap_or_else(|| dir.join("allowlist"));
            Trust::Allowlist(read_allowlist(&path)?)
        }
    };
    let store = model_store(&dir, a.model_cache_mb);
    opts.core.model_cache_bytes = store.limit();
    opts.executor = p2pa_node::task::executor(Some(store.clone()));
    opts.models = Some(store);
    if p2pa_node::task::INFERENCE {
        opts.core.kinds = opts.core.kinds.with(TaskKind::Infer);
    }
    let (handle, mut node) = NodeHandle::start_local(key, opts)
        .map_err(|e| CliError::network(format!("cannot start the node: {e}")))?;
    let id = handle.id();
    if a.json {
        output::json_line(&serde_json::json!({
            "event": "listening", "addr": handle.local_addr().to_string(), "node_id": id.to_string(),
        }));
    } else {
        say!(
            "node {} listening on {} (id {})",
            id.short(),
            handle.local_addr(),
            id
        );
        say!("press Ctrl-C to stop");
    }
    let signals =
        async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
            .map_err(|e| CliError::network(format!("cannot watch signals: {e}")))?;
    // The node runs on this thread: a second thread waiting on signals would
    // contend with it for async-io's reactor (futex wake-ups on every event).
    node.block_on(async {
        // The signal wait is a task of its own: polled only when a signal
        // comes, not on every node event (each poll reads its pipe).
        let ex = async_executor::LocalExecutor::new();
        let mut signals = signals;
        let mut stop = ex.spawn(async move {
            use futures_lite::stream::StreamExt;
            let _ = signals.next().await;
        });
        ex.run(async {
            loop {
                let next_signal = async {
                    (&mut stop).await;
                    None
                };
                let next_event = async { handle.events().recv().await.ok() };
                match futures_lite::future::or(next_signal, next_event).await {
                    Some(ev) => output::print_event(&ev, a.json),
                    None => break,
                }
            }
        })
        .await;
        if !a.json {
            say!("stopping: saying goodbye to peers");
        }
        handle.shutdown().await;
    });
    Ok(exit::OK)
}

/// An in-process requester node with no worker slots: a fresh key, or this
/// machine's (from `data_dir`) with `--use-identity`. With `peer`, it dials
/// only that address and sends no beacons. It runs on the calling thread,
/// inside the returned [`LocalNode::block_on`].
pub fn requester(
    net: &NetArgs,
    peer: Option<SocketAddr>,
    data_dir: &std::path::Path,
) -> Result<(NodeHandle, LocalNode), CliError> {
    let key = if net.use_identity {
        let path = data_dir.join(identity::KEY_FILE);
        if !path.exists() {
            return Err(CliError::usage(format!(
                "--use-identity: no key at {} (make one with `p2pa keygen`; `p2pa id` prints the id to put on workers' allowlists)",
                path.display()
            )));
        }
        identity::load(&path).map_err(|e| CliError::usage(e.to_string()))?
    } else {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| CliError::network(format!("no OS randomness: {e}")))?;
        Keypair::from_seed(seed)
    };
    let listen_ip = if net.host_local() || peer.is_some_and(|p| p.ip().is_loopback()) {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let mut opts = NodeOptions::new(SocketAddr::new(listen_ip, 0));
    opts.core.kinds = KindSet::default();
    opts.core.workers = 0;
    match peer {
        Some(p) => {
            opts.multicast = None;
            opts.mdns = false;
            opts.core.bootstrap = vec![p];
        }
        None => {
            opts.multicast = Some(net.multicast());
            opts.mdns = net.mdns();
        }
    }
    NodeHandle::start_local(key, opts).map_err(|e| CliError::network(format!("cannot start: {e}")))
}

/// Waits until `min` connected peers run `kind` (any kind when `None`), or `wait` passes.
pub async fn wait_for_peers(
    h: &NodeHandle,
    kind: Option<TaskKind>,
    min: usize,
    wait: Duration,
) -> Vec<PeerInfo> {
    let start = Instant::now();
    loop {
        let peers = h.peers().await.unwrap_or_default();
        let ready: Vec<PeerInfo> = peers
            .into_iter()
            .filter(|p| {
                p.state != PeerState::Known && kind.is_none_or(|k| p.caps.kinds.contains(k))
            })
            .collect();
        if ready.len() >= min || start.elapsed() >= wait {
            return ready;
        }
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
}

fn cmd_peers(net: &NetArgs, dir: &std::path::Path, wait: u64, json: bool) -> CliResult {
    let (h, mut node) = requester(net, None, dir)?;
    node.block_on(async {
        let peers = wait_for_peers(&h, None, usize::MAX, Duration::from_millis(wait)).await;
        if json {
            for p in &peers {
                output::json_line(&output::peer_json(p));
            }
        } else if peers.is_empty() {
            eprintln!("no peers found in {wait} ms (is a node running? `p2pa node`; on another subnet use --bootstrap)");
        } else {
            output::print_peer_table(&peers);
        }
        h.shutdown().await;
        if peers.is_empty() {
            Err(CliError::network("no peers found"))
        } else {
            Ok(exit::OK)
        }
    })
}

fn cmd_submit(net: &NetArgs, data_dir: &std::path::Path, a: &SubmitArgs) -> CliResult {
    let mut input = match (&a.input, &a.input_file) {
        (Some(t), _) => t.clone().into_bytes(),
        (None, Some(p)) => std::fs::read(p)
            .map_err(|e| CliError::usage(format!("cannot read input file {}: {e}", p.display())))?,
        (None, None) => return Err(CliError::usage("give --input TEXT or --input-file PATH")),
    };
    let model = match (&a.model, a.kind) {
        (Some(m), _) => Some(load_model(data_dir, m)?),
        (None, TaskKind::Infer) => {
            return Err(CliError::usage("an infer task needs --model HASH|FILE"))
        }
        (None, _) => None,
    };
    if a.kind == TaskKind::Infer {
        let v: serde_json::Value = serde_json::from_slice(&input).map_err(|e| {
            CliError::usage(format!(
                "infer input must be JSON (numbers, rows, or a tensor object): {e}"
            ))
        })?;
        input = tensors::from_json(&v).map_err(|e| CliError::usage(format!("infer input: {e}")))?;
    }
    let (h, mut node) = requester(net, a.peer, data_dir)?;
    node.block_on(async {
        let model_hash = provide(&h, model).await?;
        let result = submit_one(&h, a, input, model_hash).await;
        h.shutdown().await;
        result
    })
}

/// Serves `model` (if any) to workers from the requester `h`; returns its hash.
pub async fn provide(h: &NodeHandle, model: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, CliError> {
    match model {
        Some(bytes) => h
            .provide_model(bytes)
            .await
            .map(Some)
            .map_err(|e| CliError::network(e.to_string())),
        None => Ok(None),
    }
}

fn model_store(dir: &std::path::Path, mib: u64) -> p2pa_node::models::ModelStore {
    p2pa_node::models::ModelStore::new(dir.join("models"), mib.saturating_mul(1024 * 1024))
}

/// A model's bytes, from the store (by hash) or from a file.
pub fn load_model(data_dir: &std::path::Path, spec: &str) -> Result<Vec<u8>, CliError> {
    if let Some(hash) = p2pa_node::hex::parse_hex32(spec) {
        return model_store(data_dir, models_limit())
            .read(&hash)
            .map_err(|e| CliError::usage(format!("{e}; add it with `p2pa model add FILE`")));
    }
    std::fs::read(spec).map_err(|e| {
        CliError::usage(format!(
            "cannot read model {spec}: {e} (give a file or a hash from `p2pa model list`)"
        ))
    })
}

fn cmd_model(dir: &std::path::Path, m: &ModelCmd) -> CliResult {
    let store = model_store(dir, models_limit());
    match m {
        ModelCmd::Add { file } => {
            let hash = store
                .add_file(file)
                .map_err(|e| CliError::usage(e.to_string()))?;
            say!("{}", p2pa_node::hex::hex(&hash));
            eprintln!("stored in {}", store.path(&hash).display());
        }
        ModelCmd::List => {
            for (hash, len) in store.list() {
                say!("{}  {len} bytes", p2pa_node::hex::hex(&hash));
            }
        }
    }
    Ok(exit::OK)
}

fn models_limit() -> u64 {
    std::env::var("P2PA_MODEL_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

async fn submit_one(
    h: &NodeHandle,
    a: &SubmitArgs,
    input: Vec<u8>,
    model: Option<[u8; 32]>,
) -> CliResult {
    let peers = wait_for_peers(h, Some(a.kind), 1, Duration::from_millis(a.wait)).await;
    if peers.is_empty() {
        let hint = match a.peer {
            Some(p) => format!("could not reach a node at {p} that runs `{}`", a.kind),
            None => format!(
                "no peers found that run `{}` within {} ms; start one with `p2pa node`, or pass --peer HOST:PORT",
                a.kind, a.wait
            ),
        };
        return Err(CliError::network(hint));
    }
    let req = TaskRequest {
        kind: a.kind,
        input,
        model,
        timeout: Duration::from_secs(a.timeout),
        peer: None,
    };
    let outcome = h
        .submit(req)
        .await
        .map_err(|e| CliError::network(e.to_string()))?;
    let infer = a.kind == TaskKind::Infer;
    if a.json {
        output::json_line(&output::outcome_json(&outcome, infer));
    } else {
        output::print_outcome(&outcome, infer);
    }
    Ok(if outcome.status == TaskStatus::Completed {
        exit::OK
    } else {
        exit::TASK_FAILED
    })
}

/// The name of a node event, as the `"event"` field of `--json` output.
pub fn event_name(ev: &NodeEvent) -> &'static str {
    match ev {
        NodeEvent::Discovered { .. } => "discovered",
        NodeEvent::Connected { .. } => "connected",
        NodeEvent::Disconnected { .. } => "disconnected",
        NodeEvent::TaskStarted { .. } => "task_started",
        NodeEvent::TaskDone(_) => "task_done",
    }
}
