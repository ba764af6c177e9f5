//! Worker slots: one thread per slot, fed from a FIFO, so a slot that
//! finishes a job takes the next one (prefetched by the core) without a
//! wake-up in between. The threads end when the shell (and so the queue's
//! sender) goes away. A job stopped (or past its deadline) while it waits
//! in the FIFO is skipped.
//!
//! The FIFO has no bound of its own: the core hands out at most `workers +
//! prefetch` slot jobs at once (`worker/limits.rs`), and that is the bound.

use async_channel::{unbounded, Sender};
use std::time::Instant;

use p2pa_protocol::TaskStatus;

use super::Input;
use crate::task::{Executor, Job, Ran, DEADLINE_PASSED};

/// The slot threads' queue.
pub(super) struct Slots {
    pub(super) jobs: Sender<Job>,
}

impl Slots {
    /// Starts `workers` slot threads at niceness `nice` (0: as the node).
    pub(super) fn start(workers: u16, nice: u8, exec: Executor, done: Sender<Input>) -> Self {
        let (tx, rx) = unbounded::<Job>();
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let exec = exec.clone();
            let done = done.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("p2pa-slot-{i}"))
                .spawn(move || {
                    if nice > 0 {
                        if let Err(e) = crate::task::lower_priority(nice) {
                            log::warn!("worker slot {i} keeps its priority (nice {nice}: {e})");
                        }
                    }
                    while let Ok(job) = rx.recv_blocking() {
                        let id = job.id;
                        let start = Instant::now();
                        // A job stopped or past its deadline while it waited
                        // here is not started (the core has answered it).
                        let ran = if job.stop.is_raised() {
                            Ran::ended(TaskStatus::Cancelled, Vec::new())
                        } else if job.deadline <= Instant::now() {
                            Ran::ended(TaskStatus::Timeout, DEADLINE_PASSED.to_vec())
                        } else {
                            exec.run(job)
                        };
                        let took = start.elapsed();
                        if done.send_blocking(Input::JobDone(id, ran, took)).is_err() {
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
