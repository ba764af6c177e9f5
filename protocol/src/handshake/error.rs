//! Why a handshake step failed.

use core::fmt;

use crate::error::{EncodeError, FrameError};
use crate::limits::PROTOCOL_VERSION;
use crate::message::{GoodbyeReason, NodeId};
use crate::noise::NoiseError;

/// Why a handshake step failed. The connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer speaks another wire version.
    Version {
        /// The version byte it sent.
        got: u8,
    },
    /// A message has the wrong length or an undecodable payload.
    Malformed,
    /// A message did not authenticate: changed in transit, replayed, from a
    /// peer that lost its state, or under another network key.
    Decrypt,
    /// The peer sent a low-order public key.
    WeakKey,
    /// One side uses a network key and the other does not.
    NetworkKey {
        /// Whether this node has one.
        ours: bool,
    },
    /// The peer's certificate does not bind its static key to its node id.
    BadCertificate {
        /// The node id the certificate claims.
        claimed: NodeId,
    },
    /// The peer's key is not the one the initiator meant to reach.
    WrongPeer {
        /// The key the initiator dialed for.
        expected: NodeId,
        /// The key that answered.
        got: NodeId,
    },
    /// The peer is this node.
    SelfConnection,
    /// The peer refused the handshake.
    Goodbye(GoodbyeReason),
    /// Our own message could not be written into the output buffer.
    Encode(EncodeError),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ours = PROTOCOL_VERSION;
        match self {
            Self::Version { got } if *got < ours => write!(
                f,
                "peer speaks wire version {got}, this node {ours}: upgrade it"
            ),
            Self::Version { got } => write!(
                f,
                "peer speaks wire version {got}, this node {ours}: upgrade this node"
            ),
            Self::Malformed => f.write_str("malformed handshake message"),
            Self::Decrypt => f.write_str(
                "handshake message did not authenticate (tampered, replayed, or another network key)",
            ),
            Self::WeakKey => f.write_str("peer sent a low-order public key"),
            Self::NetworkKey { ours: true } => {
                f.write_str("peer has no network key and this node requires one")
            }
            Self::NetworkKey { ours: false } => {
                f.write_str("peer requires a network key and this node has none")
            }
            Self::BadCertificate { claimed } => write!(
                f,
                "peer's certificate does not bind its static key to node {}",
                claimed.short()
            ),
            Self::WrongPeer { expected, got } => write!(
                f,
                "expected node {} but {} answered",
                expected.short(),
                got.short()
            ),
            Self::SelfConnection => f.write_str("connected to ourselves"),
            Self::Goodbye(r) => write!(f, "peer refused the handshake: {r}"),
            Self::Encode(e) => write!(f, "could not write a handshake message: {e}"),
        }
    }
}

impl From<EncodeError> for HandshakeError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

impl From<NoiseError> for HandshakeError {
    fn from(e: NoiseError) -> Self {
        match e {
            NoiseError::WeakKey => Self::WeakKey,
            NoiseError::Buffer => Self::Encode(EncodeError::BufferTooSmall {
                needed_at_least: crate::limits::MAX_HANDSHAKE_LEN,
                have: 0,
            }),
            NoiseError::Decrypt | NoiseError::Exhausted => Self::Decrypt,
        }
    }
}

#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for HandshakeError {}

/// A frame error as a handshake error, for callers that read a version-3
/// frame where a handshake message was expected.
impl From<FrameError> for HandshakeError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::UnsupportedVersion { got } => Self::Version { got },
            _ => Self::Malformed,
        }
    }
}
