//! Frame encoding and decoding: the fixed header, postcard bodies (canonical
//! only), datagram framing, and the incremental length-prefixed stream decoder.

use postcard::ser_flavors::Flavor;
use serde::{Deserialize, Serialize};

use crate::error::{EncodeError, FrameError, StreamError};
use crate::limits::{
    BLOB_CHUNK_LEN, FRAME_OVERHEAD, HEADER_LEN, LEN_PREFIX_LEN, MAX_ERROR_DETAIL, MAX_FRAME_LEN,
    MAX_RECORD_LEN, MIN_RECORD_LEN, PROTOCOL_VERSION, SIGNATURE_LEN,
};
use crate::message::{Message, MessageKind, NodeId, Signature64};
use crate::sign::{Context, Keypair, Verified, Verifier};

/// Encodes `message` as a signed frame into `out`; returns the frame length.
/// The context sets the limit ([`Context::max_len`]).
pub fn encode_frame(
    key: &Keypair,
    ctx: Context<'_>,
    seq: u64,
    message: &Message<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let max = ctx.max_len();
    let have = out.len();
    let too_small = EncodeError::BufferTooSmall {
        needed_at_least: FRAME_OVERHEAD,
        have,
    };
    let room = have.min(max).checked_sub(SIGNATURE_LEN).ok_or(too_small)?;
    let (head, rest) = out.split_at_mut_checked(HEADER_LEN).ok_or(too_small)?;
    let body_room = rest
        .get_mut(..room.saturating_sub(HEADER_LEN))
        .ok_or(too_small)?;
    let body_len = encode_body(message, body_room).map_err(|_| {
        if have < max {
            EncodeError::BufferTooSmall {
                needed_at_least: have.saturating_add(1),
                have,
            }
        } else {
            EncodeError::TooLong { max }
        }
    })?;
    head.copy_from_slice(&header(message.kind(), key.node_id(), seq));
    let signed_len = HEADER_LEN.checked_add(body_len).ok_or(too_small)?;
    let total = signed_len.checked_add(SIGNATURE_LEN).ok_or(too_small)?;
    let (signed, tail) = out.split_at_mut_checked(signed_len).ok_or(too_small)?;
    let sig = key.sign_parts(&|f| {
        ctx.absorb_into(&mut *f);
        f(signed);
    });
    tail.get_mut(..SIGNATURE_LEN)
        .ok_or(too_small)?
        .copy_from_slice(&sig);
    Ok(total)
}

/// Whether frames of `kind` are signed inside a sealed session: all but
/// the blob transfer's `BlobRequest` and `BlobChunk` (see `session`).
pub(crate) fn signed_in_session(kind: MessageKind) -> bool {
    !matches!(kind, MessageKind::BlobRequest | MessageKind::BlobChunk)
}

/// Encodes `message` as a session frame into `out`: signed, or for a kind
/// that goes unsigned in a session, the header and body alone.
pub(crate) fn encode_frame_for(
    key: &Keypair,
    ctx: Context<'_>,
    seq: u64,
    message: &Message<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    if signed_in_session(message.kind()) {
        return encode_frame(key, ctx, seq, message, out);
    }
    let have = out.len();
    let too_small = EncodeError::BufferTooSmall {
        needed_at_least: HEADER_LEN.saturating_add(1),
        have,
    };
    let (head, rest) = out.split_at_mut_checked(HEADER_LEN).ok_or(too_small)?;
    let room = ctx.max_len().min(have).saturating_sub(HEADER_LEN);
    let body = rest.get_mut(..room).ok_or(too_small)?;
    let n = encode_body(message, body).map_err(|_| EncodeError::TooLong { max: ctx.max_len() })?;
    head.copy_from_slice(&header(message.kind(), key.node_id(), seq));
    Ok(HEADER_LEN.saturating_add(n))
}

