//! `p2pa batch`: many tasks from a JSONL file, spread over all peers, results
//! appended to a JSONL file that doubles as the journal: a killed and restarted
//! batch skips the lines already in it, so no result is lost or written twice.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_executor::LocalExecutor;
use clap::Args;
use p2pa_node::core::{Hashed, TaskOutcome, TaskRequest};
use p2pa_node::io::NodeHandle;
use p2pa_node::protocol::{NodeId, TaskKind, TaskStatus};

mod distinct;
mod feed;
mod group;
mod line;
mod progress;
mod stack;

pub use line::{result_line, ResultLine};

pub use crate::inputs::{read_inputs, Item};
pub use progress::progress;

use crate::journal::{self, Stamp};
use crate::{exit, CliError, CliResult, NetArgs};

#[derive(Debug, Args)]
#[command(after_help = "\
Input: one task per line, either a JSON string (\"hello\") or an object with an
\"input\" string ({\"input\": \"hello\"}). For infer, \"input\" is a tensor:
[x, …] (one row), [[…], …] (rows) or {\"shape\": [..], \"f32\": [..]} (or f64,
f16, i64, i32, u8, bool), or the name of a .npy, .npz or .json file (relative
to the inputs file), read when its task is sent (files of 64 KiB or less are
read once, up front); other keys (such as \"label\") are ignored. Blank lines
are skipped. Every input's names, dtypes and shapes (a .npy file's header and
length) are checked against the model file before anything is sent.
Output: one JSON object per task, in completion order, with \"line\" (1-based
input line), task_id, status, worker, output (or output_hex), elapsed_ms,
attempts, the worker's signed receipt, and the task's kind, model and input
hash. Re-running the same command resumes: lines completed in the output are
not run again (failed ones with --retry-failed); an output file of another
batch (other inputs, kind or model) is refused. Exit 1 while any line has not
completed.")]
pub struct BatchArgs {
    /// Task kind for every line
    #[arg(long, value_parser = crate::parse_kind)]
    pub kind: TaskKind,
    /// JSONL file of inputs
    #[arg(long, value_name = "FILE.jsonl")]
    pub inputs: PathBuf,
    /// JSONL file of results (appended; also the resume journal)
    #[arg(long, value_name = "RESULTS.jsonl")]
    pub out: PathBuf,
    /// Tasks in flight at once
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub concurrency: usize,
    /// Seconds per task, retries included
    #[arg(long, default_value_t = 30, value_name = "S")]
    pub timeout: u64,
    /// Milliseconds to look for workers before starting
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    pub wait: u64,
    /// Use only the node at this address
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::parse_host_port)]
    pub peer: Option<SocketAddr>,
    /// Model for infer: a hash from `p2pa model add`, or an .onnx file
    #[arg(long, value_name = "HASH|FILE")]
    pub model: Option<String>,
    /// Run each task on K distinct workers and compare their outputs (labels
    /// exactly, floats within 1e-4); disagreements name the dissenting worker
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub redundancy: u16,
    /// Run again the lines whose last result did not complete
    #[arg(long)]
    pub retry_failed: bool,
    /// With --redundancy: allow the K workers of a task to share a host (one
    /// machine with several keys could make a wrong answer look agreed; for
    /// trying redundancy on one machine only); the same as --distinct key
    #[arg(long, requires = "redundancy", conflicts_with = "distinct")]
    pub same_host: bool,
    /// With --redundancy: what makes the K workers of a task distinct
    /// (default: allowlist with --operators, else subnet where the pool has
    /// K subnets, else host). Keys and addresses cost an attacker little;
    /// only operators you name are independent
    #[arg(long, value_enum, requires = "redundancy", value_name = "BY")]
    pub distinct: Option<distinct::Distinct>,
    /// With --redundancy: who runs which worker, one `<node id> [operator]`
    /// per line (# comments; a key without a name is its own operator).
    /// Copies go to distinct operators; unlisted workers are not used
    #[arg(long, requires = "redundancy", value_name = "FILE")]
    pub operators: Option<PathBuf>,
    /// infer: write each result's output tensors as `DIR/<line>/<name>.npy`
    /// (the result line lists the files instead of the values)
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// infer: use only workers that run models on this engine
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<crate::engine::WorkerEngine>,
    /// infer: stack up to B consecutive lines of the same input shapes along
    /// axis 0 into one task, and split the outputs back per line (results,
    /// resume and receipts stay per line)
    #[arg(long, default_value_t = 1, value_name = "B", conflicts_with = "redundancy",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch_size: u16,
}

