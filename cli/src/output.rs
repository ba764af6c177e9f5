//! Everything the CLI prints: JSON lines, tables, logging setup.

use std::io::Write;

use p2pa_node::core::{PeerInfo, TaskOutcome};
use p2pa_node::hex::hex;
use p2pa_node::io::NodeEvent;
use p2pa_node::protocol::TaskKind;
use serde_json::{json, Value};

/// Logging to stderr through `RUST_LOG` (default `info`); JSON lines with `--json`.
pub fn init_logging(json: bool) {
    let env = env_logger::Env::default().default_filter_or("warn");
    let mut b = env_logger::Builder::from_env(env);
    if json {
        b.format(|f, r| {
            let line = json!({"level": r.level().to_string().to_lowercase(), "target": r.target(), "msg": r.args().to_string()});
            writeln!(f, "{line}")
        });
    }
    b.init();
}

/// Prints one JSON value as a line on stdout and flushes (readers wait on it).
pub fn json_line(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn kinds_list(p: &PeerInfo) -> Vec<&'static str> {
    TaskKind::ALL
        .iter()
        .filter(|k| p.caps.kinds.contains(**k))
        .map(|k| k.name())
        .collect()
}

/// The node's counters as a JSON object.
pub fn stats_json(s: &p2pa_node::core::Stats) -> Value {
    json!({
        "beacons_accepted": s.beacons_accepted,
        "beacons_forged": s.beacons_forged,
        "beacons_replayed": s.beacons_replayed,
        "beacons_malformed": s.beacons_malformed,
        "beacons_wrong_version": s.beacons_wrong_version,
        "frames_rejected": s.frames_rejected,
        "frames_replayed": s.frames_replayed,
        "handshakes_completed": s.handshakes_completed,
        "handshakes_failed": s.handshakes_failed,
        "handshakes_timed_out": s.handshakes_timed_out,
        "handshakes_evicted": s.handshakes_evicted,
        "peers_refused": s.peers_refused,
        "peers_evicted": s.peers_evicted,
        "sessions_evicted": s.sessions_evicted,
        "beacons_untrusted": s.beacons_untrusted,
        "conns_refused": s.conns_refused,
        "results_rejected": s.results_rejected,
        "tasks_retried": s.tasks_retried,
        "blob_bytes_served": s.blob_bytes_served,
        "blob_bytes_fetched": s.blob_bytes_fetched,
    })
}

pub fn peer_json(p: &PeerInfo) -> Value {
    json!({
        "node_id": p.id.to_string(),
        "short_id": p.id.short().to_string(),
        "addr": p.addr.map(|a| a.to_string()),
        "via": p.via.name(),
        "state": p.state.name(),
        "kinds": kinds_list(p),
        "free_slots": p.caps.free_slots,
        "rtt_ms": p.rtt.map(|r| r.as_secs_f64() * 1e3),
        "last_seen_ms": p.last_seen_ago.as_millis() as u64,
    })
}

pub fn print_peer_table(peers: &[PeerInfo]) {
    say!(
        "{:<10} {:<22} {:<10} {:<10} {:>6} {:>9}  kinds",
        "id",
        "addr",
        "via",
        "state",
        "slots",
        "rtt"
    );
    for p in peers {
        let rtt = p.rtt.map_or("-".to_owned(), |r| {
            format!("{:.2}ms", r.as_secs_f64() * 1e3)
        });
        let addr = p.addr.map_or("-".to_owned(), |a| a.to_string());
        say!(
            "{:<10} {:<22} {:<10} {:<10} {:>6} {:>9}  {}",
            p.id.short().to_string(),
            addr,
            p.via.name(),
            p.state.name(),
            p.caps.free_slots,
            rtt,
            kinds_list(p).join(",")
        );
    }
}

/// How an outcome's output goes into its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Tensors as JSON (and `prediction`), for infer.
    Tensors,
    /// `output` as text, or `output_hex`.
    Raw,
    /// Not for a completed task: its output went to files (`--out-dir`);
    /// a failure's text is kept, as `Raw`.
    Omit,
}

impl Body {
    /// Tensors for infer, raw otherwise.
    pub fn of(infer: bool) -> Self {
        if infer {
            Self::Tensors
        } else {
            Self::Raw
        }
    }
}

