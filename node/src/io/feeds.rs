//! The tasks that feed the shell's loop: accepted connections, received
//! datagrams, and the connect attempts the core asked for. Each hands what
//! it got to the loop's channel and decides nothing.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use async_channel::Sender;
use async_executor::LocalExecutor;
use async_io::{Async, Timer};

use super::{net, Input};
use crate::core::ConnId;

/// Largest datagram read (beacons are at most 1 200 bytes).
const DATAGRAM_BUF: usize = 2048;
/// Pause after a failed accept (out of descriptors) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Pause after a failed datagram receive.
const RECV_RETRY: Duration = Duration::from_millis(50);

/// Makes one connect attempt the core asked for, on a task of its own, for
/// at most `timeout` (the core retries a timed-out attempt).
pub(super) fn dial(
    ex: &LocalExecutor<'_>,
    tx: Sender<Input>,
    conn: ConnId,
    addr: SocketAddr,
    timeout: Duration,
) {
    ex.spawn(async move {
        let input = match net::connect(addr, timeout).await {
            Ok(s) => Input::Connected(conn, s),
            Err(e) => Input::ConnectFailed(conn, e),
        };
        let _ = tx.send(input).await;
    })
    .detach();
}

/// Accepts TCP connections for the shell.
pub(super) async fn accept_loop(listener: Async<TcpListener>, tx: Sender<Input>) {
    loop {
        match listener.accept().await {
            Ok((s, a)) => {
                if tx.send(Input::Incoming(s, a)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                Timer::after(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Receives beacons for the shell.
pub(super) async fn datagram_loop(u: Arc<Async<UdpSocket>>, tx: Sender<Input>) {
    let mut buf = vec![0u8; DATAGRAM_BUF];
    loop {
        match u.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let data = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                if tx.send(Input::Datagram(from, data)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                log::debug!("multicast receive failed: {e}");
                Timer::after(RECV_RETRY).await;
            }
        }
    }
}
