//! Tunnel selection: a pure function from observed connectivity to a ranked list of mechanisms,
//! with a reason for every mechanism it rejects.

use std::net::Ipv4Addr;

use crate::addr::{Nat64Prefix, is_dslite_reserved, sixto4_eligible};

/// How the host's IPv4 traffic is translated on its way out, as a NAT report classifies it
/// (RFC 4787 mapping behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NatKind {
    /// No NAT: the local IPv4 address is the public one.
    NoNat,
    /// Endpoint-independent mapping ("full cone" / "restricted cone").
    EndpointIndependent,
    /// Address-dependent mapping.
    AddressDependent,
    /// Address-and-port-dependent mapping ("symmetric").
    AddressAndPortDependent,
    /// Not measured.
    Unknown,
}

/// What the host observed about its connectivity. All fields are measurements or configuration
/// supplied by the caller; [`select`] does no I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connectivity {
    /// A global IPv6 address and a working IPv6 default route.
    pub native_ipv6: bool,
    /// The host's public (external, mapped) IPv4 address, `None` if it has no IPv4 at all.
    pub public_ipv4: Option<Ipv4Addr>,
    /// The NAT in front of the host's IPv4, from a NAT report.
    pub nat: NatKind,
    /// IPv4 protocol 41 packets reach the host from outside (and leave it).
    pub proto41_reachable: bool,
    /// A 6in4 tunnel broker endpoint is configured.
    pub configured_6in4: bool,
    /// An ISATAP router was found (potential router list, RFC 5214 section 8.3).
    pub isatap_router: bool,
    /// A Teredo server is configured and answers over UDP.
    pub teredo_server: bool,
    /// The NAT64 prefix discovered via `ipv4only.arpa`, if any.
    pub nat64_prefix: Option<Nat64Prefix>,
    /// A DS-Lite AFTR is present (learnt from DHCPv6 option 64, or the host's IPv4 is in
    /// 192.0.0.0/29).
    pub dslite_aftr: bool,
    /// The P2P IPv6 overlay ([`crate::overlay`]) is enabled and the host can open a TUN
    /// device for it.
    pub overlay: bool,
}

/// A transition mechanism (or native IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Mechanism {
    /// Native IPv6.
    NativeIpv6,
    /// Configured IPv6-in-IPv4 tunnel (RFC 4213).
    SixIn4,
    /// Automatic 6to4 (RFC 3056).
    SixTo4,
    /// ISATAP (RFC 5214), intra-site.
    Isatap,
    /// Teredo over UDP through a NAT (RFC 4380).
    Teredo,
    /// The P2P IPv6 overlay ([`crate::overlay`]): key-derived addresses carried over the
    /// node's own (hole-punched or relayed) connections; reaches other overlay nodes only,
    /// but through any NAT.
    Overlay,
    /// DS-Lite (RFC 6333): IPv4 over IPv6 to an AFTR; reaches IPv4 peers.
    DsLite,
    /// NAT64 (RFC 6146 / RFC 6052): reaches IPv4 peers through synthesized IPv6 addresses.
    Nat64,
}

impl Mechanism {
    /// Whether the mechanism gives the host IPv6 connectivity (as opposed to reaching IPv4 peers
    /// from an IPv6 network).
    pub fn provides_ipv6(self) -> bool {
        !matches!(self, Mechanism::DsLite | Mechanism::Nat64)
    }
}

/// A usable mechanism and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Why it is usable.
    pub reason: &'static str,
}

/// A rejected mechanism and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Why it cannot be used.
    pub reason: &'static str,
}

/// The result of [`select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Usable mechanisms, best first.
    pub candidates: Vec<Candidate>,
    /// Every other mechanism, each with the reason it was rejected.
    pub rejected: Vec<Rejection>,
}

impl Selection {
    /// The best mechanism that gives IPv6 connectivity.
    pub fn best_ipv6(&self) -> Option<Mechanism> {
        self.candidates
            .iter()
            .map(|c| c.mechanism)
            .find(|m| m.provides_ipv6())
    }

    /// The best mechanism for reaching IPv4 peers from an IPv6-only network.
    pub fn best_ipv4_access(&self) -> Option<Mechanism> {
        self.candidates
            .iter()
            .map(|c| c.mechanism)
            .find(|m| !m.provides_ipv6())
    }
}

