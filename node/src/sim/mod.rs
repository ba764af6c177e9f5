//! Simulation, for tests and fuzzing (feature `sim`; `fuzzing` implies it):
//! never built into a node.
//!
//! - [`Sim`] (`net.rs`): many cores on a simulated network with one fake
//!   clock; every transmit and outcome is folded into a digest
//!   ([`Sim::trace`]), so two runs that sent the same bytes at the same
//!   steps have the same digest (`tests/golden_simulation.rs` pins it).
//! - [`drive::Driver`]: one core fed an arbitrary sequence of datagrams,
//!   stream bytes, handshakes, session messages, timer ticks and job
//!   results read from fuzz input, checking what must always hold after
//!   every step (`fuzz/fuzz_targets/core_driver.rs` and a property test).
//!
//! Scenario helpers for the simulation tests are here too.

use std::time::Duration;

use crate::core::{Config, Core, TaskRequest};
use crate::protocol::{KindSet, TaskKind};

pub mod drive;
mod net;

pub use net::Sim;

/// Node 0 requests only (no kinds); the others run the default kinds plus
/// `extra`, with `workers` slots.
pub fn requester_at_zero(i: usize, workers: u16, extra: KindSet) -> Config {
    let kinds = Config::default().kinds;
    Config {
        workers,
        kinds: if i == 0 {
            KindSet::default()
        } else {
            KindSet(kinds.0 | extra.0)
        },
        ..Config::default()
    }
}

/// The short ids of a core's session peers, sorted.
pub fn peer_list(c: &Core) -> Vec<String> {
    let mut peers: Vec<String> = c
        .connected_peers()
        .iter()
        .map(|p| p.short().to_string())
        .collect();
    peers.sort();
    peers
}

/// An echo task of `k`'s four bytes with 30 s to run.
pub fn echo_task(k: u32) -> TaskRequest {
    TaskRequest {
        kind: TaskKind::Echo,
        input: k.to_le_bytes().to_vec().into(),
        model: None,
        timeout: Duration::from_secs(30),
        peer: None,
        needs: 0,
    }
}
