//! How a task this node requested ended: what the application is told.

use std::time::Duration;

use p2pa_protocol::{NodeId, Receipt, TaskStatus};

use super::reason::TaskError;

/// How a task ended, reported once per task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The id `Core::submit` returned.
    pub task_id: u64,
    /// How it ended.
    pub status: TaskStatus,
    /// The worker's output (for `Failed`, its error message).
    pub output: Vec<u8>,
    /// Who ran it, if anyone answered.
    pub worker: Option<NodeId>,
    /// The worker's signed receipt, checked.
    pub receipt: Option<Receipt>,
    /// Offers a worker took (1 when the first worker succeeded); offers
    /// refused `Busy` are counted apart, in `busy`.
    pub attempts: u32,
    /// Offers refused because the worker was busy (each retried at once).
    pub busy: u32,
    /// From submit to outcome.
    pub elapsed: Duration,
    /// Why it did not complete.
    pub error: Option<TaskError>,
}
