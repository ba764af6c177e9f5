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
    assert_eq!(&bytes[..2], &[7, 9]);
    assert_eq!(&bytes[2..34], key.node_id().as_bytes());
    assert_eq!(&bytes[34..42], &1u64.to_le_bytes());
    assert_eq!(bytes[42], 7);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let documented = "0709197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61\
                      010000000000000007\
                      05138807a1f5733793d8c1b8bcc3306fb7ae89747c05bb3453581382e1de0ba2\
                      d31fefcb2d1776ddb270e8b933f8d90162fc0b7096562956b87622cf93979b06";
    assert_eq!(
        hex, documented,
        "the worked example in lib.rs is out of date"
    );
}

#[test]
fn a_receipt_kept_from_the_golden_result_frames_verifies_offline() {
    let key = Keypair::from_seed(SEED);
    for name in ["task_result", "task_result_blob", "task_result_failed"] {
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

/// The handshake with fixed keys and fixed ephemeral seeds, and the first
/// sealed record of the session: A (seed 42, ephemeral seed [1; 32], port 7420)
/// dials B (seed 43, ephemeral [2; 32], port 7421), then sends `Ping { nonce: 7 }`.
#[test]
fn the_handshake_and_a_sealed_record_match_their_golden_vectors() {
    let a = Identity::new(Keypair::from_seed(SEED));
    let b = Identity::new(Keypair::from_seed([43u8; 32]));
    let intro = |port| Intro {
        listen_port: port,
        caps: caps(),
    };
    let none: Known<'_> = &|_, _| false;
    let (mut oa, mut ob) = (vec![0u8; 2048], vec![0u8; 2048]);
    let (wait, n1) = Initiator::new([1; 32], Some(b.node_id()))
        .write_hello(&a, &mut oa)
        .unwrap();
    let m1 = oa[..n1].to_vec();
    let (pending, n2) = Responder::new([2; 32])
        .read_hello(&b, &mut oa[LEN_PREFIX_LEN..n1], &intro(7421), &mut ob)
        .unwrap();
    let m2 = ob[..n2].to_vec();
    let confirm = wait
        .read_ack(&a, &mut ob[LEN_PREFIX_LEN..n2], none)
        .unwrap();
    let (mut sa, _, n3) = confirm.confirm(&a, &intro(7420), &mut oa).unwrap();
    let m3 = oa[..n3].to_vec();
    let (mut sb, theirs) = pending
        .read_confirm(&b, &mut oa[LEN_PREFIX_LEN..n3], none)
        .unwrap();
    assert_eq!(theirs, intro(7420));
    let ping = Message::Ping(Ping { nonce: 7 });
    let n = sa.write(a.keypair(), &ping, &mut oa).unwrap();
    let record = oa[..n].to_vec();
    let bless = std::env::var_os("P2PA_BLESS").is_some();
    for (name, bytes) in [
        ("handshake_1", &m1),
        ("handshake_2", &m2),
        ("handshake_3", &m3),
        ("sealed_ping", &record),
    ] {
        let path = golden_dir().join(format!("{name}.bin"));
        if bless {
            std::fs::write(&path, bytes).unwrap();
        }
        let want = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (run with P2PA_BLESS=1 to create)", path.display())
        });
        assert_eq!(bytes, &want, "{name}: differs from {}", path.display());
    }
    assert_eq!(sb.read(&mut oa[LEN_PREFIX_LEN..n]), Ok(ping));
    // The record is the signed frame of the worked example's kind, sealed:
    // a length prefix, then flags, the 107-byte frame and the tag, encrypted.
    assert_eq!(record.len(), LEN_PREFIX_LEN + 1 + 107 + TAG_LEN);
}

/// A receipt kept by a version-3 requester (the result frame of the golden
/// vectors before version 4, `tests/golden/v3_task_result.frame`) still
/// verifies: the frame differs only in its version byte.
#[test]
fn a_version_3_receipt_still_verifies() {
    let key = Keypair::from_seed(SEED);
    let bytes = std::fs::read(golden_dir().join("v3_task_result.frame")).unwrap();
    assert_eq!(bytes[0], 3);
    let (_, msg) = samples()
        .into_iter()
        .find(|(n, _)| *n == "task_result")
        .unwrap();
    let Message::TaskResult(res) = msg else {
        panic!("not a result")
    };
    let seal = Seal {
        signer: key.node_id(),
        seq: 1,
        session: SESSION,
        signature: Signature64(bytes[bytes.len() - 64..].try_into().unwrap()),
    };
    let r = Receipt::new(&seal, &res, [0x11u8; 32]);
    assert_eq!(r.verify(b"hello p2pa"), Ok(()));
    assert_eq!(r.verify(b"hello p2pA"), Err(FrameError::BadSignature));
}

/// The receipt a journal kept from golden frame `v{version}_{name}.frame`
/// (signed under that older version; the result is this version's sample
/// of `name`), and the inline output it signs. The frame itself is not one
/// of this version.
fn old_receipt(version: u8, name: &str) -> (Receipt, Vec<u8>) {
    let old = std::fs::read(golden_dir().join(format!("v{version}_{name}.frame"))).unwrap();
    assert_eq!(old[0], version, "{name}: a version-{version} frame");
    assert!(
        verify_frame(&old, Context::Session(&SESSION)).is_err(),
        "{name}: not a frame of this version"
    );
    let (_, msg) = samples().into_iter().find(|(n, _)| *n == name).unwrap();
    let Message::TaskResult(res) = msg else {
        panic!("{name} is not a result");
    };
    let seal = Seal {
        signer: Keypair::from_seed(SEED).node_id(),
        seq: u64::from_le_bytes(old[34..42].try_into().unwrap()),
        session: SESSION,
        signature: Signature64(old[old.len() - SIGNATURE_LEN..].try_into().unwrap()),
    };
    let (inline, output) = match res.output {
        TaskOutput::Inline(b) => (b, [0x11u8; 32]),
        TaskOutput::Blob { hash, .. } => (&[][..], hash),
    };
    (Receipt::new(&seal, &res, output), inline.to_vec())
}

/// Receipts kept before version 6 (result frames without `reason`, signed
/// under version 5) still verify, and only as they were signed.
#[test]
fn a_receipt_of_a_version_5_worker_still_verifies() {
    for name in ["task_result", "task_result_blob"] {
        // The same result as this version's sample, which has no reason.
        let (r, inline) = old_receipt(5, name);
        assert_eq!(r.reason, None);
        assert_eq!(r.verify(&inline), Ok(()), "{name}");
        let mut forged = r;
        forged.input[0] ^= 1;
        assert_eq!(forged.verify(&inline), Err(FrameError::BadSignature));
        // A reason it never carried is not what was signed.
        let mut forged = r;
        forged.reason = Some(FailReason::Worker);
        assert_eq!(forged.verify(&inline), Err(FrameError::BadSignature));
    }
}

/// Receipts kept under version 6 (the same encoding as now, the version byte
/// aside) still verify, a failed result's reason included, and only as
/// they were signed.
#[test]
fn a_receipt_of_a_version_6_worker_still_verifies() {
    for name in ["task_result", "task_result_blob", "task_result_failed"] {
        let (r, inline) = old_receipt(6, name);
        assert_eq!(r.verify(&inline), Ok(()), "{name}");
        let mut forged = r;
        forged.model[0] ^= 1;
        assert_eq!(forged.verify(&inline), Err(FrameError::BadSignature));
    }
}
