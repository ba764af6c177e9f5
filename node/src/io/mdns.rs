//! mDNS advertisement and discovery (simple-mdns): `_p2pa._tcp.local` with the
//! node id and protocol version in TXT. One instance for the node's lifetime
//! (simple-mdns leaks two threads and three descriptors per instance dropped).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use p2pa_protocol::{NodeId, PROTOCOL_VERSION};
use simple_mdns::sync_discovery::ServiceDiscovery;
use simple_mdns::{InstanceInformation, NetworkScope};

/// The DNS-SD service name.
pub const SERVICE: &str = "_p2pa._tcp.local";
/// Seconds responders may cache our records.
const RECORD_TTL: u32 = 60;

/// Why mDNS could not start (the node runs on without it).
#[derive(Debug)]
pub enum MdnsError {
    /// No IPv4 interface to advertise an address on.
    NoInterface,
    /// simple-mdns could not open its socket.
    Start(simple_mdns::SimpleMdnsError),
    /// The thread that forwards answers could not start.
    Thread(std::io::Error),
}

impl std::fmt::Display for MdnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoInterface => f.write_str("no IPv4 interface to advertise on"),
            Self::Start(e) => write!(f, "cannot start mDNS: {e}"),
            Self::Thread(e) => write!(f, "cannot start the mDNS thread: {e}"),
        }
    }
}

impl std::error::Error for MdnsError {}

/// The running advertisement (kept for the node's lifetime).
pub type Mdns = ServiceDiscovery;

/// The address the kernel would send mDNS from: a UDP `connect` to the mDNS
/// group picks the route without sending a packet.
fn lan_ip(interface: Ipv4Addr) -> Option<IpAddr> {
    if !interface.is_unspecified() {
        return Some(IpAddr::V4(interface));
    }
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((Ipv4Addr::new(224, 0, 0, 251), 5353)).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// Starts advertising; addresses of other p2pa nodes go to `found`.
pub fn start(
    id: NodeId,
    port: u16,
    interface: Ipv4Addr,
    found: async_channel::Sender<SocketAddr>,
) -> Result<ServiceDiscovery, MdnsError> {
    let ip = lan_ip(interface).ok_or(MdnsError::NoInterface)?;
    let info = InstanceInformation::new(id.short().to_string())
        .with_ip_address(ip)
        .with_port(port)
        .with_attribute("id".into(), Some(id.to_string()))
        .with_attribute("v".into(), Some(PROTOCOL_VERSION.to_string()));
    let (tx, rx) = std::sync::mpsc::channel::<InstanceInformation>();
    let scope = match interface.is_unspecified() {
        true => NetworkScope::V4,
        false => NetworkScope::V4WithInterface(interface),
    };
    let sd = ServiceDiscovery::new_with_scope(info, SERVICE, RECORD_TTL, Some(tx), scope)
        .map_err(MdnsError::Start)?;
    let me = id.to_string();
    std::thread::Builder::new()
        .name("p2pa-mdns".into())
        .spawn(move || {
            for inst in rx {
                let is_me =
                    inst.attributes.get("id").and_then(Option::as_deref) == Some(me.as_str());
                let version_ok = inst.attributes.get("v").and_then(Option::as_deref)
                    == Some(&PROTOCOL_VERSION.to_string());
                if is_me || !version_ok {
                    continue;
                }
                for addr in inst.get_socket_addresses() {
                    if found.send_blocking(addr).is_err() {
                        return; // node stopped
                    }
                }
            }
        })
        .map_err(MdnsError::Thread)?;
    Ok(sd)
}
