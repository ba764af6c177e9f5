//! # p2pa-tiny: a p2pa peer on a microcontroller
//!
//! What a board needs to join a p2pa network over a byte stream (a TCP
//! socket of its network stack), written against `p2pa-protocol` alone:
//! `no_std`, no allocation, every buffer fixed in size by the caller.
//!
//! - [`FrameReader`]: length-prefixed frames from a blocking [`Link`];
//! - [`initiate`] / [`respond`]: the Noise XX handshake (the protocol's
//!   type-state machine) over a link, giving a [`Session`];
//! - [`Worker`]: serves `echo` and `hash` tasks on a session, with signed
//!   receipts, answers keepalive pings, refuses other kinds.
//!
//! RAM of a worker with the default sizes ([`Buffers`]: 2 KiB to receive,
//! 2 KiB to send, a 512-byte read chunk): 4 664 bytes of buffers and 761
//! bytes of state (the handshake step, the [`Session`], the identity, the worker)
//! on a 64-bit host, a little less on a 32-bit board; a test keeps these
//! bounds. Nothing else is allocated. The largest task it takes is a frame of
//! the receive size; the largest output fits the send size.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

mod link;
mod worker;

pub use link::{initiate, respond, FrameReader, Link, LinkError};
pub use p2pa_protocol::Session;
pub use worker::{Buffers, Served, Worker};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_fits_in_a_few_kib_of_ram() {
        let bufs = core::mem::size_of::<Buffers>();
        let state = core::mem::size_of::<p2pa_protocol::AwaitConfirm>()
            + core::mem::size_of::<Session>()
            + core::mem::size_of::<p2pa_protocol::Identity>()
            + core::mem::size_of::<Worker<'_>>();
        assert!(bufs <= 4 * 1024 + 640, "buffers {bufs}");
        // A build with the protocol's aes-gcm feature (a workspace build:
        // the node turns it on) holds the offer and the choice: 9 bytes.
        let aes = if p2pa_protocol::Transport::AesGcm.available() {
            9
        } else {
            0
        };
        assert!(state <= 761 + aes, "state {state}");
    }
}
