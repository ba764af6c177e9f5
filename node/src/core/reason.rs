//! Every way a connection, a task, a receipt or a model fetch can end, as
//! typed reasons. Each maps to its wire code, its counter, its log bucket and
//! its text in one place; nothing else in the node compares error strings.

use std::fmt;

use p2pa_protocol::{
    FailReason, GoodbyeReason, HandshakeError, NodeId, RejectReason, SessionError, StreamError,
    TaskStatus,
};

use super::stats::{bump, BadInput, ConnStats};

/// Why the shell could not open, or lost, a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connect attempt timed out (its SYN lost or unanswered).
    TimedOut,
    /// The peer closed the connection.
    ClosedByPeer,
    /// The peer does not read: the send queue filled up.
    SendQueueFull,
    /// The peer does not read: a write waited for the socket longer than
    /// the write deadline.
    WriteStalled,
    /// The operating system reported an error.
    Io(std::io::ErrorKind),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut => f.write_str("connect timed out"),
            Self::ClosedByPeer => f.write_str("closed by peer"),
            Self::SendQueueFull => f.write_str("send queue full"),
            Self::WriteStalled => f.write_str("peer stopped reading (write deadline passed)"),
            Self::Io(kind) => write!(f, "{kind}"),
        }
    }
}

impl From<&std::io::Error> for ConnectError {
    fn from(e: &std::io::Error) -> Self {
        Self::Io(e.kind())
    }
}

/// Why a connection (handshaking or in session) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// This node said goodbye.
    Sent(GoodbyeReason),
    /// The peer said goodbye.
    Received(GoodbyeReason),
    /// The transport went away or could not be opened.
    Transport(ConnectError),
    /// The peer's length prefix was out of bounds.
    Stream(StreamError),
    /// The handshake failed.
    Handshake(HandshakeError),
    /// A session frame was refused.
    Session(SessionError),
    /// The handshake did not finish in time (slow-loris guard).
    HandshakeTimeout,
    /// A pending handshake made room for a newer one (its source, or the
    /// node, had too many pending).
    HandshakeEvicted,
    /// The random source failed: no nonce for the handshake.
    NoEntropy,
}

impl CloseReason {
    /// What this node tells the peer when it ends a session for this
    /// reason, the one mapping from endings to the wire's `Goodbye`
    /// (`None`: nothing to say, or no session to say it in): a goodbye it
    /// chose is sent as it is, a peer's framing or sealing fault is
    /// `ProtocolViolation`; what the peer said, the transport's end and
    /// the handshake's failures are not answered.
    pub fn goodbye(&self) -> Option<GoodbyeReason> {
        match self {
            Self::Sent(r) => Some(*r),
            Self::Stream(_) | Self::Session(_) => Some(GoodbyeReason::ProtocolViolation),
            Self::Received(_)
            | Self::Transport(_)
            | Self::Handshake(_)
            | Self::HandshakeTimeout
            | Self::HandshakeEvicted
            | Self::NoEntropy => None,
        }
    }

    /// The peer broke the protocol (logged at debug level, counted).
    pub fn is_violation(&self) -> bool {
        !matches!(
            self,
            Self::Sent(_)
                | Self::Received(_)
                | Self::Transport(_)
                | Self::Handshake(HandshakeError::SelfConnection | HandshakeError::Goodbye(_))
        )
    }

