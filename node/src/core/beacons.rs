//! Beacons: the signed multicast datagrams a node announces itself with (a
//! start-up burst whose beacons ask peers to answer until a session is up, then
//! a jittered, crowd-stretched period), and the verification of the ones it
//! receives.
//! The peer table decides what a verified beacon means.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pa_protocol::{
    encode_datagram, tag_datagram, untag_datagram, verify_datagram, Beacon, Capabilities,
    FrameError, Keypair, Message, NodeId, MAX_DATAGRAM_LEN,
};

use super::config::Config;
use super::output::{bump, BadInput, Outbox, Transmit};
use super::rng::{jitter, Entropy};

/// Gap between the beacons of the start-up burst.
const BURST_GAP: Duration = Duration::from_millis(100);
/// Most a node waits before answering a query beacon (spreads the answers).
const QUERY_ANSWER_SPREAD_MS: u64 = 20;

/// A beacon whose signature holds.
#[derive(Debug)]
pub(crate) struct Heard {
    pub(crate) sender: NodeId,
    pub(crate) seq: u64,
    pub(crate) beacon: Beacon,
}

/// This node's beacon schedule.
#[derive(Debug)]
pub(crate) struct Beacons {
    /// What beacons say (the port) and how they are tagged (the network
    /// key), from the config.
    listen_port: u16,
    network_key: Option<[u8; 32]>,
    pub(crate) stats: BeaconStats,
    seq: u64,
    next: Option<Instant>,
    burst_left: u32,
    answer_query_at: Option<Instant>,
    /// A session is up: the start-up burst stops asking.
    heard: bool,
}

/// What the beacons part refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BeaconStats {
    pub(crate) forged: u64,
    pub(crate) malformed: u64,
    pub(crate) wrong_version: u64,
}

impl Beacons {
    pub(crate) fn new(cfg: &Config, now: Instant) -> Self {
        Self {
            listen_port: cfg.listen_port,
            network_key: cfg.network_key,
            stats: BeaconStats::default(),
            seq: cfg.beacon_counter_start,
            next: cfg.multicast.then_some(now),
            burst_left: if cfg.multicast { cfg.beacon_burst } else { 0 },
            answer_query_at: None,
            heard: false,
        }
    }

    /// A session is up: somebody is there and answers (and will beacon
    /// anyway), so the rest of the burst need not ask.
    pub(crate) fn heard_a_peer(&mut self) {
        self.heard = true;
    }

