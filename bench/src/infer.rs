//! Inference: tract alone against p2pa over three worker processes, and the
//! per-task protocol overhead for tasks of about 1 to 20 ms.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use p2pa_node::core::TaskRequest;
use p2pa_node::models::ModelStore;
use p2pa_node::protocol::{TaskKind, TaskStatus};
use p2pa_node::task::infer::Engine;
use p2pa_node::task::tensor::{encode, Tensor};

use crate::harness::{requester_for, requester_for_all, run_all, Requester, TempDir, WorkerProc};

/// Tasks in flight over the three workers.
const WINDOW: usize = 12;
/// Store limit for the benchmark's models.
const STORE_LIMIT: u64 = 1 << 26;

/// The shipped digits model and its test split, one input per row.
struct Digits {
    model: Vec<u8>,
    rows: Vec<Vec<f32>>,
    inputs: Vec<Vec<u8>>,
}

fn load_digits() -> Digits {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let model = std::fs::read(root.join("digits.onnx")).expect("model");
    let rows: Vec<Vec<f32>> = std::fs::read_to_string(root.join("digits_test.jsonl"))
        .expect("test split")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["input"]
                .as_array()
                .expect("input")
                .iter()
                .map(|x| x.as_f64().unwrap_or(0.0) as f32)
                .collect()
        })
        .collect();
    let inputs = rows
        .iter()
        .map(|r| encode(&[Tensor::f32(vec![1, 64], r.clone()).expect("tensor")]))
        .collect();
    Digits {
        model,
        rows,
        inputs,
    }
}

fn infer(x: &[u8], model: [u8; 32]) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Infer,
        input: x.to_vec().into(),
        model: Some(model),
        timeout: Duration::from_secs(60),
        peer: None,
        needs: 0,
    }
}

/// Single-image inferences per second with tract on this thread.
fn local_rate(d: &Digits, dir: &Path, rounds: usize) -> f64 {
    let store = ModelStore::new(dir.join("local"), STORE_LIMIT);
    let hash = store.put(None, &d.model).expect("store");
    let engine = Engine::new(store);
    let _ = engine.run(Some(hash), &d.inputs[0]);
    let t = Instant::now();
    for _ in 0..rounds {
        for x in &d.inputs {
            assert_eq!(engine.run(Some(hash), x).status, TaskStatus::Completed);
        }
    }
    (d.inputs.len() * rounds) as f64 / t.elapsed().as_secs_f64()
}

/// The same over three worker processes (one slot per core each) and a
/// requester on this thread, as `p2pa batch` runs it.
fn distributed_rate(d: &Digits, rounds: usize, cores: u16) -> f64 {
    let workers: Vec<WorkerProc> = (0..3).map(|_| WorkerProc::start(cores)).collect();
    let addrs: Vec<SocketAddr> = workers.iter().map(|w| w.addr).collect();
    let mut r = requester_for_all(&addrs);
    let mh = r
        .node
        .block_on(r.h.provide_model(d.model.clone()))
        .expect("provide");
    let warm = d.inputs.iter().take(60).map(|x| infer(x, mh)).collect();
    let _ = run_all(&mut r, warm, WINDOW);
    let all = (0..rounds)
        .flat_map(|_| d.inputs.iter().map(|x| infer(x, mh)))
        .collect();
    let rate = run_all(&mut r, all, WINDOW);
    r.shutdown();
    rate
}

pub fn bench_infer(rounds: usize) {
    let d = load_digits();
    let dir = TempDir::new("infer");
    let total = d.rows.len() * rounds;
    let local_ips = local_rate(&d, &dir.0, rounds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u16;
    let dist_ips = distributed_rate(&d, rounds, cores);
    println!("| digits MLP, {total} single-image inferences | inferences/s | µs each |");
    println!("|---|---|---|");
    println!(
        "| local, one process, one thread (tract) | {local_ips:.0} | {:.1} |",
        1e6 / local_ips
    );
    println!(
        "| p2pa, 3 worker processes × {cores} slots on this machine, {WINDOW} in flight | {dist_ips:.0} | {:.1} |",
        1e6 / dist_ips
    );
    println!();
    overhead_rows(&d, &dir.0);
}

/// Protocol overhead for tasks of ≥ 1 ms: a heavier MLP (bench/run.sh
/// writes it), B images per task, B chosen for about 1, 2, 5 and 20 ms.
fn overhead_rows(d: &Digits, dir: &Path) {
    let heavy_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-mlp.onnx");
    let Ok(bytes) = std::fs::read(&heavy_path) else {
        println!("SKIPPED: heavier model for the ≥ 1 ms overhead rows: target/bench-mlp.onnx missing (python3 models/make_bench_model.py needs numpy and onnx)");
        return;
    };
    let heavy_dir: PathBuf = dir.join("heavy");
    let hh = ModelStore::new(&heavy_dir, STORE_LIMIT)
        .put(None, &bytes)
        .expect("store heavy model");
    let heavy = Engine::new(ModelStore::new(&heavy_dir, STORE_LIMIT));
    let task = |b: usize| {
        let x: Vec<f32> = d.rows.iter().cycle().take(b).flatten().copied().collect();
        encode(&[Tensor::f32(vec![b, 64], x).expect("batch tensor")])
    };
    let local_ms = |x: &[u8], reps: usize| {
        let _ = heavy.run(Some(hh), x);
        let t = Instant::now();
        for _ in 0..reps {
            assert_eq!(heavy.run(Some(hh), x).status, TaskStatus::Completed);
        }
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    };
    let per_image = local_ms(&task(8), 50) / 8.0;
    // One worker process with one slot: its core does the model and the
    // worker's share of the protocol; the requester's share runs on the
    // other core, as it would on another machine.
    let worker = WorkerProc::start(1);
    let mut r = requester_for(worker.addr);
    let rh = r.node.block_on(r.h.provide_model(bytes)).expect("provide");
    let x1 = task(1);
    let _ = run_all(&mut r, (0..10).map(|_| infer(&x1, rh)).collect(), 1); // model fetched
    println!(
        "Per-task protocol overhead, 64-1536-1536-10 MLP ({per_image:.2} ms per image here), one worker process with one slot, requester in another process:"
    );
    println!();
    println!("| images per task | local, one thread | p2pa, one in flight | overhead (latency) | local tasks/s | p2pa tasks/s, 2 in flight | overhead (throughput, target ≤ 5 %) |");
    println!("|---|---|---|---|---|---|---|");
    for target_ms in [1.0f64, 2.0, 5.0, 20.0] {
        let b = ((target_ms / per_image).round() as usize).clamp(1, 200);
        overhead_row(&mut r, &task(b), b, rh, target_ms, &local_ms);
    }
    r.shutdown();
}

/// One row: tasks of `b` images, locally and over p2pa.
fn overhead_row(
    r: &mut Requester,
    x: &[u8],
    b: usize,
    model: [u8; 32],
    target_ms: f64,
    local_ms: &dyn Fn(&[u8], usize) -> f64,
) {
    let reps = ((2000.0 / target_ms) as usize).clamp(50, 1000);
    let local = local_ms(x, reps);
    let one = 1e3 / run_all(r, (0..reps).map(|_| infer(x, model)).collect(), 1);
    let tps = run_all(r, (0..reps).map(|_| infer(x, model)).collect(), 2);
    let local_tps = 1e3 / local;
    println!(
        "| {b} | {local:.2} ms | {one:.2} ms | {:.1} % | {local_tps:.0} | {tps:.0} | {:.1} % |",
        (one - local) / one * 100.0,
        (1.0 - tps / local_tps) * 100.0
    );
}
