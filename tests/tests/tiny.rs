//! A firmware-style worker, written against `p2pa-protocol` alone (through
//! `p2pa-tiny`: fixed buffers, no allocation, a blocking socket standing in
//! for a board's), completes the handshake with a real `p2pa` requester and
//! serves its echo and hash tasks, receipts checked by the requester.

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use p2pa_node::protocol::{Identity, Keypair};
use p2pa_tests::{p2pa_local, stderr, stdout, unique_port};
use p2pa_tiny::{Buffers, Served, Worker};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

#[test]
fn a_no_std_worker_serves_echo_and_hash_to_the_p2pa_cli() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = mpsc::channel::<Served>();
    let board = std::thread::spawn(move || {
        let id = Identity::new(Keypair::from_seed([77; 32]));
        let worker = Worker::new(&id, addr.port());
        let mut bufs: Buffers = Buffers::default();
        // One session per CLI command; two commands.
        for i in 0..2u8 {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let served = worker.serve(&mut stream, [i + 1; 32], &mut bufs).unwrap();
            done_tx.send(served).unwrap();
        }
    });
    let port = unique_port();
    let peer = addr.to_string();
    let run = |kind: &str, input: &str| -> Value {
        let args = [
            "submit", "--kind", kind, "--input", input, "--peer", &peer, "--json",
        ];
        let out = p2pa_local(port, &args, T);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    let worker_id = Keypair::from_seed([77; 32]).node_id().to_string();

    let echo = run("echo", "hello from a board");
    assert_eq!(echo["status"], "completed");
    assert_eq!(echo["output"], "hello from a board");
    assert_eq!(echo["worker"], worker_id.as_str());
    assert!(echo["receipt"].is_object(), "{echo}");
    let served = done_rx.recv_timeout(T).unwrap();
    assert_eq!(
        served,
        Served {
            completed: 1,
            rejected: 0
        }
    );

    let hash = run("hash", "abc");
    assert_eq!(
        hash["output"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(done_rx.recv_timeout(T).unwrap().completed, 1);
    board.join().unwrap();
}
