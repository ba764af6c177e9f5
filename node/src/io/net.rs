//! TCP for the shell: outbound connects with quick retries, and the reader
//! and writer task of each connection. Bytes only; the core decides.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::{Input, Outgoing};
use crate::core::{ConnId, ConnectError};

/// Bytes read from a socket at once (zeroed up front per connection: small).
const READ_CHUNK: usize = 8 * 1024;
/// Most bytes gathered into one `write`.
const WRITE_BATCH: usize = 64 * 1024;
/// First wait for an outbound TCP connect; each retry waits twice as long.
/// On a LAN a connect that takes 250 ms lost its SYN: a fresh attempt beats
/// the kernel's 1 s retransmission timer.
const CONNECT_FIRST_WAIT: Duration = Duration::from_millis(250);
/// Connect attempts before the dial counts as failed (250 + 500 + 1000 + 2000 ms).
const CONNECT_ATTEMPTS: u32 = 4;

/// Connects with quick retries (see [`CONNECT_FIRST_WAIT`]).
pub(super) async fn connect(addr: SocketAddr) -> Result<Async<TcpStream>, ConnectError> {
    let mut wait = CONNECT_FIRST_WAIT;
    for _ in 0..CONNECT_ATTEMPTS {
        let attempt = async {
            Async::<TcpStream>::connect(addr)
                .await
                .map_err(|e| ConnectError::from(&e))
        };
        let timeout = async {
            Timer::after(wait).await;
            Err(ConnectError::TimedOut)
        };
        match future::or(attempt, timeout).await {
            Ok(s) => return Ok(s),
            Err(ConnectError::TimedOut) => {}
            Err(e) => return Err(e), // refused or unreachable: an answer, not a loss
        }
        wait = wait.saturating_mul(2);
    }
    Err(ConnectError::TimedOut)
}

/// Starts the reader and writer tasks of a connection.
pub(super) fn attach(
    ex: &LocalExecutor<'_>,
    conn: ConnId,
    stream: Async<TcpStream>,
    inputs: Sender<Input>,
    outgoing: Receiver<Outgoing>,
) {
    if let Err(e) = stream.get_ref().set_nodelay(true) {
        log::debug!("TCP_NODELAY failed: {e}");
    }
    let stream = Arc::new(stream);
    ex.spawn(read_loop(conn, stream.clone(), inputs)).detach();
    ex.spawn(write_loop(stream, outgoing)).detach();
}

/// Reads until the connection ends, then reports why.
async fn read_loop(conn: ConnId, reader: Arc<Async<TcpStream>>, inputs: Sender<Input>) {
    let mut buf = vec![0u8; READ_CHUNK];
    let why = loop {
        match (&*reader).read(&mut buf).await {
            Ok(0) => break ConnectError::ClosedByPeer,
            Ok(n) => {
                let data = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                if inputs.send(Input::Data(conn, data)).await.is_err() {
                    return;
                }
                // A short read drained the socket: wait for readiness
                // instead of a read that would only say EAGAIN.
                if n < buf.len() {
                    if let Err(e) = reader.readable().await {
                        break ConnectError::from(&e);
                    }
                }
            }
            Err(e) => break ConnectError::from(&e),
        }
    };
    let _ = inputs.send(Input::Closed(conn, why)).await;
}

/// Writes what the shell queues, gathered into batches, until told to close.
async fn write_loop(stream: Arc<Async<TcpStream>>, rx: Receiver<Outgoing>) {
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
        if !batch.is_empty() && (&*stream).write_all(&batch).await.is_err() {
            break;
        }
        batch.clear();
        if close {
            break;
        }
    }
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    rx.close();
}
