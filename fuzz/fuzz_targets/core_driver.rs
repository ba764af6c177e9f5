//! Fuzzes the sans-IO node core: arbitrary sequences of datagrams, stream
//! bytes, honest handshakes, signed session messages (offers, results,
//! blob requests and chunks, cancels), timer ticks and job results, with
//! the core's invariants checked after every step (limits held, no deadline
//! in the past). See `p2pa_node::sim::drive`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2pa_node::sim::drive::Driver::run(data);
});
