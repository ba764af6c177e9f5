//! The worker's receipt for a task: the signed result frame itself, kept as
//! its fields, the session it was bound to and its signature. Re-encoding
//! the fields gives back the signed bytes exactly (bodies are canonical), so
//! anyone can check it later, with no key but the worker's public one.

use crate::error::FrameError;
pub use crate::message::Signature64;
use crate::message::{Hash32, Message, NodeId, TaskId, TaskOutput, TaskResult, TaskStatus};
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
    /// the caller to check. A receipt of a version-3 worker verifies too:
    /// its result frame differs from this version's only in the version
    /// byte, so journals kept before version 4 stay checkable.
    pub fn verify(&self, inline: &[u8]) -> Result<(), FrameError> {
        let message = Message::TaskResult(self.result(inline));
        let check = |version| {
            let head = crate::codec::header_of(version, message.kind(), self.worker, self.seq);
            crate::codec::verify_parts(
                self.worker,
                &self.signature,
                Context::Session(&self.session),
                &head,
                &message,
            )
        };
        match check(crate::PROTOCOL_VERSION) {
            Err(FrameError::BadSignature) => check(3),
            other => other,
        }
    }
}
