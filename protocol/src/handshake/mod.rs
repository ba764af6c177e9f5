//! The Noise XX handshake as a type-state machine. Each step is a value
//! consumed by the next, so a message can only be read or written in the
//! state that allows it. No allocation, no I/O, no clock, no RNG: the caller
//! brings the ephemeral secret, the bytes received and an output buffer.
//!
//! ```text
//! Initiator ──write_hello──▶ AwaitAck ──read_ack──▶ Confirm ──confirm──▶ Session
//!                                                      └──────refuse──▶ (refusal written)
//! Responder ──read_hello (writes message 2)──▶ AwaitConfirm ──read_confirm──▶ Session
//! ```
//!
//! Messages (each on the stream after a `u32` little-endian length):
//!
//! ```text
//! 1  A → B  0x07 ‖ e ‖ offer ‖ 72 zero bytes            (+16 tag with a network key)
//! 2  B → A  e ‖ enc(s) ‖ enc(payload B)                  ee, s, es
//! 3  A → B  enc(s) ‖ enc(payload A, or a refusal)        s, se
//! ```
//!
//! `offer` is the [`Transport`]s the initiator can seal the session with
//! besides ChaChaPoly (bit 0: AES-256-GCM); each payload names the one
//! chosen (the responder's choice, which the initiator repeats). A
//! responder refuses unknown offer bits, and each side refuses a choice that
//! was not offered or not repeated.
//!
//! A payload is the sender's [`NodeId`], its [`Identity`] certificate (an
//! Ed25519 signature by that id over [`STATIC_KEY_CONTEXT`] ‖ the static
//! X25519 key the handshake proved), its listen port and capabilities. Each
//! side checks the certificate, so the Noise static key is bound to the
//! Ed25519 identity that signs every frame and receipt.
//!
//! RAM on a 64-bit target (a test keeps these bounds): [`Initiator`] 65
//! bytes, [`Responder`] 32, [`AwaitAck`] 216, [`AwaitConfirm`] 240 (248 with
//! `aes-gcm`),
//! [`Confirm`] 600 (it holds the peer's [`Intro`]), [`Session`] 248; plus the
//! caller's receive buffer (one record) and send buffer (a length prefix and
//! a record).

use serde::{Deserialize, Serialize};

use crate::error::EncodeError;
use crate::limits::{HELLO_LEN, LEN_PREFIX_LEN, PROTOCOL_VERSION};
use crate::message::{Capabilities, GoodbyeReason, NodeId, Nonce, Signature64};
use crate::noise::{DhKey, NoiseError, Symmetric, Transport, DH_LEN, TAG_LEN};
use crate::session::Session;

mod error;
mod identity;

use crate::sign::SessionId;
pub use crate::sign::STATIC_KEY_CONTEXT;
pub use error::HandshakeError;
use identity::check_certificate;
pub use identity::Identity;

/// Mixed into the handshake hash before the first message: both sides must
/// speak this wire version, or no key they derive agrees.
pub const PROLOGUE: &[u8] = b"p2pa/v7";

/// The offer byte and the reserved bytes (zeros) of message 1: they pad it
/// to 106 bytes, the shortest version-3 frame, so a version-3 node reads its
/// version byte and refuses it as a newer version rather than as a short
/// frame.
const HELLO_PAD: usize = HELLO_LEN - 1 - DH_LEN;

/// The offer bits a responder knows (bit 0: AES-256-GCM).
const OFFER_BITS: u8 = Transport::AesGcm.byte();

/// What a node tells its peer about itself in the handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intro {
    /// The TCP port it listens on (0: it takes no connections).
    pub listen_port: u16,
    /// What it offers now.
    pub caps: Capabilities,
}

/// What messages 2 and 3 carry, encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // decoded and used at once, never stored
enum Payload {
    /// The sender's identity, its certificate of its static key, and its intro.
    Intro {
        node: NodeId,
        cert: Signature64,
        listen_port: u16,
        caps: Capabilities,
        /// The session's [`Transport`] (its byte): the responder's choice,
        /// repeated by the initiator.
        transport: u8,
    },
    /// Message 3 only: the initiator refuses the responder.
    Refuse(GoodbyeReason),
}

