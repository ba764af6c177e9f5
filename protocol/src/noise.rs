//! The Noise protocol framework's state objects (revision 34, sections 5.1 to
//! 5.3), for the one pattern p2pa speaks: `Noise_XX_25519_ChaChaPoly_SHA256`,
//! and `Noise_XXpsk0_…` when the nodes share a network key. No allocation:
//! every message is written into, and read from, the caller's buffer in
//! place. Primitives from well-kept crates: X25519 from `ed25519-compact`,
//! ChaCha20-Poly1305 from RustCrypto's `chacha20poly1305`, SHA-256 and HMAC
//! from `hmac-sha256`. Checked against `snow` and against fixed vectors
//! (tests below, `tests/golden.rs`).
//!
//! The handshake always runs ChaChaPoly. The session's records after it may
//! use AES-256-GCM instead ([`Transport`]), under the keys Split() gives and
//! with Noise's AESGCM nonce (32 zero bits, the counter big-endian): where
//! both ends have AES in hardware it seals 3 to 8 times faster (a 1 MB
//! tensor costs 0.15 ms instead of 0.9). AES-GCM comes from `ring` (its
//! hardware code paths, BoringSSL's), behind the `aes-gcm` feature.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use ed25519_compact::x25519;
use hmac_sha256::{Hash, HMAC};

/// Bytes of a Poly1305 tag.
pub const TAG_LEN: usize = crate::limits::TAG_LEN;
/// Bytes of an X25519 public key (Noise's DHLEN).
pub const DH_LEN: usize = 32;

/// The protocol name without a network key (exactly 32 bytes: it is `h`).
pub(crate) const NAME: &[u8] = b"Noise_XX_25519_ChaChaPoly_SHA256";
/// The protocol name with a network key as the PSK of the first message.
pub(crate) const NAME_PSK: &[u8] = b"Noise_XXpsk0_25519_ChaChaPoly_SHA256";

/// Why a Noise operation failed. Whatever it was, the handshake or session
/// it happened in is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoiseError {
    /// A tag did not authenticate (wrong key, changed bytes, replay).
    Decrypt,
    /// The buffer is too small for the message and its tag.
    Buffer,
    /// A Diffie-Hellman result was the identity (a low-order public key).
    #[cfg_attr(all(fuzzing, feature = "fuzzing"), allow(dead_code))]
    WeakKey,
    /// The nonce counter reached its end (`2^64 - 1` is reserved).
    Exhausted,
}

/// An X25519 key pair.
#[derive(Clone)]
pub(crate) struct DhKey {
    #[cfg_attr(all(fuzzing, feature = "fuzzing"), allow(dead_code))]
    secret: x25519::SecretKey,
    public: [u8; DH_LEN],
}

impl core::fmt::Debug for DhKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DhKey(")?;
        crate::message::write_hex(f, self.public.get(..4).unwrap_or_default())?;
        f.write_str("…)")
    }
}

impl DhKey {
    /// The key pair made from the 32 random bytes `seed` as an Ed25519 seed
    /// makes one, converted to X25519 (RFC 7748's birational map): the
    /// secret is the clamped first half of SHA-512(seed), the public key is
    /// computed with Ed25519's fixed-base tables (about 40 % faster than an
    /// X25519 ladder on a PC). `None` for the all-zero seed.
    #[cfg(not(any(feature = "opt_size", all(fuzzing, feature = "fuzzing"))))]
    pub(crate) fn from_secret(seed: [u8; 32]) -> Option<Self> {
        let ed = ed25519_compact::KeyPair::try_from_seed(ed25519_compact::Seed::new(seed)).ok()?;
        let secret = x25519::SecretKey::from_ed25519(&ed.sk).ok()?;
        let public = *x25519::PublicKey::from_ed25519(&ed.pk).ok()?;
        Some(Self { secret, public })
    }

    /// With `opt_size` (no fixed-base tables): `seed` is the X25519 secret
    /// and the public key comes from the ladder, which is then the faster way.
    #[cfg(all(feature = "opt_size", not(all(fuzzing, feature = "fuzzing"))))]
    pub(crate) fn from_secret(seed: [u8; 32]) -> Option<Self> {
        let secret = x25519::SecretKey::new(seed);
        let public = *secret.recover_public_key().ok()?;
        Some(Self { secret, public })
    }

