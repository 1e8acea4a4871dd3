//! Arbitrary text as a multi-round `requestState`: opening must never panic and
//! never succeed (only the sealer's own tokens open), and a token sealed for one
//! scope must not open for another.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use p2p_foundation_mcp::StateSealer;

fuzz_target!(|data: &[u8]| {
    let sealer = StateSealer::new();
    let now = SystemTime::now();
    let text = String::from_utf8_lossy(data);
    assert!(sealer.open("tools/call\nx\nlocal", &text, now).is_err());
    let token = sealer.seal(
        "tools/call\nx\nlocal",
        &serde_json::Value::String(text.into_owned()),
        now,
    );
    assert!(sealer.open("tools/call\nx\nlocal", &token, now).is_ok());
    assert!(sealer.open("tools/call\ny\nlocal", &token, now).is_err());
});
