//! Teredo qualification of our sans-IO client (driven by `p2p-tunnel-teredo-qualify`) against
//! miredo-server, an independent implementation, in network namespaces the test creates: once
//! directly and once behind an nftables masquerade NAT (the lab is in `miredo/mod.rs`).
//!
//! Needs root and miredo-server (`ci-setup.sh` installs it); skips loudly without them unless
//! `CI=true`, where it fails.

mod miredo;

use std::net::Ipv4Addr;

use miredo::{lab, prerequisites, qualify};
use p2p_foundation_tunnel::TeredoAddr;

fn check(line: &str, mapped: Ipv4Addr, same_port: bool) {
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts[0], "qualified", "{line}");
    let t =
        TeredoAddr::from_ipv6(parts[1].parse().expect("IPv6 address")).expect("a Teredo address");
    assert_eq!(t.server, Ipv4Addr::new(203, 0, 113, 5));
    assert_eq!(t.mapped_addr, mapped);
    assert_eq!(
        parts[3],
        format!("mapped={}:{}", t.mapped_addr, t.mapped_port)
    );
    if same_port {
        assert_eq!(parts[4], format!("local={}", t.mapped_port));
    }
    let took_us: u64 = parts[5]
        .strip_prefix("took_us=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no qualification time in {line}"));
    // The time is reported (the bench reads it); how long it is belongs to the bench.
    assert!(took_us > 0, "{line}");
}

#[test]
fn qualifies_against_miredo_server_directly() {
    if !prerequisites() {
        return;
    }
    let (mut lab, public) = lab("tq-dir", false);
    check(&qualify(&mut lab), public, true);
}

#[test]
fn qualifies_against_miredo_server_behind_nat() {
    if !prerequisites() {
        return;
    }
    let (mut lab, public) = lab("tq-nat", true);
    check(&qualify(&mut lab), public, false);
}
