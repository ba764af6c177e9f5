//! Property tests of the wire format: round trips, no panics on any input,
//! tamper detection, replay refusal and the stream decoder's limits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use common::*;
use p2pa_protocol::*;
use proptest::prelude::*;

/// Raw material from which one message of every kind can be built.
#[derive(Debug, Clone)]
struct Params {
    kind: usize,
    variant: u8,
    a: u64,
    b: u64,
    port: u16,
    flag: bool,
    h1: [u8; 32],
    h2: [u8; 32],
    h3: [u8; 32],
    data: Vec<u8>,
    text: String,
    models: Vec<[u8; 32]>,
}

fn params() -> impl Strategy<Value = Params> {
    (
        0..MessageKind::ALL.len(),
        any::<u8>(),
        any::<u64>(),
        any::<u64>(),
        any::<u16>(),
        any::<bool>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 0..2048),
        "\\PC{0,64}",
        proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_BEACON_MODELS),
    )
        .prop_map(
            |(kind, variant, a, b, port, flag, h1, h2, h3, data, text, models)| Params {
                kind,
                variant,
                a,
                b,
                port,
                flag,
                h1,
                h2,
                h3,
                data,
                text,
                models,
            },
        )
}

fn pick<T: Copy>(all: &[T], i: u8) -> T {
    all[usize::from(i) % all.len()]
}

fn build(p: &Params) -> Message<'_> {
    let caps = Capabilities {
        kinds: KindSet(p.variant & 0x0f),
        free_slots: p.port,
        models: p.models.iter().copied().collect(),
        run_us: p
            .models
            .iter()
            .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]))
            .collect(),
    };
    let status = pick(
        &[
            TaskStatus::Completed,
            TaskStatus::Failed,
            TaskStatus::Timeout,
            TaskStatus::Cancelled,
        ],
        p.variant,
    );
    let chunk = &p.data[..p.data.len().min(BLOB_CHUNK_LEN)];
    match MessageKind::ALL[p.kind] {
        MessageKind::Beacon => Message::Beacon(Beacon {
            tcp_port: p.port,
            query: p.flag,
            caps,
        }),
        MessageKind::TaskOffer => Message::TaskOffer(TaskOffer {
            task_id: p.a,
            kind: pick(&TaskKind::ALL, p.variant),
            input: if p.flag {
                TaskInput::Inline(&p.data)
            } else {
                TaskInput::Blob {
                    hash: p.h1,
                    len: p.b,
                }
            },
            model: p.flag.then_some(p.h2),
            deadline_ms: p.b as u32,
            budget: Budget {
                max_output_len: p.a as u32,
                max_model_len: p.b,
            },
        }),
        MessageKind::TaskAccept => Message::TaskAccept(TaskAccept { task_id: p.a }),
        MessageKind::TaskReject => Message::TaskReject(TaskReject {
            task_id: p.a,
            reason: pick(
                &[
                    RejectReason::Busy,
                    RejectReason::Unsupported,
                    RejectReason::OverBudget,
                    RejectReason::ShuttingDown,
                    RejectReason::Duplicate,
                ],
                p.variant,
            ),
        }),
        MessageKind::TaskResult => Message::TaskResult(TaskResult {
            task_id: p.a,
            status,
            reason: (status == TaskStatus::Failed)
                .then(|| FailReason::ALL[usize::from(p.variant) % FailReason::ALL.len()]),
            output: if p.variant.is_multiple_of(2) {
                TaskOutput::Inline(&p.data)
            } else {
                TaskOutput::Blob {
                    hash: p.h1,
                    len: p.a,
                }
            },
            requester: NodeId(p.h2),
            model: p.h3,
            input: p.h1,
        }),
        MessageKind::Cancel => Message::Cancel(Cancel { task_id: p.a }),
        MessageKind::Ping => Message::Ping(Ping { nonce: p.a }),
        MessageKind::Pong => Message::Pong(Pong { nonce: p.b }),
        MessageKind::Goodbye => Message::Goodbye(Goodbye {
            reason: pick(
                &[
                    GoodbyeReason::Shutdown,
                    GoodbyeReason::Duplicate,
                    GoodbyeReason::NotAllowed,
                    GoodbyeReason::TooManyPeers,
                    GoodbyeReason::ProtocolViolation,
                    GoodbyeReason::Timeout,
                ],
                p.variant,
            ),
        }),
        MessageKind::Error => Message::Error(Error {
            code: pick(
                &[
                    ErrorCode::BadRequest,
                    ErrorCode::NotFound,
                    ErrorCode::Internal,
                ],
                p.variant,
            ),
            detail: &p.text,
        }),
        MessageKind::BlobRequest => Message::BlobRequest(BlobRequest {
            hash: p.h1,
            offset: p.a,
            max_len: (p.b as u32) % (BLOB_CHUNK_LEN as u32 + 1),
        }),
        MessageKind::BlobChunk => Message::BlobChunk(BlobChunk {
            hash: p.h1,
            offset: p.a,
            total_len: p.b,
            data: chunk,
        }),
    }
}

