//! A node's handshake identity: the Ed25519 key, the X25519 static key it
//! certifies, and the network key if any.

use core::fmt;

use super::{PROLOGUE, STATIC_KEY_CONTEXT};
use crate::message::{NodeId, Signature64};
use crate::noise::{DhKey, Symmetric, NAME, NAME_PSK};
use crate::sign::{Keypair, Verifier};

/// A node's keys for the handshake: its Ed25519 identity, the X25519 static
/// key derived from the identity's seed, and the identity's certificate of
/// that static key (signed once, when the identity is made). With a network
/// key, only nodes that hold the same key complete a handshake.
#[derive(Clone)]
pub struct Identity {
    key: Keypair,
    pub(super) statik: DhKey,
    pub(super) cert: Signature64,
    network_key: Option<[u8; 32]>,
    /// Whether handshakes offer (and accept) AES-256-GCM for the session
    /// (only with the feature: a board's identity stays as small as before).
    #[cfg(feature = "aes-gcm")]
    aes_gcm: bool,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node", &self.key.node_id())
            .field("network_key", &self.network_key.is_some())
            .field("aes_gcm", &self.offers_aes_gcm())
            .finish()
    }
}

impl Identity {
    /// The handshake identity of `key` (one X25519 base multiplication and
    /// one Ed25519 signature).
    pub fn new(key: Keypair) -> Self {
        let secret = hmac_sha256::HMAC::mac(b"p2pa/v4/x25519-static", key.seed());
        // A clamped X25519 secret always has a public key; the fallback is
        // never taken, and would only make every handshake fail.
        let statik = DhKey::from_secret(secret).unwrap_or_else(DhKey::unusable);
        let sig = key.sign_parts(&|f| {
            f(STATIC_KEY_CONTEXT);
            f(statik.public());
        });
        Self {
            key,
            statik,
            cert: Signature64(sig),
            network_key: None,
            #[cfg(feature = "aes-gcm")]
            aes_gcm: false,
        }
    }

    /// This identity, offering (as initiator) and accepting (as responder)
    /// AES-256-GCM for its sessions when `offer` is true: say so only where
    /// the CPU runs AES and GCM's multiply in hardware (AES-NI and PCLMULQDQ,
    /// or ARMv8's AES and PMULL), where it seals 3 to 8 times faster than
    /// ChaCha20-Poly1305; without them it is slower, and ChaChaPoly is kept.
    #[cfg(feature = "aes-gcm")]
    #[must_use]
    pub fn with_aes_gcm(mut self, offer: bool) -> Self {
        self.aes_gcm = offer;
        self
    }

    /// Whether this identity offers AES-256-GCM for its sessions (never
    /// without the `aes-gcm` feature).
    pub fn offers_aes_gcm(&self) -> bool {
        #[cfg(feature = "aes-gcm")]
        return self.aes_gcm;
        #[cfg(not(feature = "aes-gcm"))]
        false
    }

    /// This identity, admitting only peers that hold `network_key` (mixed
    /// into the handshake as a Noise pre-shared key, `XXpsk0`).
    #[must_use]
    pub fn with_network_key(mut self, network_key: [u8; 32]) -> Self {
        self.network_key = Some(network_key);
        self
    }

    /// The signing key.
    pub fn keypair(&self) -> &Keypair {
        &self.key
    }

    /// The node id.
    pub fn node_id(&self) -> NodeId {
        self.key.node_id()
    }

    /// The static X25519 public key this identity certifies.
    pub fn static_key(&self) -> &[u8; 32] {
        self.statik.public()
    }

    /// Whether handshakes need a network key.
    pub fn has_network_key(&self) -> bool {
        self.network_key.is_some()
    }

    pub(super) fn symmetric(&self) -> Symmetric {
        let name = if self.network_key.is_some() {
            NAME_PSK
        } else {
            NAME
        };
        let mut sym = Symmetric::new(name, PROLOGUE);
        if let Some(psk) = &self.network_key {
            sym.mix_key_and_hash(psk);
        }
        sym
    }
}

/// Checks that `cert` is `node`'s signature of `statik`.
pub(super) fn check_certificate(node: NodeId, statik: &[u8; 32], cert: &Signature64) -> bool {
    let Ok(mut v) = Verifier::new(&node, &cert.0) else {
        return false;
    };
    v.absorb(STATIC_KEY_CONTEXT);
    v.absorb(statik);
    v.verify().is_ok()
}
