//! The mutual handshake as a type-state machine, and the session it yields.
//! Each step is a value consumed by the next, so a frame can only be read or
//! written in the state that allows it. No allocation, no I/O, no clock, no
//! RNG: the caller brings the nonce, the bytes received and an output buffer.
//!
//! ```text
//! Initiator ──write_hello──▶ (Hello sent) ──read_ack──▶ Confirm ──confirm──▶ Session
//!                                                          └──────refuse──▶ (Goodbye written)
//! Responder ──read_hello (writes HelloAck)──▶ AwaitConfirm ──read_confirm──▶ Session
//!                                                          └──────refuse──▶ (Goodbye written)
//! ```
//!
//! Sequence numbers follow the spec: the initiator signs `Hello` as 0 and its
//! confirmation as 1; the responder signs its `HelloAck` as 0. A [`Session`]
//! goes on from there and refuses any frame whose sequence does not grow.
//!
//! RAM on a 64-bit target (a test below keeps these bounds): [`Initiator`]
//! 65 bytes, [`Responder`] 32, [`AwaitConfirm`] and [`Confirm`] 408 (they
//! hold the peer's [`Intro`], 280), [`Session`] 128; plus the caller's
//! receive buffer (one frame) and send buffer (a length prefix and a frame).

use core::fmt;
use core::marker::PhantomData;

use crate::codec::{encode_stream_frame, verify_frame};
use crate::error::{EncodeError, FrameError, ReplayError};
use crate::message::{
    Capabilities, Goodbye, GoodbyeReason, Hello, HelloAck, Message, MessageKind, NodeId, Nonce,
};
use crate::receipt::Seal;
use crate::sign::{Context, Keypair, ReplayGuard, SessionId};

/// What a node tells its peer about itself in the handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intro {
    /// The TCP port it listens on (0: it takes no connections).
    pub listen_port: u16,
    /// What it offers now.
    pub caps: Capabilities,
}

/// Why a handshake step failed. The connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The frame failed verification (signature, context, body).
    Frame(FrameError),
    /// The frame's sequence number did not grow.
    Replay(ReplayError),
    /// A valid frame of a kind this step does not expect.
    Unexpected {
        /// What arrived.
        kind: MessageKind,
    },
    /// A `HelloAck` that is not the answer to our `Hello` (other nonces, or
    /// addressed to another key).
    Mismatch,
    /// The peer's key is not the one the initiator meant to reach.
    WrongPeer {
        /// The key the initiator dialed for.
        expected: NodeId,
        /// The key that answered.
        got: NodeId,
    },
    /// The peer is this node (its own `Hello` came back).
    SelfConnection,
    /// The peer said goodbye before the handshake finished.
    Goodbye(GoodbyeReason),
    /// Our own frame could not be written into the output buffer.
    Encode(EncodeError),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => write!(f, "invalid handshake frame: {e}"),
            Self::Replay(e) => write!(f, "handshake frame: {e}"),
            Self::Unexpected { kind } => write!(f, "unexpected {kind} during the handshake"),
            Self::Mismatch => f.write_str("acknowledgement does not match our Hello"),
            Self::WrongPeer { expected, got } => write!(
                f,
                "expected node {} but {} answered",
                expected.short(),
                got.short()
            ),
            Self::SelfConnection => f.write_str("connected to ourselves"),
            Self::Goodbye(r) => write!(f, "peer said goodbye during the handshake: {r}"),
            Self::Encode(e) => write!(f, "could not write a handshake frame: {e}"),
        }
    }
}

impl From<EncodeError> for HandshakeError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

/// Why a session frame was refused. The connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The frame failed verification in this session's context.
    Frame(FrameError),
    /// The frame's sequence number did not grow.
    Replay(ReplayError),
    /// Signed with the session's nonces, but by another key than the peer's.
    WrongSender {
        /// The key that signed it.
        got: NodeId,
    },
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => e.fmt(f),
            Self::Replay(e) => e.fmt(f),
            Self::WrongSender { got } => {
                write!(f, "session frame signed by {}, not the peer", got.short())
            }
        }
    }
}

