//! The messages a frame body can carry, and their kind byte.
//! Bodies borrow from the received frame (`&[u8]`, `&str`): decoding allocates nothing.

use core::fmt;

pub use crate::fail::FailReason;

use heapless::Vec;
use serde::{Deserialize, Serialize};

pub use crate::kind::{KindSet, TaskKind};
use crate::limits::{MAX_BEACON_MODELS, NONCE_LEN};

/// A node's identity: its Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The raw 32 key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short human form: the first 4 bytes in hex (`6f3a09c1`).
    /// For display only; it does not identify a node securely.
    pub const fn short(&self) -> ShortId<'_> {
        ShortId(self)
    }
}

/// Full form: all 32 bytes as 64 lowercase hex digits.
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// The short form of a [`NodeId`], from [`NodeId::short`].
#[derive(Debug, Clone, Copy)]
pub struct ShortId<'a>(&'a NodeId);

impl fmt::Display for ShortId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, _) = self.0 .0.split_at(4);
        write_hex(f, head)
    }
}

pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// A 64-byte Ed25519 signature inside a message body (serde derives stop at 32).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature64(pub [u8; 64]);

impl fmt::Debug for Signature64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature64(")?;
        write_hex(f, self.0.get(..8).unwrap_or_default())?;
        f.write_str("…)")
    }
}

impl Serialize for Signature64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(64)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Signature64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Signature64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Signature64, A::Error> {
                let mut out = [0u8; 64];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature64(out))
            }
        }
        d.deserialize_tuple(64, V)
    }
}

/// A 32-byte content hash (models, inputs, outputs). The hash function is the
/// node's choice (SHA-256 in p2pa-node); the protocol only carries the bytes.
pub type Hash32 = [u8; 32];

/// A handshake nonce.
pub type Nonce = [u8; NONCE_LEN];

/// Task id, chosen by the requester; unique per requester.
pub type TaskId = u64;

/// The message kinds, as carried in byte 1 of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    /// Presence, TCP port and capabilities (datagram).
    Beacon = 1,
    // 2 and 3 were version 3's Hello and HelloAck: the handshake is Noise's
    // own messages now (`handshake`), and the bytes are refused as unknown.
    /// Work to run.
    TaskOffer = 4,
    /// The worker queued the task.
    TaskAccept = 5,
    /// The worker refused the task.
    TaskReject = 6,
    /// A task's status, output and receipt.
    TaskResult = 7,
    /// Stop a task.
    Cancel = 8,
    /// Keepalive request.
    Ping = 9,
    /// Keepalive answer.
    Pong = 10,
    /// Leaving, with a reason.
    Goodbye = 11,
    /// A non-fatal error report.
    Error = 12,
    /// Ask for a byte range of a blob.
    BlobRequest = 13,
    /// A byte range of a blob.
    BlobChunk = 14,
}

impl MessageKind {
    /// Every kind, in wire order.
    pub const ALL: [MessageKind; 12] = [
        Self::Beacon,
        Self::TaskOffer,
        Self::TaskAccept,
        Self::TaskReject,
        Self::TaskResult,
        Self::Cancel,
        Self::Ping,
        Self::Pong,
        Self::Goodbye,
        Self::Error,
        Self::BlobRequest,
        Self::BlobChunk,
    ];

    /// The kind for a wire byte, if any.
    pub fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| *k as u8 == b)
    }

    /// The kind's name as written in logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Beacon => "Beacon",
            Self::TaskOffer => "TaskOffer",
            Self::TaskAccept => "TaskAccept",
            Self::TaskReject => "TaskReject",
            Self::TaskResult => "TaskResult",
            Self::Cancel => "Cancel",
            Self::Ping => "Ping",
            Self::Pong => "Pong",
            Self::Goodbye => "Goodbye",
            Self::Error => "Error",
            Self::BlobRequest => "BlobRequest",
            Self::BlobChunk => "BlobChunk",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a node offers: advertised in beacons and the handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Task kinds it runs.
    pub kinds: KindSet,
    /// Worker slots free right now.
    pub free_slots: u16,
    /// Models it holds in its cache.
    pub models: Vec<Hash32, MAX_BEACON_MODELS>,
    /// Its mean run time of `models[i]`, in microseconds, over its last
    /// tasks (how fast this machine is at it); 0, or no entry `i`: not
    /// measured yet. Entries past `models` mean nothing.
    pub run_us: Vec<u32, MAX_BEACON_MODELS>,
}

impl Capabilities {
    /// The measured mean run time of `model`, where this node says one.
    pub fn run_time_us(&self, model: &Hash32) -> Option<u32> {
        let i = self.models.iter().position(|m| m == model)?;
        self.run_us.get(i).copied().filter(|us| *us > 0)
    }