    /// Only in fuzzing builds (as `sign.rs`'s stand-in signatures): a cheap
    /// exchange with the same shape, so that the fuzzer spends its time in
    /// the parsers and the node, not in curve arithmetic. Never secure.
    #[cfg(all(fuzzing, feature = "fuzzing"))]
    pub(crate) fn from_secret(seed: [u8; 32]) -> Option<Self> {
        let public = Hash::hash(&seed);
        Some(Self {
            secret: x25519::SecretKey::new(seed),
            public,
        })
    }

    /// A key no peer can complete a handshake with (all-zero public key);
    /// only where [`from_secret`](Self::from_secret) cannot fail.
    pub(crate) fn unusable() -> Self {
        Self {
            secret: x25519::SecretKey::new([0; 32]),
            public: [0; DH_LEN],
        }
    }

    /// The secret, for the tests that hand it to `snow`.
    #[cfg(test)]
    pub(crate) fn secret(&self) -> [u8; 32] {
        *self.secret
    }

    pub(crate) fn public(&self) -> &[u8; DH_LEN] {
        &self.public
    }

    /// Fuzzing's stand-in exchange: a hash of both public keys in order.
    #[cfg(all(fuzzing, feature = "fuzzing"))]
    pub(crate) fn dh(&self, theirs: &[u8; DH_LEN]) -> Result<[u8; 32], NoiseError> {
        let (lo, hi) = if self.public <= *theirs {
            (&self.public, theirs)
        } else {
            (theirs, &self.public)
        };
        let mut h = Hash::new();
        h.update(lo);
        h.update(hi);
        Ok(h.finalize())
    }

    /// `DH(self, theirs)`; refuses a low-order `theirs`.
    #[cfg(not(all(fuzzing, feature = "fuzzing")))]
    pub(crate) fn dh(&self, theirs: &[u8; DH_LEN]) -> Result<[u8; 32], NoiseError> {
        x25519::PublicKey::new(*theirs)
            .dh(&self.secret)
            .map(|out| *out)
            .map_err(|_| NoiseError::WeakKey)
    }
}

/// Noise's HKDF: the temporary key, then the first two outputs.
fn hkdf_start(ck: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let temp = HMAC::mac(ikm, ck);
    let out1 = HMAC::mac([1u8], temp);
    let mut h = HMAC::new(temp);
    h.update(out1);
    h.update([2u8]);
    (temp, out1, h.finalize())
}

/// Noise's HKDF with two outputs.
fn hkdf2(ck: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32]) {
    let (_, out1, out2) = hkdf_start(ck, ikm);
    (out1, out2)
}

/// Noise's HKDF with three outputs.
fn hkdf3(ck: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let (temp, out1, out2) = hkdf_start(ck, ikm);
    let mut h = HMAC::new(temp);
    h.update(out2);
    h.update([3u8]);
    (out1, out2, h.finalize())
}

/// Noise's nonce encoding for ChaChaPoly: 4 zero bytes, the counter little-endian.
fn nonce(n: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    if let Some(tail) = out.get_mut(4..) {
        tail.copy_from_slice(&n.to_le_bytes());
    }
    out
}

/// Noise's nonce encoding for AESGCM: 4 zero bytes, the counter big-endian.
#[cfg(feature = "aes-gcm")]
fn nonce_be(n: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    if let Some(tail) = out.get_mut(4..) {
        tail.copy_from_slice(&n.to_be_bytes());
    }
    out
}

/// The AEAD that seals a session's records, agreed in the handshake: the
/// initiator offers AES-256-GCM in its first message, the responder takes it
/// only if it offers it too and says which in its reply; both choices are in
/// the handshake hash, so a changed offer or answer fails the handshake. A
/// node offers AES-256-GCM only where it was built with the `aes-gcm`
/// feature and told so ([`Identity::with_aes_gcm`], the node does it where
/// the CPU has AES and carry-less multiply instructions); everything else,
/// boards included, speaks ChaChaPoly.
///
/// [`Identity::with_aes_gcm`]: crate::Identity
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// ChaCha20-Poly1305, as in the handshake: the default, fast in software.
    #[default]
    ChaChaPoly,
    /// AES-256-GCM: both ends have it in hardware.
    AesGcm,
}

impl Transport {
    /// Its byte in the handshake (bit 0 of the offer, the choice itself).
    pub(crate) const fn byte(self) -> u8 {
        match self {
            Self::ChaChaPoly => 0,
            Self::AesGcm => 1,
        }
    }

