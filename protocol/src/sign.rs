//! Keys, signing contexts and `Verified<T>`: the only way to read a signed message.
//! Signatures cover a domain-separation context plus the frame bytes exactly as sent.

use crate::error::{FrameError, ReplayError};
use crate::message::{Message, MessageKind, NodeId, Nonce, Signature64};

/// Context of frames sent as UDP datagrams (beacons).
pub const DATAGRAM_CONTEXT: &[u8] = b"p2pa/v1/datagram";
/// Context of every session frame, followed by the two ephemeral keys.
pub const SESSION_CONTEXT: &[u8] = b"p2pa/v1/session";
/// What a handshake certificate (`Identity`) signs, before the static
/// X25519 key.
pub const STATIC_KEY_CONTEXT: &[u8] = b"p2pa/v4/static-key";

// The datagram and session contexts differ at byte 8 (`d`, `s`), and the
// handshake's certificate context (`p2pa/v4/static-key`) at byte 6, so none
// is a prefix of another and no signed string of one purpose can be read as
// one of another. (Indexing a constant in a constant: an out-of-range index
// fails the build.)
#[allow(clippy::indexing_slicing)]
const _: () = {
    assert!(DATAGRAM_CONTEXT[8] == b'd');
    assert!(SESSION_CONTEXT[8] == b's');
    assert!(STATIC_KEY_CONTEXT[6] == b'4');
    assert!(SESSION_CONTEXT[6] == b'1');
};

/// The handshake's two ephemeral public keys (fresh random per session);
/// every session frame's signature is bound to them, so a receipt names its
/// session and a frame of one session is refused in every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId {
    /// The initiator's ephemeral key (message 1).
    pub initiator: Nonce,
    /// The responder's ephemeral key (message 2).
    pub responder: Nonce,
}

/// Where a frame travels; decides its signing context and allowed kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context<'a> {
    /// UDP: only `Beacon`.
    Datagram,
    /// TCP, in a session: everything but `Beacon`.
    Session(&'a SessionId),
}

impl Context<'_> {
    /// Whether `kind` may travel in this context.
    pub fn allows(self, kind: MessageKind) -> bool {
        match self {
            Self::Datagram => kind == MessageKind::Beacon,
            Self::Session(_) => kind != MessageKind::Beacon,
        }
    }

    /// The largest frame this context carries: [`MAX_DATAGRAM_LEN`] for a
    /// datagram, [`MAX_FRAME_LEN`] on a stream.
    ///
    /// [`MAX_DATAGRAM_LEN`]: crate::MAX_DATAGRAM_LEN
    /// [`MAX_FRAME_LEN`]: crate::MAX_FRAME_LEN
    pub const fn max_len(self) -> usize {
        match self {
            Self::Datagram => crate::limits::MAX_DATAGRAM_LEN,
            Self::Session(_) => crate::limits::MAX_FRAME_LEN,
        }
    }

    pub(crate) fn absorb_into(self, mut absorb: impl FnMut(&[u8])) {
        match self {
            Self::Datagram => absorb(DATAGRAM_CONTEXT),
            Self::Session(id) => {
                absorb(SESSION_CONTEXT);
                absorb(&id.initiator);
                absorb(&id.responder);
            }
        }
    }
}

/// Feeds the parts of a message to be signed, in order, to the sink it is given.
pub(crate) type Parts<'a> = dyn Fn(&mut dyn FnMut(&[u8])) + 'a;

/// A node's signing key.
#[derive(Clone)]
pub struct Keypair {
    inner: scheme::Secret,
}

impl core::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Keypair({})", self.node_id().short())
    }
}

