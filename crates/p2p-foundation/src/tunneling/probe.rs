//! Measuring the host's connectivity for the tunnel selector. Nothing here sends a packet
//! except the optional NAT64 lookup (one DNS query through the system resolver): routes are
//! read by connecting unbound UDP sockets, which only asks the kernel for a route and a
//! source address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use p2p_foundation_nat::MappingBehaviour;
use p2p_foundation_tunnel::{
    Connectivity, IPV4ONLY_ARPA, Nat64Prefix, NatKind, discover_nat64_prefixes, is_dslite_reserved,
    is_sixto4,
};

use super::TunnelingConfig;
use crate::NatStatus;

/// A destination in the global IPv6 unicast range (documentation prefix, RFC 3849), used
/// only to ask the kernel which route and source address a global destination gets.
const GLOBAL_V6_PROBE: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    9,
);
/// The IPv4 counterpart (TEST-NET-1, RFC 5737).
const GLOBAL_V4_PROBE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 9);

/// The source address the kernel would use towards `dest`, if it has a route.
pub(super) fn route_source(dest: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(dest).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// The host's IPv4 source address towards the Internet, if it has an IPv4 route there.
pub(super) fn local_v4() -> Option<Ipv4Addr> {
    match route_source(GLOBAL_V4_PROBE) {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    }
}

/// Whether `a` is a native global unicast address: inside 2000::/3, and not a Teredo
/// (2001::/32) or 6to4 (2002::/16) address, which are tunnels themselves.
pub(super) fn is_native_global(a: Ipv6Addr) -> bool {
    let s = a.segments();
    (s[0] & 0xe000) == 0x2000 && !(s[0] == 0x2001 && s[1] == 0) && !is_sixto4(a)
}

/// The RFC 4787 mapping behaviour as the selector's NAT kind.
fn nat_kind(status: Option<&NatStatus>) -> NatKind {
    let Some(status) = status else {
        return NatKind::Unknown;
    };
    if status.behind_nat == Some(false) {
        return NatKind::NoNat;
    }
    match status.mapping {
        Some(MappingBehaviour::EndpointIndependent) => NatKind::EndpointIndependent,
        Some(MappingBehaviour::AddressDependent) => NatKind::AddressDependent,
        Some(MappingBehaviour::AddressAndPortDependent | MappingBehaviour::EndpointDependent) => {
            NatKind::AddressAndPortDependent
        }
        Some(_) | None => NatKind::Unknown,
    }
}

/// What the host has, from route lookups, the NAT observers' status and the configuration.
/// `nat64` is the lookup's result ([`nat64_prefix`]); `overlay` whether the overlay can run.
pub(super) fn connectivity(
    config: &TunnelingConfig,
    nat: Option<&NatStatus>,
    nat64: Option<Nat64Prefix>,
    overlay: bool,
) -> Connectivity {
    let native_ipv6 =
        matches!(route_source(GLOBAL_V6_PROBE), Some(IpAddr::V6(a)) if is_native_global(a));
    let local_v4 = local_v4();
    let reflexive_v4 = nat
        .and_then(|s| s.reflexive)
        .and_then(|r| match r.ip().to_canonical() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        });
    Connectivity {
        native_ipv6,
        public_ipv4: reflexive_v4.or(local_v4),
        nat: nat_kind(nat),
        // Not probed: no node here sends or answers protocol 41 yet.
        proto41_reachable: false,
        configured_6in4: false,
        isatap_router: false,
        teredo_server: false,
        nat64_prefix: nat64,
        dslite_aftr: config.aftr.is_some() || local_v4.is_some_and(is_dslite_reserved),
        overlay,
    }
}

/// RFC 7050: the NAT64 prefix from the AAAA records of `ipv4only.arpa`, through the
/// system resolver, bounded by [`TunnelingConfig::nat64_timeout`]. `None` without DNS64.
pub(super) async fn nat64_prefix(config: &TunnelingConfig) -> Option<Nat64Prefix> {
    if !config.nat64_discovery {
        return None;
    }
    let lookup = tokio::net::lookup_host((IPV4ONLY_ARPA, 0));
    let addrs = match tokio::time::timeout(config.nat64_timeout, lookup).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "no NAT64 prefix: {IPV4ONLY_ARPA} did not resolve");
            return None;
        }
        Err(_) => {
            tracing::debug!("no NAT64 prefix: the {IPV4ONLY_ARPA} lookup timed out");
            return None;
        }
    };
    let v6: Vec<Ipv6Addr> = addrs
        .filter_map(|a| match a.ip() {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        })
        .collect();
    discover_nat64_prefixes(&v6).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_global_excludes_tunnels_and_local_ranges() {
        let yes = ["2001:470::1", "2a00:1450::1", "2001:db8::7", "3fff::1"];
        let no = [
            "2001:0:cb00:7105::1",
            "2002:c000:204::1",
            "fd00::1",
            "fe80::1",
            "::1",
        ];
        for a in yes {
            assert!(is_native_global(a.parse().unwrap()), "{a}");
        }
        for a in no {
            assert!(!is_native_global(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn the_loopback_route_source_is_loopback() {
        assert_eq!(
            route_source(SocketAddr::from(([127, 0, 0, 1], 9))),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }
}
