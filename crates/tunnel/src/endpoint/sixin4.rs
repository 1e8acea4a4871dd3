//! The 6in4 / 6to4 endpoint, sans-IO: IPv6 packets of the host in IPv4 protocol 41.
//!
//! Two modes ([`SixInFourMode`]):
//!
//! - **Configured** (RFC 4213): every packet goes to one remote IPv4 address (a tunnel
//!   broker, the other end of a manual tunnel), and only packets whose outer source is that
//!   address are accepted.
//! - **6to4** (RFC 3056): the endpoint's IPv6 address is inside `2002:V4::/48` of its own
//!   public IPv4 address. A packet to another 6to4 address goes straight to the IPv4
//!   address that address embeds; any other destination goes to the configured relay (or
//!   is refused without one). On receipt, the RFC 3964 section 5 checks apply: a 6to4
//!   inner source must embed a global unicast IPv4 address equal to the outer source, and a
//!   native inner source is accepted only from the relay.
//!
//! In both, the outer source must be unicast, the outer destination must be the
//! endpoint's IPv4 address and the inner destination its IPv6 address, and inner sources
//! that never cross a tunnel (multicast, unspecified, loopback, IPv4-mapped,
//! IPv4-compatible) are dropped.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::ipv4::is_unicast_v4;
use super::{
    DropReason, EndpointConfigError, EndpointStats, IcmpLimiter, Inbound, Outbound, icmp_allowed,
};
use crate::encap::{IPV4_HEADER_LEN, MAX_IPV4_PACKET, SixIn4Packet, encode_6in4};
use crate::overlay::ipv6::{self, IPV6_MIN_MTU, Ipv6Packet};
use crate::{TunnelError, is_sixto4, sixto4_eligible, sixto4_prefix, sixto4_v4};

/// The default tunnel MTU: 1,500 − 20 (see the [module docs](super#mtu)).
pub const SIXIN4_DEFAULT_MTU: u16 = 1480;
/// The largest outer packet the endpoint accepts: a 60-byte IPv4 header (options) and an
/// IPv6 packet of the tunnel MTU are at most this, whatever the configuration.
const MAX_OUTER: usize = MAX_IPV4_PACKET;

/// Where packets go and whom they are accepted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SixInFourMode {
    /// A configured tunnel to and from one remote IPv4 address (RFC 4213).
    Configured {
        /// The other end's IPv4 address.
        remote: Ipv4Addr,
    },
    /// 6to4 (RFC 3056): other 6to4 sites directly, the rest through `relay`.
    SixToFour {
        /// The 6to4 relay router for native IPv6 destinations (`None`: 6to4 sites only).
        relay: Option<Ipv4Addr>,
    },
}

/// Settings of a 6in4 / 6to4 endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SixInFourConfig {
    /// This host's IPv4 address: the outer source, and the only outer destination accepted.
    pub local_v4: Ipv4Addr,
    /// The IPv6 address on the TUN device: the only inner source sent and inner
    /// destination accepted. In 6to4 mode it must lie in `2002:<local_v4>::/48`.
    pub local_v6: Ipv6Addr,
    /// The prefix length put on the TUN device with `local_v6` (so the kernel routes that
    /// prefix to it; 6to4 uses 16, making all of 2002::/16 on-link). Default routes are the
    /// caller's business.
    pub prefix_len: u8,
    /// Configured tunnel or 6to4.
    pub mode: SixInFourMode,
    /// Tunnel MTU, the TUN device's MTU (default [`SIXIN4_DEFAULT_MTU`], at least 1,280).
    pub mtu: u16,
    /// Outer TTL (default 64).
    pub ttl: u8,
    /// Name of the TUN device; `%d` is replaced by the kernel (default `p2p6in4%d`).
    pub name: String,
}

impl SixInFourConfig {
    /// A configured tunnel (RFC 4213) from `local_v4` to `remote`, with `local_v6/64` on
    /// the device.
    pub fn configured(local_v4: Ipv4Addr, remote: Ipv4Addr, local_v6: Ipv6Addr) -> Self {
        Self {
            local_v4,
            local_v6,
            prefix_len: 64,
            mode: SixInFourMode::Configured { remote },
            mtu: SIXIN4_DEFAULT_MTU,
            ttl: 64,
            name: "p2p6in4%d".into(),
        }
    }

