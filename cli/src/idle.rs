//! `p2pa node --only-when-idle`: the worker takes tasks only while the rest
//! of the machine is idle and, on a machine with a mains supply, on mains.
//!
//! Once a second it reads the machine's CPU time (`/proc/stat`) and the
//! node's own (its process and its children, from `/proc/<pid>/stat`): the
//! difference is what the machine's other programs used. Above the
//! threshold (or on battery) the node pauses at once: it keeps its sessions,
//! finishes what runs and hands back what waits, and its capabilities say
//! it is paused, so requesters send it nothing. It resumes once the machine
//! has been idle (and on mains) for the wait. A pause asked for with
//! `p2pa pause` holds whatever the machine does.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_io::Timer;
use p2pa_node::io::NodeHandle;

/// How often the machine is sampled.
const PERIOD: Duration = Duration::from_secs(1);

/// Why a node is paused: its owner asked (`p2pa pause`), or the machine is
/// in use (`--only-when-idle`). It takes work when neither holds.
#[derive(Debug, Default)]
pub struct PauseState {
    asked: Cell<bool>,
    busy: Cell<Option<Busy>>,
}

/// What keeps an idle-gated node from working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The machine's other programs use more than the threshold.
    Load,
    /// It runs on battery.
    Battery,
}

impl Busy {
    pub fn name(self) -> &'static str {
        match self {
            Busy::Load => "the machine's owner is using it",
            Busy::Battery => "on battery",
        }
    }
}

impl PauseState {
    /// Whether the node should take no work now.
    pub fn paused(&self) -> bool {
        self.asked.get() || self.busy.get().is_some()
    }

    /// `p2pa pause` (true) or `p2pa resume`; tells the node.
    pub async fn ask(&self, handle: &NodeHandle, paused: bool) -> Result<(), ()> {
        self.asked.set(paused);
        handle.set_paused(self.paused()).await.map_err(|_| ())
    }

    /// Why the node is paused, for `status`: `asked`, and what keeps the
    /// machine busy.
    pub fn reasons(&self) -> (bool, Option<Busy>) {
        (self.asked.get(), self.busy.get())
    }
}

/// The idle gate's settings.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Share of the whole machine (all cores) the other programs may use
    /// while the node works, 0 – 1.
    pub threshold: f64,
    /// How long the machine must be idle before the node works again.
    pub wait: Duration,
    /// `/proc/stat` (another file in tests).
    pub stat: PathBuf,
    /// `/sys/class/power_supply` (another folder in tests).
    pub power: PathBuf,
}

/// CPU time so far, in clock ticks: the machine's busy and total, and the
/// node's own (process and children).
#[derive(Debug, Clone, Copy)]
struct Sample {
    busy: u64,
    total: u64,
    own: u64,
}

/// The machine's busy and total ticks from `/proc/stat`'s `cpu` line.
fn machine(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is in user)
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .fold(0u64, |s, &i| s.saturating_add(at(i)));
    let total = busy.saturating_add(at(3)).saturating_add(at(4));
    Some((busy, total))
}

/// A `/proc/<pid>/stat` file's parent and utime + stime.
fn process(stat: &str) -> Option<(u32, u64)> {
    let rest = stat.get(stat.rfind(')')?.saturating_add(1)..)?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok());
    let ppid = u32::try_from(num(1)?).ok()?;
    Some((ppid, num(11)?.saturating_add(num(12)?)))
}

/// CPU ticks of this process and its children (the inference processes).
fn own_ticks() -> u64 {
    let me = std::process::id();
    let mut ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| process(&s))
        .map_or(0, |(_, t)| t);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok();
        if let Some((ppid, t)) = stat.as_deref().and_then(process) {
            if ppid == me {
                ticks = ticks.saturating_add(t);
            }
        }
    }
    ticks
}

