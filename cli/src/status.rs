//! `p2pa status`, `pause` and `resume`: a running node's control socket
//! (`<data-dir>/p2pa.sock`, mode 0600: only its owner may connect). A client
//! writes one request line (`status`, `pause` or `resume`) and closes its
//! side; the node carries it out and answers with one JSON status object,
//! then closes. A client that sends nothing within a second is asked
//! `status`.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use p2pa_node::io::NodeHandle;
use p2pa_node::task::Executor;
use serde_json::{json, Value};

use crate::idle::PauseState;
use crate::{exit, output, CliError, CliResult};

/// The socket's file name in the data directory.
const SOCKET: &str = "p2pa.sock";

pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}

/// A node's control socket and what its answers read beyond the handle.
pub struct Control {
    pub listener: Async<UnixListener>,
    pub path: PathBuf,
    /// What runs the node's jobs: it knows which models are loaded.
    pub executor: Executor,
}

/// Binds the control socket, owner-only. A socket file left by a node that
/// is gone is replaced; one a live node answers on is not (`None`, warned).
pub fn bind(dir: &Path) -> Option<(Async<UnixListener>, PathBuf)> {
    let path = socket_path(dir);
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            log::warn!(
                "another node answers on {}; `p2pa status` will reach that one",
                path.display()
            );
            return None;
        }
        let _ = std::fs::remove_file(&path);
    }
    let bound = UnixListener::bind(&path).and_then(|l| {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Async::new(l)
    });
    match bound {
        Ok(l) => Some((l, path)),
        Err(e) => {
            log::warn!(
                "no control socket ({}): {e}; `p2pa status` will not reach this node",
                path.display()
            );
            None
        }
    }
}

/// How long a client may take to send its request, and to read the answer:
/// the socket serves one client at a time, so none may hold it longer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest request line (the longest request is `resume`).
const MAX_REQUEST: usize = 64;

/// What a client asks of the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    Pause,
    Resume,
}

impl Request {
    fn name(self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Pause => "pause",
            Request::Resume => "resume",
        }
    }

    /// The request in `line`; nothing (or nothing known) is `status`.
    fn parse(line: &[u8]) -> Request {
        match line.trim_ascii() {
            b"pause" => Request::Pause,
            b"resume" => Request::Resume,
            _ => Request::Status,
        }
    }
}

/// Reads the client's request: up to a newline, its end or
/// [`MAX_REQUEST`] bytes, for at most [`CLIENT_TIMEOUT`].
async fn read_request(stream: &mut Async<UnixStream>) -> Request {
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let read = async {
        while let Some(rest) = buf.get_mut(len..).filter(|r| !r.is_empty()) {
            match stream.read(rest).await {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
            if buf.get(..len).is_some_and(|b| b.contains(&b'\n')) {
                break;
            }
        }
    };
    futures_lite::future::or(read, async {
        async_io::Timer::after(CLIENT_TIMEOUT).await;
    })
    .await;
    Request::parse(buf.get(..len).unwrap_or_default())
}

/// Answers every connection on `listener`: carries out its request and
/// writes the node's status after it.
pub async fn serve(
    listener: Async<UnixListener>,
    handle: &NodeHandle,
    pause: &PauseState,
    metrics: &crate::metrics::Metrics,
    executor: Executor,
    started: Instant,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            async_io::Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        let request = read_request(&mut stream).await;
        let done = match request {
            Request::Status => Ok(()),
            Request::Pause => pause.ask(handle, true).await,
            Request::Resume => pause.ask(handle, false).await,
        };
        let v = status_json(handle, pause, &executor, started).await;
        let (Ok(()), Some(mut v)) = (done, v) else {
            return; // the node stopped
        };
        v["work"]["speed"] = metrics
            .speed()
            .iter()
            .map(|s| json!({"kind": s.kind, "model": s.model, "tasks": s.tasks, "mean_ms": s.mean.as_secs_f64() * 1e3}))
            .collect();
        let answer = format!("{v}\n");
        futures_lite::future::or(
            async {
                let _ = stream.write_all(answer.as_bytes()).await;
            },
            async {
                async_io::Timer::after(CLIENT_TIMEOUT).await;
            },
        )
        .await;
    }
}

