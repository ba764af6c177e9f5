//! # p2pa-protocol: the p2pa wire format, version 3
//!
//! `no_std`, allocation-free. Every frame is a fixed header, a postcard body
//! and an Ed25519 signature; this documentation is the specification.
//!
//! ## Signed frame
//!
//! | offset      | size | field                                            |
//! |-------------|------|--------------------------------------------------|
//! | 0           | 1    | version, `0x02`                                  |
//! | 1           | 1    | message kind ([`MessageKind`], 1..=14)           |
//! | 2           | 32   | sender's Ed25519 public key (the [`NodeId`])     |
//! | 34          | 8    | sequence number, `u64` little-endian             |
//! | 42          | n    | body: postcard encoding of the kind's message    |
//! | 42 + n      | 64   | Ed25519 signature                                |
//!
//! The signature covers `context ‖ bytes[0 .. 42 + n]`, the bytes exactly as
//! sent. The receiver verifies before it decodes and never re-encodes to verify.
//! Contexts ([`Context`]) separate purposes:
//!
//! - datagrams (beacons): `"p2pa/v1/datagram"`;
//! - the first two handshake frames (`Hello` and the responder's `HelloAck`):
//!   `"p2pa/v1/hello"`;
//! - every other stream frame: `"p2pa/v1/session" ‖ initiator nonce (32) ‖
//!   responder nonce (32)`, so a frame is bound to one session.
//!
//! A kind outside its context is refused (`WrongContext`): a `TaskOffer` in a
//! datagram, a `Beacon` on a stream. Bodies are decoded strictly: a body must
//! be postcard's one canonical encoding of its message with no trailing byte,
//! so every accepted frame re-encodes to exactly the bytes received.
//!
//! The signature nonce is derived from the secret seed and the signed bytes
//! (as RFC 8032 does), so signing is deterministic and needs no RNG.
//!
//! ## Transports
//!
//! - **Stream (TCP)**: `u32` little-endian length of the signed frame, then the
//!   frame. At most [`MAX_FRAME_LEN`] (64 KiB); the [`StreamDecoder`] rejects a
//!   larger prefix before storing a byte. Larger payloads (models, and task
//!   inputs and outputs that do not fit a frame: [`TaskInput::Blob`],
//!   [`TaskOutput::Blob`]) are content-addressed blobs, fetched by the side
//!   that needs them in [`BlobChunk`]s of at most [`BLOB_CHUNK_LEN`].
//! - **Datagram (UDP)**: one signed frame per datagram, no prefix, at most
//!   [`MAX_DATAGRAM_LEN`] (1 200) bytes.
//!
//! ## Messages (postcard bodies)
//!
//! Integers are postcard varints (LEB128, zig-zag for signed); `[u8; N]` are N
//! raw bytes; `&[u8]` and `&str` are a varint length then the bytes; `Option`
//! is `0x00` or `0x01` then the value; enums are a varint variant index then
//! the fields. Each message's struct ([`Hello`], [`TaskOffer`], …) lists its
//! fields in wire order.
//!
//! | kind | message       | context   | purpose                                   |
//! |------|---------------|-----------|-------------------------------------------|
//! | 1    | `Beacon`      | datagram  | presence, TCP port, capabilities          |
//! | 2    | `Hello`       | hello     | initiator's challenge                     |
//! | 3    | `HelloAck`    | hello or session | both nonces and the peer key, signed |
//! | 4    | `TaskOffer`   | session   | work to run                               |
//! | 5    | `TaskAccept`  | session   | queued                                    |
//! | 6    | `TaskReject`  | session   | refused, with a reason                    |
//! | 7    | `TaskResult`  | session   | status, output, hashes: the [`Receipt`]   |
//! | 8    | `Cancel`      | session   | stop a task                               |
//! | 9/10 | `Ping`/`Pong` | session   | keepalive and RTT                         |
//! | 11   | `Goodbye`     | session   | leaving, with a reason                    |
//! | 12   | `Error`       | session   | non-fatal error report                    |
//! | 13   | `BlobRequest` | session   | ask for a byte range of a blob            |
//! | 14   | `BlobChunk`   | session   | a byte range of a blob, resumable         |
//!
//! A new kind needs a version bump: a receiver refuses unknown kinds.
//!
//! Capabilities (in `Beacon`, `Hello`, `HelloAck`) start with one byte,
//! [`KindSet`]: bit *k* set when the node runs task kind *k* (0 echo, 1
//! hash, 2 sleep, 3 infer), bit 6 when its `infer` tasks run on
//! onnxruntime, bit 7 when they run on tract; bits 4 and 5 are reserved
//! (sent as 0, ignored). A node that predates the engine bits reads a kind's
//! bit alone, so they need no version bump.
//!
//! ## Receipts
//!
//! A `TaskResult` names the task, the status, the output (its bytes, or a
//! blob's hash and length), the requester, the model and the input's SHA-256.
//! Its frame's signature covers all of that, bound to the session's nonces,
//! so the signed frame *is* the worker's receipt: a requester keeps the
//! fields, the sequence number, the nonces and the signature ([`Receipt`],
//! built from the frame's [`Seal`] by [`Session::read_sealed`]), and anyone
//! re-encodes the frame's signed bytes from them (bodies are canonical) and
//! checks the signature with [`Receipt::verify`] — no key but the worker's
//! public one, no second signature. A task costs four signature operations:
//! the offer and the result, each signed once and verified once.
//!
//! Version 2 (p2pa 0.2) changed `TaskResult`'s output from bytes to
//! [`TaskOutput`] (inline bytes, or a blob the requester fetches), so outputs
//! of any size travel; version-1 frames are refused (`UnsupportedVersion`).
//!
//! ## Handshake
//!
//! ```text
//! A → B  Hello    { nonce: Na, listen_port, caps }            ctx hello,   seq 0
//! B → A  HelloAck { peer: A, Na, Nb, listen_port, caps }       ctx hello,   seq 0
//! A → B  HelloAck { peer: B, Na, Nb, listen_port, caps }       ctx session, seq 1
//! ```
//!
//! B proves liveness by signing A's fresh `Na`; A proves it by signing B's
//! fresh `Nb`. (B's `HelloAck` is in the hello context because A learns `Nb`
//! from it; its signed body binds both nonces and A's key all the same.) Both keys and both nonces are bound into every later frame, so a
//! recorded handshake or session frame fails in any other session. After that,
//! each direction's sequence numbers strictly increase ([`ReplayGuard`]).
//!
//! The [`handshake`] module implements it as a type-state machine
//! (`Initiator` → `Confirm` → [`Session`], `Responder` → `AwaitConfirm` →
//! [`Session`]) with no allocation: the caller brings nonces, received bytes
//! and an output buffer. The node, the benchmarks and the tests all use it.
//!
//! ## Joining from firmware
//!
//! `p2pa-tiny` (in `protocol/tiny`) builds on this crate alone: frames over
//! any blocking byte link, the handshake over it, and a worker that serves
//! `echo` and `hash` with signed receipts. With its default buffers it needs
//! 4 664 bytes of buffers plus 648 bytes of state (measured on a 64-bit host;
//! less on a 32-bit board), and nothing on the heap. A test runs it against
//! the real `p2pa submit`; CI builds it for `thumbv7em-none-eabihf`.
//!
//! ## Worked example
//!
//! Key from seed `[42u8; 32]` (node id `197f6b23e16c8532…368d61`), session
//! nonces `[1u8; 32]` (initiator) and `[2u8; 32]` (responder), sequence 1,
//! message `Ping { nonce: 7 }` (kind 9). The frame is 107 bytes
//! (`tests/golden/ping.frame`):
//!
//! ```text
//! 03                                        version 3
//! 09                                        kind 9 = Ping
//! 197f6b23e16c8532c6abc838facd5ea7          sender key (32 bytes)
//! 89be0c76b2920334039bfa8b3d368d61
//! 0100000000000000                          sequence 1, u64 little-endian
//! 07                                        body: postcard varint 7
//! a1b09cb821676a9e2f29dd2d5a665c57          Ed25519 signature (64 bytes) over
//! 5d670d542c4742b28b78b5f413719272          "p2pa/v1/session" ‖ [1u8; 32] ‖ [2u8; 32]
//! 16b39b5423b736585bce77ca56795297          ‖ the 43 bytes above
//! 411c5f838e010094a5014b8d4a9e450a
//! ```
//!
//! On a stream it is preceded by `6b 00 00 00` (107, `u32` little-endian).
//! Every message kind has such a vector in `tests/golden/`; a wire change
//! shows up there as a diff.
//!
//! ## Threat model
//!
//! Protected: forgery (every frame is signed, receipts with it); tampering (any
//! changed bit fails verification); cross-purpose replay (contexts); replay of
//! frames across sessions (session nonces in the signing context) and within a
//! session (strictly increasing sequence numbers); replayed beacons from a
//! known sender (per-sender counter); memory exhaustion by length prefixes
//! (checked before storing anything); malformed input (no input panics).
//!
//! Not protected: confidentiality (frames are signed, not encrypted: run over
//! a trusted LAN, or a VPN); who may join (that is the node's trust policy:
//! open or allowlist); a beacon replayed to a node that has never heard the
//! sender, or has forgotten it (it only causes a dial, which then fails the
//! handshake unless the real key holder answers); denial of service by flooding;
//! a worker that lies about the output of a task (use redundancy and compare
//! receipts); traffic analysis.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

