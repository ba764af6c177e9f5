//! Every size limit of the wire format, each a named constant with its reason.
//! Relations between limits are checked at compile time below.

/// Wire format version carried in byte 0 of every frame.
pub const PROTOCOL_VERSION: u8 = 7;

/// Fixed frame header: version (1) + kind (1) + sender key (32) + sequence (8).
pub const HEADER_LEN: usize = 1 + 1 + 32 + 8;

/// An Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Bytes every frame carries besides its body.
pub const FRAME_OVERHEAD: usize = HEADER_LEN + SIGNATURE_LEN;

/// Largest signed frame on a stream (TCP). 64 KiB holds any control message and
/// a 32 KiB blob chunk with room to spare, yet bounds what one peer can make a
/// node buffer per connection. Larger payloads are chunked by the layer above.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Largest body a stream frame can carry.
pub const MAX_BODY_LEN: usize = MAX_FRAME_LEN - FRAME_OVERHEAD;

/// Stream records start with a little-endian `u32` length of what follows.
pub const LEN_PREFIX_LEN: usize = 4;

/// A Poly1305 tag.
pub const TAG_LEN: usize = 16;

/// What sealing adds to a frame on a stream: the flags byte and the tag.
pub const SEAL_OVERHEAD: usize = 1 + TAG_LEN;

/// Largest record on a stream: a sealed [`MAX_FRAME_LEN`] frame.
pub const MAX_RECORD_LEN: usize = MAX_FRAME_LEN + SEAL_OVERHEAD;

/// Shortest record a stream decoder accepts. Nothing since version 4 is
/// shorter: message 1 is [`HELLO_LEN`], message 3 at least 66 bytes, a
/// sealed frame at least a header and [`SEAL_OVERHEAD`].
pub const MIN_RECORD_LEN: usize = 48;

/// Handshake message 1 without a network key (106 bytes, the shortest
/// version-3 frame, so a version-3 node reads the version byte).
pub const HELLO_LEN: usize = 106;

/// Largest handshake message p2pa writes: message 2, an ephemeral key, the
/// static key and its tag, and the payload (node id, certificate, port,
/// capabilities: kinds, slots, models and their run times) and its tag.
pub const MAX_HANDSHAKE_LEN: usize = 32
    + 48
    + 1
    + 32
    + 64
    + 3
    + 3
    + 3
    + 1
    + 32 * MAX_BEACON_MODELS
    + 1
    + 5 * MAX_BEACON_MODELS
    + TAG_LEN;

/// Largest datagram (UDP) frame: fits the IPv6 minimum MTU (1280) minus the
/// IPv6 (40) and UDP (8) headers with margin, so beacons are never fragmented.
pub const MAX_DATAGRAM_LEN: usize = 1200;

/// Model hashes a beacon may advertise: 8 × 32 bytes keeps a beacon far below
/// [`MAX_DATAGRAM_LEN`].
pub const MAX_BEACON_MODELS: usize = 8;

/// Bytes of a blob (model) chunk. Half a frame, so a chunk plus its header
/// always fits one frame.
pub const BLOB_CHUNK_LEN: usize = 32 * 1024;

/// Longest human-readable detail in an `Error` message.
pub const MAX_ERROR_DETAIL: usize = 256;

/// Length of the ephemeral secrets (and keys) of the handshake.
pub const NONCE_LEN: usize = 32;

/// Worst-case postcard size of a `Beacon` body: port (3), query (1), kinds
/// (1), free slots (3), model count (1), models, run-time count (1), run
/// times (5 each at most).
pub const MAX_BEACON_BODY_LEN: usize =
    3 + 1 + 1 + 3 + 1 + 32 * MAX_BEACON_MODELS + 1 + 5 * MAX_BEACON_MODELS;

const _: () = assert!(MAX_RECORD_LEN <= u32::MAX as usize);
const _: () = assert!(MIN_RECORD_LEN <= HEADER_LEN + SEAL_OVERHEAD);
const _: () = assert!(MAX_HANDSHAKE_LEN <= 1024 - LEN_PREFIX_LEN);
const _: () = assert!(FRAME_OVERHEAD + MAX_BEACON_BODY_LEN <= MAX_DATAGRAM_LEN);
const _: () = assert!(MAX_DATAGRAM_LEN <= MAX_FRAME_LEN);
// A chunk plus its fields (hash 32, offset ≤ 10, total ≤ 10, length ≤ 3).
const _: () = assert!(BLOB_CHUNK_LEN + 64 <= MAX_BODY_LEN);