impl Keypair {
    /// The key for a 32-byte seed (the only secret that needs storing).
    ///
    /// # Panics
    ///
    /// On the all-zero seed, which is no key. For a seed read from a file
    /// or the network, use [`try_from_seed`](Self::try_from_seed).
    #[allow(clippy::expect_used)] // documented; constant and random seeds only
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::try_from_seed(seed).expect("the all-zero seed is no key")
    }

    /// The key for a 32-byte seed; `None` for the all-zero seed.
    pub fn try_from_seed(seed: [u8; 32]) -> Option<Self> {
        scheme::Secret::from_seed(seed).map(|inner| Self { inner })
    }

    /// The seed this key was made from.
    pub fn seed(&self) -> [u8; 32] {
        self.inner.seed()
    }

    /// This key's public half: the node id.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.inner.public())
    }

    /// Signs the concatenation of `parts`. Deterministic: the nonce is derived
    /// from the secret seed and the message (as RFC 8032 does), so golden vectors
    /// are stable and no RNG is needed on a microcontroller.
    pub(crate) fn sign_parts(&self, parts: &Parts<'_>) -> [u8; 64] {
        self.inner.sign(parts)
    }
}

/// A check of one signature by one key, fed the signed bytes in pieces.
pub(crate) struct Verifier(scheme::Verifying);

impl Verifier {
    /// Starts checking `signature` by `signer`; refuses a key or signature
    /// that cannot be valid before reading any bytes.
    pub(crate) fn new(signer: &NodeId, signature: &[u8; 64]) -> Result<Self, FrameError> {
        scheme::Verifying::new(&signer.0, signature).map(Self)
    }

    /// Feeds the next signed bytes.
    pub(crate) fn absorb(&mut self, bytes: &[u8]) {
        self.0.absorb(bytes);
    }

    /// Whether the signature covers exactly the bytes fed.
    pub(crate) fn verify(self) -> Result<(), FrameError> {
        self.0.verify()
    }
}

/// Ed25519 (RFC 8032) through `ed25519-compact`: what every build runs.
#[cfg(not(all(fuzzing, feature = "fuzzing")))]
mod scheme {
    use ed25519_compact::{KeyPair, Noise, PublicKey, Seed, Signature, VerifyingState};

    use super::Parts;
    use crate::error::FrameError;

    #[derive(Clone)]
    pub(super) struct Secret(KeyPair);

    impl Secret {
        pub(super) fn from_seed(seed: [u8; 32]) -> Option<Self> {
            KeyPair::try_from_seed(Seed::new(seed)).ok().map(Self)
        }

        pub(super) fn seed(&self) -> [u8; 32] {
            *self.0.sk.seed()
        }

        pub(super) fn public(&self) -> [u8; 32] {
            *self.0.pk
        }

        pub(super) fn sign(&self, parts: &Parts<'_>) -> [u8; 64] {
            let mut h = ed25519_compact::sha512::Hash::new();
            h.update(self.0.sk.seed().as_ref());
            parts(&mut |p| h.update(p));
            let digest = h.finalize();
            let mut noise = [0u8; Noise::BYTES];
            noise.copy_from_slice(digest.get(..Noise::BYTES).unwrap_or(&[0u8; Noise::BYTES]));
            let mut st = self.0.sk.sign_incremental(Noise::new(noise));
            parts(&mut |p| st.absorb(p));
            *st.sign()
        }
    }

    pub(super) struct Verifying(VerifyingState);

    impl Verifying {
        pub(super) fn new(key: &[u8; 32], sig: &[u8; 64]) -> Result<Self, FrameError> {
            PublicKey::new(*key)
                .verify_incremental(&Signature::new(*sig))
                .map(Self)
                .map_err(map_error)
        }

        pub(super) fn absorb(&mut self, bytes: &[u8]) {
            self.0.absorb(bytes);
        }

        pub(super) fn verify(self) -> Result<(), FrameError> {
            self.0.verify().map_err(map_error)
        }
    }

    fn map_error(e: ed25519_compact::Error) -> FrameError {
        match e {
            ed25519_compact::Error::InvalidPublicKey | ed25519_compact::Error::WeakPublicKey => {
                FrameError::BadKey
            }
            _ => FrameError::BadSignature,
        }
    }
}

