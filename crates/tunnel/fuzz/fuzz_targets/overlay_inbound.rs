#![no_main]
use libfuzzer_sys::fuzz_target;
use p2p_foundation_identity::Keypair;
use p2p_foundation_tunnel::overlay::{
    Inbound, Ipv6Packet, OverlayConfig, OverlayCore, overlay_addr,
};

// A datagram from a peer: delivered only if it is one packet from that peer's overlay
// address to ours, within the MTU.
fuzz_target!(|data: &[u8]| {
    let (a, b) = (
        Keypair::from_secret_bytes([1; 32]).peer_id(),
        Keypair::from_secret_bytes([2; 32]).peer_id(),
    );
    let mut core = OverlayCore::new(b, &OverlayConfig::default()).expect("default config");
    core.add_peer(a);
    if let Inbound::Deliver(p) = core.inbound(&a, data) {
        let v = Ipv6Packet::parse(p, 1400).expect("a delivered packet parses");
        assert_eq!((v.src(), v.dst()), (overlay_addr(&a), overlay_addr(&b)));
    }
});
