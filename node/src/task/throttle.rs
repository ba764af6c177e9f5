//! `--max-cpu-percent`: the inference processes together use at most a
//! share of the machine, by a duty cycle. A thread measures their CPU time
//! (`/proc/<pid>/stat`, all threads of each) every [`TICK`] and keeps a
//! bucket of CPU time that fills at the allowed rate (the share times the
//! cores) and empties by what they used: when it runs dry the children are
//! stopped (`SIGSTOP`) until it has filled again (`SIGCONT`). The bucket
//! holds at most [`BURST`] of the allowed rate, so an idle spell buys no
//! long burst afterwards.
//!
//! A child is signalled only while its `Child` is locked and not yet reaped,
//! so its pid cannot name another process by then. A stopped child still
//! dies from `SIGKILL` (abandon, deadline); one retired while stopped is
//! resumed at the next tick and reads its end of input.
//!
//! Why not a cgroup: cgroup v2's `cpu.max` does the same in the kernel, but
//! a node may create a child cgroup with the cpu controller only where its
//! own cgroup holds no processes (the "no internal processes" rule) or is
//! the root, which a service started by systemd or a login session is not
//! without delegation set up for it; signals work wherever the node runs.

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::cgroup::CpuCgroup;

/// How often the children's CPU time is read.
pub const TICK: Duration = Duration::from_millis(20);
/// The most CPU time, in seconds of the allowed rate, the bucket holds.
pub const BURST: Duration = Duration::from_millis(200);
/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`, 100 on
/// every Linux).
const USER_HZ: f64 = 100.0;

/// What a limit is and has done, for `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleInfo {
    /// Cores' worth of CPU the children may use together.
    pub cores: f64,
    /// How it is kept.
    pub method: LimitMethod,
    /// Time the children were held back (stopped, or throttled by the
    /// kernel), in all.
    pub stopped: Duration,
    /// Whether they are stopped now (signals only).
    pub stopping: bool,
}

/// How a CPU limit is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitMethod {
    /// By the kernel: `cpu.max` of this cgroup v2.
    Cgroup(PathBuf),
    /// By this node's duty cycle (`SIGSTOP`/`SIGCONT`), and why no cgroup.
    Signals(String),
}

impl std::fmt::Display for LimitMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cgroup(dir) => {
                write!(f, "by the kernel (cgroup v2 cpu.max in {})", dir.display())
            }
            Self::Signals(why) => write!(
                f,
                "by pausing and resuming its processes (SIGSTOP/SIGCONT; no cgroup: {why})"
            ),
        }
    }
}

/// A CPU limit on the inference processes: a cgroup where the node may make
/// one, else the duty cycle.
#[derive(Debug)]
pub enum CpuLimit {
    /// The kernel keeps it.
    Cgroup(CpuCgroup),
    /// The duty cycle keeps it; why there is no cgroup.
    Signals(Arc<Throttle>, String),
}

impl CpuLimit {
    /// `cores` cores' worth for the processes [`track`](Self::track)ed.
    /// `P2PA_CGROUP_DIR` names the cgroup to make it under instead of this
    /// process's own (set but empty: no cgroup, the duty cycle). `None`
    /// where neither can start (said in the log).
    pub fn start(cores: f64) -> Option<Self> {
        let own = match std::env::var_os("P2PA_CGROUP_DIR") {
            Some(d) if d.is_empty() => Err("P2PA_CGROUP_DIR is empty".to_owned()),
            Some(d) => Ok(PathBuf::from(d)),
            None => CpuCgroup::own_dir(),
        };
        let why = match own.and_then(|own| CpuCgroup::create(&own, cores)) {
            Ok(cg) => return Some(Self::Cgroup(cg)),
            Err(why) => why,
        };
        match Throttle::start(cores) {
            Ok(t) => Some(Self::Signals(t, why)),
            Err(e) => {
                log::error!("cannot start the CPU limit's thread: {e}; no limit");
                None
            }
        }
    }

