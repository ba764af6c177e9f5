//! The network key's tag on beacons. Nodes that share a network key append
//! a 16-byte tag to every beacon they send, `HMAC-SHA256(k_b, datagram)`
//! cut to 16 bytes, where `k_b = HMAC-SHA256(network key,
//! "p2pa/v4/beacon-tag")`; and drop every datagram without a valid one
//! before they check its signature. A LAN of one's own machines then ignores
//! strangers' beacons (and their floods of fresh keys) for the price of one
//! MAC; nodes without the key cannot read those beacons as beacons, and
//! could not complete a handshake with their senders anyway.

use hmac_sha256::HMAC;

/// Bytes of a beacon's network-key tag.
pub const BEACON_TAG_LEN: usize = 16;

/// What the beacon-tag key is derived with.
const CONTEXT: &[u8] = b"p2pa/v4/beacon-tag";

fn tag(network_key: &[u8; 32], datagram: &[u8]) -> [u8; 32] {
    let key = HMAC::mac(CONTEXT, network_key);
    HMAC::mac(datagram, key)
}

/// Appends the tag of `buf[..len]` (a signed datagram) to it; returns the
/// new length, or `None` if `buf` has no room for it.
pub fn tag_datagram(network_key: &[u8; 32], buf: &mut [u8], len: usize) -> Option<usize> {
    let end = len.checked_add(BEACON_TAG_LEN)?;
    let t = tag(network_key, buf.get(..len)?);
    buf.get_mut(len..end)?
        .copy_from_slice(t.get(..BEACON_TAG_LEN)?);
    Some(end)
}

/// The signed datagram inside `datagram` if its tag is valid under
/// `network_key` (compared in constant time); `None` otherwise.
pub fn untag_datagram<'a>(network_key: &[u8; 32], datagram: &'a [u8]) -> Option<&'a [u8]> {
    let len = datagram.len().checked_sub(BEACON_TAG_LEN)?;
    let (frame, got) = datagram.split_at(len);
    let want = tag(network_key, frame);
    let diff = got
        .iter()
        .zip(want.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    (diff == 0).then_some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_datagram_opens_only_under_its_key() {
        let mut buf = [0u8; 64];
        buf[..5].copy_from_slice(b"hello");
        let n = tag_datagram(&[1; 32], &mut buf, 5).unwrap();
        assert_eq!(n, 5 + BEACON_TAG_LEN);
        assert_eq!(untag_datagram(&[1; 32], &buf[..n]), Some(&b"hello"[..]));
        assert_eq!(untag_datagram(&[2; 32], &buf[..n]), None);
        let mut bad = buf;
        bad[2] ^= 1;
        assert_eq!(untag_datagram(&[1; 32], &bad[..n]), None);
        assert_eq!(untag_datagram(&[1; 32], b"short"), None);
        assert_eq!(tag_datagram(&[1; 32], &mut [0u8; 8], 5), None);
    }
}
