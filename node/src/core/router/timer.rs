//! The core's timers: one enum, in the order `handle_timeout` runs them.
//! Each part keeps its own deadlines; the router asks it by name and fires
//! each part's timers with what that part needs.

use std::time::Instant;

use p2pa_protocol::GoodbyeReason;

use crate::core::{link_of, CloseReason, Core, CoreLink, Fetched};

/// The node's timers, in the order `handle_timeout` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Beacon burst and period, query answers.
    Beacons,
    /// Handshake timeouts, keepalive, dead peers.
    Sessions,
    /// Dials, redials with backoff, forgetting silent peers.
    Peers,
    /// Task deadlines and retries of the tasks this node requested.
    Requester,
    /// Deadlines of the jobs this node runs; free slots filled.
    Worker,
    /// Model fetches that stalled.
    Blobs,
}

impl Timer {
    pub(crate) const ALL: [Timer; 6] = [
        Self::Beacons,
        Self::Sessions,
        Self::Peers,
        Self::Requester,
        Self::Worker,
        Self::Blobs,
    ];
}

impl Core {
    fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Beacons => self.beacons.next_deadline(),
            Timer::Sessions => self.sessions.next_deadline(),
            Timer::Peers => self.peers.next_deadline(self.id),
            Timer::Requester => self.requester.next_deadline(),
            Timer::Worker => self.worker.next_deadline(),
            Timer::Blobs => {
                let pressure = self.worker.waits_for_output_room(&self.blobs);
                self.blobs.next_deadline(pressure)
            }
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Timer::ALL.iter().filter_map(|&t| self.deadline(t)).min()
    }

    /// Timers: beacons, keepalive, handshake and task deadlines, redials.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            self.fire(timer, now);
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) {
        let cfg = &self.cfg;
        match timer {
            Timer::Beacons => {
                let period = self.peers.beacon_period();
                let (worker, blobs) = (&self.worker, &self.blobs);
                let caps = || {
                    let mut caps = worker.capabilities(blobs);
                    if cfg.quiet_beacons {
                        caps.models.clear(); // beacons travel in the clear
                        caps.run_us.clear();
                    }
                    caps
                };
                let rng = &mut *self.rng;
                self.beacons
                    .timers(now, &self.key, period, &caps, rng, &mut self.out);
            }
            Timer::Sessions => self.session_timers(now),
            Timer::Peers if self.shutting_down => {}
            Timer::Peers => {
                let at_cap = self.sessions.len() >= cfg.max_conns;
                let (sessions, out) = (&mut self.sessions, &mut self.out);
                let mut dial = |addr, expected| sessions.dial(now, addr, expected, out);
                self.peers.timers(now, self.id, at_cap, &mut dial);
            }
            Timer::Requester => {
                self.requester.timers(now, &mut link_of!(self));
                self.prune_fetches();
            }
            Timer::Worker => {
                self.worker.timers(now, &self.blobs, &mut link_of!(self));
                self.prune_fetches();
                self.fetch_inputs(now);
            }
            Timer::Blobs => {
                for (hash, want, error) in self.blobs.stalled(now) {
                    self.fetched(now, hash, Fetched::Failed(want, error));
                }
                // Outputs dropped unfetched may have made room.
                self.worker.start_jobs(&self.blobs, &mut link_of!(self));
                self.make_output_room(now);
            }
        }
    }

    /// Handshake timeouts and dead sessions close; live ones are pinged.
    fn session_timers(&mut self, now: Instant) {
        let expired = self.sessions.expired(now);
        for (conn, _) in expired.handshakes {
            self.fail(now, conn, CloseReason::HandshakeTimeout);
        }
        for conn in expired.dead {
            self.goodbye(now, conn, GoodbyeReason::Timeout);
        }
        let rng = &mut *self.rng;
        self.sessions.keepalive(now, &self.key, rng, &mut self.out);
    }
}
