//! # p2pa-protocol: the p2pa wire format, version 7
//!
//! `no_std`, allocation-free. A connection starts with a Noise XX handshake
//! (`Noise_XX_25519_ChaChaPoly_SHA256`); after it, every frame is a fixed
//! header, a postcard body and an Ed25519 signature, sealed with
//! ChaCha20-Poly1305 (or AES-256-GCM, where both ends have AES in hardware
//! and offer it) under the session's keys. Beacons are signed frames in
//! the clear. This documentation is the specification.
//!
//! ## Signed frame
//!
//! | offset      | size | field                                            |
//! |-------------|------|--------------------------------------------------|
//! | 0           | 1    | version, `0x07`                                  |
//! | 1           | 1    | message kind ([`MessageKind`])                   |
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
//! - session frames: `"p2pa/v1/session" ‖ initiator's ephemeral key (32) ‖
//!   responder's ephemeral key (32)`, so a frame is bound to one session;
//! - the handshake's static-key certificate: `"p2pa/v4/static-key" ‖ the
//!   X25519 static key` ([`STATIC_KEY_CONTEXT`]).
//!
//! No context is a prefix of another. A kind outside its context is refused
//! (`WrongContext`): a `TaskOffer` in a datagram, a `Beacon` on a stream.
//! Bodies are decoded strictly: a body must be postcard's one canonical
//! encoding of its message with no trailing byte, so every accepted frame
//! re-encodes to exactly the bytes received.
//!
//! The signature nonce is derived from the secret seed and the signed bytes
//! (as RFC 8032 does), so signing is deterministic and needs no RNG.
//!
//! ## Transports
//!
//! - **Stream (TCP)**: a sequence of records, each a `u32` little-endian
//!   length and that many bytes: the three handshake messages, then sealed
//!   frames. At most [`MAX_RECORD_LEN`] (a [`MAX_FRAME_LEN`] frame, 64 KiB,
//!   sealed), at least [`MIN_RECORD_LEN`]; the [`StreamDecoder`] rejects
//!   another prefix before storing a byte. Larger payloads (models, and
//!   task inputs and outputs that do not fit a frame: [`TaskInput::Blob`],
//!   [`TaskOutput::Blob`]) are content-addressed blobs, fetched by the side
//!   that needs them in [`BlobChunk`]s of at most [`BLOB_CHUNK_LEN`].
//! - **Datagram (UDP)**: one signed frame per datagram, in the clear, no
//!   prefix, at most [`MAX_DATAGRAM_LEN`] (1 200) bytes. Nodes that share a
//!   network key follow it with a 16-byte tag ([`tag_datagram`]:
//!   HMAC-SHA256 under a key derived from the network key) and drop
//!   datagrams without a valid one before checking the signature.
//!
//! ## Handshake (Noise XX)
//!
//! ```text
//! 1  A → B  0x07 ‖ e ‖ offer ‖ 72 zero bytes      -> e          (psk first, with a network key)
//! 2  B → A  e ‖ enc(s) ‖ enc(payload B)            <- e, ee, s, es
//! 3  A → B  enc(s) ‖ enc(payload A or refusal)     -> s, se
//! ```
//!
//! The protocol name is `Noise_XX_25519_ChaChaPoly_SHA256`, or
//! `Noise_XXpsk0_25519_ChaChaPoly_SHA256` when the nodes share a network key
//! (then message 1's pad is encrypted and carries a 16-byte tag); the
//! prologue is [`PROLOGUE`] (`"p2pa/v7"`), so both sides must speak this
//! version and agree on the network key, or no key they derive matches.
//! Message 1 starts with the version byte and is padded to 106 bytes, the
//! shortest version-3 frame: a version-3 node reads its version and refuses
//! it by name, and a node of this version answers a version-3 `Hello` with a
//! [`version_notice`] for the same reason. There is no plaintext fallback.
//!
//! A payload is postcard of `Intro { node: NodeId, cert: [u8; 64],
//! listen_port: u16, caps: Capabilities, transport: u8 }` (variant 0), or in
//! message 3 `Refuse(GoodbyeReason)` (variant 1). `cert` is the Ed25519 signature by
//! `node` over `"p2pa/v4/static-key" ‖ s`, where `s` is the static key the
//! handshake just proved ([`Identity`] derives `s` from the identity's seed
//! and signs it once). Each side checks it, so the Noise key is bound to the
//! identity that signs every frame and receipt; a node may skip checking a
//! certificate it has checked before ([`Known`]). The initiator also checks
//! that `node` is the key it dialed for, when it knows one.
//!
//! The session's records are sealed with its [`Transport`]. Message 1's
//! `offer` byte is bit 0 set when the initiator can run AES-256-GCM (the
//! other bits zero, as are the 72 bytes after it; a responder refuses
//! anything else as malformed). The responder's payload names the choice
//! in `transport`: 1 (AES-256-GCM) if the offer had it and the responder
//! offers it too, else 0 (ChaChaPoly); the initiator refuses a choice it did
//! not offer, and repeats it in message 3, where the responder refuses
//! another. Offer and choices are in the handshake hash. A node offers
//! AES-256-GCM only where its CPU has AES and carry-less multiply in
//! hardware; the firmware never does.
//!
//! The session's id ([`SessionId`]) is the two ephemeral keys, fresh per
//! connection; session frames are signed in its context. Noise's `Split()`
//! gives the initiator's sending key first.
//!
//! The [`handshake`] module implements it as a type-state machine
//! (`Initiator` → `AwaitAck` → `Confirm` → [`Session`], `Responder` →
//! `AwaitConfirm` → [`Session`]) with no allocation: the caller brings
//! 32 random bytes per handshake, received bytes and an output buffer.
//! Key pairs (the static one and each ephemeral one) are made from 32 bytes
//! as an Ed25519 key is, then converted to X25519 (RFC 7748's map): the
//! secret is the clamped first half of SHA-512 of the bytes. The node, the
//! firmware, the benchmarks and the tests all use it; it is checked against
//! `snow`, the reference Rust implementation, in both roles.
//!
//! ## Sealed records
//!
//! ```text
//! u32 LE length ‖ AEAD(k, n, ad = "", flags ‖ signed frame) ‖ tag (16)
//! ```
//!
//! The AEAD is the session's [`Transport`]: ChaCha20-Poly1305, or
//! AES-256-GCM. `k` is the direction's key, `n` its implicit 64-bit counter
//! (Noise's nonce: 4 zero bytes and `n`, little-endian for ChaChaPoly,
//! big-endian for AESGCM). REKEY is Noise's for either. `flags` bit 0: the sender
//! switches to `REKEY(k)` after this record (every [`REKEY_FRAMES`] records,
//! and every 10 minutes in the node); the other bits are zero. A record that
//! does not open ends the session and leaves the counter unchanged; counters
//! stop before `2^64 - 1`. The blob transfer's frames, `BlobRequest` and
//! `BlobChunk`, carry no signature in a session (header and body only; a
//! signed one is still accepted): the blob's SHA-256 is in the signed offer
//! or result and is checked over the whole blob, a request claims nothing
//! but the wish for a byte range, and the AEAD authenticates both as the
//! peer's. Every other frame is signed, so a `TaskResult` stays a receipt
//! outside the session.
//!
//! ## Messages (postcard bodies)
//!
//! Integers are postcard varints (LEB128, zig-zag for signed); `[u8; N]` are N
//! raw bytes; `&[u8]` and `&str` are a varint length then the bytes; `Option`
//! is `0x00` or `0x01` then the value; enums are a varint variant index then
//! the fields. Each message's struct ([`TaskOffer`], …) lists its fields in
//! wire order.
//!
//! | kind | message       | context   | purpose                                   |
//! |------|---------------|-----------|-------------------------------------------|
//! | 1    | `Beacon`      | datagram  | presence, TCP port, capabilities          |
//! | 4    | `TaskOffer`   | session   | work to run                               |
//! | 5    | `TaskAccept`  | session   | queued                                    |
//! | 6    | `TaskReject`  | session   | refused, with a reason                    |
//! | 7    | `TaskResult`  | session   | status, output, hashes: the [`Receipt`]   |
//! | 8    | `Cancel`      | session   | stop a task                               |
//! | 9/10 | `Ping`/`Pong` | session   | keepalive and RTT                         |
//! | 11   | `Goodbye`     | session   | leaving, with a reason                    |
//! | 12   | `Error`       | session   | non-fatal error report                    |
//! | 13   | `BlobRequest` | session   | ask for a byte range (unsigned, sealed)   |
//! | 14   | `BlobChunk`   | session   | a byte range of a blob (unsigned, sealed) |
//!
//! Kinds 2 and 3 were version 3's `Hello` and `HelloAck`; they are refused as
//! unknown. A new kind needs a version bump: a receiver refuses unknown kinds.
//!
//! Capabilities (in `Beacon` and the handshake payloads) start with one byte,
//! [`KindSet`]: bit *k* set when the node runs task kind *k* (0 echo, 1
//! hash, 2 sleep, 3 infer), bit 6 when its `infer` tasks run on
//! onnxruntime, bit 7 when they run on tract, bit 4 while it takes no new
//! tasks (its owner paused it: requesters offer it none until the bit
//! clears); bit 5 is reserved (sent as 0, ignored). Then the free slots
//! (varint), the models the node holds (up to 8 SHA-256 hashes) and
//! `run_us`: the node's mean run time of `models[i]` over its last tasks, in
//! microseconds (varint; 0 or absent: not measured), so a requester knows a
//! fast machine from a slow one before it has sent it anything.
//!
//! ## Receipts
//!
//! A `TaskResult` names the task, the status (with a typed [`FailReason`]
//! when it failed), the output (its bytes, or a blob's hash and length), the
//! requester, the model and the input's SHA-256.
//! Its frame's signature covers all of that, bound to the session's id, so
//! the signed frame *is* the worker's receipt: a requester keeps the fields,
//! the sequence number, the session id and the signature ([`Receipt`], built
//! from the frame's [`Seal`] by [`Session::read_sealed`]), and anyone
//! re-encodes the frame's signed bytes from them (bodies are canonical) and
//! checks the signature with [`Receipt::verify`] — no key but the worker's
//! public one, no second signature. A task costs four signature operations:
//! the offer and the result, each signed once and verified once.
//!
//! ## Versions
//!
//! - 1: signed frames, inline outputs only.
//! - 2: `TaskResult`'s output became [`TaskOutput`] (inline, or a blob).
//! - 3: capabilities' engine bits; the signed `Hello`/`HelloAck` handshake.
//! - 4: the Noise XX handshake with certified static keys, sealed session
//!   records, unsigned blob chunks inside them, optional network key.
//! - 5: capabilities' `run_us`: the node's measured mean run time of each
//!   model it advertises.
//! - 6: `TaskResult`'s `reason` ([`FailReason`]): why a worker failed a
//!   task, typed, beside the text in its output. Receipts of versions 3 to
//!   5 still verify ([`Receipt::verify`]).
//!
//! Frames of another version are refused (`UnsupportedVersion`).
//!
//! ## Worked example
//!
//! Key from seed `[42u8; 32]` (node id `197f6b23e16c8532…368d61`), session
//! id `[1u8; 32]` (initiator) and `[2u8; 32]` (responder), sequence 1,
//! message `Ping { nonce: 7 }` (kind 9). The signed frame is 107 bytes
//! (`tests/golden/ping.frame`):
//!
//! ```text
//! 07                                        version 7
//! 09                                        kind 9 = Ping
//! 197f6b23e16c8532c6abc838facd5ea7          sender key (32 bytes)
//! 89be0c76b2920334039bfa8b3d368d61
//! 0100000000000000                          sequence 1, u64 little-endian
//! 07                                        body: postcard varint 7
//! 05138807a1f5733793d8c1b8bcc3306f          Ed25519 signature (64 bytes) over
//! b7ae89747c05bb3453581382e1de0ba2          "p2pa/v1/session" ‖ [1u8; 32] ‖ [2u8; 32]
//! d31fefcb2d1776ddb270e8b933f8d901          ‖ the 43 bytes above
//! 62fc0b7096562956b87622cf93979b06
//! ```
//!
//! Every message kind has such a vector in `tests/golden/`, and so has a
//! whole handshake with fixed keys and ephemeral seeds: A (seed 42,
//! ephemeral seed `[1u8; 32]`) dials B (seed 43, `[2u8; 32]`), then sends
//! `Ping { nonce: 7 }` as its first record. Message 1
//! (`tests/golden/handshake_1.bin`, 110 bytes with its prefix):
//!
//! ```text
//! 6a000000                                  length 106
//! 07                                        version 7
//! 1b1b58dd50ea14b60da17b790cd02754          A's ephemeral X25519 key
//! d970c9bab864ebb3c0f3016fe51d3f57
//! 00                                        offer: none (B's build has no AES-GCM)
//! 00 × 72                                   pad (mixed into the hash)
//! ```
//!
//! Message 2 is 235 bytes (B's ephemeral key, its static key and tag, its
//! 155-byte payload and tag), message 3 is 203; the sealed `Ping` record is
//! 128 bytes: `7c000000` (124), then 1 + 107 + 16 bytes of ciphertext and
//! tag (`tests/golden/sealed_ping.bin`). A wire change shows up there as a
//! diff.
//!
//! ## Threat model
//!
//! An eavesdropper on the LAN sees beacons (node id, TCP port, task kinds,
//! free slots, and the hashes of the models a node holds, unless it runs
//! with `--quiet-beacons`), that two addresses hold a session, and the size
//! and timing of records. It does not see inputs, outputs, models, task
//! kinds or results, and cannot tell which node ids hold a session beyond
//! what beacons and addresses give away (the static keys travel encrypted).
//! Recorded sessions stay secret if a node's identity key is stolen later
//! (the session keys come from ephemeral Diffie-Hellman).
//!
//! An active attacker on the path can drop, delay or cut connections (denial
//! of service), and can complete a handshake as itself: in open trust mode
//! anyone may join, so use `--trust allowlist` or a network key to decide
//! who. It cannot read or change a record (any changed bit ends the
//! session), replay one within or across sessions (counters, per-session
//! keys), impersonate a node (the certificate binds the static key to the
//! node id, and the initiator checks the id it dialed), downgrade to an older
//! version (the prologue), or forge a receipt (signatures). Beacons are
//! signed, so they cannot be forged either; a beacon replayed to a node that
//! has not heard its sender only makes it dial, and the handshake fails
//! unless the real key holder answers.
//!
//! Not protected: who may join in open mode (that is the node's trust
//! policy), denial of service by flooding, a worker that lies about the
//! output of a task (use redundancy and compare receipts), traffic analysis.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

mod codec;
mod error;
mod fail;
#[cfg(feature = "alloc")]
mod grow;
pub mod handshake;
mod kind;
mod limits;
mod message;
mod network;
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
    Beacon, BlobChunk, BlobRequest, Budget, Cancel, Capabilities, Error, ErrorCode, FailReason,
    Goodbye, GoodbyeReason, Hash32, KindSet, Message, MessageKind, NodeId, Nonce, Ping, Pong,
    RejectReason, ShortId, TaskAccept, TaskId, TaskInput, TaskKind, TaskOffer, TaskOutput,
    TaskReject, TaskResult, TaskStatus,
};
pub use network::{tag_datagram, untag_datagram, BEACON_TAG_LEN};
pub use noise::Transport;
pub use receipt::{Receipt, Seal, Signature64};
pub use session::{Session, SessionError, REKEY_FRAMES};
pub use sign::{
    Context, Keypair, ReplayGuard, SessionId, Verified, DATAGRAM_CONTEXT, SESSION_CONTEXT,
};
