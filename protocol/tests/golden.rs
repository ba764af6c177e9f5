//! Golden vectors: fixed key, fixed messages → exact bytes, checked in under
//! `tests/golden/`. A wire change shows up here as a diff (and needs a version
//! bump). Regenerate deliberately with `P2PA_BLESS=1 cargo test -p p2pa-protocol --test golden`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::path::PathBuf;

use common::*;
use p2pa_protocol::*;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn every_message_matches_its_golden_vector() {
    let key = Keypair::from_seed(SEED);
    let bless = std::env::var_os("P2PA_BLESS").is_some();
    let mut kinds_seen = std::collections::HashSet::new();
    for (name, msg) in samples() {
        kinds_seen.insert(msg.kind());
        let bytes = frame(&key, 1, &msg);
        let path = golden_dir().join(format!("{name}.frame"));
        if bless {
            std::fs::write(&path, &bytes).unwrap();
        }
        let want = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (run with P2PA_BLESS=1 to create)", path.display())
        });
        assert_eq!(
            bytes,
            want,
            "{name}: encoding differs from {}",
            path.display()
        );
        // And the checked-in bytes decode to the same message.
        let kind = msg.kind();
        let v = verify_frame(&want, context_for(kind)).unwrap();
        assert_eq!(v.message(), &msg, "{name}");
        assert_eq!(v.sender(), key.node_id());
        assert_eq!(v.seq(), 1);
    }
    assert_eq!(
        kinds_seen.len(),
        MessageKind::ALL.len(),
        "a sample for every kind"
    );
}

#[test]
fn worked_example_in_the_crate_docs_holds() {
    let key = Keypair::from_seed(SEED);
    assert!(
        key.node_id().to_string().starts_with("197f6b23"),
        "{}",
        key.node_id()
    );
    assert_eq!(key.node_id().short().to_string(), "197f6b23");
    let bytes = frame(&key, 1, &Message::Ping(Ping { nonce: 7 }));
    assert_eq!(bytes.len(), 107);
    assert_eq!(&bytes[..2], &[3, 9]);
    assert_eq!(&bytes[2..34], key.node_id().as_bytes());
    assert_eq!(&bytes[34..42], &1u64.to_le_bytes());
    assert_eq!(bytes[42], 7);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let documented = "0309197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61\
                      010000000000000007a1b09cb821676a9e2f29dd2d5a665c575d670d542c4742\
                      b28b78b5f41371927216b39b5423b736585bce77ca56795297411c5f838e0100\
                      94a5014b8d4a9e450a";
    assert_eq!(
        hex, documented,
        "the worked example in lib.rs is out of date"
    );
}

#[test]
fn a_receipt_kept_from_the_golden_result_frames_verifies_offline() {
    let key = Keypair::from_seed(SEED);
    for name in ["task_result", "task_result_blob"] {
        let bytes = std::fs::read(golden_dir().join(format!("{name}.frame"))).unwrap();
        let v = verify_frame(&bytes, Context::Session(&SESSION)).unwrap();
        let Message::TaskResult(res) = v.message() else {
            panic!("{name} is not a result");
        };
        let seal = Seal {
            signer: v.sender(),
            seq: v.seq(),
            session: SESSION,
            signature: *v.signature(),
        };
        let (inline, output) = match res.output {
            TaskOutput::Inline(b) => (b, [0x11u8; 32]), // the caller hashes it
            TaskOutput::Blob { hash, .. } => (&[][..], hash),
        };
        let r = Receipt::new(&seal, res, output);
        assert_eq!(r.worker, key.node_id());
        assert_eq!(r.verify(inline), Ok(()), "{name}");
        // Any field changed breaks it, and so does another session.
        let mut forged = r;
        forged.input[0] ^= 1;
        assert_eq!(forged.verify(inline), Err(FrameError::BadSignature));
        let mut forged = r;
        forged.requester = NodeId([8u8; 32]);
        assert_eq!(forged.verify(inline), Err(FrameError::BadSignature));
        let mut forged = r;
        forged.seq += 1;
        assert_eq!(forged.verify(inline), Err(FrameError::BadSignature));
        let mut forged = r;
        forged.session.responder[0] ^= 1;
        assert_eq!(forged.verify(inline), Err(FrameError::BadSignature));
        let mut forged = r;
        forged.worker = Keypair::from_seed([7u8; 32]).node_id();
        assert!(forged.verify(inline).is_err());
        if r.blob_len.is_none() {
            assert_eq!(r.verify(b"hello p2pA"), Err(FrameError::BadSignature));
        } else {
            let mut forged = r;
            forged.output[0] ^= 1;
            assert_eq!(forged.verify(inline), Err(FrameError::BadSignature));
        }
    }
}
