//! Arbitrary bytes into the frame decoder: must never panic, and whatever decodes must
//! re-encode to the same bytes (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation_gossip::codec::{KeyCache, Limits, decode_body, decode_body_cached, decode_frame, encode};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(rpc) = decode_frame(data, &limits) {
        assert_eq!(encode(&rpc), data);
    }
    let plain = decode_body(data, &limits);
    if let Ok(rpc) = &plain {
        assert_eq!(&encode(rpc)[4..], data);
    }
    // The cached decoder agrees with the plain one, cold and warm.
    let mut keys = KeyCache::default();
    for _ in 0..2 {
        let cached = decode_body_cached(data, &limits, &mut keys);
        assert_eq!(cached.as_ref().ok(), plain.as_ref().ok());
    }
});
