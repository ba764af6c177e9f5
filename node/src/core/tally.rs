//! A short count per peer: the few requesters or sources a node serves at
//! once, where a linear scan beats a map.

use p2pa_protocol::NodeId;

/// Bytes (or jobs) per peer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally(Vec<(NodeId, u64)>);

impl Tally {
    pub(crate) fn add(&mut self, peer: NodeId, n: u64) {
        match self.0.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, c)) => *c = c.saturating_add(n),
            None => self.0.push((peer, n)),
        }
    }

    /// `peer`'s count (0 if it has none).
    pub(crate) fn of(&self, peer: NodeId) -> u64 {
        self.0.iter().find(|(p, _)| *p == peer).map_or(0, |e| e.1)
    }

    /// The peer with the highest count (the highest id among equals).
    pub(crate) fn max(&self) -> Option<(NodeId, u64)> {
        self.0.iter().max_by_key(|(p, n)| (*n, *p)).copied()
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| *n).fold(0, u64::saturating_add)
    }
}

impl FromIterator<(NodeId, u64)> for Tally {
    fn from_iter<I: IntoIterator<Item = (NodeId, u64)>>(iter: I) -> Self {
        let mut t = Tally::default();
        for (peer, n) in iter {
            t.add(peer, n);
        }
        t
    }
}
