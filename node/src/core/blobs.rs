//! Model (blob) transfer over sessions: serving chunks of the models this node
//! provides, and fetching a model a task needs but this worker lacks: in
//! chunks of at most `BLOB_CHUNK_LEN`, resumable from the bytes already held
//! (from any peer that provides it), SHA-256-checked before use, and bounded by
//! the model cache limit. It owns the models provided, held and in transfer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use p2pa_protocol::{BlobChunk, BlobRequest, ErrorCode, Hash32, Message, NodeId, BLOB_CHUNK_LEN};

use super::output::Event;
use super::reason::FetchError;
use super::receipt::sha256;
use super::{Config, Wire};
use crate::hex::hex;

/// A model being fetched.
#[derive(Debug)]
struct Fetch {
    /// The peer asked for the next chunk, if any.
    from: Option<NodeId>,
    buf: Vec<u8>,
    /// Its size, from the first chunk (0 before).
    total: u64,
    /// When it last got a chunk (or started).
    progress: Instant,
}

/// What a received chunk completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// Nothing yet (more chunks to come, or a stale chunk).
    Pending,
    /// The model is here, verified; jobs waiting for it can start.
    Done,
    /// The fetch was given up; jobs waiting for the model fail.
    Failed(FetchError),
}

/// The models this node provides, holds and fetches.
#[derive(Debug, Default)]
pub(crate) struct Blobs {
    /// Models this node serves to workers, by hash.
    provided: BTreeMap<Hash32, Arc<[u8]>>,
    /// Models this node holds and can run, most recently added last.
    held: Vec<Hash32>,
    fetches: BTreeMap<Hash32, Fetch>,
}

impl Blobs {
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