    /// Counts this ending in `stats` and names its log bucket, if it is bad
    /// input. `handshaking`: the connection had no session yet.
    pub(crate) fn count(&self, stats: &mut ConnStats, handshaking: bool) -> Option<BadInput> {
        match self {
            Self::Stream(_)
            | Self::Session(SessionError::Frame(_) | SessionError::WrongSender { .. }) => {
                bump(&mut stats.frames_rejected);
                if handshaking {
                    bump(&mut stats.handshakes_failed);
                }
                Some(BadInput::BadFrame)
            }
            Self::Session(SessionError::Open | SessionError::Flags { .. }) => {
                bump(&mut stats.frames_rejected);
                Some(BadInput::BadFrame)
            }
            Self::Session(SessionError::Replay(_)) => {
                bump(&mut stats.frames_replayed);
                Some(BadInput::ReplayedFrame)
            }
            Self::Handshake(
                HandshakeError::Malformed
                | HandshakeError::Decrypt
                | HandshakeError::WeakKey
                | HandshakeError::BadCertificate { .. }
                | HandshakeError::Version { .. }
                | HandshakeError::NetworkKey { .. },
            ) => {
                bump(&mut stats.frames_rejected);
                bump(&mut stats.handshakes_failed);
                Some(BadInput::HandshakeFailed)
            }
            Self::Handshake(HandshakeError::WrongPeer { .. } | HandshakeError::Encode(_)) => {
                bump(&mut stats.handshakes_failed);
                Some(BadInput::HandshakeFailed)
            }
            Self::HandshakeTimeout => {
                bump(&mut stats.handshakes_timed_out);
                Some(BadInput::HandshakeTimeout)
            }
            Self::HandshakeEvicted => {
                bump(&mut stats.handshakes_evicted);
                Some(BadInput::HandshakeEvicted)
            }
            _ => None,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sent(r) => write!(f, "goodbye ({r})"),
            Self::Received(r) => write!(f, "peer said goodbye ({r})"),
            Self::Transport(e) => e.fmt(f),
            Self::Stream(e) => e.fmt(f),
            Self::Handshake(e) => e.fmt(f),
            Self::Session(e) => write!(f, "invalid frame: {e}"),
            Self::HandshakeTimeout => f.write_str("handshake not finished in time"),
            Self::HandshakeEvicted => f.write_str("handshake dropped to make room for a newer one"),
            Self::NoEntropy => f.write_str("no random nonce for the handshake"),
        }
    }
}

/// Why a result's receipt was refused: the signed result names another
/// task than the one asked. (Its signature was checked with its frame.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptError {
    /// It names another requester than this node.
    WrongRequester,
    /// Its input hash differs from the task's input.
    InputDiffers,
    /// Its model differs from the task's.
    ModelDiffers,
}

impl fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongRequester => "result names another requester",
            Self::InputDiffers => "result's input hash differs from the task's input",
            Self::ModelDiffers => "result's model differs from the task's",
        })
    }
}

/// Why a task this node requested did not complete (or how one attempt failed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The application withdrew it.
    Cancelled,
    /// This node shut down first.
    ShutDown,
    /// Its input is larger than `max_tensor_bytes`.
    InputTooLarge {
        /// The input's size in bytes.
        len: usize,
        /// The limit.
        limit: u64,
    },
    /// The worker's output was announced larger than `max_tensor_bytes`.
    OutputTooLarge {
        /// The worker.
        worker: NodeId,
        /// The announced size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// Fetching the worker's output failed.
    OutputFetch {
        /// The worker.
        worker: NodeId,
        /// Why.
        why: FetchError,
    },
    /// The worker's session ended while it held the task.
    WorkerGone {
        /// The worker.
        worker: NodeId,
    },
    /// The worker refused it.
    Rejected {
        /// The worker.
        worker: NodeId,
        /// Its reason.
        reason: RejectReason,
    },
    /// The worker's result came with a receipt that does not check out.
    BadReceipt {
        /// The worker.
        worker: NodeId,
        /// What is wrong with it.
        why: ReceiptError,
    },
    /// The worker ran it and reported a failure.
    Failed {
        /// The worker.
        worker: NodeId,
        /// The status it reported.
        status: TaskStatus,
        /// Why, as the worker typed it (`None`: a worker of an older
        /// version).
        reason: Option<FailReason>,
        /// The worker's own words (its output, as text).
        message: String,
    },
    /// The deadline passed; `last` is the last problem met, if any.
    TimedOut {
        /// The last attempt's failure.
        last: Option<Box<TaskError>>,
        /// No peer with a session runs its kind.
        no_peer: bool,
    },
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => f.write_str("cancelled"),
            Self::ShutDown => f.write_str("node shut down"),
            Self::InputTooLarge { len, limit } => {
                write!(f, "input of {len} bytes exceeds the limit of {limit} bytes")
            }
            Self::OutputTooLarge { worker, len, limit } => write!(
                f,
                "output of {len} bytes exceeds the limit of {limit} bytes (worker {})",
                worker.short()
            ),
            Self::OutputFetch { worker, why } => {
                write!(
                    f,
                    "fetching the output failed: {why} (worker {})",
                    worker.short()
                )
            }
            Self::WorkerGone { worker } => {
                write!(f, "worker disconnected (worker {})", worker.short())
            }
            Self::Rejected { worker, reason } => {
                write!(f, "rejected by {}: {reason}", worker.short())
            }
            Self::BadReceipt { worker, why } => write!(f, "{why} (worker {})", worker.short()),
            Self::Failed {
                worker,
                message,
                reason: Some(reason),
                ..
            } => write!(f, "{message} (worker {}: {reason})", worker.short()),
            Self::Failed {
                worker, message, ..
            } => write!(f, "{message} (worker {})", worker.short()),
            Self::TimedOut {
                last: Some(last), ..
            } => write!(f, "timed out; last problem: {last}"),
            Self::TimedOut { no_peer: true, .. } => f.write_str("timed out: no peer to run it"),
            Self::TimedOut { .. } => f.write_str("timed out"),
        }
    }
}

