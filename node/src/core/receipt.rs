//! Results on the requester side: the signed result frame is the worker's
//! receipt. Its signature was checked with the frame; what is left is that
//! it answers the task asked (this requester, this input, this model), and,
//! for a kept receipt, that its output hash is the output's.

use p2pa_protocol::{Hash32, NodeId, Receipt, TaskResult};

use super::reason::ReceiptError;

/// SHA-256 of `data`: input and output hashes of receipts, the `hash` task.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Checks a verified result against the task this node asked: the
/// requester it names, the input's SHA-256 and the model (zeros for none).
pub fn check_result(
    res: &TaskResult<'_>,
    requester: NodeId,
    input: &Hash32,
    model: &Hash32,
) -> Result<(), ReceiptError> {
    if res.requester != requester {
        return Err(ReceiptError::WrongRequester);
    }
    if res.input != *input {
        return Err(ReceiptError::InputDiffers);
    }
    if res.model != *model {
        return Err(ReceiptError::ModelDiffers);
    }
    Ok(())
}

/// Why a kept receipt does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptCheck {
    /// The worker's signature does not cover these fields.
    BadSignature,
    /// The output given is not the one whose hash the receipt holds.
    OutputDiffers,
}

impl core::fmt::Display for ReceiptCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BadSignature => "the worker's signature does not verify",
            Self::OutputDiffers => "the output's SHA-256 differs from the receipt's",
        })
    }
}

/// Checks a kept receipt offline: the worker's signature over the result
/// frame re-encoded from its fields, and, where the output is at hand (it
/// must be for an output that travelled in the frame), that it is the
/// output the receipt names.
pub fn verify_receipt(receipt: &Receipt, output: Option<&[u8]>) -> Result<(), ReceiptCheck> {
    if let Some(bytes) = output {
        if sha256(bytes) != receipt.output {
            return Err(ReceiptCheck::OutputDiffers);
        }
    }
    let inline = if receipt.blob_len.is_none() {
        output.ok_or(ReceiptCheck::OutputDiffers)?
    } else {
        &[]
    };
    receipt
        .verify(inline)
        .map_err(|_| ReceiptCheck::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pa_protocol::{
        Identity, Initiator, Intro, Keypair, Message, Responder, TaskOutput, TaskStatus,
        LEN_PREFIX_LEN,
    };

    /// A worker's result read by a requester over a real session, and the
    /// receipt the requester keeps.
    fn kept(output: TaskOutput<'_>, out_hash: Hash32) -> (Receipt, NodeId) {
        let (req, wrk) = (Keypair::from_seed([2; 32]), Keypair::from_seed([1; 32]));
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        let (id_req, id_wrk) = (Identity::new(req.clone()), Identity::new(wrk.clone()));
        let none = &|_, _: &[u8; 32]| false;
        let (init, n) = Initiator::new([5; 32], Some(wrk.node_id()))
            .write_hello(&id_req, &mut a)
            .unwrap();
        let (wait, m) = Responder::new([6; 32])
            .read_hello(
                &id_wrk,
                &mut a[LEN_PREFIX_LEN..n],
                &Intro::default(),
                &mut b,
            )
            .unwrap();
        let confirm = init
            .read_ack(&id_req, &mut b[LEN_PREFIX_LEN..m], none)
            .unwrap();
        let (mut s_req, _, n) = confirm.confirm(&id_req, &Intro::default(), &mut a).unwrap();
        let (mut s_wrk, _) = wait
            .read_confirm(&id_wrk, &mut a[LEN_PREFIX_LEN..n], none)
            .unwrap();
        let res = TaskResult {
            task_id: 9,
            status: TaskStatus::Completed,
            reason: None,
            output,
            requester: req.node_id(),
            model: [0; 32],
            input: sha256(b"in"),
        };
        let n = s_wrk
            .write(&wrk, &Message::TaskResult(res), &mut b)
            .unwrap();
        let (msg, seal) = s_req.read_sealed(&mut b[LEN_PREFIX_LEN..n]).unwrap();
        let Message::TaskResult(got) = msg else {
            panic!("not a result")
        };
        assert_eq!(
            check_result(&got, req.node_id(), &sha256(b"in"), &[0; 32]),
            Ok(())
        );
        assert_eq!(
            check_result(&got, wrk.node_id(), &sha256(b"in"), &[0; 32]),
            Err(ReceiptError::WrongRequester)
        );
        assert_eq!(
            check_result(&got, req.node_id(), &sha256(b"other"), &[0; 32]),
            Err(ReceiptError::InputDiffers)
        );
        assert_eq!(
            check_result(&got, req.node_id(), &sha256(b"in"), &[1; 32]),
            Err(ReceiptError::ModelDiffers)
        );
        (Receipt::new(&seal, &got, out_hash), wrk.node_id())
    }

    #[test]
    fn a_kept_receipt_verifies_offline_and_nothing_else_does() {
        let (r, worker) = kept(TaskOutput::Inline(b"out"), sha256(b"out"));
        assert_eq!(r.worker, worker);
        assert_eq!(verify_receipt(&r, Some(b"out")), Ok(()));
        assert_eq!(
            verify_receipt(&r, Some(b"tampered")),
            Err(ReceiptCheck::OutputDiffers)
        );
        assert_eq!(verify_receipt(&r, None), Err(ReceiptCheck::OutputDiffers));
        let mut forged = r;
        forged.status = TaskStatus::Failed;
        assert_eq!(
            verify_receipt(&forged, Some(b"out")),
            Err(ReceiptCheck::BadSignature)
        );
        let mut forged = r;
        forged.task_id = 10;
        assert_eq!(
            verify_receipt(&forged, Some(b"out")),
            Err(ReceiptCheck::BadSignature)
        );
        let mut forged = r;
        forged.signature.0[0] ^= 1;
        assert_eq!(
            verify_receipt(&forged, Some(b"out")),
            Err(ReceiptCheck::BadSignature)
        );
    }

    #[test]
    fn a_blob_output_receipt_verifies_without_the_output() {
        let big = vec![7u8; 100_000];
        let hash = sha256(&big);
        let (r, _) = kept(TaskOutput::Blob { hash, len: 100_000 }, hash);
        assert_eq!(r.blob_len, Some(100_000));
        assert_eq!(verify_receipt(&r, None), Ok(()));
        assert_eq!(verify_receipt(&r, Some(&big)), Ok(()));
        assert_eq!(
            verify_receipt(&r, Some(b"x")),
            Err(ReceiptCheck::OutputDiffers)
        );
        let mut forged = r;
        forged.blob_len = Some(99_999);
        assert_eq!(
            verify_receipt(&forged, None),
            Err(ReceiptCheck::BadSignature)
        );
    }
}
