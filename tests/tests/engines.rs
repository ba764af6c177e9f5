//! The inference engines as a user meets them: the node says which engine
//! runs at start and in `status`; `--engine onnxruntime` where the library
//! does not load stops the node with a reason, `auto` falls back to tract;
//! a requester's `--engine` reaches only workers on that engine; where
//! onnxruntime is installed, both engines give the same outputs for the
//! shipped models. The onnxruntime half needs the library (CI installs it in
//! a venv and names it in P2PA_TEST_ONNXRUNTIME_LIB, read by this file
//! alone); elsewhere it prints SKIPPED.

use std::path::{Path, PathBuf};
use std::time::Duration;

use p2pa_tests::*;

const T: Duration = Duration::from_secs(120);

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// One row of the shipped digits test split as a JSON tensor file.
fn digits_input(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(models().join("digits_test.jsonl")).unwrap();
    let row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let path = dir.join("x.json");
    let tensor = serde_json::json!({"shape": [1, 64], "f32": row["input"]});
    std::fs::write(&path, tensor.to_string()).unwrap();
    path
}

/// onnxruntime's library where this machine has it (named, or in a Python
/// package); `None` when only the system's search path is left to try.
fn onnxruntime() -> Option<PathBuf> {
    for var in [
        "P2PA_TEST_ONNXRUNTIME_LIB",
        "P2PA_ONNXRUNTIME_LIB",
        "ORT_DYLIB_PATH",
    ] {
        if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(p));
        }
    }
    let (lib, source) = p2pa_node::task::infer::locate::find(None);
    (source != p2pa_node::task::infer::locate::Source::System).then_some(lib)
}

const MISSING: &str = "/nonexistent/libonnxruntime.so.1.99.0";

/// `model run --json`'s object.
fn run_json(model: &Path, input: &Path, extra: &[&str]) -> Value {
    let (m, i) = (model.to_str().unwrap(), input.to_str().unwrap());
    let mut args = vec![
        "model",
        "run",
        m,
        "--input-file",
        i,
        "--json",
        "--repeat",
        "3",
    ];
    args.extend_from_slice(extra);
    let o = p2pa(&args, T);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

/// `model run`'s outputs, as the JSON it prints.
fn outputs(model: &Path, input: &Path, extra: &[&str]) -> Value {
    let (m, i) = (model.to_str().unwrap(), input.to_str().unwrap());
    let mut args = vec!["model", "run", m, "--input-file", i];
    args.extend_from_slice(extra);
    let o = p2pa(&args, T);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

/// Every number in `a` and `b`, pairwise within rtol 1e-3, atol 1e-4.
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| close(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        (Value::Number(p), Value::Number(q)) => {
            let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
            (p - q).abs() <= 1e-4 + 1e-3 * q.abs()
        }
        _ => a == b,
    }
}

#[test]
fn the_engine_is_chosen_as_asked_said_at_start_and_a_missing_onnxruntime_is_explained() {
    let dir = scratch("engine-start");
    let input = digits_input(&dir);
    let digits = models().join("digits.onnx");
    // auto with no loadable onnxruntime runs tract, and says which ran.
    let v = run_json(
        &digits,
        &input,
        &["--engine", "auto", "--onnxruntime-lib", MISSING],
    );
    assert_eq!(v["engine"], "tract", "{v}");
    assert_eq!(v["engine_version"], p2pa_node::task::infer::tract::VERSION);
    assert!(
        v["median_ms"].as_f64().unwrap() > 0.0 && v["repeat"] == 3,
        "{v}"
    );
    // Only onnxruntime, and it is not there: a usage error naming the file.
    let port = unique_port();
    let d = dir.join("strict");
    let o = p2pa_local(
        port,
        &[
            "--data-dir",
            d.to_str().unwrap(),
            "node",
            "--engine",
            "onnxruntime",
            "--onnxruntime-lib",
            MISSING,
        ],
        T,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("cannot start the inference engine: onnxruntime not loaded")
            && err.contains(MISSING),
        "{err}"
    );
    let o = p2pa(
        &[
            "model",
            "run",
            digits.to_str().unwrap(),
            "--input-file",
            input.to_str().unwrap(),
            "--engine",
            "onnxruntime",
            "--onnxruntime-lib",
            MISSING,
        ],
        T,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_requester_asking_for_an_engine_reaches_only_workers_that_run_it() {
    let dir = scratch("engine-ask");
    let input = digits_input(&dir);
    let digits = models().join("digits.onnx");
    let port = unique_port();
    let worker = NodeProc::start(
        port,
        &dir.join("w"),
        &["--engine", "tract", "--workers", "1"],
    );
    assert_eq!(worker.seen[0]["engine"], "tract", "{}", worker.seen[0]);
    let args = |engine| {
        [
            "--input-file",
            input.to_str().unwrap(),
            "--json",
            "--engine",
            engine,
        ]
    };
    let o = submit_infer(port, &digits, &args("tract"), T);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["worker"].as_str()),
        (Some("completed"), Some(worker.id.as_str()))
    );
    let mut wait = args("onnxruntime").to_vec();
    wait.extend_from_slice(&["--wait", "1500"]);
    let o = submit_infer(port, &digits, &wait, T);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("that run `infer` on onnxruntime"),
        "{}",
        stderr(&o)
    );
    // `status` names the engine.
    let o = p2pa(
        &[
            "--data-dir",
            dir.join("w").to_str().unwrap(),
            "status",
            "--json",
        ],
        T,
    );
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["engine"]["name"], "tract", "{v}");
}

