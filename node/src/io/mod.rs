//! The smol shell: moves bytes between sockets and the [`Core`](crate::core::Core),
//! runs tasks on worker slot threads, and offers a small async handle to
//! applications. It decides nothing: every protocol decision is the core's.
//!
//! - [`handle`]: what applications hold ([`NodeHandle`], [`LocalNode`], options, events);
//! - `shell`: the loop between sockets, channels and the core;
//! - `net`: TCP connects, readers and writers; [`udp`]: the multicast socket; [`mdns`];
//! - `slots`: the worker slot threads; `entropy`: the OS random source.

mod entropy;
mod feeds;
pub mod handle;
pub mod mdns;
mod net;
mod options;
mod shell;
mod slots;
pub mod udp;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::task::Ran;
use async_channel::Sender;
use async_io::Async;

use crate::core::{ConnId, ConnectError, JobId, PeerInfo, Stats, TaskOutcome, TaskRequest};

pub use entropy::OsEntropy;
pub use handle::{AddressFeed, LocalNode, NodeEvent, NodeHandle, NodeOptions, NodeStopped};
pub use udp::MulticastConfig;

/// Frames queued per connection before the peer counts as too slow and is
/// dropped (backpressure: a stalled reader cannot make us buffer without end).
/// Twice the tasks a requester keeps in flight to one peer; the queue's slots
/// are allocated up front (about 40 bytes each), so it is also most of what a
/// session costs in memory.
pub const SEND_QUEUE: usize = 128;
/// Inputs (datagrams, connections, finished jobs, commands) queued for the
/// shell's loop. Stream reads go to the core on their reader's task and come
/// here only when the shell is busy, which its single thread rules out.
const INPUT_QUEUE: usize = 1024;
/// Application events buffered for a slow reader before some are dropped.
const EVENT_QUEUE: usize = 4096;

/// A request from the handle to the node.
enum Cmd {
    Submit(TaskRequest, Sender<TaskOutcome>),
    Peers(Sender<Vec<PeerInfo>>),
    Stats(Sender<Stats>),
    Work(Sender<crate::core::Work>),
    /// Pause (true) or resume the worker; answered once done.
    Pause(bool, Sender<()>),
    ProvideModel([u8; 32], Arc<[u8]>),
    /// Cancel the tasks whose submitter stopped waiting.
    Withdraw,
    Shutdown(Sender<()>),
}

/// Everything that reaches the shell's loop.
enum Input {
    Datagram(SocketAddr, Vec<u8>),
    Incoming(Async<TcpStream>, SocketAddr),
    Connected(ConnId, Async<TcpStream>),
    ConnectFailed(ConnId, ConnectError),
    /// Read from a connection while the shell was busy (see `INPUT_QUEUE`).
    Data(ConnId, Vec<u8>),
    /// A connection ended while the shell was busy.
    Closed(ConnId, ConnectError),
    /// A slot ran a job: how it ended, its output, how long it ran.
    JobDone(JobId, Ran, Duration),
    Found(SocketAddr),
    Cmd(Cmd),
    /// Nothing but a turn of the loop (to start dials a reader task's
    /// frames asked for, or re-arm the timer for an earlier deadline).
    Wake,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Input")
    }
}

/// What a connection's writer is told.
enum Outgoing {
    Bytes(Vec<u8>),
    Close,
}
