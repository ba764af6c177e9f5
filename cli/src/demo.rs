//! `p2pa demo`: N local nodes on 127.0.0.1 with host-local multicast (TTL 0)
//! and no mDNS; shows discovery, runs a batch across them, kills one worker
//! mid-batch to show the retry, prints a summary, and cleans up every process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use p2pa_node::measure::percentile;
use p2pa_node::protocol::{NodeId, TaskKind, TaskStatus};

use crate::batch::{run_items, Item, Plan};
use crate::{exit, CliError, CliResult, NetArgs};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Worker nodes to start
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=16))]
    pub nodes: u16,
    /// Tasks in the batch (default: the 450 images of the digits test set;
    /// 240 `sleep` tasks in a build without inference)
    #[arg(long, value_name = "N")]
    pub tasks: Option<usize>,
    /// Milliseconds per `sleep` task (used only without inference)
    #[arg(long, default_value_t = 25, value_name = "MS")]
    pub task_ms: u64,
    /// Do not kill a worker mid-batch
    #[arg(long)]
    pub no_kill: bool,
}

struct Worker {
    child: Child,
    id: String,
    addr: String,
}

/// Kills and reaps every child and removes the scratch directory, however
/// the demo ends.
struct Cleanup {
    workers: Vec<Worker>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_worker(
    exe: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
    i: u16,
) -> Result<Worker, CliError> {
    let mut child = Command::new(exe)
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--multicast-ttl",
            "0",
            "--no-mdns",
            "--json",
            "--workers",
            "2",
        ])
        .arg("--multicast-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(dir.join(format!("node{i}")))
        .env_remove("P2PA_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| CliError::network(format!("cannot start node {i}: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| CliError::network("no stdout from node"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Forward the first line, then keep draining so the node never blocks.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(15));
    let parsed = first
        .ok()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok());
    let (id, addr) = match parsed {
        Some(v) if v["event"] == "listening" => (
            v["node_id"].as_str().unwrap_or_default().to_owned(),
            v["addr"].as_str().unwrap_or_default().to_owned(),
        ),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CliError::network(format!(
                "node {i} did not start (no `listening` line)"
            )));
        }
    };
    Ok(Worker { child, id, addr })
}

/// Starts `a.nodes` worker processes; they are stopped when the returned
/// value drops.
fn start_nodes(a: &DemoArgs, dir: &std::path::Path, port: u16) -> Result<Cleanup, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::network(format!("cannot find own binary: {e}")))?;
    let mut cleanup = Cleanup {
        workers: Vec::new(),
        dir: dir.to_path_buf(),
    };
    for i in 1..=a.nodes {
        let w = start_worker(&exe, dir, port, i)?;
        say!(
            "  node {i}: {}  {}  pid {}",
            &w.id.get(..8).unwrap_or(&w.id),
            w.addr,
            w.child.id()
        );
        cleanup.workers.push(w);
    }
    Ok(cleanup)
}

/// What the batch did, counted as results come in.
#[derive(Default)]
struct Tally {
    results: usize,
    completed: usize,
    retried: usize,
    correct: usize,
    latencies: Vec<f64>,
    per_node: BTreeMap<String, usize>,
}

impl Tally {
    fn record(&mut self, o: &p2pa_node::core::TaskOutcome, label: Option<i64>) {
        self.results += 1;
        if o.status == TaskStatus::Completed {
            self.completed += 1;
            let predicted = crate::tensors::to_json(&o.output).and_then(|(_, p)| p);
            if predicted.is_some() && predicted == label.map(serde_json::Value::from) {
                self.correct += 1;
            }
        }
        if o.attempts > 1 {
            self.retried += 1;
        }
        self.latencies.push(o.elapsed.as_secs_f64() * 1e3);
        let who = o
            .worker
            .map_or("-".to_owned(), |w: NodeId| w.short().to_string());
        *self.per_node.entry(who).or_default() += 1;
    }

    fn print(&mut self, total: usize, labels: usize, wall: f64, served: u64) {
        self.latencies.sort_by(f64::total_cmp);
        let (completed, correct) = (self.completed, self.correct);
        say!("\nsummary");
        say!(
            "  tasks      {completed}/{total} completed ({:.1} %), each reported once; {} needed a retry",
            100.0 * completed as f64 / total.max(1) as f64,
            self.retried
        );
        say!(
            "  throughput {:.0} tasks/s over {wall:.2} s",
            self.results as f64 / wall.max(1e-9)
        );
        if labels > 0 {
            say!(
                "  accuracy   {correct}/{labels} = {:.1} % of the digits test set classified correctly",
                100.0 * correct as f64 / labels as f64
            );
            say!("  model      sent peer to peer in chunks: {served} bytes served to the nodes that lacked it");
        }
        say!(
            "  latency    p50 {:.1} ms, p99 {:.1} ms",
            percentile(&self.latencies, 0.5),
            percentile(&self.latencies, 0.99)
        );
        let per_node: Vec<String> = self
            .per_node
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        say!("  per node   {}", per_node.join(", "));
    }
}

/// Kills the first worker (the demo's failure), with a line saying so.
fn kill_first(cleanup: &mut Cleanup, results: usize) {
    if let Some(w) = cleanup.workers.first_mut() {
        let _ = w.child.kill();
        let _ = w.child.wait();
        say!(
            "\n  killed node 1 ({}, kill -9) after {results} results: its tasks in flight go to the other nodes",
            w.id.get(..8).unwrap_or(&w.id)
        );
    }
}