    /// Puts a child just started under the limit.
    pub fn track(&self, child: &Arc<Mutex<Child>>) {
        match self {
            Self::Cgroup(cg) => {
                let pid = child.lock().map(|c| c.id());
                if let Ok(pid) = pid {
                    if let Err(e) = cg.add(pid) {
                        log::warn!("inference process {pid} not in {}: {e}", cg.dir().display());
                    }
                }
            }
            Self::Signals(t, _) => t.track(child),
        }
    }

    /// The limit and what it has done.
    pub fn info(&self) -> ThrottleInfo {
        match self {
            Self::Cgroup(cg) => ThrottleInfo {
                cores: cg.cores(),
                method: LimitMethod::Cgroup(cg.dir().to_owned()),
                stopped: cg.throttled(),
                stopping: false,
            },
            Self::Signals(t, why) => t.info(why),
        }
    }
}

/// A child and its CPU time when last read.
struct Tracked {
    child: Weak<Mutex<Child>>,
    ticks: u64,
    stopped: bool,
}

/// The children under one limit, and the thread that keeps them to it.
pub struct Throttle {
    cores: f64,
    children: Mutex<Vec<Tracked>>,
    stopped_us: AtomicU64,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("cores", &self.cores)
            .finish_non_exhaustive()
    }
}