/// Checks and decodes a frame that arrived in a sealed session: a signed
/// frame as [`verify_frame`] does, or an unsigned kind's header and body
/// (its [`Verified`] carries an all-zero signature).
pub(crate) fn verify_session_frame<'a>(
    frame: &'a [u8],
    ctx: Context<'_>,
) -> Result<Verified<Message<'a>>, FrameError> {
    let short = FrameError::TooShort {
        len: frame.len(),
        min: HEADER_LEN,
    };
    let kind_byte = *frame.get(1).ok_or(short)?;
    let unsigned = MessageKind::from_byte(kind_byte).is_some_and(|k| !signed_in_session(k));
    if !unsigned {
        return verify_frame(frame, ctx);
    }
    let (head, body) = frame.split_at_checked(HEADER_LEN).ok_or(short)?;
    let (sender, seq, kind) = read_header(head, ctx)?;
    match decode_body_unverified(kind, body) {
        Ok(message) => Ok(Verified::new(sender, seq, message, Signature64([0; 64]))),
        // A signed one (a sender that signs every frame) is checked as such.
        Err(FrameError::TrailingBytes { .. }) => verify_frame(frame, ctx),
        Err(e) => Err(e),
    }
}

/// Reads a frame header: version, kind (allowed in `ctx`), sender, sequence.
fn read_header(head: &[u8], ctx: Context<'_>) -> Result<(NodeId, u64, MessageKind), FrameError> {
    let short = FrameError::TooShort {
        len: head.len(),
        min: HEADER_LEN,
    };
    let (vk, rest) = head.split_at_checked(2).ok_or(short)?;
    let (key, seq) = rest.split_at_checked(32).ok_or(short)?;
    let (&version, &kind_byte) = (vk.first().ok_or(short)?, vk.get(1).ok_or(short)?);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion { got: version });
    }
    let kind =
        MessageKind::from_byte(kind_byte).ok_or(FrameError::UnknownKind { got: kind_byte })?;
    if !ctx.allows(kind) {
        return Err(FrameError::WrongContext { kind });
    }
    let sender = NodeId(key.try_into().map_err(|_| short)?);
    let seq = u64::from_le_bytes(seq.try_into().map_err(|_| short)?);
    Ok((sender, seq, kind))
}

pub(crate) fn header(kind: MessageKind, sender: NodeId, seq: u64) -> [u8; HEADER_LEN] {
    header_of(PROTOCOL_VERSION, kind, sender, seq)
}

/// A frame header of wire `version` (receipts of older workers).
pub(crate) fn header_of(
    version: u8,
    kind: MessageKind,
    sender: NodeId,
    seq: u64,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let (vk, rest) = h.split_at_mut(2);
    let (key, s) = rest.split_at_mut(32);
    vk.copy_from_slice(&[version, kind as u8]);
    key.copy_from_slice(&sender.0);
    s.copy_from_slice(&seq.to_le_bytes());
    h
}

/// Checks a signed frame of `ctx` and decodes it. Signature first, over the
/// bytes as received; the body is decoded only once the signature holds.
pub fn verify_frame<'a>(
    frame: &'a [u8],
    ctx: Context<'_>,
) -> Result<Verified<Message<'a>>, FrameError> {
    let max = ctx.max_len();
    let len = frame.len();
    if len < FRAME_OVERHEAD {
        return Err(FrameError::TooShort {
            len,
            min: FRAME_OVERHEAD,
        });
    }
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    let short = FrameError::TooShort {
        len,
        min: FRAME_OVERHEAD,
    };
    let (signed, sig) = frame
        .split_at_checked(len.saturating_sub(SIGNATURE_LEN))
        .ok_or(short)?;
    let (head, body) = signed.split_at_checked(HEADER_LEN).ok_or(short)?;
    let (sender, seq, kind) = read_header(head, ctx)?;
    let sig: [u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| FrameError::BadSignature)?;
    let mut st = verifier(sender, &sig, ctx)?;
    st.absorb(signed);
    st.verify()?;
    let message = decode_body_unverified(kind, body)?;
    Ok(Verified::new(sender, seq, message, Signature64(sig)))
}

/// A verifier of `sig` by `signer` that has absorbed the context already:
/// the frame's signed bytes go in next.
fn verifier(
    signer: NodeId,
    sig: &[u8; SIGNATURE_LEN],
    ctx: Context<'_>,
) -> Result<Verifier, FrameError> {
    let mut st = Verifier::new(&signer, sig)?;
    ctx.absorb_into(|p| st.absorb(p));
    Ok(st)
}

