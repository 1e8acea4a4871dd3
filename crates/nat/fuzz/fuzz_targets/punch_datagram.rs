#![no_main]
//! Arbitrary datagrams fed to a hole-punching state machine must never panic nor be
//! accepted as an ack.

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use p2p_foundation_identity::Keypair;
use p2p_foundation_nat::{Punch, PunchConfig, PunchSession};

fuzz_target!(|data: &[u8]| {
    let me = Keypair::from_secret_bytes([1; 32]);
    let remote = Keypair::from_secret_bytes([2; 32]).peer_id();
    let addr = "203.0.113.2:5000".parse().expect("addr");
    let now = Instant::now();
    let mut p = Punch::new(
        PunchSession { keypair: me, remote, nonce: [0; 16] },
        addr,
        &[addr],
        PunchConfig::default(),
        [3; 32],
        now,
    );
    let _ = p.poll(now);
    let _ = p.handle_datagram(now, addr, data);
    assert_eq!(p.stats().acks_received, 0);
});