    /// A peer asks for a range of a model this node provides.
    pub(crate) fn on_request(&self, peer: NodeId, req: &BlobRequest, w: &mut Wire<'_>) {
        let Some(bytes) = self.provided.get(&req.hash) else {
            let detail = format!("no blob {}", hex(&req.hash));
            let error = p2pa_protocol::Error {
                code: ErrorCode::NotFound,
                detail: &detail,
            };
            w.send_to(peer, &Message::Error(error));
            return;
        };
        let start = usize::try_from(req.offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let len = usize::try_from(req.max_len)
            .unwrap_or(0)
            .min(BLOB_CHUNK_LEN);
        let end = start.saturating_add(len).min(bytes.len());
        let data = bytes.get(start..end).unwrap_or(&[]);
        let chunk = Message::BlobChunk(BlobChunk {
            hash: req.hash,
            offset: req.offset,
            total_len: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            data,
        });
        if w.send_to(peer, &chunk) {
            let served = &mut w.out.stats.blob_bytes_served;
            *served = served.saturating_add(data.len() as u64);
        }
    }

    /// Makes sure model `hash` is being fetched, asking `peer` if no live peer is.
    pub(crate) fn fetch(&mut self, now: Instant, hash: Hash32, peer: NodeId, w: &mut Wire<'_>) {
        let fetch = self.fetches.entry(hash).or_insert_with(|| Fetch {
            from: None,
            buf: Vec::new(),
            total: 0,
            progress: now,
        });
        if fetch.from.is_some_and(|f| w.peers.conn_of(&f).is_some()) {
            return;
        }
        fetch.from = Some(peer);
        fetch.progress = now;
        let offset = u64::try_from(fetch.buf.len()).unwrap_or(u64::MAX);
        if offset > 0 {
            log::info!(
                "resuming fetch of model {} at byte {offset} from {}",
                hex(&hash),
                peer.short()
            );
        }
        request_chunk(hash, peer, offset, w);
    }

    /// A chunk of a model this node fetches.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_chunk(
        &mut self,
        now: Instant,
        cfg: &Config,
        peer: NodeId,
        chunk: &BlobChunk<'_>,
        w: &mut Wire<'_>,
    ) -> Fetched {
        let limit = cfg.model_cache_bytes;
        let others: u64 = self
            .fetches
            .iter()
            .filter(|(h, _)| **h != chunk.hash)
            .map(|(_, f)| f.total)
            .fold(0, u64::saturating_add);
        let Some(fetch) = self.fetches.get_mut(&chunk.hash) else {
            return Fetched::Pending;
        };
        if fetch.from != Some(peer)
            || chunk.offset != u64::try_from(fetch.buf.len()).unwrap_or(u64::MAX)
        {
            return Fetched::Pending; // stale: from an earlier source or a duplicate
        }
        if chunk.total_len > limit {
            let error = FetchError::TooLarge {
                len: chunk.total_len,
                limit,
            };
            return self.give_up(chunk.hash, error);
        }
        if others.saturating_add(chunk.total_len) > cfg.max_fetch_bytes {
            let error = FetchError::TooMuchInFlight {
                len: chunk.total_len,
                limit: cfg.max_fetch_bytes,
            };
            return self.give_up(chunk.hash, error);
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
        let fetched = &mut w.out.stats.blob_bytes_fetched;
        *fetched = fetched.saturating_add(chunk.data.len() as u64);
        let have = u64::try_from(fetch.buf.len()).unwrap_or(u64::MAX);
        if have < chunk.total_len {
            request_chunk(chunk.hash, peer, have, w);
            return Fetched::Pending;
        }
        let Some(done) = self.fetches.remove(&chunk.hash) else {
            return Fetched::Pending;
        };
        let actual = sha256(&done.buf);
        if actual != chunk.hash {
            let error = FetchError::HashMismatch {
                from: peer,
                actual,
                wanted: chunk.hash,
            };
            return self.give_up(chunk.hash, error);
        }
        log::info!(
            "fetched model {} ({have} bytes) from {}",
            hex(&chunk.hash),
            peer.short()
        );
        self.add_held(chunk.hash);
        w.out.event(Event::ModelFetched {
            hash: chunk.hash,
            bytes: done.buf,
        });
        Fetched::Done
    }

    /// Drops a fetch (the router fails the jobs waiting for it).
    fn give_up(&mut self, hash: Hash32, error: FetchError) -> Fetched {
        self.fetches.remove(&hash);
        log::warn!("model {}: {error}", hex(&hash));
        Fetched::Failed(error)
    }

    /// Bytes held by fetches in progress.
    pub(crate) fn in_flight_bytes(&self) -> usize {
        self.fetches.values().map(|f| f.buf.len()).sum()
    }

    /// When the first fetch stalls.
    pub(crate) fn next_deadline(&self, cfg: &Config) -> Option<Instant> {
        self.fetches
            .values()
            .map(|f| {
                f.progress
                    .checked_add(cfg.fetch_stall)
                    .unwrap_or(f.progress)
            })
            .min()
    }

    /// Gives up fetches that got no chunk for `fetch_stall`; returns them.
    pub(crate) fn stalled(&mut self, now: Instant, cfg: &Config) -> Vec<(Hash32, FetchError)> {
        let secs = cfg.fetch_stall.as_secs();
        let dead: Vec<Hash32> = self
            .fetches
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.progress) >= cfg.fetch_stall)
            .map(|(h, _)| *h)
            .collect();
        dead.into_iter()
            .map(|h| {
                self.give_up(h, FetchError::Stalled { secs });
                (h, FetchError::Stalled { secs })
            })
            .collect()
    }

    /// Drops the fetches no task waits for any more (their bytes are freed).
    pub(crate) fn prune(&mut self, wanted: impl Fn(&Hash32) -> bool) {
        self.fetches.retain(|h, _| wanted(h));
    }

    /// A peer went away: the models it was sending, which need a new source.
    pub(crate) fn stalled_from(&mut self, peer: NodeId) -> Vec<Hash32> {
        self.fetches
            .iter_mut()
            .filter(|(_, f)| f.from == Some(peer))
            .map(|(h, f)| {
                f.from = None;
                *h
            })
            .collect()
    }
}

fn request_chunk(hash: Hash32, peer: NodeId, offset: u64, w: &mut Wire<'_>) {
    let req = Message::BlobRequest(BlobRequest {
        hash,
        offset,
        max_len: u32::try_from(BLOB_CHUNK_LEN).unwrap_or(u32::MAX),
    });
    w.send_to(peer, &req);
}
