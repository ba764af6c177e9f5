//! The operating system's random source for the core's nonces and ids. Made
//! only through [`OsEntropy::new`], which fails (as an error the node's start
//! returns) when the source does not work.

use std::io;

use crate::core::{Entropy, EntropyError};

/// The operating system's generator (getrandom).
#[derive(Debug, Clone, Copy)]
pub struct OsEntropy(());

impl OsEntropy {
    /// Checks that the source works and returns it.
    pub fn new() -> io::Result<Self> {
        let mut probe = [0u8; 16];
        getrandom::fill(&mut probe).map_err(|e| {
            io::Error::other(format!("the operating system's random source failed: {e}"))
        })?;
        Ok(Self(()))
    }
}

impl Entropy for OsEntropy {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyError> {
        // It worked at start (`new`); if it fails now, the core refuses
        // whatever needed a nonce (a handshake) and says so.
        getrandom::fill(out).map_err(|e| {
            log::error!("the operating system's random source failed: {e}");
            EntropyError
        })
    }
}
