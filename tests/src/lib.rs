//! Helpers for tests that run p2pa as a user does: the `p2pa` binary in child
//! processes, on loopback with host-local multicast (TTL 0), each test on its
//! own multicast port so parallel tests never see each other.

pub mod netns;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use serde_json::Value;

/// The `p2pa` binary, built once per test run (or `$P2PA_BIN`).
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(b) = std::env::var_os("P2PA_BIN") {
            return PathBuf::from(b);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!("building the p2pa binary the tests run (cargo build -p p2pa; up to minutes the first time)");
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "p2pa"])
            .current_dir(&root)
            .status()
            .expect("cargo build -p p2pa");
        assert!(status.success(), "building the p2pa binary failed");
        target.join("debug").join("p2pa")
    })
}

/// This test process's directory under the system temp dir, which holds
/// every scratch directory it makes. The first call removes the ones of test
/// processes that have ended (the test harness has no hook at exit), so a run
/// leaves at most its own behind, and the next run removes that.
pub fn run_dir() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let gone = |pid: &str| pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists();
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `p2pa-test-<pid>` now; `p2pa-test-<pid>-<name>-<n>` before.
            let pid = name
                .strip_prefix("p2pa-test-")
                .map(|rest| rest.split('-').next().unwrap_or(""));
            if pid.is_some_and(gone) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let d = tmp.join(format!("p2pa-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("test run dir");
        remove_when_done(&d);
        d
    })
}

