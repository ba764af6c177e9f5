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
/// Tokens of an address's bucket that only a dial worth more than a single
/// beacon may take (see `take`).
pub(crate) const RESERVED: u32 = 2;
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
    /// caller tries later, see [`ready_at`](Self::ready_at)). The last
    /// `reserve` tokens of the address's bucket are left alone: a key heard
    /// once (all a flood of throw-away keys can show) passes [`RESERVED`],
    /// so it never spends the tokens a peer heard again and again needs.
    pub(crate) fn take(&mut self, now: Instant, ip: IpAddr, reserve: u32) -> bool {
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
        if bucket.tokens <= reserve {
            return false;
        }
        bucket.tokens = bucket.tokens.saturating_sub(1);
        self.total.tokens = self.total.tokens.saturating_sub(1);
        true
    }

    /// When a dial to `ip` that [`take`](Self::take) refused now can have a
    /// token: every dial refused for that address waits for this one
    /// instant, so the next token goes to the most worthy of them rather
    /// than to whichever asked last (a flood of new entries asks all the
    /// time).
    pub(crate) fn ready_at(&self, now: Instant, ip: IpAddr, reserve: u32) -> Instant {
        // When `b` holds more than `keep` tokens.
        let next = |b: &Bucket, keep: u32, refill: Duration| {
            let short = keep.saturating_add(1).saturating_sub(b.tokens);
            match short {
                0 => now,
                n => b.since.checked_add(refill.saturating_mul(n)).unwrap_or(now),
            }
        };
        let per_ip = self
            .per_ip
            .get(&ip)
            .map_or(now, |b| next(b, reserve, PER_IP_REFILL));
        // Never `now` itself: a refused dial must not be retried in a loop.
        let soonest = now.checked_add(Duration::from_millis(1)).unwrap_or(now);
        per_ip.max(next(&self.total, 0, TOTAL_REFILL)).max(soonest)
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
        let granted = (0..100).filter(|_| b.take(t0, ip, 0)).count();
        assert_eq!(granted, PER_IP_BURST as usize);
        assert_eq!(b.ready_at(t0, ip, 0), t0 + PER_IP_REFILL);
        assert!(!b.take(t0 + Duration::from_millis(900), ip, 0));
        assert_eq!(
            b.ready_at(t0 + Duration::from_millis(900), ip, 0),
            t0 + PER_IP_REFILL
        );
        assert!(b.take(t0 + Duration::from_millis(1000), ip, 0));
        assert!(!b.take(t0 + Duration::from_millis(1000), ip, 0));
        // Another address is not affected.
        assert!(b.take(t0, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)), 0));
    }

    #[test]
    fn the_reserve_is_left_to_dials_that_ask_for_none() {
        let t0 = Instant::now();
        let mut b = DialBudget::new(t0);
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let cheap = (0..100).filter(|_| b.take(t0, ip, RESERVED)).count();
        assert_eq!(cheap, (PER_IP_BURST - RESERVED) as usize);
        // A cheap dial waits for a refill above the reserve; a worthy one
        // goes now.
        let t1 = t0 + PER_IP_REFILL;
        assert_eq!(b.ready_at(t0, ip, RESERVED), t1);
        assert_eq!(b.ready_at(t0, ip, 0), t0 + Duration::from_millis(1));
        assert!(b.take(t1, ip, RESERVED));
        assert!(!b.take(t1, ip, RESERVED));
        let worthy = (0..100).filter(|_| b.take(t1, ip, 0)).count();
        assert_eq!(worthy, RESERVED as usize);
    }

    #[test]
    fn the_total_is_bounded_across_addresses() {
        let t0 = Instant::now();
        let mut b = DialBudget::new(t0);
        let granted = (0..1000u32)
            .filter(|i| b.take(t0, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 0))
            .count();
        assert_eq!(granted, TOTAL_BURST as usize);
        let fresh = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
        assert_eq!(b.ready_at(t0, fresh, 0), t0 + TOTAL_REFILL);
        let later = t0 + TOTAL_REFILL * 10;
        let more = (2000..3000u32)
            .filter(|i| b.take(later, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 0))
            .count();
        assert_eq!(more, 10);
    }
}
