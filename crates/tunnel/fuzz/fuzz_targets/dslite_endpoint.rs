#![no_main]
//! Both directions of both DS-Lite cores. The B4: a delivered packet came from the AFTR and
//! is one IPv4 packet to the B4's address; a sent one goes to the AFTR unchanged. The AFTR
//! end: a delivered packet came from the B4 and is one IPv4 packet from the B4's address; a
//! sent one goes to the B4 unchanged and is addressed to it.
use std::net::Ipv6Addr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use p2p_foundation_tunnel::DSLITE_B4;
use p2p_foundation_tunnel::endpoint::{DsLiteConfig, DsLiteCore, Inbound, Ipv4Packet, Outbound};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let b4: Ipv6Addr = "2001:db8:64::2".parse().expect("address");
    let aftr: Ipv6Addr = "2001:db8:64::1".parse().expect("address");
    let stranger: Ipv6Addr = "2001:db8:64::3".parse().expect("address");
    let aftr_end = flags & 2 != 0;
    let config = DsLiteConfig::new(b4, aftr);
    let (config, remote) = if aftr_end {
        (config.aftr_end(), b4)
    } else {
        (config, aftr)
    };
    let mut core = DsLiteCore::new(&config).expect("valid config");
    let from = if flags & 1 == 0 { remote } else { stranger };
    if let Inbound::Deliver(p) = core.inbound(from, data) {
        assert_eq!(from, remote);
        let p = Ipv4Packet::parse(p, 1460).expect("parses");
        if aftr_end {
            assert_eq!(p.src(), DSLITE_B4);
        } else {
            assert_eq!(p.dst(), DSLITE_B4);
        }
    }
    let mut out = Vec::new();
    if let Outbound::Send(to) = core.outbound(Instant::now(), data, &mut out) {
        assert_eq!((to, &out[..]), (remote, data));
        if aftr_end {
            assert_eq!(Ipv4Packet::parse(data, 1460).expect("parses").dst(), DSLITE_B4);
        }
    }
});
