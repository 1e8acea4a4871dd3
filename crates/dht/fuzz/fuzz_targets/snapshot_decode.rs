//! Arbitrary bytes into `RoutingSnapshot::decode`: must never panic; what decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation_dht::RoutingSnapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = RoutingSnapshot::decode(data) {
        let again = RoutingSnapshot::decode(&snapshot.encode().expect("encode")).expect("decode");
        assert_eq!(again, snapshot);
    }
});
