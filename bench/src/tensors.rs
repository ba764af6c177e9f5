//! Large tensors and the inference process: what moving a 1 MB and a 10 MB
//! input (and output) over p2pa costs against the physical limit (the same
//! bytes over one loopback TCP connection, hashed once at each end as the
//! receipts need), and what running a model in a child process costs per
//! task against running it in this process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use p2pa_node::core::{sha256, TaskRequest};
use p2pa_node::models::ModelStore;
use p2pa_node::protocol::{KindSet, TaskKind, TaskStatus};
use p2pa_node::task::child::{ChildCommand, Isolated};
use p2pa_node::task::infer::Engine;
use p2pa_node::task::tensor::{encode, Tensor};
use p2pa_node::task::{Execute, Job};

use crate::floor::Seal;
use crate::harness::{median, p2pa_bin, pair, TempDir};

/// Bytes per sealed record in the floor (a session's records carry 32 KiB
/// blob chunks; 64 KiB is the most a record holds, the floor's kinder case).
const RECORD: usize = 64 * 1024;

/// Bytes on the wire for `len` bytes sealed in records.
fn sealed_len(len: usize) -> usize {
    len + len.div_ceil(RECORD) * 16
}

/// `bytes` sealed record by record, each followed by its tag.
fn seal_all(tx: &mut Seal, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sealed_len(bytes.len()));
    for c in bytes.chunks(RECORD) {
        let at = out.len();
        out.extend_from_slice(c);
        let tag = tx.seal(&mut out[at..]);
        out.extend_from_slice(&tag);
    }
    out
}

/// The plaintext of records sealed by [`seal_all`] (each must open).
fn open_all(rx: &mut Seal, sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sealed.len());
    for c in sealed.chunks(RECORD + 16) {
        let (text, tag) = c.split_at(c.len() - 16);
        let at = out.len();
        out.extend_from_slice(text);
        assert!(rx.open(&mut out[at..], tag), "floor record opens");
    }
    out
}

/// The floor: `bytes` to a loopback server that decrypts and hashes them,
/// encrypts and sends them back, decrypted and hashed again here (the AEAD
/// over 64 KiB records, as sessions seal them, and one SHA-256 pass each
/// end); ms per round trip.
fn floor_ms(bytes: &[u8], rounds: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let len = bytes.len();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; sealed_len(len)];
        let (mut rx, mut tx) = (Seal::new([1; 32]), Seal::new([2; 32]));
        for _ in 0..rounds {
            if s.read_exact(&mut buf).is_err() {
                break;
            }
            let plain = open_all(&mut rx, &buf);
            std::hint::black_box(sha256(&plain));
            if s.write_all(&seal_all(&mut tx, &plain)).is_err() {
                break;
            }
        }
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).ok();
    let mut back = vec![0u8; sealed_len(len)];
    let mut times = Vec::new();
    let (mut tx, mut rx) = (Seal::new([1; 32]), Seal::new([2; 32]));
    for _ in 0..rounds {
        let t = Instant::now();
        c.write_all(&seal_all(&mut tx, bytes)).expect("write");
        c.read_exact(&mut back).expect("read");
        let plain = open_all(&mut rx, &back);
        std::hint::black_box(sha256(&plain));
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let _ = server.join();
    median(&mut times)
}

/// p2pa: an echo task of `bytes` (input and output each a blob); ms per task.
fn p2pa_ms(bytes: &[u8], rounds: usize) -> f64 {
    let (worker, requester) = pair(1, KindSet::default().with(TaskKind::Echo));
    let mut times = Vec::new();
    for _ in 0..rounds {
        let req = TaskRequest {
            kind: TaskKind::Echo,
            input: bytes.to_vec().into(),
            model: None,
            timeout: Duration::from_secs(60),
            peer: None,
            needs: 0,
        };
        let t = Instant::now();
        let o = async_io::block_on(requester.submit(req)).expect("node up");
        assert_eq!(o.status, TaskStatus::Completed, "{:?}", o.error);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    async_io::block_on(requester.shutdown());
    async_io::block_on(worker.shutdown());
    median(&mut times)
}

fn moving() {
    println!(
        "### Moving large inputs and outputs (echo: the input goes out and comes back as a blob)"
    );
    println!();
    let aead = crate::harness::aead_name();
    println!("| size | floor ms (TCP, {aead} and SHA-256 each end) | p2pa ms | p2pa / floor | p2pa MB/s each way |");
    println!("|------|------|------|------|------|");
    let sizes = [
        ("1 MB", 1usize << 20, 20usize),
        ("10 MB", 10 << 20, 8),
        ("64 MiB", 64 << 20, 3),
    ];
    for (label, len, rounds) in sizes {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
        let floor = floor_ms(&bytes, rounds);
        let p2pa = p2pa_ms(&bytes, rounds);
        let mbs = (len as f64 / 1e6) / (p2pa / 2e3);
        println!(
            "| {label} | {floor:.2} | {p2pa:.2} | {:.2} | {mbs:.0} |",
            p2pa / floor
        );
    }
}

fn hop(models: &Path) {
    let model = std::fs::read(models.join("digits.onnx")).expect("digits model");
    let dir = TempDir::new("hop");
    let store = ModelStore::new(dir.0.join("models"), 1 << 24);
    let hash = store.put(None, &model).expect("store");
    let input = encode(&[Tensor::f32(vec![1, 64], vec![0.5; 64]).expect("tensor")]);
    let engine = Engine::new(store.clone());
    let isolated = Isolated::new(ChildCommand {
        program: p2pa_bin(),
        args: vec![
            "infer-child".into(),
            "--models".into(),
            store.dir().into(),
            "--memory-mb".into(),
            "2048".into(),
        ],
        max_output: p2pa_node::task::child::MAX_PIPE_FRAME,
        cpu_cores: None,
    });
    let job = |id| Job {
        id,
        kind: TaskKind::Infer,
        input: input.clone(),
        model: Some(hash),
        deadline: Instant::now() + Duration::from_secs(30),
        stop: Default::default(),
    };
    let n = 2000;
    let time = |run: &dyn Fn(u64) -> TaskStatus| {
        for i in 0..50 {
            assert_eq!(run(i), TaskStatus::Completed);
        }
        let mut t = Vec::new();
        for i in 0..n {
            let s = Instant::now();
            let st = run(i);
            t.push(s.elapsed().as_secs_f64() * 1e6);
            assert_eq!(st, TaskStatus::Completed);
        }
        median(&mut t)
    };
    let inproc = time(&|_| engine.run(Some(hash), &input).status);
    let child = time(&|i| isolated.run(job(i)).status);
    println!("### Inference in a child process: the cost of the hop (digits MLP, {n} tasks)");
    println!();
    println!("| in this process µs | in a child process µs | hop µs per task |");
    println!("|------|------|------|");
    println!("| {inproc:.1} | {child:.1} | {:.1} |", child - inproc);
}

pub fn bench_tensors() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    moving();
    println!();
    hop(&models);
}
