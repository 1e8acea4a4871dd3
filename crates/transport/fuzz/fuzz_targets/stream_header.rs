//! The stream header decoder must never panic, and must round-trip what it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation_transport::header;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else { return };
    if let Ok(Some((kind, protocol, used))) = header::decode(rest, usize::from(limit)) {
        assert!(used <= rest.len());
        assert_eq!(header::encode(kind, &protocol), rest[..used]);
    }
});
