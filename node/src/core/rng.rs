//! Randomness, injected into the core: the OS source in the node, a seeded
//! generator in simulations so a run is the same every time.

use std::time::Duration;

/// The random source failed: there are no safe nonces or keys to be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntropyError;

impl std::fmt::Display for EntropyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the random source failed")
    }
}

impl std::error::Error for EntropyError {}

/// A source of random bytes.
pub trait Entropy: Send {
    /// Fills `out` with random bytes, or says it cannot.
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyError>;

    /// A random `u64` for spreading timers apart and numbering tasks; 0 when
    /// the source fails (nothing secret depends on it: nonces use `fill`).
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        match self.fill(&mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(EntropyError) => 0,
        }
    }
}

/// SplitMix64: deterministic, for simulations and tests. Not for production
/// nonces.
#[derive(Debug, Clone)]
pub struct SeededEntropy(u64);

impl SeededEntropy {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn step(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyError> {
        for chunk in out.chunks_mut(8) {
            let v = self.step().to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(v.get(..n).unwrap_or(&[]));
        }
        Ok(())
    }
}

/// `base` ± `base`/8, uniformly: spreads timers of many nodes apart.
pub(crate) fn jitter(rng: &mut dyn Entropy, base: Duration) -> Duration {
    let quarter = base.checked_div(4).unwrap_or_default();
    let quarter_ms = u64::try_from(quarter.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let offset = rng.next_u64().checked_rem(quarter_ms).unwrap_or(0);
    base.saturating_sub(quarter.checked_div(2).unwrap_or_default())
        .saturating_add(Duration::from_millis(offset))
}
