#![no_main]
//! Arbitrary datagrams fed to the rendezvous server and the PEER decoder must never panic,
//! and must never create a registration without a valid signature.

use std::time::{Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use p2p_foundation_nat::rendezvous::{RendezvousServer, decode_peer};

fuzz_target!(|data: &[u8]| {
    let mut srv = RendezvousServer::new();
    let from = "203.0.113.1:4000".parse().expect("addr");
    let _ = srv.handle(Instant::now(), SystemTime::now(), from, data);
    let _ = srv.handle(Instant::now(), SystemTime::now(), from, data);
    assert_eq!(srv.registrations(), 0);
    let _ = decode_peer(data);
});
