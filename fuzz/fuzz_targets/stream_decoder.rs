//! Fuzzes the length-prefixed stream decoder: arbitrary bytes, fed in pieces
//! whose sizes come from the input, then every complete frame through the oracle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pa_protocol::{StreamDecoder, MAX_FRAME_LEN};

mod oracle;

fuzz_target!(|data: &[u8]| {
    let (split, stream) = match data.split_first() {
        Some((&s, rest)) => (usize::from(s % 64) + 1, rest),
        None => return,
    };
    let mut dec = StreamDecoder::new(vec![0u8; MAX_FRAME_LEN]);
    for mut piece in stream.chunks(split) {
        loop {
            match dec.decode(&mut piece) {
                Ok(Some(frame)) => oracle::check_frame(frame),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
