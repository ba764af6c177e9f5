//! Discovery across network namespaces on a bridge, with TTL 1 multicast, as
//! on a real LAN: without loss and with 10 % of frames dropped. Needs root;
//! prints SKIPPED otherwise.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use p2pa_tests::netns::{unavailable, Lan};
use p2pa_tests::{bin, Value};

/// Starts a node in each namespace; returns how long until every node had a
/// session with every other.
/// Starts `p2pa node --json` in host `i`, listening on its address, with
/// `net` (multicast/mDNS flags) and a data directory named by `dir`.
fn spawn_node(lan: &Lan, i: usize, net: &[String], dir: &str) -> std::process::Child {
    p2pa_in(lan, i, net, dir)
        .args([
            "node",
            "--json",
            "--listen",
            &format!("{}:7421", lan.addrs[i]),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start p2pa node in its namespace")
}

/// The data directory named `dir` of this LAN's hosts.
fn data_dir(lan: &Lan, dir: &str) -> std::path::PathBuf {
    p2pa_tests::run_dir().join(format!("{}-{dir}", lan.prefix))
}

/// `p2pa` in host `i` with `net` and the data directory named `dir`; the
/// command's own arguments follow.
fn p2pa_in(lan: &Lan, i: usize, net: &[String], dir: &str) -> std::process::Command {
    let mut c = lan.command(i, bin());
    c.args(net).arg("--data-dir").arg(data_dir(lan, dir));
    c
}

fn flags(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// How nodes find each other in a run.
#[derive(Clone, Copy)]
enum Mode {
    /// Beacons on one multicast port, no mDNS.
    Beacons,
    /// mDNS only: every node beacons on a port of its own, so beacons never meet.
    MdnsOnly,
}

fn mesh_time(lan: &Lan, port: u16, mode: Mode) -> Option<Duration> {
    let n = lan.hosts.len();
    let (tx, rx) = channel::<(usize, Value)>();
    let mut children = Vec::new();
    let start = Instant::now();
    for i in 0..n {
        let net = match mode {
            Mode::Beacons => flags(&[
                "--multicast-ttl",
                "1",
                "--no-mdns",
                "--multicast-port",
                &port.to_string(),
            ]),
            Mode::MdnsOnly => flags(&[
                "--multicast-ttl",
                "1",
                "--multicast-port",
                &(port + 1 + i as u16).to_string(),
            ]),
        };
        let mut child = spawn_node(lan, i, &net, &format!("n{i}"));
        let out = child.stdout.take().expect("piped stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send((i, v)).is_err() {
                        break;
                    }
                }
            }
        });
        children.push(child);
    }
    let mut connected = vec![std::collections::BTreeSet::new(); n];
    let end = start + Duration::from_secs(20);
    let mut result = None;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Ok((i, v)) = rx.recv_timeout(left) else {
            break;
        };
        if v["event"] == "connected" {
            connected[i].insert(v["peer"].as_str().unwrap_or_default().to_owned());
        }
        if connected.iter().all(|c| c.len() == n - 1) {
            result = Some(start.elapsed());
            break;
        }
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    result
}

fn run(tag: &str, loss: u32) {
    if let Some(why) = unavailable() {
        p2pa_tests::skip(
            "P2PA_REQUIRE_NETNS",
            &format!("namespace discovery test: {why}"),
        );
        return;
    }
    let _ = bin(); // build before timing anything
    let lan = Lan::new(tag, 3).expect("namespaces");
    if loss > 0 {
        let nft = std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !nft {
            p2pa_tests::skip(
                "P2PA_REQUIRE_NFT",
                "packet loss needs nftables (`nft`), which is not installed",
            );
            return;
        }
        lan.set_loss(loss).expect("nftables loss rule");
    }
    let t = mesh_time(&lan, 7420, Mode::Beacons)
        .unwrap_or_else(|| panic!("3 namespaces did not all connect in 20 s with {loss} % loss"));
    println!("3 namespaces meshed in {t:?} with {loss} % loss");
    assert!(t < Duration::from_secs(20));
}

#[test]
fn three_namespaces_discover_each_other_with_ttl_1() {
    run("a", 0);
}

#[test]
fn three_namespaces_discover_each_other_with_10_percent_loss() {
    run("b", 10);
}

#[test]
fn nodes_on_a_lan_without_a_default_route_find_each_other_and_serve_a_task() {
    if let Some(why) = unavailable() {
        p2pa_tests::skip("P2PA_REQUIRE_NETNS", &why);
        return;
    }
    // The kernel has no route for the beacon group here: the node joins it
    // on each interface instead of refusing to start.
    let _ = bin(); // build before timing anything
    let lan = Lan::without_default_route("nr", 3).expect("namespaces");
    let took = mesh_time(&lan, 7470, Mode::Beacons);
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "no default route: nodes did not all meet ({took:?})"
    );
    // And a node there serves a task that a requester on another host of
    // that LAN finds by its beacons (no --peer).
    let net = flags(&[
        "--multicast-ttl",
        "1",
        "--no-mdns",
        "--multicast-port",
        "7476",
    ]);
    let mut worker = spawn_node(&lan, 0, &net, "nr-worker");
    let mut first = String::new();
    BufReader::new(worker.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("listening");
    let out = p2pa_in(&lan, 1, &net, "nr-req")
        .args([
            "submit",
            "--kind",
            "hash",
            "--input",
            "abc",
            "--timeout",
            "20",
        ])
        .output()
        .expect("submit");
    let _ = worker.kill();
    let _ = worker.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("ba7816bf"), "{text}");
}

