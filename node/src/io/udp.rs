//! The multicast beacon socket (socket2): address reuse, group join on the
//! chosen interface, TTL. TTL 0 keeps every packet on this host.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Default group: administratively scoped (239.255.0.0/16, RFC 2365).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 42, 99);
/// Default beacon port.
pub const DEFAULT_PORT: u16 = 7420;

/// Where and how beacons travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MulticastConfig {
    pub group: Ipv4Addr,
    pub port: u16,
    /// Interface to join and send on (`0.0.0.0`: the kernel's choice).
    pub interface: Ipv4Addr,
    /// 0: this host only; 1: this link (the default).
    pub ttl: u32,
}

impl Default for MulticastConfig {
    fn default() -> Self {
        Self {
            group: DEFAULT_GROUP,
            port: DEFAULT_PORT,
            interface: Ipv4Addr::UNSPECIFIED,
            ttl: 1,
        }
    }
}

/// Opens the beacon socket: bound to the group port, joined, non-blocking.
pub fn open(cfg: &MulticastConfig) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port).into())?;
    sock.join_multicast_v4(&cfg.group, &cfg.interface)?;
    sock.set_multicast_loop_v4(true)?;
    sock.set_multicast_ttl_v4(cfg.ttl)?;
    if !cfg.interface.is_unspecified() {
        sock.set_multicast_if_v4(&cfg.interface)?;
    }
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}
