//! Why a worker failed a task, typed, as a `TaskResult` carries it.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Why a worker failed a task. Sent with [`TaskStatus::Failed`](crate::TaskStatus::Failed) (the output
/// then carries the worker's text as detail); a requester decides from it
/// whether another worker could do better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailReason {
    /// The task cannot run as given (an input the kind or the model does not
    /// accept, a model the engine refuses): any worker would fail it so.
    Task,
    /// Its output exceeds the requester's budget (`max_output_len`).
    OutputOverBudget,
    /// The model could not be had (fetched, verified, stored).
    Model,
    /// The input could not be had (a blob input fetched and verified).
    Input,
    /// This worker could not run it: its executor crashed, ran out of
    /// memory or CPU time, or is not there. Another worker may succeed.
    Worker,
}

impl FailReason {
    /// Every reason, in wire order.
    pub const ALL: [FailReason; 5] = [
        Self::Task,
        Self::OutputOverBudget,
        Self::Model,
        Self::Input,
        Self::Worker,
    ];

    /// Whether the same task would fail the same way on another worker.
    pub const fn is_the_tasks(self) -> bool {
        matches!(self, Self::Task | Self::OutputOverBudget)
    }

    /// The reason named `name` (as [`name`](Self::name) prints it), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// Lowercase name, as printed by the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::OutputOverBudget => "output_over_budget",
            Self::Model => "model",
            Self::Input => "input",
            Self::Worker => "worker",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
