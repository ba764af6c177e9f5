//! The CLI as a user runs it, on loopback with host-local multicast:
//! node, peers, submit, batch (with a killed worker and a killed batch), demo,
//! and bad input with its documented exit code.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use p2pa_tests::*;

const T: Duration = Duration::from_secs(60);

fn three_nodes(port: u16, name: &str, extra: &[&str]) -> Vec<NodeProc> {
    let dir = scratch(name);
    (0..3)
        .map(|i| NodeProc::start(port, &dir.join(format!("n{i}")), extra))
        .collect()
}

#[test]
fn three_node_processes_find_each_other_on_loopback() {
    let port = unique_port();
    let mut nodes = three_nodes(port, "mesh", &[]);
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let start = Instant::now();
    for n in nodes.iter_mut() {
        let me = n.id.clone();
        for other in ids.iter().filter(|i| **i != me) {
            let found = n.wait_for(Duration::from_secs(10), |v| {
                v["event"] == "connected" && v["peer"] == other.as_str()
            });
            assert!(found.is_some(), "node {me} never connected to {other}");
        }
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    // `peers` sees all three, authenticated.
    let out = p2pa_local(port, &["peers", "--json", "--wait", "3000"], T);
    assert!(out.status.success(), "{}", stderr(&out));
    let peers = jsonl(&stdout(&out));
    let mut seen: Vec<String> = peers
        .iter()
        .map(|p| p["node_id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);
    assert!(
        peers.iter().all(
            |p| p["state"] == "connected" && (p["via"] == "multicast" || p["via"] == "inbound")
        ),
        "{peers:?}"
    );
}

#[test]
fn submit_runs_echo_and_hash_on_a_discovered_peer_with_a_receipt() {
    let port = unique_port();
    let mut node = NodeProc::start(port, &scratch("submit"), &[]);
    let out = p2pa_local(
        port,
        &[
            "submit",
            "--kind",
            "echo",
            "--input",
            "hello p2pa",
            "--json",
        ],
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"], "hello p2pa");
    assert_eq!(v["worker"], node.id.as_str());
    assert_eq!(v["receipt"]["worker"], node.id.as_str());
    assert!(v["elapsed_ms"].as_f64().unwrap() > 0.0);
    // Task ids are strings in JSON: above 2^53, a number would lose digits
    // in jq or JavaScript.
    let id = v["task_id"].as_str().unwrap();
    assert!(id.parse::<u64>().is_ok(), "{id}");
    assert_eq!(v["receipt"]["task_id"], id);
    verify_kept_receipt(&v, "submit-verify");
    // The worker's JSON log says the task started and how it ended.
    let started = node.wait_for(T, |e| e["event"] == "task_started" && e["kind"] == "echo");
    let done = node
        .wait_for(T, |e| e["event"] == "task_done" && e["kind"] == "echo")
        .expect("a task_done event");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["job"], started.expect("a task_started event")["job"]);
    assert!(done["duration_ms"].as_f64().is_some(), "{done}");

    let out = p2pa_local(
        port,
        &[
            "submit", "--kind", "hash", "--input", "abc", "--peer", &node.addr, "--json",
        ],
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        v["output"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // A host name in --peer resolves (HOST:PORT, as the help says).
    let echo_at = |peer: &str| {
        let args = [
            "submit", "--kind", "echo", "--input", "named", "--peer", peer,
        ];
        p2pa_local(port, &args, T)
    };
    let out = echo_at(&format!(
        "localhost:{}",
        node.addr.rsplit(':').next().unwrap()
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "named");
    let out = echo_at("a-name-without-a-port");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot resolve"), "{}", stderr(&out));

    // A task that fails on the worker: exit code 1, status failed, reason given.
    let out = p2pa_local(
        port,
        &["submit", "--kind", "sleep", "--input", "soon", "--json"],
        T,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["status"], "failed");
    assert!(
        v["output"].as_str().unwrap().contains("milliseconds"),
        "{v}"
    );
}

#[test]
fn submit_with_input_file_and_binary_output_is_hex_encoded() {
    let port = unique_port();
    let dir = scratch("binary");
    let _node = NodeProc::start(port, &dir.join("n"), &[]);
    let path = dir.join("in.bin");
    std::fs::write(&path, [0xffu8, 0x00, 0xfe]).unwrap();
    let out = p2pa_local(
        port,
        &[
            "submit",
            "--kind",
            "echo",
            "--input-file",
            path.to_str().unwrap(),
            "--json",
        ],
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["output_hex"], "ff00fe");
    assert!(v.get("output").is_none());
}

fn write_inputs(dir: &std::path::Path, n: usize, ms: u64) -> std::path::PathBuf {
    let path = dir.join("inputs.jsonl");
    let text: String = (0..n)
        .map(|_| format!("{{\"input\": \"{ms}\"}}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn lines_by_number(results: &[Value]) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for r in results {
        *m.entry(r["line"].as_u64().unwrap()).or_default() += 1;
    }
    m
}

#[test]
fn batch_survives_kill_9_of_a_worker_with_every_task_exactly_once() {
    let port = unique_port();
    let dir = scratch("batchkill");
    let mut nodes = three_nodes(port, "batchkill-nodes", &["--workers", "2"]);
    let inputs = write_inputs(&dir, 90, 40);
    let out_path = dir.join("results.jsonl");
    let mut batch = Command::new(bin())
        .args(local_net(port))
        .args(["batch", "--kind", "sleep", "--concurrency", "6", "--inputs"])
        .arg(&inputs)
        .arg("--out")
        .arg(&out_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill a worker once the batch is well under way.
    let end = Instant::now() + T;
    while Instant::now() < end {
        let n = std::fs::read_to_string(&out_path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= 15 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    nodes[0].kill9();
    let status = loop {
        if let Some(s) = batch.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "batch did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = batch.wait_with_output().unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&err.stderr));
    let results = jsonl(&std::fs::read_to_string(&out_path).unwrap());
    assert_eq!(results.len(), 90, "one result per task");
    let by_line = lines_by_number(&results);
    assert_eq!(by_line.len(), 90);
    assert!(by_line.values().all(|c| *c == 1), "no task written twice");
    assert!(results.iter().all(|r| r["status"] == "completed"));
    assert!(
        results.iter().any(|r| r["attempts"].as_u64().unwrap() > 1),
        "the killed worker's tasks were retried"
    );
    assert!(results
        .iter()
        .all(|r| r["receipt"]["signature"].as_str().unwrap().len() == 128));
    // Every receipt in the journal checks offline, the retried ones too.
    let out = p2pa(&["verify", out_path.to_str().unwrap()], T);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).matches(": ok: ").count(), 90);
}

/// `p2pa verify` accepts the receipt of `line` as kept, and refuses it with
/// any signed field changed: the status, the output, the requester.
fn verify_kept_receipt(line: &Value, name: &str) {
    let dir = scratch(name);
    let check = |v: &Value, file: &str| {
        let path = dir.join(file);
        std::fs::write(&path, format!("{v}\n")).unwrap();
        p2pa(&["verify", path.to_str().unwrap()], T)
    };
    let out = check(line, "kept.jsonl");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains(": ok: task "), "{}", stdout(&out));
    let forgeries: [(&str, Value); 3] = [
        ("status", Value::from("failed")),
        ("output_inline_hex", Value::from("00")),
        ("requester", line["receipt"]["worker"].clone()),
    ];
    for (field, value) in forgeries {
        let mut forged = line.clone();
        forged["receipt"][field] = value;
        let out = check(&forged, "forged.jsonl");
        assert_eq!(out.status.code(), Some(1), "{field}: {}", stdout(&out));
        assert!(stdout(&out).contains("FAILED"), "{field}: {}", stdout(&out));
    }
}

#[test]
fn killed_batch_resumes_without_loss_or_duplicates() {
    let port = unique_port();
    let dir = scratch("resume");
    let _nodes = three_nodes(port, "resume-nodes", &["--workers", "2"]);
    let inputs = write_inputs(&dir, 60, 30);
    let out_path = dir.join("results.jsonl");
    let batch_args = |out: &std::path::Path| {
        let mut c = Command::new(bin());
        c.args(local_net(port))
            .args(["batch", "--kind", "sleep", "--concurrency", "6", "--inputs"])
            .arg(&inputs)
            .arg("--out")
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let mut first = batch_args(&out_path).spawn().unwrap();
    let end = Instant::now() + T;
    loop {
        let n = std::fs::read_to_string(&out_path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= 10 || Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let text = std::fs::read_to_string(&out_path).unwrap();
    let partial = text.matches('\n').count(); // complete lines only

    assert!(
        (10..60).contains(&partial),
        "killed mid-way ({partial} results)"
    );
    let second = batch_args(&out_path).output().unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("resuming"));
    let results = jsonl(&std::fs::read_to_string(&out_path).unwrap());
    let by_line = lines_by_number(&results);
    assert_eq!(by_line.len(), 60, "every line has a result");
    assert!(by_line.values().all(|c| *c == 1), "no result written twice");
    // A third run has nothing to do.
    let third = batch_args(&out_path).output().unwrap();
    assert!(third.status.success());
    assert_eq!(
        jsonl(&std::fs::read_to_string(&out_path).unwrap()).len(),
        60
    );
}

#[test]
fn demo_runs_and_cleans_up() {
    let out = p2pa(&["demo", "--tasks", "60"], T);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("discovery: found and authenticated all 3 nodes"),
        "{text}"
    );
    assert!(text.contains("60/60 completed"), "{text}");
    assert!(
        text.contains("classified correctly"),
        "the demo runs distributed inference: {text}"
    );
    assert!(
        text.contains("bytes served"),
        "the model travelled to the nodes: {text}"
    );
    assert!(text.contains("killed node 1"), "{text}");
    assert!(text.contains("p50") && text.contains("p99"), "{text}");
    // Every node process it started is gone.
    let pids: Vec<String> = text
        .lines()
        .filter_map(|l| l.split("pid ").nth(1))
        .map(|p| p.trim().to_owned())
        .collect();
    assert_eq!(pids.len(), 3);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.contains(") Z ")
            },
            "demo left process {pid} running"
        );
    }
}

#[test]
fn sigterm_makes_a_node_say_goodbye_and_exit_0() {
    let port = unique_port();
    let dir = scratch("sigterm");
    let mut a = NodeProc::start(port, &dir.join("a"), &[]);
    let mut b = NodeProc::start(port, &dir.join("b"), &[]);
    let bid = b.id.clone();
    assert!(a
        .wait_for(Duration::from_secs(10), |v| v["event"] == "connected"
            && v["peer"] == bid.as_str())
        .is_some());
    let status = b
        .terminate(Duration::from_secs(10))
        .expect("node exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    let lost = a.wait_for(Duration::from_secs(5), |v| {
        v["event"] == "disconnected" && v["peer"] == bid.as_str()
    });
    let lost = lost.expect("peer noticed the departure");
    assert!(
        lost["reason"].as_str().unwrap().contains("shutting down"),
        "{lost}"
    );
}

#[test]
fn bad_cli_input_gets_a_clear_message_and_the_documented_exit_code() {
    let port = unique_port();
    let dir = scratch("badinput");
    // Missing input file: usage error 2.
    let out = p2pa_local(
        port,
        &["submit", "--kind", "echo", "--input-file", "/nonexistent/x"],
        T,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read input file /nonexistent/x"),
        "{}",
        stderr(&out)
    );
    // Unknown kind: 2, and the known kinds are listed.
    let out = p2pa_local(port, &["submit", "--kind", "frobnicate", "--input", "x"], T);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown task kind `frobnicate`") && stderr(&out).contains("echo"),
        "{}",
        stderr(&out)
    );
    // Malformed JSONL: 2, naming the line; earlier results stay untouched.
    let inputs = dir.join("bad.jsonl");
    std::fs::write(&inputs, "\"ok\"\n{\"input\": \"fine\"}\n{not json\n").unwrap();
    let results = dir.join("results.jsonl");
    std::fs::write(&results, "{\"line\":1,\"status\":\"completed\"}\n").unwrap();
    let out = batch_local(port, "echo", &inputs, &results, &[], T);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.jsonl:3:"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&results).unwrap(),
        "{\"line\":1,\"status\":\"completed\"}\n"
    );
    // No peers: network error 3, quickly, with a hint.
    let out = p2pa_local(
        port,
        &["submit", "--kind", "echo", "--input", "x", "--wait", "300"],
        T,
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("no peers found"), "{}", stderr(&out));
    let out = p2pa_local(port, &["peers", "--wait", "200"], T);
    assert_eq!(out.status.code(), Some(3));
    // No subcommand: clap usage, 2.
    let out = p2pa(&[], T);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn keygen_and_id_manage_the_node_key() {
    let dir = scratch("keygen");
    let d = dir.to_str().unwrap();
    // `id` before any key: it says how to make one and makes none.
    let out = p2pa(&["--data-dir", d, "id"], T);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("p2pa keygen"), "{}", stderr(&out));
    assert!(!dir.join("identity.key").exists());
    // No worker slots is a usage error, not a silent 1.
    let out = p2pa(&["--data-dir", d, "node", "--workers", "0"], T);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Booleans in the environment take 0/1/true/false.
    for v in ["0", "1", "false", "true"] {
        let out = std::process::Command::new(p2pa_tests::bin())
            .env("P2PA_NO_MDNS", v)
            .args(["--data-dir", d, "model", "list"])
            .output()
            .unwrap();
        assert!(out.status.success(), "P2PA_NO_MDNS={v}: {}", stderr(&out));
    }
    let out = p2pa(&["--data-dir", d, "keygen"], T);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(id.len(), 64);
    let out = p2pa(&["--data-dir", d, "id"], T);
    assert_eq!(stdout(&out).trim(), format!("{}  {id}", &id[..8]));
    let out = p2pa(&["--data-dir", d, "keygen"], T);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"));
    let out = p2pa(&["--data-dir", d, "keygen", "--force"], T);
    assert!(out.status.success());
    assert_ne!(stdout(&out).trim(), id);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("identity.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = p2pa(&["--data-dir", d, "id"], T);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn p2pa_toml_configures_a_node_and_flags_win() {
    let port = unique_port();
    let dir = scratch("toml");
    std::fs::write(
        dir.join("p2pa.toml"),
        format!("multicast_ttl = 0\nmulticast_port = {port}\nno_mdns = true\nlisten = \"127.0.0.1:0\"\nworkers = 3\n"),
    )
    .unwrap();
    let mut child = std::process::Command::new(bin())
        .arg("--data-dir")
        .arg(&dir)
        .args(["node", "--json", "--workers", "5"])
        .env_remove("P2PA_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = p2pa_local(port, &["peers", "--json", "--wait", "3000"], T);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "the node configured by p2pa.toml was found: {}",
        stderr(&out)
    );
    let peers = jsonl(&stdout(&out));
    assert_eq!(peers.len(), 1);
    assert_eq!(
        peers[0]["free_slots"], 5,
        "the --workers flag wins over the file"
    );
    assert!(peers[0]["addr"].as_str().unwrap().starts_with("127.0.0.1:"));

    std::fs::write(dir.join("p2pa.toml"), "colour = \"blue\"\n").unwrap();
    let out = p2pa(&["--data-dir", dir.to_str().unwrap(), "id"], T);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown setting `colour`"),
        "{}",
        stderr(&out)
    );
    // A broken file names itself and its line, and does not stop --help.
    std::fs::write(dir.join("p2pa.toml"), "workers = 2\nlisten = \n").unwrap();
    let out = p2pa(&["--data-dir", dir.to_str().unwrap(), "id"], T);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("p2pa.toml") && err.contains("line 2"), "{err}");
    let out = p2pa(&["--data-dir", dir.to_str().unwrap(), "--help"], T);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Usage"), "{}", stdout(&out));
    assert!(stderr(&out).contains("warning:"), "{}", stderr(&out));
}

#[test]
fn use_identity_lets_a_requester_through_an_allowlist_and_a_fresh_key_is_refused() {
    let port = unique_port();
    let me = p2pa_tests::scratch("allow-requester");
    let keygen = p2pa(
        &["--data-dir", me.to_str().unwrap(), "keygen"],
        Duration::from_secs(30),
    );
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let id = p2pa(
        &["--data-dir", me.to_str().unwrap(), "id"],
        Duration::from_secs(30),
    );
    let my_id = stdout(&id).split_whitespace().nth(1).unwrap().to_owned();
    let wdir = p2pa_tests::scratch("allow-worker");
    let list = wdir.join("allowlist.txt");
    std::fs::write(&list, format!("# the requester\n{my_id}\n")).unwrap();
    let mut w = NodeProc::start(
        port,
        &wdir,
        &[
            "--trust",
            "allowlist",
            "--allowlist",
            list.to_str().unwrap(),
        ],
    );
    let submit = |extra: &[&str]| {
        let mut args = vec!["--data-dir", me.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "submit",
            "--kind",
            "echo",
            "--input",
            "listed",
            "--peer",
            &w.addr,
            "--json",
            "--wait",
            "2000",
            "--timeout",
            "5",
        ]);
        p2pa_local(port, &args, Duration::from_secs(30))
    };
    let ok = submit(&["--use-identity"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let v: Value = serde_json::from_str(stdout(&ok).trim()).unwrap();
    assert_eq!(v["output"], "listed");
    assert_eq!(
        v["receipt"]["requester"].as_str(),
        Some(my_id.as_str()),
        "{v}"
    );
    // Without the flag the requester has a fresh key, which is not listed.
    let refused = submit(&[]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    // And a data dir without a key says what to do.
    let empty = p2pa_tests::scratch("allow-nokey");
    let nokey = p2pa_local(
        port,
        &[
            "--data-dir",
            empty.to_str().unwrap(),
            "--use-identity",
            "submit",
            "--kind",
            "echo",
            "--input",
            "x",
            "--peer",
            &w.addr,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(nokey.status.code(), Some(2), "{}", stderr(&nokey));
    assert!(stderr(&nokey).contains("p2pa keygen"), "{}", stderr(&nokey));
    w.terminate(Duration::from_secs(10));
}

#[test]
fn the_batch_journal_resumes_only_the_same_batch_and_retries_failures_on_request() {
    let port = unique_port();
    let dir = scratch("journal");
    let _node = NodeProc::start(port, &dir.join("node"), &[]);
    let inputs = dir.join("in.jsonl");
    std::fs::write(&inputs, "\"10\"\n\"not a number\"\n\"20\"\n").unwrap();
    let out = dir.join("out.jsonl");
    let batch_to = |kind: &str, inputs: &std::path::Path, out: &std::path::Path, extra: &[&str]| {
        batch_local(port, kind, inputs, out, extra, T)
    };
    let batch =
        |kind: &str, inputs: &std::path::Path, extra: &[&str]| batch_to(kind, inputs, &out, extra);
    let lines = || jsonl(&std::fs::read_to_string(&out).unwrap());
    // Line 2 fails (sleep wants a number): the batch says so with exit 1.
    let run = batch("sleep", &inputs, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert_eq!(lines().len(), 3);
    assert!(lines()
        .iter()
        .all(|l| l["kind"] == "sleep" && l["input_sha256"].is_string()));
    // Again: nothing runs, and it still exits 1, naming the way out.
    let run = batch("sleep", &inputs, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("--retry-failed"), "{}", stderr(&run));
    assert_eq!(lines().len(), 3);
    // --retry-failed runs line 2 again (and only it).
    let run = batch("sleep", &inputs, &["--retry-failed"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let again: Vec<u64> = lines()
        .iter()
        .skip(3)
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(again, vec![2]);
    // Another kind, or changed inputs, against this journal: refused.
    let run = batch("echo", &inputs, &[]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("another batch"), "{}", stderr(&run));
    let changed = dir.join("changed.jsonl");
    std::fs::write(&changed, "\"11\"\n\"not a number\"\n\"20\"\n").unwrap();
    let run = batch("sleep", &changed, &[]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("has changed"), "{}", stderr(&run));
    // The results file may not be the inputs file.
    let same = batch_to("echo", &inputs, &inputs, &[]);
    assert_eq!(same.status.code(), Some(2), "{}", stderr(&same));
    assert_eq!(
        std::fs::read_to_string(&inputs).unwrap().lines().count(),
        3,
        "inputs untouched"
    );
}

#[test]
fn status_asks_the_running_node_over_its_owner_only_socket() {
    use std::os::unix::fs::PermissionsExt;
    let port = unique_port();
    let dir = scratch("status");
    let none = p2pa(&["--data-dir", dir.to_str().unwrap(), "status"], T);
    assert_eq!(
        none.status.code(),
        Some(3),
        "no node yet: {}",
        stderr(&none)
    );
    assert!(
        stderr(&none).contains("no node is running"),
        "{}",
        stderr(&none)
    );
    let mut node = NodeProc::start(port, &dir, &[]);
    let other = NodeProc::start(port, &scratch("status-peer"), &[]);
    node.wait_for(T, |v| {
        v["event"] == "connected" && v["peer"] == other.id.as_str()
    })
    .expect("the two nodes meet");
    let socket = dir.join("p2pa.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner only");
    let out = p2pa(
        &["--data-dir", dir.to_str().unwrap(), "status", "--json"],
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["node_id"], node.id.as_str());
    assert_eq!(v["addr"], node.addr.as_str());
    assert_eq!(v["peers"]["connected"], 1, "{v}");
    assert_eq!(v["peer_list"][0]["node_id"], other.id.as_str());
    assert!(
        v["stats"]["handshakes_completed"].as_u64().unwrap() >= 1,
        "{v}"
    );
    assert_eq!(v["work"]["completed"], 0, "{v}");
    assert_eq!(v["models_loaded"], serde_json::json!([]), "{v}");
    let task = p2pa_local(
        port,
        &[
            "submit", "--kind", "echo", "--input", "x", "--peer", &node.addr,
        ],
        T,
    );
    assert_eq!(task.status.code(), Some(0), "{}", stderr(&task));
    let out = p2pa(
        &["--data-dir", dir.to_str().unwrap(), "status", "--json"],
        T,
    );
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["work"]["completed"], 1, "{v}");
    assert_eq!(v["work"]["failed"], 0, "{v}");
    assert!(v["work"]["slots"].as_u64().unwrap() >= 1, "{v}");
    let human = p2pa(&["--data-dir", dir.to_str().unwrap(), "status"], T);
    assert!(stdout(&human).contains("1 connected"), "{}", stdout(&human));
    // A node that stops removes its socket.
    assert!(node.terminate(T).is_some_and(|s| s.success()));
    assert!(!socket.exists(), "the socket went with the node");
}

#[test]
fn help_groups_the_network_options_apart_from_each_command_s_own() {
    let out = p2pa(&["submit", "--help"], T);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let help = stdout(&out);
    let network = help.find("Network options").expect("a network heading");
    let own = help.find("--kind").expect("submit's own flag");
    let ttl = help.find("--multicast-ttl").expect("the network flag");
    assert!(own < network && network < ttl, "{help}");
    // The demo lists only what it uses: it runs its nodes its own way
    // (asked either way).
    let out = p2pa(&["demo", "--help"], T);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let help = stdout(&out);
    let out = p2pa(&["help", "demo"], T);
    assert_eq!(stdout(&out), help, "help demo = demo --help");
    for own in ["--nodes", "--tasks", "--task-ms", "--no-kill", "--help"] {
        assert!(help.contains(own), "{own} missing: {help}");
    }
    for other in [
        "--multicast-ttl",
        "--data-dir",
        "--no-mdns",
        "Network options",
    ] {
        assert!(!help.contains(other), "{other} listed: {help}");
    }
    // Local commands: their own options and the data directory they use,
    // also when global options come first.
    for args in [
        &["keygen", "--help"][..],
        &["--multicast-ttl", "0", "model", "add", "-h"][..],
        &["help", "keygen"][..],
    ] {
        let out = p2pa(args, T);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let help = stdout(&out);
        assert!(help.contains("--data-dir"), "{help}");
        assert!(!help.contains("--multicast-ttl"), "{help}");
    }
}

#[test]
fn a_node_bootstraps_from_a_host_name() {
    // Two beacon groups (ports) that never meet: only --bootstrap links them.
    let a = NodeProc::start(unique_port(), &scratch("boot-a"), &[]);
    let port = a.addr.rsplit(':').next().unwrap().to_owned();
    let target = format!("localhost:{port}");
    let mut b = NodeProc::start(unique_port(), &scratch("boot-b"), &["--bootstrap", &target]);
    let up = b.wait_for(T, |v| {
        v["event"] == "connected" && v["peer"] == a.id.as_str()
    });
    assert!(up.is_some(), "b reached a through {target}");
}

#[test]
fn a_failed_dial_to_a_bootstrap_name_is_reported_so_the_name_resolves_again() {
    // A port nothing listens on (bound, then released).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let target = format!("localhost:{port}");
    let mut n = NodeProc::start(
        unique_port(),
        &scratch("boot-fail"),
        &["--bootstrap", &target],
    );
    let failed = n.wait_for(T, |v| v["event"] == "dial_failed");
    let failed = failed.expect("a dial_failed event");
    assert_eq!(failed["addr"], format!("127.0.0.1:{port}"), "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
}

#[test]
fn doctor_hears_a_node_and_says_what_it_checked() {
    let port = unique_port();
    let _node = NodeProc::start(port, &scratch("doctor-node"), &[]);
    let dir = scratch("doctor");
    let mut args: Vec<String> = local_net(port);
    args.extend([
        "--data-dir".into(),
        dir.to_str().unwrap().into(),
        "doctor".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = p2pa(&args, T);
    let text = stdout(&out);
    assert!(text.contains("ok: beacon group"), "{text}");
    assert!(text.contains("ok: 1 other node(s) beaconing"), "{text}");
    // Nothing here beacons on another port: that is a problem, with a fix.
    let lonely = p2pa(
        &[
            "--multicast-ttl",
            "0",
            "--no-mdns",
            "--multicast-port",
            &unique_port().to_string(),
            "--data-dir",
            dir.to_str().unwrap(),
            "doctor",
        ],
        T,
    );
    assert_eq!(lonely.status.code(), Some(1), "{}", stdout(&lonely));
    assert!(
        stdout(&lonely).contains("PROBLEM: no beacon from another node"),
        "{}",
        stdout(&lonely)
    );
    assert!(stdout(&lonely).contains("fix: "), "{}", stdout(&lonely));
}

/// A worker's Busy answer reaches the requester on its connection's reader
/// task; the retry it schedules must not wait for the requester's next
/// timer (a beacon, seconds away): four 400 ms sleeps on a worker with one
/// slot and a queue of one take 1.6 s of work (4 s when retries waited).
#[test]
fn a_busy_answer_is_retried_after_its_backoff_not_at_the_next_timer() {
    let port = unique_port();
    let dir = scratch("busyretry");
    let worker = NodeProc::start(port, &dir.join("w"), &["--workers", "1", "--queue", "1"]);
    let inputs = dir.join("in.jsonl");
    std::fs::write(&inputs, "\"400\"\n".repeat(4)).unwrap();
    let results = dir.join("out.jsonl");
    let t = Instant::now();
    let out = Command::new(bin())
        .args(local_net(port))
        .arg("--data-dir")
        .arg(dir.join("r"))
        .args(["batch", "--peer", &worker.addr, "--kind", "sleep"])
        .args(["--concurrency", "4", "--inputs"])
        .arg(&inputs)
        .arg("--out")
        .arg(&results)
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines.iter().all(|l| l["status"] == "completed"),
        "{lines:?}"
    );
    let busy: u64 = lines.iter().filter_map(|l| l["busy"].as_u64()).sum();
    assert!(busy > 0, "the worker never answered Busy: {lines:?}");
    assert!(took < Duration::from_millis(3200), "took {took:?}");
}

#[test]
fn under_systemd_the_node_says_ready_pings_the_watchdog_and_says_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = scratch("sd-notify");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let socket = path.to_str().unwrap();
    // WATCHDOG_USEC 200 ms: a ping every 100 ms.
    let env = [("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "200000")];
    let mut node = NodeProc::start_with_env(unique_port(), &dir.join("w"), &[], &env);
    let next = || {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    let t = Instant::now();
    assert_eq!(next(), "WATCHDOG=1");
    assert_eq!(next(), "WATCHDOG=1");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let status = node.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    // The watchdog pings until the end, then the node says it is stopping.
    let rest: Vec<String> = std::iter::from_fn(|| {
        let mut buf = [0u8; 256];
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        sock.recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .take(1000)
    .collect();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("STOPPING=1"),
        "{rest:?}"
    );
    assert!(
        rest.iter().all(|m| m == "WATCHDOG=1" || m == "STOPPING=1"),
        "{rest:?}"
    );
    // Without NOTIFY_SOCKET nothing is sent and the node serves as ever
    // (every other test here); a WATCHDOG_PID of another process is not ours.
    let env = [
        ("NOTIFY_SOCKET", socket),
        ("WATCHDOG_USEC", "200000"),
        ("WATCHDOG_PID", "1"),
    ];
    let mut other = NodeProc::start_with_env(unique_port(), &dir.join("w2"), &[], &env);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(next(), "READY=1");
    sock.set_read_timeout(Some(Duration::from_millis(600)))
        .unwrap();
    assert!(
        sock.recv(&mut [0u8; 64]).is_err(),
        "a watchdog meant for pid 1 was pinged"
    );
    other.terminate(Duration::from_secs(10));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_paused_node_keeps_its_sessions_takes_no_task_and_takes_them_again_on_resume() {
    let port = unique_port();
    let dir = scratch("pause");
    let data = dir.join("w");
    let data = data.to_str().unwrap();
    let none = p2pa(&["--data-dir", data, "pause"], T);
    assert_eq!(none.status.code(), Some(3), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("no node is running"),
        "{}",
        stderr(&none)
    );

    let mut worker = NodeProc::start(port, std::path::Path::new(data), &[]);
    let other = NodeProc::start(port, &dir.join("o"), &[]);
    worker
        .wait_for(T, |v| {
            v["event"] == "connected" && v["peer"] == other.id.as_str()
        })
        .expect("the two nodes meet");
    let paused = p2pa(&["--data-dir", data, "pause", "--json"], T);
    assert_eq!(paused.status.code(), Some(0), "{}", stderr(&paused));
    let v: Value = serde_json::from_str(stdout(&paused).trim()).unwrap();
    assert_eq!(v["work"]["paused"], true, "{v}");
    let human = p2pa(&["--data-dir", data, "status"], T);
    assert!(stdout(&human).contains("PAUSED"), "{}", stdout(&human));

    // A requester is told the node is paused; the node keeps its sessions
    // and runs nothing.
    let submit = |input: &str| {
        let args = ["submit", "--kind", "echo", "--input", input, "--json"];
        let mut args = args.to_vec();
        args.extend(["--peer", &worker.addr, "--wait", "1500"]);
        p2pa_local(port, &args, T)
    };
    let refused = submit("held");
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("is paused"),
        "{}",
        stderr(&refused)
    );
    let peers = p2pa_local(port, &["peers", "--json", "--wait", "1500"], T);
    let seen: Vec<Value> = jsonl(&stdout(&peers));
    assert!(
        seen.iter()
            .any(|p| p["node_id"] == worker.id.as_str() && p["paused"] == true),
        "its beacons say it is paused: {seen:?}"
    );
    let out = p2pa(&["--data-dir", data, "status", "--json"], T);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["work"]["paused"], true, "{v}");
    assert_eq!(v["work"]["completed"], 0, "{v}");
    assert!(
        v["peer_list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["node_id"] == other.id.as_str() && p["state"] == "connected"),
        "the session to the other node stays: {v}"
    );

    let resumed = p2pa(&["--data-dir", data, "resume"], T);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(stdout(&resumed).contains("resumed"), "{}", stdout(&resumed));
    let out = submit("after");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["worker"], worker.id.as_str(), "{v}");
    let out = p2pa(&["--data-dir", data, "status", "--json"], T);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["work"]["paused"], false, "{v}");
    assert_eq!(v["work"]["completed"], 1, "{v}");
}

/// A `/proc/.../stat` file's fields after the command name: `[0]` is the
/// state (field 3), `[1]` the parent (4), `[16]` the niceness (19).
fn proc_stat(path: &std::path::Path) -> Option<(String, Vec<String>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest = text.get(close + 1..)?;
    Some((comm, rest.split_whitespace().map(str::to_owned).collect()))
}

#[test]
fn nice_lowers_the_slots_and_inference_processes_not_the_network_thread() {
    let base: i64 = proc_stat(std::path::Path::new("/proc/self/stat"))
        .unwrap()
        .1[16]
        .parse()
        .unwrap();
    let port = unique_port();
    let dir = scratch("nice");
    let node = NodeProc::start(port, &dir.join("w"), &["--nice", "7", "--workers", "1"]);
    assert_eq!(node.seen[0]["nice"], 7, "{}", node.seen[0]);
    // Slot threads start with the first task that needs one.
    let out = p2pa_local(
        port,
        &[
            "submit", "--kind", "sleep", "--input", "20", "--peer", &node.addr,
        ],
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pid = node.child.id();
    let mut threads = BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Some((comm, f)) = proc_stat(&t.path().join("stat")) {
            let tid: u32 = t.file_name().to_str().unwrap().parse().unwrap();
            threads.insert(tid, (comm, f[16].parse::<i64>().unwrap()));
        }
    }
    let want = base.max(7);
    let slot = threads.values().find(|(c, _)| c == "p2pa-slot-0");
    assert_eq!(slot.map(|s| s.1), Some(want), "{threads:?}");
    assert_eq!(
        threads.get(&pid).map(|t| t.1),
        Some(base),
        "network thread: {threads:?}"
    );
    // The inference process the node started (where it runs models in one).
    let children: Vec<i64> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| proc_stat(&p.path().join("stat")))
        .filter(|(_, f)| f[1] == pid.to_string())
        .map(|(_, f)| f[16].parse().unwrap())
        .collect();
    assert!(
        !children.is_empty(),
        "the node started its inference process"
    );
    assert!(children.iter().all(|n| *n == want), "{children:?}");
}

fn models() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// `--max-cpu-percent`: the node says its limit, its inference process is
/// stopped and resumed to keep to it (status counts the time stopped), and
/// the tasks still complete with the right outputs. Then `peers` shows the
/// worker's own measured speed of the model.
#[test]
fn max_cpu_percent_stops_and_resumes_the_inference_process_and_peers_show_its_speed() {
    let port = unique_port();
    let dir = scratch("max-cpu");
    let data = dir.join("w");
    // The duty cycle, even where this machine would give the node a cgroup.
    let node = NodeProc::start_with_env(
        port,
        &data,
        &["--max-cpu-percent", "10", "--workers", "1"],
        &[("P2PA_CGROUP_DIR", "")],
    );
    assert_eq!(node.seen[0]["max_cpu_percent"], 10, "{}", node.seen[0]);
    assert_eq!(
        node.seen[0]["cpu_limit"]["method"], "signals",
        "{}",
        node.seen[0]
    );
    let model = models().join("ppocr_cls.onnx");
    let input = models().join("ppocr_cls_input.npy");
    let want = std::fs::read(models().join("ppocr_cls_expected.npy")).unwrap();
    for i in 0..2 {
        let out_dir = dir.join(format!("out{i}"));
        let out = p2pa_local(
            port,
            &[
                "submit",
                "--kind",
                "infer",
                "--json",
                "--peer",
                &node.addr,
                "--model",
                model.to_str().unwrap(),
                "--input-file",
                input.to_str().unwrap(),
                "--out-dir",
                out_dir.to_str().unwrap(),
            ],
            T,
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(v["status"], "completed", "{v}");
        let got = std::fs::read(v["files"][0].as_str().unwrap()).unwrap();
        // Both `[1, 2]` float32 `.npy` files: the data is their last 8 bytes.
        let tail = |b: &[u8]| -> Vec<f32> {
            b[b.len() - 8..]
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let (g, w) = (tail(&got), tail(&want));
        assert!(
            g.iter().zip(&w).all(|(a, b)| (a - b).abs() < 1e-4),
            "{g:?} against {w:?}"
        );
    }
    let out = p2pa(
        &["--data-dir", data.to_str().unwrap(), "status", "--json"],
        T,
    );
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let limit = &v["work"]["cpu_limit"];
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    let want_cores = 0.1 * cores;
    assert!(
        (limit["cores"].as_f64().unwrap() - want_cores).abs() < 1e-9,
        "{limit}"
    );
    // Loading the model alone takes more CPU than the bucket holds (0.2 s
    // of the rate: 40 ms on two cores), so the process was stopped.
    assert!(limit["stopped_s"].as_f64().unwrap() > 0.0, "{limit}");
    assert_eq!(v["work"]["completed"], 2, "{v}");
    // Its beacons carry its mean run time of the model: `peers` shows it.
    let model = v["models"][0].as_str().unwrap().to_owned();
    let peers = p2pa_local(port, &["peers", "--json", "--wait", "2500"], T);
    let seen: Vec<Value> = jsonl(&stdout(&peers));
    let me = seen
        .iter()
        .find(|p| p["node_id"] == node.id.as_str())
        .unwrap_or_else(|| panic!("{seen:?}"));
    let speed = &me["speeds"][0];
    assert_eq!(speed["model"], model.as_str(), "{me}");
    assert!(speed["mean_ms"].as_f64().unwrap() > 0.0, "{me}");
    let table = p2pa_local(port, &["peers", "--wait", "2500"], T);
    assert!(
        stdout(&table).contains(&format!("{}: ", &model[..8])),
        "{}",
        stdout(&table)
    );
}

/// Where the node may make a cgroup v2 with the cpu controller, the kernel
/// keeps `--max-cpu-percent`: the node enables cpu for its cgroup's
/// children, makes its inference cgroup with the quota as `cpu.max`, and
/// moves its inference process into it. Here on a directory laid out as
/// the kernel lays out a cgroup (the test cannot assume a delegated one).
#[test]
fn max_cpu_percent_uses_a_cgroup_where_the_node_may_make_one() {
    let port = unique_port();
    let dir = scratch("cgroup");
    let cg = dir.join("cg");
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(cg.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
    std::fs::write(cg.join("cgroup.subtree_control"), "").unwrap();
    let node = NodeProc::start_with_env(
        port,
        &dir.join("w"),
        &["--max-cpu-percent", "50", "--workers", "1"],
        &[("P2PA_CGROUP_DIR", cg.to_str().unwrap())],
    );
    let limit = &node.seen[0]["cpu_limit"];
    assert_eq!(limit["method"], "cgroup", "{}", node.seen[0]);
    let infer = cg.join(format!("p2pa-infer-{}", node.child.id()));
    assert_eq!(limit["cgroup"], infer.to_str().unwrap(), "{limit}");
    assert_eq!(
        std::fs::read_to_string(cg.join("cgroup.subtree_control")).unwrap(),
        "+cpu"
    );
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(
        std::fs::read_to_string(infer.join("cpu.max")).unwrap(),
        format!("{} 100000", cores * 50_000)
    );
    // The inference process the node started at once is the one moved.
    let pid: u32 = std::fs::read_to_string(infer.join("cgroup.procs"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (_, f) = proc_stat(
        &std::path::Path::new("/proc")
            .join(pid.to_string())
            .join("stat"),
    )
    .expect("the moved process runs");
    assert_eq!(f[1], node.child.id().to_string(), "a child of the node");
}

/// `GET path` from `addr`; the whole answer (head and body).
fn http_get(addr: &str, path: &str) -> String {
    http_get_accepting(addr, path, "*/*")
}

/// `GET path` from `addr` with this `Accept` header; the whole answer.
fn http_get_accepting(addr: &str, path: &str, accept: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// What `script`, run by `py`, prints for `page` on its stdin.
fn python_parse(py: &str, script: &str, page: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The value of the sample `name{labels}` (labels as written) on `page`.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_serves_the_node_s_state_and_task_counts_in_the_prometheus_format() {
    let port = unique_port();
    let dir = scratch("metrics");
    let worker = NodeProc::start(port, &dir.join("w"), &["--metrics", "127.0.0.1:0"]);
    let addr = worker.seen[0]["metrics"]
        .as_str()
        .expect("metrics address")
        .to_owned();
    for ms in ["10", "20", "30"] {
        let out = p2pa_local(
            port,
            &[
                "submit",
                "--kind",
                "sleep",
                "--input",
                ms,
                "--peer",
                &worker.addr,
            ],
            T,
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    // A client that connects and says nothing holds the listener for its
    // timeout at most: the scrape after it is answered.
    let _stalled = std::net::TcpStream::connect(&addr).unwrap();
    // Prometheus asks for OpenMetrics first (its Accept header, abridged).
    let prometheus =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3";
    let answer = http_get_accepting(&addr, "/metrics", prometheus);
    let (head, page) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let finished = "p2pa_tasks_finished_total{kind=\"sleep\",status=\"completed\"}";
    assert_eq!(sample(page, finished), Some(3.0), "{page}");
    let count = "p2pa_task_duration_seconds_count{kind=\"sleep\",model=\"\"}";
    assert_eq!(sample(page, count), Some(3.0), "{page}");
    let sum = sample(
        page,
        "p2pa_task_duration_seconds_sum{kind=\"sleep\",model=\"\"}",
    );
    assert!(
        sum.is_some_and(|s| s >= 0.06),
        "10 + 20 + 30 ms at least: {page}"
    );
    assert_eq!(sample(page, "p2pa_slots_busy"), Some(0.0), "{page}");
    assert_eq!(sample(page, "p2pa_paused"), Some(0.0), "{page}");
    assert!(sample(page, "p2pa_stream_received_bytes_total").is_some_and(|b| b > 0.0));
    assert!(sample(page, "p2pa_stream_sent_bytes_total").is_some_and(|b| b > 0.0));
    assert!(
        sample(page, "p2pa_beacons_total{result=\"forged\"}").is_some(),
        "{page}"
    );
    assert!(page.ends_with("# EOF\n"), "{page}");
    // Every line is a comment or a sample whose value is a number.
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
    }
    // Prometheus's own client parses it, where .ci/run installed it.
    match std::env::var("P2PA_TEST_PROM_PYTHON") {
        Ok(py) => {
            let script = "import sys\n\
                from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                fams = {f.name: f for f in p(sys.stdin.read())}\n\
                s = [x for x in fams['p2pa_tasks_finished'].samples if x.labels.get('kind') == 'sleep']\n\
                print(fams['p2pa_task_duration_seconds'].type, int(sum(x.value for x in s)))\n";
            assert_eq!(python_parse(&py, script, page), "histogram 3");
        }
        Err(_) => skip(
            "P2PA_REQUIRE_PROM_PARSER",
            "no P2PA_TEST_PROM_PYTHON: /metrics was checked without prometheus_client's parser",
        ),
    }
    // Anyone else gets the text format 0.0.4: the same samples, counters'
    // families named with their _total, no # EOF.
    let answer = http_get(&addr, "/metrics");
    let (head, text) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE p2pa_tasks_finished_total counter"),
        "{text}"
    );
    assert_eq!(sample(text, finished), Some(3.0), "{text}");
    if let Ok(py) = std::env::var("P2PA_TEST_PROM_PYTHON") {
        let script = "import sys\n\
            from prometheus_client.parser import text_string_to_metric_families as p\n\
            fams = {f.name: f for f in p(sys.stdin.read())}\n\
            s = [x for x in fams['p2pa_tasks_finished'].samples if x.labels.get('kind') == 'sleep']\n\
            print(fams['p2pa_task_duration_seconds'].type, int(sum(x.value for x in s)))\n";
        assert_eq!(python_parse(&py, script, text), "histogram 3");
    }
    let other = http_get(&addr, "/");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    // The worker's own speed per kind and model, in its status.
    let v = status_of(&dir.join("w"));
    let speed = &v["work"]["speed"][0];
    assert_eq!(speed["kind"], "sleep", "{v}");
    assert_eq!(speed["tasks"], 3, "{v}");
    assert!(
        speed["mean_ms"].as_f64().is_some_and(|ms| ms >= 10.0),
        "{v}"
    );
}

/// A node's status, asked over its control socket.
fn status_of(data: &std::path::Path) -> Value {
    let out = p2pa(
        &["--data-dir", data.to_str().unwrap(), "status", "--json"],
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

/// Polls `data`'s status (bounded) until `pred` holds; the last status.
fn status_until(data: &std::path::Path, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let v = status_of(data);
        if pred(&v) || Instant::now() >= end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_idle_gated_worker_yields_to_its_owner_and_the_batch_completes_on_the_others() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let port = unique_port();
    let dir = scratch("idlegate");
    // The machine's CPU as the gate reads it: a /proc/stat of our own,
    // idle or 75 % busy as the test says.
    let stat = dir.join("stat");
    let loaded = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stat, loaded, done) = (stat.clone(), loaded.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut busy, mut idle) = (0u64, 0u64);
            let end = Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::Relaxed) && Instant::now() < end {
                let (b, i) = if loaded.load(Ordering::Relaxed) {
                    (15, 5)
                } else {
                    (0, 20)
                };
                busy += b;
                idle += i;
                let tmp = stat.with_extension("tmp");
                std::fs::write(&tmp, format!("cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\n")).unwrap();
                std::fs::rename(&tmp, &stat).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let gated_dir = dir.join("gated");
    let stat_env = stat.to_str().unwrap().to_owned();
    let power = dir.join("no-power-supplies");
    let power_env = power.to_str().unwrap().to_owned();
    let _gated = NodeProc::start_with_env(
        port,
        &gated_dir,
        &["--only-when-idle", "--idle-wait", "1", "--workers", "1"],
        &[
            ("P2PA_PROC_STAT", &stat_env),
            ("P2PA_POWER_SUPPLY", &power_env),
        ],
    );
    let _other = NodeProc::start(port, &dir.join("other"), &["--workers", "1"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        status_of(&gated_dir)["work"]["paused"],
        false,
        "the machine is idle"
    );

    let inputs = write_inputs(&dir, 24, 250);
    let out_path = dir.join("results.jsonl");
    let batch = {
        let (inputs, out_path) = (inputs.clone(), out_path.clone());
        std::thread::spawn(move || {
            batch_local(
                port,
                "sleep",
                &inputs,
                &out_path,
                &["--concurrency", "4"],
                T,
            )
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    loaded.store(true, Ordering::Relaxed);
    let v = status_until(&gated_dir, |v| v["work"]["paused"] == true);
    assert_eq!(v["work"]["paused"], true, "the owner came back: {v}");
    assert_eq!(
        v["work"]["paused_busy"], "the machine's owner is using it",
        "{v}"
    );
    assert_eq!(v["work"]["paused_asked"], false, "{v}");
    // What it held when it paused: what ran finishes, what waited went back.
    let held = v["work"]["completed"].as_u64().unwrap() + v["work"]["running"].as_u64().unwrap();
    let out = batch.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let results = jsonl(&std::fs::read_to_string(&out_path).unwrap());
    let by_line = lines_by_number(&results);
    assert_eq!(by_line.len(), 24, "every line: {results:?}");
    assert!(by_line.values().all(|c| *c == 1), "no line twice");
    assert!(results.iter().all(|r| r["status"] == "completed"));
    let v = status_of(&gated_dir);
    assert_eq!(v["work"]["paused"], true, "{v}");
    assert_eq!(
        v["work"]["completed"].as_u64().unwrap(),
        held,
        "the gated worker took nothing new while its owner worked: {v}"
    );
    // `p2pa resume` does not override the machine's owner.
    let resumed = p2pa(&["--data-dir", gated_dir.to_str().unwrap(), "resume"], T);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(
        stdout(&resumed).contains("stays paused"),
        "{}",
        stdout(&resumed)
    );
    // The owner leaves: after --idle-wait the node works again.
    loaded.store(false, Ordering::Relaxed);
    let v = status_until(&gated_dir, |v| v["work"]["paused"] == false);
    assert_eq!(v["work"]["paused"], false, "the machine is idle again: {v}");
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