/// Only in builds with both `--cfg fuzzing` (which `cargo fuzz` sets) and the
/// `fuzzing` feature (which only `fuzz/` enables): a stand-in that is cheap and that the fuzzer can
/// forge, so that fuzzing spends its time in the parser and the node rather
/// than in curve arithmetic (the core driver runs 400 cases a second with
/// Ed25519), and so that mutated frames can pass the signature check and
/// reach everything behind it. Same shape: a 32-byte public key, a 64-byte
/// signature over the same bytes, the all-zero seed refused. Never secure.
#[cfg(all(fuzzing, feature = "fuzzing"))]
mod scheme {
    use super::Parts;
    use crate::error::FrameError;

    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

    fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
        h
    }

    fn signature(h: u64) -> [u8; 64] {
        let mut sig = [0u8; 64];
        if let Some(head) = sig.get_mut(..8) {
            head.copy_from_slice(&h.to_le_bytes());
        }
        sig
    }

    #[derive(Clone)]
    pub(super) struct Secret([u8; 32]);

    impl Secret {
        pub(super) fn from_seed(seed: [u8; 32]) -> Option<Self> {
            (seed != [0; 32]).then_some(Self(seed))
        }

        pub(super) fn seed(&self) -> [u8; 32] {
            self.0
        }

        pub(super) fn public(&self) -> [u8; 32] {
            self.0.map(|b| b ^ 0xa5)
        }

        pub(super) fn sign(&self, parts: &Parts<'_>) -> [u8; 64] {
            let mut h = fnv(FNV_OFFSET, &self.public());
            parts(&mut |p| h = fnv(h, p));
            signature(h)
        }
    }

    pub(super) struct Verifying {
        hash: u64,
        sig: [u8; 64],
    }

    impl Verifying {
        pub(super) fn new(key: &[u8; 32], sig: &[u8; 64]) -> Result<Self, FrameError> {
            Ok(Self {
                hash: fnv(FNV_OFFSET, key),
                sig: *sig,
            })
        }

        pub(super) fn absorb(&mut self, bytes: &[u8]) {
            self.hash = fnv(self.hash, bytes);
        }

        pub(super) fn verify(self) -> Result<(), FrameError> {
            // A u64 comparison first, which libFuzzer's comparison tracing
            // solves, so mutated frames can carry a valid stand-in signature.
            let (head, rest) = self.sig.split_at(8);
            let got = u64::from_le_bytes(head.try_into().map_err(|_| FrameError::BadSignature)?);
            if got == self.hash && rest.iter().all(|b| *b == 0) {
                Ok(())
            } else {
                Err(FrameError::BadSignature)
            }
        }
    }
}

/// A message whose signature has been checked. Only [`crate::verify_frame`]
/// makes one, so holding a `Verified` proves who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    sender: NodeId,
    seq: u64,
    message: T,
    signature: Signature64,
}

impl<T> Verified<T> {
    pub(crate) fn new(sender: NodeId, seq: u64, message: T, signature: Signature64) -> Self {
        Self {
            sender,
            seq,
            message,
            signature,
        }
    }

    /// The signature that was checked.
    pub fn signature(&self) -> &Signature64 {
        &self.signature
    }

    /// Who signed it.
    pub fn sender(&self) -> NodeId {
        self.sender
    }

    /// The sender's sequence number (check it with a [`ReplayGuard`]).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The message.
    pub fn message(&self) -> &T {
        &self.message
    }

    /// The message, giving up the proof.
    pub fn into_message(self) -> T {
        self.message
    }
}

impl Verified<Message<'_>> {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        self.message.kind()
    }
}

/// Refuses sequence numbers that do not strictly increase: one per session
/// direction, or one per beacon sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayGuard {
    last: Option<u64>,
}

impl ReplayGuard {
    /// A guard that has accepted nothing yet.
    pub const fn new() -> Self {
        Self { last: None }
    }

    /// Accepts `seq` if it is above every sequence accepted before.
    pub fn check(&mut self, seq: u64) -> Result<(), ReplayError> {
        match self.last {
            Some(last) if seq <= last => Err(ReplayError { got: seq, last }),
            _ => {
                self.last = Some(seq);
                Ok(())
            }
        }
    }

    /// The highest sequence accepted so far.
    pub const fn last(&self) -> Option<u64> {
        self.last
    }
}
