//! Untrusted models run in a child process of the worker: a model that
//! panics inside the runtime or asks for more memory than allowed fails its
//! own task with the reason, the worker stays up and serves the next task;
//! a model still computing when its requester gives up is stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use p2pa_tests::*;

const T: Duration = Duration::from_secs(120);

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// `p2pa submit --kind infer --json` of `model` on `input` (JSON text).
fn submit(port: u16, model: &Path, input: &str, timeout_s: &str) -> (Option<i32>, Value) {
    let args = ["--input", input, "--timeout", timeout_s, "--json"];
    let out = submit_infer(port, model, &args, T);
    let v = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|_| panic!("no JSON: {} {}", stdout(&out), stderr(&out)));
    (out.status.code(), v)
}

fn digits_ok(port: u16) -> Duration {
    let row = vec!["0.5"; 64].join(",");
    let t = Instant::now();
    let (code, v) = submit(
        port,
        &models_dir().join("digits.onnx"),
        &format!("[{row}]"),
        "30",
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["status"], "completed");
    t.elapsed()
}

/// Child processes of `pid`, with their state letter (R running, S, Z, …).
fn children(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            let child = e.file_name().to_string_lossy().parse().unwrap();
            out.push((child, f[0].chars().next().unwrap()));
        }
    }
    out
}

#[test]
fn a_model_that_panics_or_overallocates_fails_alone_and_the_worker_goes_on() {
    let port = unique_port();
    let dir = scratch("isolation");
    let node = NodeProc::start(
        port,
        &dir.join("w"),
        &["--workers", "1", "--infer-memory-mb", "256"],
    );
    digits_ok(port);
    let hostile = models_dir().join("hostile");
    // An integer division by zero inside tract: a panic in the child.
    let (code, v) = submit(
        port,
        &hostile.join("div_zero.onnx"),
        r#"{"shape":[1],"i64":[5]}"#,
        "30",
    );
    assert_eq!(
        (code, v["status"].as_str()),
        (Some(1), Some("failed")),
        "{v}"
    );
    let msg = v["output"].as_str().unwrap();
    assert!(
        msg.starts_with("model aborted: attempt to divide by zero"),
        "{msg}"
    );
    let next = digits_ok(port);
    eprintln!("next honest task after a panic: {next:?}");
    // An outer product of 8192 values: 256 MiB, over the 256 MiB limit.
    let x = vec!["1"; 8192].join(",");
    let input = format!(r#"{{"shape":[8192],"f32":[{x}]}}"#);
    let (code, v) = submit(port, &hostile.join("huge_alloc.onnx"), &input, "30");
    assert_eq!(
        (code, v["status"].as_str()),
        (Some(1), Some("failed")),
        "{v}"
    );
    let msg = v["output"].as_str().unwrap();
    assert!(
        msg.starts_with("model aborted:") && msg.contains("allocat"),
        "{msg}"
    );
    let next = digits_ok(port);
    eprintln!("next honest task after an allocation failure: {next:?}");
    assert!(node.child.id() > 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_model_still_computing_when_its_requester_gives_up_is_stopped() {
    let port = unique_port();
    let dir = scratch("stop");
    let node = NodeProc::start(port, &dir.join("w"), &["--workers", "1"]);
    let pid = node.child.id();
    // Ten 4096³ products: minutes of CPU; the requester waits 2 s.
    let x = vec!["0.01"; 4096].join(",");
    let input = format!(r#"{{"shape":[4096],"f32":[{x}]}}"#);
    let (code, v) = submit(port, &models_dir().join("hostile/slow.onnx"), &input, "2");
    assert_eq!(
        (code, v["status"].as_str()),
        (Some(1), Some("timeout")),
        "{v}"
    );
    let gave_up = Instant::now();
    let mut running = usize::MAX;
    while gave_up.elapsed() < Duration::from_secs(10) {
        running = children(pid).iter().filter(|(_, s)| *s == 'R').count();
        if running == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(running, 0, "the model process still runs");
    eprintln!(
        "stopped {:?} after the requester gave up",
        gave_up.elapsed()
    );
    digits_ok(port);
    std::fs::remove_dir_all(&dir).ok();
}

/// `digits.onnx` under another hash: the same graph with its own
/// `doc_string` (ModelProto field 6) appended; the last one wins.
fn digits_variant(dir: &Path, i: u8) -> PathBuf {
    let mut bytes = std::fs::read(models_dir().join("digits.onnx")).unwrap();
    let doc = format!("variant {i}");
    bytes.extend_from_slice(&[0x32, doc.len() as u8]);
    bytes.extend_from_slice(doc.as_bytes());
    let path = dir.join(format!("digits{i}.onnx"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn inference_processes_beyond_the_idle_ones_are_reaped_not_left_zombies() {
    let port = unique_port();
    let dir = scratch("reap");
    std::fs::create_dir_all(&dir).unwrap();
    let node = NodeProc::start(port, &dir.join("w"), &["--workers", "8"]);
    let pid = node.child.id();
    let row = vec!["0.5"; 64].join(",");
    let lines: String = (0..8).map(|_| format!("[{row}]\n")).collect();
    let inputs = dir.join("in.jsonl");
    std::fs::write(&inputs, lines).unwrap();
    // 8 models, 8 tasks each, 8 at a time: up to 8 children, 4 kept idle.
    for i in 0..8 {
        let model = digits_variant(&dir, i);
        let out = dir.join(format!("r{i}.jsonl"));
        let o = batch_local(
            port,
            "infer",
            &inputs,
            &out,
            &["--model", model.to_str().unwrap(), "--concurrency", "8"],
            T,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let end = Instant::now() + Duration::from_secs(5);
    let zombies = loop {
        let z: Vec<u32> = children(pid)
            .into_iter()
            .filter(|(_, s)| *s == 'Z')
            .map(|(p, _)| p)
            .collect();
        if z.is_empty() || Instant::now() >= end {
            break z;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        zombies.is_empty(),
        "zombie inference processes: {zombies:?}"
    );
    let alive = children(pid).len();
    assert!((1..=child_cap()).contains(&alive), "{alive} children kept");
}

/// Children a worker keeps idle at most, plus none running.
fn child_cap() -> usize {
    p2pa_node::task::child::MAX_IDLE
}

#[test]
fn an_output_over_the_nodes_own_tensor_limit_fails_its_task_in_the_child() {
    let port = unique_port();
    let dir = scratch("bigout");
    let _node = NodeProc::start(
        port,
        &dir.join("w"),
        &["--workers", "1", "--max-tensor-mb", "8"],
    );
    let model = models_dir().join("hostile").join("big_output.onnx");
    let input = |n: usize| {
        format!(
            "{{\"shape\": [{n}], \"f32\": [{}]}}",
            vec!["0.5"; n].join(",")
        )
    };
    // n = 512: a 1 MiB output, under the limit.
    let (code, v) = submit(port, &model, &input(512), "30");
    assert_eq!(
        (code, v["status"].as_str()),
        (Some(0), Some("completed")),
        "{v}"
    );
    // n = 2048: 16 MiB, over the worker's 8 MiB, whatever the requester allows.
    let (code, v) = submit(port, &model, &input(2048), "30");
    assert_eq!(code, Some(1), "{v}");
    let out = v["output"].as_str().unwrap_or_default();
    assert!(
        out.contains("bytes, over this node's limit of 8388608"),
        "{v}"
    );
    digits_ok(port);
}
