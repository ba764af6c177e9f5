//! The shell: hands what arrives to the core and carries out what the core
//! hands out, one queue each: `poll_transmit` (sockets), `poll_order` (run a
//! job inline or on a slot as the core said, abandon one, store a model) and
//! `poll_event` (news, passed to the application). It decides nothing.
//!
//! Its state is shared, on one thread, by its loop (datagrams, accepted and
//! dialed connections, finished jobs, the handle's commands, the core's
//! timer) and by each connection's reader task, which hands what it read to
//! the core itself and writes the answers straight to the socket: a request
//! is decoded, run (echo and hash inline) and answered within the task the
//! reactor woke, without a hop through a channel and a second task (the
//! round trip's CPU, BENCHMARKS.md). No borrow of the state lives across an
//! await.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TrySendError};
use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::future;

use super::options::{NodeEvent, NodeOptions};
use super::slots::Slots;
use super::{feeds, net};
use super::{Cmd, Input, SEND_QUEUE};
use crate::core::{ConnId, ConnectError, Core, Event, JobId, Order, TaskOutcome, Transmit};
use crate::task::{Executor, Job, Stop};
use p2pa_protocol::{FailReason, TaskKind, TaskStatus};

/// Frames the core handles from one read before what they produced is sent.
/// With a whole read at once, a window of pipelined requests came back as one
/// batch after all of them were done, and the two peers took turns idling
/// (pipelined throughput 0.66 of the raw-TCP floor); one frame at a time,
/// each result on the wire before the next request is decoded, keeps both
/// busy (1.0 of the floor, BENCHMARKS.md).
const FRAMES_PER_TURN: usize = 1;
/// Time allowed to flush Goodbyes on shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);
/// Bound on drain rounds per wakeup (each inline task can add one round).
const INLINE_ROUNDS: usize = 64;

/// A job on a slot: what it runs, since when, and its stop signal.
struct Started {
    kind: TaskKind,
    model: Option<[u8; 32]>,
    stop: Stop,
}

pub(super) struct Shell {
    core: Core,
    /// Worker slot threads, started with the first job that needs one.
    slots: Option<Slots>,
    conns: BTreeMap<ConnId, net::Conn>,
    inputs: Sender<Input>,
    events: Sender<NodeEvent>,
    executor: Executor,
    /// Niceness of the slot threads.
    nice: u8,
    udp_target: Option<SocketAddr>,
    /// Interfaces each beacon goes out on (empty: the kernel's choice).
    beacon_ifs: Vec<std::net::Ipv4Addr>,
    /// Requests submitted through the handle, by task id.
    waiters: BTreeMap<u64, Sender<TaskOutcome>>,
    /// Jobs handed to slots: what they run and since when.
    started: BTreeMap<JobId, Started>,
    models: Option<crate::models::ModelStore>,
    /// The multicast socket, when beacons are on.
    udp: Option<Arc<Async<UdpSocket>>>,
    /// Dials the core asked for, started by the loop (which holds the
    /// executor; a reader task may be the one that asked).
    dials: Vec<(ConnId, SocketAddr, Duration)>,
    /// When the loop's timer fires. A reader task that leaves the core
    /// with an earlier deadline (a job's, a retry's) wakes the loop to
    /// re-arm it.
    timer_at: Option<Instant>,
}

/// The shell, shared by its loop and the connections' reader tasks (one
/// thread; a borrow never lives across an await).
type Shared = Rc<RefCell<Shell>>;

impl Shell {
    pub(super) fn new(
        core: Core,
        opts: &NodeOptions,
        inputs: Sender<Input>,
        events: Sender<NodeEvent>,
    ) -> Self {
        Self {
            core,
            slots: None,
            conns: BTreeMap::new(),
            inputs,
            events,
            executor: opts.executor.clone(),
            nice: opts.nice,
            udp_target: opts.multicast.map(|m| SocketAddr::from((m.group, m.port))),
            beacon_ifs: Vec::new(),
            models: opts.models.clone(),
            waiters: BTreeMap::new(),
            started: BTreeMap::new(),
            udp: None,
            dials: Vec::new(),
            timer_at: None,
        }
    }

