#![no_main]
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use p2p_foundation_identity::Keypair;
use p2p_foundation_tunnel::overlay::{Ipv6Packet, Outbound, OverlayConfig, OverlayCore};

// A packet from the host, and the datagram limit of the peer's connection (first two bytes).
fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let limit = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let (a, b) = (
        Keypair::from_secret_bytes([1; 32]).peer_id(),
        Keypair::from_secret_bytes([2; 32]).peer_id(),
    );
    let mut core = OverlayCore::new(a, &OverlayConfig::default()).expect("default config");
    core.add_peer(b);
    match core.outbound(Instant::now(), &data[2..], |_| Some(limit)) {
        Outbound::Send { peer, datagram } => {
            assert_eq!(peer, b);
            assert!(datagram.len() <= limit);
        }
        Outbound::Reply(icmp) => {
            Ipv6Packet::parse(&icmp, 1280).expect("our ICMPv6 error parses");
        }
        Outbound::Drop(_) => {}
    }
});
