#![no_main]
//! Arbitrary datagrams fed to the relay server and the reply decoder must never panic, and
//! must never create an allocation without a CHALLENGE answered and a valid signature.

use std::time::{Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use p2p_foundation_nat::relay::{RelayLimits, RelayServer, decode_reply};

fuzz_target!(|data: &[u8]| {
    let mut relay = RelayServer::new(RelayLimits::default(), [7; 32]);
    let from = "203.0.113.1:4000".parse().expect("addr");
    let out = relay.handle(Instant::now(), SystemTime::now(), from, data);
    // Whatever is answered goes to the sender and is no larger than what it sent.
    for (to, bytes) in &out {
        assert_eq!(*to, from);
        assert!(bytes.len() <= data.len());
    }
    assert_eq!(relay.allocations(), 0);
    let _ = decode_reply(data);
});