/// Checks `signature` by `signer` over a frame rebuilt from its parts: the
/// context, the header, and `message`'s canonical body, fed to the verifier
/// as it is encoded (no buffer, so it runs where a frame does not fit).
pub(crate) fn verify_parts(
    signer: NodeId,
    signature: &Signature64,
    ctx: Context<'_>,
    head: &[u8],
    message: &Message<'_>,
) -> Result<(), FrameError> {
    let mut st = verifier(signer, &signature.0, ctx)?;
    st.absorb(head);
    serialize_body(message, Absorb(|p: &[u8]| st.absorb(p))).map_err(|_| {
        FrameError::MalformedBody {
            kind: message.kind(),
        }
    })?;
    st.verify()
}

/// Like [`verify_parts`], with a body of `kind` that is not this version's
/// message (an older version's encoding of it).
pub(crate) fn verify_parts_of<T: serde::Serialize>(
    signer: NodeId,
    signature: &Signature64,
    ctx: Context<'_>,
    head: &[u8],
    (kind, body): (MessageKind, &T),
) -> Result<(), FrameError> {
    let mut st = verifier(signer, &signature.0, ctx)?;
    st.absorb(head);
    postcard::serialize_with_flavor(body, Absorb(|p: &[u8]| st.absorb(p)))
        .map_err(|_| FrameError::MalformedBody { kind })?;
    st.verify()
}

/// Encodes a beacon (or any datagram-context message) as one UDP payload.
pub fn encode_datagram(
    key: &Keypair,
    seq: u64,
    message: &Message<'_>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    encode_frame(key, Context::Datagram, seq, message, out)
}

/// Checks and decodes one UDP payload.
pub fn verify_datagram(datagram: &[u8]) -> Result<Verified<Message<'_>>, FrameError> {
    verify_frame(datagram, Context::Datagram)
}

/// Encodes a frame for a stream: a `u32` little-endian length, then the frame.
/// Returns the bytes written (prefix included).
/// `out` is any byte buffer (a slice, an array, a `Vec`, a boxed slice).
pub fn encode_stream_frame(
    key: &Keypair,
    ctx: Context<'_>,
    seq: u64,
    message: &Message<'_>,
    mut out: impl AsMut<[u8]>,
) -> Result<usize, EncodeError> {
    let out = out.as_mut();
    let have = out.len();
    let (prefix, rest) =
        out.split_at_mut_checked(LEN_PREFIX_LEN)
            .ok_or(EncodeError::BufferTooSmall {
                needed_at_least: LEN_PREFIX_LEN + FRAME_OVERHEAD,
                have,
            })?;
    let n = encode_frame(key, ctx, seq, message, rest)?;
    let n32 = u32::try_from(n).map_err(|_| EncodeError::TooLong { max: MAX_FRAME_LEN })?;
    prefix.copy_from_slice(&n32.to_le_bytes());
    Ok(n.saturating_add(LEN_PREFIX_LEN))
}

/// Encodes just a message body (postcard) into `out`; returns its length.
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub fn encode_body(message: &Message<'_>, out: &mut [u8]) -> Result<usize, postcard::Error> {
    serialize_body(message, postcard::ser_flavors::Slice::new(out)).map(|s| s.len())
}

/// Serializes a message body into any postcard flavor.
fn serialize_body<F: Flavor>(message: &Message<'_>, flavor: F) -> postcard::Result<F::Output> {
    use postcard::serialize_with_flavor as put;
    match message {
        Message::Beacon(m) => put(m, flavor),
        Message::TaskOffer(m) => put(m, flavor),
        Message::TaskAccept(m) => put(m, flavor),
        Message::TaskReject(m) => put(m, flavor),
        Message::TaskResult(m) => put(m, flavor),
        Message::Cancel(m) => put(m, flavor),
        Message::Ping(m) => put(m, flavor),
        Message::Pong(m) => put(m, flavor),
        Message::Goodbye(m) => put(m, flavor),
        Message::Error(m) => put(m, flavor),
        Message::BlobRequest(m) => put(m, flavor),
        Message::BlobChunk(m) => put(m, flavor),
    }
}

