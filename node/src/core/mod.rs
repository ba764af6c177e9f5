//! The sans-IO node: discovery, sessions and task exchange as one deterministic
//! state machine. Time comes in as `now`, randomness through [`Entropy`];
//! events go in through `handle_*`, work comes out through `poll_*`, one
//! queue per consumer (quinn-proto's `poll_transmit` / `poll_endpoint_events`
//! / `poll`): [`Core::poll_transmit`] for the sockets, [`Core::poll_order`]
//! for the executor and model store, [`Core::poll_event`] for the
//! application, and [`Core::poll_timeout`]. A shell polls them in that order
//! after every `handle_*` call, until [`Core::has_pending_output`] is false.
//! No sockets, no async, no clock reads: N cores can run in one simulation.
//!
//! [`Core`] routes between parts that own their state, their slice of the
//! config (`config/slices.rs`) and their counters (`Core::stats` assembles
//! them), and borrow only the outbox (or a `Link` to reach peers): peers
//! (table, dials, backoff), beacons, sessions (connections, handshake,
//! keepalive), requester, worker, blobs. What one part reports (a session up
//! or down, a message, a model fetched) reaches the others here, only here.

mod beacons;
mod blobs;
mod budget;
mod config;
mod hashed;
mod ids;
mod link;
mod observed;
mod outcome;
mod output;
mod pace;
mod peer_info;
mod peers;
mod reason;
mod receipt;
mod recent;
mod requester;
mod rng;
mod router;
mod sessions;
mod state;
mod stats;
mod tally;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pa_protocol::{
    FailReason, GoodbyeReason, Identity, Keypair, KindSet, Message, NodeId, Seal, TaskStatus,
};

use config::{BlobConfig, RequesterConfig, SessionConfig, WorkerConfig};
pub use config::{
    Config, Trust, DEFAULT_INPUT_BUFFER_BYTES, DEFAULT_MAX_TASK_DEADLINE, DEFAULT_MAX_TENSOR_BYTES,
    DEFAULT_MIN_TRANSFER_RATE, DEFAULT_MODEL_CACHE_BYTES, DEFAULT_TCP_PORT, MAX_INLINE_TENSOR,
};
pub use hashed::Hashed;
pub use ids::{ConnId, JobId};
pub use outcome::TaskOutcome;
pub use output::{Event, Order, Transmit};
pub use peer_info::{PeerInfo, PeerState, Via};
pub use reason::{CloseReason, ConnectError, FetchError, ReceiptError, TaskError};
pub use receipt::{check_result, sha256, verify_receipt, ReceiptCheck};
pub use requester::TaskRequest;
pub use rng::{Entropy, EntropyError, SeededEntropy};
pub use state::{TaskState, Work};
pub use stats::Stats;
use stats::{add, ConnStats};

use beacons::Beacons;
use blobs::{Blobs, Fetched, Want};
use link::{link_of, CoreLink};
use output::Outbox;
use peers::Peers;
use requester::{Requester, Resulted};
use sessions::{Sessions, Up};
use worker::Worker;

