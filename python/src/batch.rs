//! Many tasks at once (`sess.map`, `imap_unordered`): the CLI's batch
//! runner on a thread of its own, outcomes handed to Python as they
//! arrive, and, with a journal, the results file of `p2pa batch` (lines
//! completed in it are not run again; `p2pa verify` checks it).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use p2pa_cli::batch::{self as cli_batch, Item, Plan};
use p2pa_cli::engine::WorkerEngine;
use p2pa_cli::journal::{self, Stamp};
use p2pa_node::protocol::{TaskKind, TaskStatus};
use pyo3::prelude::*;

use crate::model::Model;
use crate::outcome::{seconds, Outcome};
use crate::{py_err, Error, InputError};

/// What a batch needs of the node it runs on (the pool's `Node` is one).
pub trait Pool {
    /// The node's handle, unless it was closed.
    fn live(&self) -> PyResult<&std::sync::Arc<p2pa_node::io::NodeHandle>>;
    /// Offers `model` to workers.
    fn offer(&self, py: Python<'_>, model: &Model) -> PyResult<()>;
    /// Waits up to `wait_s` for one worker of `kind` on `engine`, then
    /// `settle` more for the rest; how many it found (or NoPeersError).
    fn workers(
        &self,
        py: Python<'_>,
        kind: TaskKind,
        engine: Option<WorkerEngine>,
        wait_s: f64,
        settle: Duration,
    ) -> PyResult<usize>;
}

/// What a batch runs, besides its inputs.
pub struct Spec {
    pub kind: TaskKind,
    pub engine: Option<WorkerEngine>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub batch_size: usize,
    pub journal: Option<PathBuf>,
}

/// The longest wait for the rest of the pool after the first worker (as
/// `p2pa batch` does; less once every peer found has a session), so the
/// work spreads over all of it.
const SETTLE: Duration = Duration::from_millis(300);

/// A running batch. `next(timeout)` hands out outcomes as they arrive;
/// `cancel()` withdraws what has not finished (its workers are told).
#[pyclass(frozen, module = "p2pa._native")]
pub struct Batch {
    outcomes: async_channel::Receiver<Result<Outcome, String>>,
    cancel: async_channel::Sender<()>,
    /// Tasks in all (resumed ones included).
    #[pyo3(get)]
    total: usize,
    /// Tasks read back from the journal instead of run.
    #[pyo3(get)]
    resumed: usize,
    /// Workers found when it started.
    #[pyo3(get)]
    workers: usize,
}

impl Batch {
    pub fn start(
        py: Python<'_>,
        node: &dyn Pool,
        model: Option<&Model>,
        inputs: Vec<Vec<u8>>,
        spec: Spec,
        wait_s: f64,
    ) -> PyResult<Self> {
        if spec.kind == TaskKind::Infer && model.is_none() {
            return Err(InputError::new_err("an infer batch needs a model"));
        }
        let total = inputs.len();
        let items: Vec<Item> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| Item::new(i.saturating_add(1), input))
            .collect();
        let model_hash = model.map(|m| m.hash);
        let (tx, rx) = async_channel::unbounded();
        let (todo, resumed, out) = match &spec.journal {
            Some(path) => {
                let (todo, done) = resume(path, spec.kind, model_hash, items)?;
                let resumed = done.len();
                for o in done {
                    let _ = tx.try_send(Ok(o));
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::new_err(format!("cannot write {}: {e}", path.display())))?;
                (todo, resumed, Some(file))
            }
            None => (items, 0, None),
        };
        let (cancel, cancelled) = async_channel::bounded::<()>(1);
        let mut workers = 0;
        if !todo.is_empty() {
            if let Some(m) = model {
                node.offer(py, m)?;
            }
            workers = node.workers(py, spec.kind, spec.engine, wait_s, SETTLE)?;
            let plan = Plan {
                kind: spec.kind,
                model: model_hash,
                timeout: spec.timeout,
                concurrency: spec.concurrency,
                redundancy: 1,
                peers: Vec::new(),
                needs: p2pa_cli::engine::needs(spec.engine),
                batch_size: spec.batch_size,
            };
            let run = Run {
                plan,
                todo,
                out,
                journal: spec.journal.clone(),
                outcomes: tx,
                cancelled,
            };
            run.start(node.live()?)?;
        }
        Ok(Self {
            outcomes: rx,
            cancel,
            total,
            resumed,
            workers,
        })
    }
}

/// What the node's thread runs for a batch.
struct Run {
    plan: Plan,
    todo: Vec<Item>,
    out: Option<std::fs::File>,
    journal: Option<PathBuf>,
    outcomes: async_channel::Sender<Result<Outcome, String>>,
    cancelled: async_channel::Receiver<()>,
}

impl Run {
    /// Starts the batch on the node's thread: its thousands of requests and
    /// outcomes cross no thread (the outcomes for Python do, in bulk).
    fn start(self, node: &std::sync::Arc<p2pa_node::io::NodeHandle>) -> PyResult<()> {
        let h = node.clone();
        let started = node.run_on_node(move || {
            Box::pin(async move {
                let Self {
                    plan,
                    todo,
                    mut out,
                    journal,
                    outcomes,
                    cancelled,
                } = self;
                let model = plan.model;
                let run = cli_batch::run_items(&h, &plan, todo, |item, done| {
                    let sent = deliver(item, done, &plan, model, out.as_mut(), journal.as_deref());
                    let _ = outcomes.try_send(sent);
                });
                futures_lite::future::or(run, async {
                    let _ = cancelled.recv().await;
                })
                .await;
            })
        });
        if started {
            Ok(())
        } else {
            Err(Error::new_err("this pool's node has stopped"))
        }
    }
}

