//! A receive buffer for servers: it grows to the largest frame seen (at most
//! [`MAX_FRAME_LEN`]), so an idle connection holds almost nothing. Needs an
//! allocator (feature `alloc`); boards use a fixed `[u8; N]` instead.

extern crate alloc;

use alloc::vec::Vec;

use crate::codec::FrameBuffer;
use crate::limits::MAX_FRAME_LEN;

/// A [`FrameBuffer`] that grows on demand. The length prefix is checked
/// against the limit before it grows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GrowBuf(Vec<u8>);

impl GrowBuf {
    /// An empty buffer (it allocates with the first frame).
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Bytes it holds now (the largest frame so far).
    pub fn capacity(&self) -> usize {
        self.0.len()
    }
}

impl FrameBuffer for GrowBuf {
    fn frame_mut(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > MAX_FRAME_LEN {
            return None;
        }
        if self.0.len() < len {
            self.0.resize(len, 0);
        }
        self.0.get_mut(..len)
    }

    fn frame(&self, len: usize) -> Option<&[u8]> {
        self.0.get(..len)
    }

    fn max_len(&self) -> usize {
        MAX_FRAME_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StreamDecoder, StreamError, LEN_PREFIX_LEN};

    #[test]
    fn a_refused_prefix_grows_nothing_and_a_frame_grows_it_to_its_size() {
        let mut dec = StreamDecoder::new(GrowBuf::new());
        let mut input: &[u8] = &u32::MAX.to_le_bytes();
        assert!(matches!(
            dec.decode(&mut input),
            Err(StreamError::Oversized { .. })
        ));
        let mut buf = GrowBuf::new();
        assert_eq!(buf.capacity(), 0, "nothing allocated before a frame");
        assert!(buf.frame_mut(MAX_FRAME_LEN + 1).is_none());
        assert_eq!(buf.capacity(), 0, "an oversized request allocates nothing");
        assert_eq!(buf.frame_mut(300).map(|f| f.len()), Some(300));
        assert_eq!(buf.capacity(), 300);
        assert_eq!(buf.frame_mut(LEN_PREFIX_LEN).map(|f| f.len()), Some(4));
        assert_eq!(
            buf.capacity(),
            300,
            "it never shrinks below the largest frame"
        );
    }
}