    pub(super) async fn run(
        mut self,
        ex: &LocalExecutor<'_>,
        inputs: Receiver<Input>,
        listener: TcpListener,
        udp: Option<super::udp::Beacons>,
    ) -> io::Result<()> {
        ex.spawn(feeds::accept_loop(
            Async::new(listener)?,
            self.inputs.clone(),
        ))
        .detach();
        if let Some(b) = udp {
            self.beacon_ifs = b.interfaces;
            let u = Arc::new(Async::new(b.socket)?);
            ex.spawn(feeds::datagram_loop(u.clone(), self.inputs.clone()))
                .detach();
            self.udp = Some(u);
        }
        let dial_tx = self.inputs.clone();
        let shell: Shared = Rc::new(RefCell::new(self));
        let me = Rc::downgrade(&shell);
        let mut stopping: Option<Sender<()>> = None;
        // One timer, re-armed only when the core's deadline comes earlier
        // than the armed one (or the armed one fired). Each re-arm costs a
        // reactor wake-up (async-io notifies on every timer insert: an
        // eventfd write and one more epoll round), and a deadline that only
        // moves later (a session's idle limit, pushed on by every frame)
        // would otherwise re-arm once per task; a timer left early fires
        // once, finds nothing due, and is armed at the new deadline.
        let mut timer = Timer::never();
        loop {
            let (deadline, set) = match shell.try_borrow_mut() {
                Ok(mut sh) => sh.arm_timer(),
                Err(_) => (None, false),
            };
            if let (true, Some(t)) = (set, deadline) {
                timer.set_at(t); // `rearm` never asks to set it for no deadline
            }
            let fired = async {
                (&mut timer).await;
                None
            };
            let input = future::or(async { inputs.recv().await.ok() }, fired).await;
            let now = Instant::now();
            let dials = match shell.try_borrow_mut() {
                Ok(mut sh) => {
                    match input {
                        Some(input) => sh.handle(ex, &me, now, input, &mut stopping),
                        None => sh.timer_at = None, // it fired: set it again
                    }
                    if deadline.is_some_and(|t| t <= now) {
                        sh.core.handle_timeout(now);
                    }
                    sh.drain();
                    std::mem::take(&mut sh.dials)
                }
                Err(_) => {
                    // Cannot happen: no borrow lives across an await.
                    log::error!("shell busy in its own loop; an input was dropped");
                    Vec::new()
                }
            };
            for (conn, addr, timeout) in dials {
                feeds::dial(ex, dial_tx.clone(), conn, addr, timeout);
            }
            if let Some(done) = stopping.take() {
                flush_and_stop(&shell, done).await;
                return Ok(());
            }
        }
    }

    fn handle(
        &mut self,
        ex: &LocalExecutor<'_>,
        me: &Weak<RefCell<Shell>>,
        now: Instant,
        input: Input,
        stopping: &mut Option<Sender<()>>,
    ) {
        match input {
            Input::Datagram(from, data) => self.core.handle_datagram(now, from, &data),
            Input::Incoming(stream, addr) => match self.core.handle_incoming(now, addr) {
                Some(conn) => self.attach(ex, me, conn, stream),
                None => drop(stream),
            },
            Input::Connected(conn, stream) => {
                self.attach(ex, me, conn, stream);
                self.core.handle_connected(now, conn);
            }
            Input::ConnectFailed(conn, why) => self.core.handle_connect_failed(now, conn, why),
            Input::Data(conn, data) => self.feed(conn, &data),
            Input::Closed(conn, why) => self.closed(now, conn, why),
            Input::Wake => {}
            Input::JobDone(job, ran, took) => {
                let status = ran.status;
                (self.core).handle_job_done(now, job, status, ran.reason, &ran.output, took);
                if let Some(Started { kind, model, .. }) = self.started.remove(&job) {
                    self.tell(NodeEvent::TaskFinished {
                        job,
                        kind,
                        model,
                        status,
                        elapsed: took,
                    });
                }
            }
            Input::Found(addr) => self.core.handle_found_addr(now, addr),
            Input::Cmd(cmd) => self.command(now, cmd, stopping),
        }
    }

