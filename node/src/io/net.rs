//! TCP for the shell: outbound connects with quick retries, and the reader
//! and writer task of each connection (the writer only takes what the
//! socket did not accept at once). Bytes only; the core decides.

use std::cell::Cell;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_channel::{bounded, Receiver, Sender, TrySendError};
use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::{Input, Outgoing, SEND_QUEUE};
use crate::core::{ConnId, ConnectError};

/// Bytes read from a socket at once, at first (zeroed up front per
/// connection: small).
const READ_CHUNK: usize = 8 * 1024;
/// What the read buffer grows to on a connection whose reads fill it (a
/// blob transfer): 8 KiB reads made a 1.2 MB tensor 150 system calls and
/// as many passes through the core; this makes it 19. Only connections that
/// carry bulk data pay for it, at most this much each.
const READ_CHUNK_BULK: usize = 64 * 1024;
/// Most bytes gathered into one `write`.
const WRITE_BATCH: usize = 64 * 1024;
/// Longest a write may wait for the socket to take its bytes: a peer that
/// reads nothing for this long (its socket buffers full) is cut off, however
/// few frames are queued for it. (Half a second in this module's tests.)
const WRITE_DEADLINE: Duration = if cfg!(test) {
    Duration::from_millis(500)
} else {
    Duration::from_secs(10)
};
/// One outbound TCP connect, given up after `timeout` (the core's dial
/// timers decide the attempts and their waits: `core/sessions`).
pub(super) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Async<TcpStream>, ConnectError> {
    let attempt = async {
        Async::<TcpStream>::connect(addr)
            .await
            .map_err(|e| ConnectError::from(&e))
    };
    let timer = async {
        Timer::after(timeout).await;
        Err(ConnectError::TimedOut)
    };
    future::or(attempt, timer).await
}

/// The shell's end of a connection: its writer's queue, and the socket
/// itself for frames written at once while the writer is idle.
pub(super) struct Conn {
    tx: Sender<Outgoing>,
    stream: Arc<Async<TcpStream>>,
    /// Set while the writer holds bytes it has not written (waiting for the
    /// socket to take them): a direct write then would interleave.
    writing: Rc<Cell<bool>>,
}

impl Conn {
    /// Sends `bytes`: written at once when nothing is queued before them
    /// and the socket takes them (no hop through the writer task: a task
    /// wake-up and a channel round per frame), otherwise what is left goes
    /// to the writer. `Err(Full)` when the writer's queue is full (the peer
    /// is not reading).
    pub(super) fn send(&self, mut bytes: Vec<u8>) -> Result<(), TrySendError<Outgoing>> {
        if self.tx.is_empty() && !self.writing.get() && !self.tx.is_closed() {
            match self.stream.get_ref().write(&bytes) {
                Ok(n) if n >= bytes.len() => return Ok(()),
                Ok(n) => drop(bytes.drain(..n)),
                // Would block, or an error the writer meets again and ends
                // the connection on (the reader then reports it closed).
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => log::debug!("direct write failed: {e}"),
            }
        }
        self.tx.try_send(Outgoing::Bytes(bytes))
    }

    /// Asks the writer to flush what it holds and close the connection.
    pub(super) fn close(&self) {
        let _ = self.tx.try_send(Outgoing::Close);
    }

    /// Drops the writer's queue: it ends at once, queued frames unsent.
    pub(super) fn abort(&self) {
        self.tx.close();
    }

