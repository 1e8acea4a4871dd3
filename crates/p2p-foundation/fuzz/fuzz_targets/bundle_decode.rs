//! Arbitrary DHT record values decoded as MCP service-record bundles: must never panic,
//! and whatever decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation::mcp::{decode_bundle, encode_bundle};

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = decode_bundle(data) {
        assert_eq!(encode_bundle(records.iter()), data);
    }
});