#[test]
fn doctor_finds_another_machine_beaconing_with_this_machine_s_key() {
    if let Some(why) = unavailable() {
        p2pa_tests::skip("P2PA_REQUIRE_NETNS", &why);
        return;
    }
    let _ = bin();
    let lan = Lan::new("dk", 2).expect("namespaces");
    let net = flags(&[
        "--multicast-ttl",
        "1",
        "--no-mdns",
        "--multicast-port",
        "7480",
    ]);
    // Host 0 runs a node; host 1 gets a copy of its data directory (its key).
    let mut node = spawn_node(&lan, 0, &net, "dk0");
    let mut first = String::new();
    BufReader::new(node.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("listening");
    let (src, copy) = (data_dir(&lan, "dk0"), data_dir(&lan, "dk1"));
    std::fs::create_dir_all(&copy).expect("copy dir");
    std::fs::copy(src.join("identity.key"), copy.join("identity.key")).expect("copy key");
    let out = p2pa_in(&lan, 1, &net, "dk1")
        .arg("doctor")
        .output()
        .expect("doctor");
    let _ = node.kill();
    let _ = node.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("beacons with this machine's key"), "{text}");
    assert!(text.contains("keygen --force"), "{text}");
}

#[test]
fn nodes_advertising_only_over_mdns_are_found() {
    if let Some(why) = unavailable() {
        p2pa_tests::skip("P2PA_REQUIRE_NETNS", &format!("mDNS namespace test: {why}"));
        return;
    }
    let _ = bin();
    let lan = Lan::new("m", 3).expect("namespaces");
    let t = mesh_time(&lan, 7420, Mode::MdnsOnly)
        .expect("3 namespaces found each other over mDNS alone within 20 s");
    println!("3 namespaces meshed over mDNS alone in {t:?}");
}

/// Discovery latency over `trials` fresh starts: time from starting node B
/// until it has discovered (signed beacon) and connected to (handshake done)
/// node A in another namespace. A benchmark, run by bench/run.sh.
fn latency_trials(loss: u32, trials: usize) {
    if let Some(why) = unavailable() {
        p2pa_tests::skip("P2PA_REQUIRE_NETNS", &format!("discovery latency: {why}"));
        return;
    }
    let lan = Lan::new(if loss > 0 { "ll" } else { "l" }, 2).expect("namespaces");
    if loss > 0 {
        lan.set_loss(loss).expect("nftables loss rule");
    }
    let net = flags(&[
        "--multicast-ttl",
        "1",
        "--no-mdns",
        "--multicast-port",
        "7420",
    ]);
    let node = |i: usize, dir: &str| spawn_node(&lan, i, &net, dir);
    let mut a = node(0, "a");
    let mut first = String::new();
    BufReader::new(a.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("listening");
    let (mut found, mut connected) = (Vec::new(), Vec::new());
    for _ in 0..trials {
        // A's dial budget for B's address refills one dial a second; B
        // restarting faster than that would measure the budget (A waits for
        // a token when B's id is higher and B leaves the dial to A).
        std::thread::sleep(Duration::from_millis(1100));
        let t = Instant::now();
        let mut b = node(1, "b");
        let out = BufReader::new(b.stdout.take().expect("stdout"));
        let (mut f, mut c) = (None, None);
        for line in out.lines().map_while(Result::ok) {
            if t.elapsed() > Duration::from_secs(10) {
                break;
            }
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["event"] == "discovered" && f.is_none() {
                f = Some(t.elapsed());
            }
            if v["event"] == "connected" {
                c = Some(t.elapsed());
                break;
            }
        }
        let _ = b.kill();
        let _ = b.wait();
        found.push(f.unwrap_or(Duration::from_secs(10)));
        connected.push(c.unwrap_or(Duration::from_secs(10)));
    }
    let _ = a.kill();
    let _ = a.wait();
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            p(0.5),
            p(0.99),
            p(1.0)
        )
    };
    println!(
        "| {loss} % loss, {trials} trials | discovered: {} | connected: {} |",
        stats(&mut found),
        stats(&mut connected)
    );
}

#[test]
#[ignore = "a benchmark: 100 trials each; run by bench/run.sh"]
fn discovery_latency_report() {
    let _ = bin();
    println!("| netns, TTL 1, 2 hosts | time from start to first signed beacon | to authenticated session |");
    println!("|---|---|---|");
    latency_trials(0, 100);
    latency_trials(10, 100);
}