/// How to run the items of a batch.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: TaskKind,
    pub model: Option<[u8; 32]>,
    pub timeout: Duration,
    pub concurrency: usize,
    /// With more than one, each item runs on this many of `peers`, pinned.
    pub redundancy: usize,
    pub peers: Vec<NodeId>,
    /// Capability flags a worker must advertise (an engine).
    pub needs: u8,
    /// Lines stacked into one task at most (1: one task per line).
    pub batch_size: usize,
}

/// Runs `items` through `h`, `concurrency` at a time; calls `on_done` with
/// each item's outcomes (one, or `redundancy` on distinct workers).
pub async fn run_items(
    h: &NodeHandle,
    plan: &Plan,
    items: Vec<Item>,
    mut on_done: impl FnMut(&Item, Vec<TaskOutcome>),
) {
    let total = items.len();
    let queue = RefCell::new(items.into_iter().collect::<VecDeque<_>>());
    let (tx, rx) = async_channel::unbounded::<(Item, Vec<TaskOutcome>)>();
    let request = |input: Hashed, peer: Option<NodeId>| TaskRequest {
        kind: plan.kind,
        input,
        model: plan.model,
        timeout: plan.timeout,
        peer,
        needs: plan.needs,
    };
    let in_flight = std::cell::Cell::new(0usize);
    let stacking = std::cell::Cell::new(plan.batch_size > 1);
    let ex = LocalExecutor::new();
    let workers: Vec<_> = (0..plan.concurrency.max(1))
        .map(|_| {
            let tx = tx.clone();
            let (queue, request, in_flight) = (&queue, &request, &in_flight);
            let stacking = &stacking;
            ex.spawn(feed::worker(
                h, plan, queue, request, in_flight, stacking, tx,
            ))
        })
        .collect();
    drop(tx);
    ex.run(async {
        let mut seen = 0;
        while seen < total {
            match rx.recv().await {
                Ok((item, o)) => {
                    seen += 1;
                    on_done(&item, o);
                }
                Err(_) => break,
            }
        }
        for w in workers {
            let _ = w.await;
        }
    })
    .await;
}

/// Lines per task: `--batch-size`, or 1 (said once) for a model that fixes
/// its first dimension.
fn batch_size(a: &BatchArgs, check: Option<&crate::models::ModelCheck>) -> usize {
    let asked = usize::from(a.batch_size);
    match check.and_then(|c| c.fixed_batch()) {
        Some(fixed) if asked > 1 => {
            eprintln!("--batch-size: {fixed}; running one line per task");
            1
        }
        _ => asked,
    }
}

pub fn run(net: &NetArgs, data_dir: &Path, a: &BatchArgs) -> CliResult {
    let model = match (&a.model, a.kind) {
        (Some(m), _) => Some(crate::load_model(data_dir, m)?),
        (None, TaskKind::Infer) => {
            return Err(CliError::usage("an infer batch needs --model HASH|FILE"))
        }
        (None, _) => None,
    };
    let check = match (model.as_deref(), a.model.as_deref()) {
        (Some(bytes), Some(what)) if a.kind == TaskKind::Infer => {
            Some(crate::models::ModelCheck::new(bytes, what)?)
        }
        _ => None,
    };
    let mut items = read_inputs(&a.inputs, a.kind, check.as_ref())?;
    let batch_size = batch_size(a, check.as_ref());
    refuse_same_file(a)?;
    let model_hash = model.as_deref().map(p2pa_node::core::sha256);
    let done = journal::read(&a.out)?;
    // Only lines with a result are hashed now (a file's input is otherwise
    // hashed once, when its task is sent).
    let mut stamps: BTreeMap<usize, Stamp> = BTreeMap::new();
    for i in items.iter_mut().filter(|i| done.contains_key(&i.line)) {
        i.hash_now()
            .map_err(|e| CliError::usage(format!("line {}: {e}", i.line)))?;
        stamps.insert(i.line, Stamp::of(a.kind, model_hash, i));
    }
    journal::check_same_batch(&a.out, &done, &stamps)?;
    let skip = |i: &Item| {
        done.get(&i.line)
            .is_some_and(|e| e.completed || !a.retry_failed)
    };
    let todo: Vec<Item> = items.iter().filter(|i| !skip(i)).cloned().collect();
    if !done.is_empty() {
        eprintln!(
            "resuming: {} of {} tasks already in {}",
            items.len() - todo.len(),
            items.len(),
            a.out.display()
        );
    }
    if todo.is_empty() {
        let failed = done.values().filter(|e| !e.completed).count();
        if failed > 0 {
            eprintln!(
                "nothing to run, but {failed} line(s) of {} did not complete; run again with --retry-failed",
                a.out.display()
            );
            return Ok(exit::TASK_FAILED);
        }
        eprintln!(
            "nothing to do: every line has a result in {}",
            a.out.display()
        );
        return Ok(exit::OK);
    }
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", a.out.display())))?;
    let earlier_failures = done
        .iter()
        .filter(|(line, e)| !e.completed && !todo.iter().any(|i| i.line == **line))
        .count();
    let (h, mut node) = crate::requester(net, a.peer, data_dir)?;
    let code = node.block_on(async {
        let result = run_batch(&h, a, model, (todo, batch_size), model_hash, &mut out).await;
        h.shutdown().await;
        result
    })?;
    if code == exit::OK && earlier_failures > 0 {
        eprintln!(
            "{earlier_failures} earlier line(s) did not complete; run again with --retry-failed"
        );
        return Ok(exit::TASK_FAILED);
    }
    Ok(code)
}

