//! `p2pa node --metrics ADDR`: the node's state and counters at
//! `http://ADDR/metrics`, in the OpenMetrics text format that Prometheus
//! scrapes (written by `prometheus-client`, the official Rust client).
//!
//! Task counts and durations come from the node's events as they happen;
//! the rest (peers, slots, queue, models, byte and refusal counters) is
//! read from the node at each scrape. The listener is a task on the node's
//! own thread: one request at a time, each given [`CLIENT_TIMEOUT`] to send
//! its request and read the answer, so a client that stalls holds it that
//! long at most. It binds where it is told; the default is none.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use p2pa_node::core::PeerState;
use p2pa_node::io::{NodeEvent, NodeHandle};
use p2pa_node::protocol::KindSet;
use p2pa_node::task::Executor;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::CliError;

/// How long a client may take to send its request, and to read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request head read (a scraper's is a few hundred bytes).
const MAX_REQUEST: usize = 8 << 10;
/// Models named in the duration histograms; tasks of any further model
/// count under `model="other"` (a requester cannot grow the page).
const MAX_MODEL_LABELS: usize = 64;

type Labels<const N: usize> = [(&'static str, String); N];

/// Per (kind, model label): mean run time in seconds, and tasks seen.
type SpeedTable = std::collections::BTreeMap<(String, String), (f64, u64)>;

/// What the node's events add up to, kept between scrapes.
#[derive(Debug, Clone)]
pub struct Metrics {
    started: Family<Labels<1>, Counter>,
    finished: Family<Labels<2>, Counter>,
    durations: Family<Labels<2>, Histogram, fn() -> Histogram>,
    models: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// This worker's speed: per kind and model label, the moving average
    /// of its completed tasks' run time (seconds) and how many.
    speed: std::sync::Arc<std::sync::Mutex<SpeedTable>>,
}

/// One line of [`Metrics::speed`].
#[derive(Debug, Clone, PartialEq)]
pub struct Speed {
    pub kind: String,
    /// The model's label (its hash's first 16 hex digits), empty for none.
    pub model: String,
    /// Completed tasks seen.
    pub tasks: u64,
    /// Moving average of their run time (the last ~8 weigh most).
    pub mean: Duration,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Buckets from 1 ms to about a minute, doubling.
fn durations() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            started: Family::default(),
            finished: Family::default(),
            durations: Family::new_with_constructor(durations),
            models: Default::default(),
            speed: Default::default(),
        }
    }

    /// Counts what `ev` says of this node's work.
    pub fn observe(&self, ev: &NodeEvent) {
        match ev {
            NodeEvent::TaskStarted { kind, .. } => {
                self.started
                    .get_or_create(&[("kind", kind.name().to_owned())])
                    .inc();
            }
            NodeEvent::TaskFinished {
                kind,
                model,
                status,
                elapsed,
                ..
            } => {
                let kind = kind.name().to_owned();
                self.finished
                    .get_or_create(&[("kind", kind.clone()), ("status", status.name().to_owned())])
                    .inc();
                let model = model.map_or(String::new(), |m| self.model_label(&m));
                let secs = elapsed.as_secs_f64();
                if *status == p2pa_node::protocol::TaskStatus::Completed {
                    if let Ok(mut speed) = self.speed.lock() {
                        let e = speed
                            .entry((kind.clone(), model.clone()))
                            .or_insert((secs, 0));
                        e.0 += (secs - e.0) / 8.0;
                        e.1 = e.1.saturating_add(1);
                    }
                }
                self.durations
                    .get_or_create(&[("kind", kind), ("model", model)])
                    .observe(secs);
            }
            _ => {}
        }
    }

    /// A model's label: its hash's first 16 hex digits, or `other` once
    /// [`MAX_MODEL_LABELS`] models have one.
    fn model_label(&self, model: &[u8; 32]) -> String {
        let name = p2pa_node::hex::hex(model)
            .get(..16)
            .unwrap_or("")
            .to_owned();
        let Ok(mut known) = self.models.lock() else {
            return "other".to_owned();
        };
        if known.contains(&name) {
            name
        } else if known.len() < MAX_MODEL_LABELS {
            known.push(name.clone());
            name
        } else {
            "other".to_owned()
        }
    }

    /// This worker's speed per kind and model, as it measured its tasks.
    pub fn speed(&self) -> Vec<Speed> {
        let Ok(speed) = self.speed.lock() else {
            return Vec::new();
        };
        speed
            .iter()
            .map(|((kind, model), (mean, tasks))| Speed {
                kind: kind.clone(),
                model: model.clone(),
                tasks: *tasks,
                mean: Duration::try_from_secs_f64(*mean).unwrap_or_default(),
            })
            .collect()
    }

    /// The page: the event counts and the node's state now; `None` once the
    /// node has stopped.
    pub async fn page(&self, handle: &NodeHandle, executor: &Executor) -> Option<String> {
        let peers = handle.peers().await.ok()?;
        let stats = handle.stats().await.ok()?;
        let work = handle.work().await.ok()?;
        let mut reg = Registry::with_prefix("p2pa");
        reg.register(
            "tasks_started",
            "Tasks this node started as a worker",
            self.started.clone(),
        );
        reg.register(
            "tasks_finished",
            "Tasks this node ran as a worker, by how they ended",
            self.finished.clone(),
        );
        reg.register(
            "task_duration_seconds",
            "From a task's start to its result, on this worker",
            self.durations.clone(),
        );
        state_into(&mut reg, &peers, &work, executor.loaded().len());
        counters_into(&mut reg, &stats, &work);
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &reg).ok()?;
        Some(page)
    }
}

