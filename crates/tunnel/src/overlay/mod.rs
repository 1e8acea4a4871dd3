//! The P2P IPv6 overlay, sans-IO: every node has an IPv6 address derived from its PeerId,
//! and IPv6 packets between such addresses travel as QUIC datagrams over the connection
//! the two nodes already have.
//!
//! # Addressing
//!
//! All overlay addresses are in one unique local /48 (RFC 4193), [`OVERLAY_PREFIX`] =
//! `fdb0:1139:e4a8::/48`: `fd` and a 40-bit global ID, the first five bytes of
//! `SHA-256("p2p-foundation overlay")` (b0 11 39 e4 a8), as RFC 4193 section 3.2 asks for a
//! pseudo-random global ID. A node's address ([`overlay_addr`]) is that prefix followed by
//! the first 80 bits of `SHA-256("p2pf/overlay/1" ‖ PeerId)` (the 32-byte Ed25519 public
//! key).
//!
//! **Collisions.** 80 bits per node: among `n` nodes the chance that any two share an
//! address is about `n² / 2⁸¹` — 4·10⁻¹³ for a million nodes, 4·10⁻⁵ for 10¹⁰. Producing a
//! key whose address equals a *given* node's is a second preimage on 80 bits of SHA-256
//! (about 2⁸⁰ key generations). And a collision still cannot make one peer receive
//! another's traffic, nor pass as it:
//!
//! - Packets go out only to a peer found in the route table, which maps an address to the
//!   PeerIds of *connected* peers whose address it is; an address two connected peers share
//!   is routed to neither (dropped, counted as [`DropReason::Collision`]).
//! - A packet received is accepted only if its inner source is the overlay address of the
//!   PeerId the connection authenticated (TLS 1.3 with the peer's Ed25519 key) and its
//!   destination is this node's own address. So a peer can only ever speak as the address
//!   its own key derives; under a collision the worst case is two peers that can both speak
//!   as one address, and while both are connected to a node, that node talks to neither.
//!
//! # Packets
//!
//! [`OverlayCore::outbound`] takes a packet the host wrote to the TUN device and decides:
//! send it to a peer as one datagram ([`Outbound::Send`]), answer the host with an ICMPv6
//! error ([`Outbound::Reply`]), or drop it ([`Outbound::Drop`]). [`OverlayCore::inbound`]
//! takes a datagram a peer sent and decides: write it to the TUN device, or drop it. Every
//! drop is counted by reason ([`OverlayStats`]).
//!
//! # Datagrams and MTU
//!
//! A datagram is one tag byte, [`DATAGRAM_TAG`] (0x06, "overlay IPv6, version 1"), then
//! one whole IPv6 packet; other tags are dropped and counted ([`DropReason::BadTag`]), so
//! another use of QUIC datagrams can take another tag. The overlay never fragments: the
//! TUN device's MTU ([`OverlayConfig::mtu`], default [`DEFAULT_MTU`] = 1,400) is chosen so
//! a packet of that size fits one datagram on a path whose QUIC PMTU discovery reached
//! quinn's default ceiling (1,452 bytes of UDP payload, which fits a 1,500-byte Ethernet
//! path under IPv6): the datagram limit is then 1,452 − 1 (short header) − CID length
//! − 4 (packet number) − 16 (AEAD tag) − 9 (frame header bound) = 1,414 with 8-byte CIDs,
//! 1,402 with the largest (20-byte) ones, one byte of which is the tag. When a packet is
//! larger than what the peer's connection carries now
//! (`max_datagram_size`, which starts at 1,162 before PMTU discovery and may fall on a
//! narrower path), the host gets an ICMPv6 Packet Too Big (RFC 4443 section 3.2) with the
//! MTU that fits, from the packet's destination address, and lowers its path MTU for that
//! destination (RFC 8201). A Packet Too Big never says less than 1,280 (RFC 8201 section
//! 4): while a path carries less than 1,281 bytes (at the start of a connection, before
//! PMTU discovery), packets above what fits are dropped and counted
//! ([`DropReason::TooBig`]). ICMPv6 errors to the host are rate limited (RFC 4443 section
//! 2.4 f) and never sent about an ICMPv6 error.

pub mod ipv6;
#[cfg(feature = "tun")]
mod tun;

#[cfg(feature = "tun")]
pub use tun::{OverlayLink, OverlayTun};

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::time::Instant;

