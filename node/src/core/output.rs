//! What the core hands out, one queue per consumer: transmits for the
//! shell's sockets ([`Transmit`]), orders for the shell's executor and model
//! store ([`Order`]), news for the application ([`Event`]); and counters of
//! refused input, and the log-once policy for bad input. Every part writes
//! into one [`Outbox`]; nothing here decides.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pa_protocol::{NodeId, TaskKind};

pub(crate) use super::stats::{bump, BadInput};

use super::ids::{ConnId, JobId};
use super::outcome::TaskOutcome;
use super::peer_info::Via;
use super::reason::{CloseReason, ConnectError};

/// Work for the shell's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Send this datagram to the multicast group.
    Multicast(Vec<u8>),
    /// Open a TCP connection; report it with `handle_connected`, or with
    /// `handle_connect_failed` (`ConnectError::TimedOut` once `timeout`
    /// passed: the core decides whether to try again).
    Connect {
        /// The id to report the connection under.
        conn: ConnId,
        /// Where to connect.
        addr: SocketAddr,
        /// How long this attempt may take.
        timeout: Duration,
    },
    /// Write these bytes (length-prefixed frames) to the connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// One or more length-prefixed frames.
        bytes: Vec<u8>,
    },
    /// Close the connection once what was queued before is written.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// News for the application: what happened. The shell passes it on and
/// acts on none of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A peer was seen for the first time.
    PeerDiscovered {
        /// Its key.
        id: NodeId,
        /// Its TCP address.
        addr: SocketAddr,
        /// How it was found.
        via: Via,
    },
    /// A session with a peer is up.
    PeerConnected {
        /// Its key.
        id: NodeId,
        /// Its TCP (listen) address.
        addr: SocketAddr,
    },
    /// A session with a peer ended.
    PeerDisconnected {
        /// Its key.
        id: NodeId,
        /// Why.
        reason: CloseReason,
    },
    /// A dial failed before any handshake (refused, unreachable, or every
    /// attempt timed out): an application that found the address by name
    /// may want to resolve it again.
    DialFailed {
        /// Where it dialed.
        addr: SocketAddr,
        /// Why the last attempt failed.
        why: ConnectError,
    },
    /// Requester side: a task ended (reported exactly once).
    TaskDone(Box<TaskOutcome>),
}

/// Work for the shell besides its sockets: the core decided it, the shell
/// carries it out, in the order given (a model is stored before the jobs
/// that need it run).
#[derive(Debug, Clone, PartialEq)]
pub enum Order {
    /// Run this job and report it with `handle_job_done`.
    Execute {
        /// The job's id.
        job: JobId,
        /// What to run.
        kind: TaskKind,
        /// Its input.
        input: Vec<u8>,
        /// The model an `infer` job runs.
        model: Option<[u8; 32]>,
        /// When the requester stops waiting.
        deadline: Instant,
        /// Run it at once, on the shell's own thread (echo and hash of a
        /// small input: microseconds), not on a slot.
        inline: bool,
    },
    /// This job's result is no longer wanted: stop it, free its slot.
    Abandon {
        /// The job.
        job: JobId,
    },
    /// A model was fetched and verified: store it (and report what the
    /// store holds with `sync_held_models`).
    StoreModel {
        /// Its SHA-256.
        hash: [u8; 32],
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// Where every part of the core puts what it produces.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) orders: VecDeque<Order>,
    pub(crate) events: VecDeque<Event>,
    warned: u32,
}

impl Outbox {
    pub(crate) fn transmit(&mut self, t: Transmit) {
        self.transmits.push_back(t);
    }

    pub(crate) fn order(&mut self, o: Order) {
        self.orders.push_back(o);
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// Logs bad input of kind `noise`: at `warn` the first time, then at `debug`.
    pub(crate) fn warn_once(&mut self, kind: BadInput, msg: std::fmt::Arguments<'_>) {
        let bit = 1u32 << (kind as u32);
        if self.warned & bit == 0 {
            self.warned |= bit;
            log::warn!("{msg} (further such events are logged at debug level)");
        } else {
            log::debug!("{msg}");
        }
    }
}
