//! Arbitrary bytes into the UDP transport's datagram decoder: must never panic.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use p2p_foundation_dht::driver::decode_udp_datagram;
use p2p_foundation_identity::Keypair;

fuzz_target!(|data: &[u8]| {
    let local = Keypair::from_secret_bytes([1; 32]).peer_id();
    let _ = decode_udp_datagram(data, &local, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
});
