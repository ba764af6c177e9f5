//! Sample messages shared by the golden-vector and property tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use p2pa_protocol::*;

pub const SEED: [u8; 32] = [42u8; 32];

pub const SESSION: SessionId = SessionId {
    initiator: [1u8; 32],
    responder: [2u8; 32],
};

/// The context a message kind travels in.
pub fn context_for(kind: MessageKind) -> Context<'static> {
    match kind {
        MessageKind::Beacon => Context::Datagram,
        _ => Context::Session(&SESSION),
    }
}

pub fn caps() -> Capabilities {
    let mut models = heapless::Vec::new();
    models.push([0xabu8; 32]).unwrap();
    let mut run_us = heapless::Vec::new();
    run_us.push(41_500).unwrap();
    Capabilities {
        kinds: KindSet::default().with(TaskKind::Echo).with(TaskKind::Hash),
        free_slots: 4,
        models,
        run_us,
    }
}

/// One fixed sample of every message kind, with a file-friendly name.
pub fn samples() -> Vec<(&'static str, Message<'static>)> {
    vec![
        (
            "beacon",
            Message::Beacon(Beacon {
                tcp_port: 7420,
                query: true,
                caps: caps(),
            }),
        ),
        (
            "task_offer",
            Message::TaskOffer(TaskOffer {
                task_id: 7,
                kind: TaskKind::Echo,
                input: TaskInput::Inline(b"hello p2pa"),
                model: None,
                deadline_ms: 30_000,
                budget: Budget {
                    max_output_len: 65_536,
                    max_model_len: 0,
                },
            }),
        ),
        (
            "task_offer_blob",
            Message::TaskOffer(TaskOffer {
                task_id: 8,
                kind: TaskKind::Infer,
                input: TaskInput::Blob {
                    hash: [6u8; 32],
                    len: 1_000_000,
                },
                model: Some([0xabu8; 32]),
                deadline_ms: 5_000,
                budget: Budget {
                    max_output_len: 1024,
                    max_model_len: 10_000_000,
                },
            }),
        ),
        (
            "task_accept",
            Message::TaskAccept(TaskAccept { task_id: 7 }),
        ),
        (
            "task_reject",
            Message::TaskReject(TaskReject {
                task_id: 7,
                reason: RejectReason::Busy,
            }),
        ),
        (
            "task_result",
            Message::TaskResult(TaskResult {
                task_id: 7,
                status: TaskStatus::Completed,
                reason: None,
                output: TaskOutput::Inline(b"hello p2pa"),
                requester: NodeId([9u8; 32]),
                model: [0u8; 32],
                input: [3u8; 32],
            }),
        ),
        (
            "task_result_failed",
            Message::TaskResult(TaskResult {
                task_id: 7,
                status: TaskStatus::Failed,
                reason: Some(FailReason::Task),
                output: TaskOutput::Inline(b"input is not a tensor"),
                requester: NodeId([9u8; 32]),
                model: [4u8; 32],
                input: [3u8; 32],
            }),
        ),
        (
            "task_result_blob",
            Message::TaskResult(TaskResult {
                task_id: 7,
                status: TaskStatus::Completed,
                reason: None,
                output: TaskOutput::Blob {
                    hash: [5u8; 32],
                    len: 1 << 20,
                },
                requester: NodeId([9u8; 32]),
                model: [0u8; 32],
                input: [3u8; 32],
            }),
        ),
        ("cancel", Message::Cancel(Cancel { task_id: 7 })),
        ("ping", Message::Ping(Ping { nonce: 7 })),
        ("pong", Message::Pong(Pong { nonce: 7 })),
        (
            "goodbye",
            Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Shutdown,
            }),
        ),
        (
            "error",
            Message::Error(Error {
                code: ErrorCode::BadRequest,
                detail: "unknown task",
            }),
        ),
        (
            "blob_request",
            Message::BlobRequest(BlobRequest {
                hash: [0xabu8; 32],
                offset: 32_768,
                max_len: 32_768,
            }),
        ),
        (
            "blob_chunk",
            Message::BlobChunk(BlobChunk {
                hash: [0xabu8; 32],
                offset: 0,
                total_len: 3,
                data: &[1, 2, 3],
            }),
        ),
    ]
}

/// Encodes `msg` as a signed frame in its proper context, with `seq`.
pub fn frame(key: &Keypair, seq: u64, msg: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; MAX_FRAME_LEN];
    let kind = msg.kind();
    let n = encode_frame(key, context_for(kind), seq, msg, &mut out).unwrap();
    out.truncate(n);
    out
}
