//! Model (blob) transfer over sessions: serving chunks of the models this node
//! provides, and fetching a model a task needs but this worker lacks: in
//! chunks of at most `BLOB_CHUNK_LEN`, resumable from the bytes already held
//! (from any peer that provides it), SHA-256-checked before use, and bounded by
//! the model cache limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use p2pa_protocol::{BlobChunk, BlobRequest, ErrorCode, Hash32, Message, NodeId, BLOB_CHUNK_LEN};

use super::{sha256, Core, Event};
use crate::identity::hex;

/// A model being fetched.
#[derive(Debug, Default)]
pub(crate) struct Fetch {
    /// The peer asked for the next chunk, if any.
    from: Option<NodeId>,
    buf: Vec<u8>,
}

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
}

impl Core {
    /// Requester side: serve `bytes` (a model) to workers that ask for `hash`.
    pub fn provide_model(&mut self, hash: Hash32, bytes: Arc<[u8]>) {
        self.blobs.provided.insert(hash, bytes);
    }

    /// Worker side: this node holds model `hash` (in its store) and can run it.
    pub fn add_held_model(&mut self, hash: Hash32) {
        self.blobs.held.retain(|h| *h != hash);
        self.blobs.held.push(hash);
    }

    pub(super) fn on_blob_request(&mut self, peer: NodeId, req: &BlobRequest) {
        let Some(bytes) = self.blobs.provided.get(&req.hash).cloned() else {
            let detail = format!("no blob {}", hex(&req.hash));
            self.send_to_peer(
                peer,
                &Message::Error(p2pa_protocol::Error {
                    code: ErrorCode::NotFound,
                    detail: &detail,
                }),
            );
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
        if self.send_to_peer(peer, &chunk) {
            self.stats.blob_bytes_served = self
                .stats
                .blob_bytes_served
                .saturating_add(data.len() as u64);
        }
    }

    /// Makes sure model `hash` is being fetched, asking `peer` if no live peer is.
    pub(super) fn fetch_model(&mut self, hash: Hash32, peer: NodeId) {
        let connected = self.connected_peers();
        let fetch = self.blobs.fetches.entry(hash).or_default();
        if fetch.from.is_some_and(|f| connected.contains(&f)) {
            return;
        }
        fetch.from = Some(peer);
        let offset = u64::try_from(fetch.buf.len()).unwrap_or(u64::MAX);
        if offset > 0 {
            log::info!(
                "resuming fetch of model {} at byte {offset} from {}",
                hex(&hash),
                peer.short()
            );
        }
        self.request_chunk(hash, peer, offset);
    }

    fn request_chunk(&mut self, hash: Hash32, peer: NodeId, offset: u64) {
        let req = Message::BlobRequest(BlobRequest {
            hash,
            offset,
            max_len: u32::try_from(BLOB_CHUNK_LEN).unwrap_or(u32::MAX),
        });
        self.send_to_peer(peer, &req);
    }

    pub(super) fn on_blob_chunk(&mut self, peer: NodeId, chunk: &BlobChunk<'_>) {
        let limit = self.cfg.model_cache_bytes;
        let Some(fetch) = self.blobs.fetches.get_mut(&chunk.hash) else {
            return;
        };
        if fetch.from != Some(peer)
            || chunk.offset != u64::try_from(fetch.buf.len()).unwrap_or(u64::MAX)
        {
            return; // stale: from an earlier source or a duplicate
        }
        if chunk.total_len > limit {
            let msg = format!(
                "model of {} bytes exceeds the model cache limit of {limit} bytes",
                chunk.total_len
            );
            self.fail_fetch(chunk.hash, &msg);
            return;
        }
        let room = usize::try_from(chunk.total_len)
            .unwrap_or(usize::MAX)
            .saturating_sub(fetch.buf.len());
        if chunk.data.is_empty() || chunk.data.len() > room {
            self.fail_fetch(chunk.hash, "peer sent a malformed model chunk");
            return;
        }
        fetch.buf.extend_from_slice(chunk.data);
        self.stats.blob_bytes_fetched = self
            .stats
            .blob_bytes_fetched
            .saturating_add(chunk.data.len() as u64);
        let have = u64::try_from(fetch.buf.len()).unwrap_or(u64::MAX);
        if have < chunk.total_len {
            self.request_chunk(chunk.hash, peer, have);
            return;
        }
        let Some(done) = self.blobs.fetches.remove(&chunk.hash) else {
            return;
        };
        let actual = sha256(&done.buf);
        if actual != chunk.hash {
            let msg = format!(
                "model from {} hashes to {}, not {}; refused",
                peer.short(),
                hex(&actual),
                hex(&chunk.hash)
            );
            self.blobs.fetches.insert(chunk.hash, Fetch::default());
            self.fail_fetch(chunk.hash, &msg);
            return;
        }
        log::info!(
            "fetched model {} ({have} bytes) from {}",
            hex(&chunk.hash),
            peer.short()
        );
        self.add_held_model(chunk.hash);
        self.events.push_back(Event::ModelFetched {
            hash: chunk.hash,
            bytes: done.buf,
        });
        self.start_jobs();
    }

    /// Gives up on a model: every job waiting for it fails with `why`.
    fn fail_fetch(&mut self, hash: Hash32, why: &str) {
        self.blobs.fetches.remove(&hash);
        log::warn!("model {}: {why}", hex(&hash));
        self.fail_jobs_needing(hash, why);
    }

    /// A peer went away: fetches from it continue from another requester of a
    /// waiting job, at the offset already reached.
    pub(super) fn blobs_peer_down(&mut self, peer: NodeId) {
        let stalled: Vec<Hash32> = self
            .blobs
            .fetches
            .iter()
            .filter(|(_, f)| f.from == Some(peer))
            .map(|(h, _)| *h)
            .collect();
        for hash in stalled {
            if let Some(f) = self.blobs.fetches.get_mut(&hash) {
                f.from = None;
            }
            if let Some(other) = self.requester_waiting_for(hash, peer) {
                self.fetch_model(hash, other);
            }
        }
    }
}
