//! A node whose random source fails mid-run: it makes no handshake without a
//! fresh nonce (refuses inbound, closes outbound), says so, and goes on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use p2pa_node::core::{Config, Core, Entropy, EntropyError, Transmit};
use p2pa_node::protocol::Keypair;

struct Broken;

impl Entropy for Broken {
    fn fill(&mut self, _out: &mut [u8]) -> Result<(), EntropyError> {
        Err(EntropyError)
    }
}

#[test]
fn without_randomness_no_handshake_starts_and_nothing_panics() {
    let peer = SocketAddr::from((Ipv4Addr::new(10, 1, 1, 1), 7421));
    let cfg = Config {
        bootstrap: vec![peer],
        multicast: false,
        ..Config::default()
    };
    let now = Instant::now();
    let mut core = Core::new(Keypair::from_seed([5; 32]), cfg, Box::new(Broken), now);
    assert_eq!(core.handle_incoming(now, peer), None, "no nonce: refused");
    core.handle_timeout(now + Duration::from_millis(1));
    let dial = std::iter::from_fn(|| core.poll_transmit())
        .find_map(|t| match t {
            Transmit::Connect { conn, .. } => Some(conn),
            _ => None,
        })
        .expect("the bootstrap address is dialed");
    core.handle_connected(now, dial);
    let closed =
        std::iter::from_fn(|| core.poll_transmit()).any(|t| t == Transmit::Close { conn: dial });
    assert!(closed, "no Hello without a nonce: the connection is closed");
    assert_eq!(core.connection_count(), 0);
}
