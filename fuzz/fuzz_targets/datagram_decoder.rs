//! Fuzzes the datagram (UDP) decoder: one arbitrary datagram through the oracle.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod oracle;

fuzz_target!(|data: &[u8]| {
    let _ = p2pa_protocol::verify_datagram(data);
    oracle::check_frame(data);
});
