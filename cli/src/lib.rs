//! The `p2pa` command line. One function per subcommand; no protocol logic
//! here: everything goes through `p2pa_node`.
//!
//! A library as well as the binary (`src/main.rs` calls [`main`]): the
//! Python package (`python/`) is a requester like `p2pa submit` and
//! `p2pa batch`, and uses the same parts so that its checks, messages and
//! journal are the CLI's: [`requester`], [`batch`], [`journal`],
//! [`models`], [`tensors`], [`output`], [`verify`].

/// `println!` that does not panic when stdout is gone (`p2pa node | head -1`,
/// a closed pipe): a node keeps serving its peers; the line is lost.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod batch;
mod config;
mod demo;
mod doctor;
pub mod engine;
mod idle;
mod infer_child;
pub mod inputs;
pub mod journal;
mod metrics;
pub mod models;
mod node;
#[cfg(feature = "npy")]
mod npy;
pub mod output;
pub mod requester;
mod resolve;
mod status;
mod systemd;
pub mod tensors;
mod units;
pub mod verify;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use p2pa_node::identity;
use p2pa_node::io::{MulticastConfig, NodeEvent};
use p2pa_node::protocol::TaskKind;

pub use models::load as load_model;
pub use requester::{provide, requester};

/// Exit codes, as documented in `--help`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const TASK_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NETWORK: u8 = 3;
}

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 a task failed (or a receipt did not verify), 2 usage or input error,
3 network error or no peers.

Configuration: flags win over P2PA_* environment variables (P2PA_DATA_DIR,
P2PA_MULTICAST_TTL, P2PA_WORKERS, ...), which win over <data-dir>/p2pa.toml
(keys: listen, bootstrap, workers, trust, allowlist, multicast_ttl,
multicast_port, multicast_group, interface, no_mdns). RUST_LOG=debug shows protocol details.

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
pub struct Cli {
    /// Where the node keeps its key (default: $XDG_DATA_HOME/p2pa or ~/.local/share/p2pa)
    #[arg(
        long,
        global = true,
        env = "P2PA_DATA_DIR",
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub data_dir: Option<PathBuf>,

    #[command(flatten)]
    pub net: NetArgs,

    #[command(subcommand)]
    cmd: Command,
}

/// How beacons travel; shared by every command that talks to peers.
#[derive(Debug, Clone, Args)]
#[command(
    next_help_heading = "Network options (node, peers, submit, batch; the demo and the local commands ignore them)"
)]
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
    /// Join and send beacons on the interface with this IPv4 address (default:
    /// the kernel's choice; with no route for the group, as on a switch-only
    /// LAN without a default route, every interface)
    #[arg(long, global = true, env = "P2PA_INTERFACE", value_name = "IPV4")]
    pub interface: Option<Ipv4Addr>,
    /// Do not advertise or browse `_p2pa._tcp.local` over mDNS
    #[arg(long, global = true, env = "P2PA_NO_MDNS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_mdns: bool,
    /// peers/submit/batch: sign with this machine's key (<data-dir>/identity.key,
    /// see `p2pa keygen` and `p2pa id`) instead of a fresh one, so workers running
    /// `--trust allowlist` with this id on their list accept the requests
    #[arg(long, global = true, env = "P2PA_USE_IDENTITY", value_parser = clap::builder::BoolishValueParser::new())]
    pub use_identity: bool,
    /// The network's shared key (64 hex digits in a file; make one with
    /// `p2pa keygen --network FILE` and copy it to every machine): nodes
    /// without it complete no handshake with this one
    #[arg(long, global = true, env = "P2PA_NETWORK_KEY", value_name = "FILE")]
    pub network_key: Option<PathBuf>,
}

impl NetArgs {
    /// TTL 0 means host-local: send and join on loopback, never on a LAN.
    pub fn host_local(&self) -> bool {
        self.multicast_ttl == 0
    }

    pub fn multicast(&self) -> MulticastConfig {
        MulticastConfig {
            group: self.multicast_group,
            port: self.multicast_port,
            interface: if self.host_local() {
                Ipv4Addr::LOCALHOST
            } else {
                self.interface.unwrap_or(Ipv4Addr::UNSPECIFIED)
            },
            ttl: self.multicast_ttl,
        }
    }

    pub fn mdns(&self) -> bool {
        !self.no_mdns && !self.host_local()
    }