    /// 6to4 (RFC 3056) for the public address `local_v4`: the device gets
    /// `2002:<local_v4>::1/16`; native destinations go to `relay`.
    pub fn sixto4(local_v4: Ipv4Addr, relay: Option<Ipv4Addr>) -> Self {
        let mut a = sixto4_prefix(local_v4).segments();
        a[7] = 1;
        Self {
            local_v4,
            local_v6: Ipv6Addr::from(a),
            prefix_len: 16,
            mode: SixInFourMode::SixToFour { relay },
            mtu: SIXIN4_DEFAULT_MTU,
            ttl: 64,
            name: "p2p6to4%d".into(),
        }
    }

    /// This configuration with the tunnel MTU `mtu`.
    pub fn with_mtu(mut self, mtu: u16) -> Self {
        self.mtu = mtu;
        self
    }

    /// This configuration with the TUN device name `name`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// Whether an inner IPv6 source may come out of a tunnel (RFC 3964 section 5.1): not
/// multicast, unspecified, loopback, IPv4-mapped (`::ffff:0:0/96`) or IPv4-compatible
/// (`::/96`).
fn inner_source_ok(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let v4_compat = s[..6] == [0; 6];
    let v4_mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    !(a.is_multicast() || v4_compat || v4_mapped)
}

/// Whether the host may send to `a` through a tunnel at all: not multicast, link-local,
/// loopback or unspecified.
fn routable(a: Ipv6Addr) -> bool {
    let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
    !(a.is_multicast() || link_local || a.is_loopback() || a.is_unspecified())
}

/// The 6in4 / 6to4 state machine: configuration, checks and counters. Owns no socket,
/// device or clock.
#[derive(Debug)]
pub struct SixInFourCore {
    local_v4: Ipv4Addr,
    local_v6: Ipv6Addr,
    mode: SixInFourMode,
    mtu: usize,
    ttl: u8,
    ident: u16,
    stats: EndpointStats,
    icmp: IcmpLimiter,
}

impl SixInFourCore {
    /// A core for `config`, checked: MTU within 1,280..=65,515, a unicast `local_v4`, and
    /// in 6to4 mode a global `local_v4` whose prefix holds `local_v6`.
    pub fn new(config: &SixInFourConfig) -> Result<Self, EndpointConfigError> {
        if usize::from(config.mtu) < IPV6_MIN_MTU {
            return Err(EndpointConfigError::MtuTooSmall {
                mtu: config.mtu,
                min: IPV6_MIN_MTU as u16,
            });
        }
        if usize::from(config.mtu) + IPV4_HEADER_LEN > MAX_IPV4_PACKET {
            return Err(EndpointConfigError::MtuTooLarge { mtu: config.mtu });
        }
        if !is_unicast_v4(config.local_v4) {
            return Err(EndpointConfigError::BadAddress(format!(
                "local IPv4 address {} is not unicast",
                config.local_v4
            )));
        }
        if let SixInFourMode::SixToFour { .. } = config.mode {
            if !sixto4_eligible(config.local_v4) {
                return Err(EndpointConfigError::BadAddress(format!(
                    "6to4 needs a global IPv4 address (RFC 3056 section 2); {} is not one",
                    config.local_v4
                )));
            }
            if sixto4_v4(config.local_v6) != Some(config.local_v4) {
                return Err(EndpointConfigError::BadAddress(format!(
                    "6to4 address {} is not inside {}/48",
                    config.local_v6,
                    sixto4_prefix(config.local_v4)
                )));
            }
        }
        Ok(Self {
            local_v4: config.local_v4,
            local_v6: config.local_v6,
            mode: config.mode,
            mtu: usize::from(config.mtu),
            ttl: config.ttl,
            ident: 0,
            stats: EndpointStats::default(),
            icmp: IcmpLimiter::new(),
        })
    }