#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for HandshakeError {}
#[cfg(feature = "std")]
impl std::error::Error for SessionError {}

/// Reads one handshake frame of `ctx`, checking its sequence with `guard`.
fn read<'f>(
    frame: &'f [u8],
    ctx: Context<'_>,
    guard: &mut ReplayGuard,
) -> Result<(NodeId, Message<'f>), HandshakeError> {
    let v = verify_frame(frame, ctx).map_err(HandshakeError::Frame)?;
    guard.check(v.seq()).map_err(HandshakeError::Replay)?;
    let sender = v.sender();
    Ok((sender, v.into_message()))
}

/// The side that opened the connection, before it has heard the responder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiator {
    nonce: Nonce,
    expected: Option<NodeId>,
}

impl Initiator {
    /// Starts a handshake with a fresh random `nonce` (never reused).
    /// `expected`: the key the caller means to reach, if it knows it; any
    /// other key answering fails the handshake.
    pub const fn new(nonce: Nonce, expected: Option<NodeId>) -> Self {
        Self { nonce, expected }
    }

    /// The key this handshake must reach, if any.
    pub const fn expected(&self) -> Option<NodeId> {
        self.expected
    }

    /// Writes the `Hello` (length-prefixed, sequence 0) into `out`; returns
    /// the bytes written.
    pub fn write_hello(
        &self,
        key: &Keypair,
        intro: &Intro,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let hello = Message::Hello(Hello {
            nonce: self.nonce,
            listen_port: intro.listen_port,
            caps: intro.caps.clone(),
        });
        encode_stream_frame(key, Context::Hello, 0, &hello, out)
    }

    /// Reads the responder's `HelloAck`. `me` is this node's id.
    pub fn read_ack(self, me: NodeId, frame: &[u8]) -> Result<Confirm, HandshakeError> {
        let mut recv = ReplayGuard::new();
        let (sender, message) = read(frame, Context::Hello, &mut recv)?;
        let Message::HelloAck(a) = message else {
            return Err(HandshakeError::Unexpected {
                kind: message.kind(),
            });
        };
        if a.peer != me || a.initiator_nonce != self.nonce {
            return Err(HandshakeError::Mismatch);
        }
        if let Some(expected) = self.expected.filter(|e| *e != sender) {
            return Err(HandshakeError::WrongPeer {
                expected,
                got: sender,
            });
        }
        let (nonces, intro) = ((self.nonce, a.responder_nonce), (a.listen_port, a.caps));
        Ok(Confirm::new(sender, true, nonces, recv, intro))
    }
}

/// A handshake one frame from its end: the peer's key and intro are known;
/// `Side` says which step is left ([`Confirm`] or [`AwaitConfirm`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending<Side> {
    session: Session,
    intro: Intro,
    side: PhantomData<Side>,
}

/// The initiator has verified the responder; it confirms (and the session
/// starts) or refuses the peer.
pub type Confirm = Pending<ToConfirm>;

/// The responder has answered; it waits for the initiator's confirmation.
pub type AwaitConfirm = Pending<Awaiting>;

/// [`Pending`] on the initiator: it still sends its confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToConfirm {}

/// [`Pending`] on the responder: it still waits for the confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {}

impl<Side> Pending<Side> {
    /// After a verified `Hello` or `HelloAck` from `peer`: `nonces` are
    /// (initiator's, responder's), `intro` the peer's (port, capabilities).
    fn new(
        peer: NodeId,
        initiator: bool,
        nonces: (Nonce, Nonce),
        recv: ReplayGuard,
        intro: (u16, Capabilities),
    ) -> Self {
        let id = SessionId {
            initiator: nonces.0,
            responder: nonces.1,
        };
        Self {
            session: Session::new(id, peer, initiator, 1, recv),
            intro: Intro {
                listen_port: intro.0,
                caps: intro.1,
            },
            side: PhantomData,
        }
    }

    /// The peer's key (proven by its signature over our nonce on the
    /// initiator; on the responder, proven live only by the confirmation).
    pub fn peer(&self) -> NodeId {
        self.session.peer
    }

