//! The life of a task, shared by both sides of the exchange: the worker's
//! jobs and the requester's tasks.

use p2pa_protocol::TaskStatus;

/// Where a task is in its life. Worker jobs go through all of these; a
/// requester's task is `Queued` until offered, then `Running` until reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // the names are the states
pub enum TaskState {
    Queued,
    Running,
    Completed,
    Failed,
    Timeout,
    Cancelled,
}

impl TaskState {
    /// The final state for a result status.
    pub fn from_status(status: TaskStatus) -> Self {
        match status {
            TaskStatus::Completed => Self::Completed,
            TaskStatus::Failed => Self::Failed,
            TaskStatus::Timeout => Self::Timeout,
            TaskStatus::Cancelled => Self::Cancelled,
        }
    }

    /// Whether the task has its answer.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// What a worker is doing, for `p2pa status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Work {
    /// Worker slots.
    pub slots: u16,
    /// Slot jobs running now.
    pub running: usize,
    /// Jobs waiting (for a slot, an input or a model).
    pub queued: usize,
    /// Jobs answered `completed` since the node started.
    pub completed: u64,
    /// Jobs answered otherwise (failed, timed out, cancelled).
    pub failed: u64,
    /// Paused by its owner: it takes no new work.
    pub paused: bool,
    /// The models this node holds (newest first).
    pub models: Vec<[u8; 32]>,
}