    fn command(&mut self, now: Instant, cmd: Cmd, stopping: &mut Option<Sender<()>>) {
        match cmd {
            Cmd::Submit(req, reply) => {
                let id = self.core.submit(now, req);
                self.waiters.insert(id, reply);
            }
            Cmd::Peers(reply) => {
                let _ = reply.try_send(self.core.peers(now));
            }
            Cmd::Stats(reply) => {
                let _ = reply.try_send(self.core.stats());
            }
            Cmd::Work(reply) => {
                let _ = reply.try_send(self.core.work());
            }
            Cmd::Pause(paused, reply) => {
                self.core.set_paused(Instant::now(), paused);
                let _ = reply.try_send(());
            }
            Cmd::ProvideModel(hash, bytes) => self.core.provide_model(hash, bytes),
            Cmd::Withdraw => {
                let gone: Vec<u64> = self
                    .waiters
                    .iter()
                    .filter(|(_, w)| w.is_closed())
                    .map(|(id, _)| *id)
                    .collect();
                for id in gone {
                    self.waiters.remove(&id);
                    self.core.cancel(now, id);
                }
            }
            Cmd::Shutdown(reply) => {
                self.core.shutdown(now);
                *stopping = Some(reply);
            }
        }
    }

    fn attach(
        &mut self,
        ex: &LocalExecutor<'_>,
        me: &Weak<RefCell<Shell>>,
        conn: ConnId,
        stream: Async<std::net::TcpStream>,
    ) {
        let shell = me.clone();
        let sink = move |conn: ConnId, got: Result<&[u8], ConnectError>| {
            let Some(shell) = shell.upgrade() else {
                return net::Delivery::Gone;
            };
            let Ok(mut sh) = shell.try_borrow_mut() else {
                return net::Delivery::Busy;
            };
            match got {
                Ok(data) => sh.feed(conn, data),
                Err(why) => sh.closed(Instant::now(), conn, why),
            }
            sh.drain();
            if sh.needs_loop() {
                let _ = sh.inputs.try_send(Input::Wake);
            }
            net::Delivery::Done
        };
        let c = net::attach(ex, conn, stream, sink, self.inputs.clone());
        self.conns.insert(conn, c);
    }

    /// Hands `data` from connection `conn` to the core [`FRAMES_PER_TURN`]
    /// frames at a time, sending what each turn produced before the next.
    fn feed(&mut self, conn: ConnId, data: &[u8]) {
        let mut rest = data;
        // Each turn uses at least one byte, or the loop ends.
        for _ in 0..=data.len() {
            let used = self
                .core
                .handle_stream_frames(Instant::now(), conn, rest, FRAMES_PER_TURN);
            rest = rest.get(used..).unwrap_or_default();
            if rest.is_empty() || used == 0 {
                return;
            }
            self.drain();
        }
    }

    /// The core's next deadline, and whether the loop's timer must be set
    /// for it (it then counts as armed there).
    fn arm_timer(&mut self) -> (Option<Instant>, bool) {
        let deadline = self.core.poll_timeout();
        let set = rearm(self.timer_at, deadline);
        if set {
            self.timer_at = deadline;
        }
        (deadline, set)
    }

    /// Whether the loop must take a turn after a reader task's work: to
    /// start dials (it holds the executor) or to set its timer for a
    /// deadline earlier than the armed one.
    fn needs_loop(&self) -> bool {
        !self.dials.is_empty() || rearm(self.timer_at, self.core.poll_timeout())
    }

    /// Connection `conn` ended.
    fn closed(&mut self, now: Instant, conn: ConnId, why: ConnectError) {
        self.conns.remove(&conn);
        self.core.handle_closed(now, conn, why);
    }

