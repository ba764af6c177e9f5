//! The error a command ends with, and the exit codes `--help` documents.

/// Exit codes, as documented in `--help`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const TASK_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NETWORK: u8 = 3;
}

/// An error for the user, with its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub msg: String,
}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            msg: msg.into(),
        }
    }
    pub fn network(msg: impl Into<String>) -> Self {
        Self {
            code: exit::NETWORK,
            msg: msg.into(),
        }
    }
    pub fn failed(msg: impl Into<String>) -> Self {
        Self {
            code: exit::TASK_FAILED,
            msg: msg.into(),
        }
    }
}

pub type CliResult = Result<u8, CliError>;