/// A CPU limit as JSON: cores, how it is kept, the time its processes were
/// held back.
pub fn limit_json(t: &p2pa_node::task::throttle::ThrottleInfo) -> Value {
    use p2pa_node::task::throttle::LimitMethod;
    let (method, cgroup, why) = match &t.method {
        LimitMethod::Cgroup(dir) => ("cgroup", Some(dir.display().to_string()), None),
        LimitMethod::Signals(why) => ("signals", None, Some(why.clone())),
    };
    json!({
        "cores": t.cores,
        "method": method,
        "cgroup": cgroup,
        "no_cgroup": why,
        "stopped_s": t.stopped.as_secs_f64(),
        "stopped_now": t.stopping,
    })
}

async fn status_json(
    handle: &NodeHandle,
    pause: &PauseState,
    executor: &Executor,
    started: Instant,
) -> Option<Value> {
    let (asked, busy) = pause.reasons();
    let peers = handle.peers().await.ok()?;
    let stats = handle.stats().await.ok()?;
    let work = handle.work().await.ok()?;
    // Every session counts, a slow one (silent past `slow_after`) too.
    let connected = peers
        .iter()
        .filter(|p| {
            matches!(
                p.state,
                p2pa_node::core::PeerState::Connected | p2pa_node::core::PeerState::Slow
            )
        })
        .count();
    Some(json!({
        "node_id": handle.id().to_string(),
        "addr": handle.local_addr().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": started.elapsed().as_secs(),
        "peers": {"known": peers.len(), "connected": connected},
        "peer_list": peers.iter().map(output::peer_json).collect::<Vec<_>>(),
        "work": {
            "slots": work.slots,
            "running": work.running,
            "queued": work.queued,
            "completed": work.completed,
            "failed": work.failed,
            "paused": work.paused,
            "paused_asked": asked,
            "paused_busy": busy.map(|b| b.name()),
            "cpu_limit": executor.throttle().as_ref().map(limit_json),
        },
        "models": work.models.iter().map(|m| p2pa_node::hex::hex(m)).collect::<Vec<_>>(),
        "models_loaded": executor.loaded().iter().map(|m| p2pa_node::hex::hex(m)).collect::<Vec<_>>(),
        "engine": executor.engine().map(|e| json!({
            "name": e.kind.name(), "version": e.version, "note": e.note,
        })),
        "stats": output::stats_json(&stats),
    }))
}

