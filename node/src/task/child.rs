//! Inference in a child process: a model from the network is untrusted code
//! in all but name (a valid ONNX file can divide by zero, index out of range
//! or ask for 100 GB inside the runtime), so the worker never loads one in its
//! own process. It runs children of its own binary (`p2pa infer-child`), each
//! kept alive and reused for the models it has loaded, with a memory limit
//! (`RLIMIT_AS`) and a CPU-time limit per task (`RLIMIT_CPU`, from the task's
//! deadline). A panic, abort, OOM or timeout ends that child only: its task
//! fails with the reason the child printed last, and the next task starts a
//! fresh child. A task whose requester gave up (cancel, timeout, session
//! gone) gets its child killed at once.
//!
//! Parent and child talk over the child's stdin/stdout with length-prefixed
//! frames (a pipe: no shared memory to set up or map, and the copy of a 10 MB
//! tensor costs ~1 ms, far below the inference):
//!
//! ```text
//! hello   := len: u32 LE, status: u8 (2 ready, 3 cannot start), text
//! request := len: u32 LE, model: [u8; 32], cpu_secs: u32 LE, input
//! reply   := len: u32 LE, status: u8 (0 completed, 1 failed), output
//! ```
//!
//! A child says `hello` once, when its engine is up: `ready` with the
//! engine's name, version and note (tab-separated), or why it cannot start
//! (`--engine onnxruntime` where the library does not load).

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use p2pa_protocol::{FailReason, TaskKind, TaskStatus};

use super::engine::{EngineInfo, EngineOptions};
use super::infer::Engine;
pub use super::pipe::MAX_PIPE_FRAME;
use super::pipe::{
    hello_frame, parse_hello, parse_reply, read_frame, read_frame_max, reply_code, write_frame,
    write_request, HELLO_REFUSED,
};
use super::throttle::{CpuLimit, ThrottleInfo};
use super::{Execute, Job, Ran};
use crate::core::JobId;
use crate::models::ModelStore;

/// Lines of the child's stderr kept to explain its end.
const STDERR_LINES: usize = 8;
/// Longest stderr line kept.
const STDERR_LINE_LEN: usize = 400;
/// Children kept idle for reuse (the rest exit when their task ends).
pub const MAX_IDLE: usize = 4;
/// Default address-space limit of a child.
pub const DEFAULT_CHILD_MEMORY: u64 = 2 << 30;

/// How to start a child: the program and its arguments.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    /// The program (the node's own binary).
    pub program: PathBuf,
    /// Its arguments (the hidden subcommand and the store directory).
    pub args: Vec<OsString>,
    /// The largest output the node takes from a child (its
    /// `--max-tensor-mb`): the child refuses to send more, and a reply
    /// announcing more is refused before anything is allocated for it.
    pub max_output: usize,
    /// Cores' worth of CPU the children may use together
    /// (`--max-cpu-percent`; `None`: no limit). See [`super::throttle`].
    pub cpu_cores: Option<f64>,
}

/// A running child.
struct Proc {
    child: Arc<Mutex<Child>>,
    stdin: ChildStdin,
    replies: Receiver<io::Result<Ran>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
    /// The model it ran last (its engine keeps it loaded).
    model: Option<[u8; 32]>,
}

/// An executor that runs `infer` jobs in child processes (the other kinds
/// in this process: they are the node's own code).
pub struct Isolated {
    command: ChildCommand,
    /// What the children run, as the last one started said.
    engine: Mutex<Option<EngineInfo>>,
    idle: Mutex<Vec<Proc>>,
    running: Mutex<BTreeMap<JobId, Running>>,
    /// Keeps the children to `cpu_cores`, where set.
    throttle: Option<CpuLimit>,
}

/// A job running in a child: the child, and the model it runs.
type Running = (Arc<Mutex<Child>>, [u8; 32]);

