#![no_main]
//! Both directions of the 6in4 core, configured and 6to4: whatever the bytes, a delivered
//! packet is one IPv6 packet to our address, and a sent one goes to the peer or to the
//! IPv4 address a 6to4 destination embeds.
use std::net::Ipv4Addr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use p2p_foundation_tunnel::endpoint::{Inbound, Outbound, SixInFourConfig, SixInFourCore};
use p2p_foundation_tunnel::overlay::Ipv6Packet;
use p2p_foundation_tunnel::sixto4_v4;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let config = if mode & 1 == 0 {
        SixInFourConfig::configured(
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 2),
            "2001:db8:41::1".parse().expect("address"),
        )
    } else {
        SixInFourConfig::sixto4(Ipv4Addr::new(11, 1, 1, 1), Some(Ipv4Addr::new(11, 9, 9, 9)))
    };
    let mut core = SixInFourCore::new(&config).expect("valid config");
    if let Inbound::Deliver(p) = core.inbound(data) {
        let p = Ipv6Packet::parse(p, 1480).expect("delivered packets parse");
        assert_eq!(p.dst(), config.local_v6);
    }
    let mut out = Vec::new();
    if let Outbound::Send(hop) = core.outbound(Instant::now(), data, &mut out) {
        assert_eq!(&out[20..], data);
        let embedded = Ipv6Packet::parse(data, 1480)
            .ok()
            .and_then(|p| sixto4_v4(p.dst()));
        assert!(
            hop == Ipv4Addr::new(198, 51, 100, 2)
                || hop == Ipv4Addr::new(11, 9, 9, 9)
                || Some(hop) == embedded
        );
    }
    assert_eq!(core.stats().packets_in + core.stats().dropped_in_total(), 1);
});