/// Whether the machine runs on battery: it has a mains supply and none is
/// online (a machine with no mains supply listed, a desktop or a VM, is
/// never on battery).
pub fn on_battery(power: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir(power) else {
        return false;
    };
    let mut mains = false;
    for supply in dir.flatten() {
        let read = |f: &str| std::fs::read_to_string(supply.path().join(f)).unwrap_or_default();
        if read("type").trim() == "Mains" {
            mains = true;
            if read("online").trim() == "1" {
                return false;
            }
        }
    }
    mains
}

impl Gate {
    fn sample(&self) -> Option<Sample> {
        let (busy, total) = machine(&std::fs::read_to_string(&self.stat).ok()?)?;
        Some(Sample {
            busy,
            total,
            own: own_ticks(),
        })
    }

    /// The other programs' share of the machine between two samples.
    fn others(a: Sample, b: Sample) -> Option<f64> {
        let total = b.total.checked_sub(a.total).filter(|t| *t > 0)?;
        let busy = b.busy.saturating_sub(a.busy);
        let own = b.own.saturating_sub(a.own);
        Some(busy.saturating_sub(own) as f64 / total as f64)
    }

    /// Samples the machine until the node stops, pausing and resuming it.
    pub async fn run(self, state: &PauseState, handle: &NodeHandle) {
        let mut last = self.sample();
        let mut idle_since: Option<Instant> = None;
        loop {
            Timer::after(PERIOD).await;
            let now = self.sample();
            let load = match (last, now) {
                (Some(a), Some(b)) => Self::others(a, b),
                _ => None,
            };
            last = now.or(last);
            let busy = if on_battery(&self.power) {
                Some(Busy::Battery)
            } else if load.is_some_and(|l| l > self.threshold) {
                Some(Busy::Load)
            } else {
                None
            };
            let gated = match busy {
                Some(why) => {
                    idle_since = None;
                    Some(why)
                }
                None => {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    match state.busy.get() {
                        Some(was) if since.elapsed() < self.wait => Some(was),
                        _ => None,
                    }
                }
            };
            if gated != state.busy.get() {
                match gated {
                    Some(why) => log::info!(
                        "pausing: {} ({:.0} % of the machine besides this node)",
                        why.name(),
                        load.unwrap_or(0.0) * 100.0
                    ),
                    None => log::info!("the machine is idle: taking tasks again"),
                }
                state.busy.set(gated);
                if handle.set_paused(state.paused()).await.is_err() {
                    return; // the node stopped
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_lines_read_as_busy_and_total_ticks() {
        let stat = "cpu  100 10 50 800 40 0 5 5 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(machine(stat), Some((170, 1010)));
        assert_eq!(machine("intr 1 2 3\n"), None);
        let own = "1234 (p2pa (a node)) S 77 1 1 0 -1 0 0 0 0 0 30 12 0 0 20 0 5 0 1 2 3";
        assert_eq!(process(own), Some((77, 42)));
        assert_eq!(process("garbage"), None);
    }

    #[test]
    fn the_others_share_leaves_the_node_s_own_time_out() {
        let a = Sample {
            busy: 1000,
            total: 4000,
            own: 100,
        };
        let b = Sample {
            busy: 1150,
            total: 4200,
            own: 200,
        };
        // 150 busy of 200, 100 of them the node's: the others used 25 %.
        assert_eq!(Gate::others(a, b), Some(0.25));
        assert_eq!(Gate::others(b, b), None, "no time passed: no verdict");
    }

    #[test]
    fn a_machine_is_on_battery_only_when_it_has_mains_and_none_is_online() {
        let dir = std::env::temp_dir().join(format!("p2pa-power-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!on_battery(&dir), "no supplies listed: a desktop");
        let supply = |name: &str, kind: &str, online: &str| {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("type"), kind).unwrap();
            std::fs::write(d.join("online"), online).unwrap();
        };
        supply("BAT0", "Battery\n", "");
        assert!(!on_battery(&dir), "a battery and no mains supply listed");
        supply("AC", "Mains\n", "0\n");
        assert!(on_battery(&dir));
        supply("AC", "Mains\n", "1\n");
        assert!(!on_battery(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
