//! The router's blob wiring: models provided and held, what a finished
//! fetch unblocks (jobs, results), input fetches within the worker's buffer,
//! and freeing what no task needs any more.

use std::sync::Arc;
use std::time::Instant;

use p2pa_protocol::Hash32;

use crate::core::blobs::{Blobs, Fetched, Want};
use crate::core::tally::Tally;
use crate::core::worker::BlobFacts;
use crate::core::{link_of, Core, CoreLink};

impl Core {
    /// Requester side: serve `bytes` (a model) to workers that ask for `hash`.
    pub fn provide_model(&mut self, hash: Hash32, bytes: Arc<[u8]>) {
        self.blobs.provide(hash, bytes);
    }

    /// Worker side: this node holds model `hash` (in its store) and can run it.
    pub fn add_held_model(&mut self, hash: Hash32) {
        self.blobs.add_held(hash);
    }

    /// Worker side: the models in the store (newest first) are exactly what
    /// this node holds (after the store evicted some to make room).
    pub fn sync_held_models(&mut self, newest_first: &[Hash32]) {
        self.blobs.sync_held(newest_first);
    }

    /// What a blob chunk completed: whoever waited for the blob goes on, or
    /// fails.
    pub(in crate::core) fn fetched(&mut self, now: Instant, hash: Hash32, fetched: Fetched) {
        match fetched {
            Fetched::Pending => return,
            Fetched::Done(Want::Model, _) => {}
            Fetched::Done(Want::Input, bytes) => {
                self.worker.input_arrived(&hash, bytes, &mut link_of!(self));
            }
            Fetched::Done(Want::Output, bytes) => {
                let credit = self
                    .requester
                    .output_arrived(now, &hash, bytes, &mut link_of!(self));
                credit.into_iter().for_each(|p| self.peers.credit(p));
            }
            Fetched::Failed(want, error) => {
                let why = error.to_string();
                match want {
                    Want::Model => self
                        .worker
                        .fail_jobs_needing(hash, &why, &mut link_of!(self)),
                    Want::Input => self.worker.input_failed(&hash, &why, &mut link_of!(self)),
                    Want::Output => {
                        self.requester
                            .output_failed(now, &hash, error, &mut link_of!(self));
                    }
                }
            }
        }
        self.fetch_inputs(now);
        self.worker.start_jobs(&self.blobs, &mut link_of!(self));
        self.prune_fetches();
    }

    /// A job waits for room in the output buffer: the outputs fetched under
    /// the floor rate go early, and the jobs start.
    pub(in crate::core) fn make_output_room(&mut self, now: Instant) {
        if self.worker.waits_for_output_room(&self.blobs) && self.blobs.drop_laggards(now) {
            self.worker.start_jobs(&self.blobs, &mut link_of!(self));
        }
    }

    /// Starts the input fetches the worker's buffer has room for.
    pub(in crate::core) fn fetch_inputs(&mut self, now: Instant) {
        for (hash, len, peer) in self.worker.inputs_to_fetch() {
            self.blobs
                .fetch(now, hash, Want::Input, peer, Some(len), &mut link_of!(self));
        }
    }

    /// Frees the fetches no task waits for any more, and the task inputs
    /// lent for tasks that ended.
    pub(in crate::core) fn prune_fetches(&mut self) {
        let (worker, requester) = (&self.worker, &self.requester);
        self.blobs
            .prune(|h| worker.wants_model(h) || worker.wants_input(h) || requester.wants_output(h));
        self.blobs.prune_lent(|h| requester.wants_input(h));
    }
}

/// The worker sees the blobs part through what it needs to know.
impl BlobFacts for Blobs {
    fn holds(&self, hash: &Hash32) -> bool {
        Blobs::holds(self, hash)
    }

    fn models(&self, n: usize) -> Vec<Hash32> {
        self.advertised(n).collect()
    }

    fn lent_outputs(&self) -> Tally {
        Blobs::lent_outputs(self)
    }
}
