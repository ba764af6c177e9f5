//! Receipt checks on the requester side: a worker's signed receipt must match
//! the task asked, the result received and the worker that answered.

use p2pa_protocol::{NodeId, Receipt, TaskStatus};

use super::reason::ReceiptError;

/// SHA-256 of `data`: input and output hashes of receipts, the `hash` task.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    hmac_sha256::Hash::hash(data)
}

/// Checks a receipt the requester got back against what it asked and
/// received (the SHA-256 of the input and of the output).
pub fn check_receipt(
    receipt: &Receipt,
    requester: NodeId,
    worker: NodeId,
    task_id: u64,
    status: TaskStatus,
    input: &[u8; 32],
    output: &[u8; 32],
) -> Result<(), ReceiptError> {
    receipt.verify().map_err(|_| ReceiptError::BadSignature)?;
    if receipt.worker != worker {
        return Err(ReceiptError::WrongWorker);
    }
    if receipt.requester != requester || receipt.task_id != task_id {
        return Err(ReceiptError::WrongTask);
    }
    if receipt.status != status {
        return Err(ReceiptError::StatusDiffers);
    }
    if receipt.input != *input {
        return Err(ReceiptError::InputDiffers);
    }
    if receipt.output != *output {
        return Err(ReceiptError::OutputDiffers);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pa_protocol::{Keypair, Signature64};

    fn receipt(worker: &Keypair, requester: NodeId, input: &[u8], output: &[u8]) -> Receipt {
        let mut r = Receipt {
            task_id: 9,
            requester,
            worker: worker.node_id(),
            status: TaskStatus::Completed,
            model: [0; 32],
            input: sha256(input),
            output: sha256(output),
            signature: Signature64([0; 64]),
        };
        worker.sign_receipt(&mut r);
        r
    }

    #[test]
    fn receipts_are_checked_against_the_task_and_the_worker() {
        let w = Keypair::from_seed([1; 32]);
        let me = Keypair::from_seed([2; 32]).node_id();
        let r = receipt(&w, me, b"in", b"out");
        let ok = |r: &Receipt, worker, id, status, input: &[u8], output: &[u8]| {
            check_receipt(r, me, worker, id, status, &sha256(input), &sha256(output))
        };
        assert_eq!(
            ok(&r, w.node_id(), 9, TaskStatus::Completed, b"in", b"out"),
            Ok(())
        );
        assert!(ok(
            &r,
            w.node_id(),
            9,
            TaskStatus::Completed,
            b"in",
            b"tampered"
        )
        .is_err());
        assert!(ok(
            &r,
            w.node_id(),
            9,
            TaskStatus::Completed,
            b"other input",
            b"out"
        )
        .is_err());
        assert!(ok(&r, w.node_id(), 10, TaskStatus::Completed, b"in", b"out").is_err());
        assert!(ok(&r, w.node_id(), 9, TaskStatus::Failed, b"in", b"out").is_err());
        assert!(
            ok(&r, me, 9, TaskStatus::Completed, b"in", b"out").is_err(),
            "signed by someone else than the sender"
        );
        let mut forged = r;
        forged.signature.0[0] ^= 1;
        assert!(ok(
            &forged,
            w.node_id(),
            9,
            TaskStatus::Completed,
            b"in",
            b"out"
        )
        .is_err());
        let other = receipt(&w, NodeId([7; 32]), b"in", b"out");
        assert!(
            ok(&other, w.node_id(), 9, TaskStatus::Completed, b"in", b"out").is_err(),
            "receipt for another requester"
        );
    }
}
