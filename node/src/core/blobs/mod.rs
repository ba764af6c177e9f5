//! Blob transfer over sessions: models, and task inputs and outputs too large
//! for one frame. It serves chunks of the blobs this node provides (models,
//! for good) or lends (a requester's task inputs while the task lives; a
//! worker's task outputs until the requester has fetched them), and fetches
//! what this node needs: in chunks of at most `BLOB_CHUNK_LEN`, resumable from
//! the bytes already held (from any peer that has it), SHA-256-checked before
//! use, bounded in size per blob and in total. It owns the models provided,
//! held and in transfer, and the blobs lent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pa_protocol::{BlobChunk, BlobRequest, ErrorCode, Hash32, Message, NodeId, BLOB_CHUNK_LEN};

use super::config::BlobConfig;
use super::link::Link;
use super::output::Order;
use super::pace::{Pace, Verdict};
use super::reason::FetchError;
use super::receipt::sha256;
use super::stats::add;
use super::tally::Tally;
use crate::hex::hex;

mod limits;
use limits::{too_large, InFlight};

/// What a blob is fetched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// A model a job needs (it goes to the store).
    Model,
    /// A job's input (it goes to the job).
    Input,
    /// A task's output (it goes to the requester part).
    Output,
}

/// A blob lent to peers for a while.
#[derive(Debug)]
struct Lent {
    /// Shared, not copied: a task's input is lent as the buffer it was
    /// made in (a `Vec` moved into the `Arc`, where `Arc<[u8]>` would copy
    /// a megabyte tensor once more).
    bytes: Arc<Vec<u8>>,
    /// The only peer that may fetch it (an output); `None`: any peer that
    /// knows its hash (a task input, offered to several workers in turn).
    owner: Option<NodeId>,
    /// Tasks that lent it (it goes when they are done).
    holds: u32,
    /// When it was lent or last served.
    touched: Instant,
    /// An output's progress against the floor rate.
    pace: Pace,
    /// While a job waits for room in the output buffer: when to judge its
    /// pace early next.
    next_check: Instant,
}

/// How far into its window an output lent may be before it is judged
/// early (while a job waits for room in the output buffer), and then again
/// every half of it; at most `transfer_window`.
const LAG_GRACE: Duration = Duration::from_millis(1000);

fn lag_grace(cfg: &BlobConfig) -> Duration {
    LAG_GRACE.min(cfg.transfer_window)
}

/// Chunks a fetch keeps asked for at once: the round trip per chunk is
/// hidden behind the next ones (TCP keeps them in order).
const WINDOW: u64 = 8;

/// A blob being fetched.
#[derive(Debug)]
struct Fetch {
    want: Want,
    /// The next offset to ask for (asked up to here from `from`).
    asked: u64,
    /// The peer asked for the next chunk, if any.
    from: Option<NodeId>,
    buf: Vec<u8>,
    /// Its size: declared by whoever named the blob (an offer's input, a
    /// result's output), else announced by its first chunk (0 before). Every
    /// chunk must announce the same.
    total: u64,
    /// When it last got a chunk (or started).
    progress: Instant,
    /// A task input's or output's progress against the floor rate.
    pace: Pace,
}

/// What a received chunk completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// Nothing yet (more chunks to come, or a stale chunk).
    Pending,
    /// The blob is here, verified: a model is stored (the bytes are empty
    /// here), an input or output is handed over.
    Done(Want, Vec<u8>),
    /// The fetch was given up; whoever waited for it fails.
    Failed(Want, FetchError),
}

/// What the blobs part moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BlobStats {
    pub(crate) bytes_served: u64,
    pub(crate) bytes_fetched: u64,
}

/// The models this node provides, holds and fetches.
#[derive(Debug)]
pub(crate) struct Blobs {
    cfg: BlobConfig,
    pub(crate) stats: BlobStats,
    /// Models this node serves to workers, by hash.
    provided: BTreeMap<Hash32, Arc<[u8]>>,
    /// Models this node holds and can run, most recently added last.
    held: Vec<Hash32>,
    fetches: BTreeMap<Hash32, Fetch>,
    /// By hash and owner: one output per requester (two requesters may
    /// get the same output), one shared entry for a task input.
    lent: BTreeMap<(Hash32, Option<NodeId>), Lent>,
}