    /// What the peer said about itself.
    pub fn intro(&self) -> &Intro {
        &self.intro
    }

    /// The session's nonces.
    pub fn id(&self) -> &SessionId {
        &self.session.id
    }

    /// Writes a `Goodbye` with `reason` into `out` instead of finishing.
    pub fn refuse(
        self,
        key: &Keypair,
        reason: GoodbyeReason,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        self.session.goodbye(key, reason, out)
    }
}

impl Pending<ToConfirm> {
    /// Writes our confirmation into `out` and starts the session; returns the
    /// session, the peer's intro and the bytes written.
    pub fn confirm(
        self,
        key: &Keypair,
        intro: &Intro,
        out: &mut [u8],
    ) -> Result<(Session, Intro, usize), EncodeError> {
        let Self {
            mut session,
            intro: theirs,
            ..
        } = self;
        let ack = Message::HelloAck(HelloAck {
            peer: session.peer,
            initiator_nonce: session.id.initiator,
            responder_nonce: session.id.responder,
            listen_port: intro.listen_port,
            caps: intro.caps.clone(),
        });
        let n = session.write(key, &ack, out)?;
        Ok((session, theirs, n))
    }
}

/// The side that accepted the connection, waiting for `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    nonce: Nonce,
}

impl Responder {
    /// Waits for a `Hello`; `nonce` is fresh and random (never reused).
    pub const fn new(nonce: Nonce) -> Self {
        Self { nonce }
    }

    /// Reads the initiator's `Hello` and writes our `HelloAck` into `out`;
    /// returns the next state and the bytes written.
    pub fn read_hello(
        self,
        key: &Keypair,
        frame: &[u8],
        intro: &Intro,
        out: &mut [u8],
    ) -> Result<(AwaitConfirm, usize), HandshakeError> {
        let mut recv = ReplayGuard::new();
        let (sender, message) = read(frame, Context::Hello, &mut recv)?;
        let Message::Hello(h) = message else {
            return Err(HandshakeError::Unexpected {
                kind: message.kind(),
            });
        };
        if sender == key.node_id() {
            return Err(HandshakeError::SelfConnection);
        }
        let ack = Message::HelloAck(HelloAck {
            peer: sender,
            initiator_nonce: h.nonce,
            responder_nonce: self.nonce,
            listen_port: intro.listen_port,
            caps: intro.caps.clone(),
        });
        let n = encode_stream_frame(key, Context::Hello, 0, &ack, out)?;
        let (nonces, intro) = ((h.nonce, self.nonce), (h.listen_port, h.caps));
        Ok((AwaitConfirm::new(sender, false, nonces, recv, intro), n))
    }
}

impl Pending<Awaiting> {
    /// Reads the initiator's confirmation; returns the session and the
    /// intro of the `Hello`.
    pub fn read_confirm(
        self,
        me: NodeId,
        frame: &[u8],
    ) -> Result<(Session, Intro), HandshakeError> {
        let Self {
            mut session, intro, ..
        } = self;
        let ctx = Context::Session(&session.id);
        let (sender, message) = read(frame, ctx, &mut session.recv)?;
        match message {
            Message::HelloAck(a)
                if sender == session.peer
                    && a.peer == me
                    && a.initiator_nonce == session.id.initiator
                    && a.responder_nonce == session.id.responder =>
            {
                Ok((session, intro))
            }
            Message::HelloAck(_) => Err(HandshakeError::Mismatch),
            Message::Goodbye(g) => Err(HandshakeError::Goodbye(g.reason)),
            other => Err(HandshakeError::Unexpected { kind: other.kind() }),
        }
    }
}

/// An authenticated session: both keys proven, every frame bound to both
/// nonces, sequence numbers strictly growing in each direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    id: SessionId,
    peer: NodeId,
    initiator: bool,
    send_seq: u64,
    recv: ReplayGuard,
}

impl Session {
    fn new(id: SessionId, peer: NodeId, initiator: bool, send_seq: u64, recv: ReplayGuard) -> Self {
        Self {
            id,
            peer,
            initiator,
            send_seq,
            recv,
        }
    }

