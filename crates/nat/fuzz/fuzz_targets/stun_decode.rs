#![no_main]
//! Any byte string fed to the STUN decoder must return, never panic; whatever decodes must
//! re-encode and decode to the same message.

use libfuzzer_sys::fuzz_target;
use p2p_foundation_nat::stun::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        if let Ok(bytes) = m.encode() {
            let again = Message::decode(&bytes).expect("re-encoded message decodes");
            assert_eq!(again, m);
        }
    }
});
