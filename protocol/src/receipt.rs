//! The worker's receipt for a task and the 64-byte signature type message
//! bodies carry. A receipt is signed on its own, so it can be kept and
//! checked apart from the frame it came in.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::message::{write_hex, Hash32, NodeId, TaskId, TaskStatus};

/// A 64-byte Ed25519 signature inside a message body (serde derives stop at 32).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature64(pub [u8; 64]);

impl fmt::Debug for Signature64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature64(")?;
        write_hex(f, self.0.get(..8).unwrap_or_default())?;
        f.write_str("…)")
    }
}

impl Serialize for Signature64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(64)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Signature64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Signature64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Signature64, A::Error> {
                let mut out = [0u8; 64];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature64(out))
            }
        }
        d.deserialize_tuple(64, V)
    }
}

/// What a worker attests about a task it ran. Signed on its own (context
/// `p2pa/v1/receipt`) so it can be stored and checked apart from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The task.
    pub task_id: TaskId,
    /// Who asked.
    pub requester: NodeId,
    /// Who ran it (and signed this receipt).
    pub worker: NodeId,
    /// How it ended.
    pub status: TaskStatus,
    /// Model hash, or all zeros when the task used no model.
    pub model: Hash32,
    /// SHA-256 of the input.
    pub input: Hash32,
    /// SHA-256 of the output.
    pub output: Hash32,
    /// Ed25519 signature by `worker` over [`Receipt::signed_bytes`].
    pub signature: Signature64,
}

/// Length of [`Receipt::signed_bytes`].
pub const RECEIPT_SIGNED_LEN: usize = 16 + 8 + 32 + 32 + 1 + 32 * 3;

impl Receipt {
    /// The fixed-layout bytes the receipt signature covers:
    /// `"p2pa/v1/receipt\0"`, task id (u64 LE), requester, worker, status byte,
    /// model, input, output. Fixed layout, so nothing is re-encoded to verify.
    pub fn signed_bytes(&self) -> [u8; RECEIPT_SIGNED_LEN] {
        let mut out = [0u8; RECEIPT_SIGNED_LEN];
        let parts: [&[u8]; 8] = [
            crate::sign::RECEIPT_CONTEXT,
            &self.task_id.to_le_bytes(),
            &self.requester.0,
            &self.worker.0,
            &[self.status.byte()],
            &self.model,
            &self.input,
            &self.output,
        ];
        let mut rest: &mut [u8] = &mut out;
        for part in parts {
            let (head, tail) = rest.split_at_mut(part.len());
            head.copy_from_slice(part);
            rest = tail;
        }
        out
    }
}

const _: () = assert!(crate::sign::RECEIPT_CONTEXT.len() == 16);