fn stream_bytes(key: &Keypair, seq: u64, msg: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; MAX_FRAME_LEN + LEN_PREFIX_LEN];
    let ctx = context_for(msg.kind());
    let n = encode_stream_frame(key, ctx, seq, msg, &mut out).unwrap();
    out.truncate(n);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_message_round_trips(p in params(), seq in any::<u64>(), seed in any::<[u8; 32]>()) {
        let key = Keypair::from_seed(seed);
        let msg = build(&p);
        let kind = msg.kind();
        let bytes = frame(&key, seq, &msg);
        let v = verify_frame(&bytes, context_for(kind)).unwrap();
        prop_assert_eq!(v.message(), &msg);
        prop_assert_eq!(v.sender(), key.node_id());
        prop_assert_eq!(v.seq(), seq);
        prop_assert_eq!(v.kind(), kind);
    }

    #[test]
    fn any_flipped_bit_fails_verification(p in params(), bit in any::<prop::sample::Index>()) {
        let key = Keypair::from_seed(SEED);
        let msg = build(&p);
        let kind = msg.kind();
        let mut bytes = frame(&key, 3, &msg);
        let i = bit.index(bytes.len() * 8);
        bytes[i / 8] ^= 1 << (i % 8);
        prop_assert!(verify_frame(&bytes, context_for(kind)).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = verify_datagram(&bytes);
        let _ = verify_frame(&bytes, Context::Session(&SESSION));
        let mut dec = StreamDecoder::new(vec![0u8; 1024]);
        let mut input = &bytes[..];
        for _ in 0..bytes.len() + 1 {
            match dec.decode(&mut input) {
                Ok(Some(f)) => { let _ = verify_frame(f, Context::Session(&SESSION)); }
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn stream_decoder_reassembles_any_split(
        ps in proptest::collection::vec(params(), 1..4),
        cuts in proptest::collection::vec(1usize..97, 1..40),
    ) {
        let key = Keypair::from_seed(SEED);
        let msgs: Vec<_> = ps.iter().map(build).collect();
        let mut wire = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            wire.extend(stream_bytes(&key, i as u64, m));
        }
        let mut dec = StreamDecoder::new(vec![0u8; MAX_FRAME_LEN]);
        let mut got = Vec::new();
        let mut rest = &wire[..];
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            let (mut piece, tail) = rest.split_at(n);
            rest = tail;
            while let Some(f) = dec.decode(&mut piece).unwrap() {
                let kind = MessageKind::from_byte(f[1]).unwrap();
                let v = verify_frame(f, context_for(kind)).unwrap();
                got.push((v.seq(), format!("{:?}", v.message())));
            }
            prop_assert!(piece.is_empty());
        }
        let want: Vec<_> = msgs.iter().enumerate().map(|(i, m)| (i as u64, format!("{m:?}"))).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn truncated_stream_input_asks_for_more(p in params(), keep in any::<prop::sample::Index>()) {
        let key = Keypair::from_seed(SEED);
        let wire = stream_bytes(&key, 0, &build(&p));
        let cut = keep.index(wire.len());
        let mut dec = StreamDecoder::new(vec![0u8; MAX_FRAME_LEN]);
        let mut head = &wire[..cut];
        prop_assert_eq!(dec.decode(&mut head).unwrap(), None);
        prop_assert!(head.is_empty());
        prop_assert!(dec.needed() >= 1);
        let mut tail = &wire[cut..];
        prop_assert!(dec.decode(&mut tail).unwrap().is_some());
    }

    #[test]
    fn sequence_numbers_must_strictly_increase(seqs in proptest::collection::vec(any::<u64>(), 1..64)) {
        let mut guard = ReplayGuard::new();
        let mut max: Option<u64> = None;
        for s in seqs {
            let fresh = max.is_none_or(|m| s > m);
            prop_assert_eq!(guard.check(s).is_ok(), fresh);
            if fresh { max = Some(s); }
        }
    }
}

#[test]
fn replayed_frame_is_refused_by_the_session_guard() {
    let key = Keypair::from_seed(SEED);
    let msg = Message::Ping(Ping { nonce: 1 });
    let ctx = Context::Session(&SESSION);
    let mut guard = ReplayGuard::new();
    let f0 = frame(&key, 0, &msg);
    let f1 = frame(&key, 1, &msg);
    for (f, ok) in [(&f0, true), (&f1, true), (&f0, false), (&f1, false)] {
        let v = verify_frame(f, ctx).unwrap();
        assert_eq!(guard.check(v.seq()).is_ok(), ok);
    }
    assert_eq!(guard.check(1), Err(ReplayError { got: 1, last: 1 }));
}

#[test]
fn frame_from_one_session_fails_in_another() {
    let key = Keypair::from_seed(SEED);
    let f = frame(&key, 0, &Message::Ping(Ping { nonce: 1 }));
    let other = SessionId {
        initiator: [1u8; 32],
        responder: [3u8; 32],
    };
    assert_eq!(
        verify_frame(&f, Context::Session(&other)).unwrap_err(),
        FrameError::BadSignature
    );
}

#[test]
fn kinds_outside_their_context_are_refused() {
    let key = Keypair::from_seed(SEED);
    let offer = samples()
        .into_iter()
        .find(|(n, _)| *n == "task_offer")
        .unwrap()
        .1;
    let f = frame(&key, 0, &offer);
    assert_eq!(
        verify_datagram(&f).unwrap_err(),
        FrameError::WrongContext {
            kind: MessageKind::TaskOffer
        }
    );
    let beacon = samples()
        .into_iter()
        .find(|(n, _)| *n == "beacon")
        .unwrap()
        .1;
    let f = frame(&key, 0, &beacon);
    assert!(matches!(
        verify_frame(&f, Context::Session(&SESSION)),
        Err(FrameError::WrongContext { .. })
    ));
}

#[test]
fn four_gib_length_prefix_is_rejected_before_anything_is_stored() {
    let mut dec = StreamDecoder::new([0u8; 256]);
    let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xaa, 0xbb];
    let err = dec.decode(&mut input).unwrap_err();
    assert_eq!(
        err,
        StreamError::Oversized {
            len: u64::from(u32::MAX),
            max: 256
        }
    );
    assert_eq!(input, &[0xaa, 0xbb], "no body byte consumed");
    let mut big = StreamDecoder::new(vec![0u8; MAX_FRAME_LEN]);
    let mut input: &[u8] = &((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
    assert!(matches!(
        big.decode(&mut input),
        Err(StreamError::Oversized { .. })
    ));
}

#[test]
fn undersized_prefix_is_rejected() {
    let mut dec = StreamDecoder::new([0u8; 256]);
    let mut input: &[u8] = &5u32.to_le_bytes();
    assert_eq!(
        dec.decode(&mut input).unwrap_err(),
        StreamError::Undersized {
            len: 5,
            min: MIN_RECORD_LEN
        }
    );
}

#[test]
fn trailing_bytes_after_a_frame_are_not_part_of_it() {
    // A datagram with one byte more than its frame: the extra byte sits where
    // the signature is read from, so the signature check fails.
    let key = Keypair::from_seed(SEED);
    let beacon = samples()
        .into_iter()
        .find(|(n, _)| *n == "beacon")
        .unwrap()
        .1;
    let mut f = frame(&key, 0, &beacon);
    f.push(0);
    assert!(verify_datagram(&f).is_err());
}

#[test]
fn oversized_messages_do_not_encode() {
    let key = Keypair::from_seed(SEED);
    let big = vec![0u8; MAX_DATAGRAM_LEN];
    let msg = Message::BlobChunk(BlobChunk {
        hash: [0; 32],
        offset: 0,
        total_len: 0,
        data: &big,
    });
    let mut out = vec![0u8; 4096];
    assert_eq!(
        encode_frame(&key, Context::Datagram, 0, &msg, &mut out),
        Err(EncodeError::TooLong {
            max: MAX_DATAGRAM_LEN
        })
    );
    let mut small = [0u8; 50];
    assert!(matches!(
        encode_frame(&key, Context::Session(&SESSION), 0, &msg, &mut small),
        Err(EncodeError::BufferTooSmall { .. })
    ));
}
