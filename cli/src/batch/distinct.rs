//! Which workers the K copies of a `--redundancy K` task go to. A key costs
//! nothing and an address little, so K agreeing workers prove K independent
//! answers only if they are distinct by something an attacker cannot mint:
//! an operator the user trusts (an operators file, `--distinct allowlist`),
//! else a subnet, else a host. The default is the strongest the pool
//! allows; each result line says which held.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use p2pa_node::core::PeerInfo;
use p2pa_node::protocol::NodeId;

use crate::CliError;

/// What makes the K workers of a task distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Distinct {
    /// K operators of the `--operators` file (workers not listed are not used)
    Allowlist,
    /// K subnets (IPv4 /24, IPv6 /64)
    Subnet,
    /// K IP addresses
    Host,
    /// K keys only: one machine may answer every copy (for trying it out)
    Key,
}

impl Distinct {
    /// Its name in result lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allowlist => "allowlist",
            Self::Subnet => "subnet",
            Self::Host => "host",
            Self::Key => "key",
        }
    }

    /// What a group of it is called in messages.
    fn noun(self) -> &'static str {
        match self {
            Self::Allowlist => "operators",
            Self::Subnet => "subnets",
            Self::Host => "hosts",
            Self::Key => "keys",
        }
    }
}

/// Who runs which worker, as the user says: one `<node id> [operator]` per
/// line, `#` comments; a key without an operator is its own.
#[derive(Debug, Default)]
pub struct Operators(BTreeMap<NodeId, String>);

impl Operators {
    pub fn read(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!(
                "cannot read operators file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text)
            .map_err(|(n, why)| CliError::usage(format!("{}:{n}: {why}", path.display())))
    }

    /// Parses the file's text; a bad line gives its number and why.
    fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut ops = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let Some(id) = words.next() else { continue };
            let id = p2pa_node::hex::parse_hex32(id)
                .map(NodeId)
                .ok_or((n.saturating_add(1), "expected a full node id (64 hex digits, as `p2pa id` prints), then an operator name"))?;
            let name = words.collect::<Vec<_>>().join(" ");
            let name = if name.is_empty() {
                id.to_string()
            } else {
                name
            };
            ops.insert(id, name);
        }
        Ok(Self(ops))
    }
}

/// The group `p` counts in under `d`; `None`: it takes no part (not listed,
/// or no address).
fn group(d: Distinct, p: &PeerInfo, ops: Option<&Operators>) -> Option<String> {
    let ip = p.addr.map(|a| a.ip());
    match d {
        Distinct::Allowlist => ops?.0.get(&p.id).cloned(),
        Distinct::Subnet => ip.map(|ip| match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0/24")
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }),
        Distinct::Host => ip.map(|ip| ip.to_string()),
        Distinct::Key => Some(p.id.to_string()),
    }
}

/// One worker per group under `d`, in `peers` order.
fn one_per_group(d: Distinct, peers: &[PeerInfo], ops: Option<&Operators>) -> Vec<NodeId> {
    let mut seen: Vec<String> = Vec::new();
    let mut chosen = Vec::new();
    for p in peers {
        if let Some(g) = group(d, p, ops).filter(|g| !seen.contains(g)) {
            seen.push(g);
            chosen.push(p.id);
        }
    }
    chosen
}

/// The workers that copies rotate over (one per group, so any K in a row
/// are K distinct groups), and the distinctness that holds: `asked`, or the
/// strongest of allowlist (with `ops`), subnet and host that gives `k`
/// groups. An error says what was found.
pub fn pick(
    peers: &[PeerInfo],
    k: usize,
    asked: Option<Distinct>,
    ops: Option<&Operators>,
) -> Result<(Vec<NodeId>, Distinct), String> {
    let candidates: &[Distinct] = match asked {
        Some(d) => &[d][..],
        None if ops.is_some() => &[Distinct::Allowlist][..],
        None => &[Distinct::Subnet, Distinct::Host][..],
    };
    let mut found = Vec::new();
    for &d in candidates {
        let chosen = one_per_group(d, peers, ops);
        if chosen.len() >= k {
            return Ok((chosen, d));
        }
        found.push(format!("{} {}", chosen.len(), d.noun()));
    }
    let Some(&weakest) = candidates.last() else {
        return Err("no distinctness to check".to_owned());
    };
    let hint = match weakest {
        Distinct::Allowlist => "list more workers under their operators in the --operators file",
        Distinct::Key => "start more workers",
        _ => "one machine with several keys or addresses could make a wrong answer look agreed; on one machine, for trying it out, add --distinct key (or --same-host)",
    };
    Err(format!(
        "--redundancy {k} needs workers of {k} distinct {}; found {} among {} workers. {hint}",
        weakest.noun(),
        found.join(", "),
        peers.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pa_node::core::{PeerState, Via};
    use std::net::SocketAddr;
    use std::time::Duration;

    fn peer(n: u8, addr: &str) -> PeerInfo {
        PeerInfo {
            id: NodeId([n; 32]),
            addr: Some(addr.parse::<SocketAddr>().unwrap()),
            via: Via::Multicast,
            caps: Default::default(),
            last_seen_ago: Duration::ZERO,
            rtt: None,
            state: PeerState::Connected,
        }
    }

    #[test]
    fn the_default_is_the_strongest_distinctness_the_pool_allows() {
        let lan = [
            peer(1, "192.168.1.10:7421"),
            peer(2, "192.168.1.11:7421"),
            peer(3, "192.168.1.11:7422"),
        ];
        // One subnet: hosts are the strongest, and the two keys of one host
        // count once.
        let (chosen, d) = pick(&lan, 2, None, None).unwrap();
        assert_eq!(d, Distinct::Host);
        assert_eq!(chosen, vec![NodeId([1; 32]), NodeId([2; 32])]);
        assert!(pick(&lan, 3, None, None)
            .unwrap_err()
            .contains("found 1 subnets, 2 hosts"));
        let two_nets = [peer(1, "10.0.1.5:1"), peer(2, "10.0.2.5:1")];
        assert_eq!(pick(&two_nets, 2, None, None).unwrap().1, Distinct::Subnet);
        assert_eq!(pick(&lan, 3, Some(Distinct::Key), None).unwrap().0.len(), 3);
    }

    #[test]
    fn with_an_operators_file_copies_go_to_distinct_operators_and_unlisted_workers_are_not_used() {
        let a = NodeId([1; 32]);
        let b = NodeId([2; 32]);
        let text = format!(
            "# who runs what\n{a} alice\n{b} alice # her laptop\n{} bob\n",
            NodeId([3; 32])
        );
        let ops = Operators::parse(&text).unwrap();
        let pool = [
            peer(1, "10.0.1.5:1"),
            peer(2, "10.0.2.5:1"),
            peer(3, "10.0.3.5:1"),
            peer(4, "10.0.4.5:1"), // not listed: three subnets would pass
        ];
        let (chosen, d) = pick(&pool, 2, None, Some(&ops)).unwrap();
        assert_eq!(d, Distinct::Allowlist);
        assert_eq!(chosen, vec![a, NodeId([3; 32])]);
        let err = pick(&pool, 3, None, Some(&ops)).unwrap_err();
        assert!(
            err.contains("3 distinct operators; found 2 operators"),
            "{err}"
        );
        // A key alone is its own operator.
        let ops = Operators::parse(&format!("{a}\n{b}\n")).unwrap();
        assert_eq!(pick(&pool, 2, None, Some(&ops)).unwrap().0, vec![a, b]);
        assert_eq!(Operators::parse("not-an-id alice").unwrap_err().0, 1);
    }
}
