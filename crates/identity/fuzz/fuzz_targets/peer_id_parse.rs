//! Arbitrary text into `PeerId::from_str`: must never panic; what parses prints back the same
//! (lowercased).
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation_identity::PeerId;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(peer) = text.parse::<PeerId>() {
            assert_eq!(peer.to_string(), text.to_ascii_lowercase());
        }
    }
});
