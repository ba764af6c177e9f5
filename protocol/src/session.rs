//! A session after the handshake: signed frames, sealed.
//!
//! Every frame is first signed as before (so a `TaskResult` frame stays a
//! receipt anyone can check offline), then sealed with the session's AEAD
//! (ChaCha20-Poly1305, or AES-256-GCM where both ends offered it: see
//! [`Transport`]) under this direction's session key and its implicit 64-bit
//! counter:
//!
//! ```text
//! u32 LE length ‖ AEAD(key, counter, ad = "", flags ‖ signed frame) ‖ tag (16)
//! ```
//!
//! `flags` bit 0 says the sender rekeys after this record (so both sides
//! switch at the same record); the other bits are zero. The sender rekeys
//! every [`REKEY_FRAMES`] records, and sooner when its owner asks
//! ([`Session::rekey_soon`], the node does it every 10 minutes). A record that
//! fails to open ends the session and leaves the counter where it was.
//!
//! `BlobRequest` and `BlobChunk` frames in a session carry no signature: the
//! blob's SHA-256 is in a signed offer or result and is checked over the
//! whole blob, a request claims nothing but a byte range, and the AEAD
//! authenticates both as the session peer's (a signed one is still
//! accepted). Everything else is signed and verified as in the frame format.

use core::fmt;

use crate::codec::{encode_frame_for, verify_session_frame};
use crate::error::{EncodeError, FrameError, ReplayError};
use crate::limits::{LEN_PREFIX_LEN, MAX_RECORD_LEN};
use crate::message::{Goodbye, GoodbyeReason, Message, NodeId};
use crate::noise::{Cipher, NoiseError, Transport, TAG_LEN};
use crate::receipt::Seal;
use crate::sign::{Context, Keypair, ReplayGuard, SessionId};

/// Records a sender seals under one key before it rekeys (2^20).
pub const REKEY_FRAMES: u64 = 1 << 20;

/// `flags` bit 0: the sender rekeys after this record.
const REKEY_FLAG: u8 = 1;

/// Why a session record was refused. The connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The record did not authenticate under the session key.
    Open,
    /// The record opened but its flags byte has unknown bits.
    Flags {
        /// The flags received.
        got: u8,
    },
    /// The frame inside failed verification in this session's context.
    Frame(FrameError),
    /// The frame's sequence number did not grow.
    Replay(ReplayError),
    /// Sent in the session, but signed by another key than the peer's.
    WrongSender {
        /// The key that signed it.
        got: NodeId,
    },
    /// The receive counter reached its end: the session must be renewed.
    Exhausted,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("sealed record did not authenticate"),
            Self::Flags { got } => write!(f, "sealed record has unknown flags {got:#04x}"),
            Self::Frame(e) => e.fmt(f),
            Self::Replay(e) => e.fmt(f),
            Self::WrongSender { got } => {
                write!(f, "session frame signed by {}, not the peer", got.short())
            }
            Self::Exhausted => f.write_str("session counter exhausted"),
        }
    }
}

#[cfg(any(test, feature = "std"))]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for SessionError {}

/// An authenticated, encrypted session: both keys proven, every frame bound
/// to both ephemeral keys and sealed, counters strictly growing each way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    id: SessionId,
    peer: NodeId,
    peer_static: [u8; 32],
    initiator: bool,
    send_seq: u64,
    recv: ReplayGuard,
    tx: Cipher,
    rx: Cipher,
    /// The AEAD both ciphers run.
    transport: Transport,
    /// Records sealed since the last rekey.
    since_rekey: u64,
    rekey_next: bool,
}

impl Session {
    /// `peer`: its node id and the static key its certificate binds;
    /// `ciphers`: this side's sending and receiving keys, and their AEAD.
    pub(crate) fn new(
        id: SessionId,
        peer: (NodeId, [u8; 32]),
        initiator: bool,
        (tx, rx, transport): (Cipher, Cipher, Transport),
    ) -> Self {
        Self {
            id,
            peer: peer.0,
            peer_static: peer.1,
            initiator,
            send_seq: 0,
            recv: ReplayGuard::new(),
            tx,
            rx,
            transport,
            since_rekey: 0,
            rekey_next: false,
        }
    }

