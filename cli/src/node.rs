//! `p2pa node`: run a node on this machine until Ctrl-C. Every default comes
//! from `p2pa_node::core::Config::default()`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use p2pa_node::core::{Config, Trust, DEFAULT_MODEL_CACHE_BYTES, DEFAULT_TCP_PORT};
use p2pa_node::identity;
use p2pa_node::io::{LocalNode, NodeEvent, NodeHandle, NodeOptions};
use p2pa_node::protocol::{NodeId, TaskKind};

use crate::{data_dir, exit, os_entropy, output, CliError, CliResult, NetArgs};

use crate::units::MIB;

/// A default of [`Config`], in milliseconds (for flags given in ms).
fn default_ms(pick: fn(&Config) -> Duration) -> u64 {
    u64::try_from(pick(&Config::default()).as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrustArg {
    /// Any node that completes the handshake
    Open,
    /// Only node ids listed in --allowlist (one full id per line, # comments)
    Allowlist,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TCP address to listen on [default: 0.0.0.0:7421; 127.0.0.1:any with --multicast-ttl 0]
    #[arg(long, env = "P2PA_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Peer to dial at start and keep dialing (repeatable), for networks
    /// multicast does not reach; a host name resolves again every 30 s
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "P2PA_BOOTSTRAP",
        value_delimiter = ',',
        value_parser = check_host_port
    )]
    bootstrap: Vec<String>,
    /// Tasks run at once (default: one per core; at least 1)
    #[arg(long, env = "P2PA_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Who may connect
    #[arg(long, value_enum, default_value_t = TrustArg::Open, env = "P2PA_TRUST")]
    trust: TrustArg,
    /// File of allowed node ids (default: <data-dir>/allowlist)
    #[arg(long, value_name = "FILE", env = "P2PA_ALLOWLIST")]
    allowlist: Option<PathBuf>,
    /// Leave the models this node holds out of its beacons (which travel in
    /// the clear); requesters still learn them inside encrypted sessions
    #[arg(long, env = "P2PA_QUIET_BEACONS", value_parser = clap::builder::BoolishValueParser::new())]
    quiet_beacons: bool,
    /// Print JSON lines on stdout: first {"event":"listening",...}, then one per event
    #[arg(long)]
    pub json: bool,
    /// Largest total size of fetched models kept in <data-dir>/models
    #[arg(
        long,
        default_value_t = DEFAULT_MODEL_CACHE_BYTES / MIB,
        value_name = "MIB",
        env = "P2PA_MODEL_CACHE_MB"
    )]
    model_cache_mb: u64,
    /// Memory (address space) an inference process may use; a model that
    /// asks for more fails its task, and the node goes on
    #[arg(
        long,
        default_value_t = DEFAULT_CHILD_MEMORY_MIB,
        value_name = "MIB",
        env = "P2PA_INFER_MEMORY_MB"
    )]
    infer_memory_mb: u64,
    /// Niceness (0-19) of the worker slots and inference processes: the
    /// machine's other programs come first (0 leaves them at the node's)
    #[arg(
        long,
        default_value_t = 10,
        value_name = "N",
        env = "P2PA_NICE",
        value_parser = clap::value_parser!(u8).range(0..=19)
    )]
    nice: u8,
    /// The share of the whole machine, in percent, the node's inference
    /// processes may use together (50 on four cores: two cores' worth).
    /// They are paused and resumed (SIGSTOP/SIGCONT) to keep to it; Linux
    #[arg(
        long,
        value_name = "PERCENT",
        env = "P2PA_MAX_CPU_PERCENT",
        value_parser = clap::value_parser!(u8).range(1..=100)
    )]
    max_cpu_percent: Option<u8>,
    /// Take tasks only while the rest of the machine is idle (its other
    /// programs use less than --idle-threshold of it) and, where it has a
    /// mains supply, on mains: otherwise pause (as `p2pa pause`: sessions
    /// kept, what runs finishes, what waits is handed back)
    #[arg(long, env = "P2PA_ONLY_WHEN_IDLE")]
    only_when_idle: bool,
    /// With --only-when-idle: the share of the whole machine, in percent,
    /// its other programs may use while the node works
    #[arg(long, default_value_t = 25, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    idle_threshold: u8,
    /// With --only-when-idle: seconds the machine must be idle before the
    /// node takes tasks again
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    idle_wait: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (OpenMetrics text:
    /// peers, slots, queue, tasks and their durations, bytes, refusals).
    /// Off by default; 127.0.0.1:9464 keeps them on this machine
    #[arg(long, value_name = "ADDR", env = "P2PA_METRICS")]
    metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    engine: crate::engine::EngineArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Default of `--infer-memory-mb`.
const DEFAULT_CHILD_MEMORY_MIB: u64 = 2048;

/// Limits of a node (defaults suit a LAN of up to a few hundred nodes).
#[derive(Debug, Args)]
struct LimitArgs {
    /// Peers kept in the peer table
    #[arg(long, default_value_t = Config::default().max_peers, value_name = "N")]
    max_peers: usize,
    /// TCP connections at once
    #[arg(long, default_value_t = Config::default().max_conns, value_name = "N")]
    max_conns: usize,
    /// Handshakes in flight at once
    #[arg(long, default_value_t = Config::default().max_handshakes, value_name = "N")]
    max_handshakes: usize,
    /// Sessions with peers at one IP address
    #[arg(long, default_value_t = Config::default().max_sessions_per_ip, value_name = "N")]
    max_sessions_per_ip: usize,
    /// Sessions with requesters (peers that run no task kind)
    #[arg(long, default_value_t = Config::default().max_requester_sessions, value_name = "N")]
    max_requester_sessions: usize,
    /// Drop a connection whose handshake takes longer (slow-loris guard)
    #[arg(long, default_value_t = default_ms(|c| c.handshake_timeout), value_name = "MS")]
    handshake_timeout_ms: u64,
    /// A silent peer is marked slow after this
    #[arg(long, default_value_t = default_ms(|c| c.slow_after), value_name = "MS")]
    slow_after_ms: u64,
    /// A silent peer is declared dead (session closed, its tasks retried) after this
    #[arg(long, default_value_t = default_ms(|c| c.dead_after), value_name = "MS")]
    dead_after_ms: u64,
    /// Tasks queued beyond the running ones before offers are refused as busy
    #[arg(long, default_value_t = Config::default().queue_len, value_name = "N")]
    queue: usize,
    /// Longest task deadline accepted from a requester (longer offers are refused)
    #[arg(long, default_value_t = Config::default().max_task_deadline.as_secs(), value_name = "S")]
    max_task_deadline: u64,
    /// Largest task input or output taken or returned (beyond 64 KiB they
    /// travel as blobs)
    #[arg(long, default_value_t = Config::default().max_tensor_bytes / MIB, value_name = "MIB")]
    max_tensor_mb: u64,
    /// Task inputs held ahead of running them, all requesters together (one
    /// input always); the next arrive while the current ones run
    #[arg(long, default_value_t = Config::default().input_buffer_bytes / MIB, value_name = "MIB")]
    input_buffer_mb: u64,
    /// Task outputs held until their requesters fetch them; past it, the
    /// next jobs wait
    #[arg(long, default_value_t = Config::default().output_buffer_bytes / MIB, value_name = "MIB")]
    output_buffer_mb: u64,
    /// Floor rate of a task input or output in transfer, judged every few
    /// seconds: an input fetched slower is given up (its task fails), an
    /// output fetched slower is dropped; 0 for none
    #[arg(long, default_value_t = Config::default().min_transfer_rate / 1024, value_name = "KIB_PER_S")]
    min_transfer_kib: u64,
}

impl LimitArgs {
    fn apply(&self, c: &mut Config) {
        c.max_peers = self.max_peers;
        c.max_conns = self.max_conns;
        c.max_handshakes = self.max_handshakes;
        c.max_sessions_per_ip = self.max_sessions_per_ip;
        c.max_requester_sessions = self.max_requester_sessions;
        c.handshake_timeout = Duration::from_millis(self.handshake_timeout_ms);
        c.slow_after = Duration::from_millis(self.slow_after_ms);
        c.dead_after = Duration::from_millis(self.dead_after_ms.max(self.slow_after_ms));
        c.queue_len = self.queue;
        c.max_task_deadline = Duration::from_secs(self.max_task_deadline);
        c.max_tensor_bytes = self.max_tensor_mb.saturating_mul(MIB);
        c.input_buffer_bytes = self.input_buffer_mb.saturating_mul(MIB);
        c.output_buffer_bytes = self.output_buffer_mb.saturating_mul(MIB);
        c.min_transfer_rate = self.min_transfer_kib.saturating_mul(1024);
    }
}

fn read_allowlist(path: &Path) -> Result<Vec<NodeId>, CliError> {
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

/// The node's options from the flags, and its engine's line for the start.
fn options(
    net: &NetArgs,
    a: &NodeArgs,
    dir: &Path,
) -> Result<(NodeOptions, Option<String>), CliError> {
    let default_listen = if net.host_local() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_TCP_PORT))
    };
    let mut opts = NodeOptions::new(a.listen.unwrap_or(default_listen));
    opts.multicast = Some(net.multicast());
    opts.mdns = net.mdns();
    opts.core.bootstrap = a
        .bootstrap
        .iter()
        .map(|b| crate::parse_host_port(b))
        .collect::<Result<_, _>>()
        .map_err(CliError::usage)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    opts.core.workers = a
        .workers
        .unwrap_or(u16::try_from(cores).unwrap_or(1))
        .max(1);
    a.limits.apply(&mut opts.core);
    opts.core.network_key = net.network_key()?;
    opts.core.aes_gcm = net.aes_gcm();
    opts.core.quiet_beacons = a.quiet_beacons;
    opts.core.trust = match a.trust {
        TrustArg::Open => Trust::Open,
        TrustArg::Allowlist => {
            let path = a.allowlist.clone().unwrap_or_else(|| dir.join("allowlist"));
            Trust::Allowlist(read_allowlist(&path)?)
        }
    };
    let store = crate::models::store(dir, a.model_cache_mb);
    opts.core.model_cache_bytes = store.limit();
    let cpu_cores = crate::infer_child::cpu_limit(a.max_cpu_percent, cores)?;
    let (executor, engine) = crate::infer_child::executor(
        &store,
        a.infer_memory_mb,
        a.nice,
        cpu_cores,
        &a.engine,
        opts.core.max_tensor_bytes,
    )?;
    opts.nice = a.nice;
    opts.executor = executor;
    opts.models = Some(store);
    if p2pa_node::task::INFERENCE {
        opts.core.kinds = opts.core.kinds.with(TaskKind::Infer);
        // Requesters that ask for an engine (`--engine`) find it here.
        if let Some(info) = opts.executor.engine() {
            opts.core.kinds = opts.core.kinds.with_flags(crate::engine::flag(info.kind));
        }
    }
    Ok((opts, engine))
}