    /// Whether the node takes a task of `kind` needing the engine `needs`
    /// now: it runs the kind on that engine and is not paused.
    pub const fn takes(&self, kind: TaskKind, needs: u8) -> bool {
        !self.kinds.has_flags(KindSet::PAUSED)
            && self.kinds.contains(kind)
            && self.kinds.has_flags(needs)
    }
}

/// Sent by UDP multicast: "I am here, dial me at this port".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    /// TCP port of the sender's listener (the address is the datagram's source).
    pub tcp_port: u16,
    /// Set by a starting node: receivers answer with a beacon at once.
    pub query: bool,
    /// What the sender offers.
    pub caps: Capabilities,
}

/// Where a task's input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskInput<'a> {
    /// The bytes themselves.
    Inline(#[serde(serialize_with = "as_bytes")] &'a [u8]),
    /// A blob the worker fetches from the requester with `BlobRequest`.
    Blob {
        /// Its content hash.
        hash: Hash32,
        /// Its size in bytes.
        len: u64,
    },
}

/// Where a task's output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOutput<'a> {
    /// The bytes themselves.
    Inline(#[serde(serialize_with = "as_bytes")] &'a [u8]),
    /// A blob the requester fetches from the worker with `BlobRequest` (an
    /// output too large for one frame). The receipt's output hash is `hash`.
    Blob {
        /// Its content hash.
        hash: Hash32,
        /// Its size in bytes.
        len: u64,
    },
}

/// Limits the requester sets on a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Largest output the requester accepts, in bytes.
    pub max_output_len: u32,
    /// Largest model the requester expects the worker to load, in bytes.
    pub max_model_len: u64,
}

/// "Please run this."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOffer<'a> {
    /// The requester's id for it.
    pub task_id: TaskId,
    /// What to run.
    pub kind: TaskKind,
    #[serde(borrow)]
    /// Its input.
    pub input: TaskInput<'a>,
    /// The model to run, by content hash (for `Infer`).
    pub model: Option<Hash32>,
    /// Milliseconds the worker has, counted from receipt.
    pub deadline_ms: u32,
    /// Limits on output and model size.
    pub budget: Budget,
}

/// "I queued it; it will wait" (for example while the model is fetched).
/// Optional: a worker that runs the task at once sends only the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAccept {
    /// The task.
    pub task_id: TaskId,
}

/// Why a worker refused a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// Its queue is full; try another worker.
    Busy,
    /// It does not run this kind.
    Unsupported,
    /// The task does not fit the budget (output or model too large).
    OverBudget,
    /// It is shutting down.
    ShuttingDown,
    /// A task with this id is already running on this session.
    Duplicate,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Busy => "busy",
            Self::Unsupported => "unsupported task kind",
            Self::OverBudget => {
                "over budget (the model, the output or the deadline is larger than this worker allows)"
            }
            Self::ShuttingDown => "shutting down",
            Self::Duplicate => "duplicate task id",
        })
    }
}

/// "I will not run this."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReject {
    /// The task.
    pub task_id: TaskId,
    /// Why.
    pub reason: RejectReason,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskStatus {
    /// It ran and produced its output.
    Completed,
    /// It ran and failed; the output says why.
    Failed,
    /// The deadline passed.
    Timeout,
    /// The requester withdrew it.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in wire order.
    pub const ALL: [TaskStatus; 4] = [
        Self::Completed,
        Self::Failed,
        Self::Timeout,
        Self::Cancelled,
    ];

    /// The status named `name` (as [`name`](Self::name) prints it), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// Lowercase name, as printed by the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of a task. Its signed frame is the worker's receipt: the
/// signature covers the task, the status, the output (or its hash), who
/// asked, the model and the input hash, bound to the session's id, so the
/// frame's fields and signature ([`Receipt`](crate::Receipt)) prove later, to anyone, what the
/// worker answered. No second signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult<'a> {
    /// The task.
    pub task_id: TaskId,
    /// How it ended.
    pub status: TaskStatus,
    /// Why it failed: `Some` with [`TaskStatus::Failed`], else `None`.
    pub reason: Option<FailReason>,
    /// The output (for `Failed`, a UTF-8 message saying why).
    #[serde(borrow)]
    pub output: TaskOutput<'a>,
    /// Who asked (the session's other end, named so a stored receipt says it).
    pub requester: NodeId,
    /// The model's hash, or all zeros when the task used none.
    pub model: Hash32,
    /// SHA-256 of the input the worker ran.
    pub input: Hash32,
}

