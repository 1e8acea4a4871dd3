//! Automatic IPv6 tunnel selection in the node (opt-in, [`NodeBuilder::tunneling`]).
//!
//! The node measures its connectivity (`tunneling/probe.rs`): a global IPv6 source address and route,
//! its IPv4 address and, from its NAT observers, its public address and mapping behaviour,
//! a configured or implied DS-Lite AFTR, a NAT64 prefix (RFC 7050, through the system
//! resolver) and whether it can open a TUN device for the P2P overlay. The tunnel crate's
//! pure [`select`](p2p_foundation_tunnel::select) ranks every mechanism from that; the
//! node then takes the best one it can run, starts it, and reports the choice, the reason
//! and every rejected alternative as a [`PeerEvent::TunnelSelected`] and through
//! [`P2PNode::tunnel_status`]. It evaluates again on every network change
//! ([`PeerEvent::LocalAddressesChanged`]) and NAT change ([`PeerEvent::NatChanged`]).
//!
//! What runs today: native IPv6 (nothing to start), the P2P overlay (a TUN device,
//! [`crate::overlay`]) and, on an IPv6-only host with a configured AFTR
//! ([`TunnelingConfig::aftr`]), a DS-Lite B4 (`tunneling/dslite.rs`: the tunnel crate's
//! TUN endpoint with the host's IPv4 default route, so IPv4 peers are reached through the
//! AFTR). Mechanisms the ranking finds usable but this node cannot run yet (6in4, 6to4,
//! ISATAP, Teredo, NAT64 synthesis), and DS-Lite on a host with IPv4 of its own, are
//! reported as rejected with the reason, never silently chosen.
//!
//! The transport follows the choice (PRD F6, F9): with an IPv6 path, dials give a peer's
//! IPv6 addresses [`TunnelingConfig::ipv6_head_start`] before its IPv4 ones (RFC 8305);
//! without one, every address is dialled at once, so IPv4 is never held back by IPv6
//! attempts that cannot work.
//!
//! [`NodeBuilder::tunneling`]: crate::NodeBuilder::tunneling
//! [`PeerEvent::TunnelSelected`]: crate::PeerEvent::TunnelSelected
//! [`PeerEvent::LocalAddressesChanged`]: crate::PeerEvent::LocalAddressesChanged
//! [`PeerEvent::NatChanged`]: crate::PeerEvent::NatChanged
//! [`P2PNode::tunnel_status`]: crate::P2PNode::tunnel_status

mod choice;
mod dslite;
mod probe;
mod service;

use std::net::Ipv6Addr;
use std::time::Duration;

pub use choice::TunnelStatus;
pub(crate) use service::Tunneling;

use crate::OverlayConfig;

/// How the node picks an IPv6 path ([`crate::NodeBuilder::tunneling`]). Off by default:
/// [`TunnelingConfig::auto`] turns it on.
///
/// ```
/// use p2p_foundation::TunnelingConfig;
///
/// let config = TunnelingConfig::auto().aftr("2001:db8::1".parse().unwrap());
/// assert!(config.enabled);
/// assert!(config.overlay.is_some(), "the overlay is the fallback behind NATs");
/// assert!(!TunnelingConfig::default().enabled);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TunnelingConfig {
    /// Measure, select and re-evaluate on network changes. Default `false`.
    pub enabled: bool,
    /// The P2P overlay to start when it is the best IPv6 path (behind a NAT with no native
    /// IPv6). Default `Some(OverlayConfig::default())` in [`TunnelingConfig::auto`]; `None`
    /// never starts it. An overlay once started stays up when a better path appears
    /// (applications may hold sockets on its address); the choice and the transport's
    /// preference move on.
    pub overlay: Option<OverlayConfig>,
    /// A DS-Lite AFTR learnt out of band (DHCPv6 option 64 is not read). On a host with
    /// native IPv6 and no IPv4 route, the node then starts a DS-Lite B4 towards it (a TUN
    /// device with 192.0.0.2/29 and the IPv4 default route; needs `CAP_NET_ADMIN` and
    /// `CAP_NET_RAW`). A host whose IPv4 address is in `192.0.0.0/29` has one implied and
    /// is used as it is.
    pub aftr: Option<Ipv6Addr>,
    /// Look up `ipv4only.arpa` through the system resolver for a NAT64 prefix (RFC 7050).
    /// Default `true`.
    pub nat64_discovery: bool,
    /// Longest the NAT64 lookup may take. Default 2 s.
    pub nat64_timeout: Duration,
    /// How long dials give IPv6 addresses before IPv4 ones while the node has an IPv6 path
    /// (RFC 8305 happy eyeballs). Default 50 ms.
    pub ipv6_head_start: Duration,
}

impl Default for TunnelingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            overlay: None,
            aftr: None,
            nat64_discovery: true,
            nat64_timeout: Duration::from_secs(2),
            ipv6_head_start: Duration::from_millis(50),
        }
    }
}

impl TunnelingConfig {
    /// Selection on, with the P2P overlay as the path behind NATs.
    pub fn auto() -> Self {
        Self {
            enabled: true,
            overlay: Some(OverlayConfig::default()),
            ..Self::default()
        }
    }

    /// Selection off (the default): the node uses whatever IPv6 the host has and starts no
    /// tunnel.
    pub fn off() -> Self {
        Self::default()
    }

    /// The overlay to start when it is chosen (`None`: never).
    pub fn overlay(mut self, overlay: Option<OverlayConfig>) -> Self {
        self.overlay = overlay;
        self
    }

    /// A DS-Lite AFTR.
    pub fn aftr(mut self, aftr: Ipv6Addr) -> Self {
        self.aftr = Some(aftr);
        self
    }

    /// Whether to look for a NAT64 prefix.
    pub fn nat64_discovery(mut self, on: bool) -> Self {
        self.nat64_discovery = on;
        self
    }
}
