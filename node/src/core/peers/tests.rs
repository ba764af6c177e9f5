//! The peer table alone: beacons from many keys, no `Core`.

#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
use super::*;
use p2pa_protocol::TaskKind;
use std::net::Ipv4Addr;

fn beacon(peers: &mut Peers, now: Instant, id: NodeId, seq: u64, out: &mut Outbox) -> bool {
    let from = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 7), 7420));
    let b = Beacon {
        tcp_port: 7000,
        query: false,
        caps: Capabilities::default(),
    };
    peers.accept_beacon(now, from, id, seq, b, out).is_some()
}

fn id(n: u32) -> NodeId {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&n.to_le_bytes());
    NodeId(k)
}

#[test]
fn a_key_heard_again_outlives_a_flood_of_keys_heard_once() {
    let cfg = Config {
        max_peers_per_ip: 8,
        ..Config::default()
    };
    let t0 = Instant::now();
    let mut peers = Peers::new(&cfg, t0, &[9; 32]);
    let mut out = Outbox::default();
    let honest = id(u32::MAX);
    assert!(beacon(&mut peers, t0, honest, 1, &mut out));
    assert!(beacon(&mut peers, t0, honest, 2, &mut out));
    // Newer than the honest entry, each heard once, from its address.
    for n in 0..500 {
        let at = t0 + Duration::from_millis(u64::from(n) + 1);
        assert!(beacon(&mut peers, at, id(n), 1, &mut out));
    }
    assert!(peers.contains(&honest), "evicted by the flood");
    assert_eq!(peers.len(), 8);
    // Due together, it is dialed first: the budget may not cover them all.
    let mut dialed = Vec::new();
    let now = t0 + Duration::from_secs(2);
    peers.timers(now, id(0), false, &mut |addr, who| {
        dialed.push((addr, who));
        None
    });
    assert_eq!(dialed.first().and_then(|d| d.1), Some(honest), "{dialed:?}");
}

/// The node with the higher id waits 500 ms for the lower one to dial,
/// but a requester facing a worker only 50 ms (a worker may never dial it,
/// its dial budget spent on other newcomers).
#[test]
fn a_requester_with_the_higher_id_dials_a_worker_after_a_short_grace() {
    let t0 = Instant::now();
    let worker_caps = Capabilities {
        kinds: KindSet::default().with(TaskKind::Echo),
        ..Capabilities::default()
    };
    let from = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 7), 7420));
    let (me, them) = (id(2), id(1)); // ours is the higher id
    let dialed_by = |cfg: &Config, caps: Capabilities, after_ms: u64| {
        let mut peers = Peers::new(cfg, t0, &[9; 32]);
        let mut out = Outbox::default();
        let b = Beacon {
            tcp_port: 7000,
            query: false,
            caps,
        };
        assert!(peers
            .accept_beacon(t0, from, them, 1, b, &mut out)
            .is_some());
        let mut dialed = Vec::new();
        let at = t0 + Duration::from_millis(after_ms);
        peers.timers(at, me, false, &mut |addr, who| {
            dialed.push((addr, who));
            None
        });
        !dialed.is_empty()
    };
    let requester = Config {
        kinds: KindSet::default(),
        workers: 0,
        ..Config::default()
    };
    let worker = Config {
        kinds: KindSet::default().with(TaskKind::Echo),
        workers: 1,
        ..Config::default()
    };
    assert!(!dialed_by(&requester, worker_caps.clone(), 1));
    assert!(dialed_by(&requester, worker_caps.clone(), 60));
    assert!(
        !dialed_by(&worker, worker_caps.clone(), 60),
        "a worker waits its full grace"
    );
    assert!(dialed_by(&worker, worker_caps, 510));
    assert!(
        !dialed_by(&requester, Capabilities::default(), 60),
        "two requesters: the usual rule"
    );
}
