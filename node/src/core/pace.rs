//! The floor rate of a tensor transfer: a blob held for a peer (an output it
//! fetches) or from a peer (an input this node fetches) must move at least
//! `min_transfer_rate` bytes a second, judged over windows of
//! `transfer_window`, or it is dropped. Progress is new bytes only (a peer
//! that asks for the same chunk again and again makes none), so a transfer
//! is over, one way or the other, within `len / min_transfer_rate` plus a
//! window, whatever the peer asks.

use std::time::{Duration, Instant};

use super::config::BlobConfig;

/// Progress of one transfer in its current window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// When the current window started.
    since: Instant,
    /// Bytes moved in it.
    moved: u64,
    /// The furthest byte moved so far (new bytes are those beyond it).
    high: u64,
}

/// A transfer judged at the end of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its window is not over, or it moved enough (a new window started).
    Fine,
    /// It moved `moved` bytes in a window of `secs` seconds, under the floor.
    Slow { moved: u64, secs: u64 },
}

impl Pace {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            since: now,
            moved: 0,
            high: 0,
        }
    }

    /// When its current window started.
    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    /// The transfer now reaches byte `end` (counts only past the furthest).
    pub(crate) fn reached(&mut self, end: u64) {
        if end > self.high {
            self.moved = self.moved.saturating_add(end.saturating_sub(self.high));
            self.high = end;
        }
    }

    /// When its current window ends (`None`: no floor is set).
    pub(crate) fn due(&self, cfg: &BlobConfig) -> Option<Instant> {
        (cfg.min_transfer_rate > 0).then(|| {
            self.since
                .checked_add(cfg.transfer_window)
                .unwrap_or(self.since)
        })
    }

    /// Whether, `grace` or more into its window, it has moved less than the
    /// floor rate would have by now (judged early, while others wait for
    /// what it holds).
    pub(crate) fn lagging(&self, now: Instant, cfg: &BlobConfig, grace: Duration) -> bool {
        let into = now.saturating_duration_since(self.since);
        cfg.min_transfer_rate > 0
            && into >= grace
            && self.moved < floor_bytes(cfg.min_transfer_rate, into)
    }

    /// Judges the window if it is over: too slow, or fine (the next window
    /// starts now).
    pub(crate) fn judge(&mut self, now: Instant, cfg: &BlobConfig) -> Verdict {
        let Some(due) = self.due(cfg) else {
            return Verdict::Fine;
        };
        if now < due {
            return Verdict::Fine;
        }
        let window = now
            .saturating_duration_since(self.since)
            .max(Duration::from_millis(1));
        let floor = floor_bytes(cfg.min_transfer_rate, window);
        if self.moved < floor {
            return Verdict::Slow {
                moved: self.moved,
                secs: window.as_secs().max(1),
            };
        }
        self.since = now;
        self.moved = 0;
        Verdict::Fine
    }
}

/// Bytes a transfer at `rate` bytes a second moves in `window`.
fn floor_bytes(rate: u64, window: Duration) -> u64 {
    let bytes = u128::from(rate).saturating_mul(window.as_millis()) / 1000;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;

    fn cfg() -> BlobConfig {
        BlobConfig::from(&Config {
            min_transfer_rate: 1000,
            transfer_window: Duration::from_secs(2),
            ..Config::default()
        })
    }

    #[test]
    fn a_transfer_under_the_floor_is_slow_at_its_windows_end() {
        let (t0, cfg) = (Instant::now(), cfg());
        let mut p = Pace::new(t0);
        p.reached(1500);
        assert_eq!(p.judge(t0 + Duration::from_secs(1), &cfg), Verdict::Fine);
        assert_eq!(p.due(&cfg), Some(t0 + Duration::from_secs(2)));
        assert_eq!(
            p.judge(t0 + Duration::from_secs(2), &cfg),
            Verdict::Slow {
                moved: 1500,
                secs: 2
            }
        );
    }

    #[test]
    fn only_new_bytes_count_and_each_window_starts_afresh() {
        let (t0, cfg) = (Instant::now(), cfg());
        let mut p = Pace::new(t0);
        p.reached(2500);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(p.judge(t1, &cfg), Verdict::Fine);
        assert_eq!(p.due(&cfg), Some(t1 + Duration::from_secs(2)));
        // The same bytes asked again are no progress.
        for _ in 0..100 {
            p.reached(2500);
        }
        p.reached(2600);
        assert_eq!(
            p.judge(t1 + Duration::from_secs(2), &cfg),
            Verdict::Slow {
                moved: 100,
                secs: 2
            }
        );
    }

    #[test]
    fn under_pressure_a_transfer_lags_once_its_grace_has_passed() {
        let (t0, cfg) = (Instant::now(), cfg());
        let grace = Duration::from_millis(500);
        let mut p = Pace::new(t0);
        p.reached(100);
        assert!(!p.lagging(t0 + Duration::from_millis(400), &cfg, grace));
        assert!(p.lagging(t0 + Duration::from_millis(500), &cfg, grace));
        p.reached(700); // 700 bytes by 0.6 s: on pace for 1 000 a second
        assert!(!p.lagging(t0 + Duration::from_millis(600), &cfg, grace));
    }

    #[test]
    fn no_floor_no_verdict() {
        let cfg = BlobConfig {
            min_transfer_rate: 0,
            ..cfg()
        };
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        assert_eq!(p.due(&cfg), None);
        assert_eq!(p.judge(t0 + Duration::from_secs(600), &cfg), Verdict::Fine);
    }
}
