//! Arbitrary frames fed to a DHT core as requests and responses: must never panic, and the
//! core must keep producing outputs.
#![no_main]

use std::time::{Duration, Instant, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use p2p_foundation_dht::{Config, Contact, Dht, Output};
use p2p_foundation_identity::{Key, Keypair};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let local = Keypair::from_secret_bytes([1; 32]).peer_id();
    let peer = Keypair::from_secret_bytes([2; 32]).peer_id();
    let addr = "192.0.2.2:4000".parse().expect("addr");
    let mut dht = Dht::new(local, Config::default(), 1, now, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    dht.add_contact(now, Contact::new(peer, addr));
    let _ = dht.get_record(now, Key::for_record(b"k"));
    for chunk in data.split(|b| *b == 0xfe) {
        dht.handle_frame(now, peer, addr, chunk);
        while !matches!(dht.poll_output(), Output::Timeout(_)) {}
    }
    dht.handle_timeout(now + Duration::from_secs(3600));
    while !matches!(dht.poll_output(), Output::Timeout(_)) {}
});