/// The node's start: one JSON line with `--json`, else what it runs and how.
fn say_started(
    a: &NodeArgs,
    handle: &NodeHandle,
    engine_info: Option<&p2pa_node::task::engine::EngineInfo>,
    engine: Option<&str>,
    metrics: Option<std::net::SocketAddr>,
    limit: Option<&p2pa_node::task::throttle::ThrottleInfo>,
) {
    let id = handle.id();
    if a.json {
        output::json_line(&serde_json::json!({
            "event": "listening", "addr": handle.local_addr().to_string(), "node_id": id.to_string(),
            "engine": engine_info.map(|e| e.kind.name()),
            "engine_version": engine_info.map(|e| e.version.clone()),
            "nice": a.nice,
            "max_cpu_percent": a.max_cpu_percent,
            "cpu_limit": limit.map(crate::status::limit_json),
            "metrics": metrics.map(|m| m.to_string()),
        }));
    } else {
        say!(
            "node {} listening on {} (id {})",
            id.short(),
            handle.local_addr(),
            id
        );
        if let Some(engine) = engine {
            say!("inference engine: {engine}");
        }
        if a.nice > 0 {
            say!(
                "tasks run at nice {} (the machine's other programs come first; --nice 0 to change)",
                a.nice
            );
        }
        if let (Some(p), Some(l)) = (a.max_cpu_percent, limit) {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            say!(
                "inference limited to {p} % of this machine ({:.2} of {cores} cores), {}",
                l.cores,
                l.method
            );
        }
        say!("press Ctrl-C to stop");
    }
}

