//! Nothing a task carries crosses the wire in the clear. A TCP relay on
//! loopback sits between a requester (`p2pa submit`) and a worker node and
//! keeps every byte it forwards, both ways; echo tasks with distinctive
//! inputs (inline, and a blob both ways) and an infer task with a real model
//! run through it; then no 16-byte window of the inputs, the outputs or the
//! model appears in what it relayed. The receipts of those sessions still
//! verify offline.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pa_tests::{p2pa, p2pa_local, scratch, stderr, stdout, unique_port, NodeProc};
use serde_json::Value;

const T: Duration = Duration::from_secs(90);
const WINDOW: usize = 16;

/// What the relay forwarded, per direction.
#[derive(Default)]
struct Wire {
    to_worker: Vec<u8>,
    to_requester: Vec<u8>,
}

/// Forwards every connection to `127.0.0.1:<listen>` on to `target`,
/// keeping the bytes. Runs until the test process ends (each connection's
/// copy ends when either side closes).
fn relay(target: String) -> (String, Arc<Mutex<Wire>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let wire = Arc::new(Mutex::new(Wire::default()));
    let keep = wire.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(down) = conn else { break };
            let Ok(up) = TcpStream::connect(&target) else {
                break;
            };
            pipe(
                down.try_clone().unwrap(),
                up.try_clone().unwrap(),
                &keep,
                true,
            );
            pipe(up, down, &keep, false);
        }
    });
    (addr, wire)
}