    /// The session's id (both ephemeral keys; its signing context).
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The peer's proven key.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The peer's static X25519 key, which its certificate binds to its id.
    pub fn peer_static(&self) -> &[u8; 32] {
        &self.peer_static
    }

    /// Whether this side opened the connection.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// The AEAD this session's records are sealed with.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Records sealed and opened so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.tx.count(), self.rx.count())
    }

    /// The next record this side writes carries the rekey flag.
    pub fn rekey_soon(&mut self) {
        self.rekey_next = true;
    }

    /// Signs `message` as the next frame of this session, seals it and
    /// writes the record, length-prefixed, into `out`; returns the bytes
    /// written. `out` needs room for a frame and [`SEAL_OVERHEAD`] more.
    ///
    /// [`SEAL_OVERHEAD`]: crate::SEAL_OVERHEAD
    pub fn write(
        &mut self,
        key: &Keypair,
        message: &Message<'_>,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let have = out.len();
        let small = EncodeError::BufferTooSmall {
            needed_at_least: LEN_PREFIX_LEN.saturating_add(crate::SEAL_OVERHEAD),
            have,
        };
        let (prefix, rest) = out.split_at_mut_checked(LEN_PREFIX_LEN).ok_or(small)?;
        let room = rest.len().saturating_sub(TAG_LEN);
        let (flags, frame) = rest
            .get_mut(..room)
            .and_then(|r| r.split_first_mut())
            .ok_or(small)?;
        let ctx = Context::Session(&self.id);
        let n = encode_frame_for(key, ctx, self.send_seq, message, frame)?;
        let since = self.since_rekey.saturating_add(1);
        let rekey = self.rekey_next || since >= REKEY_FRAMES;
        *flags = if rekey { REKEY_FLAG } else { 0 };
        let plain_len = n.saturating_add(1);
        let record = rest
            .get_mut(..plain_len.saturating_add(TAG_LEN))
            .ok_or(small)?;
        let (plain, tag_out) = record.split_at_mut(plain_len);
        let tag = self
            .tx
            .seal(self.transport, &[], plain)
            .map_err(|e| match e {
                NoiseError::Exhausted => EncodeError::Exhausted,
                _ => small,
            })?;
        tag_out.copy_from_slice(&tag);
        let len = plain_len.saturating_add(TAG_LEN);
        let len32 = u32::try_from(len).map_err(|_| EncodeError::TooLong {
            max: MAX_RECORD_LEN,
        })?;
        prefix.copy_from_slice(&len32.to_le_bytes());
        self.send_seq = self.send_seq.saturating_add(1);
        if rekey {
            self.tx.rekey(self.transport);
            self.since_rekey = 0;
            self.rekey_next = false;
        } else {
            self.since_rekey = since;
        }
        Ok(len.saturating_add(LEN_PREFIX_LEN))
    }

    /// Ends the session with a `Goodbye` written into `out`.
    pub fn goodbye(
        mut self,
        key: &Keypair,
        reason: GoodbyeReason,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        self.write(key, &Message::Goodbye(Goodbye { reason }), out)
    }

    /// Opens one received record (without its length prefix; in place),
    /// verifies the frame inside and returns its message. Any error means
    /// the connection must be closed.
    pub fn read<'f>(&mut self, record: &'f mut [u8]) -> Result<Message<'f>, SessionError> {
        self.read_sealed(record).map(|(message, _)| message)
    }

    /// [`read`](Self::read), with the frame's [`Seal`]: what a receipt keeps
    /// to check the frame's signature later (an unsigned `BlobChunk` has an
    /// all-zero signature there).
    pub fn read_sealed<'f>(
        &mut self,
        record: &'f mut [u8],
    ) -> Result<(Message<'f>, Seal), SessionError> {
        let len = record
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(SessionError::Open)?;
        let (plain, tag) = record.split_at_mut(len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| SessionError::Open)?;
        self.rx
            .open(self.transport, &[], plain, &tag)
            .map_err(|e| match e {
                NoiseError::Exhausted => SessionError::Exhausted,
                _ => SessionError::Open,
            })?;
        let (&flags, frame) = plain.split_first().ok_or(SessionError::Open)?;
        if flags & !REKEY_FLAG != 0 {
            return Err(SessionError::Flags { got: flags });
        }
        if flags & REKEY_FLAG != 0 {
            self.rx.rekey(self.transport);
        }
        let v =
            verify_session_frame(frame, Context::Session(&self.id)).map_err(SessionError::Frame)?;
        if v.sender() != self.peer {
            return Err(SessionError::WrongSender { got: v.sender() });
        }
        self.recv.check(v.seq()).map_err(SessionError::Replay)?;
        let seal = Seal {
            signer: v.sender(),
            seq: v.seq(),
            session: self.id,
            signature: *v.signature(),
        };
        Ok((v.into_message(), seal))
    }

    /// Test hook: moves both counters, to reach their end without 2^64 frames.
    #[cfg(test)]
    pub(crate) fn set_counts(&mut self, n: u64) {
        self.tx.set_count(n);
        self.rx.set_count(n);
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::message::{BlobChunk, Ping};

    const BUF: usize = 2048;
    const T: Transport = Transport::ChaChaPoly;

    fn pair() -> (Keypair, Session, Keypair, Session) {
        pair_with(Transport::ChaChaPoly)
    }

    fn pair_with(t: Transport) -> (Keypair, Session, Keypair, Session) {
        let (a, b) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
        let id = SessionId {
            initiator: [3; 32],
            responder: [4; 32],
        };
        let (k1, k2) = ([5; 32], [6; 32]);
        let (pa, pb) = ((a.node_id(), [0; 32]), (b.node_id(), [0; 32]));
        let sa = Session::new(id, pb, true, (Cipher::new(k1), Cipher::new(k2), t));
        let sb = Session::new(id, pa, false, (Cipher::new(k2), Cipher::new(k1), t));
        (a, sa, b, sb)
    }

    /// An AES-256-GCM session: frames both ways, across a rekey; a changed
    /// record or one sealed with ChaChaPoly under the same key is refused.
    #[cfg(feature = "aes-gcm")]
    #[test]
    fn an_aes_gcm_session_talks_rekeys_and_refuses_what_it_did_not_seal() {
        let (a, mut sa, b, mut sb) = pair_with(Transport::AesGcm);
        assert_eq!(sa.transport(), Transport::AesGcm);
        let mut out = [0u8; BUF];
        for i in 0..4u64 {
            if i == 2 {
                sa.rekey_soon();
            }
            let n = sa.write(&a, &ping(i), &mut out).unwrap();
            assert_eq!(sb.read(&mut out[LEN_PREFIX_LEN..n]).unwrap(), ping(i));
            let n = sb.write(&b, &ping(100 + i), &mut out).unwrap();
            assert_eq!(sa.read(&mut out[LEN_PREFIX_LEN..n]).unwrap(), ping(100 + i));
        }
        let n = sa.write(&a, &ping(9), &mut out).unwrap();
        let mut changed = out[LEN_PREFIX_LEN..n].to_vec();
        changed[3] ^= 1;
        assert_eq!(sb.clone().read(&mut changed), Err(SessionError::Open));
        // A record of a fresh AES-GCM session does not open in a ChaChaPoly
        // session with the same keys and counter, nor the other way round.
        let (a, mut aes, b, _) = pair_with(Transport::AesGcm);
        let (_, _, _, mut chacha) = pair();
        let n = aes.write(&a, &ping(1), &mut out).unwrap();
        assert_eq!(
            chacha.read(&mut out[LEN_PREFIX_LEN..n]),
            Err(SessionError::Open)
        );
        let (_, _, _, mut aes_b) = pair_with(Transport::AesGcm);
        let (_, mut chacha_a, _, _) = pair();
        let n = chacha_a.write(&b, &ping(1), &mut out).unwrap();
        assert_eq!(
            aes_b.read(&mut out[LEN_PREFIX_LEN..n]),
            Err(SessionError::Open)
        );
    }

    fn ping(n: u64) -> Message<'static> {
        Message::Ping(Ping { nonce: n })
    }

    /// Writes `m` from `s`; returns the record (no prefix).
    fn seal(s: &mut Session, key: &Keypair, m: &Message<'_>) -> std::vec::Vec<u8> {
        let mut out = [0u8; BUF];
        let n = s.write(key, m, &mut out).unwrap();
        out[LEN_PREFIX_LEN..n].to_vec()
    }

    #[test]
    fn a_rekey_asked_for_switches_both_sides_at_the_same_record() {
        let (a, mut sa, _, mut sb) = pair();
        sa.rekey_soon();
        let mut r1 = seal(&mut sa, &a, &ping(1));
        let mut r2 = seal(&mut sa, &a, &ping(2));
        let stale = sb.clone();
        assert_eq!(sb.read(&mut r1), Ok(ping(1)));
        assert_eq!(sb.read(&mut r2.clone()), Ok(ping(2)));
        // A receiver that skipped the flagged record cannot open the next:
        // record 2 is under the new key.
        let mut skipped = stale;
        skipped.rx.set_count(1);
        assert_eq!(skipped.read(&mut r2), Err(SessionError::Open));
    }

    #[test]
    fn the_sender_rekeys_by_itself_every_rekey_frames() {
        let (a, mut sa, _, mut sb) = pair();
        sa.since_rekey = REKEY_FRAMES - 2;
        let mut first = seal(&mut sa, &a, &ping(1));
        let mut second = seal(&mut sa, &a, &ping(2));
        let mut third = seal(&mut sa, &a, &ping(3));
        assert_eq!(sa.since_rekey, 1, "rekeyed at the 2^20th record");
        for (r, n) in [(&mut first, 1), (&mut second, 2), (&mut third, 3)] {
            assert_eq!(sb.read(r), Ok(ping(n)));
        }
    }

    #[test]
    fn counters_stop_before_they_could_wrap() {
        let (a, mut sa, _, mut sb) = pair();
        sa.set_counts(u64::MAX - 2);
        sb.set_counts(u64::MAX - 2);
        let mut r = seal(&mut sa, &a, &ping(1));
        let mut out = [0u8; BUF];
        assert_eq!(
            sa.write(&a, &ping(2), &mut out),
            Err(EncodeError::Exhausted)
        );
        assert_eq!(sb.read(&mut r), Ok(ping(1)));
        assert_eq!(sb.read(&mut [0u8; 64]), Err(SessionError::Exhausted));
    }

    #[test]
    fn blob_transfers_travel_unsigned_and_everything_else_signed() {
        let (a, mut sa, _, mut sb) = pair();
        let data = [9u8; 300];
        let chunk = Message::BlobChunk(BlobChunk {
            hash: [7; 32],
            offset: 0,
            total_len: 300,
            data: &data,
        });
        let mut r = seal(&mut sa, &a, &chunk);
        // flags, header, hash, offset 0 (1), total 300 (2), length 300 (2), data, tag
        assert_eq!(r.len(), 1 + crate::HEADER_LEN + 32 + 1 + 2 + 2 + 300 + 16);
        assert_eq!(sb.read(&mut r), Ok(chunk));
        let request = Message::BlobRequest(crate::message::BlobRequest {
            hash: [7; 32],
            offset: 300,
            max_len: 64,
        });
        let mut q = seal(&mut sa, &a, &request);
        // flags, header, hash, offset 300 (2), max_len 64 (1), tag: no signature
        assert_eq!(q.len(), 1 + crate::HEADER_LEN + 32 + 2 + 1 + 16);
        assert_eq!(sb.read(&mut q), Ok(request));
        let mut p = seal(&mut sa, &a, &ping(1));
        assert_eq!(p.len(), 1 + crate::FRAME_OVERHEAD + 1 + 16);
        assert_eq!(sb.read(&mut p), Ok(ping(1)));
    }

    #[test]
    fn unknown_flags_are_refused() {
        let (a, mut sa, _, mut sb) = pair();
        // Seal a record whose flags byte is 2, as a peer could.
        let mut out = [0u8; BUF];
        let n = sa.write(&a, &ping(1), &mut out).unwrap();
        let mut record = out[LEN_PREFIX_LEN..n].to_vec();
        let len = record.len() - TAG_LEN;
        let mut plain = record[..len].to_vec();
        let mut rx = sb.rx.clone();
        rx.open(T, &[], &mut plain, &record[len..].try_into().unwrap())
            .unwrap();
        plain[0] = 2;
        let mut tx = Cipher::new([5; 32]);
        let tag = tx.seal(T, &[], &mut plain).unwrap();
        record[..len].copy_from_slice(&plain);
        record[len..].copy_from_slice(&tag);
        assert_eq!(sb.read(&mut record), Err(SessionError::Flags { got: 2 }));
    }
}
