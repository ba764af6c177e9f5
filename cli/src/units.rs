//! Units the command line speaks (the node counts bytes).

/// Bytes in a MiB (the CLI speaks MiB, the node bytes).
pub const MIB: u64 = 1024 * 1024;