/// One item's outcome for Python, its result line written to the journal.
fn deliver(
    item: &Item,
    outcomes: Vec<p2pa_node::core::TaskOutcome>,
    plan: &Plan,
    model: Option<[u8; 32]>,
    out: Option<&mut std::fs::File>,
    path: Option<&Path>,
) -> Result<Outcome, String> {
    let index = item.line.saturating_sub(1);
    let task_output = item.batched.as_ref().map(|b| b.task_output.as_slice());
    let first = outcomes.first().cloned();
    if let (Some(file), Some(path)) = (out, path) {
        let stamp = Stamp::of(plan.kind, model, item);
        let infer = plan.kind == TaskKind::Infer;
        let line = cli_batch::result_line(item, outcomes, infer, Some(&stamp), None);
        file.write_all(&line.bytes())
            .and_then(|_| file.flush())
            .map_err(|e| format!("writing {} failed: {e}", path.display()))?;
    }
    let o = first.ok_or("a task ended with no outcome")?;
    Ok(Outcome::new(index, o, task_output))
}

/// Splits `items` into those to run and the outcomes a journal already
/// holds (completed lines, read back); refuses a journal of another batch.
fn resume(
    path: &Path,
    kind: TaskKind,
    model: Option<[u8; 32]>,
    items: Vec<Item>,
) -> PyResult<(Vec<Item>, Vec<Outcome>)> {
    let stamps: BTreeMap<usize, Stamp> = items
        .iter()
        .map(|i| (i.line, Stamp::of(kind, model, i)))
        .collect();
    let entries = journal::read(path).map_err(py_err)?;
    journal::check_same_batch(path, &entries, &stamps).map_err(py_err)?;
    let lines = completed_lines(path)?;
    let mut todo = Vec::new();
    let mut done = Vec::new();
    for item in items {
        let kept = entries
            .get(&item.line)
            .filter(|e| e.completed)
            .and_then(|_| lines.get(&item.line));
        match kept.map(|v| read_back(item.line, v)) {
            Some(Ok(o)) => done.push(o),
            Some(Err(e)) => {
                return Err(Error::new_err(format!(
                    "{}: line {}: {e}",
                    path.display(),
                    item.line
                )))
            }
            None => todo.push(item),
        }
    }
    Ok((todo, done))
}

/// The last completed result line of each input line.
fn completed_lines(path: &Path) -> PyResult<BTreeMap<usize, serde_json::Value>> {
    let mut lines = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(lines);
    };
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue; // journal::read has refused what is not a result line
        };
        let line = v.get("line").and_then(serde_json::Value::as_u64);
        if let (Some(n), Some("completed")) =
            (line, v.get("status").and_then(serde_json::Value::as_str))
        {
            lines.insert(usize::try_from(n).unwrap_or(usize::MAX), v);
        }
    }
    Ok(lines)
}

/// A completed result line as the outcome it recorded.
fn read_back(line: usize, v: &serde_json::Value) -> Result<Outcome, String> {
    let output = match (v.get("outputs"), v.get("output"), v.get("output_hex")) {
        (Some(t), _, _) => {
            p2pa_node::task::tensor::encode(&p2pa_cli::tensors::tensors_from_json(t)?)
        }
        (_, Some(serde_json::Value::String(s)), _) => s.clone().into_bytes(),
        (_, _, Some(serde_json::Value::String(h))) => {
            p2pa_node::hex::parse_hex(h).ok_or("output_hex is not hex")?
        }
        _ => return Err("a completed line without its output (written with out_dir?)".into()),
    };
    let text = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    Ok(Outcome {
        index: line.saturating_sub(1),
        status: TaskStatus::Completed.name(),
        task_id: text("task_id").and_then(|t| t.parse().ok()).unwrap_or(0),
        worker: text("worker"),
        error: None,
        elapsed_ms: v
            .get("elapsed_ms")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0),
        attempts: v
            .get("attempts")
            .and_then(serde_json::Value::as_u64)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0),
        receipt: v.get("receipt").map(ToString::to_string),
        resumed: true,
        output,
    })
}

#[pymethods]
impl Batch {
    /// The next outcome, waiting up to `timeout` seconds (None when none
    /// came). Raises Error when the batch ended before all its tasks did
    /// (the node stopped).
    fn next(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<Outcome>> {
        let t = seconds(timeout);
        let rx = &self.outcomes;
        let got = py.detach(|| {
            async_io::block_on(futures_lite::future::or(
                async { Some(rx.recv().await) },
                async {
                    async_io::Timer::after(t).await;
                    None
                },
            ))
        });
        match got {
            Some(Ok(Ok(o))) => Ok(Some(o)),
            Some(Ok(Err(e))) => Err(Error::new_err(e)),
            None => Ok(None),
            Some(Err(_)) => Err(Error::new_err(
                "the batch stopped before all its tasks ended (the pool was closed, or cancel() was called)",
            )),
        }
    }

    /// The outcomes that have arrived, at most `max`, after waiting up to
    /// `timeout` seconds for the first (empty when none came): one call,
    /// one GIL release, for many results.
    fn next_many(&self, py: Python<'_>, timeout: f64, max: usize) -> PyResult<Vec<Outcome>> {
        let Some(first) = self.next(py, timeout)? else {
            return Ok(Vec::new());
        };
        let mut got = vec![first];
        while got.len() < max {
            match self.outcomes.try_recv() {
                Ok(Ok(o)) => got.push(o),
                Ok(Err(e)) => return Err(Error::new_err(e)),
                Err(_) => break,
            }
        }
        Ok(got)
    }

    /// Withdraws every task not yet finished; their workers are told to stop.
    fn cancel(&self) {
        let _ = self.cancel.try_send(());
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let _ = self.cancel.try_send(());
    }
}