    pub(crate) const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::ChaChaPoly),
            1 => Some(Self::AesGcm),
            _ => None,
        }
    }

    /// Whether this build can run it (AES-256-GCM needs the `aes-gcm`
    /// feature; a build without it never offers or accepts it).
    pub const fn available(self) -> bool {
        match self {
            Self::ChaChaPoly => true,
            Self::AesGcm => cfg!(feature = "aes-gcm"),
        }
    }

    /// Noise's name for the cipher.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ChaChaPoly => "ChaChaPoly",
            Self::AesGcm => "AESGCM",
        }
    }
}

impl core::fmt::Display for Transport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A cipher key and its nonce counter (Noise's CipherState with a key).
/// Which AEAD it runs is the caller's to say (the handshake's is always
/// ChaChaPoly, a session's is its [`Transport`]), which keeps a session as
/// small as before.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Cipher {
    key: [u8; 32],
    n: u64,
}

impl core::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cipher").field("n", &self.n).finish()
    }
}

/// AES-256-GCM under `key`, or `Buffer` where the crate was built without it
/// (a handshake never agrees on it then, so this is not reached).
#[cfg(feature = "aes-gcm")]
fn aes(key: &[u8; 32]) -> Result<ring::aead::LessSafeKey, NoiseError> {
    ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key)
        .map(ring::aead::LessSafeKey::new)
        .map_err(|_| NoiseError::Buffer)
}

impl Cipher {
    pub(crate) const fn new(key: [u8; 32]) -> Self {
        Self { key, n: 0 }
    }

    /// Messages sealed (or opened) so far.
    pub(crate) const fn count(&self) -> u64 {
        self.n
    }

    /// Test hook: moves the counter, to reach its end without 2^64 frames.
    #[cfg(test)]
    pub(crate) fn set_count(&mut self, n: u64) {
        self.n = n;
    }

    fn aead(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&self.key.into())
    }

    /// Encrypts `buf` in place with `ad` at nonce `n`; returns the tag.
    fn seal_at(
        &self,
        t: Transport,
        n: u64,
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], NoiseError> {
        match t {
            Transport::ChaChaPoly => self
                .aead()
                .encrypt_inout_detached(&nonce(n).into(), ad, buf.into())
                .map(Into::into)
                .map_err(|_| NoiseError::Buffer),
            #[cfg(feature = "aes-gcm")]
            Transport::AesGcm => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(nonce_be(n));
                let tag = aes(&self.key)?
                    .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(ad), buf)
                    .map_err(|_| NoiseError::Buffer)?;
                tag.as_ref().try_into().map_err(|_| NoiseError::Buffer)
            }
            #[cfg(not(feature = "aes-gcm"))]
            Transport::AesGcm => Err(NoiseError::Buffer),
        }
    }

    /// Encrypts `buf` in place with `ad` under `t`; returns the tag.
    pub(crate) fn seal(
        &mut self,
        t: Transport,
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], NoiseError> {
        let next = self.n.checked_add(1).filter(|n| *n < u64::MAX);
        let next = next.ok_or(NoiseError::Exhausted)?;
        let tag = self.seal_at(t, self.n, ad, buf)?;
        self.n = next;
        Ok(tag)
    }

    /// Decrypts `buf` in place if `tag` authenticates it with `ad`. The
    /// counter moves only when it does, so a refused message changes nothing.
    pub(crate) fn open(
        &mut self,
        t: Transport,
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), NoiseError> {
        let next = self.n.checked_add(1).filter(|n| *n < u64::MAX);
        let next = next.ok_or(NoiseError::Exhausted)?;
        match t {
            Transport::ChaChaPoly => self
                .aead()
                .decrypt_inout_detached(&nonce(self.n).into(), ad, buf.into(), &(*tag).into())
                .map_err(|_| NoiseError::Decrypt)?,
            #[cfg(feature = "aes-gcm")]
            Transport::AesGcm => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(nonce_be(self.n));
                let aad = ring::aead::Aad::from(ad);
                let tag = ring::aead::Tag::from(*tag);
                aes(&self.key)?
                    .open_in_place_separate_tag(nonce, aad, tag, buf, 0..)
                    .map_err(|_| NoiseError::Decrypt)?;
            }
            #[cfg(not(feature = "aes-gcm"))]
            Transport::AesGcm => return Err(NoiseError::Decrypt),
        }
        self.n = next;
        Ok(())
    }

    /// Noise's default REKEY: the first 32 bytes of encrypting 32 zeros at
    /// the reserved nonce `2^64 - 1`. The counter is kept.
    pub(crate) fn rekey(&mut self, t: Transport) {
        let mut k = [0u8; 32];
        // Encryption of a 32-byte buffer cannot fail (nor can AES-256-GCM's
        // key setup, from 32 bytes).
        if self.seal_at(t, u64::MAX, &[], &mut k).is_ok() {
            self.key = k;
        }
    }
}

