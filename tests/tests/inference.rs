//! Distributed inference as a user runs it: the shipped digits model over
//! three nodes equals a local single-process run prediction by prediction;
//! models travel to workers that lack them; redundancy finds a lying worker;
//! bad models and bad inputs fail with reasons and take no node down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use p2pa_node::io::NodeHandle;
use p2pa_node::models::ModelStore;
use p2pa_node::protocol::{Keypair, KindSet, TaskKind, TaskStatus};
use p2pa_node::task::infer::Engine;
use p2pa_node::task::tensor::{self, Tensor};
use p2pa_tests::*;

const T: Duration = Duration::from_secs(120);

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn test_rows() -> Vec<Vec<f32>> {
    std::fs::read_to_string(models_dir().join("digits_test.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["input"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// `p2pa batch --kind infer` on loopback `port`, with `extra` flags.
fn infer_batch(
    port: u16,
    model: &Path,
    inputs: &Path,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec!["--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    batch_local(port, "infer", inputs, out, &args, T)
}

/// Predictions of one local, single-process run of the shipped model.
fn local_predictions() -> Vec<i64> {
    let store = ModelStore::new(scratch("local-store"), 1 << 20);
    let model = std::fs::read(models_dir().join("digits.onnx")).unwrap();
    let hash = store.put(None, &model).unwrap();
    let engine = Engine::new(store);
    test_rows()
        .into_iter()
        .map(|x| {
            let input = tensor::encode(&[Tensor::f32(vec![1, 64], x).unwrap()]);
            let ran = engine.run(Some(hash), &input);
            assert_eq!(ran.status, TaskStatus::Completed);
            tensor::decode(&ran.output).unwrap()[1]
                .i64s()
                .expect("label is i64")[0]
        })
        .collect()
}

#[test]
fn distributed_predictions_equal_a_local_single_process_run() {
    let port = unique_port();
    let dir = scratch("dist");
    let _nodes: Vec<NodeProc> = (0..3)
        .map(|i| NodeProc::start(port, &dir.join(format!("n{i}")), &["--workers", "2"]))
        .collect();
    let out_path = dir.join("results.jsonl");
    let model = models_dir().join("digits.onnx");
    let inputs = models_dir().join("digits_test.jsonl");
    let out = infer_batch(port, &model, &inputs, &out_path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let results = jsonl(&std::fs::read_to_string(&out_path).unwrap());
    let local = local_predictions();
    assert_eq!(results.len(), local.len());
    let model_hash = {
        let bytes = std::fs::read(&model).unwrap();
        p2pa_node::hex::hex(&p2pa_node::core::sha256(&bytes))
    };
    let mut workers = std::collections::BTreeSet::new();
    for r in &results {
        let line = r["line"].as_u64().unwrap() as usize;
        assert_eq!(
            r["prediction"].as_i64().unwrap(),
            local[line - 1],
            "line {line}"
        );
        assert_eq!(
            r["receipt"]["model"],
            model_hash.as_str(),
            "receipt names the model"
        );
        workers.insert(r["worker"].as_str().unwrap().to_owned());
    }
    assert_eq!(workers.len(), 3, "work spread over all three nodes");
}

#[test]
fn model_add_list_and_submit_by_hash_and_bad_input_shapes() {
    let port = unique_port();
    let dir = scratch("modeladd");
    let worker_dir = dir.join("worker");
    let _node = NodeProc::start(port, &worker_dir, &[]);
    let me = dir.join("me");
    let me = me.to_str().unwrap();
    let model = models_dir().join("digits.onnx");
    let out = p2pa(
        &["--data-dir", me, "model", "add", model.to_str().unwrap()],
        T,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let hash = stdout(&out).trim().to_owned();
    assert_eq!(hash.len(), 64);
    let out = p2pa(&["--data-dir", me, "model", "list"], T);
    assert!(stdout(&out).starts_with(&hash));
    let row: Vec<String> = test_rows()[0].iter().map(|x| x.to_string()).collect();
    let input = format!("[{}]", row.join(","));
    let net = local_net(port);
    let submit = |input: &str| {
        let mut args: Vec<&str> = net.iter().map(String::as_str).collect();
        args.extend(["--data-dir", me, "submit", "--kind", "infer"]);
        args.extend(["--model", &hash, "--input", input, "--json"]);
        p2pa(&args, T)
    };
    let out = submit(&input);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["prediction"].as_i64().unwrap(), local_predictions()[0]);
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([1, 10]));
    // The worker fetched the model, stored it, and its inference process
    // keeps it loaded: `p2pa status` says both.
    let status = p2pa(
        &[
            "--data-dir",
            worker_dir.to_str().unwrap(),
            "status",
            "--json",
        ],
        T,
    );
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let st: Value = serde_json::from_str(stdout(&status).trim()).unwrap();
    assert_eq!(st["models"], serde_json::json!([hash]), "{st}");
    assert_eq!(st["models_loaded"], serde_json::json!([hash]), "{st}");
    let human = p2pa(&["--data-dir", worker_dir.to_str().unwrap(), "status"], T);
    assert!(
        stdout(&human).contains(&format!("models loaded: {}", &hash[..16])),
        "{}",
        stdout(&human)
    );
    // Wrong shape: refused before anything is sent (exit 2), naming the
    // expected and the given shapes.
    let out = submit("[1, 2, 3]");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(msg.contains("[N, 64]") && msg.contains("[1, 3]"), "{msg}");
    assert!(stdout(&out).is_empty(), "nothing ran");
    // A file that is not a model: refused before sending, and by `model add`.
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"definitely not protobuf").unwrap();
    let mut args: Vec<&str> = net.iter().map(String::as_str).collect();
    args.extend([
        "submit",
        "--kind",
        "infer",
        "--model",
        junk.to_str().unwrap(),
        "--input",
        "[1]",
        "--json",
    ]);
    let out = p2pa(&args, T);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not an ONNX model"),
        "{}",
        stderr(&out)
    );
    let out = p2pa(
        &["--data-dir", me, "model", "add", junk.to_str().unwrap()],
        T,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not an ONNX model"),
        "{}",
        stderr(&out)
    );
    // Unknown hash: usage error naming the fix.
    let mut args: Vec<&str> = net.iter().map(String::as_str).collect();
    let missing = "ab".repeat(32);
    args.extend([
        "--data-dir",
        me,
        "submit",
        "--kind",
        "infer",
        "--model",
        &missing,
        "--input",
        "[1]",
    ]);
    let out = p2pa(&args, T);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("p2pa model add"), "{}", stderr(&out));
    // The worker is still up and serving.
    let out = p2pa_local(port, &["submit", "--kind", "echo", "--input", "alive"], T);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// An in-process worker whose inference lies: it returns label 9 for everything.
fn liar(port: u16) -> NodeHandle {
    let mut o = loopback_options(port);
    o.core.kinds = KindSet::default().with(TaskKind::Infer);
    o.models = Some(ModelStore::new(scratch("liar-store"), 1 << 20));
    o.executor = Arc::new(|_, _: &[u8], _| {
        let out = tensor::encode(&[
            Tensor::f32(vec![1, 10], vec![0.1; 10]).unwrap(),
            Tensor::i64(vec![1], vec![9]).unwrap(),
        ]);
        p2pa_node::task::Ran::completed(out)
    });
    NodeHandle::start(Keypair::from_seed([77; 32]), o).unwrap()
}

#[test]
fn redundancy_compares_workers_and_names_the_dissenter() {
    let port = unique_port();
    let dir = scratch("redundancy");
    let honest: Vec<NodeProc> = (0..2)
        .map(|i| NodeProc::start(port, &dir.join(format!("n{i}")), &[]))
        .collect();
    let model = models_dir().join("digits.onnx");
    let inputs = dir.join("in.jsonl");
    let rows = test_rows();
    let text: String = rows
        .iter()
        .take(6)
        .map(|r| serde_json::json!({ "input": r }).to_string() + "\n")
        .collect();
    std::fs::write(&inputs, text).unwrap();
    let batch = |out: &Path, k: &str| {
        infer_batch(
            port,
            &model,
            &inputs,
            out,
            &["--redundancy", k, "--same-host"],
        )
    };
    // Two honest workers agree on every line.
    let agree = dir.join("agree.jsonl");
    // K copies on one machine could be one attacker with K keys: refused
    // unless asked for.
    let one_host = dir.join("one-host.jsonl");
    let out = infer_batch(port, &model, &inputs, &one_host, &["--redundancy", "2"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("distinct hosts"), "{}", stderr(&out));
    let out = batch(&agree, "2");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for r in jsonl(&std::fs::read_to_string(&agree).unwrap()) {
        assert_eq!(r["redundancy"]["agree"], true, "{r}");
        assert_eq!(r["redundancy"]["workers"].as_array().unwrap().len(), 2);
        assert_eq!(r["redundancy"]["receipts"].as_array().unwrap().len(), 2);
    }
    // Add a worker that lies; with K = 3 it is outvoted and named.
    let liar = liar(port);
    let liar_id = liar.id().to_string();
    let disagree = dir.join("disagree.jsonl");
    let out = batch(&disagree, "3");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("disagree"), "{}", stderr(&out));
    let local = local_predictions();
    let results = jsonl(&std::fs::read_to_string(&disagree).unwrap());
    assert_eq!(results.len(), 6);
    for r in &results {
        let line = r["line"].as_u64().unwrap() as usize;
        let dissenters: Vec<&str> = r["redundancy"]["dissenters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        // Its probabilities are never the model's, even where its label is.
        assert_eq!(dissenters, vec![liar_id.as_str()], "line {line}");
        assert_eq!(r["status"], "disagreement");
        assert_eq!(
            r["prediction"].as_i64().unwrap(),
            local[line - 1],
            "the majority answer is kept"
        );
    }
    // Distinct by operator (issue 28, case 2): with the honest workers named
    // under their operators, copies go to them only; the liar, unlisted
    // (one more key and address cost an attacker nothing), is never asked.
    let ops = dir.join("operators");
    let (a, b) = (&honest[0].id, &honest[1].id);
    std::fs::write(&ops, format!("# who runs what\n{a} alice\n{b} bob\n")).unwrap();
    let ops_arg = ops.to_str().unwrap();
    let by_operator = dir.join("by-operator.jsonl");
    let out = infer_batch(
        port,
        &model,
        &inputs,
        &by_operator,
        &["--redundancy", "2", "--operators", ops_arg],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("distinct by allowlist"),
        "{}",
        stderr(&out)
    );
    let results = jsonl(&std::fs::read_to_string(&by_operator).unwrap());
    assert_eq!(results.len(), 6);
    for r in &results {
        assert_eq!(r["redundancy"]["agree"], true, "{r}");
        assert_eq!(r["redundancy"]["distinct"], "allowlist", "{r}");
        let workers = r["redundancy"]["workers"].to_string();
        assert!(!workers.contains(&liar_id), "{r}");
    }
    // Two keys of one operator count once: K = 2 is refused.
    std::fs::write(&ops, format!("{a} alice\n{b} alice\n{liar_id}\n")).unwrap();
    let one_operator = dir.join("one-operator.jsonl");
    let out = infer_batch(
        port,
        &model,
        &inputs,
        &one_operator,
        &["--redundancy", "3", "--operators", ops_arg],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 distinct operators; found 2 operators"),
        "{}",
        stderr(&out)
    );
    async_io::block_on(liar.shutdown());
}

/// A real exported model (PP-OCR's direction classifier, symbolic height,
/// width and batch; 110 KB input, over one frame) over two worker processes
/// through `submit` and `batch` with .npy files, against onnxruntime's output.
#[test]
fn a_real_model_with_dynamic_shapes_matches_onnxruntime_over_the_network() {
    let port = unique_port();
    let dir = scratch("realmodel");
    let _nodes: Vec<NodeProc> = (0..2)
        .map(|i| NodeProc::start(port, &dir.join(format!("n{i}")), &["--workers", "1"]))
        .collect();
    let model = models_dir().join("ppocr_cls.onnx");
    let input = models_dir().join("ppocr_cls_input.npy");
    let expected = read_npy_f32(&models_dir().join("ppocr_cls_expected.npy"));
    let out = p2pa(&["model", "info", model.to_str().unwrap()], T);
    assert_eq!(stdout(&out).trim(), r#"input "x": f32 [N, 3, N, N]"#);
    let npy_dir = dir.join("submit-out");
    let input_file = input.to_str().unwrap();
    let args = [
        "--input-file",
        input_file,
        "--out-dir",
        npy_dir.to_str().unwrap(),
        "--json",
    ];
    let out = submit_infer(port, &model, &args, T);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let file = v["files"][0].as_str().unwrap();
    assert_close(&read_npy_f32(Path::new(file)), &expected);
    // The same through batch: three lines naming the .npy file.
    let lines = dir.join("in.jsonl");
    let line = serde_json::json!({ "input": input.to_str().unwrap() }).to_string();
    std::fs::write(&lines, format!("{line}\n{line}\n{line}\n")).unwrap();
    let results = dir.join("results.jsonl");
    let outs = dir.join("batch-out");
    let out = infer_batch(
        port,
        &model,
        &lines,
        &results,
        &["--out-dir", outs.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tasks completed per worker"),
        "{}",
        stderr(&out)
    );
    for r in jsonl(&std::fs::read_to_string(&results).unwrap()) {
        let f = r["files"][0].as_str().unwrap();
        assert_close(&read_npy_f32(Path::new(f)), &expected);
    }
    // Resuming checks a finished line against its file: the same bytes
    // have nothing to do, changed bytes refuse the journal; a file short of
    // its header's shape is refused before anything is sent.
    let mine = dir.join("mine.npy");
    std::fs::copy(&input, &mine).unwrap();
    let lines = dir.join("mine.jsonl");
    let line = serde_json::json!({ "input": "mine.npy" }).to_string();
    std::fs::write(&lines, format!("{line}\n")).unwrap();
    let results = dir.join("mine-results.jsonl");
    let out = infer_batch(port, &model, &lines, &results, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = infer_batch(port, &model, &lines, &results, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to do"), "{}", stderr(&out));
    let mut bytes = std::fs::read(&mine).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&mine, &bytes).unwrap();
    let out = infer_batch(port, &model, &lines, &results, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 1 of the inputs has changed"),
        "{}",
        stderr(&out)
    );
    bytes.pop();
    std::fs::write(&mine, &bytes).unwrap();
    let out = infer_batch(port, &model, &lines, &dir.join("short.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not fill its shape")
            && stderr(&out).contains("nothing was run"),
        "{}",
        stderr(&out)
    );
    // Four channels where the model takes three: refused before sending.
    let wrong = dir.join("wrong.json");
    std::fs::write(
        &wrong,
        r#"{"shape": [1, 4, 2, 2], "f32": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}"#,
    )
    .unwrap();
    let out = submit_infer(port, &model, &["--input-file", wrong.to_str().unwrap()], T);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("[N, 3, N, N]") && msg.contains("[1, 4, 2, 2]"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(want) {
        let tol = 1e-4 * a.abs().max(b.abs()).max(1.0);
        assert!((a - b).abs() <= tol, "{got:?} vs onnxruntime {want:?}");
    }
}

#[test]
fn batch_size_stacks_lines_into_fewer_tasks_with_the_same_predictions_and_receipts() {
    let port = unique_port();
    let dir = scratch("stacked");
    let mut node = NodeProc::start(port, &dir.join("w"), &["--workers", "1"]);
    let model = models_dir().join("digits.onnx");
    let inputs = models_dir().join("digits_test.jsonl");
    let out_path = dir.join("results.jsonl");
    let out = infer_batch(port, &model, &inputs, &out_path, &["--batch-size", "32"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let results = jsonl(&std::fs::read_to_string(&out_path).unwrap());
    let local = local_predictions();
    assert_eq!(results.len(), local.len(), "one result line per input line");
    let mut tasks = std::collections::BTreeSet::new();
    for r in &results {
        let line = r["line"].as_u64().unwrap() as usize;
        assert_eq!(
            r["prediction"].as_i64().unwrap(),
            local[line - 1],
            "line {line}"
        );
        let lines = r["batched"]["lines"].as_array().expect("ran stacked");
        assert!(lines.len() > 1 && lines.len() <= 32, "{r}");
        assert!(lines.iter().any(|l| l.as_u64() == Some(line as u64)), "{r}");
        tasks.insert(r["task_id"].as_str().unwrap().to_owned());
    }
    // 450 lines in stacks of at most 32: at least 15 tasks, far fewer than 450.
    assert!((15..100).contains(&tasks.len()), "{} tasks", tasks.len());
    let done = node.wait_for(T, |v| v["event"] == "task_done").is_some();
    assert!(done, "the worker reported its tasks");
    // Each line's receipt (the stacked task's) verifies offline.
    let o = p2pa(&["verify", out_path.to_str().unwrap()], T);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // Re-running resumes: nothing left to do, nothing written twice.
    let again = infer_batch(port, &model, &inputs, &out_path, &["--batch-size", "32"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(
        jsonl(&std::fs::read_to_string(&out_path).unwrap()).len(),
        local.len()
    );
}
