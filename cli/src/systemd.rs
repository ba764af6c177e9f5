//! systemd's service notifications (sd_notify(3)) for `Type=notify` units:
//! `READY=1` once the node listens, `WATCHDOG=1` at half of
//! `WATCHDOG_USEC` while the node's loop answers, `STOPPING=1` on shutdown.
//! Each is one datagram to the `AF_UNIX` socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` in the abstract namespace). Without it, nothing is
//! sent: the node runs the same under any other supervisor.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where systemd listens for this service's notifications.
#[derive(Debug)]
pub struct Notify {
    sock: UnixDatagram,
    to: std::os::unix::net::SocketAddr,
}

impl Notify {
    /// The socket `NOTIFY_SOCKET` names, if it is set (and can be opened:
    /// a bad one is logged and ignored, never a reason not to serve).
    pub fn from_env() -> Option<Self> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy().into_owned();
        let to = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&name),
        };
        let opened = to.and_then(|to| UnixDatagram::unbound().map(|sock| Self { sock, to }));
        match opened {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={name}: {e}; not notifying systemd");
                None
            }
        }
    }

    /// Sends one notification (`READY=1`, ...); a failure is logged.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.to) {
            log::warn!("systemd notification {state:?} not sent: {e}");
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the
/// watchdog is meant for this process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_string_lossy().trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