/// Decodes a payload; refuses trailing bytes.
fn decode_payload(bytes: &[u8]) -> Result<Payload, HandshakeError> {
    match postcard::take_from_bytes::<Payload>(bytes) {
        Ok((p, [])) => Ok(p),
        _ => Err(HandshakeError::Malformed),
    }
}

/// Certificates a node has checked before: `true` when `node` certified
/// `statik` already, so the signature need not be verified again.
pub type Known<'a> = &'a dyn Fn(NodeId, &[u8; 32]) -> bool;

/// Splits the length prefix off `out` and returns the rest.
fn body(out: &mut [u8]) -> Result<&mut [u8], EncodeError> {
    let have = out.len();
    out.get_mut(LEN_PREFIX_LEN..)
        .ok_or(EncodeError::BufferTooSmall {
            needed_at_least: LEN_PREFIX_LEN.saturating_add(HELLO_LEN),
            have,
        })
}

/// Writes the length prefix of a `len`-byte message; returns prefix + len.
fn finish(out: &mut [u8], len: usize) -> Result<usize, EncodeError> {
    let n32 = u32::try_from(len).map_err(|_| EncodeError::TooLong { max: HELLO_LEN })?;
    if let Some(prefix) = out.get_mut(..LEN_PREFIX_LEN) {
        prefix.copy_from_slice(&n32.to_le_bytes());
    }
    Ok(len.saturating_add(LEN_PREFIX_LEN))
}

fn too_small(have: usize) -> EncodeError {
    EncodeError::BufferTooSmall {
        needed_at_least: crate::limits::MAX_HANDSHAKE_LEN,
        have,
    }
}

/// Writes `enc(s) ‖ enc(payload)` at the start of `out` (the `s` token, then
/// `dh` mixed, then the payload); returns the bytes written.
fn write_static_and_payload(
    sym: &mut Symmetric,
    id: &Identity,
    dh: [u8; 32],
    payload: &Payload,
    out: &mut [u8],
) -> Result<usize, HandshakeError> {
    let have = out.len();
    let s_len = DH_LEN.saturating_add(TAG_LEN);
    let (s, rest) = out.split_at_mut_checked(s_len).ok_or(too_small(have))?;
    s.get_mut(..DH_LEN)
        .ok_or(too_small(have))?
        .copy_from_slice(id.statik.public());
    sym.encrypt_and_hash(s, DH_LEN)?;
    sym.mix_key(&dh);
    let room = rest.len().saturating_sub(TAG_LEN);
    let plain = rest.get_mut(..room).ok_or(too_small(have))?;
    let n = postcard::to_slice(payload, plain)
        .map_err(|_| too_small(have))?
        .len();
    let n = sym.encrypt_and_hash(rest, n)?;
    Ok(s_len.saturating_add(n))
}

fn intro_payload(id: &Identity, intro: &Intro, transport: Transport) -> Payload {
    Payload::Intro {
        node: id.node_id(),
        cert: id.cert,
        listen_port: intro.listen_port,
        caps: intro.caps.clone(),
        transport: transport.byte(),
    }
}

/// The peer as its message proved it: its identity and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    node: NodeId,
    statik: [u8; 32],
    intro: Intro,
    /// The transport the peer's payload names.
    transport: Transport,
}