impl TaskError {
    /// Whether another attempt cannot help: the worker said the task itself
    /// fails so (its input, or an output over the budget), on any worker.
    pub fn is_the_tasks(&self) -> bool {
        matches!(self, Self::Failed { reason: Some(r), .. } if r.is_the_tasks())
    }
}

impl std::error::Error for TaskError {}

/// Why a node gave up fetching a blob: a model or task input (its text
/// goes to the requesters of the tasks that waited for it, as their failure
/// output), or a task's output ([`TaskError::OutputFetch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// Larger than this node takes (model cache, or `max_tensor_bytes`).
    TooLarge { len: u64, limit: u64 },
    /// A chunk that is empty or runs past the announced length.
    BadChunk,
    /// Other fetches hold the bytes this one needs (`max_fetch_bytes`).
    TooMuchInFlight { len: u64, limit: u64 },
    /// The models fetched from one peer may hold half of `max_fetch_bytes`.
    TooMuchFromPeer { len: u64, limit: u64 },
    /// No chunk came for `fetch_stall`.
    Stalled { secs: u64 },
    /// A task input or output moved `moved` bytes in a window of `secs`
    /// seconds, under the floor of `floor` bytes a second.
    TooSlow {
        /// Bytes moved in the window.
        moved: u64,
        /// The window, in seconds.
        secs: u64,
        /// The floor, in bytes a second.
        floor: u64,
    },
    /// The chunks announce another length than the blob was declared with
    /// (by the offer or the result that named it, or by its first chunk).
    LengthMismatch {
        from: NodeId,
        declared: u64,
        announced: u64,
    },
    /// The bytes hash to another value than asked for.
    HashMismatch {
        from: NodeId,
        actual: [u8; 32],
        wanted: [u8; 32],
    },
}

impl FetchError {
    /// The peer that broke the protocol by sending what it did (its session
    /// is closed), if this failure proves one did: a length that contradicts
    /// the declared one. (A hash mismatch fails the task with its reason and
    /// keeps the session: the requester hears why.)
    pub(crate) fn offender(&self) -> Option<NodeId> {
        match self {
            Self::LengthMismatch { from, .. } => Some(*from),
            _ => None,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::hex::hex;
        match self {
            Self::TooLarge { len, limit } => write!(
                f,
                "blob of {len} bytes exceeds this node's limit of {limit} bytes"
            ),
            Self::BadChunk => f.write_str("peer sent a malformed blob chunk"),
            Self::TooMuchInFlight { len, limit } => write!(
                f,
                "blob of {len} bytes does not fit beside the blobs being fetched (limit {limit} bytes in flight)"
            ),
            Self::TooMuchFromPeer { len, limit } => write!(
                f,
                "model of {len} bytes does not fit beside the models this peer is sending (limit {limit} bytes per peer)"
            ),
            Self::Stalled { secs } => write!(f, "fetch stalled: no chunk for {secs} s"),
            Self::TooSlow { moved, secs, floor } => write!(
                f,
                "transfer too slow: {moved} bytes in {secs} s, under the floor of {floor} bytes/s"
            ),
            Self::LengthMismatch {
                from,
                declared,
                announced,
            } => write!(
                f,
                "{} sent a blob of {announced} bytes declared as {declared} bytes",
                from.short()
            ),
            Self::HashMismatch {
                from,
                actual,
                wanted,
            } => write!(
                f,
                "blob from {} hashes to {}, not {}; refused",
                from.short(),
                hex(actual),
                hex(wanted)
            ),
        }
    }
}