/// The node's state now: peers, slots, queue, models, pause.
fn state_into(
    reg: &mut Registry,
    peers: &[p2pa_node::core::PeerInfo],
    work: &p2pa_node::core::Work,
    loaded: usize,
) {
    let by_state: Family<Labels<1>, Gauge> = Family::default();
    for state in [PeerState::Known, PeerState::Connected, PeerState::Slow] {
        let n = peers.iter().filter(|p| p.state == state).count();
        by_state
            .get_or_create(&[("state", state.name().to_owned())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    reg.register("peers", "Peers in the table, by state", by_state);
    let paused_peers = peers
        .iter()
        .filter(|p| p.caps.kinds.has_flags(KindSet::PAUSED))
        .count();
    let sessions = peers.iter().filter(|p| p.state != PeerState::Known).count();
    let gauges: [(&str, &str, usize); 8] = [
        (
            "sessions",
            "Sessions up (peers connected or slow)",
            sessions,
        ),
        (
            "peers_paused",
            "Peers whose owner paused them",
            paused_peers,
        ),
        ("slots", "Worker slots", usize::from(work.slots)),
        ("slots_busy", "Worker slots running a task", work.running),
        (
            "queue_depth",
            "Tasks accepted and waiting for a slot",
            work.queued,
        ),
        (
            "models_held",
            "Models in this node's store",
            work.models.len(),
        ),
        ("models_loaded", "Models loaded in an engine", loaded),
        (
            "paused",
            "1 while this node is paused (p2pa pause)",
            usize::from(work.paused),
        ),
    ];
    for (name, help, v) in gauges {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        reg.register(name, help, g);
    }
}

/// The node's counters: bytes, handshakes, beacons and refusals.
fn counters_into(reg: &mut Registry, stats: &p2pa_node::core::Stats, work: &p2pa_node::core::Work) {
    let counters: [(&str, &str, u64); 8] = [
        (
            "stream_received_bytes",
            "Bytes received on sessions",
            stats.stream_bytes_in,
        ),
        (
            "stream_sent_bytes",
            "Bytes sent on sessions",
            stats.stream_bytes_out,
        ),
        (
            "blob_served_bytes",
            "Blob (model, input, output) bytes served to peers",
            stats.blob_bytes_served,
        ),
        (
            "blob_fetched_bytes",
            "Blob bytes fetched from peers",
            stats.blob_bytes_fetched,
        ),
        (
            "handshakes_completed",
            "Session handshakes completed",
            stats.handshakes_completed,
        ),
        (
            "sessions_aes_gcm",
            "Sessions sealed with AES-256-GCM (both ends offered it)",
            stats.sessions_aes_gcm,
        ),
        (
            "tasks_retried",
            "Tasks this node requested that were offered again",
            stats.tasks_retried,
        ),
        (
            "jobs_failed",
            "Jobs this worker answered other than completed",
            work.failed,
        ),
    ];
    for (name, help, v) in counters {
        let c: Counter = Counter::default();
        c.inc_by(v);
        reg.register(name, help, c);
    }
    reasons_into(reg, stats);
}

/// Beacons by what became of them, and refusals by reason.
fn reasons_into(reg: &mut Registry, stats: &p2pa_node::core::Stats) {
    let labelled = |pairs: &[(&str, u64)], label: &'static str| {
        let f: Family<Labels<1>, Counter<u64, AtomicU64>> = Family::default();
        for (value, n) in pairs {
            f.get_or_create(&[(label, (*value).to_owned())]).inc_by(*n);
        }
        f
    };
    let s = stats;
    reg.register(
        "beacons",
        "Beacons received, by what became of them",
        labelled(
            &[
                ("accepted", s.beacons_accepted),
                ("forged", s.beacons_forged),
                ("replayed", s.beacons_replayed),
                ("malformed", s.beacons_malformed),
                ("wrong_version", s.beacons_wrong_version),
                ("untrusted", s.beacons_untrusted),
            ],
            "result",
        ),
    );
    reg.register(
        "refused",
        "Input refused or peers turned away, by reason",
        labelled(
            &[
                ("frame_rejected", s.frames_rejected),
                ("frame_replayed", s.frames_replayed),
                ("handshake_failed", s.handshakes_failed),
                ("handshake_timed_out", s.handshakes_timed_out),
                ("handshake_evicted", s.handshakes_evicted),
                ("peer_refused", s.peers_refused),
                ("peer_evicted", s.peers_evicted),
                ("session_evicted", s.sessions_evicted),
                ("connection_refused", s.conns_refused),
                ("result_rejected", s.results_rejected),
            ],
            "reason",
        ),
    );
}

/// Binds the metrics listener at `addr`; a clear error where it cannot,
/// and a warning where the address reaches beyond this machine.
pub fn bind(addr: SocketAddr) -> Result<Async<TcpListener>, CliError> {
    if !addr.ip().is_loopback() {
        log::warn!(
            "metrics on {addr} can be read by anyone who reaches that address (peer ids, addresses, counts); 127.0.0.1 keeps them on this machine"
        );
    }
    TcpListener::bind(addr)
        .and_then(Async::new)
        .map_err(|e| CliError::usage(format!("cannot serve metrics on {addr}: {e}")))
}

/// Reads a request head: up to its blank line, its end or [`MAX_REQUEST`]
/// bytes; returns its first line and whether it accepts OpenMetrics.
async fn read_head(stream: &mut Async<std::net::TcpStream>) -> Option<(String, bool)> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0usize;
    while let Some(rest) = buf.get_mut(len..).filter(|r| !r.is_empty()) {
        match stream.read(rest).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len = len.saturating_add(n),
        }
        if buf
            .get(..len)
            .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
        {
            break;
        }
    }
    let head = String::from_utf8_lossy(buf.get(..len)?);
    let line = head.lines().next()?.trim().to_owned();
    let openmetrics = head.lines().skip(1).any(|h| {
        h.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept")
                && value.contains("application/openmetrics-text")
        })
    });
    Some((line, openmetrics))
}

