#![no_main]
//! Arbitrary datagrams fed to the relay server and the reply decoder must never panic, and
//! must never create an allocation without a valid signature.

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use p2p_foundation_nat::relay::{RelayLimits, RelayServer, decode_reply};

fuzz_target!(|data: &[u8]| {
    let mut relay = RelayServer::new(RelayLimits::default());
    let from = "203.0.113.1:4000".parse().expect("addr");
    let _ = relay.handle(Instant::now(), 1_800_000_000_000, from, data);
    assert_eq!(relay.allocations(), 0);
    let _ = decode_reply(data);
});