/// The node's state machine.
pub struct Core {
    key: Keypair,
    id: NodeId,
    cfg: Config,
    rng: Box<dyn Entropy>,
    out: Outbox,
    peers: Peers,
    beacons: Beacons,
    sessions: Sessions,
    requester: Requester,
    worker: Worker,
    blobs: Blobs,
    /// What the router counts of connections.
    conn_stats: ConnStats,
    shutting_down: bool,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .field("peers", &self.peers.len())
            .field("conns", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A node with key `key`, started at `now`.
    pub fn new(key: Keypair, cfg: Config, mut rng: Box<dyn Entropy>, now: Instant) -> Self {
        let requester = Requester::new(RequesterConfig::from(&cfg), rng.next_u64() >> 1);
        let peers = Peers::new(&cfg, now, &key.seed());
        let mut identity = Identity::new(key.clone());
        if let Some(network_key) = cfg.network_key {
            identity = identity.with_network_key(network_key);
        }
        #[cfg(feature = "aes-gcm")]
        let identity = identity.with_aes_gcm(cfg.aes_gcm);
        let sessions = Sessions::new(SessionConfig::from(&cfg), identity);
        let worker = Worker::new(WorkerConfig::from(&cfg));
        let blobs = Blobs::new(BlobConfig::from(&cfg));
        Self {
            id: key.node_id(),
            key,
            peers,
            beacons: Beacons::new(&cfg, now),
            cfg,
            rng,
            out: Outbox::default(),
            sessions,
            requester,
            worker,
            blobs,
            conn_stats: ConnStats::default(),
            shutting_down: false,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters of refused input.
    pub fn stats(&self) -> Stats {
        let (b, p, s) = (&self.beacons.stats, &self.peers.stats, &self.sessions.stats);
        let (r, c) = (&self.requester.stats, &self.conn_stats);
        Stats {
            beacons_accepted: p.beacons_accepted,
            beacons_forged: b.forged,
            beacons_replayed: p.beacons_replayed,
            beacons_malformed: b.malformed,
            beacons_wrong_version: b.wrong_version,
            frames_rejected: c.frames_rejected,
            frames_replayed: c.frames_replayed,
            handshakes_completed: s.handshakes_completed,
            sessions_aes_gcm: s.sessions_aes_gcm,
            handshakes_failed: c.handshakes_failed,
            handshakes_timed_out: c.handshakes_timed_out,
            handshakes_evicted: c.handshakes_evicted,
            peers_refused: c.peers_refused,
            peers_evicted: p.peers_evicted,
            sessions_evicted: c.sessions_evicted,
            beacons_untrusted: p.beacons_untrusted,
            conns_refused: s.conns_refused,
            results_rejected: r.results_rejected,
            tasks_retried: r.tasks_retried,
            blob_bytes_served: self.blobs.stats.bytes_served,
            blob_bytes_fetched: self.blobs.stats.bytes_fetched,
            stream_bytes_in: c.stream_bytes_in,
            stream_bytes_out: c.stream_bytes_out,
        }
    }

    /// What this node's worker is doing.
    pub fn work(&self) -> Work {
        self.worker.work(&self.blobs)
    }

    /// The peer table.
    pub fn peers(&self, now: Instant) -> Vec<PeerInfo> {
        self.peers.info(now)
    }

    /// Memory held by the peer table (entries × entry size), for scale reports.
    pub fn peer_table_bytes(&self) -> usize {
        self.peers.table_bytes()
    }

    /// Bytes held by blob fetches in progress (bounded by `max_fetch_bytes`).
    pub fn fetching_bytes(&self) -> usize {
        self.blobs.in_flight_bytes()
    }

    /// Bytes of task inputs a worker holds ahead of running them, fetched or
    /// on their way (bounded by `input_buffer_bytes`, one input always).
    pub fn held_input_bytes(&self) -> u64 {
        self.worker.held_input_bytes()
    }

    /// Bytes of task inputs and outputs lent to peers now (freed when their
    /// task ends, the peer leaves, or it is fetched).
    pub fn lent_bytes(&self) -> usize {
        self.blobs.lent_bytes()
    }

    /// Open TCP connections (handshaking or established).
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// Peers with a live session.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.peers.connected_ids()
    }

    /// Next transmission for the shell.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.out.transmits.pop_front()?;
        if let Transmit::Send { bytes, .. } = &t {
            add(&mut self.conn_stats.stream_bytes_out, bytes.len());
        }
        Some(t)
    }

    /// Whether transmits, orders or events are waiting to be polled.
    pub fn has_pending_output(&self) -> bool {
        !self.out.transmits.is_empty() || !self.out.orders.is_empty() || !self.out.events.is_empty()
    }

    /// Next order for the shell: run a job (inline or on a slot, as the
    /// core decided), abandon one, store a model. Carry them out in order,
    /// after the transmits polled before them and before the events.
    pub fn poll_order(&mut self) -> Option<Order> {
        self.out.orders.pop_front()
    }

    /// Next news for the application (nothing to carry out).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Pauses (or resumes) this node's worker: paused, it keeps its
    /// sessions and finishes what runs, hands back what waits for a slot
    /// (`Busy`: it runs elsewhere), refuses new offers `Busy` and
    /// flags its capabilities [`KindSet::PAUSED`](p2pa_protocol::KindSet::PAUSED);
    /// a beacon says so soon after the change (peers that only know it
    /// through `--peer` learn it from the refusals).
    pub fn set_paused(&mut self, now: Instant, paused: bool) {
        if self.worker.set_paused(paused, &mut link_of!(self)) {
            log::info!(
                "{}",
                if paused {
                    "paused: taking no new tasks"
                } else {
                    "resumed: taking tasks"
                }
            );
            self.beacons.answer_query(now, &mut *self.rng);
        }
    }

    /// Starts a graceful shutdown: Goodbye to every peer, no new work taken.
    /// Tasks this node requested are reported as cancelled.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.beacons.stop();
        for conn in self.sessions.ids() {
            self.goodbye(now, conn, GoodbyeReason::Shutdown);
        }
        self.requester.cancel_all(now, &mut link_of!(self));
    }

