//! `--max-cpu-percent` by the kernel: a cgroup v2 for the node's inference
//! processes whose `cpu.max` is the limit. Used where the node may make
//! one: its own cgroup (from `/proc/self/cgroup`, on the cgroup2 mount of
//! `/proc/self/mountinfo`) offers the `cpu` controller and is writable (as
//! root, or delegated by systemd with `Delegate=yes`). Otherwise the caller
//! falls back to [`super::throttle`] and says why.
//!
//! cgroup v2 lets a cgroup hand a controller to its children only while it
//! holds no processes itself (unless it is the root), so where the node's
//! own cgroup refuses `+cpu` as busy, the node first moves itself into a
//! leaf of its own (`p2pa-node-<pid>`) beside the inference one
//! (`p2pa-infer-<pid>`), as a delegated service does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `cpu.max`'s period, in microseconds (the kernel's default).
const PERIOD_US: u64 = 100_000;
/// The least quota the kernel takes, in microseconds.
const MIN_QUOTA_US: u64 = 1_000;

/// The inference processes' cgroup.
#[derive(Debug)]
pub struct CpuCgroup {
    dir: PathBuf,
    cores: f64,
}

impl CpuCgroup {
    /// This process's cgroup v2 directory, from `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`.
    pub fn own_dir() -> Result<PathBuf, String> {
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mount = cgroup2_mount(&mounts).ok_or("no cgroup v2 mounted")?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let path = unified_path(&own).ok_or("this process is in no cgroup v2")?;
        let rel = path.trim().trim_start_matches('/');
        Ok(if rel.is_empty() {
            mount
        } else {
            mount.join(rel)
        })
    }

    /// Makes the inference cgroup under `own` (this process's cgroup
    /// directory) with `cores` cores' worth of CPU, or says why it cannot.
    pub fn create(own: &Path, cores: f64) -> Result<Self, String> {
        let controllers = fs::read_to_string(own.join("cgroup.controllers")).map_err(|e| {
            format!(
                "cannot read {}: {e}",
                own.join("cgroup.controllers").display()
            )
        })?;
        if !controllers.split_whitespace().any(|c| c == "cpu") {
            return Err(format!(
                "the cgroup v2 {} offers no cpu controller",
                own.display()
            ));
        }
        let pid = std::process::id();
        enable_cpu(own, pid)?;
        let dir = own.join(format!("p2pa-infer-{pid}"));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot make {}: {e}", dir.display())),
        }
        let quota = ((cores * PERIOD_US as f64) as u64).max(MIN_QUOTA_US);
        fs::write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))
            .map_err(|e| format!("cannot set {}: {e}", dir.join("cpu.max").display()))?;
        Ok(Self { dir, cores })
    }

    /// Cores' worth of CPU its processes may use.
    pub fn cores(&self) -> f64 {
        self.cores
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves process `pid` (an inference process just started) into it.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// How long the kernel held its processes back (`cpu.stat`'s
    /// `throttled_usec`).
    pub fn throttled(&self) -> Duration {
        let stat = fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let us = stat
            .lines()
            .find_map(|l| l.strip_prefix("throttled_usec "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Duration::from_micros(us)
    }
}

impl Drop for CpuCgroup {
    /// Removed once empty (its processes are gone by then, or the kernel
    /// refuses and it stays until the node's own cgroup goes).
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Hands the cpu controller to `own`'s children; where `own` holds
/// processes (ours), moves this process into a leaf first.
fn enable_cpu(own: &Path, pid: u32) -> Result<(), String> {
    let subtree = own.join("cgroup.subtree_control");
    let enabled = |p: &Path| {
        fs::read_to_string(p)
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == "cpu" || c == "+cpu")
    };
    if enabled(&subtree) {
        return Ok(());
    }
    let first = match fs::write(&subtree, "+cpu") {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    // EBUSY: `own` holds processes. Anything else (no permission, say) is final.
    if first.raw_os_error() != Some(16) {
        return Err(format!(
            "cannot enable cpu in {}: {first}",
            subtree.display()
        ));
    }
    let leaf = own.join(format!("p2pa-node-{pid}"));
    let moved = fs::create_dir(&leaf)
        .or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .and_then(|()| fs::write(leaf.join("cgroup.procs"), pid.to_string()))
        .and_then(|()| fs::write(&subtree, "+cpu"));
    moved.map_err(|e| {
        // Back where it was, so nothing is left half done.
        let _ = fs::write(own.join("cgroup.procs"), pid.to_string());
        let _ = fs::remove_dir(&leaf);
        format!(
            "cannot enable cpu in {} (it holds other processes: {e})",
            subtree.display()
        )
    })
}

/// The mount point of the cgroup2 file system in a `mountinfo` text.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        // ... mount-point ... - fstype source options
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2").then_some(())?;
        Some(PathBuf::from(left.split_whitespace().nth(4)?))
    })
}

/// The cgroup v2 path (`0::/path`) in a `/proc/self/cgroup` text.
fn unified_path(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_and_own_paths_are_read() {
        let info = "24 30 0:21 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                    25 30 0:22 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            cgroup2_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount("25 30 0:22 / /x rw - cgroup cgroup rw"), None);
        assert_eq!(
            unified_path("1:cpu:/\n0::/system.slice/p2pa.service\n"),
            Some("/system.slice/p2pa.service")
        );
        assert_eq!(unified_path("1:cpu:/\n"), None);
    }

    /// On a directory laid out as a cgroup (what the kernel's files hold),
    /// the node enables cpu, makes its inference cgroup with the quota, and
    /// moves processes into it; without the cpu controller it says so.
    #[test]
    fn the_inference_cgroup_is_made_where_cpu_is_offered() {
        let root = std::env::temp_dir().join(format!("p2pa-cgroup-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("cgroup.controllers"), "io memory pids\n").unwrap();
        let refused = CpuCgroup::create(&root, 0.5).unwrap_err();
        assert!(refused.contains("offers no cpu controller"), "{refused}");
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let cg = CpuCgroup::create(&root, 0.5).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+cpu"
        );
        assert_eq!(
            fs::read_to_string(cg.dir().join("cpu.max")).unwrap(),
            "50000 100000"
        );
        cg.add(4242).unwrap();
        assert_eq!(
            fs::read_to_string(cg.dir().join("cgroup.procs")).unwrap(),
            "4242"
        );
        fs::write(
            cg.dir().join("cpu.stat"),
            "usage_usec 10\nnr_throttled 3\nthrottled_usec 25000\n",
        )
        .unwrap();
        assert_eq!(cg.throttled(), Duration::from_millis(25));
        let tiny = CpuCgroup::create(&root, 0.001).unwrap();
        assert_eq!(
            fs::read_to_string(tiny.dir().join("cpu.max")).unwrap(),
            "1000 100000",
            "the kernel's least quota"
        );
        drop((cg, tiny));
        let _ = fs::remove_dir_all(&root);
    }
}