pub fn cmd_node(data_dir_flag: Option<&PathBuf>, net: &NetArgs, a: &NodeArgs) -> CliResult {
    let dir = data_dir(data_dir_flag);
    let key = identity::load_or_create(&dir, &mut os_entropy()?)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let (opts, engine) = options(net, a, &dir)?;
    // Bound before the node starts: a busy port is an error now.
    let metrics = a.metrics.map(crate::metrics::bind).transpose()?;
    let engine_info = opts.executor.engine();
    let opts_bootstrap = opts.core.bootstrap.clone();
    let executor = opts.executor.clone();
    let (handle, node) = NodeHandle::start_local(key, opts)
        .map_err(|e| CliError::network(format!("cannot start the node: {e}")))?;
    let metrics_addr = metrics.as_ref().and_then(|l| l.get_ref().local_addr().ok());
    say_started(
        a,
        &handle,
        engine_info.as_ref(),
        engine.as_deref(),
        metrics_addr,
        executor.throttle().as_ref(),
    );
    let known = opts_bootstrap;
    let nudge = crate::resolve::watch(
        crate::resolve::names(&a.bootstrap),
        known,
        handle.address_feed(),
    );
    if let (Some(l), false) = (&metrics, a.json) {
        if let Ok(addr) = l.get_ref().local_addr() {
            say!("metrics: http://{addr}/metrics");
        }
    }
    let beside = Beside {
        json: a.json,
        gate: a.only_when_idle.then(|| crate::idle::Gate {
            threshold: f64::from(a.idle_threshold) / 100.0,
            wait: Duration::from_secs(a.idle_wait),
            // Other files in tests.
            stat: std::env::var_os("P2PA_PROC_STAT").map_or("/proc/stat".into(), PathBuf::from),
            power: std::env::var_os("P2PA_POWER_SUPPLY")
                .map_or("/sys/class/power_supply".into(), PathBuf::from),
        }),
        metrics: metrics.map(|l| (l, executor.clone())),
        control: crate::status::bind(&dir).map(|(listener, path)| crate::status::Control {
            listener,
            path,
            executor,
        }),
        nudge,
        notify: crate::systemd::Notify::from_env(),
    };
    if let Some(n) = &beside.notify {
        n.send("READY=1");
    }
    serve_until_signal(handle, node, beside)
}

