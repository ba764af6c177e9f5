// Shared oracle of the fuzz targets: a frame that verifies must decode to a
// message that re-encodes, re-signed with the same key and sequence, to exactly
// the frame's bytes; and any body that decodes must re-encode to itself.
use p2pa_protocol::*;

pub const SESSION: SessionId = SessionId {
    initiator: [1u8; 32],
    responder: [2u8; 32],
};

/// The golden-vector key: frames in the seed corpus are signed with it.
pub fn key() -> Keypair {
    Keypair::from_seed([42u8; 32])
}

pub fn context_for(kind_byte: u8) -> Context<'static> {
    match MessageKind::from_byte(kind_byte) {
        Some(MessageKind::Beacon) => Context::Datagram,
        _ => Context::Session(&SESSION),
    }
}

/// Checks one frame (without length prefix) against the oracle, in the
/// context its kind travels in.
pub fn check_frame(frame: &[u8]) {
    let kind_byte = frame.get(1).copied().unwrap_or(0);
    let ctx = context_for(kind_byte);
    if let Ok(v) = verify_frame(frame, ctx) {
        let key = key();
        if v.sender() == key.node_id() {
            let mut out = vec![0u8; MAX_FRAME_LEN];
            let n = encode_frame(&key, ctx, v.seq(), v.message(), &mut out)
                .expect("a verified message re-encodes");
            assert_eq!(&out[..n], frame, "verified frame does not round-trip");
        }
    }
    // The body alone, as if it had been signed: whatever decodes re-encodes.
    if let (Some(kind), Some(body)) = (
        MessageKind::from_byte(kind_byte),
        frame.get(HEADER_LEN..frame.len().saturating_sub(SIGNATURE_LEN)),
    ) {
        if let Ok(msg) = decode_body(kind, body) {
            let mut out = vec![0u8; body.len() + 16];
            let n = encode_body(&msg, &mut out).expect("a decoded body re-encodes");
            assert_eq!(&out[..n], body, "decoded body does not round-trip");
        }
    }
}
