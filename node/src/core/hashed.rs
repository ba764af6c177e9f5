//! Bytes with their SHA-256, hashed once where they are made: a task's
//! input is named by its hash in the offer, in the blob store that lends
//! it and in a batch's journal, and hashing 1 MB costs about 0.6 ms.

use super::receipt::sha256;

/// Bytes and their SHA-256. The hash is computed by [`Hashed::new`] and the
/// bytes cannot change after, so the two always agree.
#[derive(Clone, PartialEq, Eq)]
pub struct Hashed {
    bytes: Vec<u8>,
    sha256: [u8; 32],
}

impl Hashed {
    /// Hashes `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        let sha256 = sha256(&bytes);
        Self { bytes, sha256 }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl Default for Hashed {
    /// No bytes (and the hash of none).
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl From<Vec<u8>> for Hashed {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl From<&[u8]> for Hashed {
    fn from(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }
}

impl std::fmt::Debug for Hashed {
    /// The length and the hash, not a megabyte of bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Hashed({} bytes, sha256 {})",
            self.bytes.len(),
            crate::hex::hex(self.sha256.get(..8).unwrap_or(&[]))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_bytes_hash_however_it_is_made() {
        let a = Hashed::new(b"input".to_vec());
        assert_eq!(a.sha256(), sha256(b"input"));
        assert_eq!(Hashed::from(&b"input"[..]), a);
        assert_eq!(Hashed::default().sha256(), sha256(b""));
        assert_eq!(a.clone().into_bytes(), b"input");
        assert_eq!((a.len(), a.is_empty()), (5, false));
        assert!(format!("{a:?}").contains("5 bytes"));
    }
}
