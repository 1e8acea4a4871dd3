//! Arbitrary `<peer id>@<address>` strings (bootstrap entries from users and files): must
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = p2p_foundation::parse_peer_addr(text);
    }
});