    /// Stops sending (shutdown).
    pub(crate) fn stop(&mut self) {
        self.next = None;
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.next, self.answer_query_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Verifies a datagram; counts and logs what it refuses. Our own beacons
    /// (looped back) come out as `None` too.
    /// With a network key, a datagram without its valid tag is dropped (and
    /// counted as forged) before its signature is checked.
    pub(crate) fn verify(
        &mut self,
        me: NodeId,
        from: SocketAddr,
        data: &[u8],
        network_key: Option<&[u8; 32]>,
        out: &mut Outbox,
    ) -> Option<Heard> {
        let data = match network_key {
            None => data,
            Some(k) => {
                let Some(frame) = untag_datagram(k, data) else {
                    bump(&mut self.stats.forged);
                    out.warn_once(
                        BadInput::ForgedBeacon,
                        format_args!("dropped datagram from {from}: no valid network-key tag"),
                    );
                    return None;
                };
                frame
            }
        };
        let verified = match verify_datagram(data) {
            Ok(v) => v,
            Err(e) => {
                let (counter, noise) = match e {
                    FrameError::UnsupportedVersion { .. } => {
                        (&mut self.stats.wrong_version, BadInput::WrongVersion)
                    }
                    FrameError::BadSignature | FrameError::BadKey => {
                        (&mut self.stats.forged, BadInput::ForgedBeacon)
                    }
                    _ => (&mut self.stats.malformed, BadInput::MalformedBeacon),
                };
                bump(counter);
                out.warn_once(noise, format_args!("dropped datagram from {from}: {e}"));
                return None;
            }
        };
        let (sender, seq) = (verified.sender(), verified.seq());
        if sender == me {
            return None; // our own beacon, looped back
        }
        match verified.into_message() {
            Message::Beacon(beacon) => Some(Heard {
                sender,
                seq,
                beacon,
            }),
            _ => None, // verify_datagram admits only beacons
        }
    }

    /// A peer asked (with a query beacon): answer soon, once.
    pub(crate) fn answer_query(&mut self, now: Instant, rng: &mut dyn Entropy) {
        if self.answer_query_at.is_none() {
            let delay = rng
                .next_u64()
                .checked_rem(QUERY_ANSWER_SPREAD_MS)
                .unwrap_or(0);
            self.answer_query_at = now.checked_add(Duration::from_millis(delay));
        }
    }

    /// Sends what is due. `period`: the beacon interval now; `caps`: what
    /// this node offers now.
    pub(crate) fn timers(
        &mut self,
        now: Instant,
        key: &Keypair,
        period: Duration,
        caps: &dyn Fn() -> Capabilities,
        rng: &mut dyn Entropy,
        out: &mut Outbox,
    ) {
        if self.answer_query_at.is_some_and(|t| t <= now) {
            self.answer_query_at = None;
            self.send(key, false, caps(), out);
        }
        let Some(at) = self.next else { return };
        if at > now {
            return;
        }
        // Every beacon of the start-up burst asks until a session is up: one
        // lost query (or its lost answer) costs a burst gap, not a period.
        let query = self.burst_left > 0 && !self.heard;
        self.send(key, query, caps(), out);
        let gap = if self.burst_left > 1 {
            self.burst_left = self.burst_left.saturating_sub(1);
            BURST_GAP
        } else {
            self.burst_left = 0;
            jitter(rng, period)
        };
        self.next = now.checked_add(gap);
    }

    fn send(&mut self, key: &Keypair, query: bool, caps: Capabilities, out: &mut Outbox) {
        let beacon = Message::Beacon(Beacon {
            tcp_port: self.listen_port,
            query,
            caps,
        });
        self.seq = self.seq.saturating_add(1);
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let n = encode_datagram(key, self.seq, &beacon, &mut buf).and_then(|n| {
            match &self.network_key {
                None => Ok(n),
                Some(k) => {
                    tag_datagram(k, &mut buf, n).ok_or(p2pa_protocol::EncodeError::TooLong {
                        max: MAX_DATAGRAM_LEN,
                    })
                }
            }
        });
        match n {
            Ok(n) => {
                let bytes = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                out.transmit(Transmit::Multicast(bytes));
            }
            Err(e) => log::error!("could not encode beacon: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(key: &Keypair, network_key: Option<&[u8; 32]>) -> Vec<u8> {
        let beacon = Message::Beacon(Beacon {
            tcp_port: 7421,
            query: false,
            caps: Capabilities::default(),
        });
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let mut n = encode_datagram(key, 1, &beacon, &mut buf).unwrap();
        if let Some(k) = network_key {
            n = tag_datagram(k, &mut buf, n).unwrap();
        }
        buf[..n].to_vec()
    }

    #[test]
    fn with_a_network_key_only_tagged_beacons_are_heard() {
        let (me, them) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
        let from: SocketAddr = "127.0.0.2:7420".parse().unwrap();
        let (k, other) = ([7u8; 32], [8u8; 32]);
        let mut out = Outbox::default();
        let mut b = Beacons::new(&Config::default(), Instant::now());
        let mut hear = |b: &mut Beacons, d: &[u8], key: Option<&[u8; 32]>| {
            b.verify(me.node_id(), from, d, key, &mut out)
                .map(|h| h.sender)
        };
        let plain = datagram(&them, None);
        let tagged = datagram(&them, Some(&k));
        assert_eq!(hear(&mut b, &plain, None), Some(them.node_id()));
        assert_eq!(hear(&mut b, &tagged, Some(&k)), Some(them.node_id()));
        assert_eq!(b.stats.forged, 0);
        assert_eq!(hear(&mut b, &plain, Some(&k)), None, "a stranger's");
        let wrong_key = datagram(&them, Some(&other));
        assert_eq!(hear(&mut b, &wrong_key, Some(&k)), None);
        assert_eq!(b.stats.forged, 2);
        // A node without the key cannot read a tagged beacon as a beacon.
        assert_eq!(hear(&mut b, &tagged, None), None);
        assert_eq!(b.stats.malformed + b.stats.forged, 3);
    }
}