/// Reads `enc(s) ‖ enc(payload)` from `msg`, mixing `dh(rs)` between them;
/// checks the certificate (unless `known`) and that the peer is not `me`.
fn read_static_and_payload(
    sym: &mut Symmetric,
    msg: &mut [u8],
    dh: impl FnOnce(&[u8; 32]) -> Result<[u8; 32], NoiseError>,
    me: NodeId,
    known: Known<'_>,
) -> Result<Peer, HandshakeError> {
    let s_len = DH_LEN.saturating_add(TAG_LEN);
    let (s, rest) = msg
        .split_at_mut_checked(s_len)
        .ok_or(HandshakeError::Malformed)?;
    sym.decrypt_and_hash(s)?;
    let rs: [u8; 32] = s
        .get(..DH_LEN)
        .and_then(|k| k.try_into().ok())
        .ok_or(HandshakeError::Malformed)?;
    sym.mix_key(&dh(&rs)?);
    let n = sym.decrypt_and_hash(rest)?;
    match decode_payload(rest.get(..n).ok_or(HandshakeError::Malformed)?)? {
        Payload::Refuse(reason) => Err(HandshakeError::Goodbye(reason)),
        Payload::Intro {
            node,
            cert,
            listen_port,
            caps,
            transport,
        } => {
            let transport = Transport::from_byte(transport).ok_or(HandshakeError::Malformed)?;
            if node == me {
                return Err(HandshakeError::SelfConnection);
            }
            if !known(node, &rs) && !check_certificate(node, &rs, &cert) {
                return Err(HandshakeError::BadCertificate { claimed: node });
            }
            Ok(Peer {
                node,
                statik: rs,
                intro: Intro { listen_port, caps },
                transport,
            })
        }
    }
}

/// The side that opened the connection, before it has written message 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiator {
    ephemeral: Nonce,
    expected: Option<NodeId>,
}

impl Initiator {
    /// Starts a handshake with a fresh random `ephemeral` secret (never
    /// reused). `expected`: the key the caller means to reach, if it knows
    /// it; any other key answering fails the handshake.
    pub const fn new(ephemeral: Nonce, expected: Option<NodeId>) -> Self {
        Self {
            ephemeral,
            expected,
        }
    }

    /// The key this handshake must reach, if any.
    pub const fn expected(&self) -> Option<NodeId> {
        self.expected
    }

    /// Writes message 1 (length-prefixed) into `out`; returns the next state
    /// and the bytes written.
    pub fn write_hello(
        self,
        id: &Identity,
        out: &mut [u8],
    ) -> Result<(AwaitAck, usize), HandshakeError> {
        let have = out.len();
        let e = DhKey::from_secret(self.ephemeral).ok_or(HandshakeError::WeakKey)?;
        let mut sym = id.symmetric();
        let psk = id.has_network_key();
        let msg = body(out)?;
        let (head, rest) = msg.split_at_mut_checked(1).ok_or(too_small(have))?;
        head.copy_from_slice(&[PROTOCOL_VERSION]);
        let (ek, pad) = rest.split_at_mut_checked(DH_LEN).ok_or(too_small(have))?;
        ek.copy_from_slice(e.public());
        sym.mix_hash(e.public());
        if psk {
            sym.mix_key(e.public());
        }
        let zeros = pad.get_mut(..HELLO_PAD).ok_or(too_small(have))?;
        zeros.fill(0);
        let offer_aes = id.offers_aes_gcm();
        if let Some(offer) = zeros.first_mut() {
            *offer = if offer_aes { OFFER_BITS } else { 0 };
        }
        let n = sym.encrypt_and_hash(pad, HELLO_PAD)?;
        let total = finish(out, 1usize.saturating_add(DH_LEN).saturating_add(n))?;
        let wait = AwaitAck {
            sym,
            e,
            psk,
            offer_aes,
            expected: self.expected,
        };
        Ok((wait, total))
    }
}

/// The initiator after message 1: waiting for message 2.
#[derive(Debug, Clone)]
pub struct AwaitAck {
    sym: Symmetric,
    e: DhKey,
    psk: bool,
    /// Whether message 1 offered AES-256-GCM.
    offer_aes: bool,
    expected: Option<NodeId>,
}

impl AwaitAck {
    /// The key this handshake must reach, if any.
    pub const fn expected(&self) -> Option<NodeId> {
        self.expected
    }

