//! Task executors: functions from input bytes to output bytes, run on the
//! worker slot threads by the shell. `infer` runs ONNX models (feature
//! `onnx`), in a child process (`child`) where a node runs one.

pub mod cgroup;
#[cfg(all(feature = "onnx", unix))]
pub mod child;
pub mod engine;
#[cfg(feature = "onnx")]
pub mod infer;
#[cfg(all(feature = "onnx", unix))]
mod pipe;
pub mod tensor;
pub mod throttle;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use p2pa_protocol::{FailReason, TaskKind, TaskStatus};

use crate::core::{sha256, JobId};
use crate::hex::hex;
use crate::models::ModelStore;

/// Raises the calling thread's niceness to at least `nice` (0 – 19; on
/// Linux niceness is per thread, so a slot thread yields to the machine's
/// owner while the node's network thread keeps its own), and returns the
/// niceness in effect. A thread already nicer keeps its value: lowering it
/// would need privileges, and `Nice=` from systemd is the owner's choice.
#[cfg(unix)]
pub fn lower_priority(nice: u8) -> std::io::Result<i32> {
    let now = rustix::process::getpriority_process(None)?;
    let want = i32::from(nice.min(19));
    if want > now {
        rustix::process::setpriority_process(None, want)?;
    }
    Ok(want.max(now))
}

/// Where priorities are not set this way, nothing changes (`Ok(0)`).
#[cfg(not(unix))]
pub fn lower_priority(_nice: u8) -> std::io::Result<i32> {
    Ok(0)
}

/// One job, as an executor gets it (its input owned, so an executor that
/// hands it on, to a child process say, can free it at once).
#[derive(Debug, Clone)]
pub struct Job {
    /// The core's id for it (what [`Execute::abandon`] names).
    pub id: JobId,
    /// What to run.
    pub kind: TaskKind,
    /// Its input.
    pub input: Vec<u8>,
    /// The model an `infer` job runs.
    pub model: Option<[u8; 32]>,
    /// When its requester stops waiting.
    pub deadline: Instant,
    /// Raised when its result is no longer wanted (cancelled, requester
    /// gone, deadline passed): a job that waits stops waiting.
    pub stop: Stop,
}

/// A job's stop signal, shared by the shell (which raises it) and the slot
/// thread that runs the job (which waits on it instead of sleeping).
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    /// Stops the job: a wait in progress ends now, a later one at once.
    pub fn raise(&self) {
        let (flag, cv) = &*self.0;
        if let Ok(mut raised) = flag.lock() {
            *raised = true;
        }
        cv.notify_all();
    }

    /// Whether it was raised.
    pub fn is_raised(&self) -> bool {
        self.0 .0.lock().map_or(true, |raised| *raised)
    }

    /// Waits until `until` or until raised; returns whether it was raised.
    pub fn wait_until(&self, until: Instant) -> bool {
        let (flag, cv) = &*self.0;
        let Ok(mut raised) = flag.lock() else {
            return true;
        };
        while !*raised {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            raised = match cv.wait_timeout(raised, left) {
                Ok((guard, _)) => guard,
                Err(_) => return true,
            };
        }
        true
    }
}

/// How a job ended: its status, why it failed (`Some` with
/// [`TaskStatus::Failed`]), and its output (the failure's text when it
/// failed). The reason travels to the requester typed, in the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// How it ended.
    pub status: TaskStatus,
    /// Why it failed, if it did.
    pub reason: Option<FailReason>,
    /// Its output, or the failure's text.
    pub output: Vec<u8>,
}

impl Ran {
    /// It ran and produced `output`.
    pub fn completed(output: Vec<u8>) -> Self {
        Self::ended(TaskStatus::Completed, output)
    }

    /// It failed for `reason`; `why` says so in words.
    pub fn failed(reason: FailReason, why: impl Into<Vec<u8>>) -> Self {
        Self {
            status: TaskStatus::Failed,
            reason: Some(reason),
            output: why.into(),
        }
    }

    /// It ended with `status` (not a failure) and `output`.
    pub fn ended(status: TaskStatus, output: Vec<u8>) -> Self {
        Self {
            status,
            reason: None,
            output,
        }
    }
}

/// Runs jobs: `job → Ran`, on the worker slot threads, so it may
/// take as long as it needs; and stops a job whose result is no longer wanted.
pub trait Execute: Send + Sync {
    /// Runs one job; the output is the failure's text when it fails.
    fn run(&self, job: Job) -> Ran;

    /// The job's requester cancelled, left, or its deadline passed: stop it
    /// if it is still running (its result will be dropped anyway).
    fn abandon(&self, _job: JobId) {}

    /// The models loaded now (parsed and ready to run, or running), newest
    /// last; empty for an executor that runs no models.
    fn loaded(&self) -> Vec<[u8; 32]> {
        Vec::new()
    }

    /// The engine that runs `infer` jobs (`None`: this executor runs none).
    fn engine(&self) -> Option<engine::EngineInfo> {
        None
    }

    /// The CPU limit on its inference processes (`--max-cpu-percent`) and
    /// what it has done; `None` where there is none.
    fn throttle(&self) -> Option<throttle::ThrottleInfo> {
        None
    }
}

/// Any function of (kind, input, model) runs jobs (and cannot stop them).
impl<F> Execute for F
where
    F: Fn(TaskKind, &[u8], Option<[u8; 32]>) -> Ran + Send + Sync,
{
    fn run(&self, job: Job) -> Ran {
        self(job.kind, &job.input, job.model)
    }
}

/// What a node's slots run jobs with.
pub type Executor = Arc<dyn Execute>;

