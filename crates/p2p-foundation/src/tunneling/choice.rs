//! From the tunnel crate's ranking to the node's choice: the best mechanism this node can
//! run, each other one rejected with its reason.

use p2p_foundation_tunnel::{Candidate, Connectivity, Mechanism, Rejection, Selection};

/// The node's tunnel choice and the evidence behind it ([`crate::P2PNode::tunnel_status`],
/// [`crate::PeerEvent::TunnelSelected`]).
///
/// ```
/// use p2p_foundation::TunnelStatus;
/// use p2p_foundation::tunnel::Mechanism;
///
/// fn describe(status: &TunnelStatus) -> String {
///     match &status.ipv6 {
///         Some(c) if c.mechanism == Mechanism::NativeIpv6 => "native IPv6".into(),
///         Some(c) => format!("IPv6 through {:?}: {}", c.mechanism, c.reason),
///         None => "no IPv6 path".into(),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelStatus {
    /// The mechanism giving this node IPv6, and why; `None` when none works here.
    pub ipv6: Option<Candidate>,
    /// The mechanism for reaching IPv4 peers from an IPv6-only network (DS-Lite, NAT64),
    /// when one is chosen.
    pub ipv4_access: Option<Candidate>,
    /// Every other mechanism, each with the reason it was not chosen.
    pub rejected: Vec<Rejection>,
    /// What was measured.
    pub connectivity: Connectivity,
    /// The head start dials now give a peer's IPv6 addresses over its IPv4 ones: the
    /// configured [`crate::TunnelingConfig::ipv6_head_start`] with native IPv6, zero without
    /// (every address at once, so IPv4 never waits on IPv6 attempts that cannot work).
    pub ipv6_head_start: std::time::Duration,
    /// The TUN device this node started to carry IPv4 (the DS-Lite B4's, e.g.
    /// `p2pdslite0`, which holds the host's IPv4 default route), once it runs.
    pub ipv4_device: Option<String>,
}

impl TunnelStatus {
    /// Whether `other` chose differently (the measurements alone may differ).
    pub(crate) fn same_choice(&self, other: &TunnelStatus) -> bool {
        self.ipv6 == other.ipv6
            && self.ipv4_access == other.ipv4_access
            && self.rejected == other.rejected
    }
}

/// Whether this node runs `m`, started by itself or used as the host has it: `Ok`, or the
/// reason it does not. [`decide`] asks it of every usable mechanism.
pub(crate) type CanRun<'a> = &'a dyn Fn(Mechanism) -> Result<(), &'static str>;

/// What the node runs whatever the host: native IPv6 as it is, and the overlay.
pub(crate) fn runs_here(m: Mechanism) -> Result<(), &'static str> {
    match m {
        Mechanism::NativeIpv6 | Mechanism::Overlay => Ok(()),
        other => Err(cannot_run(other)),
    }
}

/// Why a usable mechanism is not run.
fn cannot_run(m: Mechanism) -> &'static str {
    match m {
        Mechanism::SixIn4 => "usable here, but this node does not run a 6in4 endpoint yet",
        Mechanism::SixTo4 => "usable here, but this node does not run a 6to4 endpoint yet",
        Mechanism::Isatap => "usable here, but this node does not run an ISATAP endpoint yet",
        Mechanism::Teredo => "usable here, but this node does not run a Teredo client yet",
        Mechanism::DsLite => "usable here, but this node does not run a DS-Lite B4 yet",
        Mechanism::Nat64 => "usable here, but this node does not synthesize NAT64 addresses yet",
        _ => "usable here, but this node cannot run it",
    }
}

/// The node's choice from `selection` (best first) and the measurements behind it.
pub(crate) fn decide(
    selection: Selection,
    connectivity: Connectivity,
    can_run: CanRun<'_>,
) -> TunnelStatus {
    let mut ipv6 = None;
    let mut ipv4_access = None;
    let mut rejected = selection.rejected;
    for c in selection.candidates {
        let slot = if c.mechanism.provides_ipv6() {
            &mut ipv6
        } else {
            &mut ipv4_access
        };
        let reason = if let Err(why) = can_run(c.mechanism) {
            why
        } else if slot.is_some() {
            "usable, but ranked below the chosen mechanism"
        } else {
            *slot = Some(c);
            continue;
        };
        rejected.push(Rejection {
            mechanism: c.mechanism,
            reason,
        });
    }
    rejected.sort_by_key(|r| r.mechanism);
    TunnelStatus {
        ipv6,
        ipv4_access,
        rejected,
        connectivity,
        ipv6_head_start: std::time::Duration::ZERO,
        ipv4_device: None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use p2p_foundation_tunnel::{NatKind, select};

    use super::*;

    fn behind_nat(native_ipv6: bool, overlay: bool) -> Connectivity {
        Connectivity {
            native_ipv6,
            public_ipv4: Some(Ipv4Addr::new(8, 8, 4, 4)),
            nat: NatKind::EndpointIndependent,
            proto41_reachable: false,
            configured_6in4: false,
            isatap_router: false,
            teredo_server: true,
            nat64_prefix: None,
            dslite_aftr: true,
            overlay,
        }
    }

    fn why(s: &TunnelStatus, m: Mechanism) -> &'static str {
        s.rejected
            .iter()
            .find(|r| r.mechanism == m)
            .map_or("not rejected", |r| r.reason)
    }

    #[test]
    fn a_usable_mechanism_the_node_cannot_run_is_rejected_saying_so() {
        let c = behind_nat(false, true);
        let s = decide(select(&c), c, &runs_here);
        assert_eq!(
            s.ipv6.as_ref().map(|c| c.mechanism),
            Some(Mechanism::Overlay)
        );
        assert!(why(&s, Mechanism::Teredo).contains("does not run a Teredo client"));
        // DS-Lite needs native IPv6: rejected by the ranking itself.
        assert_eq!(s.ipv4_access, None);
        assert!(why(&s, Mechanism::DsLite).contains("no native IPv6"));
        assert_eq!(s.rejected.len(), 7, "every other mechanism, once: {s:?}");
    }

    #[test]
    fn native_ipv6_wins_and_the_overlay_is_ranked_below_it() {
        let c = behind_nat(true, true);
        let s = decide(select(&c), c, &runs_here);
        assert_eq!(
            s.ipv6.as_ref().map(|c| c.mechanism),
            Some(Mechanism::NativeIpv6)
        );
        assert_eq!(
            why(&s, Mechanism::Overlay),
            "usable, but ranked below the chosen mechanism"
        );
        assert!(why(&s, Mechanism::DsLite).contains("does not run a DS-Lite B4"));
        assert!(s.same_choice(&s.clone()));
    }

    #[test]
    fn nothing_usable_chooses_nothing() {
        let mut c = behind_nat(false, false);
        c.teredo_server = false;
        c.dslite_aftr = false;
        let s = decide(select(&c), c, &runs_here);
        assert_eq!((s.ipv6, s.ipv4_access), (None, None));
        assert_eq!(s.rejected.len(), 8);
    }
}