impl std::fmt::Debug for Isolated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolated")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl Isolated {
    /// Runs `infer` jobs in children started with `command`.
    pub fn new(command: ChildCommand) -> Self {
        let throttle = command.cpu_cores.and_then(CpuLimit::start);
        Self {
            command,
            engine: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            running: Mutex::new(BTreeMap::new()),
            throttle,
        }
    }

    /// The CPU limit and what it has done (`None`: none set).
    pub fn throttle(&self) -> Option<ThrottleInfo> {
        self.throttle.as_ref().map(|t| t.info())
    }

    /// Starts one child now (kept for the first task) and returns what it
    /// runs, or why it cannot start: the node says so before it serves.
    pub fn start(command: ChildCommand) -> Result<(Self, EngineInfo), String> {
        let this = Self::new(command);
        let p = this.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::Unsupported => e.to_string(),
            _ => format!("the inference process did not start: {e}"),
        })?;
        this.give_back(p);
        let info = this
            .engine
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .ok_or("the inference process said nothing")?;
        Ok((this, info))
    }

    fn spawn(&self) -> io::Result<Proc> {
        let mut child = Command::new(&self.command.program)
            .args(&self.command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let missing = || io::Error::other("child pipes missing");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let mut stdout = child.stdout.take().ok_or_else(missing)?;
        widen_pipe(&stdin);
        widen_pipe(&stdout);
        let stderr_pipe = child.stderr.take().ok_or_else(missing)?;
        let hello = read_frame(&mut stdout).and_then(parse_hello);
        match hello {
            Ok(info) => {
                if let Ok(mut e) = self.engine.lock() {
                    *e = Some(info);
                }
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
        let (tx, replies) = mpsc::channel();
        // The output, its status byte, and a failure's text.
        let max_reply = self.command.max_output.saturating_add(4096);
        std::thread::Builder::new()
            .name("p2pa-child-out".into())
            .spawn(move || loop {
                let reply = read_frame_max(&mut stdout, max_reply).and_then(parse_reply);
                let end = reply.is_err();
                if tx.send(reply).is_err() || end {
                    break;
                }
            })?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let lines = stderr.clone();
        let stderr_reader = std::thread::Builder::new()
            .name("p2pa-child-err".into())
            .spawn(move || {
                for line in BufReader::new(stderr_pipe).lines() {
                    let Ok(mut line) = line else { break };
                    if line.trim().is_empty() {
                        continue;
                    }
                    log::debug!("inference child: {line}");
                    let mut cut = line.len().min(STDERR_LINE_LEN);
                    while !line.is_char_boundary(cut) {
                        cut = cut.saturating_sub(1);
                    }
                    line.truncate(cut);
                    if let Ok(mut l) = lines.lock() {
                        if l.len() >= STDERR_LINES {
                            l.pop_front();
                        }
                        l.push_back(line);
                    }
                }
            })?;
        let child = Arc::new(Mutex::new(child));
        if let Some(t) = &self.throttle {
            t.track(&child);
        }
        Ok(Proc {
            child,
            stdin,
            replies,
            stderr,
            stderr_reader: Some(stderr_reader),
            model: None,
        })
    }

    /// An idle child that ran `model` last, else any idle one, else a new one.
    fn take(&self, model: Option<[u8; 32]>) -> io::Result<Proc> {
        let found = self.idle.lock().ok().and_then(|mut idle| {
            // One that died while idle (killed from outside) is no use.
            idle.retain(|p| {
                p.child
                    .lock()
                    .is_ok_and(|mut c| matches!(c.try_wait(), Ok(None)))
            });
            let i = idle
                .iter()
                .position(|p| p.model == model)
                .or(idle.len().checked_sub(1))?;
            Some(idle.remove(i))
        });
        match found {
            Some(p) => Ok(p),
            None => self.spawn(),
        }
    }

    fn give_back(&self, p: Proc) {
        let extra = self.idle.lock().ok().and_then(|mut idle| {
            let oldest = (idle.len() >= MAX_IDLE).then(|| idle.remove(0));
            idle.push(p);
            oldest
        });
        if let Some(old) = extra {
            retire(old);
        }
    }

    fn infer(&self, job: Job) -> Ran {
        let Some(model) = job.model else {
            return Ran::failed(FailReason::Task, "an infer task needs a model hash");
        };
        let mut p = match self.take(job.model) {
            Ok(p) => p,
            Err(e) => return failed(format!("cannot start the inference process: {e}")),
        };
        let left = job.deadline.saturating_duration_since(Instant::now());
        // Whole seconds of CPU, rounded up, and one more for loading.
        let cpu = u32::try_from(left.as_secs().saturating_add(2)).unwrap_or(u32::MAX);
        if let Ok(mut r) = self.running.lock() {
            r.insert(job.id, (p.child.clone(), model));
        }
        let sent = write_request(&mut p.stdin, &model, cpu, &job.input);
        drop(job.input); // the child has it now
        let reply = match sent {
            Ok(()) => p.replies.recv_timeout(left),
            Err(e) => Ok(Err(e)),
        };
        let abandoned = self
            .running
            .lock()
            .map_or(true, |mut r| r.remove(&job.id).is_none());
        match reply {
            Ok(Ok(out)) => {
                p.model = Some(model);
                if abandoned {
                    retire(p); // it may be killed already
                } else {
                    self.give_back(p);
                }
                out
            }
            Err(RecvTimeoutError::Timeout) => {
                let why = format!(
                    "model ran past the task's deadline ({} ms); its process was stopped",
                    left.as_millis()
                );
                end(p);
                Ran::ended(TaskStatus::Timeout, why.into_bytes())
            }
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                let why = end(p); // reaps it either way
                if abandoned {
                    failed("stopped: the requester no longer wants it".to_owned())
                } else {
                    failed(why)
                }
            }
        }
    }
}

impl Execute for Isolated {
    fn run(&self, job: Job) -> Ran {
        match job.kind {
            TaskKind::Infer => self.infer(job),
            _ => super::builtin(&job),
        }
    }

    /// What the idle children ran last (their engines keep it loaded) and
    /// what the busy ones run.
    fn loaded(&self) -> Vec<[u8; 32]> {
        let mut models: Vec<[u8; 32]> = self
            .idle
            .lock()
            .map(|idle| idle.iter().filter_map(|p| p.model).collect())
            .unwrap_or_default();
        if let Ok(r) = self.running.lock() {
            models.extend(r.values().map(|(_, m)| *m));
        }
        let mut seen = std::collections::BTreeSet::new();
        models.retain(|m| seen.insert(*m));
        models
    }

    fn engine(&self) -> Option<EngineInfo> {
        self.engine.lock().ok().and_then(|e| e.clone())
    }

    fn throttle(&self) -> Option<ThrottleInfo> {
        Isolated::throttle(self)
    }

    fn abandon(&self, job: JobId) {
        let child = self.running.lock().ok().and_then(|mut r| r.remove(&job));
        if let Some((child, _)) = child {
            if let Ok(mut c) = child.lock() {
                let _ = c.kill();
            }
        }
    }
}

/// Longest a retired child may take to exit after its stdin closes.
const RETIRE_GRACE: Duration = Duration::from_secs(2);

/// Ends a child the executor no longer keeps: its stdin closes (it exits
/// at the end of its loop), and a short-lived thread reaps it, killing it
/// after [`RETIRE_GRACE`], so no child is left a zombie.
fn retire(p: Proc) {
    let Proc {
        child,
        stdin,
        stderr_reader,
        ..
    } = p;
    drop(stdin);
    let reap = move || {
        let start = Instant::now();
        loop {
            let done = child
                .lock()
                .map_or(true, |mut c| !matches!(c.try_wait(), Ok(None)));
            if done {
                break;
            }
            if start.elapsed() >= RETIRE_GRACE {
                if let Ok(mut c) = child.lock() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(h) = stderr_reader {
            let _ = h.join();
        }
    };
    if std::thread::Builder::new()
        .name("p2pa-child-reap".into())
        .spawn(reap)
        .is_err()
    {
        log::warn!("cannot start a thread to reap an inference process");
    }
}

/// This worker could not run the job (its process failed, or was not to be
/// had): another worker may succeed.
fn failed(why: String) -> Ran {
    Ran::failed(FailReason::Worker, why)
}

/// Stops a child that failed or overran and says why it ended.
fn end(mut p: Proc) -> String {
    let status = p.child.lock().ok().and_then(|mut c| {
        let _ = c.kill();
        c.wait().ok()
    });
    drop(p.stdin);
    if let Some(h) = p.stderr_reader.take() {
        let _ = h.join(); // ends with the child's stderr
    }
    let last = p
        .stderr
        .lock()
        .ok()
        .and_then(|l| l.back().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("model aborted: {last} ({})", describe(status))
}

fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(6)) => "SIGABRT".into(),
            (None, Some(9)) => "SIGKILL".into(),
            (None, Some(11)) => "SIGSEGV".into(),
            (None, Some(24)) => "SIGXCPU: CPU time limit".into(),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => "ended".into(),
        },
        None => "status unknown".into(),
    }
}

