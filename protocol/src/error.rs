//! Error types of the protocol crate: small, exact, with hand-written `Display`.
//! Each names what was received and what was expected.

use core::fmt;

use crate::message::MessageKind;

/// Why a frame was refused. Nothing in a refused frame is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than header plus signature.
    TooShort {
        /// Bytes received.
        len: usize,
        /// The least a frame has.
        min: usize,
    },
    /// Longer than the limit of its transport.
    TooLong {
        /// Bytes received.
        len: usize,
        /// The transport's limit.
        max: usize,
    },
    /// Byte 0 is not a version this crate speaks.
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
    },
    /// Byte 1 names no known message kind.
    UnknownKind {
        /// The kind byte received.
        got: u8,
    },
    /// The kind is not allowed in this context (e.g. a task offer over UDP).
    WrongContext {
        /// The kind received.
        kind: MessageKind,
    },
    /// The sender key is not a valid Ed25519 point.
    BadKey,
    /// The signature does not match key, context and bytes.
    BadSignature,
    /// The body is not a valid postcard encoding of the kind's message.
    MalformedBody {
        /// The frame's kind.
        kind: MessageKind,
    },
    /// The body decoded but bytes were left over.
    TrailingBytes {
        /// The frame's kind.
        kind: MessageKind,
        /// Bytes left over.
        extra: usize,
    },
    /// The body decoded, but not from its one canonical encoding.
    NonCanonical {
        /// The frame's kind.
        kind: MessageKind,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len, min } => {
                write!(
                    f,
                    "frame of {len} bytes is shorter than the minimum of {min}"
                )
            }
            Self::TooLong { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            Self::UnsupportedVersion { got } => write!(
                f,
                "frame has protocol version {got}, this node speaks version {}",
                crate::PROTOCOL_VERSION
            ),
            Self::UnknownKind { got } => write!(f, "frame has unknown message kind {got}"),
            Self::WrongContext { kind } => {
                write!(f, "a {kind} message is not allowed in this context")
            }
            Self::BadKey => f.write_str("frame's sender key is not a valid Ed25519 public key"),
            Self::BadSignature => f.write_str("frame's signature does not verify"),
            Self::MalformedBody { kind } => write!(f, "{kind} body is malformed"),
            Self::TrailingBytes { kind, extra } => {
                write!(f, "{kind} body has {extra} trailing bytes")
            }
            Self::NonCanonical { kind } => write!(f, "{kind} body is not canonically encoded"),
        }
    }
}

/// Why a length-prefixed stream cannot go on. The connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The prefix announces more than the limit; nothing was read or allocated.
    Oversized {
        /// The length announced.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The prefix announces less than any record has.
    Undersized {
        /// The length announced.
        len: usize,
        /// The least a frame has.
        min: usize,
    },
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Oversized { len, max } => {
                write!(f, "peer announced a frame of {len} bytes (limit {max})")
            }
            Self::Undersized { len, min } => {
                write!(f, "peer announced a frame of {len} bytes (minimum {min})")
            }
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer cannot hold the frame.
    BufferTooSmall {
        /// A size that would do better (the frame may need more).
        needed_at_least: usize,
        /// The buffer's size.
        have: usize,
    },
    /// The encoded frame would exceed the transport's limit.
    TooLong {
        /// The transport's limit.
        max: usize,
    },
    /// The session's send counter reached its end: open a new session.
    Exhausted,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall {
                needed_at_least,
                have,
            } => write!(
                f,
                "output buffer of {have} bytes is too small (needs at least {needed_at_least})"
            ),
            Self::TooLong { max } => write!(f, "encoded frame exceeds the limit of {max} bytes"),
            Self::Exhausted => f.write_str("session counter exhausted: open a new session"),
        }
    }
}

/// A sequence number that does not move strictly forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayError {
    /// The sequence number received.
    pub got: u64,
    /// The highest sequence number accepted before it.
    pub last: u64,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replayed or reordered frame: sequence {} is not above {}",
            self.got, self.last
        )
    }
}

#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for FrameError {}
#[cfg(feature = "std")]
impl std::error::Error for StreamError {}
#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}
#[cfg(feature = "std")]
impl std::error::Error for ReplayError {}