/// Refuses `--out` that is the inputs file (results would be appended to
/// the inputs).
fn refuse_same_file(a: &BatchArgs) -> Result<(), CliError> {
    let same = match (a.inputs.canonicalize(), a.out.canonicalize()) {
        (Ok(i), Ok(o)) => i == o,
        _ => a.inputs == a.out,
    };
    if same {
        return Err(CliError::usage(format!(
            "--out {} is the inputs file; give the results their own file",
            a.out.display()
        )));
    }
    Ok(())
}

/// Waits for workers that run the batch's kind: at least one within
/// `--wait` (K with `--redundancy K`), then up to 300 ms more for the rest
/// of the LAN to answer (`NodeHandle::settle_workers`: less once every
/// peer found has a session), so the work spreads over all of them.
/// With `--redundancy K`: one worker per group of the distinctness that
/// holds (named in each result line).
async fn find_workers(
    h: &NodeHandle,
    a: &BatchArgs,
) -> Result<(Vec<NodeId>, Option<&'static str>), CliError> {
    let k = usize::from(a.redundancy);
    let needs = crate::engine::needs(a.engine);
    let ops = a
        .operators
        .as_deref()
        .map(distinct::Operators::read)
        .transpose()?;
    let started = std::time::Instant::now();
    let first = h
        .wait_for_workers(Some(a.kind), needs, k, Duration::from_millis(a.wait))
        .await;
    if first.is_empty() {
        let on = a
            .engine
            .map(|e| format!(" on {}", e.name()))
            .unwrap_or_default();
        return Err(CliError::network(format!(
            "no peers found that run `{}`{on} within {} ms; start one with `p2pa node`, or pass --peer",
            a.kind, a.wait
        )));
    }
    if k <= 1 {
        let peers = h
            .settle_workers(Some(a.kind), needs, Duration::from_millis(300))
            .await;
        return Ok((peers.iter().map(|p| p.id).collect(), None));
    }
    let asked = a
        .distinct
        .or(a.same_host.then_some(distinct::Distinct::Key));
    // K distinct workers may take longer to answer than K workers: look
    // again, 300 ms at a time, until --wait has passed.
    let deadline = started + Duration::from_millis(a.wait);
    let (chosen, by) = loop {
        let peers = h
            .wait_for_workers(Some(a.kind), needs, usize::MAX, Duration::from_millis(300))
            .await;
        match distinct::pick(&peers, k, asked, ops.as_ref()) {
            Ok(picked) => break picked,
            Err(e) if std::time::Instant::now() >= deadline => {
                let e = if peers.len() < k {
                    format!(
                        "--redundancy {k} needs {k} workers that run `{}`; found {}",
                        a.kind,
                        peers.len()
                    )
                } else {
                    e
                };
                return Err(CliError::network(e));
            }
            Err(_) => {}
        }
    };
    let note = match by {
        distinct::Distinct::Allowlist => "",
        _ => " (not proof of distinct operators: name them with --operators FILE)",
    };
    eprintln!(
        "redundancy {k}: each task on {k} of {} workers distinct by {}{note}",
        chosen.len(),
        by.name()
    );
    Ok((chosen, Some(by.name())))
}