/// Decodes a body of `kind`. Refuses trailing bytes and any encoding but the
/// canonical one, so every accepted body re-encodes to exactly its bytes.
/// Public only with the `fuzzing` feature: applications read messages through
/// [`Verified`].
#[cfg(feature = "fuzzing")]
pub fn decode_body(kind: MessageKind, body: &[u8]) -> Result<Message<'_>, FrameError> {
    decode_body_unverified(kind, body)
}

pub(crate) fn decode_body_unverified(
    kind: MessageKind,
    body: &[u8],
) -> Result<Message<'_>, FrameError> {
    let message = match kind {
        MessageKind::Beacon => Message::Beacon(take(kind, body)?),
        MessageKind::TaskOffer => Message::TaskOffer(take(kind, body)?),
        MessageKind::TaskAccept => Message::TaskAccept(take(kind, body)?),
        MessageKind::TaskReject => Message::TaskReject(take(kind, body)?),
        MessageKind::TaskResult => Message::TaskResult(take(kind, body)?),
        MessageKind::Cancel => Message::Cancel(take(kind, body)?),
        MessageKind::Ping => Message::Ping(take(kind, body)?),
        MessageKind::Pong => Message::Pong(take(kind, body)?),
        MessageKind::Goodbye => Message::Goodbye(take(kind, body)?),
        MessageKind::Error => Message::Error(take(kind, body)?),
        MessageKind::BlobRequest => Message::BlobRequest(take(kind, body)?),
        MessageKind::BlobChunk => Message::BlobChunk(take(kind, body)?),
    };
    let within_limits = match &message {
        Message::Error(e) => e.detail.len() <= MAX_ERROR_DETAIL,
        Message::BlobChunk(c) => c.data.len() <= BLOB_CHUNK_LEN,
        Message::BlobRequest(r) => r.max_len as usize <= BLOB_CHUNK_LEN,
        _ => true,
    };
    if within_limits {
        Ok(message)
    } else {
        Err(FrameError::MalformedBody { kind })
    }
}

fn take<'a, T: Deserialize<'a> + Serialize>(
    kind: MessageKind,
    body: &'a [u8],
) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|_| FrameError::MalformedBody { kind })?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            kind,
            extra: rest.len(),
        });
    }
    postcard::serialize_with_flavor(&value, Canonical { expected: body })
        .map_err(|_| FrameError::NonCanonical { kind })?;
    Ok(value)
}

/// A postcard output "flavor" that writes nothing and instead checks each byte
/// against the received body: re-encoding without a buffer.
struct Canonical<'a> {
    expected: &'a [u8],
}