/// The child's side: sets its memory limit, then runs the requests on stdin
/// until stdin closes (the worker went away or dropped it). Panics print
/// their message alone on stderr (the worker quotes the last line).
pub fn serve(
    store: ModelStore,
    memory: u64,
    engine: &EngineOptions,
    max_output: usize,
) -> io::Result<()> {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        eprintln!("{msg}");
    }));
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, memory, memory) {
        eprintln!("warning: cannot limit memory to {memory} bytes: {e}");
    }
    let mut stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let engine = match Engine::with_store(Some(store), engine) {
        Ok(e) => e,
        Err(why) => {
            let mut f = vec![HELLO_REFUSED];
            f.extend_from_slice(why.as_bytes());
            write_frame(&mut stdout, &[&f])?;
            return Ok(());
        }
    };
    write_frame(&mut stdout, &[&hello_frame(engine.info())])?;
    loop {
        let frame = match read_frame(&mut stdin) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let (head, input) = frame
            .split_at_checked(36)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short request"))?;
        let (model, cpu) = head.split_at(32);
        let model: [u8; 32] = model.try_into().unwrap_or([0; 32]);
        let cpu = u32::from_le_bytes(cpu.try_into().unwrap_or([0; 4]));
        limit_cpu(cpu);
        let mut ran = engine.run(Some(model), input);
        if ran.status == TaskStatus::Completed && ran.output.len() > max_output {
            let why = format!(
                "the model's output is {} bytes, over this node's limit of {max_output} (--max-tensor-mb)",
                ran.output.len()
            );
            ran = Ran::failed(FailReason::Worker, why);
        }
        write_frame(&mut stdout, &[&[reply_code(&ran)], &ran.output])?;
    }
}

