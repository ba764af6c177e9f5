//! Worker slots: one thread per slot, fed from a FIFO, so a slot that
//! finishes a job takes the next one (prefetched by the core) without a
//! wake-up in between. The threads end when the shell (and so the queue's
//! sender) goes away.

use async_channel::{bounded, Sender};
use std::time::Instant;

use p2pa_protocol::TaskKind;

use super::Input;
use crate::core::JobId;
use crate::task::{Executor, Job};

/// A job for a slot thread: id, kind, input, model, deadline.
pub(super) type SlotJob = (JobId, TaskKind, Vec<u8>, Option<[u8; 32]>, Instant);

/// The slot threads' queue.
pub(super) struct Slots {
    pub(super) jobs: Sender<SlotJob>,
}

impl Slots {
    pub(super) fn start(workers: u16, exec: Executor, done: Sender<Input>) -> Self {
        let depth = usize::from(workers).saturating_mul(2).max(2);
        let (tx, rx) = bounded::<SlotJob>(depth);
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let exec = exec.clone();
            let done = done.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("p2pa-slot-{i}"))
                .spawn(move || {
                    while let Ok((id, kind, input, model, deadline)) = rx.recv_blocking() {
                        let job = Job {
                            id,
                            kind,
                            input,
                            model,
                            deadline,
                        };
                        let (status, out) = exec.run(job);
                        if done.send_blocking(Input::JobDone(id, status, out)).is_err() {
                            break;
                        }
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start worker slot {i}: {e}");
            }
        }
        Self { jobs: tx }
    }
}