    /// Reads message 2 (without its length prefix; decrypted in place).
    pub fn read_ack(
        self,
        id: &Identity,
        msg: &mut [u8],
        known: Known<'_>,
    ) -> Result<Confirm, HandshakeError> {
        let Self {
            mut sym,
            e,
            psk,
            offer_aes,
            expected,
        } = self;
        let (re, rest) = msg
            .split_at_mut_checked(DH_LEN)
            .ok_or(HandshakeError::Malformed)?;
        let re: [u8; 32] = (&*re).try_into().map_err(|_| HandshakeError::Malformed)?;
        sym.mix_hash(&re);
        if psk {
            sym.mix_key(&re);
        }
        sym.mix_key(&e.dh(&re)?);
        let peer = read_static_and_payload(&mut sym, rest, |rs| e.dh(rs), id.node_id(), known)?;
        if peer.transport == Transport::AesGcm && !offer_aes {
            return Err(HandshakeError::Malformed);
        }
        if let Some(expected) = expected.filter(|x| *x != peer.node) {
            return Err(HandshakeError::WrongPeer {
                expected,
                got: peer.node,
            });
        }
        let session = SessionId {
            initiator: *e.public(),
            responder: re,
        };
        Ok(Confirm {
            sym,
            re,
            session,
            peer,
        })
    }
}

/// The initiator has verified the responder; it confirms (and the session
/// starts) or refuses the peer.
#[derive(Debug, Clone)]
pub struct Confirm {
    sym: Symmetric,
    re: [u8; 32],
    session: SessionId,
    peer: Peer,
}

impl Confirm {
    /// The responder's proven key.
    pub fn peer(&self) -> NodeId {
        self.peer.node
    }

    /// What the responder said about itself.
    pub fn intro(&self) -> &Intro {
        &self.peer.intro
    }

    /// The session's id (both ephemeral keys).
    pub fn id(&self) -> &SessionId {
        &self.session
    }

    /// Writes message 3 into `out` and starts the session; returns the
    /// session, the peer's intro and the bytes written.
    pub fn confirm(
        self,
        id: &Identity,
        intro: &Intro,
        out: &mut [u8],
    ) -> Result<(Session, Intro, usize), HandshakeError> {
        let Self {
            mut sym,
            re,
            session,
            peer,
        } = self;
        let transport = peer.transport;
        let payload = intro_payload(id, intro, transport);
        let n = write_message_3(&mut sym, id, &re, &payload, out)?;
        let (tx, rx) = sym.split();
        let s = Session::new(session, (peer.node, peer.statik), true, (tx, rx, transport));
        Ok((s, peer.intro, n))
    }

    /// Writes message 3 with a refusal instead of our identity.
    pub fn refuse(
        self,
        id: &Identity,
        reason: GoodbyeReason,
        out: &mut [u8],
    ) -> Result<usize, HandshakeError> {
        let Self { mut sym, re, .. } = self;
        write_message_3(&mut sym, id, &re, &Payload::Refuse(reason), out)
    }
}

fn write_message_3(
    sym: &mut Symmetric,
    id: &Identity,
    re: &[u8; 32],
    payload: &Payload,
    out: &mut [u8],
) -> Result<usize, HandshakeError> {
    let dh = id.statik.dh(re)?;
    let msg = body(out)?;
    let n = write_static_and_payload(sym, id, dh, payload, msg)?;
    Ok(finish(out, n)?)
}

/// The side that accepted the connection, waiting for message 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    ephemeral: Nonce,
}

impl Responder {
    /// Waits for message 1; `ephemeral` is a fresh random secret (never reused).
    pub const fn new(ephemeral: Nonce) -> Self {
        Self { ephemeral }
    }