    /// Carries out the core's transmits and events until it has none left
    /// (an inline task's result makes more).
    fn drain(&mut self) {
        for _ in 0..INLINE_ROUNDS {
            while let Some(t) = self.core.poll_transmit() {
                self.transmit(t);
            }
            while let Some(o) = self.core.poll_order() {
                if let Some(app) = self.carry_out(o) {
                    self.tell(app);
                }
            }
            while let Some(e) = self.core.poll_event() {
                if let Some(app) = self.event(e) {
                    self.tell(app);
                }
            }
            if !self.core.has_pending_output() {
                break;
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Multicast(bytes) => {
                if let (Some(u), Some(to)) = (&self.udp, self.udp_target) {
                    if let Err(e) = super::udp::send(u.get_ref(), &self.beacon_ifs, &bytes, to) {
                        log::debug!("beacon send to {to} failed: {e}");
                    }
                }
            }
            Transmit::Connect {
                conn,
                addr,
                timeout,
            } => self.dials.push((conn, addr, timeout)),
            Transmit::Send { conn, bytes } => {
                let full = self
                    .conns
                    .get(&conn)
                    .is_some_and(|c| matches!(c.send(bytes), Err(TrySendError::Full(_))));
                if full {
                    log::warn!("connection {conn}: peer is not reading ({SEND_QUEUE} frames queued); closing it");
                    if let Some(c) = self.conns.remove(&conn) {
                        c.abort();
                    }
                    self.core
                        .handle_closed(Instant::now(), conn, ConnectError::SendQueueFull);
                }
            }
            Transmit::Close { conn } => {
                if let Some(c) = self.conns.get(&conn) {
                    c.close();
                }
            }
        }
    }

    /// Passes news to the application (dropped, with a debug line, when
    /// nobody reads them fast enough).
    fn tell(&self, ev: NodeEvent) {
        if let Err(TrySendError::Full(_)) = self.events.try_send(ev) {
            log::debug!("event queue full; an event was dropped");
        }
    }

    /// What the application hears of the core's news. A task's outcome
    /// goes to whoever waits on it (the submit), moved, and to the event
    /// queue only when nobody does: a batch that never reads events would
    /// otherwise pin a copy of each of the last [`super::EVENT_QUEUE`]
    /// outputs (gigabytes of image-sized tensors).
    fn event(&mut self, e: Event) -> Option<NodeEvent> {
        Some(match e {
            Event::PeerDiscovered { id, addr, via } => NodeEvent::Discovered {
                id,
                addr,
                via: via.name(),
            },
            Event::PeerConnected { id, addr } => NodeEvent::Connected { id, addr },
            Event::PeerDisconnected { id, reason } => NodeEvent::Disconnected { id, reason },
            Event::DialFailed { addr, why } => NodeEvent::DialFailed { addr, why },
            Event::TaskDone(outcome) => match self.waiters.remove(&outcome.task_id) {
                Some(w) => match w.try_send(*outcome) {
                    Ok(()) => return None,
                    // The submit was dropped before its outcome came.
                    Err(e) => NodeEvent::TaskDone(Box::new(e.into_inner())),
                },
                None => NodeEvent::TaskDone(outcome),
            },
        })
    }

    /// Carries out one order of the core; returns what the application
    /// hears of it.
    fn carry_out(&mut self, o: Order) -> Option<NodeEvent> {
        match o {
            Order::Execute {
                job,
                kind,
                input,
                model,
                deadline,
                inline,
            } => {
                let run = Job {
                    id: job,
                    kind,
                    input,
                    model,
                    deadline,
                    stop: Stop::default(),
                };
                self.execute(run, inline)
            }
            Order::Abandon { job } => {
                // A job waiting for a slot is skipped, a sleep ends now; its
                // slot is free at once (the core counted it free already).
                if let Some(Started { stop, .. }) = self.started.get(&job) {
                    stop.raise();
                }
                self.executor.abandon(job);
                None
            }
            Order::StoreModel { hash, bytes } => {
                // Written before the jobs waiting for it start (they come
                // later in this same queue).
                match &self.models {
                    Some(store) => {
                        if let Err(e) = store.put(Some(hash), &bytes) {
                            log::error!("could not store a fetched model: {e}");
                        }
                        // Storing may have evicted older models: the node
                        // advertises exactly what the store holds.
                        let held: Vec<[u8; 32]> = store.list().into_iter().map(|m| m.0).collect();
                        self.core.sync_held_models(&held);
                    }
                    None => log::warn!("fetched a model but this node has no model store"),
                }
                None
            }
        }
    }

    /// Runs a job the core started: at once on this thread where the core
    /// said so (microseconds of work), else on a slot.
    fn execute(&mut self, run: Job, inline: bool) -> Option<NodeEvent> {
        let (job, kind, model) = (run.id, run.kind, run.model);
        if inline {
            let start = Instant::now();
            let ran = self.executor.run(run);
            let (status, elapsed) = (ran.status, start.elapsed());
            (self.core).handle_job_done(
                Instant::now(),
                job,
                status,
                ran.reason,
                &ran.output,
                elapsed,
            );
            self.tell(NodeEvent::TaskStarted { job, kind, model });
            return Some(NodeEvent::TaskFinished {
                job,
                kind,
                model,
                status,
                elapsed,
            });
        }
        let started = Started {
            kind,
            model,
            stop: run.stop.clone(),
        };
        self.started.insert(job, started);
        self.queue_on_slot(run);
        Some(NodeEvent::TaskStarted { job, kind, model })
    }

    /// Queues a job for the slot threads (started with the first one).
    fn queue_on_slot(&mut self, slot_job: Job) {
        let job = slot_job.id;
        let slots = self.slots.get_or_insert_with(|| {
            Slots::start(
                self.core.config().workers,
                self.nice,
                self.executor.clone(),
                self.inputs.clone(),
            )
        });
        // The FIFO takes every job the core starts (it bounds them); it
        // refuses one only when no slot thread is left to take it.
        if slots.jobs.try_send(slot_job).is_err() {
            self.started.remove(&job);
            let why = b"this node's worker slots are not running (see its log)";
            let reason = Some(FailReason::Worker);
            (self.core).handle_job_done(
                Instant::now(),
                job,
                TaskStatus::Failed,
                reason,
                why,
                Duration::ZERO,
            );
        }
    }
}

/// Whether the shell's timer, armed at `armed`, must be set again for the
/// core's `deadline`: only when it is not armed, or the deadline comes
/// earlier (a later one is met by one early wake-up, see [`Shell::run`]).
fn rearm(armed: Option<Instant>, deadline: Option<Instant>) -> bool {
    match (armed, deadline) {
        (None, Some(_)) => true,
        (Some(a), Some(d)) => d < a,
        (_, None) => false,
    }
}

/// Lets writers flush the Goodbyes, then answers the shutdown request.
async fn flush_and_stop(shell: &Shared, done: Sender<()>) {
    let flush = Instant::now();
    while flush.elapsed() < SHUTDOWN_FLUSH {
        let open = match shell.try_borrow_mut() {
            Ok(mut sh) => {
                sh.conns.retain(|_, c| !c.is_closed());
                !sh.conns.is_empty()
            }
            Err(_) => true,
        };
        if !open {
            break;
        }
        Timer::after(Duration::from_millis(10)).await;
    }
    Timer::after(Duration::from_millis(50)).await;
    let _ = done.send(()).await;
}

#[cfg(test)]
mod tests {
    use super::rearm;
    use std::time::{Duration, Instant};

    #[test]
    fn the_timer_is_set_again_only_for_an_earlier_deadline() {
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        assert!(rearm(None, Some(t)), "nothing armed: arm");
        assert!(rearm(Some(later), Some(t)), "earlier deadline: re-arm");
        assert!(
            !rearm(Some(t), Some(later)),
            "later deadline: one early wake-up instead"
        );
        assert!(!rearm(Some(t), Some(t)), "same deadline: keep");
        assert!(
            !rearm(Some(t), None),
            "no deadline: the armed timer fires once, harmlessly"
        );
        assert!(!rearm(None, None));
    }
}
