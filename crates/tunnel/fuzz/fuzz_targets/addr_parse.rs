#![no_main]
use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use p2p_foundation_tunnel::{TeredoAddr, discover_nat64_prefixes, isatap_v4, sixto4_v4};

fuzz_target!(|data: &[u8]| {
    let recs: Vec<Ipv6Addr> = data
        .chunks_exact(16)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            Ipv6Addr::from(a)
        })
        .collect();
    for &a in &recs {
        if let Ok(t) = TeredoAddr::from_ipv6(a) {
            assert_eq!(t.to_ipv6(), a);
        }
        let _ = (isatap_v4(a), sixto4_v4(a));
    }
    for p in discover_nat64_prefixes(&recs) {
        assert!(p.contains(p.embed(std::net::Ipv4Addr::new(192, 0, 0, 170))));
    }
});