/// Ranks the mechanisms for `c`.
///
/// Order of preference: native IPv6 > configured 6in4 > 6to4 > ISATAP > Teredo > overlay,
/// then, for reaching IPv4 peers, DS-Lite > NAT64. Teredo is the last resort for the IPv6
/// Internet (RFC 4380 section 2.1: it is meant for hosts with no other way); the overlay comes
/// after it because it reaches overlay nodes only, though through any NAT (symmetric ones
/// included) and with no server of its own. DS-Lite carries any IPv4 protocol whereas NAT64
/// only reaches IPv4 peers by name or synthesized address.
pub fn select(c: &Connectivity) -> Selection {
    let mut candidates = Vec::new();
    let mut rejected = Vec::new();
    let mut push = |mechanism, r: Result<&'static str, &'static str>| match r {
        Ok(reason) => candidates.push(Candidate { mechanism, reason }),
        Err(reason) => rejected.push(Rejection { mechanism, reason }),
    };
    let has_v4 = c.public_ipv4.is_some();
    let dslite_v4 = c.public_ipv4.is_some_and(is_dslite_reserved);

    push(
        Mechanism::NativeIpv6,
        if c.native_ipv6 {
            Ok("global IPv6 address and route observed")
        } else {
            Err("no global IPv6 address or route observed")
        },
    );
    push(
        Mechanism::SixIn4,
        if !c.configured_6in4 {
            Err("no 6in4 tunnel broker endpoint configured")
        } else if !has_v4 {
            Err("6in4 needs IPv4 connectivity and the host has none")
        } else if !c.proto41_reachable {
            Err("IPv4 protocol 41 is blocked on this path")
        } else {
            Ok("configured 6in4 endpoint and protocol 41 passes")
        },
    );
    push(
        Mechanism::SixTo4,
        match c.public_ipv4 {
            None => Err("6to4 needs IPv4 connectivity and the host has none"),
            Some(_) if c.nat != NatKind::NoNat => {
                Err("6to4 needs a public IPv4 address on the host itself, not behind a NAT")
            }
            Some(a) if !sixto4_eligible(a) => {
                Err("the IPv4 address is not globally routable, so its 2002::/48 is unreachable")
            }
            Some(_) if !c.proto41_reachable => Err("IPv4 protocol 41 is blocked on this path"),
            Some(_) => Ok("public IPv4 address and protocol 41 passes"),
        },
    );
    push(
        Mechanism::Isatap,
        if !c.isatap_router {
            Err("no ISATAP router found on the site")
        } else if !has_v4 {
            Err("ISATAP needs IPv4 connectivity and the host has none")
        } else {
            Ok("ISATAP router found on the site's IPv4 network")
        },
    );
    push(
        Mechanism::Teredo,
        if !has_v4 {
            Err("Teredo needs IPv4 UDP connectivity and the host has none")
        } else if !c.teredo_server {
            Err("no Teredo server configured or answering")
        } else if c.nat == NatKind::AddressAndPortDependent {
            Err(
                "symmetric (address-and-port-dependent) NAT: Teredo qualification cannot keep a usable mapping",
            )
        } else {
            Ok("IPv4 UDP works and a Teredo server answers")
        },
    );
    push(
        Mechanism::Overlay,
        if c.overlay {
            Ok(
                "the P2P overlay is enabled: peers' key-derived addresses over this node's connections",
            )
        } else {
            Err("the P2P overlay is not enabled (or no TUN device can be opened)")
        },
    );
    push(
        Mechanism::DsLite,
        if !(c.dslite_aftr || dslite_v4) {
            Err("no DS-Lite AFTR present")
        } else if !c.native_ipv6 {
            Err("DS-Lite carries IPv4 over IPv6 and the host has no native IPv6")
        } else {
            Ok("AFTR present over native IPv6")
        },
    );
    push(
        Mechanism::Nat64,
        if c.nat64_prefix.is_none() {
            Err("no NAT64 prefix discovered from ipv4only.arpa")
        } else if !c.native_ipv6 {
            Err("NAT64 is reached over IPv6 and the host has no native IPv6")
        } else {
            Ok("NAT64 prefix discovered via DNS64")
        },
    );
    Selection {
        candidates,
        rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Mechanism::*;

    const PUBLIC: Ipv4Addr = Ipv4Addr::new(8, 8, 4, 4);

    fn base() -> Connectivity {
        Connectivity {
            native_ipv6: false,
            public_ipv4: None,
            nat: NatKind::Unknown,
            proto41_reachable: false,
            configured_6in4: false,
            isatap_router: false,
            teredo_server: false,
            nat64_prefix: None,
            dslite_aftr: false,
            overlay: false,
        }
    }

    fn ranked(c: &Connectivity) -> Vec<Mechanism> {
        select(c).candidates.iter().map(|c| c.mechanism).collect()
    }

    #[test]
    fn table() {
        let cases: Vec<(&str, Connectivity, Vec<Mechanism>)> = vec![
            ("nothing", base(), vec![]),
            (
                "native only",
                Connectivity {
                    native_ipv6: true,
                    ..base()
                },
                vec![NativeIpv6],
            ),
            (
                "public v4 + proto41 + everything",
                Connectivity {
                    native_ipv6: true,
                    public_ipv4: Some(PUBLIC),
                    nat: NatKind::NoNat,
                    proto41_reachable: true,
                    configured_6in4: true,
                    isatap_router: true,
                    teredo_server: true,
                    nat64_prefix: Some(Nat64Prefix::WELL_KNOWN),
                    dslite_aftr: true,
                    overlay: true,
                },
                vec![
                    NativeIpv6, SixIn4, SixTo4, Isatap, Teredo, Overlay, DsLite, Nat64,
                ],
            ),
            (
                "public v4, proto41 passes",
                Connectivity {
                    public_ipv4: Some(PUBLIC),
                    nat: NatKind::NoNat,
                    proto41_reachable: true,
                    teredo_server: true,
                    ..base()
                },
                vec![SixTo4, Teredo],
            ),
            (
                "public v4, proto41 blocked",
                Connectivity {
                    public_ipv4: Some(PUBLIC),
                    nat: NatKind::NoNat,
                    teredo_server: true,
                    configured_6in4: true,
                    ..base()
                },
                vec![Teredo],
            ),
            (
                "behind cone NAT",
                Connectivity {
                    public_ipv4: Some(PUBLIC),
                    nat: NatKind::EndpointIndependent,
                    proto41_reachable: true,
                    teredo_server: true,
                    ..base()
                },
                vec![Teredo],
            ),
            (
                "behind symmetric NAT",
                Connectivity {
                    public_ipv4: Some(PUBLIC),
                    nat: NatKind::AddressAndPortDependent,
                    teredo_server: true,
                    ..base()
                },
                vec![],
            ),
            (
                "behind symmetric NAT, overlay on",
                Connectivity {
                    public_ipv4: Some(PUBLIC),
                    nat: NatKind::AddressAndPortDependent,
                    teredo_server: true,
                    overlay: true,
                    ..base()
                },
                vec![Overlay],
            ),
            (
                "NAT forwarding proto41 to a configured 6in4",
                Connectivity {
                    public_ipv4: Some(PUBLIC),
                    nat: NatKind::AddressDependent,
                    proto41_reachable: true,
                    configured_6in4: true,
                    teredo_server: true,
                    ..base()
                },
                vec![SixIn4, Teredo],
            ),
            (
                "public but non-global v4 (documentation range)",
                Connectivity {
                    public_ipv4: Some(Ipv4Addr::new(203, 0, 113, 7)),
                    nat: NatKind::NoNat,
                    proto41_reachable: true,
                    ..base()
                },
                vec![],
            ),
            (
                "IPv6-only with NAT64",
                Connectivity {
                    native_ipv6: true,
                    nat64_prefix: Some(Nat64Prefix::WELL_KNOWN),
                    ..base()
                },
                vec![NativeIpv6, Nat64],
            ),
            (
                "DS-Lite via B4 address",
                Connectivity {
                    native_ipv6: true,
                    public_ipv4: Some(Ipv4Addr::new(192, 0, 0, 2)),
                    nat: NatKind::AddressDependent,
                    ..base()
                },
                vec![NativeIpv6, DsLite],
            ),
            (
                "NAT64 and AFTR without IPv6",
                Connectivity {
                    nat64_prefix: Some(Nat64Prefix::WELL_KNOWN),
                    dslite_aftr: true,
                    ..base()
                },
                vec![],
            ),
            (
                "ISATAP router on site",
                Connectivity {
                    public_ipv4: Some(Ipv4Addr::new(10, 1, 2, 3)),
                    nat: NatKind::EndpointIndependent,
                    isatap_router: true,
                    ..base()
                },
                vec![Isatap],
            ),
        ];
        for (name, c, want) in cases {
            let s = select(&c);
            assert_eq!(ranked(&c), want, "{name}");
            // Every mechanism is either a candidate or rejected with a reason, exactly once.
            assert_eq!(s.candidates.len() + s.rejected.len(), 8, "{name}");
            for r in &s.rejected {
                assert!(!r.reason.is_empty());
                assert!(!want.contains(&r.mechanism), "{name}");
            }
        }
    }

    #[test]
    fn reasons_and_best() {
        let s = select(&Connectivity {
            public_ipv4: Some(PUBLIC),
            nat: NatKind::EndpointIndependent,
            teredo_server: true,
            ..base()
        });
        assert_eq!(s.best_ipv6(), Some(Teredo));
        assert_eq!(s.best_ipv4_access(), None);
        let why = |m| {
            s.rejected
                .iter()
                .find(|r| r.mechanism == m)
                .map(|r| r.reason)
        };
        assert_eq!(
            why(SixTo4),
            Some("6to4 needs a public IPv4 address on the host itself, not behind a NAT")
        );
        assert_eq!(
            why(NativeIpv6),
            Some("no global IPv6 address or route observed")
        );
        assert_eq!(
            why(Nat64),
            Some("no NAT64 prefix discovered from ipv4only.arpa")
        );
        let s = select(&Connectivity {
            public_ipv4: Some(PUBLIC),
            nat: NatKind::AddressAndPortDependent,
            teredo_server: true,
            ..base()
        });
        assert!(
            s.rejected
                .iter()
                .any(|r| r.mechanism == Teredo && r.reason.contains("symmetric"))
        );
        let s = select(&Connectivity {
            native_ipv6: true,
            dslite_aftr: true,
            ..base()
        });
        assert_eq!(s.best_ipv6(), Some(NativeIpv6));
        assert_eq!(s.best_ipv4_access(), Some(DsLite));
    }
}