/// Runs the batch on the discovered nodes; returns the tally and the
/// batch's wall time.
async fn run_batch(
    h: &p2pa_node::io::NodeHandle,
    a: &DemoArgs,
    cleanup: &mut Cleanup,
    work: Workload,
    model: Option<[u8; 32]>,
) -> (Tally, f64) {
    let total = work.items.len();
    let kill_at = if a.no_kill { usize::MAX } else { total / 3 };
    let mut tally = Tally::default();
    let mut progress = crate::batch::progress(total as u64);
    let start = Instant::now();
    let plan = Plan {
        kind: work.kind,
        model,
        timeout: Duration::from_secs(30),
        concurrency: usize::from(a.nodes) * 4,
        redundancy: 1,
        peers: Vec::new(),
        needs: 0,
        batch_size: 1,
    };
    let labels = &work.labels;
    run_items(h, &plan, work.items, |item, outcomes| {
        let Some(o) = outcomes.into_iter().next() else {
            return;
        };
        tally.record(&o, labels.get(item.line.wrapping_sub(1)).copied());
        let failed = (tally.results - tally.completed) as u64;
        progress.tick(tally.results as u64, failed);
        if tally.results == kill_at {
            kill_first(cleanup, tally.results);
        }
    })
    .await;
    progress.finish(
        tally.results as u64,
        (tally.results - tally.completed) as u64,
    );
    (tally, start.elapsed().as_secs_f64())
}

pub fn run(a: &DemoArgs) -> CliResult {
    let t0 = Instant::now();
    let mut seed = [0u8; 2];
    getrandom::fill(&mut seed).map_err(|e| CliError::network(e.to_string()))?;
    let port = 20_000 + u16::from_le_bytes(seed) % 20_000;
    let dir = std::env::temp_dir().join(format!("p2pa-demo-{}", std::process::id()));
    say!(
        "p2pa demo: {} nodes on 127.0.0.1, host-local multicast (TTL 0, group port {port}), no mDNS",
        a.nodes
    );
    let mut cleanup = start_nodes(a, &dir, port)?;
    let net = NetArgs {
        multicast_ttl: 0,
        multicast_port: port,
        multicast_group: p2pa_node::io::udp::DEFAULT_GROUP,
        interface: None,
        no_mdns: true,
        use_identity: false,
        network_key: None,
        cipher: crate::net::Cipher::Auto,
    };
    let (h, mut node) = crate::requester(&net, None, &dir)?;
    let n = usize::from(a.nodes);
    node.block_on(async {
        let start = Instant::now();
        let peers = h
            .wait_for_peers(Some(TaskKind::Sleep), n, Duration::from_secs(10))
            .await;
        if peers.len() < n {
            h.shutdown().await;
            let found = peers.len();
            return Err(CliError::network(format!("found only {found} of {n} nodes in 10 s")));
        }
        say!(
            "discovery: found and authenticated all {n} nodes in {:.0} ms (signed beacons, then a mutual handshake)",
            start.elapsed().as_secs_f64() * 1e3
        );
        let work = Workload::new(a)?;
        let model = crate::provide(&h, work.model.clone()).await?;
        say!("batch: {}", work.describe);
        let (total, labels) = (work.items.len(), work.labels.len());
        let (mut tally, wall) = run_batch(&h, a, &mut cleanup, work, model).await;
        let served = h.stats().await.map(|s| s.blob_bytes_served).unwrap_or(0);
        h.shutdown().await;
        tally.print(total, labels, wall, served);
        say!(
            "  total time {:.1} s; all node processes stopped",
            t0.elapsed().as_secs_f64()
        );
        Ok(if tally.completed == total {
            exit::OK
        } else {
            exit::TASK_FAILED
        })
    })
}

/// The shipped model and test split, built into the binary so the demo runs
/// from anywhere.
#[cfg(feature = "onnx")]
const DIGITS_MODEL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/digits.onnx"
));
#[cfg(feature = "onnx")]
const DIGITS_TEST: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/digits_test.jsonl"
));

/// What the demo batch runs.
struct Workload {
    kind: TaskKind,
    model: Option<Vec<u8>>,
    items: Vec<Item>,
    /// Expected class per item (inference only).
    labels: Vec<i64>,
    describe: String,
}

impl Workload {
    #[cfg(feature = "onnx")]
    fn new(a: &DemoArgs) -> Result<Self, CliError> {
        let mut items = Vec::new();
        let mut labels = Vec::new();
        for (i, line) in DIGITS_TEST
            .lines()
            .enumerate()
            .take(a.tasks.unwrap_or(usize::MAX))
        {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| CliError::usage(e.to_string()))?;
            let input = crate::tensors::from_json(&v["input"]).map_err(CliError::usage)?;
            items.push(Item::new(i + 1, input));
            labels.push(v["label"].as_i64().unwrap_or(-1));
        }
        Ok(Self {
            kind: TaskKind::Infer,
            model: Some(DIGITS_MODEL.to_vec()),
            describe: format!(
                "classify {} handwritten digits (8x8, scikit-learn test split) with a {} byte ONNX MLP; the nodes do not have the model yet",
                items.len(),
                DIGITS_MODEL.len()
            ),
            items,
            labels,
        })
    }

    #[cfg(not(feature = "onnx"))]
    fn new(a: &DemoArgs) -> Result<Self, CliError> {
        let n = a.tasks.unwrap_or(240);
        Ok(Self {
            kind: TaskKind::Sleep,
            model: None,
            items: (1..=n)
                .map(|line| Item::new(line, a.task_ms.to_string().into_bytes()))
                .collect(),
            labels: Vec::new(),
            describe: format!(
                "{n} `sleep` tasks of {} ms (built without inference)",
                a.task_ms
            ),
        })
    }
}
