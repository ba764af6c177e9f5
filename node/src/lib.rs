//! p2pa-node: a peer-to-peer node that finds peers on the LAN, keeps signed,
//! authenticated sessions with them and exchanges tasks.
//!
//! - [`core`]: the deterministic, sans-IO state machine (everything decided here);
//! - [`io`]: the smol shell that moves bytes between sockets and the core;
//! - [`task`]: the executors that run tasks (echo, hash, sleep, infer);
//! - [`identity`]: the node's key on disk;
//! - [`hex`]: hex text of hashes and keys;
//! - [`models`]: the content-addressed model store;
//! - [`measure`]: percentiles for run summaries;
//! - `sim`: the network simulator and the fuzz driver (feature `sim`, and
//!   in this crate's tests).
#![forbid(unsafe_code)]

pub mod core;
pub mod hex;
pub mod identity;
pub mod io;
pub mod measure;
pub mod models;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod task;

pub use p2pa_protocol as protocol;
