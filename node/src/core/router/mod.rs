//! The router: the `impl Core` that carries what one part reports to the
//! others. `Core` itself (its fields, `new`, the `handle_*` entry points and
//! the offer path) is in `core/mod.rs`; here are its timers (`timer`), how
//! sessions end and what that tells the parts (`endings`), stream input
//! (`streams`) and the blob transfers between requester, worker and blob
//! store (`transfers`). No part imports anything from here.

mod endings;
mod streams;
mod timer;
mod transfers;
