#![no_main]
use libfuzzer_sys::fuzz_target;
use p2p_foundation_tunnel::endpoint::Ipv4Packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Ipv4Packet::parse(data, 1500) {
        assert_eq!(p.len(), data.len());
        assert!(p.header_len() <= p.len() && p.len() <= 1500);
        let _ = (
            p.src(),
            p.dst(),
            p.protocol(),
            p.is_icmp_error_or_fragment(),
        );
    }
});