/// The OpenMetrics page prometheus-client writes, in the Prometheus text
/// format 0.0.4 (for scrapers that do not ask for OpenMetrics): a counter's
/// family is named with its `_total`, an info family is a gauge named
/// `_info`, and there is no `# UNIT` or `# EOF`. Samples are the same.
pub fn text_004(openmetrics: &str) -> String {
    let mut renamed = std::collections::BTreeMap::new();
    for line in openmetrics.lines() {
        let mut w = line.split_ascii_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (w.next(), w.next(), w.next(), w.next())
        {
            match kind {
                "counter" => renamed.insert(name.to_owned(), (format!("{name}_total"), "counter")),
                "info" => renamed.insert(name.to_owned(), (format!("{name}_info"), "gauge")),
                _ => None,
            };
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        let mut w = line.splitn(4, ' ');
        let text = match (w.next(), w.next(), w.next(), w.next()) {
            (Some("#"), Some("EOF" | "UNIT"), ..) => continue,
            (Some("#"), Some("HELP"), Some(name), rest) => match renamed.get(name) {
                Some((to, _)) => format!("# HELP {to} {}", rest.unwrap_or("")),
                None => line.to_owned(),
            },
            (Some("#"), Some("TYPE"), Some(name), _) => match renamed.get(name) {
                Some((to, kind)) => format!("# TYPE {to} {kind}"),
                None => line.to_owned(),
            },
            _ => line.to_owned(),
        };
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The answer to a request line: status line, content type, body.
async fn answer(
    (line, openmetrics): (&str, bool),
    metrics: &Metrics,
    handle: &NodeHandle,
    executor: &Executor,
) -> Option<(&'static str, &'static str, String)> {
    let mut words = line.split_ascii_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    Some(match (method, path) {
        ("GET", "/metrics") if openmetrics => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.page(handle, executor).await?,
        ),
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            text_004(&metrics.page(handle, executor).await?),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "p2pa serves /metrics only\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET /metrics\n".to_owned(),
        ),
    })
}

/// Serves `/metrics` on `listener` until the node stops.
pub async fn serve(
    listener: Async<TcpListener>,
    metrics: Metrics,
    handle: &NodeHandle,
    executor: Executor,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            Timer::after(Duration::from_millis(100)).await; // out of descriptors, say
            continue;
        };
        let line = futures_lite::future::or(read_head(&mut stream), async {
            Timer::after(CLIENT_TIMEOUT).await;
            None
        })
        .await;
        let Some((line, openmetrics)) = line else {
            continue;
        };
        let asked = (line.as_str(), openmetrics);
        let Some((status, kind, body)) = answer(asked, &metrics, handle, &executor).await else {
            return; // the node stopped
        };
        let mut reply = String::with_capacity(body.len().saturating_add(160));
        let _ = write!(
            reply,
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        futures_lite::future::or(
            async {
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.flush().await;
            },
            async {
                Timer::after(CLIENT_TIMEOUT).await;
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_becomes_the_0_0_4_text_format() {
        let om = "# HELP p2pa_tasks_finished Tasks this node finished.\n\
                  # TYPE p2pa_tasks_finished counter\n\
                  p2pa_tasks_finished_total{kind=\"echo\"} 3\n\
                  # HELP p2pa_paused Whether paused.\n\
                  # TYPE p2pa_paused gauge\n\
                  p2pa_paused 0\n\
                  # TYPE p2pa_d_seconds histogram\n\
                  # UNIT p2pa_d_seconds seconds\n\
                  p2pa_d_seconds_bucket{le=\"+Inf\"} 1\n\
                  # EOF\n";
        let text = text_004(om);
        assert_eq!(
            text,
            "# HELP p2pa_tasks_finished_total Tasks this node finished.\n\
             # TYPE p2pa_tasks_finished_total counter\n\
             p2pa_tasks_finished_total{kind=\"echo\"} 3\n\
             # HELP p2pa_paused Whether paused.\n\
             # TYPE p2pa_paused gauge\n\
             p2pa_paused 0\n\
             # TYPE p2pa_d_seconds histogram\n\
             p2pa_d_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }
}
