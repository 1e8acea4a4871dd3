#![no_main]
//! Both directions of the DS-Lite B4 core: a delivered packet came from the AFTR and is one
//! IPv4 packet to the B4's address; a sent one goes to the AFTR unchanged.
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use p2p_foundation_tunnel::DSLITE_B4;
use p2p_foundation_tunnel::endpoint::{DsLiteConfig, DsLiteCore, Inbound, Ipv4Packet, Outbound};

fuzz_target!(|data: &[u8]| {
    let Some((&spoof, data)) = data.split_first() else {
        return;
    };
    let aftr = "2001:db8:64::1".parse().expect("address");
    let mut core = DsLiteCore::new(&DsLiteConfig::new(
        "2001:db8:64::2".parse().expect("address"),
        aftr,
    ))
    .expect("valid config");
    let from = if spoof & 1 == 0 {
        aftr
    } else {
        "2001:db8:64::3".parse().expect("address")
    };
    if let Inbound::Deliver(p) = core.inbound(from, data) {
        assert_eq!(from, aftr);
        assert_eq!(Ipv4Packet::parse(p, 1460).expect("parses").dst(), DSLITE_B4);
    }
    let mut out = Vec::new();
    if let Outbound::Send(to) = core.outbound(Instant::now(), data, &mut out) {
        assert_eq!((to, &out[..]), (aftr, data));
    }
});
