//! A worker for a board: one session at a time, `echo` and `hash` tasks run
//! at once (microseconds each), each result a signed frame that is its receipt.

use p2pa_protocol::{
    Capabilities, FailReason, Identity, Intro, KindSet, Message, Nonce, Pong, RejectReason,
    Session, TaskInput, TaskKind, TaskOffer, TaskOutput, TaskReject, TaskResult, TaskStatus,
};

use crate::link::{respond, send, FrameReader, Link, LinkError};

/// The fixed buffers of a worker: `RX` bytes for the largest frame it
/// receives (a task's input and its fields), `TX` for the largest it sends
/// (an output and the hashes that make the frame a receipt).
#[derive(Debug)]
pub struct Buffers<const RX: usize = 2048, const TX: usize = 2048> {
    reader: FrameReader<RX>,
    tx: [u8; TX],
}

impl<const RX: usize, const TX: usize> Default for Buffers<RX, TX> {
    fn default() -> Self {
        Self {
            reader: FrameReader::new(),
            tx: [0; TX],
        }
    }
}

/// What one session did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Tasks answered `Completed`.
    pub completed: u32,
    /// Offers refused (kinds it does not run, blob inputs).
    pub rejected: u32,
}

/// Serves `echo` and `hash` tasks.
#[derive(Debug)]
pub struct Worker<'k> {
    id: &'k Identity,
    listen_port: u16,
}

/// Longest hex output of `hash`: 32 bytes as 64 digits (as p2pa-node answers).
const HASH_HEX_LEN: usize = 64;

impl<'k> Worker<'k> {
    /// A worker with identity `id` (it signs with its key), telling peers
    /// it listens on `listen_port`.
    pub const fn new(id: &'k Identity, listen_port: u16) -> Self {
        Self { id, listen_port }
    }

    /// What it offers: echo and hash, one slot.
    pub fn intro(&self) -> Intro {
        Intro {
            listen_port: self.listen_port,
            caps: Capabilities {
                kinds: KindSet::default().with(TaskKind::Echo).with(TaskKind::Hash),
                free_slots: 1,
                models: heapless::Vec::new(),
                run_us: heapless::Vec::new(),
            },
        }
    }

    /// Accepts one session on `link` (`nonce`: a fresh random ephemeral
    /// secret) and serves it until the peer says goodbye or closes the link.
    pub fn serve<L: Link, const RX: usize, const TX: usize>(
        &self,
        link: &mut L,
        nonce: Nonce,
        bufs: &mut Buffers<RX, TX>,
    ) -> Result<Served, LinkError<L::Error>> {
        let intro = self.intro();
        let (mut session, _) =
            respond(link, &mut bufs.reader, self.id, nonce, &intro, &mut bufs.tx)?;
        let mut served = Served::default();
        loop {
            let frame = match bufs.reader.next(link) {
                Ok(f) => f,
                Err(LinkError::Closed) => return Ok(served),
                Err(e) => return Err(e),
            };
            let message = session.read(frame).map_err(LinkError::Session)?;
            let reply = match message {
                Message::Ping(p) => Message::Pong(Pong { nonce: p.nonce }),
                Message::TaskOffer(offer) => {
                    let n = self.answer(&mut session, &offer, &mut bufs.tx, &mut served)?;
                    send(link, &bufs.tx, n)?;
                    continue;
                }
                Message::Goodbye(_) => return Ok(served),
                _ => continue, // Cancel, Pong, Error: nothing to do here
            };
            let n = session.write(self.id.keypair(), &reply, &mut bufs.tx)?;
            send(link, &bufs.tx, n)?;
        }
    }

    /// Runs an offer and writes its result (or refusal) into `tx`.
    fn answer<E>(
        &self,
        session: &mut Session,
        offer: &TaskOffer<'_>,
        tx: &mut [u8],
        served: &mut Served,
    ) -> Result<usize, LinkError<E>> {
        let input = match (offer.kind, offer.input) {
            (TaskKind::Echo | TaskKind::Hash, TaskInput::Inline(input)) => input,
            _ => {
                served.rejected = served.rejected.saturating_add(1);
                let reject = Message::TaskReject(TaskReject {
                    task_id: offer.task_id,
                    reason: RejectReason::Unsupported,
                });
                return Ok(session.write(self.id.keypair(), &reject, tx)?);
            }
        };
        let mut hex = [0u8; HASH_HEX_LEN];
        let output: &[u8] = if offer.kind == TaskKind::Hash {
            hex_into(&hmac_sha256::Hash::hash(input), &mut hex);
            &hex
        } else {
            input
        };
        let fits = u32::try_from(output.len()).is_ok_and(|n| n <= offer.budget.max_output_len);
        let (status, reason, output): (_, _, &[u8]) = if fits {
            (TaskStatus::Completed, None, output)
        } else {
            let why = b"output exceeds the task's budget";
            (TaskStatus::Failed, Some(FailReason::OutputOverBudget), why)
        };
        // The signed result frame is the receipt.
        let result = Message::TaskResult(TaskResult {
            task_id: offer.task_id,
            status,
            reason,
            output: TaskOutput::Inline(output),
            requester: session.peer(),
            model: offer.model.unwrap_or([0; 32]),
            input: hmac_sha256::Hash::hash(input),
        });
        let n = session.write(self.id.keypair(), &result, tx)?;
        if status == TaskStatus::Completed {
            served.completed = served.completed.saturating_add(1);
        }
        Ok(n)
    }
}

/// Lowercase hex of `bytes` into `out` (twice as long).
fn hex_into(bytes: &[u8; 32], out: &mut [u8; HASH_HEX_LEN]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = DIGITS.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            *lo = DIGITS.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
        }
    }
}
