//! Network namespaces for discovery tests: N namespaces, each with one veth
//! leg on a bridge that lives in a namespace of its own, addresses in a /24
//! that exists only inside them. Needs root and iproute2; nftables for loss.
//! Everything is removed when the [`Lan`] is dropped.

use std::process::{Command, Stdio};

/// Why namespace tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces need CAP_NET_ADMIN)".into());
    }
    let ip_ok = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ip_ok {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    None
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A little LAN of namespaces.
pub struct Lan {
    pub prefix: String,
    pub hosts: Vec<String>,
    pub addrs: Vec<String>,
    bridge_ns: String,
}

impl Lan {
    /// Builds `n` hosts on one bridge, each with a default route;
    /// `tag` keeps names unique per test.
    pub fn new(tag: &str, n: usize) -> Result<Self, String> {
        Self::build(tag, n, true)
    }

    /// Like [`new`](Self::new), with no default route in any host: a
    /// switch-only LAN, where the kernel has no route for a multicast group.
    pub fn without_default_route(tag: &str, n: usize) -> Result<Self, String> {
        Self::build(tag, n, false)
    }

    fn build(tag: &str, n: usize, default_route: bool) -> Result<Self, String> {
        let pid = std::process::id();
        let prefix = format!("p2pa{}{tag}", pid % 100_000);
        let subnet = 200 + (pid % 50) as u8;
        let bridge_ns = format!("{prefix}br");
        let mut lan = Lan {
            prefix: prefix.clone(),
            hosts: Vec::new(),
            addrs: Vec::new(),
            bridge_ns: bridge_ns.clone(),
        };
        sh(&["ip", "netns", "add", &bridge_ns])?;
        sh(&[
            "ip", "-n", &bridge_ns, "link", "add", "br0", "type", "bridge",
        ])?;
        sh(&["ip", "-n", &bridge_ns, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{prefix}h{i}");
            let addr = format!("10.{subnet}.{}.{}", tag.len() % 200, i + 1);
            sh(&["ip", "netns", "add", &ns])?;
            lan.hosts.push(ns.clone());
            let host_if = format!("v{i}");
            let br_if = format!("b{i}");
            sh(&[
                "ip", "-n", &ns, "link", "add", &host_if, "type", "veth", "peer", "name", &br_if,
                "netns", &bridge_ns,
            ])?;
            sh(&[
                "ip", "-n", &bridge_ns, "link", "set", &br_if, "master", "br0",
            ])?;
            sh(&["ip", "-n", &bridge_ns, "link", "set", &br_if, "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &host_if,
            ])?;
            sh(&["ip", "-n", &ns, "link", "set", &host_if, "up"])?;
            if default_route {
                sh(&["ip", "-n", &ns, "route", "add", "default", "dev", &host_if])?;
            }
            lan.addrs.push(addr);
        }
        Ok(lan)
    }

    /// Drops `percent` % of frames crossing the bridge (nftables; this kernel
    /// has no netem).
    pub fn set_loss(&self, percent: u32) -> Result<(), String> {
        let pct = percent.to_string();
        let nft = |rest: &[&str]| {
            let mut args = vec!["ip", "netns", "exec", self.bridge_ns.as_str(), "nft", "add"];
            args.extend_from_slice(rest);
            sh(&args)
        };
        nft(&["table", "bridge", "p2pa_loss"])?;
        let hook = "{ type filter hook forward priority 0; }";
        nft(&["chain", "bridge", "p2pa_loss", "lossy", hook])?;
        let rule = ["numgen", "random", "mod", "100", "<", &pct, "drop"];
        let mut args = vec!["rule", "bridge", "p2pa_loss", "lossy"];
        args.extend_from_slice(&rule);
        nft(&args)
    }

    /// A command that runs inside host `i`.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i]]).arg(program);
        c
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.bridge_ns)) {
            let _ = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                });
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
