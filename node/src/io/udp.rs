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

/// The beacon socket and where it joined the group.
#[derive(Debug)]
pub struct Beacons {
    pub socket: UdpSocket,
    /// The interfaces joined, when the kernel's choice was not enough
    /// (no route for the group: a host without a default route). Beacons
    /// go out on each. Empty: the kernel picks, one send.
    pub interfaces: Vec<Ipv4Addr>,
}

/// Opens the beacon socket: bound to the group port, joined, non-blocking.
/// With no interface named and no route for the group, it joins on every
/// IPv4 interface that takes the membership.
pub fn open(cfg: &MulticastConfig) -> io::Result<Beacons> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port).into())?;
    let interfaces = match sock.join_multicast_v4(&cfg.group, &cfg.interface) {
        Ok(()) => Vec::new(),
        Err(e) if cfg.interface.is_unspecified() => {
            let joined = join_each(&sock, cfg.group);
            if joined.is_empty() {
                return Err(e);
            }
            log::info!(
                "no route for {} ({e}): beacons joined on {}",
                cfg.group,
                joined
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            joined
        }
        Err(e) => return Err(e),
    };
    sock.set_multicast_loop_v4(true)?;
    sock.set_multicast_ttl_v4(cfg.ttl)?;
    if !cfg.interface.is_unspecified() {
        sock.set_multicast_if_v4(&cfg.interface)?;
    }
    sock.set_nonblocking(true)?;
    Ok(Beacons {
        socket: sock.into(),
        interfaces,
    })
}

/// Joins `group` on every non-loopback IPv4 interface that takes it.
fn join_each(sock: &Socket, group: Ipv4Addr) -> Vec<Ipv4Addr> {
    let mut joined = Vec::new();
    for ip in local_ipv4s().into_iter().filter(|ip| !ip.is_loopback()) {
        if !joined.contains(&ip) && sock.join_multicast_v4(&group, &ip).is_ok() {
            joined.push(ip);
        }
    }
    joined
}

/// Sends one beacon to `to`: once (the kernel picks the interface), or once
/// on each interface joined. Does not wait: a beacon the socket has no room
/// for is dropped with the error (the next one follows within seconds).
pub fn send(
    u: &UdpSocket,
    interfaces: &[Ipv4Addr],
    bytes: &[u8],
    to: std::net::SocketAddr,
) -> io::Result<()> {
    if interfaces.is_empty() {
        return u.send_to(bytes, to).map(drop);
    }
    let mut last = Ok(());
    for ifc in interfaces {
        socket2::SockRef::from(u).set_multicast_if_v4(ifc)?;
        if let Err(e) = u.send_to(bytes, to) {
            last = Err(e);
        }
    }
    last
}

/// This host's IPv4 addresses (loopback included), to tell its own
/// datagrams from another machine's.
pub fn local_ipv4s() -> Vec<Ipv4Addr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| match a.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        })
        .collect()
}