use p2p_foundation_identity::PeerId;
use sha2::{Digest, Sha256};

pub use ipv6::{Ipv6Error, Ipv6Packet};

/// The overlay's unique local prefix, `fdb0:1139:e4a8::/48` (see the module docs).
pub const OVERLAY_PREFIX: Ipv6Addr = Ipv6Addr::new(0xfdb0, 0x1139, 0xe4a8, 0, 0, 0, 0, 0);
/// Length of [`OVERLAY_PREFIX`] in bits.
pub const OVERLAY_PREFIX_LEN: u8 = 48;
/// The first byte of every overlay datagram: an IPv6 packet follows (version 1).
pub const DATAGRAM_TAG: u8 = 0x06;
/// The default TUN MTU (see the module docs for why it fits one QUIC datagram).
pub const DEFAULT_MTU: u16 = 1400;
pub use crate::icmp_limit::ICMP_ERRORS_PER_SEC;
/// Most peers in the route table (connected peers; a node has at most this many QUIC
/// connections with the overlay on).
pub const MAX_ROUTES: usize = 65_536;

/// Domain tag hashed before the PeerId.
const ADDR_DOMAIN: &[u8] = b"p2pf/overlay/1";

/// The overlay address of `peer`: [`OVERLAY_PREFIX`] followed by 80 bits of
/// `SHA-256("p2pf/overlay/1" ‖ peer)`.
///
/// ```
/// use p2p_foundation_identity::Keypair;
/// use p2p_foundation_tunnel::overlay::{is_overlay, overlay_addr};
/// let a = overlay_addr(&Keypair::generate().peer_id());
/// assert!(is_overlay(a));
/// assert_eq!(a.segments()[..3], [0xfdb0, 0x1139, 0xe4a8]);
/// ```
pub fn overlay_addr(peer: &PeerId) -> Ipv6Addr {
    let digest = Sha256::new()
        .chain_update(ADDR_DOMAIN)
        .chain_update(peer.as_bytes())
        .finalize();
    let mut a = OVERLAY_PREFIX.octets();
    a[6..].copy_from_slice(&digest[..10]);
    Ipv6Addr::from(a)
}

/// Whether `addr` is inside [`OVERLAY_PREFIX`].
pub fn is_overlay(addr: Ipv6Addr) -> bool {
    addr.octets()[..6] == OVERLAY_PREFIX.octets()[..6]
}

/// Settings of the overlay core and its TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OverlayConfig {
    /// MTU of the TUN device, and the largest packet carried (default [`DEFAULT_MTU`]; at
    /// least 1,280, the IPv6 minimum).
    pub mtu: u16,
    /// Name of the TUN device; `%d` is replaced by the kernel with the first free number
    /// (default `p2pf%d`).
    pub name: String,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        Self {
            mtu: DEFAULT_MTU,
            name: "p2pf%d".into(),
        }
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Not one well-formed IPv6 packet within the MTU (from the host or a peer).
    Malformed,
    /// From a peer: the inner source is not that peer's overlay address.
    SpoofedSource,
    /// From a peer: the destination is not this node's overlay address.
    WrongDestination,
    /// From a peer: the datagram's tag is not [`DATAGRAM_TAG`].
    BadTag,
    /// From the host: the source is not this node's overlay address (a link-local or
    /// another address of the host).
    NotLocalSource,
    /// From the host: the destination is outside the overlay prefix (multicast listener
    /// reports, router solicitations and the like the kernel sends on every interface).
    NotOverlay,
    /// From the host: no connected peer has the destination address.
    NoRoute,
    /// From the host: two connected peers have the destination address.
    Collision,
    /// From the host: larger than the peer's connection carries now, and a Packet Too Big
    /// could not help (see the module docs).
    TooBig,
    /// The connection refused the datagram (closed, datagrams disabled, TCP path).
    LinkError,
}

impl DropReason {
    /// Every reason, in the order of [`OverlayStats::dropped`].
    pub const ALL: [DropReason; 10] = [
        DropReason::Malformed,
        DropReason::SpoofedSource,
        DropReason::WrongDestination,
        DropReason::BadTag,
        DropReason::NotLocalSource,
        DropReason::NotOverlay,
        DropReason::NoRoute,
        DropReason::Collision,
        DropReason::TooBig,
        DropReason::LinkError,
    ];

