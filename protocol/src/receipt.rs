//! The worker's receipt for a task: the signed result frame itself, kept as
//! its fields, the session it was bound to and its signature. Re-encoding
//! the fields gives back the signed bytes exactly (bodies are canonical), so
//! anyone can check it later, with no key but the worker's public one.

use serde::Serialize;

use crate::error::FrameError;
pub use crate::message::Signature64;
use crate::message::{
    FailReason, Hash32, Message, NodeId, TaskId, TaskOutput, TaskResult, TaskStatus,
};
use crate::sign::{Context, SessionId};

/// A session frame's signature and what it was bound to: with the frame's
/// message, enough to check the signature again, away from the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// Who signed the frame.
    pub signer: NodeId,
    /// The frame's sequence number.
    pub seq: u64,
    /// The session's id.
    pub session: SessionId,
    /// The frame's signature.
    pub signature: Signature64,
}

/// What a worker attests about a task it ran: the fields of its signed
/// `TaskResult` frame, the frame's sequence number, session and signature.
/// [`Receipt::verify`] re-encodes the frame's signed bytes and checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The task.
    pub task_id: TaskId,
    /// Who asked.
    pub requester: NodeId,
    /// Who ran it (and signed the result frame).
    pub worker: NodeId,
    /// How it ended.
    pub status: TaskStatus,
    /// Why it failed, if it did.
    pub reason: Option<FailReason>,
    /// Model hash, or all zeros when the task used no model.
    pub model: Hash32,
    /// SHA-256 of the input.
    pub input: Hash32,
    /// SHA-256 of the output.
    pub output: Hash32,
    /// How the output travelled: `None` inside the frame (checking needs
    /// its bytes), `Some(len)` as a blob of `len` bytes (the frame carried
    /// `output` and `len`).
    pub blob_len: Option<u64>,
    /// The result frame's sequence number in its session.
    pub seq: u64,
    /// The session's id (its two ephemeral keys), which the frame's signature covers.
    pub session: SessionId,
    /// The worker's signature of the result frame.
    pub signature: Signature64,
}

impl Receipt {
    /// The receipt for `result`, received in a frame sealed by `seal`;
    /// `output` is the SHA-256 of its output (the blob hash for a blob).
    pub fn new(seal: &Seal, result: &TaskResult<'_>, output: Hash32) -> Self {
        Self {
            task_id: result.task_id,
            requester: result.requester,
            worker: seal.signer,
            status: result.status,
            reason: result.reason,
            model: result.model,
            input: result.input,
            output,
            blob_len: match result.output {
                TaskOutput::Inline(_) => None,
                TaskOutput::Blob { len, .. } => Some(len),
            },
            seq: seal.seq,
            session: seal.session,
            signature: seal.signature,
        }
    }

    /// The result the worker signed; `inline` is the output when it
    /// travelled inside the frame (ignored for a blob).
    pub fn result<'a>(&self, inline: &'a [u8]) -> TaskResult<'a> {
        TaskResult {
            task_id: self.task_id,
            status: self.status,
            reason: self.reason,
            output: match self.blob_len {
                None => TaskOutput::Inline(inline),
                Some(len) => TaskOutput::Blob {
                    hash: self.output,
                    len,
                },
            },
            requester: self.requester,
            model: self.model,
            input: self.input,
        }
    }

    /// Checks the worker's signature over the result frame, re-encoded
    /// from these fields (and `inline`, the output, when it travelled in
    /// the frame). That `output` is the SHA-256 of an inline output is for
    /// the caller to check. Receipts of earlier versions verify too, so
    /// journals kept before stay checkable: version 6 differs from this one
    /// only in the version byte; versions 3 to 5 encoded the result without
    /// `reason` (a receipt without one is tried so), and differed from each
    /// other only in the version byte.
    pub fn verify(&self, inline: &[u8]) -> Result<(), FrameError> {
        let message = Message::TaskResult(self.result(inline));
        let kind = message.kind();
        let head = |version| crate::codec::header_of(version, kind, self.worker, self.seq);
        let ctx = || Context::Session(&self.session);
        let (worker, signature) = (self.worker, &self.signature);
        // Version 6 encoded the result as this version does.
        let mut now = Err(FrameError::BadSignature);
        for version in [crate::PROTOCOL_VERSION, 6] {
            now = crate::codec::verify_parts(worker, signature, ctx(), &head(version), &message);
            if now.is_ok() {
                break;
            }
        }
        match now {
            Err(FrameError::BadSignature) if self.reason.is_none() => {}
            other => return other,
        }
        let legacy = LegacyResult::of(&self.result(inline));
        let mut last = Err(FrameError::BadSignature);
        for version in LEGACY_VERSIONS {
            let body = (kind, &legacy);
            last = crate::codec::verify_parts_of(worker, signature, ctx(), &head(version), body);
            if last.is_ok() {
                break;
            }
        }
        last
    }
}

/// The versions whose result frames had no `reason`, newest first.
const LEGACY_VERSIONS: [u8; 3] = [5, 4, 3];

/// A `TaskResult` as versions 3 to 5 encoded it (postcard, in this order).
#[derive(Serialize)]
struct LegacyResult<'a> {
    task_id: TaskId,
    status: TaskStatus,
    output: TaskOutput<'a>,
    requester: NodeId,
    model: Hash32,
    input: Hash32,
}

impl<'a> LegacyResult<'a> {
    fn of(r: &TaskResult<'a>) -> Self {
        Self {
            task_id: r.task_id,
            status: r.status,
            output: r.output,
            requester: r.requester,
            model: r.model,
            input: r.input,
        }
    }
}