impl Throttle {
    /// Keeps the children [`track`](Self::track)ed to `cores` cores' worth
    /// of CPU (more than zero), from a thread of its own that ends when the
    /// throttle is dropped.
    pub fn start(cores: f64) -> std::io::Result<Arc<Self>> {
        let this = Arc::new(Self {
            cores: cores.max(0.01),
            children: Mutex::new(Vec::new()),
            stopped_us: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&this);
        std::thread::Builder::new()
            .name("p2pa-throttle".into())
            .spawn(move || run(&weak))?;
        Ok(this)
    }

    /// Puts `child` under the limit (its CPU time from now on counts).
    pub fn track(&self, child: &Arc<Mutex<Child>>) {
        let ticks = child
            .lock()
            .ok()
            .and_then(|c| cpu_ticks(c.id()))
            .unwrap_or(0);
        if let Ok(mut all) = self.children.lock() {
            all.push(Tracked {
                child: Arc::downgrade(child),
                ticks,
                stopped: false,
            });
        }
    }

    /// The limit and what it has done (`why`: why no cgroup keeps it).
    pub fn info(&self, why: &str) -> ThrottleInfo {
        ThrottleInfo {
            cores: self.cores,
            method: LimitMethod::Signals(why.to_owned()),
            stopped: Duration::from_micros(self.stopped_us.load(Ordering::Relaxed)),
            stopping: self.stopping.load(Ordering::Relaxed),
        }
    }

    /// Reads the children's CPU time since the last call (in seconds) and
    /// forgets those that ended.
    fn used(&self) -> f64 {
        let Ok(mut all) = self.children.lock() else {
            return 0.0;
        };
        let mut used = 0u64;
        all.retain_mut(|t| {
            let Some(child) = t.child.upgrade() else {
                return false;
            };
            let Ok(mut c) = child.lock() else {
                return false;
            };
            if !matches!(c.try_wait(), Ok(None)) {
                return false; // ended (and now reaped)
            }
            let now = cpu_ticks(c.id()).unwrap_or(t.ticks);
            used = used.saturating_add(now.saturating_sub(t.ticks));
            t.ticks = now;
            true
        });
        used as f64 / USER_HZ
    }

    /// Stops (`true`) or resumes every child not already so.
    fn set(&self, stop: bool) {
        let Ok(mut all) = self.children.lock() else {
            return;
        };
        for t in all.iter_mut().filter(|t| t.stopped != stop) {
            let Some(child) = t.child.upgrade() else {
                continue;
            };
            let Ok(mut c) = child.lock() else { continue };
            if !matches!(c.try_wait(), Ok(None)) {
                continue; // reaped: its pid may be someone else's
            }
            if signal(&c, stop).is_ok() {
                t.stopped = stop;
            }
        }
        self.stopping.store(stop, Ordering::Relaxed);
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// The throttle's loop: fill the bucket by the rate, empty it by what the
/// children used, stop them while it is empty.
fn run(throttle: &Weak<Throttle>) {
    let mut bucket = 0.0f64;
    let mut last = Instant::now();
    let mut stopped_since: Option<Instant> = None;
    loop {
        std::thread::sleep(TICK);
        let Some(t) = throttle.upgrade() else { return };
        let now = Instant::now();
        let dt = now.saturating_duration_since(last).as_secs_f64();
        last = now;
        let cap = t.cores * BURST.as_secs_f64();
        bucket = (bucket + t.cores * dt - t.used()).min(cap);
        let stop = bucket < 0.0;
        match (stop, stopped_since) {
            (true, None) => stopped_since = Some(now),
            (false, Some(since)) => {
                let us = now.saturating_duration_since(since).as_micros();
                t.stopped_us
                    .fetch_add(u64::try_from(us).unwrap_or(u64::MAX), Ordering::Relaxed);
                stopped_since = None;
            }
            _ => {}
        }
        // Every tick, so a child started while the others are stopped stops too.
        t.set(stop);
    }
}

#[cfg(target_os = "linux")]
fn signal(c: &Child, stop: bool) -> std::io::Result<()> {
    use rustix::process::{kill_process, Pid, Signal};
    let sig = if stop { Signal::STOP } else { Signal::CONT };
    kill_process(Pid::from_child(c), sig).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn signal(_c: &Child, _stop: bool) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Whether a limit can be kept here (it reads `/proc`).
pub const SUPPORTED: bool = cfg!(target_os = "linux");

/// User and system CPU time of process `pid`, all its threads, in clock
/// ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_ticks(&stat)
}

/// Fields 14 and 15 of a `/proc/<pid>/stat` line (after the command name,
/// in parentheses, which may hold spaces and parentheses).
fn parse_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')?.checked_add(2)?..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn stat_lines_are_parsed_past_odd_names() {
        let line = "42 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 250 31 0 0";
        assert_eq!(parse_ticks(line), Some(281));
        assert_eq!(parse_ticks("42 (x) R 1 2"), None);
        assert!(cpu_ticks(std::process::id()).is_some());
    }

    /// A busy child under a limit of a quarter core gets about that: it is
    /// stopped and resumed, and its CPU time over the run says so.
    #[test]
    fn a_busy_child_is_held_to_its_share() {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        let t = Throttle::start(0.25).unwrap();
        t.track(&child);
        let start_ticks = cpu_ticks(pid).unwrap();
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(1500));
        let used = (cpu_ticks(pid).unwrap() - start_ticks) as f64 / USER_HZ;
        let share = used / start.elapsed().as_secs_f64();
        let info = t.info("test");
        drop(t); // resumes it (at once, or at its thread's next tick)
        std::thread::sleep(TICK * 3);
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        child.lock().unwrap().kill().unwrap();
        child.lock().unwrap().wait().unwrap();
        // The burst allowance and tick rounding let it over a little; the
        // machine being busy lets it under.
        assert!(share < 0.40, "used {share:.2} of a core under a 0.25 limit");
        assert!(share > 0.05, "used {share:.2} of a core: stopped for good?");
        assert!(info.stopped > Duration::from_millis(500), "{info:?}");
        assert_ne!(
            parse_state(&state),
            Some('T'),
            "dropped, the throttle resumed it: {state}"
        );
    }

    fn parse_state(stat: &str) -> Option<char> {
        stat.get(stat.rfind(')')?.checked_add(2)?..)?.chars().next()
    }
}