    /// A short snake-case name (metric labels, logs).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::WrongDestination => "wrong_destination",
            DropReason::BadTag => "bad_tag",
            DropReason::NotLocalSource => "not_local_source",
            DropReason::NotOverlay => "not_overlay",
            DropReason::NoRoute => "no_route",
            DropReason::Collision => "collision",
            DropReason::TooBig => "too_big",
            DropReason::LinkError => "link_error",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// The overlay's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OverlayStats {
    /// Packets from peers written to the TUN device.
    pub packets_in: u64,
    /// Their bytes (IPv6 packets, without the tag).
    pub bytes_in: u64,
    /// Packets from the host sent to peers.
    pub packets_out: u64,
    /// Their bytes (IPv6 packets, without the tag).
    pub bytes_out: u64,
    /// ICMPv6 Packet Too Big messages sent to the host.
    pub packet_too_big: u64,
    /// ICMPv6 Destination Unreachable messages sent to the host.
    pub unreachable: u64,
    /// ICMPv6 errors not sent because of the rate limit.
    pub icmp_rate_limited: u64,
    /// Packets dropped, indexed like [`DropReason::ALL`] (see [`OverlayStats::dropped_for`]).
    pub dropped: [u64; 10],
}

impl OverlayStats {
    /// Packets dropped for `reason`.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Packets dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// What to do with a packet from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Send `datagram` (tag and packet) to `peer` over its connection.
    Send {
        /// The peer whose overlay address is the destination.
        peer: PeerId,
        /// The framed datagram.
        datagram: Vec<u8>,
    },
    /// Write this ICMPv6 error back to the TUN device (to the host).
    Reply(Vec<u8>),
    /// Drop the packet (counted).
    Drop(DropReason),
}

/// What to do with a datagram from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// Write this IPv6 packet to the TUN device.
    Deliver(&'a [u8]),
    /// Drop it (counted).
    Drop(DropReason),
}

/// Peers sharing one overlay address (almost always exactly one).
#[derive(Debug, Clone)]
struct Route {
    peers: Vec<PeerId>,
}

/// The overlay's state machine: the route table, the checks and the counters. Owns no
/// socket, device or clock.
#[derive(Debug)]
pub struct OverlayCore {
    local: PeerId,
    addr: Ipv6Addr,
    mtu: usize,
    routes: HashMap<Ipv6Addr, Route>,
    peers: HashMap<PeerId, Ipv6Addr>,
    stats: OverlayStats,
    /// ICMPv6 errors sent to the host.
    icmp: crate::icmp_limit::IcmpLimiter,
}

/// A configuration the overlay cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayConfigError {
    /// The MTU is below the IPv6 minimum.
    #[error(
        "overlay MTU {0} is below 1280, the IPv6 minimum link MTU (RFC 8200 section 5); Linux disables IPv6 on such a device"
    )]
    MtuTooSmall(u16),
}

impl OverlayCore {
    /// A core for the node `local`, carrying packets of at most `config.mtu` bytes.
    pub fn new(local: PeerId, config: &OverlayConfig) -> Result<Self, OverlayConfigError> {
        if usize::from(config.mtu) < ipv6::IPV6_MIN_MTU {
            return Err(OverlayConfigError::MtuTooSmall(config.mtu));
        }
        Ok(Self {
            local,
            addr: overlay_addr(&local),
            mtu: usize::from(config.mtu),
            routes: HashMap::new(),
            peers: HashMap::new(),
            stats: OverlayStats::default(),
            icmp: crate::icmp_limit::IcmpLimiter::new(),
        })
    }

