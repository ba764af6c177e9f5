//! Parsers of option values that clap does not have.

use p2pa_node::protocol::TaskKind;

/// `HOST:PORT` as an address, HOST a name or an address: a name resolves
/// now (IPv4 first), once, when the command starts.
pub fn parse_host_port(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let addrs: Vec<std::net::SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{s}` (expected HOST:PORT): {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

/// A task kind by name, or the list of known ones.
pub fn parse_kind(s: &str) -> Result<TaskKind, String> {
    TaskKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = TaskKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown task kind `{s}` (known: {})", names.join(", "))
    })
}
