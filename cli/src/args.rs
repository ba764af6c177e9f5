//! The command line as clap parses it: the global options and the
//! commands, each command's own options in its module.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::net::NetArgs;
use crate::{batch, demo, engine, models, node, requester, verify};

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
    pub(crate) cmd: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    Model(models::ModelCmd),
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