/// Removes `dir` once this test process has ended: a detached shell polls
/// for the process once a second (for at most two hours) and then deletes
/// the directory, so a run leaves nothing behind even though the test
/// harness has no hook at exit. Its output goes nowhere, so cargo does not
/// wait for it.
fn remove_when_done(dir: &Path) {
    let pid = std::process::id();
    let script = format!(
        "i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 7200 ]; do sleep 1; i=$((i+1)); done; rm -rf -- \"$0\""
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A fresh scratch directory in [`run_dir`].
pub fn scratch(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = run_dir().join(format!("{name}-{n}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A port no other test of this run uses, in this process or any other:
/// nodes on one multicast port all hear each other's beacons (the sockets
/// share it), so two test processes on one port would count each other's.
/// The port is claimed by an exclusive lock on a file named after it (in
/// `$TMPDIR/p2pa-test-ports`), held for the rest of the process and released
/// by the kernel when it ends; a number another process holds is skipped.
/// (The claim binds no socket, so the port stays free for whatever the
/// test runs on it: a node's beacons, a listener, an emulator's UART.) The
/// first try is spread by the process id, so claims rarely race.
pub fn unique_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 21_000;
    const SPAN: u32 = 30_000;
    static CLAIMS: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join("p2pa-test-ports");
    std::fs::create_dir_all(&dir).expect("the test ports' lock directory");
    let spread = (std::process::id() % 750) * 40;
    for _ in 0..SPAN {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (spread + n) % SPAN;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        let Ok(file) = std::fs::File::create(dir.join(port.to_string())) else {
            continue;
        };
        if file.try_lock().is_ok() {
            CLAIMS.lock().unwrap_or_else(|e| e.into_inner()).push(file);
            return port;
        }
    }
    panic!("no free test port in {FIRST}..{}", FIRST + SPAN);
}

/// Options for an in-process node on loopback: host-local multicast on
/// `port` (TTL 0), no mDNS.
pub fn loopback_options(port: u16) -> p2pa_node::io::NodeOptions {
    use std::net::{Ipv4Addr, SocketAddr};
    let mut o = p2pa_node::io::NodeOptions::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    o.multicast = Some(p2pa_node::io::MulticastConfig {
        group: Ipv4Addr::new(239, 255, 42, 99),
        port,
        interface: Ipv4Addr::LOCALHOST,
        ttl: 0,
    });
    o.mdns = false;
    o
}

/// A test that cannot run here says so (`SKIPPED: why`) and passes, unless
/// the environment variable `required` is set (`.ci/run` sets it where it
/// installed what the test needs): then the skip fails the test, so a CI
/// machine that should run it never reports it green unrun.
pub fn skip(required: &str, why: &str) {
    if std::env::var_os(required).is_some_and(|v| v != "0") {
        panic!("{required} is set, so this test must run, but: {why}");
    }
    println!("SKIPPED: {why}");
}

/// Network flags for a host-local run on `port`.
pub fn local_net(port: u16) -> Vec<String> {
    vec![
        "--multicast-ttl".into(),
        "0".into(),
        "--no-mdns".into(),
        "--multicast-port".into(),
        port.to_string(),
    ]
}

/// A `p2pa node --json` child process; killed when dropped.
pub struct NodeProc {
    pub child: Child,
    pub id: String,
    pub addr: String,
    lines: Receiver<Value>,
    pub seen: Vec<Value>,
}

impl NodeProc {
    /// Starts a node with `extra` arguments and waits for its `listening` line.
    pub fn start(port: u16, data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(port, data_dir, extra, &[])
    }

    /// As [`NodeProc::start`], with these environment variables set.
    pub fn start_with_env(
        port: u16,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(bin());
        cmd.envs(env.iter().copied());
        cmd.args(local_net(port))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["node", "--json", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("P2PA_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn p2pa node");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("node printed its listening line");
        assert_eq!(first["event"], "listening", "first stdout line: {first}");
        Self {
            child,
            id: first["node_id"].as_str().expect("node_id").to_owned(),
            addr: first["addr"].as_str().expect("addr").to_owned(),
            lines: rx,
            seen: vec![first],
        }
    }

    /// Waits (bounded) until an event satisfying `pred` has been printed.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return Some(v.clone());
        }
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Some(v);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Ids of peers this node has reported `connected` (and not lost since).
    pub fn connected_peers(&mut self) -> Vec<String> {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        let mut set = std::collections::BTreeSet::new();
        for v in &self.seen {
            let peer = v["peer"].as_str().unwrap_or_default().to_owned();
            match v["event"].as_str() {
                Some("connected") => {
                    set.insert(peer);
                }
                Some("disconnected") => {
                    set.remove(&peer);
                }
                _ => {}
            }
        }
        set.into_iter().collect()
    }

    /// Sends SIGKILL and reaps.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `p2pa` with `args` to completion (bounded by `timeout`). Its stdout
/// and stderr are read while it runs (a full pipe would stall it).
pub fn p2pa(args: &[&str], timeout: Duration) -> Output {
    use std::io::Read;
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("P2PA_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn p2pa");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let end = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            break child.wait().expect("p2pa exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `p2pa` with the host-local network flags for `port` in front of `args`.
pub fn p2pa_local(port: u16, args: &[&str], timeout: Duration) -> Output {
    let net = local_net(port);
    let mut all: Vec<&str> = net.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    p2pa(&all, timeout)
}

/// `p2pa batch --kind KIND --inputs INPUTS --out OUT` then `extra`,
/// host-local on `port`.
pub fn batch_local(
    port: u16,
    kind: &str,
    inputs: &Path,
    out: &Path,
    extra: &[&str],
    timeout: Duration,
) -> Output {
    let (inputs, out) = (inputs.to_string_lossy(), out.to_string_lossy());
    let mut args = vec!["batch", "--kind", kind, "--inputs", &inputs, "--out", &out];
    args.extend_from_slice(extra);
    p2pa_local(port, &args, timeout)
}

/// `p2pa submit --kind infer --model MODEL` then `args`, host-local on `port`.
pub fn submit_infer(port: u16, model: &Path, args: &[&str], timeout: Duration) -> Output {
    let model = model.to_str().expect("UTF-8 path");
    let mut all = vec!["submit", "--kind", "infer", "--model", model];
    all.extend_from_slice(args);
    p2pa_local(port, &all, timeout)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses every line of a JSONL text.
pub fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}