    /// This node's overlay address.
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    /// The largest packet carried.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> OverlayStats {
        self.stats
    }

    /// Makes `peer` reachable at its overlay address (call when a connection to it is up).
    /// Returns its address. Past [`MAX_ROUTES`] peers nothing is added (and `None` is
    /// returned).
    pub fn add_peer(&mut self, peer: PeerId) -> Option<Ipv6Addr> {
        if peer == self.local {
            return None;
        }
        if let Some(a) = self.peers.get(&peer) {
            return Some(*a);
        }
        if self.peers.len() >= MAX_ROUTES {
            return None;
        }
        let addr = overlay_addr(&peer);
        self.peers.insert(peer, addr);
        self.routes
            .entry(addr)
            .or_insert_with(|| Route { peers: Vec::new() })
            .peers
            .push(peer);
        Some(addr)
    }

    /// Forgets `peer` (call when its last connection closed).
    pub fn remove_peer(&mut self, peer: &PeerId) {
        if let Some(addr) = self.peers.remove(peer) {
            if let Some(route) = self.routes.get_mut(&addr) {
                route.peers.retain(|p| p != peer);
                if route.peers.is_empty() {
                    self.routes.remove(&addr);
                }
            }
        }
    }

    /// The connected peer whose overlay address is `dst`: `Err(Collision)` if two are,
    /// `Err(NoRoute)` if none is.
    pub fn route(&self, dst: Ipv6Addr) -> Result<PeerId, DropReason> {
        match self.routes.get(&dst).map(|r| r.peers.as_slice()) {
            Some([one]) => Ok(*one),
            Some([]) | None => Err(DropReason::NoRoute),
            Some(_) => Err(DropReason::Collision),
        }
    }

    fn drop(&mut self, reason: DropReason) -> DropReason {
        self.stats.dropped[reason.index()] += 1;
        reason
    }

    /// Counts a datagram of `datagram_len` bytes that the connection refused after
    /// [`Outbound::Send`]: a drop, no longer a packet out.
    pub fn count_link_error(&mut self, datagram_len: usize) {
        self.stats.packets_out = self.stats.packets_out.saturating_sub(1);
        self.stats.bytes_out = self
            .stats
            .bytes_out
            .saturating_sub(datagram_len.saturating_sub(1) as u64);
        self.drop(DropReason::LinkError);
    }

    fn icmp_allowed(&mut self, now: Instant) -> bool {
        let allowed = self.icmp.allow(now);
        if !allowed {
            self.stats.icmp_rate_limited += 1;
        }
        allowed
    }

    /// Decides what happens to `packet`, which the host wrote to the TUN device, at `now`.
    /// `max_datagram(peer)` is the largest datagram the connection to `peer` carries now
    /// (`None`: no datagrams on it).
    pub fn outbound(
        &mut self,
        now: Instant,
        packet: &[u8],
        max_datagram: impl FnOnce(&PeerId) -> Option<usize>,
    ) -> Outbound {
        let p = match Ipv6Packet::parse(packet, self.mtu) {
            Ok(p) => p,
            Err(_) => return Outbound::Drop(self.drop(DropReason::Malformed)),
        };
        let dst = p.dst();
        if !is_overlay(dst) {
            return Outbound::Drop(self.drop(DropReason::NotOverlay));
        }
        if p.src() != self.addr {
            return Outbound::Drop(self.drop(DropReason::NotLocalSource));
        }
        let peer = match self.route(dst) {
            Ok(peer) => peer,
            Err(DropReason::NoRoute) if !p.is_icmpv6_error() && self.icmp_allowed(now) => {
                self.drop(DropReason::NoRoute);
                self.stats.unreachable += 1;
                return Outbound::Reply(ipv6::address_unreachable(self.addr, &p));
            }
            Err(reason) => return Outbound::Drop(self.drop(reason)),
        };
        let Some(limit) = max_datagram(&peer) else {
            return Outbound::Drop(self.drop(DropReason::LinkError));
        };
        let fits = limit.saturating_sub(1);
        if p.len() > fits {
            if p.len() > ipv6::IPV6_MIN_MTU && !p.is_icmpv6_error() && self.icmp_allowed(now) {
                self.drop(DropReason::TooBig);
                self.stats.packet_too_big += 1;
                return Outbound::Reply(ipv6::packet_too_big(dst, &p, fits));
            }
            return Outbound::Drop(self.drop(DropReason::TooBig));
        }
        let mut datagram = Vec::with_capacity(1 + p.len());
        datagram.push(DATAGRAM_TAG);
        datagram.extend_from_slice(p.bytes());
        self.stats.packets_out += 1;
        self.stats.bytes_out += p.len() as u64;
        Outbound::Send { peer, datagram }
    }

    /// Decides what happens to `datagram`, which `from` (the PeerId its connection
    /// authenticated) sent: delivered only if it is one IPv6 packet within the MTU, from
    /// `from`'s overlay address, to this node's.
    pub fn inbound<'a>(&mut self, from: &PeerId, datagram: &'a [u8]) -> Inbound<'a> {
        let Some((&tag, packet)) = datagram.split_first() else {
            return Inbound::Drop(self.drop(DropReason::BadTag));
        };
        if tag != DATAGRAM_TAG {
            return Inbound::Drop(self.drop(DropReason::BadTag));
        }
        let p = match Ipv6Packet::parse(packet, self.mtu) {
            Ok(p) => p,
            Err(_) => return Inbound::Drop(self.drop(DropReason::Malformed)),
        };
        let expected = match self.peers.get(from) {
            Some(a) => *a,
            None => overlay_addr(from),
        };
        if p.src() != expected {
            return Inbound::Drop(self.drop(DropReason::SpoofedSource));
        }
        if p.dst() != self.addr {
            return Inbound::Drop(self.drop(DropReason::WrongDestination));
        }
        self.stats.packets_in += 1;
        self.stats.bytes_in += p.len() as u64;
        Inbound::Deliver(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::ipv6::tests::packet;
    use super::*;
    use p2p_foundation_identity::Keypair;
    use proptest::prelude::*;

    fn peer() -> PeerId {
        Keypair::generate().peer_id()
    }

    fn core(local: PeerId) -> OverlayCore {
        OverlayCore::new(local, &OverlayConfig::default()).unwrap()
    }

    #[test]
    fn addresses_are_in_the_prefix_and_stable() {
        let p = peer();
        let a = overlay_addr(&p);
        assert!(is_overlay(a));
        assert_eq!(a, overlay_addr(&p));
        assert_ne!(a, overlay_addr(&peer()));
        assert_eq!(a.to_string()[..15], *"fdb0:1139:e4a8:");
        assert!(!is_overlay("fdb0:1139:e4a9::1".parse().unwrap()));
        // The prefix is what the docs say: fd + SHA-256("p2p-foundation overlay")[..5].
        let d = Sha256::digest(b"p2p-foundation overlay");
        assert_eq!(&OVERLAY_PREFIX.octets()[1..6], &d[..5]);
        assert_eq!(OVERLAY_PREFIX.octets()[0], 0xfd);
        // And the interface part is SHA-256(domain ‖ key)[..10].
        let d = Sha256::new()
            .chain_update(b"p2pf/overlay/1")
            .chain_update(p.as_bytes())
            .finalize();
        assert_eq!(&a.octets()[6..], &d[..10]);
    }

    #[test]
    fn mtu_below_ipv6_minimum_is_refused() {
        let c = OverlayConfig {
            mtu: 1279,
            ..OverlayConfig::default()
        };
        assert_eq!(
            OverlayCore::new(peer(), &c).unwrap_err(),
            OverlayConfigError::MtuTooSmall(1279)
        );
    }

    #[test]
    fn a_packet_goes_to_the_peer_and_is_accepted_there() {
        let (a, b) = (peer(), peer());
        let (mut ca, mut cb) = (core(a), core(b));
        assert_eq!(ca.add_peer(b), Some(overlay_addr(&b)));
        cb.add_peer(a);
        let pkt = packet(ca.addr(), cb.addr(), 17, b"hello");
        let now = Instant::now();
        let Outbound::Send { peer: to, datagram } = ca.outbound(now, &pkt, |_| Some(1400)) else {
            panic!("not sent");
        };
        assert_eq!(to, b);
        assert_eq!(datagram[0], DATAGRAM_TAG);
        assert_eq!(&datagram[1..], &pkt[..]);
        assert_eq!(cb.inbound(&a, &datagram), Inbound::Deliver(&pkt));
        assert_eq!((ca.stats().packets_out, ca.stats().bytes_out), (1, 45));
        assert_eq!((cb.stats().packets_in, cb.stats().bytes_in), (1, 45));
        // An unknown sender is checked against its own derived address too.
        let c = peer();
        let from_c = packet(overlay_addr(&c), cb.addr(), 17, b"x");
        let mut d = vec![DATAGRAM_TAG];
        d.extend_from_slice(&from_c);
        assert_eq!(cb.inbound(&c, &d), Inbound::Deliver(&from_c));
    }

    #[test]
    fn spoofed_sources_and_bad_datagrams_are_dropped_and_counted() {
        let (a, b, c) = (peer(), peer(), peer());
        let mut cb = core(b);
        cb.add_peer(a);
        cb.add_peer(c);
        let frame = |p: &[u8]| {
            let mut d = vec![DATAGRAM_TAG];
            d.extend_from_slice(p);
            d
        };
        // a claims to be c.
        let spoof = frame(&packet(overlay_addr(&c), cb.addr(), 58, &[128, 0, 0, 0]));
        assert_eq!(
            cb.inbound(&a, &spoof),
            Inbound::Drop(DropReason::SpoofedSource)
        );
        // a sends to someone else.
        let other = frame(&packet(overlay_addr(&a), overlay_addr(&c), 17, b""));
        assert_eq!(
            cb.inbound(&a, &other),
            Inbound::Drop(DropReason::WrongDestination)
        );
        assert_eq!(cb.inbound(&a, &[]), Inbound::Drop(DropReason::BadTag));
        let mut tagged = frame(&packet(overlay_addr(&a), cb.addr(), 17, b""));
        tagged[0] = 0x07;
        assert_eq!(cb.inbound(&a, &tagged), Inbound::Drop(DropReason::BadTag));
        assert_eq!(
            cb.inbound(&a, &[DATAGRAM_TAG, 0x60]),
            Inbound::Drop(DropReason::Malformed)
        );
        // Over the MTU: dropped before anything past the header is looked at.
        let big = frame(&packet(overlay_addr(&a), cb.addr(), 17, &[0; 1400]));
        assert_eq!(cb.inbound(&a, &big), Inbound::Drop(DropReason::Malformed));
        let s = cb.stats();
        assert_eq!(s.dropped_for(DropReason::SpoofedSource), 1);
        assert_eq!(s.dropped_for(DropReason::WrongDestination), 1);
        assert_eq!(s.dropped_for(DropReason::BadTag), 2);
        assert_eq!(s.dropped_for(DropReason::Malformed), 2);
        assert_eq!((s.dropped_total(), s.packets_in), (6, 0));
    }

    #[test]
    fn outbound_checks() {
        let (a, b) = (peer(), peer());
        let mut ca = core(a);
        let now = Instant::now();
        let me = ca.addr();
        let mld = packet(
            "fe80::1".parse().unwrap(),
            "ff02::16".parse().unwrap(),
            0,
            &[],
        );
        assert_eq!(
            ca.outbound(now, &mld, |_| None),
            Outbound::Drop(DropReason::NotOverlay)
        );
        let other_src = packet("fd00::1".parse().unwrap(), overlay_addr(&b), 17, b"");
        assert_eq!(
            ca.outbound(now, &other_src, |_| None),
            Outbound::Drop(DropReason::NotLocalSource)
        );
        // Not connected: Destination Unreachable (address unreachable) to the host.
        let to_b = packet(me, overlay_addr(&b), 17, b"abc");
        let Outbound::Reply(icmp) = ca.outbound(now, &to_b, |_| None) else {
            panic!("no ICMPv6 error");
        };
        let v = Ipv6Packet::parse(&icmp, 1280).unwrap();
        assert_eq!(
            (v.src(), v.dst(), v.payload()[0], v.payload()[1]),
            (me, me, 1, 3)
        );
        assert_eq!(ca.stats().unreachable, 1);
        // No ICMPv6 error about an ICMPv6 error.
        let err = packet(me, overlay_addr(&b), 58, &[1, 0, 0, 0]);
        assert_eq!(
            ca.outbound(now, &err, |_| None),
            Outbound::Drop(DropReason::NoRoute)
        );
        ca.add_peer(b);
        // Datagrams refused by the connection.
        assert_eq!(
            ca.outbound(now, &to_b, |_| None),
            Outbound::Drop(DropReason::LinkError)
        );
        // Malformed and over the MTU.
        assert_eq!(
            ca.outbound(now, &to_b[..30], |_| Some(1400)),
            Outbound::Drop(DropReason::Malformed)
        );
        let s = ca.stats();
        assert_eq!(s.dropped_for(DropReason::NotOverlay), 1);
        assert_eq!(s.dropped_for(DropReason::NotLocalSource), 1);
        assert_eq!(s.dropped_for(DropReason::NoRoute), 2);
        assert_eq!(s.dropped_for(DropReason::LinkError), 1);
        assert_eq!(s.dropped_for(DropReason::Malformed), 1);
        ca.remove_peer(&b);
        assert_eq!(ca.route(overlay_addr(&b)), Err(DropReason::NoRoute));
        assert_eq!(ca.add_peer(a), None, "never a route to itself");
    }

    #[test]
    fn packet_too_big_when_the_path_is_narrower() {
        let (a, b) = (peer(), peer());
        let mut ca = core(a);
        ca.add_peer(b);
        let now = Instant::now();
        let big = packet(ca.addr(), overlay_addr(&b), 6, &[0; 1360]);
        // The connection carries 1,351-byte datagrams: 1,350 bytes of packet.
        let Outbound::Reply(ptb) = ca.outbound(now, &big, |_| Some(1351)) else {
            panic!("no Packet Too Big");
        };
        let v = Ipv6Packet::parse(&ptb, 1280).unwrap();
        assert_eq!((v.src(), v.dst()), (overlay_addr(&b), ca.addr()));
        assert_eq!(v.payload()[0], 2);
        assert_eq!(
            u32::from_be_bytes(v.payload()[4..8].try_into().unwrap()),
            1350
        );
        // Exactly what fits goes.
        let fits = packet(ca.addr(), overlay_addr(&b), 6, &[0; 1310]);
        assert!(matches!(
            ca.outbound(now, &fits, |_| Some(1351)),
            Outbound::Send { .. }
        ));
        // Before PMTU discovery (1,162): a 1,280-byte packet cannot be helped by a PTB.
        let min = packet(ca.addr(), overlay_addr(&b), 6, &[0; 1240]);
        assert_eq!(
            ca.outbound(now, &min, |_| Some(1162)),
            Outbound::Drop(DropReason::TooBig)
        );
        // A bigger one gets a PTB saying 1,280.
        let Outbound::Reply(ptb) = ca.outbound(now, &big, |_| Some(1162)) else {
            panic!("no Packet Too Big");
        };
        assert_eq!(u32::from_be_bytes(ptb[44..48].try_into().unwrap()), 1280);
        let s = ca.stats();
        assert_eq!(
            (s.packet_too_big, s.dropped_for(DropReason::TooBig)),
            (2, 3)
        );
    }

    #[test]
    fn icmp_errors_are_rate_limited() {
        let (a, b) = (peer(), peer());
        let mut ca = core(a);
        let to_b = packet(ca.addr(), overlay_addr(&b), 17, b"");
        let t0 = Instant::now();
        let replies = (0..150)
            .filter(|_| matches!(ca.outbound(t0, &to_b, |_| None), Outbound::Reply(_)))
            .count();
        assert_eq!(replies, ICMP_ERRORS_PER_SEC as usize);
        assert_eq!(ca.stats().icmp_rate_limited, 50);
        // Half a second later, half the budget is back.
        let t1 = t0 + std::time::Duration::from_millis(500);
        let replies = (0..100)
            .filter(|_| matches!(ca.outbound(t1, &to_b, |_| None), Outbound::Reply(_)))
            .count();
        assert_eq!(replies, 50);
        assert_eq!(ca.stats().dropped_for(DropReason::NoRoute), 250);
    }

    /// Two connected peers with one address (forced here by inserting one twice under
    /// another id's entry): neither gets the traffic.
    #[test]
    fn a_shared_address_is_routed_to_nobody() {
        let (a, b, c) = (peer(), peer(), peer());
        let mut ca = core(a);
        ca.add_peer(b);
        let addr_b = overlay_addr(&b);
        // Simulate c deriving b's address.
        ca.peers.insert(c, addr_b);
        ca.routes.get_mut(&addr_b).unwrap().peers.push(c);
        assert_eq!(ca.route(addr_b), Err(DropReason::Collision));
        let to_b = packet(ca.addr(), addr_b, 17, b"");
        assert_eq!(
            ca.outbound(Instant::now(), &to_b, |_| Some(1400)),
            Outbound::Drop(DropReason::Collision)
        );
        ca.remove_peer(&c);
        assert_eq!(ca.route(addr_b), Ok(b));
    }

    proptest! {
        #[test]
        fn inbound_never_panics_and_only_delivers_checked_packets(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (a, b) = (peer(), peer());
            let mut cb = core(b);
            match cb.inbound(&a, &d) {
                Inbound::Deliver(p) => {
                    let v = Ipv6Packet::parse(p, 1400).unwrap();
                    prop_assert_eq!(v.src(), overlay_addr(&a));
                    prop_assert_eq!(v.dst(), overlay_addr(&b));
                }
                Inbound::Drop(_) => prop_assert_eq!(cb.stats().dropped_total(), 1),
            }
        }

        #[test]
        fn outbound_never_panics(d in proptest::collection::vec(any::<u8>(), 0..200), limit in proptest::option::of(0usize..2000)) {
            let (a, b) = (peer(), peer());
            let mut ca = core(a);
            ca.add_peer(b);
            let _ = ca.outbound(Instant::now(), &d, |_| limit);
        }
    }
}