    /// The network key from `--network-key`, if given.
    pub fn network_key(&self) -> Result<Option<[u8; 32]>, CliError> {
        self.network_key
            .as_deref()
            .map(identity::load_network_key)
            .transpose()
            .map_err(|e| CliError::usage(e.to_string()))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make this machine's node key (in the data directory)
    Keygen {
        /// Replace an existing key (the node id changes)
        #[arg(long)]
        force: bool,
        /// Make a network key in FILE instead (32 random bytes as hex, owner
        /// only): give it to every node of the network with --network-key
        #[arg(long, value_name = "FILE")]
        network: Option<PathBuf>,
    },
    /// Print this machine's node id (short and full form)
    Id,
    /// Run a node: discover peers, keep sessions, run tasks for them
    Node(node::NodeArgs),
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
    Submit(requester::SubmitArgs),
    /// Run many tasks from a JSONL file over all peers; resumable
    Batch(batch::BatchArgs),
    /// Ask the node running with this data directory what it is doing
    /// (its control socket, <data-dir>/p2pa.sock, owner only)
    Status {
        /// One JSON object
        #[arg(long)]
        json: bool,
    },
    /// Pause the node running with this data directory: it keeps its
    /// sessions and finishes what it runs, but takes no new tasks and
    /// advertises none (requesters go elsewhere) until `p2pa resume`
    Pause {
        /// The node's status after the change, one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Resume a node paused with `p2pa pause`
    Resume {
        /// The node's status after the change, one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Check what makes discovery fail here (multicast route, firewall, a
    /// key shared with another machine, clock) and say how to fix it
    Doctor,
    /// Check the workers' receipts in a batch journal or `submit --json` output, offline
    Verify(verify::VerifyArgs),
    /// Start a few local nodes, discover them, run a batch, kill a worker, summarize
    Demo(demo::DemoArgs),
    /// Manage the models this machine holds (content-addressed by SHA-256)
    #[command(subcommand)]
    Model(ModelCmd),
    /// Runs models for a node in a separate process (started by `p2pa node`)
    #[command(hide = true)]
    InferChild {
        #[arg(long)]
        models: PathBuf,
        #[arg(long)]
        memory_mb: u64,
        #[arg(long, default_value_t = p2pa_node::task::MAX_OUTPUT_DEFAULT)]
        max_output_bytes: usize,
        #[arg(long, default_value_t = 0)]
        nice: u8,
        #[command(flatten)]
        engine: engine::EngineArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Copy an ONNX model into the store and print its hash (tasks name models by hash)
    Add {
        /// The .onnx file
        file: PathBuf,
    },
    /// List the models in the store
    List,
    /// Show a model's inputs: names, dtypes and shapes (N: any size)
    Info {
        /// A hash from `p2pa model list`, or an .onnx file
        #[arg(value_name = "HASH|FILE")]
        model: String,
    },
    /// Run a model here, without the network (what a worker would compute),
    /// and print the outputs and the time per inference
    Run {
        /// A hash from `p2pa model list`, or an .onnx file
        #[arg(value_name = "HASH|FILE")]
        model: String,
        /// Input tensors: .npy (one input), .npz (named inputs) or .json
        #[arg(long, value_name = "PATH")]
        input_file: PathBuf,
        /// Write each output as DIR/<output name>.npy instead of printing JSON
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Run it this many times and report the median time
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: u32,
        /// Print one JSON object (engine, engine_version, first_ms,
        /// median_ms, repeat) on stdout instead of the outputs
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: engine::EngineArgs,
    },
}

/// `HOST:PORT` with HOST a name or an address; names resolve now (IPv4
/// first), once, when the command starts.
/// `HOST:PORT` as an address (a name resolves, IPv4 first).
pub fn parse_host_port(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let addrs: Vec<std::net::SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{s}` (expected HOST:PORT): {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

/// A task kind by name, or the list of known ones.
pub fn parse_kind(s: &str) -> Result<TaskKind, String> {
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
pub fn os_entropy() -> Result<p2pa_node::io::OsEntropy, CliError> {
    p2pa_node::io::OsEntropy::new().map_err(|e| CliError::failed(e.to_string()))
}

/// Commands that talk to no peer: their `--help` shows their own options
/// (and `--data-dir` where they use it), not the network options. (clap
/// copies every global option into every command's help.)
const LOCAL_COMMANDS: [&str; 6] = ["keygen", "id", "status", "verify", "model", "demo"];
/// The local commands that read the data directory.
const DATA_DIR_COMMANDS: [&str; 4] = ["keygen", "id", "status", "model"];

/// Global options that take a value (to find the command after them).
const GLOBAL_VALUES: [&str; 5] = [
    "--data-dir",
    "--multicast-ttl",
    "--multicast-port",
    "--multicast-group",
    "--interface",
];

/// The words of `args` that are neither options nor a global option's
/// value, with where they are.
fn words(args: &[String]) -> Vec<(usize, &String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if !a.starts_with('-') {
            out.push((i, a));
        }
        i += if GLOBAL_VALUES.contains(&a.as_str()) {
            2
        } else {
            1
        };
    }
    out
}

/// The help of a local command when the arguments ask for it, built from
/// that command alone.
fn local_help(args: &[String]) -> Option<String> {
    use clap::CommandFactory;
    // `p2pa help demo` asks what `p2pa demo --help` does.
    let words = words(args);
    if let Some(&(at, _)) = words.first().filter(|(_, w)| *w == "help") {
        let mut asked: Vec<String> = args.iter().skip(at + 1).cloned().collect();
        if asked.is_empty() {
            return None;
        }
        asked.push("--help".into());
        return local_help(&asked);
    }
    if !args.iter().any(|a| a == "-h" || a == "--help") {
        return None;
    }
    let mut cmd = Cli::command();
    let mut path: Vec<String> = Vec::new();
    for (_, a) in words {
        match cmd.find_subcommand(a) {
            Some(sub) => {
                let sub = sub.clone();
                path.push(a.clone());
                cmd = sub;
            }
            None => break,
        }
    }
    let first = path.first()?;
    if !LOCAL_COMMANDS.contains(&first.as_str()) {
        return None;
    }
    let mut cmd = cmd.bin_name(format!("p2pa {}", path.join(" ")));
    if DATA_DIR_COMMANDS.contains(&first.as_str()) {
        let root = Cli::command();
        let data_dir = root
            .get_arguments()
            .find(|a| a.get_id() == "data_dir")
            .cloned();
        if let Some(data_dir) = data_dir {
            cmd = cmd.arg(data_dir.global(false));
        }
    }
    Some(cmd.render_help().to_string())
}

/// The `p2pa` binary: parses the command line and runs its command.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(help) = local_help(&args) {
        say!("{}", help.trim_end());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = config::load_into_env() {
        // A broken config file must not hide the help that explains it.
        let asks_help = std::env::args()
            .skip(1)
            .any(|a| matches!(a.as_str(), "-h" | "--help" | "-V" | "--version" | "help"));
        if !asks_help {
            eprintln!("error: {e}");
            return ExitCode::from(exit::USAGE);
        }
        eprintln!("warning: {e} (ignored for --help)");
    }
    let cli = Cli::parse();
    let json_logs = matches!(&cli.cmd, Command::Node(a) if a.json);
    output::init_logging(json_logs);
    let result = match cli.cmd {
        Command::Keygen {
            force,
            network: Some(file),
        } => cmd_keygen_network(&file, force),
        Command::Keygen { force, .. } => cmd_keygen(&data_dir(cli.data_dir.as_ref()), force),
        Command::Id => cmd_id(&data_dir(cli.data_dir.as_ref())),
        Command::Node(ref a) => node::cmd_node(&cli, a),
        Command::Peers { wait, json } => {
            requester::cmd_peers(&cli.net, &data_dir(cli.data_dir.as_ref()), wait, json)
        }
        Command::Submit(ref a) => {
            requester::cmd_submit(&cli.net, &data_dir(cli.data_dir.as_ref()), a)
        }
        Command::Batch(ref a) => batch::run(&cli.net, &data_dir(cli.data_dir.as_ref()), a),
        Command::Demo(ref a) => demo::run(a),
        Command::Verify(ref a) => verify::cmd_verify(&a.file),
        Command::Doctor => doctor::cmd_doctor(&cli.net, &data_dir(cli.data_dir.as_ref())),
        Command::Status { json } => status::cmd_status(&data_dir(cli.data_dir.as_ref()), json),
        Command::Pause { json } => status::cmd_pause(&data_dir(cli.data_dir.as_ref()), true, json),
        Command::Resume { json } => {
            status::cmd_pause(&data_dir(cli.data_dir.as_ref()), false, json)
        }
        Command::Model(ref m) => models::cmd_model(&data_dir(cli.data_dir.as_ref()), m),
        Command::InferChild {
            ref models,
            memory_mb,
            max_output_bytes,
            nice,
            ref engine,
        } => infer_child::cmd_infer_child(
            models,
            memory_mb,
            max_output_bytes,
            nice,
            &engine.options(),
        ),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", e.msg);
            ExitCode::from(e.code)
        }
    }
}

/// The data directory: `flag`, else `$XDG_DATA_HOME/p2pa`, else `~/.local/share/p2pa`.
pub fn data_dir(flag: Option<&PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d.clone();
    }
    // An empty XDG_DATA_HOME counts as unset (the spec says so), not as ".".
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
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

fn cmd_keygen_network(file: &std::path::Path, force: bool) -> CliResult {
    identity::create_network_key(file, &mut os_entropy()?, force)
        .map_err(|e| CliError::usage(e.to_string()))?;
    eprintln!(
        "new network key in {}: copy it to every machine of this network and run their nodes, \
         and `p2pa submit`/`batch`, with --network-key {}",
        file.display(),
        file.display()
    );
    Ok(exit::OK)
}

fn cmd_id(dir: &std::path::Path) -> CliResult {
    let path = dir.join(identity::KEY_FILE);
    if !path.exists() {
        return Err(CliError::usage(format!(
            "no key at {} yet: make one with `p2pa keygen` (or start `p2pa node`, which makes it)",
            path.display()
        )));
    }
    let key = identity::load(&path).map_err(|e| CliError::usage(e.to_string()))?;
    let id = key.node_id();
    say!("{}  {}", id.short(), id);
    Ok(exit::OK)
}

/// The name of a node event, as the `"event"` field of `--json` output.
pub fn event_name(ev: &NodeEvent) -> &'static str {
    match ev {
        NodeEvent::Discovered { .. } => "discovered",
        NodeEvent::Connected { .. } => "connected",
        NodeEvent::Disconnected { .. } => "disconnected",
        NodeEvent::TaskStarted { .. } => "task_started",
        NodeEvent::TaskFinished { .. } => "task_done",
        NodeEvent::TaskDone(_) => "task_result",
        NodeEvent::DialFailed { .. } => "dial_failed",
    }
}