    /// The session's nonces (its signing context).
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The peer's proven key.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// Whether this side opened the connection.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Signs `message` as the next frame of this session and writes it,
    /// length-prefixed, into `out`; returns the bytes written.
    pub fn write(
        &mut self,
        key: &Keypair,
        message: &Message<'_>,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let n = encode_stream_frame(key, Context::Session(&self.id), self.send_seq, message, out)?;
        self.send_seq = self.send_seq.saturating_add(1);
        Ok(n)
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

    /// Verifies one received frame (without its length prefix) and returns
    /// its message. Any error means the connection must be closed.
    pub fn read<'f>(&mut self, frame: &'f [u8]) -> Result<Message<'f>, SessionError> {
        self.read_sealed(frame).map(|(message, _)| message)
    }

    /// [`read`](Self::read), with the frame's [`Seal`]: what a receipt keeps
    /// to check the frame's signature later.
    pub fn read_sealed<'f>(
        &mut self,
        frame: &'f [u8],
    ) -> Result<(Message<'f>, Seal), SessionError> {
        let v = verify_frame(frame, Context::Session(&self.id)).map_err(SessionError::Frame)?;
        self.recv.check(v.seq()).map_err(SessionError::Replay)?;
        if v.sender() != self.peer {
            return Err(SessionError::WrongSender { got: v.sender() });
        }
        let seal = Seal {
            signer: v.sender(),
            seq: v.seq(),
            session: self.id,
            signature: *v.signature(),
        };
        Ok((v.into_message(), seal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Ping;

    const BUF: usize = 1024;

    fn intro(port: u16) -> Intro {
        Intro {
            listen_port: port,
            caps: Capabilities::default(),
        }
    }

    /// Strips the length prefix of a written frame.
    fn frame(buf: &[u8], n: usize) -> &[u8] {
        &buf[crate::LEN_PREFIX_LEN..n]
    }

    fn handshake(a: &Keypair, b: &Keypair) -> (Session, Session) {
        let (mut out_a, mut out_b) = ([0u8; BUF], [0u8; BUF]);
        let init = Initiator::new([1; 32], Some(b.node_id()));
        let n = init.write_hello(a, &intro(1), &mut out_a).unwrap();
        let (wait, m) = Responder::new([2; 32])
            .read_hello(b, frame(&out_a, n), &intro(2), &mut out_b)
            .unwrap();
        assert_eq!(wait.peer(), a.node_id());
        assert_eq!(wait.intro().listen_port, 1);
        let confirm = init.read_ack(a.node_id(), frame(&out_b, m)).unwrap();
        assert_eq!(confirm.peer(), b.node_id());
        let (sa, theirs, n) = confirm.confirm(a, &intro(1), &mut out_a).unwrap();
        assert_eq!(theirs.listen_port, 2);
        let (sb, _) = wait.read_confirm(b.node_id(), frame(&out_a, n)).unwrap();
        (sa, sb)
    }

    #[test]
    fn both_sides_reach_one_session_and_exchange_frames() {
        let (a, b) = (Keypair::from_seed([7; 32]), Keypair::from_seed([8; 32]));
        let (mut sa, mut sb) = handshake(&a, &b);
        assert_eq!(sa.id(), sb.id());
        assert!(sa.is_initiator() && !sb.is_initiator());
        let mut out = [0u8; BUF];
        let ping = Message::Ping(Ping { nonce: 5 });
        let n = sa.write(&a, &ping, &mut out).unwrap();
        assert_eq!(sb.read(frame(&out, n)), Ok(ping.clone()));
        // The same frame again is a replay.
        assert!(matches!(
            sb.read(frame(&out, n)),
            Err(SessionError::Replay(_))
        ));
        let n = sb.write(&b, &ping, &mut out).unwrap();
        assert_eq!(sa.read(frame(&out, n)), Ok(ping));
    }

    #[test]
    fn the_wire_bytes_follow_the_spec_sequence_numbers() {
        let (a, b) = (Keypair::from_seed([7; 32]), Keypair::from_seed([8; 32]));
        let mut out = [0u8; BUF];
        let init = Initiator::new([1; 32], None);
        let n = init.write_hello(&a, &intro(1), &mut out).unwrap();
        let v = verify_frame(frame(&out, n), Context::Hello).unwrap();
        assert_eq!(v.seq(), 0);
        let (mut sa, mut sb) = handshake(&a, &b);
        let ping = Message::Ping(Ping { nonce: 1 });
        let n = sa.write(&a, &ping, &mut out).unwrap();
        let id = *sa.id();
        let v = verify_frame(frame(&out, n), Context::Session(&id)).unwrap();
        assert_eq!(v.seq(), 2, "initiator: Hello 0, confirm 1, then 2");
        let n = sb.write(&b, &ping, &mut out).unwrap();
        let v = verify_frame(frame(&out, n), Context::Session(&id)).unwrap();
        assert_eq!(v.seq(), 1, "responder: HelloAck 0, then 1");
    }

    #[test]
    fn an_answer_from_another_key_than_expected_fails() {
        let (a, b, c) = (
            Keypair::from_seed([7; 32]),
            Keypair::from_seed([8; 32]),
            Keypair::from_seed([9; 32]),
        );
        let (mut out_a, mut out_b) = ([0u8; BUF], [0u8; BUF]);
        let init = Initiator::new([1; 32], Some(c.node_id()));
        let n = init.write_hello(&a, &intro(1), &mut out_a).unwrap();
        let (_, m) = Responder::new([2; 32])
            .read_hello(&b, frame(&out_a, n), &intro(2), &mut out_b)
            .unwrap();
        assert_eq!(
            init.read_ack(a.node_id(), frame(&out_b, m)),
            Err(HandshakeError::WrongPeer {
                expected: c.node_id(),
                got: b.node_id()
            })
        );
    }

    #[test]
    fn an_ack_for_another_hello_and_a_hello_from_ourselves_fail() {
        let (a, b) = (Keypair::from_seed([7; 32]), Keypair::from_seed([8; 32]));
        let (mut out_a, mut out_b) = ([0u8; BUF], [0u8; BUF]);
        let n = Initiator::new([1; 32], None)
            .write_hello(&a, &intro(1), &mut out_a)
            .unwrap();
        let (_, m) = Responder::new([2; 32])
            .read_hello(&b, frame(&out_a, n), &intro(2), &mut out_b)
            .unwrap();
        let other = Initiator::new([3; 32], None);
        assert_eq!(
            other.read_ack(a.node_id(), frame(&out_b, m)),
            Err(HandshakeError::Mismatch)
        );
        let r = Responder::new([2; 32]).read_hello(&a, frame(&out_a, n), &intro(1), &mut out_b);
        assert_eq!(r.err(), Some(HandshakeError::SelfConnection));
    }

    #[test]
    fn a_refusal_reaches_the_other_side_as_goodbye() {
        let (a, b) = (Keypair::from_seed([7; 32]), Keypair::from_seed([8; 32]));
        let (mut out_a, mut out_b) = ([0u8; BUF], [0u8; BUF]);
        let init = Initiator::new([1; 32], None);
        let n = init.write_hello(&a, &intro(1), &mut out_a).unwrap();
        let (wait, m) = Responder::new([2; 32])
            .read_hello(&b, frame(&out_a, n), &intro(2), &mut out_b)
            .unwrap();
        let n = init
            .read_ack(a.node_id(), frame(&out_b, m))
            .unwrap()
            .refuse(&a, GoodbyeReason::NotAllowed, &mut out_a)
            .unwrap();
        assert_eq!(
            wait.read_confirm(b.node_id(), frame(&out_a, n)),
            Err(HandshakeError::Goodbye(GoodbyeReason::NotAllowed))
        );
    }

    #[test]
    fn the_states_fit_a_microcontroller() {
        assert!(core::mem::size_of::<Initiator>() <= 65);
        assert!(core::mem::size_of::<Responder>() <= 32);
        assert!(core::mem::size_of::<Session>() <= 128);
        assert!(core::mem::size_of::<AwaitConfirm>() <= 408);
        assert!(core::mem::size_of::<Confirm>() <= 408);
    }
}
