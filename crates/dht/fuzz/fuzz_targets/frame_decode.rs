//! Arbitrary bytes into `Message::decode` (whole frame) and `Message::decode_body`: must never
//! panic, and whatever decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation_dht::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data, 64 * 1024) {
        assert_eq!(msg.encode(64 * 1024).expect("re-encode"), data);
    }
    let _ = Message::decode_body(data);
    if let Ok(header) = <[u8; 4]>::try_from(data.get(..4).unwrap_or(&[])) {
        let _ = p2p_foundation_dht::message::frame_body_len(header, 64 * 1024);
    }
});