/// Copies `from` into `to`, appending what passes to the wire's direction.
fn pipe(mut from: TcpStream, mut to: TcpStream, wire: &Arc<Mutex<Wire>>, to_worker: bool) {
    let wire = wire.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded: a connection of this test carries a few MB at most.
        for _ in 0..100_000 {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut w = wire.lock().unwrap();
                let dir = if to_worker {
                    &mut w.to_worker
                } else {
                    &mut w.to_requester
                };
                dir.extend_from_slice(&buf[..n]);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Every 16-byte window of `bytes`.
fn windows(bytes: &[u8]) -> HashSet<&[u8]> {
    bytes.windows(WINDOW).collect()
}

/// The first window of `secret` found in `seen`, ignoring windows of fewer
/// than 4 distinct byte values (runs of zeros also fill the handshake's
/// cleartext pad and are no secret).
fn leak(secret: &[u8], seen: &HashSet<&[u8]>) -> Option<usize> {
    secret.windows(WINDOW).position(|w| {
        let distinct: HashSet<u8> = w.iter().copied().collect();
        distinct.len() >= 4 && seen.contains(w)
    })
}

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Distinctive bytes: a counter through a multiplicative hash.
fn distinctive(n: usize) -> Vec<u8> {
    (0..n as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect()
}

#[test]
fn a_relay_between_requester_and_worker_sees_no_plaintext() {
    let dir = scratch("relay");
    let worker = NodeProc::start(unique_port(), &dir.join("worker"), &["--workers", "1"]);
    let (addr, wire) = relay(worker.addr.clone());
    // The requester hears no beacons from the worker (another multicast
    // port): it reaches it only through the relay.
    let port = unique_port();
    let submit = |args: &[&str]| -> Value {
        let mut all = vec!["submit", "--peer", addr.as_str(), "--json"];
        all.extend_from_slice(args);
        let out = p2pa_local(port, &all, T);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };

    let text = "p2pa relay test: attack at dawn, 0xdeadbeef, the secret marker";
    let echo = submit(&["--kind", "echo", "--input", text]);
    assert_eq!(echo["output"], text);

    let big = distinctive(300 * 1024);
    let big_in = dir.join("big.bin");
    std::fs::write(&big_in, &big).unwrap();
    let blob = submit(&["--kind", "echo", "--input-file", big_in.to_str().unwrap()]);
    let hex = blob["output_hex"].as_str().expect("the output, in hex");
    let back: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(back, big, "the blob came back whole");

    let model = models().join("ppocr_cls.onnx");
    let input = models().join("ppocr_cls_input.npy");
    let infer_out = dir.join("infer-out");
    let infer = submit(&[
        "--kind",
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--input-file",
        input.to_str().unwrap(),
        "--out-dir",
        infer_out.to_str().unwrap(),
    ]);
    assert_eq!(infer["status"], "completed", "{infer}");
    let result = std::fs::read(infer["files"][0].as_str().unwrap()).unwrap();

    // The receipts of these encrypted sessions verify offline.
    let journal = dir.join("receipts.jsonl");
    let lines: Vec<String> = [&echo, &blob, &infer]
        .iter()
        .map(|v| v.to_string())
        .collect();
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let out = p2pa(&["verify", journal.to_str().unwrap()], T);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let w = wire.lock().unwrap();
    assert!(
        w.to_worker.len() > 585_000 && w.to_requester.len() > 300_000,
        "the tasks went through the relay: {} and {} bytes",
        w.to_worker.len(),
        w.to_requester.len()
    );
    for (name, seen) in [
        ("requester to worker", windows(&w.to_worker)),
        ("worker to requester", windows(&w.to_requester)),
    ] {
        let model_bytes = std::fs::read(&model).unwrap();
        let input_bytes = std::fs::read(&input).unwrap();
        for (what, secret) in [
            ("the echo text", text.as_bytes()),
            ("the echo blob", &big[..]),
            ("the model", &model_bytes[..]),
            ("the tensor input", &input_bytes[..]),
            ("the tensor output", &result[..]),
        ] {
            assert_eq!(
                leak(secret, &seen),
                None,
                "{what} appears in the clear, {name}"
            );
        }
    }
    // The check itself can fail: the same bytes unsealed would be found.
    let clear = windows(&big);
    assert_eq!(leak(&big[1000..2000], &clear), Some(0));
}

#[test]
fn only_nodes_with_the_network_key_complete_a_handshake() {
    let dir = scratch("netkey");
    let key = dir.join("net.key");
    let other = dir.join("other.key");
    for k in [&key, &other] {
        let out = p2pa(&["keygen", "--network", k.to_str().unwrap()], T);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is the owner's alone");
    let again = p2pa(&["keygen", "--network", key.to_str().unwrap()], T);
    assert_eq!(again.status.code(), Some(2), "an existing key is kept");
    let worker = NodeProc::start(
        unique_port(),
        &dir.join("worker"),
        &["--workers", "1", "--network-key", key.to_str().unwrap()],
    );
    let port = unique_port();
    let echo = |extra: &[&str]| {
        let mut args = vec![
            "submit",
            "--peer",
            &worker.addr,
            "--kind",
            "echo",
            "--input",
            "members only",
            "--timeout",
            "5",
        ];
        args.extend_from_slice(extra);
        p2pa_local(port, &args, T)
    };
    let out = echo(&["--network-key", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "members only");
    for (why, extra) in [
        ("no key", vec![]),
        (
            "another key",
            vec!["--network-key", other.to_str().unwrap()],
        ),
    ] {
        let out = echo(&extra);
        assert_eq!(out.status.code(), Some(3), "{why}: {}", stdout(&out));
        assert!(stdout(&out).is_empty(), "{why}: no task ran");
        assert!(
            stderr(&out).contains("--network-key"),
            "{why}: {}",
            stderr(&out)
        );
    }
}

/// The models named in the beacons of the node listening at `tcp_port`,
/// heard on the loopback beacon group of `port` (within `wait`).
fn beacon_models(port: u16, tcp_port: u16, wait: Duration) -> Option<usize> {
    use p2pa_node::protocol::{verify_datagram, Message};
    use std::net::{Ipv4Addr, UdpSocket};
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
        .unwrap();
    s.join_multicast_v4(&Ipv4Addr::new(239, 255, 42, 99), &Ipv4Addr::LOCALHOST)
        .unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 1500];
    while start.elapsed() < wait {
        let Ok(n) = s.recv(&mut buf) else { continue };
        if let Ok(v) = verify_datagram(&buf[..n]) {
            if let Message::Beacon(b) = v.message() {
                if b.tcp_port == tcp_port {
                    return Some(b.caps.models.len());
                }
            }
        }
    }
    None
}

#[test]
fn quiet_beacons_leave_the_models_out() {
    let dir = scratch("quiet");
    let model = models().join("digits.onnx");
    for (quiet, want) in [(false, 1), (true, 0)] {
        let data = dir.join(format!("n{quiet}"));
        let add = p2pa(
            &[
                "--data-dir",
                data.to_str().unwrap(),
                "model",
                "add",
                model.to_str().unwrap(),
            ],
            T,
        );
        assert_eq!(add.status.code(), Some(0), "{}", stderr(&add));
        let port = unique_port();
        let extra: &[&str] = if quiet { &["--quiet-beacons"] } else { &[] };
        let node = NodeProc::start(port, &data, extra);
        let tcp: u16 = node.addr.rsplit(':').next().unwrap().parse().unwrap();
        let got = beacon_models(port, tcp, Duration::from_secs(10));
        assert_eq!(got, Some(want), "quiet {quiet}");
    }
}

#[test]
fn an_older_peer_is_told_the_version_and_refused() {
    let dir = scratch("v3peer");
    let node = NodeProc::start(unique_port(), &dir.join("n"), &[]);
    let mut s = TcpStream::connect(&node.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A version-3 Hello as such a node sends it: version 3, kind 2, a key,
    // sequence 0, a body and a signature (their bytes do not matter here).
    let mut hello = vec![3u8, 2];
    hello.extend_from_slice(&[0x5a; 32 + 8 + 38 + 64]);
    let mut record = (hello.len() as u32).to_le_bytes().to_vec();
    record.extend_from_slice(&hello);
    s.write_all(&record).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    // A version-3 node reads this as a frame of this version and names it.
    let version = p2pa_node::protocol::PROTOCOL_VERSION;
    assert_eq!(reply.len(), 4 + 106, "{reply:?}");
    assert_eq!(&reply[..5], &[106, 0, 0, 0, version]);
    // A version-4 or version-6 node's message 1 (its version byte, an
    // ephemeral key and the pad) gets the same notice.
    for old in [4u8, 6] {
        let mut s = TcpStream::connect(&node.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut hello = vec![old];
        hello.extend_from_slice(&[0x5a; 105]);
        let mut record = (hello.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&hello);
        s.write_all(&record).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert_eq!(
            &reply[..5],
            &[106, 0, 0, 0, version],
            "version {old}: {reply:?}"
        );
    }
}

/// The worker's count of AES-256-GCM sessions and of all sessions, from
/// `p2pa status --json`.
fn session_counts(dir: &Path) -> (u64, u64) {
    let out = p2pa(
        &["--data-dir", dir.to_str().unwrap(), "status", "--json"],
        T,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let n = |k: &str| v["stats"][k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    (n("sessions_aes_gcm"), n("handshakes_completed"))
}

/// Sessions are sealed with AES-256-GCM where both ends offer it (by
/// default, where the CPU has AES in hardware) and with ChaCha20-Poly1305
/// where either says `--cipher chacha`; a blob task goes through either way.
#[test]
fn the_session_cipher_is_aes_gcm_only_where_both_ends_offer_it() {
    let big = distinctive(200 * 1024);
    let hardware = p2pa_node::core::Config::aes_gcm_in_hardware();
    for (worker_cipher, requester_cipher) in
        [("auto", "auto"), ("chacha", "auto"), ("auto", "chacha")]
    {
        let dir = scratch("cipher");
        let input = dir.join("big.bin");
        std::fs::write(&input, &big).unwrap();
        let worker = NodeProc::start(
            unique_port(),
            &dir.join("worker"),
            &["--workers", "1", "--cipher", worker_cipher],
        );
        let args = [
            "--cipher",
            requester_cipher,
            "submit",
            "--peer",
            worker.addr.as_str(),
            "--json",
            "--kind",
            "echo",
            "--input-file",
            input.to_str().unwrap(),
        ];
        let out = p2pa_local(unique_port(), &args, T);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(v["status"], "completed", "{v}");
        let hex = v["output_hex"].as_str().expect("the output, in hex");
        assert_eq!(hex.len(), big.len() * 2, "the blob came back whole");
        let (aes, all) = session_counts(&dir.join("worker"));
        assert!(
            all >= 1,
            "{worker_cipher}/{requester_cipher}: a session was made"
        );
        let want_aes = worker_cipher == "auto" && requester_cipher == "auto" && hardware;
        assert_eq!(
            aes > 0,
            want_aes,
            "worker --cipher {worker_cipher}, requester --cipher {requester_cipher}: {aes} of {all} sessions AES-256-GCM"
        );
        if !hardware {
            eprintln!("note: no AES in hardware here; every session was ChaCha20-Poly1305");
        }
    }
}
