//! The blobs part alone, on a fake link: no `Core`.

#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
use super::*;
use crate::core::config::Config;
use crate::core::link::fake::{FakeLink, Sent};

fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

/// Bytes of `len` that differ chunk to chunk.
fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn chunk_of<'a>(hash: Hash32, bytes: &'a [u8], offset: usize) -> BlobChunk<'a> {
    let end = (offset + BLOB_CHUNK_LEN).min(bytes.len());
    BlobChunk {
        hash,
        offset: offset as u64,
        total_len: bytes.len() as u64,
        data: &bytes[offset..end],
    }
}

#[test]
fn serves_a_provided_blob_by_range_and_says_not_found_for_others() {
    let t0 = Instant::now();
    let (asker, stranger) = (id(1), id(2));
    let mut w = FakeLink::with(&[asker, stranger]);
    let mut blobs = Blobs::new(BlobConfig::from(&Config::default()));
    let bytes = blob(BLOB_CHUNK_LEN + 10);
    let hash = sha256(&bytes);
    blobs.provide(hash, bytes.clone().into());
    let ask = |offset: u64| BlobRequest {
        hash,
        offset,
        max_len: u32::MAX,
    };
    blobs.on_request(t0, asker, &ask(0), &mut w);
    blobs.on_request(t0, asker, &ask(CHUNK), &mut w);
    blobs.on_request(t0, stranger, &ask(u64::MAX), &mut w);
    let sent = w.take();
    let total_len = bytes.len() as u64;
    assert_eq!(
        sent,
        vec![
            (
                asker,
                Sent::Chunk {
                    hash,
                    offset: 0,
                    total_len,
                    data: bytes[..BLOB_CHUNK_LEN].to_vec()
                }
            ),
            (
                asker,
                Sent::Chunk {
                    hash,
                    offset: CHUNK,
                    total_len,
                    data: bytes[BLOB_CHUNK_LEN..].to_vec()
                }
            ),
            // Past the end: an empty chunk, not a panic.
            (
                stranger,
                Sent::Chunk {
                    hash,
                    offset: u64::MAX,
                    total_len,
                    data: Vec::new()
                }
            ),
        ]
    );
    assert_eq!(blobs.stats.bytes_served, total_len);
    let unknown = BlobRequest {
        hash: [7; 32],
        ..ask(0)
    };
    blobs.on_request(t0, asker, &unknown, &mut w);
    assert_eq!(w.take(), vec![(asker, Sent::Error(ErrorCode::NotFound))]);
}

#[test]
fn a_lent_output_goes_once_its_owner_has_all_of_it() {
    let t0 = Instant::now();
    let owner = id(1);
    let mut w = FakeLink::with(&[owner]);
    let mut blobs = Blobs::new(BlobConfig::from(&Config::default()));
    let bytes = blob(100);
    let hash = sha256(&bytes);
    blobs.lend(t0, hash, bytes.into(), Some(owner));
    assert_eq!(blobs.lent_bytes(), 100);
    let all = BlobRequest {
        hash,
        offset: 0,
        max_len: u32::MAX,
    };
    blobs.on_request(t0, owner, &all, &mut w);
    assert!(matches!(w.take().as_slice(), [(_, Sent::Chunk { data, .. })] if data.len() == 100));
    assert_eq!(blobs.lent_bytes(), 0);
    blobs.on_request(t0, owner, &all, &mut w);
    assert_eq!(w.take(), vec![(owner, Sent::Error(ErrorCode::NotFound))]);
}

