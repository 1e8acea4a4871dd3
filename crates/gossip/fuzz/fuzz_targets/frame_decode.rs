//! Arbitrary bytes into the frame decoder: must never panic, and whatever decodes must
//! re-encode to the same bytes (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation_gossip::codec::{Limits, decode_body, decode_frame, encode};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(rpc) = decode_frame(data, &limits) {
        assert_eq!(encode(&rpc), data);
    }
    if let Ok(rpc) = decode_body(data, &limits) {
        assert_eq!(&encode(&rpc)[4..], data);
    }
});
