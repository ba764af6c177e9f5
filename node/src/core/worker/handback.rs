//! Jobs a worker gives back before they start, answered `Busy` so their
//! requesters offer them elsewhere at once: one to make room in a full
//! queue for a requester that holds nothing, and all that wait when the
//! worker is paused.

use p2pa_protocol::{Message, NodeId, RejectReason, TaskReject};

use super::{TaskState, Worker};
use crate::core::ids::JobId;
use crate::core::link::Link;
use crate::core::tally::Tally;

impl Worker {
    /// Pauses or resumes taking work; returns whether that changed
    /// anything. Paused, it refuses offers (`Busy`: the requester goes
    /// elsewhere) and says so in its capabilities; what runs now runs to its
    /// end, and what waits for a slot is handed back (`Busy` too, so its
    /// requester offers it elsewhere at once), but for a job whose input is
    /// still being fetched (it runs once fetched).
    pub(crate) fn set_paused(&mut self, paused: bool, w: &mut dyn Link) -> bool {
        if std::mem::replace(&mut self.paused, paused) == paused {
            return false;
        }
        if paused {
            let waiting: Vec<JobId> = self
                .jobs
                .iter()
                .filter(|(_, j)| j.state == TaskState::Queued && !j.fetching)
                .map(|(&id, _)| id)
                .collect();
            for id in waiting {
                let Some(job) = self.jobs.remove(&id) else {
                    continue;
                };
                self.queue.retain(|q| *q != id);
                let busy = Message::TaskReject(TaskReject {
                    task_id: job.task_id,
                    reason: RejectReason::Busy,
                });
                w.send_to(job.peer, &busy);
                log::debug!(
                    "paused: task {} of {} handed back",
                    job.task_id,
                    job.peer.short()
                );
            }
        }
        true
    }

    /// The queue is full and `peer` holds nothing in it: the requester with
    /// the most jobs (at least two) gives up its newest one that has not
    /// started and holds no fetch in flight (answered `Busy`, so it tries
    /// again elsewhere or later). Max-min fairness: many requesters (or many
    /// keys of one) cannot keep a newcomer out while one of them holds more
    /// than one place. Returns whether a place was made.
    pub(super) fn make_room_for(&mut self, peer: NodeId, w: &mut dyn Link) -> bool {
        let capacity = self.cfg.queue_capacity();
        let mut held = Tally::default();
        let mut total = 0usize;
        for j in self.jobs.values().filter(|j| !j.state.is_final()) {
            held.add(j.peer, 1);
            total = total.saturating_add(1);
        }
        if total < capacity || held.of(peer) > 0 {
            return false;
        }
        let Some((heaviest, most)) = held.max() else {
            return false;
        };
        if most < 2 {
            return false;
        }
        let victim = self
            .jobs
            .iter()
            .rev()
            .find(|(_, j)| j.peer == heaviest && j.state == TaskState::Queued && !j.fetching)
            .map(|(&id, j)| (id, j.task_id));
        let Some((id, task_id)) = victim else {
            return false;
        };
        self.jobs.remove(&id);
        self.queue.retain(|q| *q != id);
        let busy = Message::TaskReject(TaskReject {
            task_id,
            reason: RejectReason::Busy,
        });
        w.send_to(heaviest, &busy);
        log::debug!(
            "queue full: task {task_id} of {} makes room for {}",
            heaviest.short(),
            peer.short()
        );
        true
    }
}