/// The largest output an inference child sends when not told otherwise
/// (the node passes its own `--max-tensor-mb`).
pub const MAX_OUTPUT_DEFAULT: usize = 1 << 30;

/// Longest a `sleep` task may sleep.
pub const MAX_SLEEP_MS: u64 = 60_000;

/// Whether this build runs `infer` tasks.
pub const INFERENCE: bool = cfg!(feature = "onnx");

/// The executor for a node: the built-in kinds, plus `infer` against the
/// models in `store` when built with the `onnx` feature, in this process.
/// A node that may run untrusted models uses `child::Isolated` instead.
pub fn executor(store: Option<ModelStore>) -> Executor {
    #[cfg(feature = "onnx")]
    {
        if let Some(store) = store {
            return Arc::new(InProcess(infer::Engine::new(store)));
        }
    }
    #[cfg(not(feature = "onnx"))]
    let _ = store;
    Arc::new(Builtin)
}

/// The built-in kinds (echo, hash, sleep) and no `infer`: [`builtin`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

impl Execute for Builtin {
    fn run(&self, job: Job) -> Ran {
        builtin(&job)
    }
}

/// Runs `infer` in this process with an [`infer::Engine`], the other kinds
/// with [`execute`].
#[cfg(feature = "onnx")]
#[derive(Debug)]
struct InProcess(infer::Engine);

#[cfg(feature = "onnx")]
impl Execute for InProcess {
    fn run(&self, job: Job) -> Ran {
        match job.kind {
            TaskKind::Infer => self.0.run(job.model, &job.input),
            _ => builtin(&job),
        }
    }

    fn loaded(&self) -> Vec<[u8; 32]> {
        self.0.loaded_models()
    }

    fn engine(&self) -> Option<engine::EngineInfo> {
        Some(self.0.info().clone())
    }
}

/// Sent as the output of a job that ran into its deadline.
pub const DEADLINE_PASSED: &[u8] = b"deadline passed before the task finished";

/// Runs one job of a built-in kind; returns its status and output (an
/// error message when failed). A `sleep` waits on the job's [`Stop`] and
/// ends at its deadline, so a task nobody waits for holds no slot.
pub fn builtin(job: &Job) -> Ran {
    let input = &job.input;
    match job.kind {
        TaskKind::Echo => Ran::completed(input.clone()),
        // Hex text, so the CLI prints it as it is.
        TaskKind::Hash => Ran::completed(hex(&sha256(input)).into_bytes()),
        TaskKind::Sleep => match parse_ms(input) {
            Some(ms) => {
                let start = Instant::now();
                let until = start
                    .checked_add(Duration::from_millis(ms))
                    .unwrap_or(start)
                    .min(job.deadline);
                if job.stop.wait_until(until) {
                    Ran::ended(TaskStatus::Cancelled, b"stopped: no longer wanted".to_vec())
                } else if start.elapsed() < Duration::from_millis(ms) {
                    Ran::ended(TaskStatus::Timeout, DEADLINE_PASSED.to_vec())
                } else {
                    Ran::completed(format!("slept {ms} ms").into_bytes())
                }
            }
            None => Ran::failed(
                FailReason::Task,
                format!("sleep input must be a whole number of milliseconds up to {MAX_SLEEP_MS}"),
            ),
        },
        TaskKind::Infer => Ran::failed(
            FailReason::Worker,
            "this node cannot run infer tasks (built without the `onnx` feature, or no model store)",
        ),
    }
}
fn parse_ms(input: &[u8]) -> Option<u64> {
    let ms: u64 = std::str::from_utf8(input).ok()?.trim().parse().ok()?;
    (ms <= MAX_SLEEP_MS).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: TaskKind, input: &[u8], deadline: Duration) -> Job {
        Job {
            id: 1,
            kind,
            input: input.to_vec(),
            model: None,
            deadline: Instant::now().checked_add(deadline).unwrap(),
            stop: Stop::default(),
        }
    }

    #[test]
    fn echo_hash_and_sleep_do_their_work() {
        let long = Duration::from_secs(60);
        assert_eq!(
            builtin(&job(TaskKind::Echo, b"hi", long)),
            Ran::completed(b"hi".to_vec())
        );
        let Ran {
            status: s,
            output: out,
            ..
        } = builtin(&job(TaskKind::Hash, b"abc", long));
        assert_eq!(s, TaskStatus::Completed);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let t = Instant::now();
        let ran = builtin(&job(TaskKind::Sleep, b"20", long));
        assert_eq!(ran, Ran::completed(b"slept 20 ms".to_vec()));
        assert!(t.elapsed() >= Duration::from_millis(20));
        for bad in [&b"soon"[..], b"999999"] {
            let ran = builtin(&job(TaskKind::Sleep, bad, long));
            assert_eq!(
                (ran.status, ran.reason),
                (TaskStatus::Failed, Some(FailReason::Task))
            );
        }
    }

    #[test]
    fn a_sleep_ends_at_its_deadline_or_when_stopped() {
        let t = Instant::now();
        let late = job(TaskKind::Sleep, b"10000", Duration::from_millis(50));
        assert_eq!(builtin(&late).status, TaskStatus::Timeout);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

        let stopped = job(TaskKind::Sleep, b"10000", Duration::from_secs(60));
        let stop = stopped.stop.clone();
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            stop.raise();
        });
        let t = Instant::now();
        assert_eq!(builtin(&stopped).status, TaskStatus::Cancelled);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        raiser.join().unwrap();
        // Raised before it starts: it does not sleep at all.
        assert!(stopped.stop.is_raised());
        assert_eq!(builtin(&stopped).status, TaskStatus::Cancelled);
    }
}
