//! `p2pa batch`: many tasks from a JSONL file, spread over all peers, results
//! appended to a JSONL file that doubles as the journal: a killed and restarted
//! batch skips the lines already in it, so no result is lost or written twice.

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use p2pa_node::core::{TaskOutcome, TaskRequest};
use p2pa_node::io::NodeHandle;
use p2pa_node::protocol::{TaskKind, TaskStatus};
use smol::LocalExecutor;

use crate::{exit, output, CliError, CliResult, NetArgs};

#[derive(Debug, Args)]
#[command(after_help = "\
Input: one task per line, either a JSON string (\"hello\") or an object with an
\"input\" string ({\"input\": \"hello\"}). Blank lines are skipped.
Output: one JSON object per task, in completion order, with \"line\" (1-based
input line), task_id, status, worker, output (or output_hex), elapsed_ms,
attempts and the worker's signed receipt. Re-running the same command resumes:
lines already in the output are not run again.")]
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
    #[arg(long, value_name = "HOST:PORT")]
    pub peer: Option<SocketAddr>,
}

/// One task of a batch.
#[derive(Debug, Clone)]
pub struct Item {
    pub line: usize,
    pub input: Vec<u8>,
}

/// Reads the input file; a bad line is an error naming it.
pub fn read_inputs(path: &Path) -> Result<Vec<Item>, CliError> {
    let f = File::open(path)
        .map_err(|e| CliError::usage(format!("cannot read inputs {}: {e}", path.display())))?;
    let mut items = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| CliError::usage(format!("{}:{n}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad =
            |why: &str| CliError::usage(format!("{}:{n}: {why}; nothing was run", path.display()));
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(&format!("not JSON ({e})")))?;
        let text = match &v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => match o.get("input") {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => return Err(bad("expected an object with an \"input\" string")),
            },
            _ => {
                return Err(bad(
                    "expected a JSON string or an object with an \"input\" string",
                ))
            }
        };
        items.push(Item {
            line: n,
            input: text.into_bytes(),
        });
    }
    Ok(items)
}

/// Lines already in the results file; cuts off a half-written last line.
fn read_journal(path: &Path) -> Result<BTreeSet<usize>, CliError> {
    let mut done = BTreeSet::new();
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(done);
    };
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    if complete < bytes.len() {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        f.set_len(complete as u64)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        eprintln!(
            "note: dropped a half-written last line of {}",
            path.display()
        );
    }
    for line in bytes.get(..complete).unwrap_or(&[]).split(|b| *b == b'\n') {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            if let Some(n) = v.get("line").and_then(serde_json::Value::as_u64) {
                done.insert(n as usize);
            }
        }
    }
    Ok(done)
}

/// Runs `items` through `h`, `concurrency` at a time; calls `on_done` per outcome.
pub async fn run_items(
    h: &NodeHandle,
    kind: TaskKind,
    items: Vec<Item>,
    concurrency: usize,
    timeout: Duration,
    mut on_done: impl FnMut(&Item, TaskOutcome),
) {
    let total = items.len();
    let queue = RefCell::new(items.into_iter().collect::<VecDeque<_>>());
    let (tx, rx) = smol::channel::unbounded::<(Item, TaskOutcome)>();
    let ex = LocalExecutor::new();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let tx = tx.clone();
            let queue = &queue;
            ex.spawn(async move {
                loop {
                    let next = queue.borrow_mut().pop_front();
                    let Some(item) = next else { break };
                    let req = TaskRequest {
                        kind,
                        input: item.input.clone(),
                        model: None,
                        timeout,
                        peer: None,
                    };
                    match h.submit(req).await {
                        Ok(o) => {
                            if tx.send((item, o)).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            })
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
            w.await;
        }
    })
    .await;
}

pub fn run(net: &NetArgs, a: &BatchArgs) -> CliResult {
    let items = read_inputs(&a.inputs)?;
    let done = read_journal(&a.out)?;
    let todo: Vec<Item> = items
        .iter()
        .filter(|i| !done.contains(&i.line))
        .cloned()
        .collect();
    if !done.is_empty() {
        eprintln!(
            "resuming: {} of {} tasks already in {}",
            items.len() - todo.len(),
            items.len(),
            a.out.display()
        );
    }
    if todo.is_empty() {
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
    let h = crate::requester(net, a.peer)?;
    smol::block_on(async {
        let peers = crate::wait_for_peers(&h, Some(a.kind), 1, Duration::from_millis(a.wait)).await;
        if peers.is_empty() {
            h.shutdown().await;
            return Err(CliError::network(format!(
                "no peers found that run `{}` within {} ms; start one with `p2pa node`, or pass --peer",
                a.kind, a.wait
            )));
        }
        // Let the other nodes of the LAN answer too before spreading work.
        let peers =
            crate::wait_for_peers(&h, Some(a.kind), usize::MAX, Duration::from_millis(300)).await;
        eprintln!(
            "{} tasks over {} peer{}",
            todo.len(),
            peers.len(),
            if peers.len() == 1 { "" } else { "s" }
        );
        let total = todo.len() as u64;
        let mut bar = progress(total);
        let mut failed = 0u64;
        let mut write_err = None;
        let mut finished = 0u64;
        run_items(
            &h,
            a.kind,
            todo,
            a.concurrency,
            Duration::from_secs(a.timeout),
            |item, o| {
                finished += 1;
                if o.status != TaskStatus::Completed {
                    failed += 1;
                }
                let mut v = output::outcome_json(&o);
                v["line"] = serde_json::json!(item.line);
                if let Err(e) = writeln!(out, "{v}").and_then(|_| out.flush()) {
                    write_err.get_or_insert(e);
                }
                bar.tick(finished, failed);
            },
        )
        .await;
        bar.finish(finished, failed);
        h.shutdown().await;
        if let Some(e) = write_err {
            return Err(CliError::usage(format!(
                "writing {} failed: {e}",
                a.out.display()
            )));
        }
        if finished < total {
            return Err(CliError::network(format!(
                "the node stopped after {finished} of {total} tasks; run again to resume"
            )));
        }
        if failed > 0 {
            eprintln!(
                "{failed} of {total} tasks did not complete; see \"status\" and \"error\" in {}",
                a.out.display()
            );
            return Ok(exit::TASK_FAILED);
        }
        Ok(exit::OK)
    })
}

/// A progress bar on a terminal, plain lines every 10 % otherwise.
pub enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { total: u64, next: u64 },
}

pub fn progress(total: u64) -> Progress {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} tasks {per_sec} eta {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    } else {
        Progress::Lines {
            total,
            next: total.div_ceil(10).max(1),
        }
    }
}

impl Progress {
    pub fn tick(&mut self, done: u64, failed: u64) {
        match self {
            Self::Bar(b) => {
                b.set_position(done);
                if failed > 0 {
                    b.set_message(format!("{failed} failed"));
                }
            }
            Self::Lines { total, next } => {
                if done >= *next {
                    eprintln!("progress: {done}/{total} tasks ({failed} failed)");
                    *next = done + total.div_ceil(10).max(1);
                }
            }
        }
    }

    pub fn finish(&self, done: u64, failed: u64) {
        match self {
            Self::Bar(b) => b.finish_and_clear(),
            Self::Lines { total, .. } => eprintln!("done: {done}/{total} tasks ({failed} failed)"),
        }
    }
}