impl Flavor for Canonical<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        match self.expected.split_first() {
            Some((&b, rest)) if b == byte => {
                self.expected = rest;
                Ok(())
            }
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        match self.expected.strip_prefix(bytes) {
            Some(rest) => {
                self.expected = rest;
                Ok(())
            }
            None => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn finalize(self) -> postcard::Result<()> {
        if self.expected.is_empty() {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

/// A postcard flavor that hands every encoded byte to a sink (a signature
/// verifier) instead of storing it.
struct Absorb<F>(F);

impl<F: FnMut(&[u8])> Flavor for Absorb<F> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        (self.0)(&[byte]);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        (self.0)(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Storage for the frame a [`StreamDecoder`] is assembling.
///
/// Every `AsRef<[u8]> + AsMut<[u8]>` (a `[u8; N]` on a microcontroller, a
/// `&mut [u8]`, a boxed slice) is one, with a fixed size. A server can
/// implement it for a buffer that grows to the frame at hand, so an idle
/// connection does not hold `MAX_FRAME_LEN` bytes.
pub trait FrameBuffer {
    /// Writable storage for a frame of `len` bytes, or `None` if it cannot
    /// hold that many.
    fn frame_mut(&mut self, len: usize) -> Option<&mut [u8]>;
    /// The first `len` bytes.
    fn frame(&self, len: usize) -> Option<&[u8]>;
    /// The largest frame it can ever hold.
    fn max_len(&self) -> usize;
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FrameBuffer for T {
    fn frame_mut(&mut self, len: usize) -> Option<&mut [u8]> {
        self.as_mut().get_mut(..len)
    }

    fn frame(&self, len: usize) -> Option<&[u8]> {
        self.as_ref().get(..len)
    }

    fn max_len(&self) -> usize {
        self.as_ref().len()
    }
}

/// Incremental decoder for length-prefixed frames on a stream.
///
/// Bytes are fed as they arrive; they are copied into the caller's buffer `B`
/// (a `[u8; N]` on a microcontroller, a boxed slice on a server). The length
/// prefix is checked against the limit before a single body byte is stored.
#[derive(Debug)]
pub struct StreamDecoder<B> {
    buf: B,
    prefix: [u8; LEN_PREFIX_LEN],
    prefix_len: usize,
    frame_len: usize,
    filled: usize,
    max: usize,
    ready: bool,
}

impl<B: FrameBuffer> StreamDecoder<B> {
    /// A decoder whose limit is the smaller of `buf`'s capacity and [`MAX_RECORD_LEN`].
    pub fn new(buf: B) -> Self {
        let max = buf.max_len().min(MAX_RECORD_LEN);
        Self {
            buf,
            prefix: [0; LEN_PREFIX_LEN],
            prefix_len: 0,
            frame_len: 0,
            filled: 0,
            max,
            ready: false,
        }
    }

    /// The largest record this decoder accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max
    }

    /// Takes bytes from the front of `input` (advancing it) until a whole
    /// record is buffered, and returns it (writable: a session opens it in
    /// place); `Ok(None)` means more input is needed. The returned record is
    /// valid until the next call.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<&mut [u8]>, StreamError> {
        if self.ready {
            self.ready = false;
            self.prefix_len = 0;
            self.filled = 0;
        }
        while self.prefix_len < LEN_PREFIX_LEN {
            let Some((&b, rest)) = input.split_first() else {
                return Ok(None);
            };
            if let Some(slot) = self.prefix.get_mut(self.prefix_len) {
                *slot = b;
            }
            self.prefix_len = self.prefix_len.saturating_add(1);
            *input = rest;
            if self.prefix_len == LEN_PREFIX_LEN {
                let len = u32::from_le_bytes(self.prefix);
                let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
                if len_usize > self.max {
                    return Err(StreamError::Oversized {
                        len: u64::from(len),
                        max: self.max,
                    });
                }
                if len_usize < MIN_RECORD_LEN {
                    return Err(StreamError::Undersized {
                        len: len_usize,
                        min: MIN_RECORD_LEN,
                    });
                }
                self.frame_len = len_usize;
            }
        }
        let want = self.frame_len.saturating_sub(self.filled).min(input.len());
        let (now, rest) = input.split_at(want);
        let end = self.filled.saturating_add(want);
        if let Some(dst) = self
            .buf
            .frame_mut(self.frame_len)
            .and_then(|f| f.get_mut(self.filled..end))
        {
            dst.copy_from_slice(now);
        }
        self.filled = end;
        *input = rest;
        if self.filled < self.frame_len {
            return Ok(None);
        }
        self.ready = true;
        Ok(self.buf.frame_mut(self.frame_len))
    }

    /// The frame the last [`decode`](Self::decode) completed, until the
    /// next call (for a caller that cannot hold the borrow `decode` returned).
    pub fn ready_frame(&self) -> Option<&[u8]> {
        if self.ready {
            self.buf.frame(self.frame_len)
        } else {
            None
        }
    }

    /// [`ready_frame`](Self::ready_frame), writable (a session opens a
    /// record in place).
    pub fn ready_frame_mut(&mut self) -> Option<&mut [u8]> {
        if self.ready {
            self.buf.frame_mut(self.frame_len)
        } else {
            None
        }
    }

    /// Bytes still missing for the frame in progress (at least 1 while the
    /// prefix is incomplete).
    pub fn needed(&self) -> usize {
        if self.prefix_len < LEN_PREFIX_LEN || self.ready {
            LEN_PREFIX_LEN.saturating_sub(self.prefix_len).max(1)
        } else {
            self.frame_len.saturating_sub(self.filled)
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    const SID: crate::SessionId = crate::SessionId {
        initiator: [1; 32],
        responder: [2; 32],
    };

    /// Signs arbitrary header fields and body: what a malicious peer with a
    /// valid key can send.
    fn sign_raw(version: u8, kind: u8, body: &[u8], ctx: Context<'_>) -> Vec<u8> {
        let key = Keypair::from_seed([42; 32]);
        let mut f = Vec::from([version, kind]);
        f.extend_from_slice(key.node_id().as_bytes());
        f.extend_from_slice(&9u64.to_le_bytes());
        f.extend_from_slice(body);
        let sig = key.sign_parts(&|sink| {
            ctx.absorb_into(&mut *sink);
            sink(&f);
        });
        f.extend_from_slice(&sig);
        f
    }

    fn check(frame: &[u8]) -> Result<Verified<Message<'_>>, FrameError> {
        verify_frame(frame, Context::Session(&SID))
    }

    #[test]
    fn valid_signed_ping_is_accepted() {
        let f = sign_raw(
            crate::PROTOCOL_VERSION,
            MessageKind::Ping as u8,
            &[7],
            Context::Session(&SID),
        );
        let v = check(&f).unwrap();
        assert_eq!(v.message(), &Message::Ping(crate::Ping { nonce: 7 }));
        assert_eq!(v.seq(), 9);
    }

    #[test]
    fn signed_trailing_bytes_are_refused() {
        let f = sign_raw(
            crate::PROTOCOL_VERSION,
            MessageKind::Ping as u8,
            &[7, 0],
            Context::Session(&SID),
        );
        assert_eq!(
            check(&f).unwrap_err(),
            FrameError::TrailingBytes {
                kind: MessageKind::Ping,
                extra: 1
            }
        );
    }

    #[test]
    fn signed_non_canonical_varint_is_refused() {
        // 7 encoded in two bytes: 0x87 0x00.
        let f = sign_raw(
            crate::PROTOCOL_VERSION,
            MessageKind::Ping as u8,
            &[0x87, 0x00],
            Context::Session(&SID),
        );
        assert_eq!(
            check(&f).unwrap_err(),
            FrameError::NonCanonical {
                kind: MessageKind::Ping
            }
        );
    }

    #[test]
    fn signed_wrong_version_and_unknown_kind_are_refused() {
        let f = sign_raw(1, MessageKind::Ping as u8, &[7], Context::Session(&SID));
        assert_eq!(
            check(&f).unwrap_err(),
            FrameError::UnsupportedVersion { got: 1 }
        );
        let f = sign_raw(crate::PROTOCOL_VERSION, 99, &[7], Context::Session(&SID));
        assert_eq!(check(&f).unwrap_err(), FrameError::UnknownKind { got: 99 });
    }

    #[test]
    fn signed_in_another_context_is_refused() {
        let f = sign_raw(
            crate::PROTOCOL_VERSION,
            MessageKind::Ping as u8,
            &[7],
            Context::Datagram,
        );
        assert_eq!(check(&f).unwrap_err(), FrameError::BadSignature);
    }

    #[test]
    fn over_long_error_detail_is_refused() {
        let detail = [b'x'; MAX_ERROR_DETAIL + 1];
        let mut body = Vec::from([0u8, 0x81, 0x02]); // code 0, length 257
        body.extend_from_slice(&detail);
        let f = sign_raw(
            crate::PROTOCOL_VERSION,
            MessageKind::Error as u8,
            &body,
            Context::Session(&SID),
        );
        assert_eq!(
            check(&f).unwrap_err(),
            FrameError::MalformedBody {
                kind: MessageKind::Error
            }
        );
    }

    proptest! {
        #[test]
        fn any_signed_body_is_refused_or_re_encodes_exactly(
            kind in 1u8..=14,
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let f = sign_raw(crate::PROTOCOL_VERSION, kind, &body, Context::Session(&SID));
            if let Ok(v) = check(&f) {
                let mut out = [0u8; 512];
                let n = encode_body(v.message(), &mut out).unwrap();
                prop_assert_eq!(&out[..n], &body[..]);
            }
        }
    }
}
