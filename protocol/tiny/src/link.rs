//! A blocking byte link, frames over it, and the handshake over it.

use core::fmt;

use p2pa_protocol::{
    version_notice, EncodeError, HandshakeError, Identity, Initiator, Intro, NodeId, Nonce,
    Responder, Session, SessionError, StreamDecoder, StreamError,
};

/// A reliable, ordered byte stream (a TCP socket), read and written by
/// blocking calls. Errors are the link's own.
pub trait Link {
    /// The link's error.
    type Error: fmt::Debug;
    /// Reads at least one byte into `buf` (0: the peer closed the link).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
impl<T: std::io::Read + std::io::Write> Link for T {
    type Error = std::io::Error;
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        std::io::Read::read(self, buf)
    }
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        std::io::Write::write_all(self, bytes)
    }
}

/// Why a link-level step failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkError<E> {
    /// The link itself failed.
    Link(E),
    /// The peer closed the link.
    Closed,
    /// The peer announced a frame this side cannot hold.
    Stream(StreamError),
    /// The handshake failed.
    Handshake(HandshakeError),
    /// A session frame was refused.
    Session(SessionError),
    /// Our own frame did not fit the send buffer.
    Encode(EncodeError),
}

impl<E: fmt::Debug> fmt::Display for LinkError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Link(e) => write!(f, "link error: {e:?}"),
            Self::Closed => f.write_str("the peer closed the link"),
            Self::Stream(e) => e.fmt(f),
            Self::Handshake(e) => e.fmt(f),
            Self::Session(e) => e.fmt(f),
            Self::Encode(e) => e.fmt(f),
        }
    }
}

impl<E> From<HandshakeError> for LinkError<E> {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(e)
    }
}

impl<E> From<EncodeError> for LinkError<E> {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

/// Bytes read from the link at once.
pub const READ_CHUNK: usize = 512;

/// Reads length-prefixed frames of at most `RX` bytes from a link.
#[derive(Debug)]
pub struct FrameReader<const RX: usize> {
    decoder: StreamDecoder<[u8; RX]>,
    chunk: [u8; READ_CHUNK],
    start: usize,
    end: usize,
}

impl<const RX: usize> Default for FrameReader<RX> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const RX: usize> FrameReader<RX> {
    /// A reader with nothing buffered.
    pub fn new() -> Self {
        Self {
            decoder: StreamDecoder::new([0; RX]),
            chunk: [0; READ_CHUNK],
            start: 0,
            end: 0,
        }
    }

    /// The next whole record (without its length prefix, writable: it is
    /// opened in place), blocking on `link`.
    pub fn next<L: Link>(&mut self, link: &mut L) -> Result<&mut [u8], LinkError<L::Error>> {
        loop {
            if self.start >= self.end {
                let n = link.read(&mut self.chunk).map_err(LinkError::Link)?;
                if n == 0 {
                    return Err(LinkError::Closed);
                }
                self.start = 0;
                self.end = n.min(READ_CHUNK);
            }
            let mut input = self.chunk.get(self.start..self.end).unwrap_or_default();
            let before = input.len();
            let done = self
                .decoder
                .decode(&mut input)
                .map_err(LinkError::Stream)?
                .is_some();
            self.start = self
                .start
                .saturating_add(before.saturating_sub(input.len()));
            if done {
                return self.decoder.ready_frame_mut().ok_or(LinkError::Closed);
            }
        }
    }
}

/// Opens a session as the initiator: the three Noise XX messages.
/// `ephemeral` must be fresh and random; `expected`: the key to reach.
pub fn initiate<L: Link, const RX: usize>(
    link: &mut L,
    reader: &mut FrameReader<RX>,
    id: &Identity,
    ephemeral: Nonce,
    expected: Option<NodeId>,
    intro: &Intro,
    tx: &mut [u8],
) -> Result<(Session, Intro), LinkError<L::Error>> {
    let (wait, n) = Initiator::new(ephemeral, expected).write_hello(id, tx)?;
    send(link, tx, n)?;
    let confirm = wait.read_ack(id, reader.next(link)?, &|_, _| false)?;
    let (session, theirs, n) = confirm.confirm(id, intro, tx)?;
    send(link, tx, n)?;
    Ok((session, theirs))
}

/// Accepts a session as the responder: reads message 1, answers, reads
/// message 3. `ephemeral` must be fresh and random. A peer of another wire
/// version is sent a version notice (it reports the mismatch) before the
/// error returns.
pub fn respond<L: Link, const RX: usize>(
    link: &mut L,
    reader: &mut FrameReader<RX>,
    id: &Identity,
    ephemeral: Nonce,
    intro: &Intro,
    tx: &mut [u8],
) -> Result<(Session, Intro), LinkError<L::Error>> {
    let hello = reader.next(link)?;
    let (wait, n) = match Responder::new(ephemeral).read_hello(id, hello, intro, tx) {
        Ok(step) => step,
        Err(e @ HandshakeError::Version { .. }) => {
            let n = version_notice(tx)?;
            send(link, tx, n)?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    send(link, tx, n)?;
    Ok(wait.read_confirm(id, reader.next(link)?, &|_, _| false)?)
}

/// Writes the first `n` bytes of `tx` (a frame written there) to the link.
pub(crate) fn send<L: Link>(link: &mut L, tx: &[u8], n: usize) -> Result<(), LinkError<L::Error>> {
    let bytes = tx
        .get(..n)
        .ok_or(LinkError::Encode(EncodeError::BufferTooSmall {
            needed_at_least: n,
            have: tx.len(),
        }))?;
    link.write_all(bytes).map_err(LinkError::Link)
}
