//! Dial budgets: token buckets that bound how often this node opens TCP
//! connections, per destination address and in total, whatever its peer
//! table says (a flood of beacons from fresh keys naming one address must
//! not turn the node into a connection cannon).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Dials to one address that may go out at once.
const PER_IP_BURST: u32 = 8;
/// After the burst: one dial to an address per this much time.
const PER_IP_REFILL: Duration = Duration::from_secs(1);
/// Dials in total that may go out at once (a LAN's worth of peers).
const TOTAL_BURST: u32 = 64;
/// After the burst: one dial per this much time, in total.
const TOTAL_REFILL: Duration = Duration::from_millis(50);
/// Addresses whose budget is remembered; the fullest is forgotten first.
const MAX_ADDRESSES: usize = 1024;

/// A token bucket: `burst` tokens, one more every `refill`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    since: Instant,
}

impl Bucket {
    fn new(burst: u32, now: Instant) -> Self {
        Self {
            tokens: burst,
            since: now,
        }
    }

    fn refill(&mut self, now: Instant, burst: u32, refill: Duration) {
        let elapsed = now.saturating_duration_since(self.since);
        let new = elapsed
            .as_nanos()
            .checked_div(refill.as_nanos())
            .unwrap_or(0);
        let new = u32::try_from(new).unwrap_or(u32::MAX);
        if new > 0 {
            self.tokens = self.tokens.saturating_add(new).min(burst);
            let used = refill.saturating_mul(new);
            self.since = self.since.checked_add(used).unwrap_or(now);
        }
        if self.tokens == burst {
            self.since = now;
        }
    }

    fn full(&self) -> bool {
        self.tokens >= PER_IP_BURST
    }
}

/// The node's dial budget.
#[derive(Debug)]
pub(crate) struct DialBudget {
    per_ip: BTreeMap<IpAddr, Bucket>,
    total: Bucket,
}

impl DialBudget {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            per_ip: BTreeMap::new(),
            total: Bucket::new(TOTAL_BURST, now),
        }
    }

    /// Takes a token for a dial to `ip`; false if the budget is spent (the
    /// caller tries later, see [`retry_after`](Self::retry_after)).
    pub(crate) fn take(&mut self, now: Instant, ip: IpAddr) -> bool {
        self.total.refill(now, TOTAL_BURST, TOTAL_REFILL);
        if self.total.tokens == 0 {
            return false;
        }
        if !self.per_ip.contains_key(&ip) && self.per_ip.len() >= MAX_ADDRESSES {
            self.per_ip.retain(|_, b| {
                b.refill(now, PER_IP_BURST, PER_IP_REFILL);
                !b.full()
            });
        }
        let bucket = self
            .per_ip
            .entry(ip)
            .or_insert_with(|| Bucket::new(PER_IP_BURST, now));
        bucket.refill(now, PER_IP_BURST, PER_IP_REFILL);
        if bucket.tokens == 0 {
            return false;
        }
        bucket.tokens = bucket.tokens.saturating_sub(1);
        self.total.tokens = self.total.tokens.saturating_sub(1);
        true
    }

    /// How long a dial refused by the budget waits before it is tried again.
    pub(crate) const fn retry_after() -> Duration {
        PER_IP_REFILL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn one_address_gets_a_burst_then_one_dial_a_second() {
        let t0 = Instant::now();
        let mut b = DialBudget::new(t0);
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let granted = (0..100).filter(|_| b.take(t0, ip)).count();
        assert_eq!(granted, PER_IP_BURST as usize);
        assert!(!b.take(t0 + Duration::from_millis(900), ip));
        assert!(b.take(t0 + Duration::from_millis(1000), ip));
        assert!(!b.take(t0 + Duration::from_millis(1000), ip));
        // Another address is not affected.
        assert!(b.take(t0, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10))));
    }

    #[test]
    fn the_total_is_bounded_across_addresses() {
        let t0 = Instant::now();
        let mut b = DialBudget::new(t0);
        let granted = (0..1000u32)
            .filter(|i| b.take(t0, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))))
            .count();
        assert_eq!(granted, TOTAL_BURST as usize);
        let later = t0 + TOTAL_REFILL * 10;
        let more = (2000..3000u32)
            .filter(|i| b.take(later, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))))
            .count();
        assert_eq!(more, 10);
    }
}