    /// Whether the writer has ended.
    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What the shell did with what a connection's reader read.
pub(super) enum Delivery {
    /// Handled.
    Done,
    /// The shell is busy elsewhere (cannot happen while no borrow of it
    /// lives across an await): the reader queues the bytes for its loop.
    Busy,
    /// The node has stopped: the reader ends.
    Gone,
}

/// Starts the reader and writer tasks of a connection. The reader hands
/// each read to `sink` on its own task, so that a request is decoded,
/// run (when inline) and answered without a hop through the shell's loop;
/// `inputs` takes it only when `sink` says [`Delivery::Busy`].
pub(super) fn attach<S>(
    ex: &LocalExecutor<'_>,
    conn: ConnId,
    stream: Async<TcpStream>,
    sink: S,
    inputs: Sender<Input>,
) -> Conn
where
    S: Fn(ConnId, Result<&[u8], ConnectError>) -> Delivery + 'static,
{
    if let Err(e) = stream.get_ref().set_nodelay(true) {
        log::debug!("TCP_NODELAY failed: {e}");
    }
    let (tx, rx) = bounded::<Outgoing>(SEND_QUEUE);
    let stream = Arc::new(stream);
    let writing = Rc::new(Cell::new(false));
    let stalled = Rc::new(Cell::new(false));
    ex.spawn(read_loop(
        conn,
        stream.clone(),
        sink,
        inputs,
        stalled.clone(),
    ))
    .detach();
    ex.spawn(write_loop(stream.clone(), rx, writing.clone(), stalled))
        .detach();
    Conn {
        tx,
        stream,
        writing,
    }
}

/// Reads until the connection ends, then reports why (`stalled`: the
/// writer cut it off at its deadline).
async fn read_loop<S>(
    conn: ConnId,
    reader: Arc<Async<TcpStream>>,
    sink: S,
    inputs: Sender<Input>,
    stalled: Rc<Cell<bool>>,
) where
    S: Fn(ConnId, Result<&[u8], ConnectError>) -> Delivery,
{
    let mut buf = vec![0u8; READ_CHUNK];
    let why = loop {
        match (&*reader).read(&mut buf).await {
            Ok(0) => break ConnectError::ClosedByPeer,
            Ok(n) => {
                let data = buf.get(..n).unwrap_or_default();
                match sink(conn, Ok(data)) {
                    Delivery::Done => {}
                    Delivery::Gone => return,
                    Delivery::Busy => {
                        if inputs.send(Input::Data(conn, data.to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
                // A short read drained the socket: wait for readiness
                // instead of a read that would only say EAGAIN. A full one
                // may have more behind it: let the other tasks have a turn
                // first (a read that succeeds never yields, and the core
                // runs on this task, so a peer that keeps the socket full
                // would otherwise hold the thread).
                if n < buf.len() {
                    if let Err(e) = reader.readable().await {
                        break ConnectError::from(&e);
                    }
                } else {
                    if buf.len() < READ_CHUNK_BULK {
                        buf.resize(buf.len().saturating_mul(2).min(READ_CHUNK_BULK), 0);
                    }
                    future::yield_now().await;
                }
            }
            Err(e) => break ConnectError::from(&e),
        }
    };
    let why = if stalled.get() {
        ConnectError::WriteStalled
    } else {
        why
    };
    if let Delivery::Busy = sink(conn, Err(why)) {
        let _ = inputs.send(Input::Closed(conn, why)).await;
    }
}

/// Writes what the shell queues, gathered into batches, until told to
/// close, or until a batch waits for the socket past [`WRITE_DEADLINE`]
/// (then `stalled` is set and the connection shut: the reader reports it).
async fn write_loop(
    stream: Arc<Async<TcpStream>>,
    rx: Receiver<Outgoing>,
    writing: Rc<Cell<bool>>,
    stalled: Rc<Cell<bool>>,
) {
    let mut batch = Vec::with_capacity(4096);
    while let Ok(msg) = rx.recv().await {
        let mut close = false;
        match msg {
            Outgoing::Bytes(b) => batch.extend_from_slice(&b),
            Outgoing::Close => close = true,
        }
        while !close && batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(Outgoing::Bytes(b)) => batch.extend_from_slice(&b),
                Ok(Outgoing::Close) => close = true,
                Err(_) => break,
            }
        }
        writing.set(true);
        if !batch.is_empty() {
            let write = async { (&*stream).write_all(&batch).await.is_ok() };
            let deadline = async {
                Timer::after(WRITE_DEADLINE).await;
                stalled.set(true);
                false
            };
            if !future::or(write, deadline).await {
                break;
            }
        }
        writing.set(false);
        batch.clear();
        if close {
            break;
        }
    }
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    rx.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Instant;

    /// Frames sent through [`Conn::send`] arrive whole and in order, whether
    /// they went out directly or through the writer: the peer reads late, so
    /// the socket fills, direct writes come back partial or would-block and
    /// the writer takes the rest while later frames keep coming.
    #[test]
    fn frames_arrive_in_order_when_direct_and_queued_writes_mix() {
        const FRAMES: usize = 48;
        const LEN: usize = 48 * 1024;
        // Every eighth frame is small: the first fits the empty socket.
        let len_of = |i: usize| if i.is_multiple_of(8) { 1024 } else { LEN };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Small buffers, so that the socket fills after a few frames.
        socket2::SockRef::from(&listener)
            .set_recv_buffer_size(16 * 1024)
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            std::thread::sleep(Duration::from_millis(5)); // let the socket fill
            let mut got = Vec::new();
            for i in 0..FRAMES {
                let mut buf = vec![0u8; len_of(i)];
                s.read_exact(&mut buf).unwrap();
                let first = buf.first().copied().unwrap();
                assert!(
                    buf.iter().all(|b| *b == first),
                    "a frame arrived mixed with another"
                );
                got.push(first);
            }
            got
        });
        let client = TcpStream::connect(addr).unwrap();
        socket2::SockRef::from(&client)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        let stream = Async::<TcpStream>::new(client).unwrap();
        let ex = LocalExecutor::new();
        let (inputs, _keep) = async_channel::bounded(16);
        let conn = attach(&ex, 1, stream, |_, _| Delivery::Done, inputs);
        let (mut direct, mut queued) = (0, 0);
        for i in 0..FRAMES {
            let idle = conn.tx.is_empty() && !conn.writing.get();
            conn.send(vec![i as u8; len_of(i)]).unwrap();
            if idle && conn.tx.is_empty() {
                direct += 1; // written whole, at once
            }
            if !conn.tx.is_empty() {
                queued += 1;
            }
            // The writer runs once: it stops half-way through its batch,
            // and the reader makes room meanwhile.
            while ex.try_tick() {}
            std::thread::sleep(Duration::from_millis(1));
        }
        conn.close();
        let deadline = Instant::now() + Duration::from_secs(20);
        async_io::block_on(ex.run(async {
            while !conn.is_closed() && Instant::now() < deadline {
                Timer::after(Duration::from_millis(5)).await;
            }
        }));
        let got = reader.join().unwrap();
        let want: Vec<u8> = (0..FRAMES).map(|i| i as u8).collect();
        assert_eq!(got, want);
        assert!(direct >= 1, "no frame was written directly");
        assert!(queued >= 1, "no frame went through the writer");
    }

    /// When the shell cannot take a read at once, the reader queues it (and
    /// the end of the connection) for the shell's loop instead: nothing read
    /// is dropped.
    #[test]
    fn a_busy_shell_gets_the_reads_through_its_loop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let ex = LocalExecutor::new();
        let (inputs, rx) = async_channel::bounded(16);
        let handled = Rc::new(Cell::new(0usize));
        let seen = handled.clone();
        let sink = move |_: ConnId, _: Result<&[u8], ConnectError>| {
            seen.set(seen.get() + 1);
            Delivery::Busy
        };
        let _conn = attach(&ex, 7, Async::new(server).unwrap(), sink, inputs);
        client.write_all(b"hello").unwrap();
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut data, mut closed) = (Vec::new(), None);
        async_io::block_on(ex.run(async {
            while closed.is_none() && Instant::now() < deadline {
                let next = future::or(async { rx.recv().await.ok() }, async {
                    Timer::after(Duration::from_millis(100)).await;
                    None
                });
                match next.await {
                    Some(Input::Data(7, d)) => data.extend_from_slice(&d),
                    Some(Input::Closed(7, why)) => closed = Some(why),
                    _ => {}
                }
            }
        }));
        assert_eq!(data, b"hello");
        assert_eq!(closed, Some(ConnectError::ClosedByPeer));
        assert!(handled.get() >= 2, "the sink was asked first");
    }

    /// A peer that keeps its socket full does not hold the thread: other
    /// tasks run between its reads, not only once it pauses. (A read that
    /// succeeds never yields, and the core runs on the reader's task.)
    #[test]
    fn a_full_socket_leaves_other_tasks_their_turn() {
        const FULL: usize = 8 * READ_CHUNK;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        // Eight full reads wait in the socket before the reader starts.
        client.write_all(&vec![0u8; FULL]).unwrap();
        let ex = LocalExecutor::new();
        let (inputs, _keep) = async_channel::bounded(16);
        let read = Rc::new(Cell::new(0usize));
        let seen = read.clone();
        // Some work per read, as the core does (decoding, checking).
        let sink = move |_: ConnId, got: Result<&[u8], ConnectError>| {
            if let Ok(d) = got {
                seen.set(seen.get() + d.len());
                std::thread::sleep(Duration::from_millis(2));
            }
            Delivery::Done
        };
        let _conn = attach(&ex, 1, Async::new(server).unwrap(), sink, inputs);
        let turn = Rc::new(Cell::new(None));
        let mark = turn.clone();
        let counted = read.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        async_io::block_on(ex.run(async {
            // Once the reads are being handled, this task asks for a turn.
            let other = ex.spawn(async move {
                while counted.get() == 0 && Instant::now() < deadline {
                    Timer::after(Duration::from_millis(1)).await;
                }
                mark.set(Some(counted.get()));
            });
            while read.get() < FULL && Instant::now() < deadline {
                Timer::after(Duration::from_millis(1)).await;
            }
            other.await;
        }));
        drop(client);
        let at = turn.get().expect("the other task ran");
        assert!(
            at < FULL / 2,
            "the other task waited for {at} of {FULL} bytes to be handled"
        );
    }

    /// A peer that reads nothing is cut off at the write deadline, with its
    /// reason, though only a few frames wait for it.
    #[test]
    fn a_peer_that_stops_reading_is_cut_off_at_the_write_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        client
            .connect(&listener.local_addr().unwrap().into())
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
        let ex = LocalExecutor::new();
        let (inputs, _keep) = async_channel::bounded(16);
        let why = Rc::new(Cell::new(None));
        let seen = why.clone();
        let sink = move |_: ConnId, got: Result<&[u8], ConnectError>| {
            if let Err(e) = got {
                seen.set(Some(e));
            }
            Delivery::Done
        };
        let conn = attach(&ex, 1, Async::new(server).unwrap(), sink, inputs);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(20);
        async_io::block_on(ex.run(async {
            // Far fewer frames than the send queue holds.
            for _ in 0..16 {
                conn.send(vec![1u8; 64 * 1024]).unwrap();
            }
            while why.get().is_none() && Instant::now() < deadline {
                Timer::after(Duration::from_millis(10)).await;
            }
        }));
        drop(client);
        assert_eq!(why.get(), Some(ConnectError::WriteStalled));
        assert!(start.elapsed() >= WRITE_DEADLINE, "{:?}", start.elapsed());
    }
}
