//! The two ids the core and its shell share, in a file of their own so
//! that every part can name them without importing the router.

/// Identifies one TCP connection between the core and its shell.
pub type ConnId = u64;

/// A job the worker side asked the shell to run.
pub type JobId = u64;
