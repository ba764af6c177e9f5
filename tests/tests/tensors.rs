//! Tensors of any size: inputs and outputs beyond one frame travel as
//! content-addressed blobs over the task's session, hash-checked, and the
//! receipt still covers exactly the bytes asked and returned.

use std::net::SocketAddr;
use std::time::Duration;

use p2pa_node::core::{sha256, verify_receipt, TaskRequest, MAX_INLINE_TENSOR};
use p2pa_node::io::{NodeHandle, NodeOptions};
use p2pa_node::protocol::*;
use p2pa_tests::unique_port;

fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

fn worker() -> (NodeHandle, SocketAddr) {
    let mut o = p2pa_tests::loopback_options(unique_port());
    o.multicast = None;
    let h = NodeHandle::start(key(1), o).unwrap();
    let addr = h.local_addr();
    (h, addr)
}

fn requester(target: SocketAddr) -> NodeOptions {
    let mut o = p2pa_tests::loopback_options(unique_port());
    o.multicast = None;
    o.core.kinds = KindSet::default();
    o.core.workers = 0;
    o.core.bootstrap = vec![target];
    o
}

/// Bytes that differ everywhere (a hash chain), so a misplaced chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut h = [7u8; 32];
    while out.len() < len {
        h = sha256(&h);
        out.extend_from_slice(&h);
    }
    out.truncate(len);
    out
}

#[test]
fn ten_megabytes_in_and_out_round_trip_with_a_receipt_over_both() {
    let (w, addr) = worker();
    let (h, mut node) = NodeHandle::start_local(key(2), requester(addr)).unwrap();
    let big = pattern(10 << 20);
    let (echo, hash, small) = node.block_on(async {
        h.wait_for_peers(Some(TaskKind::Echo), 1, Duration::from_secs(15))
            .await;
        let req = |kind, input: &[u8]| TaskRequest {
            kind,
            input: input.to_vec().into(),
            model: None,
            timeout: Duration::from_secs(60),
            peer: None,
            needs: 0,
        };
        let echo = h.submit(req(TaskKind::Echo, &big)).await.unwrap();
        let hash = h.submit(req(TaskKind::Hash, &big)).await.unwrap();
        // Just past the inline limit, and just under it.
        let small = h
            .submit(req(TaskKind::Echo, &pattern(MAX_INLINE_TENSOR + 1)))
            .await
            .unwrap();
        h.shutdown().await;
        (echo, hash, small)
    });
    assert_eq!(echo.status, TaskStatus::Completed, "{:?}", echo.error);
    assert!(echo.output == big, "10 MiB came back byte for byte");
    let r = echo.receipt.unwrap();
    assert_eq!((r.input, r.output), (sha256(&big), sha256(&big)));
    // The output was a blob: the kept receipt verifies without it, and
    // with it, and not with another output.
    assert_eq!(r.blob_len, Some(big.len() as u64));
    assert_eq!(verify_receipt(&r, None), Ok(()));
    assert_eq!(verify_receipt(&r, Some(&big)), Ok(()));
    assert!(verify_receipt(&r, Some(&big[1..])).is_err());
    let s = small.receipt.unwrap();
    assert_eq!(verify_receipt(&s, Some(&small.output)), Ok(()));
    assert_eq!(hash.status, TaskStatus::Completed, "{:?}", hash.error);
    assert_eq!(hash.output, p2pa_node::hex::hex(&sha256(&big)).into_bytes());
    assert_eq!(small.output, pattern(MAX_INLINE_TENSOR + 1));
    let stats = async_io::block_on(w.stats()).unwrap();
    assert!(
        stats.blob_bytes_fetched >= 2 * (10 << 20) && stats.blob_bytes_served >= 10 << 20,
        "inputs fetched, output served as blobs: {stats:?}"
    );
    async_io::block_on(w.shutdown());
}

#[test]
fn a_tensor_over_the_limit_is_refused_by_the_requester_and_the_worker() {
    let (w, addr) = worker();
    let mut o = requester(addr);
    o.core.max_tensor_bytes = 1 << 20;
    let (h, mut node) = NodeHandle::start_local(key(3), o).unwrap();
    let out = node.block_on(async {
        h.wait_for_peers(Some(TaskKind::Echo), 1, Duration::from_secs(15))
            .await;
        let req = TaskRequest {
            kind: TaskKind::Echo,
            input: (vec![1; 2 << 20]).into(),
            model: None,
            timeout: Duration::from_secs(20),
            peer: None,
            needs: 0,
        };
        let o = h.submit(req).await.unwrap();
        h.shutdown().await;
        o
    });
    assert_eq!(out.status, TaskStatus::Failed);
    let msg = out.error.unwrap().to_string();
    assert!(msg.contains("exceeds the limit of 1048576 bytes"), "{msg}");
    async_io::block_on(w.shutdown());
}

/// The same through the command line: `submit --input-file` and a batch
/// line of 10 MiB, each coming back whole as an output blob.
#[test]
fn ten_megabytes_round_trip_through_submit_and_batch() {
    use p2pa_tests::*;
    let port = unique_port();
    let dir = scratch("cli-10mb");
    let _w = NodeProc::start(port, &dir.join("w"), &[]);
    let big: Vec<u8> = pattern(10 << 20)
        .iter()
        .map(|b| b'a' + b % 26) // text, so it travels as a JSON string
        .collect();
    let file = dir.join("in.txt");
    std::fs::write(&file, &big).unwrap();
    let t = Duration::from_secs(300);
    let out = p2pa_local(
        port,
        &[
            "submit",
            "--kind",
            "echo",
            "--input-file",
            file.to_str().unwrap(),
            "--timeout",
            "120",
            "--json",
        ],
        t,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(
        v["output"].as_str().unwrap().as_bytes() == big,
        "submit: 10 MiB back"
    );
    let line = serde_json::to_string(std::str::from_utf8(&big).unwrap()).unwrap();
    let inputs = dir.join("in.jsonl");
    std::fs::write(&inputs, format!("{line}\n")).unwrap();
    let results = dir.join("out.jsonl");
    let out = batch_local(port, "echo", &inputs, &results, &["--timeout", "120"], t);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = jsonl(&std::fs::read_to_string(&results).unwrap());
    assert!(
        r[0]["output"].as_str().unwrap().as_bytes() == big,
        "batch: 10 MiB back"
    );
    // The journal's receipt (an output blob: its hash and length signed)
    // checks offline.
    assert_eq!(r[0]["receipt"]["output_blob_len"], 10 << 20);
    let out = p2pa(&["verify", results.to_str().unwrap()], t);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    std::fs::remove_dir_all(&dir).ok();
}