pub fn outcome_json(o: &TaskOutcome, body: Body) -> Value {
    let mut v = json!({
        "task_id": o.task_id.to_string(),
        "status": o.status.name(),
        "worker": o.worker.map(|w| w.to_string()),
        "elapsed_ms": o.elapsed.as_secs_f64() * 1e3,
        "attempts": o.attempts,
        "busy": o.busy,
    });
    let tensors = (body == Body::Tensors && o.status == p2pa_node::protocol::TaskStatus::Completed)
        .then(|| crate::tensors::to_json(&o.output))
        .flatten();
    match (body, tensors, std::str::from_utf8(&o.output)) {
        (Body::Omit, ..) if o.status == p2pa_node::protocol::TaskStatus::Completed => {}
        (_, Some((outputs, prediction)), _) => {
            v["outputs"] = outputs;
            if let Some(p) = prediction {
                v["prediction"] = json!(p);
            }
        }
        (_, None, Ok(text)) => v["output"] = json!(text),
        (_, None, Err(_)) => v["output_hex"] = json!(hex(&o.output)),
    }
    if let Some(e) = &o.error {
        v["error"] = json!(e.to_string());
    }
    if let Some(r) = &o.receipt {
        v["receipt"] = crate::verify::receipt_json(r, &o.output);
    }
    v
}

/// The line on stderr that says how a task went.
pub fn print_outcome_header(o: &TaskOutcome) {
    let worker = o.worker.map_or("-".to_owned(), |w| w.short().to_string());
    eprintln!(
        "task {} {} on {} in {:.1} ms ({} attempt{})",
        o.task_id,
        o.status,
        worker,
        o.elapsed.as_secs_f64() * 1e3,
        o.attempts,
        if o.attempts == 1 { "" } else { "s" }
    );
    if let Some(e) = &o.error {
        eprintln!("error: {e}");
    }
}

pub fn print_outcome(o: &TaskOutcome, infer: bool) {
    print_outcome_header(o);
    if let Some((outputs, prediction)) = infer.then(|| crate::tensors::to_json(&o.output)).flatten()
    {
        if let Some(p) = prediction {
            say!("prediction: {p}");
        }
        say!("{outputs}");
        return;
    }
    match std::str::from_utf8(&o.output) {
        Ok(text) => say!("{text}"),
        Err(_) => say!("{}", hex(&o.output)),
    }
}

pub fn print_event(ev: &NodeEvent, as_json: bool) {
    let name = crate::event_name(ev);
    if as_json {
        let v = match ev {
            NodeEvent::Discovered { id, addr, via } => {
                json!({"event": name, "peer": id.to_string(), "addr": addr.to_string(), "via": via})
            }
            NodeEvent::Connected { id, addr } => {
                json!({"event": name, "peer": id.to_string(), "addr": addr.to_string()})
            }
            NodeEvent::Disconnected { id, reason } => {
                json!({"event": name, "peer": id.to_string(), "reason": reason.to_string()})
            }
            NodeEvent::TaskStarted { job, kind } => {
                json!({"event": name, "job": job, "kind": kind.name()})
            }
            NodeEvent::TaskFinished {
                job,
                kind,
                status,
                elapsed,
            } => json!({
                "event": name, "job": job, "kind": kind.name(), "status": status.name(),
                "duration_ms": elapsed.as_secs_f64() * 1e3,
            }),
            NodeEvent::TaskDone(o) => {
                let mut v = outcome_json(o, Body::Raw);
                v["event"] = json!(name);
                v
            }
            NodeEvent::DialFailed { addr, why } => {
                json!({"event": name, "addr": addr.to_string(), "error": why.to_string()})
            }
        };
        json_line(&v);
    } else {
        match ev {
            NodeEvent::Discovered { id, addr, via } => {
                say!("discovered {} at {addr} via {via}", id.short())
            }
            NodeEvent::Connected { id, addr } => say!("connected   {} at {addr}", id.short()),
            NodeEvent::Disconnected { id, reason } => {
                say!("lost        {}: {reason}", id.short())
            }
            NodeEvent::TaskStarted { job, kind } => log::info!("running job {job} ({kind})"),
            NodeEvent::TaskFinished {
                job,
                kind,
                status,
                elapsed,
            } => log::info!("job {job} ({kind}) {status} in {elapsed:?}"),
            NodeEvent::TaskDone(o) => say!("task {} {}", o.task_id, o.status),
            NodeEvent::DialFailed { addr, why } => log::debug!("dial to {addr} failed: {why}"),
        }
    }
}