/// Noise's SymmetricState: the chaining key, the handshake hash and the
/// handshake's current cipher (none until the first DH).
#[derive(Debug, Clone)]
pub(crate) struct Symmetric {
    ck: [u8; 32],
    h: [u8; 32],
    cipher: Option<Cipher>,
}

impl Symmetric {
    /// InitializeSymmetric(name), then MixHash(prologue).
    pub(crate) fn new(name: &[u8], prologue: &[u8]) -> Self {
        let mut h = [0u8; 32];
        match h.get_mut(..name.len()) {
            Some(head) => head.copy_from_slice(name),
            None => h = Hash::hash(name),
        }
        let mut s = Self {
            ck: h,
            h,
            cipher: None,
        };
        s.mix_hash(prologue);
        s
    }

    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        let mut st = Hash::new();
        st.update(self.h);
        st.update(data);
        self.h = st.finalize();
    }

    pub(crate) fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        self.cipher = Some(Cipher::new(k));
    }

    pub(crate) fn mix_key_and_hash(&mut self, ikm: &[u8]) {
        let (ck, h, k) = hkdf3(&self.ck, ikm);
        self.ck = ck;
        self.mix_hash(&h);
        self.cipher = Some(Cipher::new(k));
    }

    /// EncryptAndHash over `buf[..len]`, in place; the tag goes after it
    /// (when there is a key). Returns the bytes of the result.
    pub(crate) fn encrypt_and_hash(
        &mut self,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, NoiseError> {
        let Some(cipher) = &mut self.cipher else {
            let plain = buf.get(..len).ok_or(NoiseError::Buffer)?;
            self.mix_hash(plain);
            return Ok(len);
        };
        let total = len.checked_add(TAG_LEN).ok_or(NoiseError::Buffer)?;
        let out = buf.get_mut(..total).ok_or(NoiseError::Buffer)?;
        let (text, tag_out) = out.split_at_mut(len);
        let tag = cipher.seal(Transport::ChaChaPoly, &self.h, text)?;
        tag_out.copy_from_slice(&tag);
        self.mix_hash(out);
        Ok(total)
    }

    /// DecryptAndHash of all of `buf`, in place; returns the plaintext's
    /// length (at the front of `buf`).
    pub(crate) fn decrypt_and_hash(&mut self, buf: &mut [u8]) -> Result<usize, NoiseError> {
        let mut st = Hash::new();
        st.update(self.h);
        st.update(&*buf);
        let h = st.finalize();
        let Some(cipher) = &mut self.cipher else {
            self.h = h;
            return Ok(buf.len());
        };
        let len = buf.len().checked_sub(TAG_LEN).ok_or(NoiseError::Decrypt)?;
        let (text, tag) = buf.split_at_mut(len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| NoiseError::Decrypt)?;
        cipher.open(Transport::ChaChaPoly, &self.h, text, &tag)?;
        self.h = h;
        Ok(len)
    }

    /// Split(): the initiator's sending cipher, then the responder's.
    pub(crate) fn split(&self) -> (Cipher, Cipher) {
        let (k1, k2) = hkdf2(&self.ck, &[]);
        (Cipher::new(k1), Cipher::new(k2))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    extern crate std;
    use super::*;

    const T: Transport = Transport::ChaChaPoly;

    /// Every transport this build has, each against snow's (RustCrypto's)
    /// implementation of the same Noise cipher: same ciphertext and tag at
    /// several counters (so the nonce encoding is Noise's), and the same key
    /// after REKEY.
    #[test]
    fn each_transport_seals_as_the_noise_reference_does() {
        use snow::resolvers::CryptoResolver;
        let mut ours = std::vec![(
            Transport::ChaChaPoly,
            snow::params::CipherChoice::ChaChaPoly
        )];
        if cfg!(feature = "aes-gcm") {
            ours.push((Transport::AesGcm, snow::params::CipherChoice::AESGCM));
        }
        for (t, choice) in ours {
            let mut reference = snow::resolvers::DefaultResolver
                .resolve_cipher(&choice)
                .unwrap();
            let key = [0x42u8; 32];
            reference.set(&key);
            let mut c = Cipher::new(key);
            for n in 0..3u64 {
                let plain = [n as u8 ^ 0x5a; 40];
                let mut buf = plain;
                let tag = c.seal(t, b"ad", &mut buf).unwrap();
                let mut want = [0u8; 56];
                assert_eq!(reference.encrypt(n, b"ad", &plain, &mut want), 56);
                assert_eq!(
                    (&buf[..], &tag[..]),
                    (&want[..40], &want[40..]),
                    "{t} at {n}"
                );
            }
            c.rekey(t);
            let mut next = [0u8; 48];
            reference.encrypt(u64::MAX, &[], &[0u8; 32], &mut next);
            reference.set(next[..32].try_into().unwrap());
            let mut buf = [7u8; 8];
            let tag = c.seal(t, &[], &mut buf).unwrap();
            let mut want = [0u8; 24];
            reference.encrypt(3, &[], &[7u8; 8], &mut want);
            assert_eq!(
                (&buf[..], &tag[..]),
                (&want[..8], &want[8..]),
                "{t} after rekey"
            );
        }
    }

    /// Without the `aes-gcm` feature a cipher cannot run AES-GCM, and says so
    /// rather than sealing with something else.
    #[cfg(not(feature = "aes-gcm"))]
    #[test]
    fn aes_gcm_is_refused_where_it_is_not_built() {
        let mut c = Cipher::new([1; 32]);
        assert_eq!(
            c.seal(Transport::AesGcm, &[], &mut [0u8; 4]),
            Err(NoiseError::Buffer)
        );
        assert_eq!(c.count(), 0);
    }

    #[test]
    fn hkdf_matches_rfc5869_case_3_first_block() {
        // RFC 5869 test case 3 (empty salt and info) is HKDF-Extract with a
        // zero salt, then T(1) = HMAC(PRK, 0x01): Noise's first output with
        // ck = 32 zero bytes.
        let ikm = [0x0bu8; 22];
        let (out1, _) = hkdf2(&[0u8; 32], &ikm);
        let want = "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d";
        let got: heapless::String<64> = out1.iter().fold(heapless::String::new(), |mut s, b| {
            let _ = core::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
            s
        });
        assert_eq!(got.as_str(), want);
    }

    #[test]
    fn a_refused_message_does_not_move_the_counter() {
        let (mut a, mut b) = (Cipher::new([7; 32]), Cipher::new([7; 32]));
        let mut msg = *b"sixteen bytes ok";
        let tag = a.seal(T, b"ad", &mut msg).unwrap();
        let mut bad = msg;
        bad[3] ^= 1;
        assert_eq!(b.open(T, b"ad", &mut bad, &tag), Err(NoiseError::Decrypt));
        assert_eq!(b.count(), 0);
        b.open(T, b"ad", &mut msg, &tag).unwrap();
        assert_eq!(&msg, b"sixteen bytes ok");
        assert_eq!(b.count(), 1);
    }

    #[test]
    fn the_counter_stops_before_the_reserved_nonce() {
        let mut a = Cipher::new([7; 32]);
        a.set_count(u64::MAX - 2);
        assert!(a.seal(T, &[], &mut [0u8; 4]).is_ok());
        assert_eq!(a.seal(T, &[], &mut [0u8; 4]), Err(NoiseError::Exhausted));
    }

    #[test]
    fn rekey_changes_the_key_and_keeps_the_counter() {
        let (mut a, mut b) = (Cipher::new([7; 32]), Cipher::new([7; 32]));
        let mut m = [1u8; 8];
        let tag = a.seal(T, &[], &mut m).unwrap();
        b.open(T, &[], &mut m, &tag).unwrap();
        a.rekey(T);
        let mut m = [1u8; 8];
        let tag = a.seal(T, &[], &mut m).unwrap();
        let mut stale = b.clone();
        assert!(stale.open(T, &[], &mut m.clone(), &tag).is_err());
        b.rekey(T);
        b.open(T, &[], &mut m, &tag).unwrap();
        assert_eq!((a.count(), b.count()), (2, 2));
    }
}
