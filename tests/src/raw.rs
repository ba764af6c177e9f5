//! What a hostile (or hand-written) peer sends, built from the protocol
//! crate: beacons on the host-local multicast group.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use p2pa_node::protocol::{
    encode_datagram, Beacon, Capabilities, Keypair, Message, MAX_DATAGRAM_LEN,
};

/// A UDP socket that sends to the host-local beacon group on `port`, and
/// the group's address.
pub fn beacon_sender(port: u16) -> (UdpSocket, SocketAddr) {
    beacon_sender_from(Ipv4Addr::LOCALHOST, port)
}

/// [`beacon_sender`] with the datagrams' source address `from` (in
/// 127.0.0.0/8: another host of the LAN, as far as the node can tell).
pub fn beacon_sender_from(from: Ipv4Addr, port: u16) -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind((from, 0)).expect("udp bind");
    s.set_multicast_ttl_v4(0).expect("ttl 0");
    socket2::SockRef::from(&s)
        .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .expect("multicast on loopback");
    (s, SocketAddr::from((Ipv4Addr::new(239, 255, 42, 99), port)))
}

/// A signed beacon from `k` naming `tcp_port`.
pub fn beacon(k: &Keypair, seq: u64, tcp_port: u16, query: bool) -> Vec<u8> {
    let msg = Message::Beacon(Beacon {
        tcp_port,
        query,
        caps: Capabilities::default(),
    });
    let mut out = [0u8; MAX_DATAGRAM_LEN];
    let n = encode_datagram(k, seq, &msg, &mut out).expect("beacon fits a datagram");
    out.get(..n).map(<[u8]>::to_vec).unwrap_or_default()
}