    /// Reads message 1 (decrypted in place) and writes message 2 with our
    /// `intro` into `out`; returns the next state and the bytes written.
    pub fn read_hello(
        self,
        id: &Identity,
        msg: &mut [u8],
        intro: &Intro,
        out: &mut [u8],
    ) -> Result<(AwaitConfirm, usize), HandshakeError> {
        let (&mut version, rest) = msg.split_first_mut().ok_or(HandshakeError::Malformed)?;
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version { got: version });
        }
        let psk = id.has_network_key();
        let want = HELLO_PAD.saturating_add(if psk { TAG_LEN } else { 0 });
        let (re, pad) = rest
            .split_at_mut_checked(DH_LEN)
            .ok_or(HandshakeError::Malformed)?;
        if pad.len() != want {
            let other = HELLO_PAD.saturating_add(if psk { 0 } else { TAG_LEN });
            return Err(if pad.len() == other {
                HandshakeError::NetworkKey { ours: psk }
            } else {
                HandshakeError::Malformed
            });
        }
        let re: [u8; 32] = (&*re).try_into().map_err(|_| HandshakeError::Malformed)?;
        let mut sym = id.symmetric();
        sym.mix_hash(&re);
        if psk {
            sym.mix_key(&re);
        }
        let n = sym.decrypt_and_hash(pad)?;
        let (offer, zeros) = pad
            .get(..n)
            .and_then(|p| p.split_first())
            .ok_or(HandshakeError::Malformed)?;
        if offer & !OFFER_BITS != 0 || zeros.iter().any(|b| *b != 0) {
            return Err(HandshakeError::Malformed);
        }
        let transport = if offer & OFFER_BITS != 0 && id.offers_aes_gcm() {
            Transport::AesGcm
        } else {
            Transport::ChaChaPoly
        };
        let e = DhKey::from_secret(self.ephemeral).ok_or(HandshakeError::WeakKey)?;
        let have = out.len();
        let reply = body(out)?;
        let (ek, rest) = reply.split_at_mut_checked(DH_LEN).ok_or(too_small(have))?;
        ek.copy_from_slice(e.public());
        sym.mix_hash(e.public());
        if psk {
            sym.mix_key(e.public());
        }
        sym.mix_key(&e.dh(&re)?);
        let es = id.statik.dh(&re)?;
        let payload = intro_payload(id, intro, transport);
        let n = write_static_and_payload(&mut sym, id, es, &payload, rest)?;
        let total = finish(out, DH_LEN.saturating_add(n))?;
        let session = SessionId {
            initiator: re,
            responder: *e.public(),
        };
        #[cfg(not(feature = "aes-gcm"))]
        let _ = transport; // always ChaChaPoly: nothing offers AES-256-GCM
        let wait = AwaitConfirm {
            sym,
            e,
            session,
            #[cfg(feature = "aes-gcm")]
            transport,
        };
        Ok((wait, total))
    }
}

/// The responder has answered; it waits for message 3. (It learns who the
/// initiator is only from that message.)
#[derive(Debug, Clone)]
pub struct AwaitConfirm {
    sym: Symmetric,
    e: DhKey,
    session: SessionId,
    /// The transport message 2 chose (without the feature, always
    /// ChaChaPoly: a board's handshake state stays as small as before).
    #[cfg(feature = "aes-gcm")]
    transport: Transport,
}

impl AwaitConfirm {
    /// The transport message 2 chose.
    fn transport(&self) -> Transport {
        #[cfg(feature = "aes-gcm")]
        return self.transport;
        #[cfg(not(feature = "aes-gcm"))]
        Transport::ChaChaPoly
    }
}

impl AwaitConfirm {
    /// The session's id (both ephemeral keys).
    pub fn id(&self) -> &SessionId {
        &self.session
    }

    /// Reads message 3 (decrypted in place); returns the session and the
    /// initiator's intro. A refusal is [`HandshakeError::Goodbye`].
    pub fn read_confirm(
        self,
        id: &Identity,
        msg: &mut [u8],
        known: Known<'_>,
    ) -> Result<(Session, Intro), HandshakeError> {
        let transport = self.transport();
        let Self {
            mut sym,
            e,
            session,
            ..
        } = self;
        let peer = read_static_and_payload(&mut sym, msg, |rs| e.dh(rs), id.node_id(), known)?;
        if peer.transport != transport {
            return Err(HandshakeError::Malformed);
        }
        let (rx, tx) = sym.split();
        let s = Session::new(
            session,
            (peer.node, peer.statik),
            false,
            (tx, rx, transport),
        );
        Ok((s, peer.intro))
    }
}

/// Writes, length-prefixed, what a responder answers a peer of another
/// wire version: 106 bytes that start with this version's byte, which a
/// version-3 node refuses with "unsupported protocol version 5". Returns the
/// bytes written.
pub fn version_notice(out: &mut [u8]) -> Result<usize, EncodeError> {
    let have = out.len();
    let msg = body(out)?.get_mut(..HELLO_LEN).ok_or(too_small(have))?;
    msg.fill(0);
    if let Some(b) = msg.first_mut() {
        *b = PROTOCOL_VERSION;
    }
    finish(out, HELLO_LEN)
}

#[cfg(test)]
mod tests;
