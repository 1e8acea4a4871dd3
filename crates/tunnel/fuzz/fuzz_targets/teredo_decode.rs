#![no_main]
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use p2p_foundation_tunnel::{TEREDO_PORT, TeredoPacket, TeredoQualifier, ra_prefix};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = TeredoPacket::decode(data) {
        let _ = ra_prefix(p.ipv6);
    }
    // The qualifier must ignore or handle any datagram from the server without panicking.
    let server = Ipv4Addr::new(203, 0, 113, 5);
    let mut q = TeredoQualifier::new(server, 1);
    let now = Instant::now();
    q.start(now);
    q.handle_datagram(now, SocketAddrV4::new(server, TEREDO_PORT), data);
    while q.poll_output().is_some() {}
});