impl Blobs {
    pub(crate) fn new(cfg: BlobConfig) -> Self {
        Self {
            cfg,
            stats: BlobStats::default(),
            provided: BTreeMap::new(),
            held: Vec::new(),
            fetches: BTreeMap::new(),
            lent: BTreeMap::new(),
        }
    }

    pub(crate) fn holds(&self, hash: &Hash32) -> bool {
        self.held.contains(hash)
    }

    /// The models to advertise (most recent first, at most `n`).
    pub(crate) fn advertised(&self, n: usize) -> impl Iterator<Item = Hash32> + '_ {
        self.held.iter().rev().take(n).copied()
    }

    pub(crate) fn provided_len(&self, hash: &Hash32) -> Option<u64> {
        self.provided
            .get(hash)
            .map(|b| u64::try_from(b.len()).unwrap_or(u64::MAX))
    }

    pub(crate) fn provide(&mut self, hash: Hash32, bytes: Arc<[u8]>) {
        self.provided.insert(hash, bytes);
    }

    /// The store's models (newest first) are what this node holds.
    pub(crate) fn sync_held(&mut self, newest_first: &[Hash32]) {
        self.held = newest_first.iter().rev().copied().collect();
    }

    pub(crate) fn add_held(&mut self, hash: Hash32) {
        self.held.retain(|h| *h != hash);
        self.held.push(hash);
    }

    /// Lends `bytes` under `hash` (once more if already lent): to `owner`
    /// only, or to any peer that names the hash.
    pub(crate) fn lend(
        &mut self,
        now: Instant,
        hash: Hash32,
        bytes: Arc<Vec<u8>>,
        owner: Option<NodeId>,
    ) {
        let lent = self.lent.entry((hash, owner)).or_insert(Lent {
            bytes,
            owner,
            holds: 0,
            touched: now,
            pace: Pace::new(now),
            next_check: now,
        });
        lent.holds = lent.holds.saturating_add(1);
        lent.touched = now;
    }

    /// A job waits for room in the output buffer: drops the outputs lent
    /// whose owners have fetched them slower than the floor rate so far in
    /// their window, once [`LAG_GRACE`] of it has passed (checked again
    /// every half of that). Returns whether any went.
    pub(crate) fn drop_laggards(&mut self, now: Instant) -> bool {
        let cfg = &self.cfg;
        let grace = lag_grace(cfg);
        let before = self.lent.len();
        self.lent.retain(|(hash, _), l| {
            let Some(owner) = l.owner else { return true };
            if now < l.next_check {
                return true;
            }
            if l.pace.lagging(now, cfg, grace) {
                log::warn!(
                    "output {} dropped: {} fetches it under the floor rate while others wait",
                    hex(hash),
                    owner.short()
                );
                return false;
            }
            l.next_check = now
                .checked_add(grace.checked_div(2).unwrap_or(grace))
                .unwrap_or(now);
            true
        });
        self.lent.len() < before
    }

    /// Keeps the task inputs lent (no owner) that `wanted` still needs.
    pub(crate) fn prune_lent(&mut self, wanted: impl Fn(&Hash32) -> bool) {
        self.lent.retain(|(h, _), l| l.owner.is_some() || wanted(h));
    }

    /// Bytes of outputs lent and not fetched yet, per requester.
    pub(crate) fn lent_outputs(&self) -> Tally {
        (self.lent.values())
            .filter_map(|l| Some((l.owner?, u64::try_from(l.bytes.len()).unwrap_or(u64::MAX))))
            .collect()
    }

    /// Bytes lent now.
    pub(crate) fn lent_bytes(&self) -> usize {
        self.lent
            .values()
            .map(|l| l.bytes.len())
            .fold(0, usize::saturating_add)
    }

    /// A peer asks for a range of a blob this node provides or lends.
    pub(crate) fn on_request(
        &mut self,
        now: Instant,
        peer: NodeId,
        req: &BlobRequest,
        w: &mut dyn Link,
    ) {
        let mine = (req.hash, Some(peer));
        let key = if self.lent.contains_key(&mine) {
            mine
        } else {
            (req.hash, None)
        };
        let len = usize::try_from(req.max_len)
            .unwrap_or(0)
            .min(BLOB_CHUNK_LEN);
        let lent = self.lent.get_mut(&key);
        let held = match (self.provided.get(&req.hash), lent) {
            (Some(b), _) => Held::Provided(b.clone()),
            (None, Some(l)) => {
                l.touched = now;
                let end = req.offset.saturating_add(len as u64);
                l.pace.reached(end.min(l.bytes.len() as u64));
                Held::Lent(l.bytes.clone())
            }
            (None, None) => {
                let detail = format!("no blob {}", hex(&req.hash));
                let error = p2pa_protocol::Error {
                    code: ErrorCode::NotFound,
                    detail: &detail,
                };
                w.send_to(peer, &Message::Error(error));
                return;
            }
        };
        let bytes = held.bytes();
        let start = usize::try_from(req.offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(len).min(bytes.len());
        let data = bytes.get(start..end).unwrap_or(&[]);
        let chunk = Message::BlobChunk(BlobChunk {
            hash: req.hash,
            offset: req.offset,
            total_len: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            data,
        });
        if w.send_to(peer, &chunk) {
            add(&mut self.stats.bytes_served, data.len());
        }
        // An output goes once its owner has all of it.
        if end == bytes.len() && key.1.is_some() {
            self.lent.remove(&key);
        }
    }

    /// Whether an output is lent to `peer`, or a blob fetched from it.
    pub(crate) fn involves(&self, peer: NodeId) -> bool {
        self.lent.values().any(|l| l.owner == Some(peer))
            || self.fetches.values().any(|f| f.from == Some(peer))
    }

    /// `peer` left: the outputs lent to it go.
    pub(crate) fn peer_gone(&mut self, peer: NodeId) {
        self.lent.retain(|_, l| l.owner != Some(peer));
    }

    /// Makes sure blob `hash` is being fetched, asking `peer` if no live peer
    /// is. `declared`: its length as the offer or result that named it says
    /// (`None` for a model, or a fetch already under way).
    pub(crate) fn fetch(
        &mut self,
        now: Instant,
        hash: Hash32,
        want: Want,
        peer: NodeId,
        declared: Option<u64>,
        w: &mut dyn Link,
    ) {
        let fetch = self.fetches.entry(hash).or_insert_with(|| Fetch {
            want,
            asked: 0,
            from: None,
            buf: Vec::new(),
            total: declared.unwrap_or(0),
            progress: now,
            pace: Pace::new(now),
        });
        if fetch.from.is_some_and(|f| w.is_connected(&f)) {
            return;
        }
        fetch.from = Some(peer);
        fetch.progress = now;
        let offset = u64::try_from(fetch.buf.len()).unwrap_or(u64::MAX);
        if offset > 0 {
            log::info!(
                "resuming fetch of blob {} at byte {offset} from {}",
                hex(&hash),
                peer.short()
            );
        }
        // One chunk first: its answer says the length, then the window opens.
        fetch.asked = offset.saturating_add(CHUNK);
        request_chunk(hash, peer, offset, w);
    }

    /// A chunk of a blob this node fetches.
    pub(crate) fn on_chunk(
        &mut self,
        now: Instant,
        peer: NodeId,
        chunk: &BlobChunk<'_>,
        w: &mut dyn Link,
    ) -> Fetched {
        let cfg = &self.cfg;
        let others = self.others_in_flight(&chunk.hash, peer);
        let Some(fetch) = self.fetches.get_mut(&chunk.hash) else {
            return Fetched::Pending;
        };
        if fetch.from != Some(peer)
            || chunk.offset != u64::try_from(fetch.buf.len()).unwrap_or(u64::MAX)
        {
            return Fetched::Pending; // stale: from an earlier source or a duplicate
        }
        if fetch.total != 0 && chunk.total_len != fetch.total {
            // A lie about the length is refused before a byte is kept.
            let error = FetchError::LengthMismatch {
                from: peer,
                declared: fetch.total,
                announced: chunk.total_len,
            };
            return self.give_up(chunk.hash, error);
        }
        if let Some(error) = too_large(cfg, fetch.want, chunk.total_len, &others) {
            return self.give_up(chunk.hash, error);
        }
        if fetch.buf.capacity() == 0 {
            // The length is known and within the limits: one allocation.
            let total = usize::try_from(chunk.total_len).unwrap_or(0);
            fetch
                .buf
                .reserve_exact(total.saturating_sub(fetch.buf.len()));
        }
        fetch.total = chunk.total_len;
        fetch.progress = now;
        let room = usize::try_from(chunk.total_len)
            .unwrap_or(usize::MAX)
            .saturating_sub(fetch.buf.len());
        if chunk.data.is_empty() || chunk.data.len() > room {
            return self.give_up(chunk.hash, FetchError::BadChunk);
        }
        fetch.buf.extend_from_slice(chunk.data);
        fetch.pace.reached(fetch.buf.len() as u64);
        add(&mut self.stats.bytes_fetched, chunk.data.len());
        let have = u64::try_from(fetch.buf.len()).unwrap_or(u64::MAX);
        if have < chunk.total_len {
            let window_end = have
                .saturating_add(WINDOW.saturating_mul(CHUNK))
                .min(chunk.total_len);
            while fetch.asked < window_end {
                request_chunk(chunk.hash, peer, fetch.asked, w);
                fetch.asked = fetch.asked.saturating_add(CHUNK);
            }
            return Fetched::Pending;
        }
        self.complete(chunk.hash, peer, w)
    }

    /// Bytes announced by the fetches other than `hash`'s: all of them, and
    /// the models among them that come from `peer`.
    fn others_in_flight(&self, hash: &Hash32, peer: NodeId) -> InFlight {
        let others = self.fetches.iter().filter(|(h, _)| *h != hash);
        let (mut total, mut models_from_peer) = (0u64, 0u64);
        for (_, f) in others {
            total = total.saturating_add(f.total);
            if f.want == Want::Model && f.from == Some(peer) {
                models_from_peer = models_from_peer.saturating_add(f.total);
            }
        }
        InFlight {
            total,
            models_from_peer,
        }
    }

    /// Every byte of blob `hash` is here: checks it and hands it over.
    fn complete(&mut self, hash: Hash32, peer: NodeId, w: &mut dyn Link) -> Fetched {
        let Some(done) = self.fetches.remove(&hash) else {
            return Fetched::Pending;
        };
        let (want, have) = (done.want, done.buf.len());
        let actual = sha256(&done.buf);
        if actual != hash {
            let error = FetchError::HashMismatch {
                from: peer,
                actual,
                wanted: hash,
            };
            // The fetch is gone already: say what it was for, or whoever
            // waits for it is never told.
            return failed(want, hash, error);
        }
        if want != Want::Model {
            log::debug!("fetched {want:?} {} ({have} bytes)", hex(&hash));
            return Fetched::Done(want, done.buf);
        }
        log::info!(
            "fetched model {} ({have} bytes) from {}",
            hex(&hash),
            peer.short()
        );
        self.add_held(hash);
        w.out().order(Order::StoreModel {
            hash,
            bytes: done.buf,
        });
        Fetched::Done(Want::Model, Vec::new())
    }

    /// Drops a fetch (the router fails whoever waited for it).
    fn give_up(&mut self, hash: Hash32, error: FetchError) -> Fetched {
        let want = self.fetches.remove(&hash).map_or(Want::Model, |f| f.want);
        failed(want, hash, error)
    }

    /// Bytes held by fetches in progress.
    pub(crate) fn in_flight_bytes(&self) -> usize {
        self.fetches.values().map(|f| f.buf.len()).sum()
    }

    /// When the first fetch stalls or ends a floor-rate window, or the
    /// first output lent expires or ends one (or, under `pressure`, is due
    /// to be judged early: [`Blobs::drop_laggards`]).
    pub(crate) fn next_deadline(&self, pressure: bool) -> Option<Instant> {
        let cfg = &self.cfg;
        let stall = |t: Instant| t.checked_add(cfg.fetch_stall).unwrap_or(t);
        let fetches = self.fetches.values().flat_map(|f| {
            let paced = f.want != Want::Model;
            [Some(stall(f.progress)), f.pace.due(cfg).filter(|_| paced)]
        });
        let grace = lag_grace(cfg);
        let early = |l: &Lent| {
            let first = l.pace.since().checked_add(grace);
            (pressure && cfg.min_transfer_rate > 0)
                .then(|| l.next_check.max(first.unwrap_or(l.next_check)))
        };
        let outputs = (self.lent.values())
            .filter(|l| l.owner.is_some())
            .flat_map(|l| [Some(stall(l.touched)), l.pace.due(cfg), early(l)]);
        fetches.chain(outputs).flatten().min()
    }

    /// Gives up fetches that got no chunk for `fetch_stall`, and task
    /// inputs and outputs fetched under the floor rate; drops outputs lent
    /// that no one asked a chunk of for `fetch_stall`, or that their owner
    /// fetches under the floor rate. Returns the fetches given up.
    pub(crate) fn stalled(&mut self, now: Instant) -> Vec<(Hash32, Want, FetchError)> {
        let cfg = &self.cfg;
        self.lent.retain(|(hash, _), l| {
            let Some(owner) = l.owner else { return true };
            let verdict = l.pace.judge(now, cfg);
            if let Verdict::Slow { moved, secs } = verdict {
                log::warn!(
                    "output {} dropped: {} fetched {moved} bytes of it in {secs} s",
                    hex(hash),
                    owner.short()
                );
            }
            verdict == Verdict::Fine && now.saturating_duration_since(l.touched) < cfg.fetch_stall
        });
        let secs = cfg.fetch_stall.as_secs();
        let dead: Vec<(Hash32, FetchError)> = (self.fetches.iter_mut())
            .filter_map(|(h, f)| {
                if now.saturating_duration_since(f.progress) >= cfg.fetch_stall {
                    return Some((*h, FetchError::Stalled { secs }));
                }
                let verdict = (f.want != Want::Model).then(|| f.pace.judge(now, cfg));
                match verdict {
                    Some(Verdict::Slow { moved, secs }) => {
                        let floor = cfg.min_transfer_rate;
                        Some((*h, FetchError::TooSlow { moved, secs, floor }))
                    }
                    _ => None,
                }
            })
            .collect();
        dead.into_iter()
            .map(|(h, error)| {
                let want = match self.give_up(h, error) {
                    Fetched::Failed(want, _) => want,
                    _ => Want::Model,
                };
                (h, want, error)
            })
            .collect()
    }

    /// Drops the fetches no task waits for any more (their bytes are freed).
    pub(crate) fn prune(&mut self, wanted: impl Fn(&Hash32) -> bool) {
        self.fetches.retain(|h, _| wanted(h));
    }

    /// A peer went away: the blobs it was sending, which need a new source.
    pub(crate) fn stalled_from(&mut self, peer: NodeId) -> Vec<(Hash32, Want)> {
        self.fetches
            .iter_mut()
            .filter(|(_, f)| f.from == Some(peer))
            .map(|(h, f)| {
                f.from = None;
                (*h, f.want)
            })
            .collect()
    }
}

/// [`BLOB_CHUNK_LEN`] as a byte offset.
const CHUNK: u64 = BLOB_CHUNK_LEN as u64;

/// A fetch for `want` that failed, logged.
fn failed(want: Want, hash: Hash32, error: FetchError) -> Fetched {
    log::warn!("{want:?} blob {}: {error}", hex(&hash));
    Fetched::Failed(want, error)
}

/// A blob being served: a provided model, or bytes lent.
enum Held {
    Provided(Arc<[u8]>),
    Lent(Arc<Vec<u8>>),
}

impl Held {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Provided(b) => b,
            Self::Lent(b) => b,
        }
    }
}

fn request_chunk(hash: Hash32, peer: NodeId, offset: u64, w: &mut dyn Link) {
    let req = Message::BlobRequest(BlobRequest {
        hash,
        offset,
        max_len: u32::try_from(BLOB_CHUNK_LEN).unwrap_or(u32::MAX),
    });
    w.send_to(peer, &req);
}

#[cfg(test)]
mod tests;