mod codec;
mod error;
#[cfg(feature = "alloc")]
mod grow;
pub mod handshake;
mod kind;
mod limits;
mod message;
mod noise;
mod receipt;
pub mod session;
mod sign;

#[cfg(feature = "fuzzing")]
pub use codec::decode_body;
pub use codec::{
    encode_body, encode_datagram, encode_frame, encode_stream_frame, verify_datagram, verify_frame,
    FrameBuffer, StreamDecoder,
};
pub use error::{EncodeError, FrameError, ReplayError, StreamError};
#[cfg(feature = "alloc")]
pub use grow::GrowBuf;
pub use handshake::{
    version_notice, AwaitAck, AwaitConfirm, Confirm, HandshakeError, Identity, Initiator, Intro,
    Known, Responder, PROLOGUE, STATIC_KEY_CONTEXT,
};
pub use limits::{
    BLOB_CHUNK_LEN, FRAME_OVERHEAD, HEADER_LEN, HELLO_LEN, LEN_PREFIX_LEN, MAX_BEACON_BODY_LEN,
    MAX_BEACON_MODELS, MAX_BODY_LEN, MAX_DATAGRAM_LEN, MAX_ERROR_DETAIL, MAX_FRAME_LEN,
    MAX_HANDSHAKE_LEN, MAX_RECORD_LEN, MIN_RECORD_LEN, NONCE_LEN, PROTOCOL_VERSION, SEAL_OVERHEAD,
    SIGNATURE_LEN, TAG_LEN,
};
pub use message::{
    Beacon, BlobChunk, BlobRequest, Budget, Cancel, Capabilities, Error, ErrorCode, Goodbye,
    GoodbyeReason, Hash32, KindSet, Message, MessageKind, NodeId, Nonce, Ping, Pong, RejectReason,
    ShortId, TaskAccept, TaskId, TaskInput, TaskKind, TaskOffer, TaskOutput, TaskReject,
    TaskResult, TaskStatus,
};
pub use receipt::{Receipt, Seal, Signature64};
pub use session::{Session, SessionError, REKEY_FRAMES};
pub use sign::{
    Context, Keypair, ReplayGuard, SessionId, Verified, DATAGRAM_CONTEXT, SESSION_CONTEXT,
};
