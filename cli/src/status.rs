//! `p2pa status`: what a running node is doing, asked over its control
//! socket (`<data-dir>/p2pa.sock`, mode 0600: only its owner may ask). The
//! node answers one JSON object per connection and closes it.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::AsyncWriteExt;
use p2pa_node::io::NodeHandle;
use p2pa_node::task::Executor;
use serde_json::{json, Value};

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

/// Answers every connection on `listener` with the node's status.
pub async fn serve(
    listener: Async<UnixListener>,
    handle: &NodeHandle,
    executor: Executor,
    started: Instant,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            async_io::Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        let Some(v) = status_json(handle, &executor, started).await else {
            return; // the node stopped
        };
        let _ = stream.write_all(format!("{v}\n").as_bytes()).await;
    }
}

async fn status_json(handle: &NodeHandle, executor: &Executor, started: Instant) -> Option<Value> {
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

/// `p2pa status [--json]`.
pub fn cmd_status(dir: &Path, as_json: bool) -> CliResult {
    let path = socket_path(dir);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        CliError::network(format!(
            "no node is running with data directory {} ({}: {e}); start one with `p2pa node`",
            dir.display(),
            path.display()
        ))
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| CliError::network(format!("{}: {e}", path.display())))?;
    let v: Value = serde_json::from_str(text.trim())
        .map_err(|e| CliError::network(format!("{}: not a status answer: {e}", path.display())))?;
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
        "work: {} of {} slots busy, {} queued; since start {} completed, {} failed",
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
