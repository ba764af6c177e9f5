//! The `p2pa` command line. One function per subcommand; no protocol logic
//! here: everything goes through `p2pa_node`.
//!
//! A library as well as the binary (`src/main.rs` calls [`main`]): the
//! Python package (`python/`) is a requester like `p2pa submit` and
//! `p2pa batch`, and uses the same parts so that its checks, messages and
//! journal are the CLI's: [`requester`](mod@requester), [`batch`], [`journal`],
//! [`models`], [`tensors`], [`output`], [`verify`].

/// `println!` that does not panic when stdout is gone (`p2pa node | head -1`,
/// a closed pipe): a node keeps serving its peers; the line is lost.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod args;
pub mod batch;
mod config;
mod demo;
mod doctor;
pub mod engine;
mod error;
mod help;
mod idle;
mod infer_child;
pub mod inputs;
pub mod journal;
mod keys;
mod metrics;
pub mod models;
mod net;
mod node;
#[cfg(feature = "npy")]
mod npy;
pub mod output;
mod parse;
pub mod requester;
mod resolve;
mod status;
mod systemd;
pub mod tensors;
mod units;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use p2pa_node::io::NodeEvent;

use args::{Cli, Command};
use help::local_help;
use keys::{cmd_id, cmd_keygen, cmd_keygen_network};

pub use error::{exit, CliError, CliResult};
pub use keys::os_entropy;
pub use models::{load as load_model, ModelCmd};
pub use net::{Cipher, NetArgs};
pub use parse::{parse_host_port, parse_kind};
pub use requester::{provide, requester};

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
        Command::Node(ref a) => node::cmd_node(cli.data_dir.as_ref(), &cli.net, a),
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
