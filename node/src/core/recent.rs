//! Keys heard lately, remembered beyond the peer table's entries: two
//! generations of a Bloom filter over the senders of verified beacons.
//!
//! Under a flood of throw-away keys from a peer's own address, the table's
//! share for that address churns faster than an honest node beacons, so the
//! honest entry is evicted before its second beacon and would rank as a key
//! heard once forever. The filter remembers that its key was heard in the
//! last one to two seconds, so the second beacon ranks it above the fakes
//! (each heard once). Indices come from an HMAC keyed with a secret of this
//! node, so an attacker cannot pick keys that collide with an honest one.

use std::time::{Duration, Instant};

use p2pa_protocol::NodeId;

/// Bits per generation: 8 KiB. At 2 000 fresh keys a second, about 0.2 %
/// of them look heard before (three probes, 2 000 – 4 000 keys held).
const BITS: usize = 1 << 16;
const WORDS: usize = BITS / 64;
/// Bits set per key.
const PROBES: usize = 3;
/// A generation lasts this long; a key is remembered for one to two.
const GENERATION: Duration = Duration::from_secs(1);

/// The filter.
pub(crate) struct Recent {
    key: [u8; 32],
    current: Box<[u64]>,
    previous: Box<[u64]>,
    since: Instant,
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recent").finish_non_exhaustive()
    }
}

impl Recent {
    /// A filter whose indices are keyed with `secret` (derived from the
    /// node's own key: stable for a run, unknown to others).
    pub(crate) fn new(secret: &[u8; 32], now: Instant) -> Self {
        Self {
            key: hmac_sha256::HMAC::mac(b"p2pa/recent-beacon-keys", secret),
            current: vec![0; WORDS].into_boxed_slice(),
            previous: vec![0; WORDS].into_boxed_slice(),
            since: now,
        }
    }

    /// Records `id` as heard now; returns whether it was heard in the last
    /// generation or two (or, rarely, collides with keys that were).
    pub(crate) fn heard(&mut self, now: Instant, id: &NodeId) -> bool {
        let age = now.saturating_duration_since(self.since);
        if age >= GENERATION {
            core::mem::swap(&mut self.current, &mut self.previous);
            self.current.fill(0);
            if age >= GENERATION.saturating_mul(2) {
                self.previous.fill(0); // silent for a while: both are stale
            }
            self.since = now;
        }
        let mac = hmac_sha256::HMAC::mac(id.0, self.key);
        let mut before_now = true;
        let mut before_prev = true;
        for chunk in mac.chunks_exact(4).take(PROBES) {
            let mut b = [0u8; 4];
            b.copy_from_slice(chunk);
            let bit = usize::try_from(u32::from_le_bytes(b)).unwrap_or(0) % BITS;
            let (word, mask) = (bit / 64, 1u64 << (bit % 64));
            if let Some(w) = self.current.get_mut(word) {
                before_now &= *w & mask != 0;
                *w |= mask;
            }
            before_prev &= self.previous.get(word).is_some_and(|w| w & mask != 0);
        }
        before_now || before_prev
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]
    use super::*;

    fn id(n: u32) -> NodeId {
        let mut k = [7u8; 32];
        k[..4].copy_from_slice(&n.to_le_bytes());
        NodeId(k)
    }

    #[test]
    fn a_key_is_remembered_for_a_generation_or_two_and_floods_rarely_collide() {
        let t0 = Instant::now();
        let mut r = Recent::new(&[1; 32], t0);
        assert!(!r.heard(t0, &id(u32::MAX)));
        // 2 000 fresh keys in the next second: few look heard before.
        let false_hits = (0..2_000)
            .filter(|n| r.heard(t0 + Duration::from_micros(400 * n), &id(*n as u32)))
            .count();
        assert!(false_hits < 20, "{false_hits} of 2 000 fresh keys");
        // The honest key, heard again 100 ms and 1.5 s later: remembered.
        assert!(r.heard(t0 + Duration::from_millis(100), &id(u32::MAX)));
        assert!(r.heard(t0 + Duration::from_millis(1_500), &id(u32::MAX)));
        // After more than two generations of silence it is forgotten.
        assert!(!r.heard(t0 + Duration::from_secs(5), &id(u32::MAX)));
    }

    #[test]
    fn another_secret_gives_other_indices() {
        let t0 = Instant::now();
        let mut a = Recent::new(&[1; 32], t0);
        let mut b = Recent::new(&[2; 32], t0);
        a.heard(t0, &id(1));
        b.heard(t0, &id(1));
        assert_ne!(a.current, b.current);
    }
}
