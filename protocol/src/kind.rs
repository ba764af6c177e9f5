//! What a node runs: the task kinds and their one-byte set, with the flags
//! a worker adds for its inference engine. Carried in beacons and the
//! handshake ([`crate::Capabilities`]).

use core::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of work a node can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskKind {
    /// Returns its input.
    Echo,
    /// Returns the SHA-256 of its input.
    Hash,
    /// Sleeps for the milliseconds its input gives in ASCII decimal (tests).
    Sleep,
    /// Runs an ONNX model on a tensor.
    Infer,
}

impl TaskKind {
    /// Every kind, in wire order.
    pub const ALL: [TaskKind; 4] = [Self::Echo, Self::Hash, Self::Sleep, Self::Infer];

    /// The kind's lowercase name, as used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Hash => "hash",
            Self::Sleep => "sleep",
            Self::Infer => "infer",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`TaskKind`]s, one bit each (bits 0 – 3), and flags: the
/// worker's `Infer` engine (bits 6 and 7) and [`KindSet::PAUSED`] (bit 4;
/// bit 5 reserved). Older nodes ignore the flags: [`KindSet::contains`]
/// reads a kind's bit alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KindSet(pub u8);

impl KindSet {
    /// Flag: the worker runs `Infer` on onnxruntime.
    pub const ONNXRUNTIME: u8 = 1 << 6;
    /// Flag: the worker runs `Infer` on tract.
    pub const TRACT: u8 = 1 << 7;
    /// Flag: the worker takes no new tasks now (its owner paused it); it
    /// keeps its kinds, so a requester knows what it will run again.
    pub const PAUSED: u8 = 1 << 4;

    /// The set with these flag bits added.
    #[must_use]
    pub const fn with_flags(self, flags: u8) -> Self {
        Self(self.0 | flags)
    }

    /// Whether every bit of `flags` is set (true for no flags).
    pub const fn has_flags(self, flags: u8) -> bool {
        self.0 & flags == flags
    }

    /// The set with `kind` added.
    #[must_use]
    pub const fn with(self, kind: TaskKind) -> Self {
        Self(self.0 | kind.bit())
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: TaskKind) -> bool {
        self.0 & kind.bit() != 0
    }
}