/// What runs beside a node until it stops.
struct Beside {
    /// Events as JSON lines.
    json: bool,
    /// `--only-when-idle`.
    gate: Option<crate::idle::Gate>,
    /// The control socket (`status`, `pause`, `resume`).
    control: Option<crate::status::Control>,
    /// `/metrics`, and what it reads the loaded models from.
    metrics: Option<(
        async_io::Async<std::net::TcpListener>,
        p2pa_node::task::Executor,
    )>,
    /// Resolves bootstrap names again after a failed dial.
    nudge: crate::resolve::Nudge,
    /// systemd's notify socket.
    notify: Option<crate::systemd::Notify>,
}

/// `WATCHDOG=1` every `every`, each after the node's loop answered a
/// question: a loop that hangs stops the pings, and systemd restarts it.
async fn watchdog(
    handle: &NodeHandle,
    notify: &crate::systemd::Notify,
    every: std::time::Duration,
) {
    loop {
        async_io::Timer::after(every).await;
        if handle.stats().await.is_err() {
            return; // the node has stopped
        }
        notify.send("WATCHDOG=1");
    }
}

/// Prints the node's events until SIGINT or SIGTERM, then stops it.
fn serve_until_signal(handle: NodeHandle, mut node: LocalNode, beside: Beside) -> CliResult {
    let Beside {
        json,
        gate,
        control,
        metrics,
        nudge,
        notify,
    } = beside;
    let counts = crate::metrics::Metrics::new();
    let pause = crate::idle::PauseState::default();
    let started = std::time::Instant::now();
    let signals =
        async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
            .map_err(|e| CliError::network(format!("cannot watch signals: {e}")))?;
    // The node runs on this thread: a second thread waiting on signals would
    // contend with it for async-io's reactor (futex wake-ups on every event).
    let (listener, socket) = control.map(|c| ((c.listener, c.executor), c.path)).unzip();
    node.block_on(async {
        {
            // The signal wait is a task of its own: polled only when a signal
            // comes, not on every node event (each poll reads its pipe).
            let ex = async_executor::LocalExecutor::new();
            let mut signals = signals;
            let mut stop = ex.spawn(async move {
                use futures_lite::stream::StreamExt;
                let _ = signals.next().await;
            });
            // `p2pa status` answers, as a task beside the events.
            let _status = listener.map(|(l, x)| {
                ex.spawn(crate::status::serve(
                    l, &handle, &pause, &counts, x, started,
                ))
            });
            let _gate = gate.map(|g| ex.spawn(g.run(&pause, &handle)));
            let _metrics = metrics
                .map(|(l, x)| ex.spawn(crate::metrics::serve(l, counts.clone(), &handle, x)));
            let every = crate::systemd::watchdog_interval();
            let _watchdog = notify
                .as_ref()
                .zip(every)
                .map(|(n, every)| ex.spawn(watchdog(&handle, n, every)));
            ex.run(async {
                loop {
                    let next_signal = async {
                        (&mut stop).await;
                        None
                    };
                    let next_event = async { handle.events().recv().await.ok() };
                    match futures_lite::future::or(next_signal, next_event).await {
                        Some(ev) => {
                            if let NodeEvent::DialFailed { .. } = ev {
                                nudge.dial_failed(); // a name may have moved
                            }
                            counts.observe(&ev);
                            output::print_event(&ev, json);
                        }
                        None => break,
                    }
                }
            })
            .await;
        }
        if !json {
            say!("stopping: saying goodbye to peers");
        }
        if let Some(n) = &notify {
            n.send("STOPPING=1");
        }
        if let Some(path) = &socket {
            let _ = std::fs::remove_file(path);
        }
        handle.shutdown().await;
    });
    Ok(exit::OK)
}

/// Checks a `HOST:PORT` (it resolves now) and keeps the text, so a name can
/// resolve again later.
fn check_host_port(s: &str) -> Result<String, String> {
    crate::parse_host_port(s).map(|_| s.to_owned())
}
