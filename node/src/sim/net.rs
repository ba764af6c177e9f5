//! [`Sim`]: many node cores on one fake clock, with seeded loss and
//! reordering of datagrams, reliable ordered streams, lost SYNs, and
//! workers that answer after a set time (or never). No sockets.

// A test harness, never built into a node: it indexes its own tables and
// asserts as its oracle.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::core::{
    Config, ConnId, ConnectError, Core, Entropy, Event, Order, SeededEntropy, TaskOutcome, Transmit,
};
use crate::protocol::{FailReason, Keypair, TaskKind, TaskStatus};

#[derive(Debug)]
enum Action {
    Datagram {
        to: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Connected {
        node: usize,
        conn: ConnId,
    },
    ConnectFailed {
        node: usize,
        conn: ConnId,
        why: ConnectError,
    },
    Data {
        node: usize,
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Closed {
        node: usize,
        conn: ConnId,
    },
    JobDone {
        node: usize,
        job: u64,
        output: Vec<u8>,
        ran: Duration,
        failed: Option<FailReason>,
    },
}

#[derive(Debug)]
pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    pub nodes: Vec<Option<Core>>,
    addrs: Vec<SocketAddr>,
    rng: SeededEntropy,
    pub loss_percent: u64,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    /// Node deadlines, earliest first; an entry is stale unless it equals
    /// `armed[node]` (re-armed lazily after every call into a core), so a step
    /// costs O(log N) instead of a scan of every node.
    timers: BinaryHeap<Reverse<(Duration, usize)>>,
    armed: Vec<Option<Duration>>,
    actions: BTreeMap<usize, Action>,
    seq: u64,
    /// (node, conn) → (node, conn) of the other end.
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    /// Last delivery time per directed link, to keep streams in order.
    link_clock: BTreeMap<(usize, ConnId), Duration>,
    pub outcomes: Vec<(usize, TaskOutcome)>,
    pub datagrams_sent: u64,
    pub executed: BTreeMap<usize, u64>,
    /// (node, model hash, bytes) of every model a node fetched.
    pub fetched: Vec<(usize, [u8; 32], usize)>,
    /// FNV-1a digest of every transmit and task outcome, in order: two runs
    /// with the same digest sent the same bytes at the same steps.
    pub trace: u64,
    /// Nodes that take jobs and never answer (black holes).
    pub silent: Vec<usize>,
    /// How long a job takes on a node (2 ms where not set).
    pub job_time: BTreeMap<usize, Duration>,
    /// Nodes that fail every job, for this reason.
    pub fail: BTreeMap<usize, FailReason>,
    /// Nodes whose stream bytes are lost (a peer gone quiet, link still up).
    pub mute: Vec<usize>,
    /// Connect attempts to a node whose SYN is lost, by node: each such
    /// attempt times out after the wait the dialing core gave it.
    pub lost_syns: BTreeMap<usize, u32>,
    /// Every connect attempt: (node, conn, when, the wait it was given).
    pub connects: Vec<(usize, ConnId, Duration, Duration)>,
    /// Every session that ended: (node, peer, why).
    pub disconnects: Vec<(usize, crate::protocol::NodeId, crate::core::CloseReason)>,
}

/// FNV-1a, 64 bit: a stable digest with no dependency.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl Sim {
    pub fn new(n: usize, seed: u64, loss_percent: u64, cfg: impl Fn(usize) -> Config) -> Self {
        let start = Instant::now();
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..n {
            let mut c = cfg(i);
            c.listen_port = 7000 + i as u16;
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250 + 1) as u8));
            addrs.push(SocketAddr::new(ip, c.listen_port));
            let mut seed_bytes = [0u8; 32];
            seed_bytes[..8].copy_from_slice(&(seed ^ i as u64).to_le_bytes());
            seed_bytes[8] = 1;
            let key = Keypair::from_seed(seed_bytes);
            let rng = Box::new(SeededEntropy::new(
                seed.wrapping_mul(31).wrapping_add(i as u64),
            ));
            nodes.push(Some(Core::new(key, c, rng, start)));
        }
        Self {
            start,
            now: start,
            nodes,
            addrs,
            rng: SeededEntropy::new(seed),
            loss_percent,
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            armed: vec![None; n],
            actions: BTreeMap::new(),
            seq: 0,
            links: BTreeMap::new(),
            link_clock: BTreeMap::new(),
            outcomes: Vec::new(),
            datagrams_sent: 0,
            executed: BTreeMap::new(),
            fetched: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            silent: Vec::new(),
            job_time: BTreeMap::new(),
            mute: Vec::new(),
            lost_syns: BTreeMap::new(),
            fail: BTreeMap::new(),
            connects: Vec::new(),
            disconnects: Vec::new(),
        }
    }

    fn record(&mut self, node: usize, tag: u8, bytes: &[u8]) {
        let at = self.at().as_micros() as u64;
        if let Some(path) = std::env::var_os("P2PA_TRACE_FILE") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .unwrap();
            writeln!(
                f,
                "{at} n{node} t{tag} {:016x} {}",
                fnv(0, bytes),
                bytes.len()
            )
            .unwrap();
            if at == 1000945 {
                writeln!(f, "{:02x?}", bytes).unwrap();
            }
        }
        self.trace = fnv(self.trace, &[tag]);
        self.trace = fnv(self.trace, &(node as u64).to_le_bytes());
        self.trace = fnv(self.trace, &at.to_le_bytes());
        self.trace = fnv(self.trace, bytes);
    }

    fn at(&self) -> Duration {
        self.now - self.start
    }

    fn schedule(&mut self, delay: Duration, action: Action) {
        self.seq += 1;
        let id = self.seq as usize;
        self.actions.insert(id, action);
        self.queue.push(Reverse((self.at() + delay, self.seq, id)));
    }

    fn jitter_ms(&mut self, max: u64) -> Duration {
        Duration::from_micros(self.rng.next_u64() % (max * 1000).max(1))
    }

    /// Records node `i`'s next deadline in the timer heap if it moved.
    fn rearm(&mut self, i: usize) {
        let t = self.nodes[i]
            .as_ref()
            .and_then(|c| c.poll_timeout())
            .map(|t| t.saturating_duration_since(self.start));
        if t != self.armed[i] {
            self.armed[i] = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t, i)));
            }
        }
    }

    /// The earliest live deadline (dropping stale heap entries).
    fn next_timer(&mut self) -> Option<(Duration, usize)> {
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if self.armed[i] == Some(t) {
                return Some((t, i));
            }
            self.timers.pop();
        }
        None
    }

    /// Drains one node's transmits and events into the network.
    fn flush(&mut self, i: usize) {
        self.flush_inner(i);
        self.rearm(i);
    }

    fn flush_inner(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].as_mut().and_then(Core::poll_transmit) {
            self.record_transmit(i, &t);
            self.transmit(i, t);
        }
        while let Some(o) = self.nodes[i].as_mut().and_then(Core::poll_order) {
            self.order(i, o);
        }
        while let Some(e) = self.nodes[i].as_mut().and_then(Core::poll_event) {
            match e {
                Event::TaskDone(o) => {
                    let summary = format!("{} {:?} {}", o.task_id, o.status, o.attempts);
                    self.record(i, 6, summary.as_bytes());
                    self.record(i, 7, &o.output);
                    self.outcomes.push((i, *o));
                }
                Event::PeerDisconnected { id, reason } => self.disconnects.push((i, id, reason)),
                _ => {}
            }
        }
    }

    /// Folds a transmit into the digest.
    fn record_transmit(&mut self, i: usize, t: &Transmit) {
        match t {
            Transmit::Multicast(b) => self.record(i, 1, b),
            Transmit::Connect { conn, addr, .. } => {
                self.record(i, 2, format!("{conn} {addr}").as_bytes())
            }
            Transmit::Send { conn, bytes } => {
                self.record(i, 3, &conn.to_le_bytes());
                self.record(i, 4, bytes);
            }
            Transmit::Close { conn } => self.record(i, 5, &conn.to_le_bytes()),
        }
    }

    /// Carries node `i`'s transmit over the simulated network.
    fn transmit(&mut self, i: usize, t: Transmit) {
        match t {
            Transmit::Multicast(bytes) => {
                self.datagrams_sent += 1;
                for j in 0..self.nodes.len() {
                    if j == i || self.nodes[j].is_none() {
                        continue;
                    }
                    if self.rng.next_u64() % 100 < self.loss_percent {
                        continue;
                    }
                    let d = self.jitter_ms(5);
                    let from = SocketAddr::new(self.addrs[i].ip(), 7400);
                    let bytes = bytes.clone();
                    self.schedule(d, Action::Datagram { to: j, from, bytes });
                }
            }
            Transmit::Connect {
                conn,
                addr,
                timeout,
            } => self.connect(i, conn, addr, timeout),
            Transmit::Send { conn, bytes } => {
                if self.mute.contains(&i) {
                    return;
                }
                if let Some(&(j, cj)) = self.links.get(&(i, conn)) {
                    let d = self.stream_delay(i, conn);
                    let (node, conn) = (j, cj);
                    self.schedule(d, Action::Data { node, conn, bytes });
                }
            }
            Transmit::Close { conn } => {
                if let Some((j, cj)) = self.links.remove(&(i, conn)) {
                    self.links.remove(&(j, cj));
                    let d = self.stream_delay(i, conn);
                    self.schedule(d, Action::Closed { node: j, conn: cj });
                }
            }
        }
    }

    /// One connect attempt of node `i`: lost (it times out after
    /// `timeout`), accepted, or refused.
    fn connect(&mut self, i: usize, conn: ConnId, addr: SocketAddr, timeout: Duration) {
        let target = self.addrs.iter().position(|a| *a == addr);
        let at = self.now - self.start;
        self.connects.push((i, conn, at, timeout));
        let lost = target.and_then(|j| self.lost_syns.get_mut(&j));
        if let Some(n) = lost.filter(|n| **n > 0) {
            *n -= 1;
            let why = ConnectError::TimedOut;
            self.schedule(timeout, Action::ConnectFailed { node: i, conn, why });
            return;
        }
        let from = SocketAddr::new(self.addrs[i].ip(), 40000 + conn as u16);
        let now = self.now;
        let accepted = target.and_then(|j| {
            self.nodes[j]
                .as_mut()
                .and_then(|c| c.handle_incoming(now, from))
                .map(|cj| (j, cj))
        });
        let d = self.jitter_ms(2);
        match accepted {
            Some((j, cj)) => {
                self.links.insert((i, conn), (j, cj));
                self.links.insert((j, cj), (i, conn));
                self.schedule(d, Action::Connected { node: i, conn });
                self.flush(j);
            }
            None => {
                let why = ConnectError::Io(std::io::ErrorKind::ConnectionRefused);
                self.schedule(d, Action::ConnectFailed { node: i, conn, why });
            }
        }
    }

    /// Carries out node `i`'s order: a job answers after its node's job
    /// time (a silent node never answers).
    fn order(&mut self, i: usize, o: Order) {
        match o {
            Order::Execute {
                job, kind, input, ..
            } => {
                *self.executed.entry(i).or_default() += 1;
                if self.silent.contains(&i) {
                    return;
                }
                let output = match kind {
                    TaskKind::Echo => input,
                    TaskKind::Infer => [b"inferred:".as_slice(), &input].concat(),
                    _ => b"unsupported in sim".to_vec(),
                };
                let ran = (self.job_time.get(&i).copied()).unwrap_or(Duration::from_millis(2));
                let (node, d, failed) = (i, ran, self.fail.get(&i).copied());
                let done = Action::JobDone {
                    node,
                    job,
                    output,
                    ran,
                    failed,
                };
                self.schedule(d, done);
            }
            Order::StoreModel { hash, bytes } => self.fetched.push((i, hash, bytes.len())),
            Order::Abandon { .. } => {}
        }
    }

    /// Hands `bytes` to node `to` as if they came from node `from` over their
    /// connection (a peer that sends what it likes); false if none is up.
    pub fn inject(&mut self, from: usize, to: usize, bytes: &[u8]) -> bool {
        let Some((_, conn)) = self
            .links
            .iter()
            .find(|((i, _), (j, _))| *i == from && *j == to)
            .map(|(_, theirs)| *theirs)
        else {
            return false;
        };
        let now = self.now;
        if let Some(core) = self.nodes[to].as_mut() {
            core.handle_stream_data(now, conn, bytes);
        }
        self.flush(to);
        true
    }

    /// In-order delivery on a stream: never earlier than the previous frame.
    fn stream_delay(&mut self, i: usize, conn: ConnId) -> Duration {
        let base = self.at() + Duration::from_micros(200) + self.jitter_ms(1);
        let last = self.link_clock.get(&(i, conn)).copied().unwrap_or_default();
        let t = base.max(last);
        self.link_clock.insert((i, conn), t);
        t - self.at()
    }

    /// Runs the network until `until` (simulated time since start).
    pub fn run_until(&mut self, until: Duration) {
        for i in 0..self.nodes.len() {
            self.flush(i);
        }
        let mut steps = 0u64;
        loop {
            steps += 1;
            assert!(steps < 50_000_000, "simulation did not settle");
            let next_action = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next_timer = self.next_timer();
            let next = match (next_action, next_timer) {
                (Some(a), Some((t, _))) => a.min(t),
                (Some(a), None) => a,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.start + next;
            if next_action == Some(next) {
                let Reverse((_, _, id)) = self.queue.pop().unwrap();
                let action = self.actions.remove(&id).unwrap();
                self.apply(action);
            } else if let Some((_, i)) = next_timer {
                self.timers.pop();
                self.armed[i] = None; // fired: flush re-arms whatever comes next
                let now = self.now;
                if let Some(c) = self.nodes[i].as_mut() {
                    c.handle_timeout(now);
                }
                self.flush(i);
            }
        }
        self.now = self.start + until;
    }

    fn apply(&mut self, action: Action) {
        let now = self.now;
        let node = match &action {
            Action::Datagram { to, .. } => *to,
            Action::Connected { node, .. }
            | Action::ConnectFailed { node, .. }
            | Action::Data { node, .. }
            | Action::Closed { node, .. }
            | Action::JobDone { node, .. } => *node,
        };
        let Some(core) = self.nodes[node].as_mut() else {
            return;
        };
        match action {
            Action::Datagram { from, bytes, .. } => core.handle_datagram(now, from, &bytes),
            Action::Connected { conn, .. } => core.handle_connected(now, conn),
            Action::ConnectFailed { conn, why, .. } => core.handle_connect_failed(now, conn, why),
            Action::Data { conn, bytes, .. } => core.handle_stream_data(now, conn, &bytes),
            Action::Closed { conn, .. } => {
                core.handle_closed(now, conn, ConnectError::ClosedByPeer)
            }
            Action::JobDone {
                job,
                output,
                ran,
                failed,
                ..
            } => {
                let status = match failed {
                    None => TaskStatus::Completed,
                    Some(_) => TaskStatus::Failed,
                };
                core.handle_job_done(now, job, status, failed, &output, ran)
            }
        }
        self.flush(node);
    }

    /// Kills node `i` abruptly: its connections close, nothing is said.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
        self.armed[i] = None;
        let ends: Vec<((usize, ConnId), (usize, ConnId))> = self
            .links
            .iter()
            .filter(|(k, _)| k.0 == i)
            .map(|(k, v)| (*k, *v))
            .collect();
        for (mine, (j, cj)) in ends {
            self.links.remove(&mine);
            self.links.remove(&(j, cj));
            self.schedule(
                Duration::from_millis(1),
                Action::Closed { node: j, conn: cj },
            );
        }
    }

    /// Starts node `i` again now, as a fresh process would: a new key from
    /// `seed`, `cfg`, nothing remembered (kill it first).
    pub fn start_again(&mut self, i: usize, seed: u64, cfg: Config) {
        let mut c = cfg;
        c.listen_port = self.addrs[i].port();
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        seed_bytes[8] = 2;
        let rng = Box::new(SeededEntropy::new(seed.wrapping_mul(97)));
        self.nodes[i] = Some(Core::new(Keypair::from_seed(seed_bytes), c, rng, self.now));
        self.flush(i);
    }

    /// Whether every task reported so far completed.
    pub fn all_completed(&self) -> bool {
        self.outcomes
            .iter()
            .all(|(_, o)| o.status == TaskStatus::Completed)
    }

    pub fn core(&mut self, i: usize) -> &mut Core {
        self.nodes[i].as_mut().unwrap()
    }

    /// Node `i`'s peer table now.
    pub fn peers(&mut self, i: usize) -> Vec<crate::core::PeerInfo> {
        let now = self.now;
        self.core(i).peers(now)
    }

    /// Pauses (or resumes) node `i`'s worker now.
    pub fn set_paused(&mut self, i: usize, paused: bool) {
        let now = self.now;
        self.core(i).set_paused(now, paused);
        self.flush(i);
    }

    pub fn submit(&mut self, i: usize, req: crate::core::TaskRequest) -> u64 {
        let now = self.now;
        let id = self.core(i).submit(now, req);
        self.flush(i);
        id
    }
}
