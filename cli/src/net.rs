//! The network options every command that talks to peers shares.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Args;
use p2pa_node::identity;
use p2pa_node::io::MulticastConfig;

use crate::error::CliError;

/// How beacons travel; shared by every command that talks to peers.
#[derive(Debug, Clone, Args)]
#[command(
    next_help_heading = "Network options (node, peers, submit, batch; the demo and the local commands ignore them)"
)]
pub struct NetArgs {
    /// Multicast TTL: 1 reaches this link (LAN), 0 keeps every packet on this host
    #[arg(
        long,
        global = true,
        env = "P2PA_MULTICAST_TTL",
        default_value_t = 1,
        value_name = "N"
    )]
    pub multicast_ttl: u32,
    /// UDP port of the beacon group
    #[arg(long, global = true, env = "P2PA_MULTICAST_PORT", default_value_t = p2pa_node::io::udp::DEFAULT_PORT, value_name = "PORT")]
    pub multicast_port: u16,
    /// Beacon group (administratively scoped 239.255.0.0/16)
    #[arg(long, global = true, env = "P2PA_MULTICAST_GROUP", default_value_t = p2pa_node::io::udp::DEFAULT_GROUP, value_name = "IPV4")]
    pub multicast_group: Ipv4Addr,
    /// Join and send beacons on the interface with this IPv4 address (default:
    /// the kernel's choice; with no route for the group, as on a switch-only
    /// LAN without a default route, every interface)
    #[arg(long, global = true, env = "P2PA_INTERFACE", value_name = "IPV4")]
    pub interface: Option<Ipv4Addr>,
    /// Do not advertise or browse `_p2pa._tcp.local` over mDNS
    #[arg(long, global = true, env = "P2PA_NO_MDNS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_mdns: bool,
    /// peers/submit/batch: sign with this machine's key (`<data-dir>/identity.key`,
    /// see `p2pa keygen` and `p2pa id`) instead of a fresh one, so workers running
    /// `--trust allowlist` with this id on their list accept the requests
    #[arg(long, global = true, env = "P2PA_USE_IDENTITY", value_parser = clap::builder::BoolishValueParser::new())]
    pub use_identity: bool,
    /// The network's shared key (64 hex digits in a file; make one with
    /// `p2pa keygen --network FILE` and copy it to every machine): nodes
    /// without it complete no handshake with this one
    #[arg(long, global = true, env = "P2PA_NETWORK_KEY", value_name = "FILE")]
    pub network_key: Option<PathBuf>,
    /// Session cipher. auto: offer AES-256-GCM where this CPU has AES in
    /// hardware (a session uses it when both ends offer it; it seals several
    /// times faster there) and ChaCha20-Poly1305 otherwise; chacha: never
    /// offer AES-256-GCM. `p2pa status` counts the AES-256-GCM sessions
    #[arg(long, global = true, env = "P2PA_CIPHER", value_enum, default_value_t = Cipher::Auto, value_name = "CIPHER")]
    pub cipher: Cipher,
}

/// `--cipher`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cipher {
    /// AES-256-GCM where the CPU has it in hardware and the peer offers it too
    Auto,
    /// ChaCha20-Poly1305 always
    Chacha,
}

impl NetArgs {
    /// TTL 0 means host-local: send and join on loopback, never on a LAN.
    pub fn host_local(&self) -> bool {
        self.multicast_ttl == 0
    }

    pub fn multicast(&self) -> MulticastConfig {
        MulticastConfig {
            group: self.multicast_group,
            port: self.multicast_port,
            interface: if self.host_local() {
                Ipv4Addr::LOCALHOST
            } else {
                self.interface.unwrap_or(Ipv4Addr::UNSPECIFIED)
            },
            ttl: self.multicast_ttl,
        }
    }

    pub fn mdns(&self) -> bool {
        !self.no_mdns && !self.host_local()
    }

    /// Whether to offer AES-256-GCM for sessions.
    pub fn aes_gcm(&self) -> bool {
        self.cipher == Cipher::Auto && p2pa_node::core::Config::aes_gcm_in_hardware()
    }

    /// The network key from `--network-key`, if given.
    pub fn network_key(&self) -> Result<Option<[u8; 32]>, CliError> {
        self.network_key
            .as_deref()
            .map(identity::load_network_key)
            .transpose()
            .map_err(|e| CliError::usage(e.to_string()))
    }
}