/// The engine as `status` prints it: name, version and note.
fn engine_line(e: &Value) -> String {
    match e["name"].as_str() {
        Some(name) => format!(
            "{name} {}{}",
            e["version"].as_str().unwrap_or("?"),
            e["note"]
                .as_str()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
        None => "none (this node runs no models)".to_owned(),
    }
}

/// Sends `request` to the node running with data directory `dir` and
/// returns the status it answers with.
fn ask(dir: &Path, request: Request) -> Result<Value, CliError> {
    let path = socket_path(dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        CliError::network(format!(
            "no node is running with data directory {} ({}: {e}); start one with `p2pa node`",
            dir.display(),
            path.display()
        ))
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    stream
        .write_all(format!("{}\n", request.name()).as_bytes())
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .and_then(|()| stream.read_to_string(&mut text))
        .map_err(|e| CliError::network(format!("{}: {e}", path.display())))?;
    serde_json::from_str(text.trim())
        .map_err(|e| CliError::network(format!("{}: not a status answer: {e}", path.display())))
}

/// `p2pa pause [--json]` (`paused` true) and `p2pa resume [--json]`.
pub fn cmd_pause(dir: &Path, paused: bool, as_json: bool) -> CliResult {
    let request = if paused {
        Request::Pause
    } else {
        Request::Resume
    };
    let v = ask(dir, request)?;
    let w = &v["work"];
    let id = v["node_id"].as_str().unwrap_or("?");
    // Resumed, a node may stay paused while its machine is in use.
    let held = w["paused_busy"].as_str().filter(|_| !paused);
    if held.is_none() && w["paused"].as_bool() != Some(paused) {
        return Err(CliError::network(format!(
            "the node with data directory {} did not {} (it answers as an older p2pa?)",
            dir.display(),
            request.name()
        )));
    }
    if as_json {
        output::json_line(&v);
    } else if let Some(why) = held {
        say!("node {id} resumed as asked, but it stays paused while {why} (--only-when-idle)");
    } else if paused {
        say!(
            "node {id} paused: it takes no new tasks and keeps its {} sessions; {} running finish, what waited for a slot went back to its requesters (`p2pa resume` to go on)",
            v["peers"]["connected"],
            w["running"]
        );
    } else {
        say!("node {id} resumed: it takes tasks on {} slots", w["slots"]);
    }
    Ok(exit::OK)
}

/// `p2pa status [--json]`.
/// The worker's speed per kind and model and its CPU limit, under `work`.
fn say_work_details(w: &Value) {
    for s in w["speed"].as_array().into_iter().flatten() {
        say!(
            "  speed: {} {}: {:.1} ms a task (mean of the last, {} done)",
            s["kind"].as_str().unwrap_or("?"),
            s["model"].as_str().filter(|m| !m.is_empty()).unwrap_or("-"),
            s["mean_ms"].as_f64().unwrap_or(0.0),
            s["tasks"]
        );
    }
    if let Some(cores) = w["cpu_limit"]["cores"].as_f64() {
        say!(
            "  cpu limit: {cores:.2} cores for inference (--max-cpu-percent, by {}); its processes held back {:.1} s in all{}",
            match w["cpu_limit"]["method"].as_str() {
                Some("cgroup") => "the kernel's cgroup",
                _ => "SIGSTOP/SIGCONT",
            },
            w["cpu_limit"]["stopped_s"].as_f64().unwrap_or(0.0),
            if w["cpu_limit"]["stopped_now"].as_bool() == Some(true) { ", stopped now" } else { "" }
        );
    }
}

pub fn cmd_status(dir: &Path, as_json: bool) -> CliResult {
    let v = ask(dir, Request::Status)?;
    if as_json {
        output::json_line(&v);
        return Ok(exit::OK);
    }
    say!(
        "node {} listening on {}, up {} s (p2pa {})",
        v["node_id"].as_str().unwrap_or("?"),
        v["addr"].as_str().unwrap_or("?"),
        v["uptime_s"],
        v["version"].as_str().unwrap_or("?")
    );
    say!(
        "peers: {} known, {} connected",
        v["peers"]["known"],
        v["peers"]["connected"]
    );
    let w = &v["work"];
    say!(
        "work: {}{} of {} slots busy, {} queued; since start {} completed, {} failed",
        match (w["paused"].as_bool(), w["paused_busy"].as_str()) {
            (Some(true), Some(why)) => format!("PAUSED ({why}; --only-when-idle), "),
            (Some(true), None) => "PAUSED (no new tasks; `p2pa resume`), ".to_owned(),
            _ => String::new(),
        },
        w["running"],
        w["slots"],
        w["queued"],
        w["completed"],
        w["failed"]
    );
    let models = |key: &str| {
        let short: Vec<&str> = (v[key].as_array().into_iter().flatten())
            .filter_map(|m| m.as_str()?.get(..16))
            .collect();
        if short.is_empty() {
            "none".to_owned()
        } else {
            short.join(", ")
        }
    };
    say_work_details(w);
    say!("inference engine: {}", engine_line(&v["engine"]));
    say!("models held: {}", models("models"));
    say!("models loaded: {}", models("models_loaded"));
    for p in v["peer_list"].as_array().into_iter().flatten() {
        say!(
            "  {} {} {} {}",
            p["short_id"].as_str().unwrap_or("?"),
            p["addr"].as_str().unwrap_or("-"),
            p["state"].as_str().unwrap_or("?"),
            p["via"].as_str().unwrap_or("?")
        );
    }
    if let Some(stats) = v["stats"].as_object() {
        let nonzero: Vec<String> = stats
            .iter()
            .filter(|(_, n)| n.as_u64().is_some_and(|n| n > 0))
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        say!("counters: {}", nonzero.join(", "));
    }
    Ok(exit::OK)
}