    // ---- discovery ----

    /// A UDP datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if !self.cfg.multicast || self.shutting_down {
            return;
        }
        let Some(heard) = self.beacons.verify(
            self.id,
            from,
            data,
            self.cfg.network_key.as_ref(),
            &mut self.out,
        ) else {
            return;
        };
        let out = &mut self.out;
        let accepted =
            self.peers
                .accept_beacon(now, from, heard.sender, heard.seq, heard.beacon, out);
        if let Some(query) = accepted {
            if query {
                self.beacons.answer_query(now, &mut *self.rng);
            }
        }
    }

    /// An address found by mDNS (or any out-of-band means): dial it once.
    pub fn handle_found_addr(&mut self, now: Instant, addr: SocketAddr) {
        if !self.shutting_down {
            self.peers.found_addr(now, addr);
        }
    }

    // ---- connections ----

    /// A peer connected to our listener. Returns the id to report its bytes
    /// under, or `None` if a limit is reached (the shell drops the socket).
    pub fn handle_incoming(&mut self, now: Instant, addr: SocketAddr) -> Option<ConnId> {
        let room = match self.shutting_down {
            true => Err(()),
            false => self.sessions.room_for(addr.ip()),
        };
        match room {
            Err(()) => {
                self.sessions.refuse_incoming(addr, &mut self.out);
                return None;
            }
            Ok(Some(victim)) => self.fail(now, victim, CloseReason::HandshakeEvicted),
            Ok(None) => {}
        }
        let conn = self.sessions.incoming(now, addr, &mut *self.rng);
        if conn.is_none() {
            log::error!("refused connection from {addr}: no random nonce for its handshake");
        }
        conn
    }

    /// Our outbound connection is open: start the handshake.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        let rng = &mut *self.rng;
        let nonce = self.sessions.connected(now, conn, rng, &mut self.out);
        if nonce.is_err() {
            self.close(now, conn, CloseReason::NoEntropy);
        }
    }

    /// Our outbound connection could not be opened. A timed-out attempt
    /// is made again (a new `Transmit::Connect` for the same `conn`) until
    /// the attempts are spent; then the dial failed.
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, why: ConnectError) {
        if why == ConnectError::TimedOut && self.sessions.retry_dial(now, conn, &mut self.out) {
            return;
        }
        // Nothing to close: the shell never had a socket.
        if let Some(addr) = self.sessions.forget(conn) {
            log::debug!("dial to {addr} failed: {why}");
            self.out.event(Event::DialFailed { addr, why });
        }
        self.peers.dial_failed(now, conn, &mut *self.rng);
    }

    /// The connection was closed by the peer or failed.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId, why: ConnectError) {
        self.close(now, conn, CloseReason::Transport(why));
    }

    /// Both keys proven: register the session, unless a better one exists.
    fn session_up(&mut self, now: Instant, up: Up) -> bool {
        let Up {
            conn,
            peer,
            initiator,
            listen_addr,
            intro,
        } = up;
        let via = self.peers.via_of(conn, initiator);
        // One connection per pair: keep the one the lower id initiated.
        if let Some(other) = self.peers.conn_of(&peer).filter(|o| *o != conn) {
            let initiator_id = if initiator { self.id } else { peer };
            let keep_new = initiator_id == self.id.min(peer);
            let loser = if keep_new { other } else { conn };
            self.goodbye(now, loser, GoodbyeReason::Duplicate);
            if !keep_new {
                return false;
            }
        }
        let requester = intro.caps.kinds == KindSet::default();
        let fits = self.peers.conn_of(&peer).is_some()
            || self.session_room(now, listen_addr.ip(), requester);
        let room = fits && (self.peers.contains(&peer) || self.peers.make_room(listen_addr.ip()));
        if !room {
            self.goodbye(now, conn, GoodbyeReason::TooManyPeers);
            return false;
        }
        let joined = self
            .peers
            .session_up(now, peer, conn, listen_addr, via, intro.caps);
        // Somebody answers: the start-up burst stops asking. (Not on the
        // first beacon heard: under a flood of fake keys that would stop
        // the queries the honest peers answer, and each answer is what
        // makes their entries outrank the fakes.)
        self.beacons.heard_a_peer();
        if joined.new_peer {
            self.out.event(Event::PeerDiscovered {
                id: peer,
                addr: listen_addr,
                via,
            });
        }
        if joined.first {
            log::info!("session up with {} at {listen_addr}", peer.short());
            self.out.event(Event::PeerConnected {
                id: peer,
                addr: listen_addr,
            });
        }
        self.requester.peer_up(now, &mut link_of!(self));
        true
    }

    /// A verified session message from `peer`; returns false if the
    /// connection was closed.
    fn on_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: NodeId,
        message: Message<'_>,
        seal: &Seal,
    ) -> bool {
        self.peers.heard(now, peer);
        if carries_work(&message) {
            self.peers.useful(now, peer);
        }
        match message {
            Message::Ping(p) => self
                .sessions
                .ping_back(conn, p.nonce, &self.key, &mut self.out),
            Message::Pong(p) => {
                if let Some(rtt) = self.sessions.pong(conn, p.nonce, now) {
                    self.peers.set_rtt(peer, rtt);
                }
            }
            Message::Goodbye(g) => {
                log::info!("{} said goodbye: {}", peer.short(), g.reason);
                self.close(now, conn, CloseReason::Received(g.reason));
                return false;
            }
            Message::Error(e) => log::warn!(
                "{} reported an error: {:?}: {}",
                peer.short(),
                e.code,
                e.detail
            ),
            Message::TaskOffer(o) => self.on_offer(now, peer, &o),
            Message::TaskAccept(a) => self.requester.on_accept(peer, a.task_id),
            Message::TaskReject(r) => self.requester.on_reject(now, peer, r.task_id, r.reason),
            Message::TaskResult(r) => self.on_result(now, peer, seal, &r),
            Message::Cancel(c) => {
                self.worker.on_cancel(peer, c.task_id, &mut link_of!(self));
                self.prune_fetches();
            }
            Message::BlobRequest(r) => {
                self.blobs.on_request(now, peer, &r, &mut link_of!(self));
                // A fetched output may have made room for the next job.
                self.worker.start_jobs(&self.blobs, &mut link_of!(self));
            }
            Message::BlobChunk(c) => {
                let fetched = self.blobs.on_chunk(now, peer, &c, &mut link_of!(self));
                let lied = matches!(&fetched, Fetched::Failed(_, e) if e.offender() == Some(peer));
                self.fetched(now, c.hash, fetched);
                if lied {
                    // Its tasks here fail (and go elsewhere), and it goes.
                    self.goodbye(now, conn, GoodbyeReason::ProtocolViolation);
                    return false;
                }
            }
            Message::Beacon(_) => {} // refused by verify_frame
        }
        true
    }

    /// A result from `peer`: done, or its output is to be fetched.
    fn on_result(
        &mut self,
        now: Instant,
        peer: NodeId,
        seal: &Seal,
        r: &p2pa_protocol::TaskResult<'_>,
    ) {
        let me = self.id;
        match self
            .requester
            .on_result(now, me, seal, r, &mut link_of!(self))
        {
            Resulted::Completed => self.peers.credit(peer),
            Resulted::Fetch(hash, len) => {
                let link = &mut link_of!(self);
                self.blobs
                    .fetch(now, hash, Want::Output, peer, Some(len), link);
            }
            Resulted::Nothing => {}
        }
        self.prune_fetches();
    }

    // ---- tasks ----

    /// Queues a task for some peer; its outcome arrives as `Event::TaskDone`.
    /// An input too large for a frame is lent as a blob while the task lives
    /// (workers fetch it).
    pub fn submit(&mut self, now: Instant, mut req: TaskRequest) -> u64 {
        let model_len = req
            .model
            .and_then(|m| self.blobs.provided_len(&m))
            .unwrap_or(0);
        let (input_hash, input_len) = (req.input.sha256(), req.input.len());
        let fits = u64::try_from(input_len).is_ok_and(|n| n <= self.cfg.max_tensor_bytes);
        if input_len > MAX_INLINE_TENSOR && fits {
            let bytes = Arc::new(std::mem::take(&mut req.input).into_bytes());
            self.blobs.lend(now, input_hash, bytes, None);
        }
        let id = self.requester.submit(
            now,
            req,
            input_hash,
            input_len,
            model_len,
            &mut link_of!(self),
        );
        self.prune_fetches();
        id
    }

    /// The state of a task this node requested, while it is not yet reported.
    pub fn task_state(&self, task_id: u64) -> Option<TaskState> {
        self.requester.state(task_id)
    }

    /// The state of each job this node runs for others, by (requester, task id).
    pub fn job_states(&self) -> Vec<(NodeId, u64, TaskState)> {
        self.worker.states()
    }

    /// Withdraws a task: peers running it are told to stop; reported `Cancelled`.
    pub fn cancel(&mut self, now: Instant, task_id: u64) {
        self.requester
            .cancel(now, task_id, TaskError::Cancelled, &mut link_of!(self));
    }

    /// The shell finished a job: how it ended (and why, when it failed:
    /// `None` with a failure counts as this worker's fault), its output
    /// (the failure's text when it failed), and how long it ran (what the
    /// worker advertises of its speed per model).
    pub fn handle_job_done(
        &mut self,
        now: Instant,
        job: JobId,
        status: TaskStatus,
        reason: Option<FailReason>,
        output: &[u8],
        ran: Duration,
    ) {
        let link = &mut link_of!(self);
        let done = ((status, reason), output, ran);
        if let Some(lend) = self.worker.job_done(job, done, link) {
            (self.blobs).lend(now, lend.hash, lend.bytes, Some(lend.owner));
        }
        self.worker.start_jobs(&self.blobs, &mut link_of!(self));
        self.fetch_inputs(now);
    }

    fn on_offer(&mut self, now: Instant, peer: NodeId, offer: &p2pa_protocol::TaskOffer<'_>) {
        let down = self.shutting_down;
        let admitted = self
            .worker
            .admit(now, down, peer, offer, &self.blobs, &mut link_of!(self));
        let Some(admitted) = admitted else { return };
        if let Some(model) = admitted.fetch {
            self.blobs
                .fetch(now, model, Want::Model, peer, None, &mut link_of!(self));
        }
        self.worker.start_jobs(&self.blobs, &mut link_of!(self));
        self.make_output_room(now);
        self.worker
            .accept_if_waiting(admitted.job, &self.blobs, &mut link_of!(self));
        self.fetch_inputs(now);
    }
}

/// Whether a message is part of the task exchange (what makes a session
/// useful to keep), not upkeep.
fn carries_work(m: &Message<'_>) -> bool {
    matches!(
        m,
        Message::TaskOffer(_)
            | Message::TaskAccept(_)
            | Message::TaskResult(_)
            | Message::BlobRequest(_)
            | Message::BlobChunk(_)
    )
}
