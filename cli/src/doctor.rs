//! `p2pa doctor`: checks what makes discovery fail on a real LAN and says
//! how to fix each: no route for the beacon group, a firewall dropping
//! beacons or mDNS, two machines with one key, a clock far off.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2pa_node::identity;
use p2pa_node::io::udp;
use p2pa_node::protocol::{verify_datagram, Message, NodeId};

use crate::{exit, CliResult, NetArgs};

/// How long to listen for beacons.
const LISTEN: Duration = Duration::from_secs(3);
/// A peer whose beacon counter (its clock at start, in µs) is this far ahead
/// of ours has a clock that is off.
const CLOCK_SLACK: Duration = Duration::from_secs(120);

/// What one check found.
enum Finding {
    Ok(String),
    Problem { what: String, fix: String },
}

/// `p2pa doctor`: one line per check, exit 1 if any found a problem.
pub fn cmd_doctor(net: &NetArgs, dir: &Path) -> CliResult {
    let mut findings = Vec::new();
    let cfg = net.multicast();
    let me = identity::load(&dir.join(identity::KEY_FILE))
        .ok()
        .map(|k| k.node_id());
    match udp::open(&cfg) {
        Err(e) => findings.push(Finding::Problem {
            what: format!("cannot join the beacon group {}:{}: {e}", cfg.group, cfg.port),
            fix: "give the LAN interface a route for multicast (`ip route add 224.0.0.0/4 dev eth0`), name it with --interface, or link nodes with --bootstrap HOST:PORT".into(),
        }),
        Ok(b) => {
            findings.push(Finding::Ok(match b.interfaces.as_slice() {
                [] => format!("beacon group {}:{} joined (the kernel picks the interface)", cfg.group, cfg.port),
                ifs => format!(
                    "no route for {}: beacon group joined on {}",
                    cfg.group,
                    ifs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            }));
            findings.extend(listen(&b.socket, me));
        }
    }
    findings.extend(firewall());
    let mut problems = 0;
    for f in &findings {
        match f {
            Finding::Ok(s) => println!("ok: {s}"),
            Finding::Problem { what, fix } => {
                problems += 1;
                println!("PROBLEM: {what}\n  fix: {fix}");
            }
        }
    }
    Ok(if problems == 0 {
        exit::OK
    } else {
        exit::TASK_FAILED
    })
}

/// Listens to the group for [`LISTEN`]: who beacons, whether one of them is
/// this machine's key from another host, whose clock is ahead.
fn listen(sock: &std::net::UdpSocket, me: Option<NodeId>) -> Vec<Finding> {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let local = udp::local_ipv4s();
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let slack = u64::try_from(CLOCK_SLACK.as_micros()).unwrap_or(u64::MAX);
    let mut seen: Vec<(NodeId, SocketAddr, u64)> = Vec::new();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + LISTEN;
    while Instant::now() < end {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(v) = verify_datagram(buf.get(..n).unwrap_or_default()) else {
            continue;
        };
        if matches!(v.message(), Message::Beacon(_))
            && !seen
                .iter()
                .any(|(id, a, _)| *id == v.sender() && *a == from)
        {
            seen.push((v.sender(), from, v.seq()));
        }
    }
    let mut out = Vec::new();
    let others = seen.iter().filter(|(id, _, _)| Some(*id) != me).count();
    out.push(if others == 0 {
        Finding::Problem {
            what: format!("no beacon from another node in {} s", LISTEN.as_secs()),
            fix: "start `p2pa node` on another machine of this LAN; if one runs, a firewall or the switch drops multicast (UDP to 239.255.42.99:7420): allow it, or link nodes with --bootstrap".into(),
        }
    } else {
        Finding::Ok(format!("{others} other node(s) beaconing"))
    });
    for (id, from, seq) in &seen {
        let from_here = matches!(from.ip(), IpAddr::V4(ip) if local.contains(&ip));
        if Some(*id) == me && !from_here {
            out.push(Finding::Problem {
                what: format!(
                    "another machine ({from}) beacons with this machine's key {}",
                    id.short()
                ),
                fix: "a copied data directory: run `p2pa keygen --force` on one of them".into(),
            });
        }
        if *seq > now_us.saturating_add(slack) {
            let ahead = Duration::from_micros(seq.saturating_sub(now_us));
            out.push(Finding::Problem {
                what: format!("{} at {from} has a clock at least {} s ahead of this one", id.short(), ahead.as_secs()),
                fix: "run NTP (systemd-timesyncd, chrony) on both; a node whose clock goes back has its beacons dropped as replays until peers forget it".into(),
            });
        }
    }
    out
}

/// Firewall rules that drop beacons or mDNS, where nft or iptables can be
/// read (root).
fn firewall() -> Vec<Finding> {
    let read: Vec<String> = ["nft list ruleset", "iptables -S"]
        .iter()
        .filter_map(|cmd| {
            let mut parts = cmd.split_whitespace();
            let prog = parts.next()?;
            let out = std::process::Command::new(prog).args(parts).output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect();
    if read.is_empty() {
        return vec![Finding::Ok(
            "firewall rules not readable here (nft/iptables missing or not root): not checked"
                .into(),
        )];
    }
    let rules = read.join("\n");
    let dropping: Vec<&str> = rules
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            (l.contains("7420") || l.contains("5353") || l.contains("7421"))
                && (l.contains("drop") || l.contains("reject"))
        })
        .collect();
    if dropping.is_empty() {
        vec![Finding::Ok(
            "no firewall rule drops UDP 7420, mDNS (5353) or TCP 7421".into(),
        )]
    } else {
        vec![Finding::Problem {
            what: format!("firewall rules drop p2pa traffic: {}", dropping.join(" | ")),
            fix: "allow UDP 7420 (beacons), UDP 5353 (mDNS) and TCP 7421 (sessions) on the LAN interface".into(),
        }]
    }
}
