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
    let mut line = compact_bytes(v);
    line.push(b'\n');
    let _ = out.write_all(&line);
    let _ = out.flush();
}

/// A JSON value as bytes, with the numbers of an `"f32"` or `"f16"` tensor
/// list written as the f32 they are: `0.1` rather than the
/// `0.10000000149011612` of the f64 a [`Value`] widens them to. Each reads
/// back as the same f32 (so a receipt's output hash still matches), in
/// about half the bytes and CPU.
pub fn compact_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&Compact(v, false)).unwrap_or_else(|_| v.to_string().into_bytes())
}

/// [`compact_bytes`]'s walk: the flag says "inside a half/single-precision list".
pub struct Compact<'a>(&'a Value, bool);

impl<'a> Compact<'a> {
    /// `v`, to be written as [`compact_bytes`] writes it.
    pub fn new(v: &'a Value) -> Self {
        Self(v, false)
    }
}

impl serde::Serialize for Compact<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            // Exact: these numbers were f32 (or f16) values widened to f64.
            Value::Number(n) if self.1 && n.is_f64() => {
                s.serialize_f32(n.as_f64().unwrap_or(0.0) as f32)
            }
            Value::Array(xs) => {
                let mut seq = s.serialize_seq(Some(xs.len()))?;
                for x in xs {
                    seq.serialize_element(&Compact(x, self.1))?;
                }
                seq.end()
            }
            Value::Object(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, x) in m {
                    let narrow = matches!(k.as_str(), "f32" | "f16") && x.is_array();
                    map.serialize_entry(k, &Compact(x, narrow))?;
                }
                map.end()
            }
            other => other.serialize(s),
        }
    }
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
        "sessions_aes_gcm": s.sessions_aes_gcm,
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
        "stream_bytes_in": s.stream_bytes_in,
        "stream_bytes_out": s.stream_bytes_out,
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
        "paused": p.caps.kinds.has_flags(p2pa_node::protocol::KindSet::PAUSED),
        "rtt_ms": p.rtt.map(|r| r.as_secs_f64() * 1e3),
        "last_seen_ms": p.last_seen_ago.as_millis() as u64,
        "speeds": speeds(p)
            .map(|(m, ms)| json!({"model": p2pa_node::hex::hex(m), "mean_ms": ms}))
            .collect::<Vec<_>>(),
    })
}

/// The peer's own measured mean run time (ms) of each model it advertises
/// and has run.
fn speeds(p: &PeerInfo) -> impl Iterator<Item = (&[u8; 32], f64)> + '_ {
    p.caps
        .models
        .iter()
        .filter_map(|m| Some((m, f64::from(p.caps.run_time_us(m)?) / 1e3)))
}

pub fn print_peer_table(peers: &[PeerInfo]) {
    say!(
        "{:<10} {:<22} {:<10} {:<10} {:>6} {:>9}  kinds (speed per model: its own mean run time)",
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
                + if p.caps.kinds.has_flags(p2pa_node::protocol::KindSet::PAUSED) {
                    " (paused)"
                } else {
                    ""
                }
                + &speeds(p)
                    .map(|(m, ms)| format!(" {}: {ms:.1}ms", p2pa_node::hex::hex(&m[..4])))
                    .collect::<String>()
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
    /// As `Tensors`, but the tensors are left for the writer to add
    /// (`journal::line_bytes`): `prediction` only.
    Deferred,
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
    let completed = o.status == p2pa_node::protocol::TaskStatus::Completed;
    let tensors = match body {
        Body::Tensors if completed => crate::tensors::to_json(&o.output),
        Body::Deferred if completed => p2pa_node::task::tensor::decode(&o.output)
            .ok()
            .map(|set| (Value::Null, crate::tensors::prediction(&set))),
        _ => None,
    };
    match (body, tensors, std::str::from_utf8(&o.output)) {
        (Body::Omit, ..) if completed => {}
        (_, Some((outputs, prediction)), _) => {
            if !outputs.is_null() {
                v["outputs"] = outputs;
            }
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
            NodeEvent::TaskStarted { job, kind, model } => {
                json!({"event": name, "job": job, "kind": kind.name(), "model": model.map(|m| p2pa_node::hex::hex(&m))})
            }
            NodeEvent::TaskFinished {
                job,
                kind,
                model,
                status,
                elapsed,
            } => json!({
                "event": name, "job": job, "kind": kind.name(), "status": status.name(),
                "model": model.map(|m| p2pa_node::hex::hex(&m)),
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
            NodeEvent::TaskStarted { job, kind, .. } => log::info!("running job {job} ({kind})"),
            NodeEvent::TaskFinished {
                job,
                kind,
                status,
                elapsed,
                ..
            } => log::info!("job {job} ({kind}) {status} in {elapsed:?}"),
            NodeEvent::TaskDone(o) => say!("task {} {}", o.task_id, o.status),
            NodeEvent::DialFailed { addr, why } => log::debug!("dial to {addr} failed: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reader of the line gets back for one f32 (the CLI's tensor
    /// reader takes numbers as f64 and narrows them).
    fn round_trip(x: f32) -> f32 {
        let line = compact_bytes(&json!({"shape": [1], "f32": [x]}));
        let v: Value = serde_json::from_slice(&line).unwrap();
        v["f32"][0].as_f64().unwrap() as f32
    }

    #[test]
    fn f32_lists_are_written_short_and_read_back_bit_for_bit() {
        let line = compact_bytes(&json!({"f32": [0.1f32, 1.0f32, -2.5e-8f32], "f64": [0.1f32]}));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#"{"f32":[0.1,1.0,-2.5e-8],"f64":[0.10000000149011612]}"#,
            "f32 lists narrow; every other number keeps its f64 digits"
        );
        // Every 6 151st bit pattern (700 000 f32, all exponents,
        // subnormals and both signs), plus the extremes.
        let mut checked = 0u32;
        for bits in (0..=u32::MAX)
            .step_by(6151)
            .chain([1, 0x007f_ffff, 0x7f7f_ffff, 0xff7f_ffff])
        {
            let x = f32::from_bits(bits);
            if x.is_finite() {
                assert_eq!(round_trip(x).to_bits(), bits, "{x:e} changed");
                checked += 1;
            }
        }
        assert!(checked > 690_000, "{checked}");
    }

    #[test]
    fn numbers_outside_tensor_lists_and_non_finite_values_keep_their_form() {
        let v = json!({"elapsed_ms": 0.1f32 as f64, "outputs": [{"shape": [2], "f32": [f32::NAN, 3.0f32], "name": "f32"}], "n": 7});
        let back: Value = serde_json::from_slice(&compact_bytes(&v)).unwrap();
        assert_eq!(back["elapsed_ms"], v["elapsed_ms"]);
        assert_eq!(back["outputs"][0]["f32"], json!([null, 3.0]));
        assert_eq!(
            back["outputs"][0]["name"], "f32",
            "a string under another key is untouched"
        );
        assert_eq!(back["n"], 7);
    }
}