/// Counts of a batch run, as its results arrive.
#[derive(Default)]
struct Counts {
    finished: u64,
    failed: u64,
    disagreements: u64,
    write_err: Option<std::io::Error>,
    /// Tasks each worker completed (short id → count).
    per_worker: BTreeMap<String, u64>,
    /// With redundancy: what its workers are distinct by (in each line).
    distinct: Option<&'static str>,
}

impl Counts {
    /// Records one item's outcomes and appends its result line to `out`.
    fn record(
        &mut self,
        item: &Item,
        outcomes: Vec<TaskOutcome>,
        infer: bool,
        stamp: Option<&Stamp>,
        out: &mut File,
        out_dir: Option<&Path>,
    ) {
        self.finished += 1;
        if outcomes.iter().any(|o| o.status != TaskStatus::Completed) {
            self.failed += 1;
        }
        for o in outcomes
            .iter()
            .filter(|o| o.status == TaskStatus::Completed)
        {
            let w = o.worker.map_or("-".to_owned(), |w| w.short().to_string());
            *self.per_worker.entry(w).or_default() += 1;
        }
        let mut line = result_line(item, outcomes, infer, stamp, out_dir);
        if let (Some(d), Some(r)) = (self.distinct, line.fields.get_mut("redundancy")) {
            r["distinct"] = serde_json::json!(d);
        }
        if !line.agree {
            self.disagreements += 1;
            eprintln!(
                "line {}: workers disagree; dissenters: {}",
                item.line, line.fields["redundancy"]["dissenters"]
            );
        }
        // One write per result line: a kill leaves whole lines only (and
        // at worst a torn last line, which the journal reader drops).
        let line = line.bytes();
        if let Err(e) = out.write_all(&line).and_then(|_| out.flush()) {
            self.write_err.get_or_insert(e);
        }
    }

    /// The batch's exit code, with what went wrong said on stderr.
    fn verdict(self, total: u64, out: &Path) -> CliResult {
        let Self {
            finished,
            failed,
            disagreements,
            write_err,
            per_worker,
            ..
        } = self;
        if !per_worker.is_empty() {
            let list: Vec<String> = per_worker.iter().map(|(w, n)| format!("{w} {n}")).collect();
            eprintln!("tasks completed per worker: {}", list.join(", "));
        }
        if let Some(e) = write_err {
            return Err(CliError::usage(format!(
                "writing {} failed: {e}",
                out.display()
            )));
        }
        if finished < total {
            return Err(CliError::network(format!(
                "the node stopped after {finished} of {total} tasks; run again to resume"
            )));
        }
        if failed > 0 || disagreements > 0 {
            eprintln!(
                "{failed} of {total} tasks did not complete and {disagreements} had disagreeing workers; see \"status\" in {}",
                out.display()
            );
            return Ok(exit::TASK_FAILED);
        }
        Ok(exit::OK)
    }
}

async fn run_batch(
    h: &NodeHandle,
    a: &BatchArgs,
    model: Option<Vec<u8>>,
    (todo, batch_size): (Vec<Item>, usize),
    model_hash: Option<[u8; 32]>,
    out: &mut File,
) -> CliResult {
    let model = crate::provide(h, model).await?;
    let (peers, distinct) = find_workers(h, a).await?;
    let n = peers.len();
    eprintln!(
        "{} tasks over {n} peer{}",
        todo.len(),
        if n == 1 { "" } else { "s" }
    );
    let plan = Plan {
        kind: a.kind,
        model,
        timeout: Duration::from_secs(a.timeout),
        concurrency: a.concurrency,
        redundancy: usize::from(a.redundancy),
        peers,
        needs: crate::engine::needs(a.engine),
        batch_size,
    };
    let total = todo.len() as u64;
    let mut bar = progress(total);
    let mut counts = Counts {
        distinct,
        ..Counts::default()
    };
    let infer = a.kind == TaskKind::Infer;
    run_items(h, &plan, todo, |item, outcomes| {
        let dir = a.out_dir.as_deref();
        let stamp = Stamp::of(a.kind, model_hash, item);
        counts.record(item, outcomes, infer, Some(&stamp), out, dir);
        bar.tick(counts.finished, counts.failed);
    })
    .await;
    bar.finish(counts.finished, counts.failed);
    counts.verdict(total, &a.out)
}
