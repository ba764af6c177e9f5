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
    assert_eq!(&bytes[..2], &[2, 9]);
    assert_eq!(&bytes[2..34], key.node_id().as_bytes());
    assert_eq!(&bytes[34..42], &1u64.to_le_bytes());
    assert_eq!(bytes[42], 7);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let documented = "0209197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61\
                      01000000000000000781b021c2d6ab3e6cce55cdcb1cda504855689d4d042ed8\
                      5862a12c57de7265404128d81d060d5721413836c9d7bca8ed35d7d2d3ca27ed\
                      099774fc1686ab6603";
    assert_eq!(
        hex, documented,
        "the worked example in lib.rs is out of date"
    );
}

#[test]
fn receipt_signature_verifies_and_detects_tampering() {
    let r = receipt();
    assert_eq!(r.worker, Keypair::from_seed(SEED).node_id());
    r.verify().unwrap();
    let mut forged = r;
    forged.output[0] ^= 1;
    assert_eq!(forged.verify(), Err(FrameError::BadSignature));
    let mut other_worker = r;
    other_worker.worker = Keypair::from_seed([7u8; 32]).node_id();
    assert!(other_worker.verify().is_err());
}