    /// The endpoint's IPv6 address.
    pub fn local_v6(&self) -> Ipv6Addr {
        self.local_v6
    }

    /// The endpoint's IPv4 address.
    pub fn local_v4(&self) -> Ipv4Addr {
        self.local_v4
    }

    /// The tunnel MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Counts a packet the raw socket refused after [`Outbound::Send`] of an outer packet
    /// of `outer_len` bytes: a drop, no longer a packet out.
    pub fn count_send_error(&mut self, outer_len: usize) {
        self.stats.packets_out = self.stats.packets_out.saturating_sub(1);
        self.stats.bytes_out = self
            .stats
            .bytes_out
            .saturating_sub(outer_len.saturating_sub(IPV4_HEADER_LEN) as u64);
        self.stats.drop_out(DropReason::SendError);
    }

    /// The outer destination for the inner destination `dst`.
    fn next_hop(&self, dst: Ipv6Addr) -> Result<Ipv4Addr, DropReason> {
        match self.mode {
            SixInFourMode::Configured { remote } => Ok(remote),
            SixInFourMode::SixToFour { relay } => match sixto4_v4(dst) {
                Some(v4) if sixto4_eligible(v4) && v4 != self.local_v4 => Ok(v4),
                Some(_) => Err(DropReason::BadInnerAddress),
                None => relay.ok_or(DropReason::NoRoute),
            },
        }
    }