#[test]
fn onnxruntime_and_tract_agree_on_the_shipped_models_through_a_node() {
    let Some(lib) = onnxruntime() else {
        p2pa_tests::skip(
            "P2PA_REQUIRE_ONNXRUNTIME",
            "no onnxruntime library here (pip install onnxruntime, or set P2PA_ONNXRUNTIME_LIB)",
        );
        return;
    };
    let lib = lib.to_str().unwrap().to_owned();
    let dir = scratch("engine-agree");
    let digits_in = digits_input(&dir);
    let ort = ["--engine", "onnxruntime", "--onnxruntime-lib", lib.as_str()];
    for (model, input) in [
        (models().join("digits.onnx"), digits_in.clone()),
        (
            models().join("ppocr_cls.onnx"),
            models().join("ppocr_cls_input.npy"),
        ),
    ] {
        let v = run_json(&model, &input, &ort);
        assert_eq!(v["engine"], "onnxruntime", "{v}");
        let a = outputs(&model, &input, &ort);
        let b = outputs(&model, &input, &["--engine", "tract"]);
        assert!(
            close(&a, &b),
            "{}: onnxruntime {a} vs tract {b}",
            model.display()
        );
    }
    // A worker on onnxruntime says so, and serves a requester that asks for it.
    let port = unique_port();
    let mut extra = vec!["--workers", "1"];
    extra.extend_from_slice(&ort);
    let worker = NodeProc::start(port, &dir.join("w"), &extra);
    assert_eq!(
        worker.seen[0]["engine"], "onnxruntime",
        "{}",
        worker.seen[0]
    );
    let digits = models().join("digits.onnx");
    let o = submit_infer(
        port,
        &digits,
        &[
            "--input-file",
            digits_in.to_str().unwrap(),
            "--json",
            "--engine",
            "onnxruntime",
        ],
        T,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["status"], "completed", "{v}");
}

/// A node's plain start line names onnxruntime's library and says once
/// where it was found (the inference process it starts is handed the path
/// and must not add its own "as named").
#[test]
fn the_start_line_says_where_onnxruntime_was_found_once() {
    let Some(lib) = onnxruntime() else {
        p2pa_tests::skip(
            "P2PA_REQUIRE_ONNXRUNTIME",
            "no onnxruntime library here (pip install onnxruntime, or set P2PA_ONNXRUNTIME_LIB)",
        );
        return;
    };
    let dir = scratch("engine-line");
    let mut node = std::process::Command::new(p2pa_tests::bin())
        .args(p2pa_tests::local_net(unique_port()))
        .arg("--data-dir")
        .arg(dir.join("w"))
        .args(["node", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args(["--engine", "onnxruntime", "--onnxruntime-lib"])
        .arg(&lib)
        .env_remove("P2PA_ONNXRUNTIME_LIB")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(node.stdout.take().unwrap());
    // The engine line comes second, right after the listening line.
    let line = std::io::BufRead::lines(out)
        .take(4)
        .map_while(Result::ok)
        .find(|l| l.starts_with("inference engine:"));
    let _ = node.kill();
    let _ = node.wait();
    let line = line.expect("an inference engine line among the first four");
    let want = format!("({} as named)", lib.display());
    assert!(
        line.starts_with("inference engine: onnxruntime ") && line.ends_with(&want),
        "{line}"
    );
    assert_eq!(line.matches("as named").count(), 1, "{line}");
}
