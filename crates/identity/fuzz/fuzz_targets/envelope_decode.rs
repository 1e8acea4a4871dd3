//! Arbitrary bytes into `Signed::decode` and `verify`: must never panic, and whatever
//! decodes must re-encode to the same bytes.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use p2p_foundation_identity::{Signed, SignedPayload};

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    name: String,
    values: Vec<u64>,
}

impl SignedPayload for Payload {
    const DOMAIN: &'static str = "fuzz/payload";
}

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Signed::<Payload>::decode(data) {
        assert_eq!(envelope.as_bytes(), data);
        let _ = envelope.verify(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    }
});