    /// Decides what happens to `packet`, which the host wrote to the TUN device, at `now`.
    /// `out` is cleared and receives the outer IPv4 packet ([`Outbound::Send`], the
    /// destination IPv4 address given) or an ICMPv6 error for the host
    /// ([`Outbound::Reply`]).
    pub fn outbound(
        &mut self,
        now: Instant,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Outbound<Ipv4Addr> {
        out.clear();
        let p = match Ipv6Packet::parse(packet, MAX_OUTER - IPV4_HEADER_LEN) {
            Ok(p) => p,
            Err(ipv6::Ipv6Error::Truncated { .. }) => {
                return Outbound::Drop(self.stats.drop_out(DropReason::Truncated));
            }
            Err(ipv6::Ipv6Error::Version(_)) => {
                return Outbound::Drop(self.stats.drop_out(DropReason::WrongProtocol));
            }
            Err(_) => return Outbound::Drop(self.stats.drop_out(DropReason::Malformed)),
        };
        let dst = p.dst();
        if !routable(dst) {
            return Outbound::Drop(self.stats.drop_out(DropReason::NoRoute));
        }
        if p.src() != self.local_v6 {
            return Outbound::Drop(self.stats.drop_out(DropReason::NotLocalSource));
        }
        let hop = match self.next_hop(dst) {
            Ok(hop) => hop,
            Err(DropReason::NoRoute) if !p.is_icmpv6_error() => {
                self.stats.drop_out(DropReason::NoRoute);
                if icmp_allowed(&mut self.icmp, now, &mut self.stats) {
                    *out = ipv6::address_unreachable(self.local_v6, &p);
                    return Outbound::Reply;
                }
                return Outbound::Drop(DropReason::NoRoute);
            }
            Err(reason) => return Outbound::Drop(self.stats.drop_out(reason)),
        };
        if p.len() > self.mtu {
            self.stats.drop_out(DropReason::TooBig);
            if !p.is_icmpv6_error() && icmp_allowed(&mut self.icmp, now, &mut self.stats) {
                *out = ipv6::packet_too_big(dst, &p, self.mtu);
                return Outbound::Reply;
            }
            return Outbound::Drop(DropReason::TooBig);
        }
        self.ident = self.ident.wrapping_add(1);
        if encode_6in4(self.local_v4, hop, self.ttl, self.ident, p.bytes(), out).is_err() {
            // Unreachable: the length was checked against the MTU above.
            return Outbound::Drop(self.stats.drop_out(DropReason::TooBig));
        }
        self.stats.packets_out += 1;
        self.stats.bytes_out += p.len() as u64;
        Outbound::Send(hop)
    }

    /// Decides what happens to `packet`, an IPv4 packet (header included) that a raw
    /// protocol-41 socket received: delivered only if it passes every check in the
    /// [module docs](self).
    pub fn inbound<'a>(&mut self, packet: &'a [u8]) -> Inbound<'a> {
        if packet.len() > 60 + self.mtu {
            return Inbound::Drop(self.stats.drop_in(DropReason::TooBig));
        }
        let outer = match SixIn4Packet::decode(packet) {
            Ok(p) => p,
            Err(e) => {
                let reason = match e {
                    TunnelError::Truncated { .. } => DropReason::Truncated,
                    TunnelError::Checksum { .. } => DropReason::Checksum,
                    TunnelError::Fragment { .. } => DropReason::Fragment,
                    TunnelError::NotProto41(_) => DropReason::WrongProtocol,
                    TunnelError::Malformed {
                        field: "inner IPv6 version",
                        ..
                    } => DropReason::WrongProtocol,
                    _ => DropReason::Malformed,
                };
                return Inbound::Drop(self.stats.drop_in(reason));
            }
        };
        if !is_unicast_v4(outer.src) || outer.src == Ipv4Addr::BROADCAST {
            return Inbound::Drop(self.stats.drop_in(DropReason::BadOuterSource));
        }
        if outer.dst != self.local_v4 {
            return Inbound::Drop(self.stats.drop_in(DropReason::WrongDestination));
        }
        // The inner packet is exactly 40 + payload length bytes (decode checked it).
        let inner = match Ipv6Packet::parse(outer.inner, self.mtu) {
            Ok(p) => p,
            Err(ipv6::Ipv6Error::TooBig { .. }) => {
                return Inbound::Drop(self.stats.drop_in(DropReason::TooBig));
            }
            Err(_) => return Inbound::Drop(self.stats.drop_in(DropReason::Malformed)),
        };
        let src = inner.src();
        if !inner_source_ok(src) || src.is_loopback() || src.is_unspecified() {
            return Inbound::Drop(self.stats.drop_in(DropReason::BadInnerAddress));
        }
        if inner.dst() != self.local_v6 {
            return Inbound::Drop(self.stats.drop_in(DropReason::WrongDestination));
        }
        let allowed = match self.mode {
            SixInFourMode::Configured { remote } => outer.src == remote,
            SixInFourMode::SixToFour { relay } => match sixto4_v4(src) {
                Some(v4) if !sixto4_eligible(v4) => {
                    return Inbound::Drop(self.stats.drop_in(DropReason::BadInnerAddress));
                }
                // RFC 3964 section 5.2: a 6to4 source must come from the address it embeds
                // (and never claim to be this site).
                Some(v4) => v4 == outer.src && v4 != self.local_v4,
                // A native source only through the relay.
                None => relay == Some(outer.src),
            },
        };
        if !allowed || (is_sixto4(src) && sixto4_v4(src) == Some(self.local_v4)) {
            return Inbound::Drop(self.stats.drop_in(DropReason::SpoofedSource));
        }
        self.stats.packets_in += 1;
        self.stats.bytes_in += inner.len() as u64;
        Inbound::Deliver(outer.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::ipv6::tests::packet;
    use crate::overlay::ipv6::{ICMPV6_DEST_UNREACHABLE, ICMPV6_PACKET_TOO_BIG, PROTO_ICMPV6};
    use proptest::prelude::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const A4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const B4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

    fn configured() -> (SixInFourCore, SixInFourCore) {
        let a = SixInFourConfig::configured(A4, B4, v6("2001:db8:41::1"));
        let b = SixInFourConfig::configured(B4, A4, v6("2001:db8:41::2"));
        (
            SixInFourCore::new(&a).unwrap(),
            SixInFourCore::new(&b).unwrap(),
        )
    }

    #[test]
    fn configured_round_trip() {
        let (mut a, mut b) = configured();
        let pkt = packet(a.local_v6(), b.local_v6(), 17, b"hello");
        let mut out = Vec::new();
        let now = Instant::now();
        assert_eq!(a.outbound(now, &pkt, &mut out), Outbound::Send(B4));
        let outer = SixIn4Packet::decode(&out).unwrap();
        assert_eq!((outer.src, outer.dst, outer.ttl), (A4, B4, 64));
        assert_eq!(outer.inner, &pkt[..]);
        assert_eq!(b.inbound(&out), Inbound::Deliver(&pkt));
        assert_eq!((a.stats().packets_out, a.stats().bytes_out), (1, 45));
        assert_eq!((b.stats().packets_in, b.stats().bytes_in), (1, 45));
        // Idents advance.
        a.outbound(now, &pkt, &mut out);
        assert_eq!(SixIn4Packet::decode(&out).unwrap().ident, 2);
    }

    /// Re-encodes `outer` with one field changed.
    fn reencode(src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        encode_6in4(src, dst, 64, 1, inner, &mut o).unwrap();
        o
    }

    #[test]
    fn configured_checks_drop_and_count() {
        let (_, mut b) = configured();
        let (a6, b6) = (v6("2001:db8:41::1"), b.local_v6());
        let good = packet(a6, b6, 17, b"x");
        let cases: Vec<(Vec<u8>, DropReason)> = vec![
            (
                reencode(Ipv4Addr::new(198, 51, 100, 3), B4, &good),
                DropReason::SpoofedSource,
            ),
            (
                reencode(Ipv4Addr::new(224, 0, 0, 1), B4, &good),
                DropReason::BadOuterSource,
            ),
            (
                reencode(Ipv4Addr::LOCALHOST, B4, &good),
                DropReason::BadOuterSource,
            ),
            (
                reencode(A4, Ipv4Addr::new(198, 51, 100, 9), &good),
                DropReason::WrongDestination,
            ),
            (
                reencode(A4, B4, &packet(a6, v6("2001:db8:41::9"), 17, b"x")),
                DropReason::WrongDestination,
            ),
            (
                reencode(A4, B4, &packet(v6("ff02::1"), b6, 17, b"x")),
                DropReason::BadInnerAddress,
            ),
            (
                reencode(A4, B4, &packet(v6("::ffff:1.2.3.4"), b6, 17, b"x")),
                DropReason::BadInnerAddress,
            ),
            (
                reencode(A4, B4, &packet(v6("::1"), b6, 17, b"x")),
                DropReason::BadInnerAddress,
            ),
            (
                reencode(A4, B4, &packet(v6("::1.2.3.4"), b6, 17, b"x")),
                DropReason::BadInnerAddress,
            ),
        ];
        for (pkt, reason) in &cases {
            let before = b.stats().dropped_in_for(*reason);
            assert_eq!(b.inbound(pkt), Inbound::Drop(*reason), "{reason:?}");
            assert_eq!(b.stats().dropped_in_for(*reason), before + 1);
        }
        // Wire-level damage.
        let ok = reencode(A4, B4, &good);
        assert_eq!(b.inbound(&ok[..30]), Inbound::Drop(DropReason::Truncated));
        let mut sum = ok.clone();
        sum[8] ^= 1;
        assert_eq!(b.inbound(&sum), Inbound::Drop(DropReason::Checksum));
        let fix = |mut p: Vec<u8>| {
            p[10] = 0;
            p[11] = 0;
            let c = crate::encap::fold(crate::encap::ones_sum(0, &p[..20]));
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p
        };
        let mut proto = ok.clone();
        proto[9] = 4;
        assert_eq!(
            b.inbound(&fix(proto)),
            Inbound::Drop(DropReason::WrongProtocol)
        );
        let mut frag = ok.clone();
        frag[6] = 0x20;
        assert_eq!(b.inbound(&fix(frag)), Inbound::Drop(DropReason::Fragment));
        let mut v4inner = ok.clone();
        v4inner[20] = 0x45;
        assert_eq!(
            b.inbound(&v4inner),
            Inbound::Drop(DropReason::WrongProtocol)
        );
        let huge = vec![0x45; 60 + 1480 + 1];
        assert_eq!(b.inbound(&huge), Inbound::Drop(DropReason::TooBig));
        let s = b.stats();
        assert_eq!(s.packets_in, 0, "nothing delivered");
        assert_eq!(s.dropped_in_total(), cases.len() as u64 + 6);
    }

    #[test]
    fn host_packets_checked_and_too_big_answered() {
        let (mut a, _) = configured();
        let (a6, b6) = (a.local_v6(), v6("2001:db8:41::2"));
        let now = Instant::now();
        let mut out = Vec::new();
        let mld = packet(v6("fe80::1"), v6("ff02::16"), 0, &[58, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            a.outbound(now, &mld, &mut out),
            Outbound::Drop(DropReason::NoRoute)
        );
        let other = packet(v6("2001:db8:41::7"), b6, 17, b"x");
        assert_eq!(
            a.outbound(now, &other, &mut out),
            Outbound::Drop(DropReason::NotLocalSource)
        );
        assert_eq!(
            a.outbound(now, &[0x45; 40], &mut out),
            Outbound::Drop(DropReason::WrongProtocol)
        );
        assert_eq!(
            a.outbound(now, &[0x60; 10], &mut out),
            Outbound::Drop(DropReason::Truncated)
        );
        let big = packet(a6, b6, 17, &[0; 1500 - 40]);
        assert_eq!(a.outbound(now, &big, &mut out), Outbound::Reply);
        let ptb = Ipv6Packet::parse(&out, 1280).unwrap();
        assert_eq!((ptb.src(), ptb.dst()), (b6, a6));
        assert_eq!(ptb.next_header(), PROTO_ICMPV6);
        assert_eq!(ptb.payload()[0], ICMPV6_PACKET_TOO_BIG);
        assert_eq!(&ptb.payload()[4..8], &1480u32.to_be_bytes());
        assert_eq!(ipv6::icmpv6_checksum(b6, a6, ptb.payload()), 0);
        assert_eq!(a.stats().icmp_errors, 1);
        assert_eq!(a.stats().dropped_out_for(DropReason::TooBig), 1);
        // Exactly the MTU passes.
        let fits = packet(a6, b6, 17, &[0; 1480 - 40]);
        assert_eq!(a.outbound(now, &fits, &mut out), Outbound::Send(B4));
        assert_eq!(out.len(), 1500);
        // The rate limit: 100 errors, then silence until time passes.
        for _ in 0..200 {
            a.outbound(now, &big, &mut out);
        }
        assert_eq!(a.stats().icmp_errors, 100);
        assert_eq!(a.stats().icmp_rate_limited, 101);
        assert_eq!(
            a.outbound(now + std::time::Duration::from_secs(1), &big, &mut out),
            Outbound::Reply
        );
    }

    #[test]
    fn config_is_checked() {
        let c = SixInFourConfig::configured(A4, B4, v6("2001:db8::1")).with_mtu(1279);
        assert!(matches!(
            SixInFourCore::new(&c),
            Err(EndpointConfigError::MtuTooSmall { .. })
        ));
        let c = SixInFourConfig::configured(A4, B4, v6("2001:db8::1")).with_mtu(65_516);
        assert!(matches!(
            SixInFourCore::new(&c),
            Err(EndpointConfigError::MtuTooLarge { .. })
        ));
        // 6to4 needs a global address.
        let c = SixInFourConfig::sixto4(Ipv4Addr::new(10, 0, 0, 1), None);
        assert!(matches!(
            SixInFourCore::new(&c),
            Err(EndpointConfigError::BadAddress(_))
        ));
        let mut c = SixInFourConfig::sixto4(Ipv4Addr::new(11, 1, 1, 1), None);
        assert_eq!(c.local_v6, v6("2002:b01:101::1"));
        assert!(SixInFourCore::new(&c).is_ok());
        c.local_v6 = v6("2002:b01:102::1");
        assert!(SixInFourCore::new(&c).is_err());
    }

    const S1: Ipv4Addr = Ipv4Addr::new(11, 1, 1, 1);
    const S2: Ipv4Addr = Ipv4Addr::new(11, 1, 1, 2);
    const RELAY: Ipv4Addr = Ipv4Addr::new(11, 9, 9, 9);

    #[test]
    fn sixto4_routes_and_rfc3964_checks() {
        let mut a = SixInFourCore::new(&SixInFourConfig::sixto4(S1, Some(RELAY))).unwrap();
        let mut b = SixInFourCore::new(&SixInFourConfig::sixto4(S2, None)).unwrap();
        let now = Instant::now();
        let mut out = Vec::new();
        // 6to4 to 6to4: straight to the embedded address.
        let pkt = packet(a.local_v6(), b.local_v6(), 17, b"6to4");
        assert_eq!(a.outbound(now, &pkt, &mut out), Outbound::Send(S2));
        assert_eq!(b.inbound(&out), Inbound::Deliver(&pkt));
        // Native destination: through the relay; without one, unreachable.
        let native = packet(a.local_v6(), v6("2001:db8::5"), 17, b"n");
        assert_eq!(a.outbound(now, &native, &mut out), Outbound::Send(RELAY));
        let native_b = packet(b.local_v6(), v6("2001:db8::5"), 17, b"n");
        assert_eq!(b.outbound(now, &native_b, &mut out), Outbound::Reply);
        assert_eq!(
            Ipv6Packet::parse(&out, 1280).unwrap().payload()[..2],
            [ICMPV6_DEST_UNREACHABLE, 3]
        );
        // A 6to4 destination embedding a private address.
        let private = packet(a.local_v6(), v6("2002:a00:1::1"), 17, b"p");
        assert_eq!(
            a.outbound(now, &private, &mut out),
            Outbound::Drop(DropReason::BadInnerAddress)
        );

        // Receipt at A.
        let to_a = |src: Ipv6Addr| packet(src, v6("2002:b01:101::1"), 17, b"in");
        let from_s2 = to_a(v6("2002:b01:102::1"));
        assert_eq!(
            a.inbound(&reencode(S2, S1, &from_s2)),
            Inbound::Deliver(&from_s2[..])
        );
        let cases = [
            // Embedded address differs from the outer source.
            (
                reencode(Ipv4Addr::new(11, 1, 1, 3), S1, &from_s2),
                DropReason::SpoofedSource,
            ),
            // Embedded private, loopback, multicast addresses.
            (
                reencode(Ipv4Addr::new(10, 0, 0, 1), S1, &to_a(v6("2002:a00:1::1"))),
                DropReason::BadInnerAddress,
            ),
            (
                reencode(S2, S1, &to_a(v6("2002:7f00:1::1"))),
                DropReason::BadInnerAddress,
            ),
            (
                reencode(S2, S1, &to_a(v6("2002:e000:1::1"))),
                DropReason::BadInnerAddress,
            ),
            // Claims to be this site.
            (
                reencode(S2, S1, &to_a(v6("2002:b01:101::9"))),
                DropReason::SpoofedSource,
            ),
            // A native source not from the relay.
            (
                reencode(S2, S1, &to_a(v6("2001:db8::5"))),
                DropReason::SpoofedSource,
            ),
        ];
        for (p, reason) in &cases {
            assert_eq!(a.inbound(p), Inbound::Drop(*reason), "{reason:?}");
        }
        // A native source through the relay passes.
        let via_relay = to_a(v6("2001:db8::5"));
        assert_eq!(
            a.inbound(&reencode(RELAY, S1, &via_relay)),
            Inbound::Deliver(&via_relay[..])
        );
        assert_eq!(a.stats().packets_in, 2);
        assert_eq!(a.stats().dropped_out_total(), 1);
        assert_eq!(a.stats().dropped_in_total(), cases.len() as u64);
    }

    proptest! {
        #[test]
        fn inbound_never_panics_nor_delivers_foreign(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (_, mut b) = configured();
            if let Inbound::Deliver(p) = b.inbound(&buf) {
                let p = Ipv6Packet::parse(p, 1480).unwrap();
                prop_assert_eq!(p.dst(), b.local_v6());
            }
        }

        #[test]
        fn outbound_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (mut a, _) = configured();
            let mut out = Vec::new();
            if let Outbound::Send(hop) = a.outbound(Instant::now(), &buf, &mut out) {
                prop_assert_eq!(hop, B4);
                prop_assert_eq!(&out[20..], &buf[..]);
            }
        }
    }
}
