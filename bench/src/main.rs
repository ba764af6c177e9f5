//! `p2pa-bench`: measures p2pa against the floor (plain TCP plus the same
//! signatures), side by side in one process and one run, and prints Markdown.
//!
//!     cargo run --release -p p2pa-bench -- [rtt|handshake|memory|infer|tensors|all] [--n N]
//!
//! and the per-task floors the scripts compare with, one line each:
//! `crypto-floor` and `job-floor` (`--input BYTES --output BYTES`).
//!
//! Every loop is bounded by a count; the whole run stops by itself.

mod floor;
mod harness;
#[cfg(feature = "onnx")]
mod infer;
mod memory;
mod rtt;
#[cfg(feature = "onnx")]
mod tensors;

use harness::{echo, pair, pipelined, requester_for, WorkerProc};
use p2pa_node::protocol::{KindSet, TaskKind};

#[cfg(not(feature = "onnx"))]
mod infer {
    pub fn bench_infer(_: usize) {
        println!("SKIPPED: inference benchmark needs the `onnx` feature");
    }
}

#[cfg(not(feature = "onnx"))]
mod tensors {
    pub fn bench_tensors() {
        println!("SKIPPED: tensor benchmark needs the `onnx` feature");
    }
}

/// `floor-server`: the floor's worker, in a process of its own.
fn floor_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let client = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([1; 32])).pk;
    let _ = floor::serve(listener, client).join();
}

/// Modes for profilers: one side of one measurement only.
fn profile(what: &str, n: usize) {
    let input = [0x5au8; 64];
    match what {
        "seq-only" => {
            let (worker, requester) = pair(1, KindSet::default().with(TaskKind::Echo));
            for _ in 0..n {
                let _ = async_io::block_on(requester.submit(echo(&input)));
            }
            async_io::block_on(requester.shutdown());
            async_io::block_on(worker.shutdown());
        }
        "floor-only" => {
            let (mut client, server) = floor::start();
            for i in 0..n as u64 {
                client.round_trip(i, &input);
            }
            drop(client);
            let _ = server.join();
        }
        _ => {
            // pipe-only: p2pa's pipelined run, worker in its own process.
            let worker = WorkerProc::start(1);
            let mut requester = requester_for(worker.addr);
            let tps = pipelined(&mut requester, n);
            println!("p2pa pipelined: {tps:.0} tasks/s");
            requester.shutdown();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("all");
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = flag("--n", 2000);
    match what {
        "floor-server" => return floor_server(),
        "crypto-floor" => {
            // `crypto-floor --input BYTES --output BYTES`: ms of CPU per
            // task, in all, then the AEAD's and SHA-256's parts, then the AEAD.
            let (aead, hash) =
                floor::crypto_floor_ms(flag("--input", 1 << 20), flag("--output", 1 << 20), 21);
            let cipher = if harness::aes() {
                "aes-256-gcm"
            } else {
                "chacha20-poly1305"
            };
            println!("{:.3} {aead:.3} {hash:.3} {cipher}", aead + hash);
            return;
        }
        "job-floor" => {
            // `job-floor --input BYTES --output BYTES`: ms of CPU per task
            // that any implementation pays on one machine: in all, then the
            // cryptography (crypto-floor) and the copies (TCP, pipes, files).
            let (input, output) = (flag("--input", 1 << 20), flag("--output", 1 << 20));
            let (aead, hash) = floor::crypto_floor_ms(input, output, 21);
            let (tcp, pipe, file) = floor::copy_floor_ms(input, output, 21);
            let (crypto, copies) = (aead + hash, tcp + pipe + file);
            println!(
                "{:.3} crypto {crypto:.3} copies {copies:.3} (tcp {tcp:.3} pipe {pipe:.3} file {file:.3})",
                crypto + copies
            );
            return;
        }
        "seq-only" | "floor-only" | "pipe-only" => return profile(what, n),
        "rtt-only" => {
            // p2pa's sequential round trips as `rtt` measures them (worker
            // in its own process, requester on this thread), for strace -f.
            let r = rtt::p2pa_sequential(n);
            println!(
                "p2pa p50 {:.1} µs, CPU {:.1} µs per task",
                r.p50_us, r.cpu_us
            );
            return;
        }
        _ => {}
    }
    if matches!(what, "rtt" | "all") {
        rtt::bench_rtt(n);
        println!();
    }
    if matches!(what, "handshake" | "all") {
        memory::bench_handshake(n.min(500));
        println!();
    }
    if matches!(what, "memory" | "all") {
        memory::bench_memory(if what == "all" { 100_000 } else { n });
        println!();
    }
    if matches!(what, "infer" | "all") {
        infer::bench_infer(5);
        println!();
    }
    if matches!(what, "tensors" | "all") {
        tensors::bench_tensors();
    }
}