#[test]
fn a_fetch_opens_its_window_after_the_first_chunk_and_checks_the_hash() {
    let t0 = Instant::now();
    let peer = id(1);
    let mut w = FakeLink::with(&[peer]);
    let mut blobs = Blobs::new(BlobConfig::from(&Config::default()));
    let bytes = blob(3 * BLOB_CHUNK_LEN + 5);
    let hash = sha256(&bytes);
    blobs.fetch(
        t0,
        hash,
        Want::Input,
        peer,
        Some(bytes.len() as u64),
        &mut w,
    );
    assert_eq!(w.take(), vec![(peer, Sent::Request { hash, offset: 0 })]);
    let first = chunk_of(hash, &bytes, 0);
    assert_eq!(blobs.on_chunk(t0, peer, &first, &mut w), Fetched::Pending);
    let asked: Vec<u64> = w
        .take()
        .into_iter()
        .map(|(_, s)| match s {
            Sent::Request { offset, .. } => offset,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(asked, vec![CHUNK, 2 * CHUNK, 3 * CHUNK]);
    // A duplicate (or a chunk from an earlier source) is ignored.
    assert_eq!(blobs.on_chunk(t0, peer, &first, &mut w), Fetched::Pending);
    let mut last = Fetched::Pending;
    for offset in [BLOB_CHUNK_LEN, 2 * BLOB_CHUNK_LEN, 3 * BLOB_CHUNK_LEN] {
        last = blobs.on_chunk(t0, peer, &chunk_of(hash, &bytes, offset), &mut w);
    }
    assert_eq!(last, Fetched::Done(Want::Input, bytes.clone()));
    assert_eq!(blobs.stats.bytes_fetched, bytes.len() as u64);
    assert_eq!(blobs.in_flight_bytes(), 0);

    // The same bytes under another hash fail the check.
    let wrong = [9; 32];
    blobs.fetch(t0, wrong, Want::Output, peer, None, &mut w);
    let mut end = Fetched::Pending;
    for offset in (0..bytes.len()).step_by(BLOB_CHUNK_LEN) {
        end = blobs.on_chunk(t0, peer, &chunk_of(wrong, &bytes, offset), &mut w);
    }
    assert!(
        matches!(end, Fetched::Failed(Want::Output, FetchError::HashMismatch { actual, .. }) if actual == hash),
        "{end:?}"
    );
}

#[test]
fn a_length_other_than_the_declared_one_is_refused_before_a_byte_is_kept() {
    let t0 = Instant::now();
    let peer = id(1);
    let mut w = FakeLink::with(&[peer]);
    let mut blobs = Blobs::new(BlobConfig::from(&Config::default()));
    let bytes = blob(10);
    let hash = sha256(&bytes);
    blobs.fetch(t0, hash, Want::Input, peer, Some(9), &mut w);
    let got = blobs.on_chunk(t0, peer, &chunk_of(hash, &bytes, 0), &mut w);
    assert!(
        matches!(
            got,
            Fetched::Failed(
                Want::Input,
                FetchError::LengthMismatch {
                    declared: 9,
                    announced: 10,
                    ..
                }
            )
        ),
        "{got:?}"
    );
    assert_eq!(blobs.stats.bytes_fetched, 0);
}

#[test]
fn a_fetch_stays_with_a_connected_source_and_resumes_elsewhere_where_it_left() {
    let t0 = Instant::now();
    let (first, second) = (id(1), id(2));
    let mut w = FakeLink::with(&[first, second]);
    let mut blobs = Blobs::new(BlobConfig::from(&Config::default()));
    let bytes = blob(2 * BLOB_CHUNK_LEN);
    let hash = sha256(&bytes);
    blobs.fetch(t0, hash, Want::Model, first, None, &mut w);
    blobs.on_chunk(t0, first, &chunk_of(hash, &bytes, 0), &mut w);
    w.take();
    // Asked again while the first source is connected: nothing new.
    blobs.fetch(t0, hash, Want::Model, second, None, &mut w);
    assert!(w.take().is_empty());
    // The first source leaves: the second is asked from the bytes held.
    w.disconnect(first);
    blobs.fetch(t0, hash, Want::Model, second, None, &mut w);
    assert_eq!(
        w.take(),
        vec![(
            second,
            Sent::Request {
                hash,
                offset: CHUNK
            }
        )]
    );
    let done = blobs.on_chunk(t0, second, &chunk_of(hash, &bytes, BLOB_CHUNK_LEN), &mut w);
    // A model is held, and handed to the shell to store.
    assert_eq!(done, Fetched::Done(Want::Model, Vec::new()));
    assert!(blobs.holds(&hash));
    assert_eq!(blobs.advertised(8).collect::<Vec<_>>(), vec![hash]);
    assert!(w.out.orders.iter().any(
        |e| matches!(e, Order::StoreModel { hash: h, bytes: b } if *h == hash && *b == bytes)
    ));
}
