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
) -> Result<ServiceDiscovery, String> {
    let ip = lan_ip(interface).ok_or("no IPv4 interface to advertise on")?;
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
        .map_err(|e| e.to_string())?;
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
        .map_err(|e| e.to_string())?;
    Ok(sd)
}