/// Lets this task use `secs` more seconds of CPU (SIGXCPU after that).
fn limit_cpu(secs: u32) {
    let Some(used) = cpu_seconds() else { return };
    let soft = used.saturating_add(u64::from(secs));
    let _ = rlimit::setrlimit(rlimit::Resource::CPU, soft, rlimit::INFINITY);
}

/// CPU seconds this process used, from /proc/self/stat (Linux; `None` elsewhere).
fn cpu_seconds() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name (in parentheses, which may hold spaces): fields
    // 14 and 15 of the line are utime and stime, in clock ticks (100 a second).
    let rest = stat.get(stat.rfind(')')?.checked_add(2)?..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(
        utime
            .saturating_add(stime)
            .checked_div(100)?
            .saturating_add(1),
    )
}

/// What the pipes to and from the inference child are widened to: a
/// PP-OCR-sized tensor (1.2 MB) then crosses in two writes instead of
/// nineteen of 64 KiB, each a wakeup of both processes (the pipe was a
/// tenth of a worker node's CPU on such tasks). The kernel caps it at
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default) and charges it to the
/// user's pipe quota; a refusal keeps the default, which works as before.
const PIPE_BYTES: usize = 1 << 20;

/// Asks for [`PIPE_BYTES`] of pipe capacity.
#[cfg(target_os = "linux")]
fn widen_pipe(end: &impl std::os::fd::AsFd) {
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(end, PIPE_BYTES) {
        log::debug!("inference pipe stays at its default size: {e}");
    }
}

/// Pipes keep their size where F_SETPIPE_SZ does not exist.
#[cfg(not(target_os = "linux"))]
fn widen_pipe<T>(_end: &T) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_reads_its_own_cpu_time() {
        assert!(cpu_seconds().is_some(), "reads /proc/self/stat");
    }
}