/// "Stop this task; I no longer want it."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    /// The task.
    pub task_id: TaskId,
}

/// Keepalive probe; the peer answers with a `Pong` carrying the same nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Echoed in the Pong.
    pub nonce: u64,
}

/// Keepalive answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The Ping's nonce.
    pub nonce: u64,
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoodbyeReason {
    /// The sender is shutting down.
    Shutdown,
    /// Another connection between the same two nodes is kept instead.
    Duplicate,
    /// The sender does not trust this peer (allowlist).
    NotAllowed,
    /// The sender has no room for another peer.
    TooManyPeers,
    /// The peer broke the protocol.
    ProtocolViolation,
    /// The peer was silent too long.
    Timeout,
}

impl fmt::Display for GoodbyeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shutdown => "shutting down",
            Self::Duplicate => "duplicate connection",
            Self::NotAllowed => "not in the allowlist",
            Self::TooManyPeers => "too many peers",
            Self::ProtocolViolation => "protocol violation",
            Self::Timeout => "timed out",
        })
    }
}

/// "I am leaving."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    /// Why.
    pub reason: GoodbyeReason,
}

/// Error classes carried by an `Error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The peer sent something this node could not accept.
    BadRequest,
    /// Referenced task or blob is unknown.
    NotFound,
    /// Something failed on this side.
    Internal,
}

/// A non-fatal error report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error<'a> {
    /// What kind of error.
    pub code: ErrorCode,
    /// Human-readable detail, at most [`crate::limits::MAX_ERROR_DETAIL`] bytes.
    pub detail: &'a str,
}

/// Asks for a byte range of a content-addressed blob (a model, or a task's
/// input or output too large for one frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRequest {
    /// The blob's content hash.
    pub hash: Hash32,
    /// First byte wanted.
    pub offset: u64,
    /// At most [`crate::limits::BLOB_CHUNK_LEN`].
    pub max_len: u32,
}

/// One chunk of a blob. Resumable: the receiver asks from the offset it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobChunk<'a> {
    /// The blob's content hash.
    pub hash: Hash32,
    /// Where this chunk starts.
    pub offset: u64,
    /// Length of the whole blob.
    pub total_len: u64,
    /// The bytes.
    #[serde(serialize_with = "as_bytes")]
    pub data: &'a [u8],
}

/// A byte string written as one slice: postcard encodes bytes and a
/// sequence of `u8` alike (a varint length, then the bytes), so the wire is
/// unchanged, but serde's default for `[u8]` hands the serializer one
/// element at a time (for a 32 KiB chunk, 32 768 calls into the canonical
/// check or the frame buffer). Borrowed `&[u8]` already reads as bytes.
fn as_bytes<S: serde::Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

/// Any message, borrowing from the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// Kind 1: presence, TCP port and capabilities (datagram).
    Beacon(Beacon),
    /// Kind 4: work to run.
    TaskOffer(TaskOffer<'a>),
    /// Kind 5: the worker queued the task.
    TaskAccept(TaskAccept),
    /// Kind 6: the worker refused the task.
    TaskReject(TaskReject),
    /// Kind 7: a task's status, output and receipt.
    TaskResult(TaskResult<'a>),
    /// Kind 8: stop a task.
    Cancel(Cancel),
    /// Kind 9: keepalive request.
    Ping(Ping),
    /// Kind 10: keepalive answer.
    Pong(Pong),
    /// Kind 11: leaving, with a reason.
    Goodbye(Goodbye),
    /// Kind 12: a non-fatal error report.
    Error(Error<'a>),
    /// Kind 13: ask for a byte range of a blob.
    BlobRequest(BlobRequest),
    /// Kind 14: a byte range of a blob.
    BlobChunk(BlobChunk<'a>),
}

impl Message<'_> {
    /// The kind byte this message is sent with.
    pub const fn kind(&self) -> MessageKind {
        match self {
            Self::Beacon(_) => MessageKind::Beacon,
            Self::TaskOffer(_) => MessageKind::TaskOffer,
            Self::TaskAccept(_) => MessageKind::TaskAccept,
            Self::TaskReject(_) => MessageKind::TaskReject,
            Self::TaskResult(_) => MessageKind::TaskResult,
            Self::Cancel(_) => MessageKind::Cancel,
            Self::Ping(_) => MessageKind::Ping,
            Self::Pong(_) => MessageKind::Pong,
            Self::Goodbye(_) => MessageKind::Goodbye,
            Self::Error(_) => MessageKind::Error,
            Self::BlobRequest(_) => MessageKind::BlobRequest,
            Self::BlobChunk(_) => MessageKind::BlobChunk,
        }
    }
}
