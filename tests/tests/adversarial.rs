//! A node under attack on loopback: forged, replayed, garbage and wrong-version
//! beacons; an unknown key in allowlist mode; a replayed handshake; a handshake
//! that never finishes. Each is dropped or closed and counted, and the node
//! keeps serving an honest peer throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use p2pa_node::core::{Stats, TaskRequest, Trust};
use p2pa_node::io::{NodeHandle, NodeOptions};
use p2pa_node::protocol::*;
use p2pa_tests::raw::{beacon, beacon_sender};
use p2pa_tests::unique_port;

fn opts(port: u16) -> NodeOptions {
    let mut o = p2pa_tests::loopback_options(port);
    o.core.handshake_timeout = Duration::from_millis(400);
    o
}

fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

/// Polls the node's counters until `pred` holds (bounded).
fn wait_stats(h: &NodeHandle, pred: impl Fn(&Stats) -> bool) -> Stats {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let s = async_io::block_on(h.stats()).unwrap();
        if pred(&s) || Instant::now() > end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The honest peer still gets work done.
fn honest_echo(requester: &NodeHandle, text: &str) {
    let req = TaskRequest {
        kind: TaskKind::Echo,
        input: text.as_bytes().to_vec().into(),
        model: None,
        timeout: Duration::from_secs(10),
        peer: None,
        needs: 0,
    };
    let end = Instant::now() + Duration::from_secs(10);
    while async_io::block_on(requester.peers())
        .unwrap()
        .iter()
        .all(|p| p.state == p2pa_node::core::PeerState::Known)
    {
        assert!(Instant::now() < end, "honest peers never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = async_io::block_on(requester.submit(req)).unwrap();
    assert_eq!(o.status, TaskStatus::Completed, "{o:?}");
    assert_eq!(o.output, text.as_bytes());
}

#[test]
fn bad_beacons_are_dropped_and_counted_while_honest_peers_are_served() {
    let port = unique_port();
    let target = NodeHandle::start(key(1), opts(port)).unwrap();
    let mut ropts = opts(port);
    ropts.core.kinds = KindSet::default();
    let honest = NodeHandle::start(key(2), ropts).unwrap();
    let (udp, group) = beacon_sender(port);

    // Forged: a valid beacon with one body bit flipped.
    let mut forged = beacon(&key(9), 1, 1, false);
    forged[HEADER_LEN] ^= 0x01;
    udp.send_to(&forged, group).unwrap();
    // Garbage.
    udp.send_to(b"\x00\x01garbage that is no frame at all", group)
        .unwrap();
    // Wrong version.
    let mut v2 = beacon(&key(9), 1, 1, false);
    v2[0] = PROTOCOL_VERSION + 1;
    udp.send_to(&v2, group).unwrap();
    // Replayed: the same valid beacon twice.
    let good = beacon(&key(9), 7, 1, false);
    udp.send_to(&good, group).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    udp.send_to(&good, group).unwrap();

    let s = wait_stats(&target, |s| {
        s.beacons_forged >= 1
            && s.beacons_malformed >= 1
            && s.beacons_wrong_version >= 1
            && s.beacons_replayed >= 1
    });
    assert!(s.beacons_forged >= 1, "{s:?}");
    assert!(s.beacons_malformed >= 1, "{s:?}");
    assert!(s.beacons_wrong_version >= 1, "{s:?}");
    assert!(s.beacons_replayed >= 1, "{s:?}");
    // The forged sender never made it into the peer table; the replayed one once.
    let peers = async_io::block_on(target.peers()).unwrap();
    assert_eq!(peers.iter().filter(|p| p.id == key(9).node_id()).count(), 1);
    honest_echo(&honest, "still serving");
    async_io::block_on(honest.shutdown());
    async_io::block_on(target.shutdown());
}

/// A raw TCP client speaking the handshake by hand.
struct RawClient {
    s: TcpStream,
    dec: StreamDecoder<Vec<u8>>,
    pending: Vec<u8>,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Self {
            s,
            dec: StreamDecoder::new(vec![0u8; MAX_RECORD_LEN]),
            pending: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    /// Next frame's bytes, or None when the node closed the connection.
    fn recv(&mut self) -> Option<Vec<u8>> {
        loop {
            let mut input = &self.pending[..];
            let got = self.dec.decode(&mut input).ok()?.map(|f| f.to_vec());
            let used = self.pending.len() - input.len();
            self.pending.drain(..used);
            if got.is_some() {
                return got;
            }
            let mut buf = [0u8; 4096];
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// Runs the initiator side with the protocol's handshake machine; returns
/// the client, message 1 and message 3 as sent, and the Goodbye reason when
/// the node refused.
fn handshake(
    addr: SocketAddr,
    k: &Keypair,
    target: NodeId,
) -> (RawClient, Vec<u8>, Vec<u8>, Option<GoodbyeReason>) {
    let mut c = RawClient::connect(addr);
    let intro = Intro {
        listen_port: 1,
        caps: Capabilities::default(),
    };
    let id = Identity::new(k.clone());
    let mut buf = vec![0u8; MAX_RECORD_LEN + LEN_PREFIX_LEN];
    let (wait, n) = Initiator::new([7u8; 32], Some(target))
        .write_hello(&id, &mut buf)
        .unwrap();
    let h = buf[..n].to_vec();
    c.send(&h);
    let mut ack = c.recv().expect("message 2");
    let confirm = wait
        .read_ack(&id, &mut ack, &|_, _| false)
        .expect("a valid message 2");
    assert_eq!(confirm.peer(), target);
    let (mut session, _, n) = confirm.confirm(&id, &intro, &mut buf).unwrap();
    let confirm = buf[..n].to_vec();
    c.send(&confirm);
    // A refusal arrives right after message 3, sealed in the session.
    c.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let goodbye = c.recv().and_then(|mut f| match session.read(&mut f).ok()? {
        Message::Goodbye(g) => Some(g.reason),
        _ => None,
    });
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (c, h, confirm, goodbye)
}

#[test]
fn unknown_key_is_refused_in_allowlist_mode_and_allowed_peers_are_served() {
    let port = unique_port();
    let mut o = opts(port);
    o.core.trust = Trust::Allowlist(vec![key(2).node_id()]);
    let target = NodeHandle::start(key(1), o).unwrap();
    let mut ropts = opts(port);
    ropts.core.kinds = KindSet::default();
    let allowed = NodeHandle::start(key(2), ropts).unwrap();

    let (_c, _, _, goodbye) = handshake(target.local_addr(), &key(66), target.id());
    assert_eq!(goodbye, Some(GoodbyeReason::NotAllowed));
    let s = wait_stats(&target, |s| s.peers_refused >= 1);
    assert!(s.peers_refused >= 1, "{s:?}");
    honest_echo(&allowed, "allowed");
    async_io::block_on(allowed.shutdown());
    async_io::block_on(target.shutdown());
}

#[test]
fn replayed_handshake_and_stalled_handshake_are_closed_and_counted() {
    let port = unique_port();
    let mut o = opts(port);
    o.multicast = None; // only the raw clients and the honest peer below
    let target = NodeHandle::start(key(1), o).unwrap();
    let attacker = key(5);

    // A real handshake, recorded.
    let (first, h, confirm, goodbye) = handshake(target.local_addr(), &attacker, target.id());
    assert_eq!(goodbye, None);
    let s = wait_stats(&target, |s| s.handshakes_completed >= 1);
    assert!(s.handshakes_completed >= 1, "{s:?}");
    first.s.shutdown(std::net::Shutdown::Both).ok();

    // Replay both recorded messages on a new connection: the node's fresh
    // ephemeral key makes the old message 3 undecryptable, so the connection
    // is closed.
    let mut replay = RawClient::connect(target.local_addr());
    replay.send(&h);
    let _ack = replay
        .recv()
        .expect("the node answers the replayed message 1 with a fresh key");
    replay.send(&confirm);
    assert!(
        replay.recv().is_none(),
        "connection closed after the replayed confirm"
    );
    let s = wait_stats(&target, |s| s.handshakes_failed >= 1);
    assert!(s.handshakes_failed >= 1, "{s:?}");

    // A connection that never says anything is dropped at the handshake timeout.
    let mut stalled = RawClient::connect(target.local_addr());
    let t = Instant::now();
    assert!(stalled.recv().is_none());
    assert!(t.elapsed() < Duration::from_secs(4));
    let s = wait_stats(&target, |s| s.handshakes_timed_out >= 1);
    assert!(s.handshakes_timed_out >= 1, "{s:?}");

    // An oversized length prefix closes the connection at once.
    let mut big = RawClient::connect(target.local_addr());
    big.send(&u32::MAX.to_le_bytes());
    assert!(big.recv().is_none());
    let s = wait_stats(&target, |s| s.frames_rejected >= 2);
    assert!(s.frames_rejected >= 2, "{s:?}");

    // Through all of it an honest peer still connects and gets work done.
    let mut ropts = opts(port);
    ropts.multicast = None;
    ropts.core.kinds = KindSet::default();
    ropts.core.bootstrap = vec![target.local_addr()];
    let honest = NodeHandle::start(key(2), ropts).unwrap();
    honest_echo(&honest, "honest");
    async_io::block_on(honest.shutdown());
    async_io::block_on(target.shutdown());
}

#[test]
fn each_kind_of_bad_input_is_logged_once() {
    let port = unique_port();
    let dir = p2pa_tests::scratch("logonce");
    let log = dir.join("stderr.log");
    let mut child = std::process::Command::new(p2pa_tests::bin())
        .args(p2pa_tests::local_net(port))
        .arg("--data-dir")
        .arg(&dir)
        .args(["node", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .env_remove("P2PA_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Wait until it listens (its first stdout line).
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.contains("listening"), "{first}");
    let (udp, group) = beacon_sender(port);
    let mut forged = beacon(&key(9), 1, 1, false);
    forged[HEADER_LEN] ^= 0x01;
    for _ in 0..5 {
        udp.send_to(&forged, group).unwrap();
        udp.send_to(b"garbage", group).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let forged_lines = text
        .lines()
        .filter(|l| l.contains("signature does not verify"))
        .count();
    let garbage_lines = text
        .lines()
        .filter(|l| l.contains("dropped datagram") && !l.contains("signature"))
        .count();
    assert_eq!(forged_lines, 1, "forged beacons logged once:\n{text}");
    assert_eq!(garbage_lines, 1, "garbage logged once:\n{text}");
    assert!(text.contains("further such events are logged at debug level"));
}
