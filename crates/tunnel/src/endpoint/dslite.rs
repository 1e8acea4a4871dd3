//! The DS-Lite softwire (RFC 6333), sans-IO: the B4 element, which carries the host's IPv4
//! packets in IPv6 protocol 4 (IPv4-in-IPv6, RFC 2473) to the AFTR, and the AFTR's end of
//! one softwire, which hands a B4's packets to its host for forwarding (and NAT44) and
//! carries the answers back.
//!
//! The B4 side of the softwire has the well-known address [`DSLITE_B4`]
//! (192.0.0.2, RFC 6333 section 5.7) on the TUN device by default; the host routes its IPv4
//! traffic (usually the default route) to the device. A raw IPv6 socket of protocol 4,
//! bound to this end's IPv6 address, carries the packets: the kernel writes and strips the
//! outer IPv6 header, so the core sees the inner IPv4 packet and the outer source.
//!
//! B4 ([`DsLiteRole::B4`]). Outbound: one well-formed IPv4 packet from the B4's IPv4
//! address, to a unicast destination, within the tunnel MTU (a larger one with DF set gets
//! an ICMP Fragmentation Needed). Inbound: the outer source must be the AFTR (RFC 6333
//! section 5.2: the softwire has exactly two ends), the payload one well-formed IPv4 packet
//! within the MTU, to the B4's IPv4 address, from a unicast source.
//!
//! AFTR end ([`DsLiteRole::Aftr`], [`DsLiteConfig::aftr_end`]; [`DSLITE_AFTR`], 192.0.0.1,
//! on the device). The mirror image for one B4: outbound only to the B4's IPv4 address,
//! from a unicast source; inbound only from the B4's IPv6 address and, inside, from the
//! B4's IPv4 address (a B4 cannot spoof another host's), to a unicast destination. The
//! host's routing and NAT do the rest: this is the softwire, not a carrier-grade NAT with
//! per-softwire mappings for many B4s.
//!
//! [`DSLITE_AFTR`]: crate::DSLITE_AFTR

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::ipv4::{self, IPV4_MIN_MTU, Ipv4Error, Ipv4Packet, is_unicast_v4};
use super::{
    DropReason, EndpointConfigError, EndpointStats, IcmpLimiter, Inbound, Outbound, icmp_allowed,
};
use crate::encap::{IPV6_HEADER_LEN, MAX_IPV4_PACKET};
use crate::{DSLITE_AFTR, DSLITE_B4};

/// The default tunnel MTU: 1,500 − 40 (see the [module docs](super#mtu)).
pub const DSLITE_DEFAULT_MTU: u16 = 1460;

/// Which end of the softwire an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DsLiteRole {
    /// The B4: the host's IPv4 leaves through the softwire.
    B4,
    /// The AFTR's end of the softwire of the one B4 whose IPv4 address (inside the
    /// softwire) is `b4_v4`.
    Aftr {
        /// The B4's IPv4 address: the only inner destination sent and source accepted.
        b4_v4: Ipv4Addr,
    },
}

/// Settings of a DS-Lite endpoint: a B4 ([`DsLiteConfig::new`]) or the AFTR's end of its
/// softwire ([`DsLiteConfig::aftr_end`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DsLiteConfig {
    /// The B4's IPv6 address. For a B4: the outer source (the raw socket is bound to it)
    /// and the only outer destination the kernel hands the socket; for the AFTR end, every
    /// outer destination and the only outer source accepted.
    pub b4_v6: Ipv6Addr,
    /// The AFTR's IPv6 address: the B4's outer destination and only accepted outer source;
    /// the AFTR end's own (bound) address.
    pub aftr: Ipv6Addr,
    /// Which end this is (default [`DsLiteRole::B4`]).
    pub role: DsLiteRole,
    /// The IPv4 address on the TUN device (default [`DSLITE_B4`], 192.0.0.2, for a B4;
    /// [`DSLITE_AFTR`], 192.0.0.1, for the AFTR end). A B4 sends only from it and accepts
    /// only packets to it.
    pub local_v4: Ipv4Addr,
    /// The prefix length put on the device with `local_v4` (default 29: 192.0.0.0/29,
    /// RFC 6333 section 5.7). Default routes are the caller's business.
    pub prefix_len: u8,
    /// Tunnel MTU, the TUN device's MTU (default [`DSLITE_DEFAULT_MTU`], at least 576).
    pub mtu: u16,
    /// Name of the TUN device; `%d` is replaced by the kernel (default `p2pdslite%d`).
    pub name: String,
}

impl DsLiteConfig {
    /// A B4 at `b4_v6` with the softwire to `aftr`, 192.0.0.2/29 on the device.
    pub fn new(b4_v6: Ipv6Addr, aftr: Ipv6Addr) -> Self {
        Self {
            b4_v6,
            aftr,
            role: DsLiteRole::B4,
            local_v4: DSLITE_B4,
            prefix_len: 29,
            mtu: DSLITE_DEFAULT_MTU,
            name: "p2pdslite%d".into(),
        }
    }

    /// The AFTR's end of the softwire between `b4_v6` and `aftr` (the same pair as the B4's
    /// [`DsLiteConfig::new`]): 192.0.0.1/29 on the device, for a B4 at 192.0.0.2.
    ///
    /// ```
    /// use p2p_foundation_tunnel::endpoint::{DsLiteConfig, DsLiteRole};
    ///
    /// let (b4, aftr) = ("2001:db8::2".parse().unwrap(), "2001:db8::1".parse().unwrap());
    /// let end = DsLiteConfig::new(b4, aftr).aftr_end();
    /// assert_eq!(end.local_v6(), aftr);
    /// assert_eq!(end.role, DsLiteRole::Aftr { b4_v4: "192.0.0.2".parse().unwrap() });
    /// ```
    pub fn aftr_end(mut self) -> Self {
        self.role = DsLiteRole::Aftr {
            b4_v4: self.local_v4,
        };
        self.local_v4 = DSLITE_AFTR;
        self
    }

    /// This end's IPv6 address: the B4's, or the AFTR's for the AFTR end.
    pub fn local_v6(&self) -> Ipv6Addr {
        match self.role {
            DsLiteRole::B4 => self.b4_v6,
            DsLiteRole::Aftr { .. } => self.aftr,
        }
    }

    /// The other end's IPv6 address.
    pub fn remote_v6(&self) -> Ipv6Addr {
        match self.role {
            DsLiteRole::B4 => self.aftr,
            DsLiteRole::Aftr { .. } => self.b4_v6,
        }
    }

    /// This configuration with `local_v4/prefix_len` on the device.
    pub fn with_local_v4(mut self, local_v4: Ipv4Addr, prefix_len: u8) -> Self {
        self.local_v4 = local_v4;
        self.prefix_len = prefix_len;
        self
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

fn v6_unicast(a: Ipv6Addr) -> bool {
    !(a.is_multicast() || a.is_unspecified() || a.is_loopback())
}

/// A softwire end's state machine (a B4's, or the AFTR's end): configuration, checks and
/// counters. Owns no socket, device or clock.
#[derive(Debug)]
pub struct DsLiteCore {
    b4_v6: Ipv6Addr,
    aftr: Ipv6Addr,
    /// The other end's IPv6 address: every outer destination, the only outer source.
    remote_v6: Ipv6Addr,
    /// `Some(B4's IPv4)` for the AFTR end.
    peer_v4: Option<Ipv4Addr>,
    local_v4: Ipv4Addr,
    mtu: usize,
    stats: EndpointStats,
    icmp: IcmpLimiter,
}

impl DsLiteCore {
    /// A core for `config`, checked: MTU within 576..=65,495, unicast addresses, AFTR and
    /// B4 distinct.
    pub fn new(config: &DsLiteConfig) -> Result<Self, EndpointConfigError> {
        if config.mtu < IPV4_MIN_MTU {
            return Err(EndpointConfigError::MtuTooSmall {
                mtu: config.mtu,
                min: IPV4_MIN_MTU,
            });
        }
        if usize::from(config.mtu) + IPV6_HEADER_LEN > MAX_IPV4_PACKET {
            return Err(EndpointConfigError::MtuTooLarge { mtu: config.mtu });
        }
        if !v6_unicast(config.b4_v6) || !v6_unicast(config.aftr) || config.b4_v6 == config.aftr {
            return Err(EndpointConfigError::BadAddress(format!(
                "B4 {} and AFTR {} must be distinct unicast IPv6 addresses",
                config.b4_v6, config.aftr
            )));
        }
        if !is_unicast_v4(config.local_v4) {
            return Err(EndpointConfigError::BadAddress(format!(
                "the device's IPv4 address {} is not unicast",
                config.local_v4
            )));
        }
        let peer_v4 = match config.role {
            DsLiteRole::B4 => None,
            DsLiteRole::Aftr { b4_v4 } if is_unicast_v4(b4_v4) && b4_v4 != config.local_v4 => {
                Some(b4_v4)
            }
            DsLiteRole::Aftr { b4_v4 } => {
                return Err(EndpointConfigError::BadAddress(format!(
                    "the B4's IPv4 address {b4_v4} must be unicast and not the AFTR end's {}",
                    config.local_v4
                )));
            }
        };
        Ok(Self {
            b4_v6: config.b4_v6,
            aftr: config.aftr,
            remote_v6: config.remote_v6(),
            peer_v4,
            local_v4: config.local_v4,
            mtu: usize::from(config.mtu),
            stats: EndpointStats::default(),
            icmp: IcmpLimiter::new(),
        })
    }

    /// The B4's IPv6 address.
    pub fn b4_v6(&self) -> Ipv6Addr {
        self.b4_v6
    }

    /// The AFTR's IPv6 address.
    pub fn aftr(&self) -> Ipv6Addr {
        self.aftr
    }

    /// The IPv4 address on the device.
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

    /// Counts a packet of `len` bytes the raw socket refused after [`Outbound::Send`].
    pub fn count_send_error(&mut self, len: usize) {
        self.stats.packets_out = self.stats.packets_out.saturating_sub(1);
        self.stats.bytes_out = self.stats.bytes_out.saturating_sub(len as u64);
        self.stats.drop_out(DropReason::SendError);
    }

    fn parse_error(e: Ipv4Error) -> DropReason {
        match e {
            Ipv4Error::TooBig { .. } => DropReason::TooBig,
            Ipv4Error::Truncated { .. } => DropReason::Truncated,
            Ipv4Error::Version(_) => DropReason::WrongProtocol,
            Ipv4Error::Checksum => DropReason::Checksum,
            Ipv4Error::Malformed(_) => DropReason::Malformed,
        }
    }

    /// Decides what happens to `packet`, which the host wrote to the TUN device, at `now`.
    /// `out` is cleared and receives the payload for the raw socket (the IPv4 packet itself,
    /// [`Outbound::Send`] with the AFTR's address) or an ICMP error for the host
    /// ([`Outbound::Reply`]).
    pub fn outbound(
        &mut self,
        now: Instant,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Outbound<Ipv6Addr> {
        out.clear();
        let p = match Ipv4Packet::parse(packet, MAX_IPV4_PACKET) {
            Ok(p) => p,
            Err(e) => return Outbound::Drop(self.stats.drop_out(Self::parse_error(e))),
        };
        let dst = p.dst();
        if !is_unicast_v4(dst) || dst == Ipv4Addr::BROADCAST {
            return Outbound::Drop(self.stats.drop_out(DropReason::NoRoute));
        }
        match self.peer_v4 {
            None if p.src() != self.local_v4 => {
                return Outbound::Drop(self.stats.drop_out(DropReason::NotLocalSource));
            }
            // The AFTR end carries anyone's packets, but only to its B4.
            Some(b4) if dst != b4 => {
                return Outbound::Drop(self.stats.drop_out(DropReason::NoRoute));
            }
            Some(_) if !is_unicast_v4(p.src()) || p.src() == Ipv4Addr::BROADCAST => {
                return Outbound::Drop(self.stats.drop_out(DropReason::NotLocalSource));
            }
            _ => {}
        }
        if p.len() > self.mtu {
            self.stats.drop_out(DropReason::TooBig);
            if p.dont_fragment()
                && !p.is_icmp_error_or_fragment()
                && icmp_allowed(&mut self.icmp, now, &mut self.stats)
            {
                ipv4::frag_needed(dst, &p, self.mtu as u16, out);
                return Outbound::Reply;
            }
            return Outbound::Drop(DropReason::TooBig);
        }
        out.extend_from_slice(p.bytes());
        self.stats.packets_out += 1;
        self.stats.bytes_out += p.len() as u64;
        Outbound::Send(self.remote_v6)
    }

    /// Decides what happens to `payload`, which a raw IPv6 protocol-4 socket received from
    /// `outer_src`: delivered only if it passes the checks in the [module docs](self).
    pub fn inbound<'a>(&mut self, outer_src: Ipv6Addr, payload: &'a [u8]) -> Inbound<'a> {
        if payload.len() > self.mtu {
            return Inbound::Drop(self.stats.drop_in(DropReason::TooBig));
        }
        if outer_src != self.remote_v6 {
            return Inbound::Drop(self.stats.drop_in(DropReason::SpoofedSource));
        }
        let p = match Ipv4Packet::parse(payload, self.mtu) {
            Ok(p) => p,
            Err(e) => return Inbound::Drop(self.stats.drop_in(Self::parse_error(e))),
        };
        let (src, dst) = (p.src(), p.dst());
        match self.peer_v4 {
            None if dst != self.local_v4 => {
                return Inbound::Drop(self.stats.drop_in(DropReason::WrongDestination));
            }
            None if !is_unicast_v4(src) || src == Ipv4Addr::BROADCAST || src == self.local_v4 => {
                return Inbound::Drop(self.stats.drop_in(DropReason::BadInnerAddress));
            }
            // The AFTR end: only the B4's own address inside, to somewhere it may go.
            Some(b4) if src != b4 => {
                return Inbound::Drop(self.stats.drop_in(DropReason::SpoofedSource));
            }
            Some(b4) if !is_unicast_v4(dst) || dst == Ipv4Addr::BROADCAST || dst == b4 => {
                return Inbound::Drop(self.stats.drop_in(DropReason::BadInnerAddress));
            }
            _ => {}
        }
        self.stats.packets_in += 1;
        self.stats.bytes_in += p.len() as u64;
        Inbound::Deliver(payload)
    }
}

/// Appends to `out` an IPv6 packet (next header 4, RFC 2473) from `src` to `dst` with hop
/// limit `hop_limit`, carrying the IPv4 packet `inner`: what the kernel puts on the wire
/// for a raw protocol-4 socket, for tests and tools that build whole packets. The size is
/// checked before anything is appended.
pub fn encode_4in6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    inner: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), crate::TunnelError> {
    let len = u16::try_from(inner.len()).map_err(|_| crate::TunnelError::TooLarge(inner.len()))?;
    out.reserve(IPV6_HEADER_LEN + inner.len());
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[4, hop_limit]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(inner);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ipv4::tests::packet;
    use super::*;
    use crate::encap::{fold, ones_sum};
    use proptest::prelude::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const WEB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);

    fn b4() -> DsLiteCore {
        DsLiteCore::new(&DsLiteConfig::new(
            v6("2001:db8:64::2"),
            v6("2001:db8:64::1"),
        ))
        .unwrap()
    }

    #[test]
    fn the_aftr_end_carries_its_b4s_packets_and_nothing_else() {
        let (b4_v6, aftr_v6) = (v6("2001:db8:64::2"), v6("2001:db8:64::1"));
        let mut c = DsLiteCore::new(&DsLiteConfig::new(b4_v6, aftr_v6).aftr_end()).unwrap();
        assert_eq!(c.local_v4(), DSLITE_AFTR);
        let now = Instant::now();
        let mut out = Vec::new();
        // From the B4, to anywhere: handed to the host to forward.
        let syn = packet(DSLITE_B4, WEB, 6, true, b"syn");
        assert_eq!(c.inbound(b4_v6, &syn), Inbound::Deliver(&syn[..]));
        // The answer from anywhere, to the B4: into the softwire, to the B4's IPv6.
        let ack = packet(WEB, DSLITE_B4, 6, true, b"syn-ack");
        assert_eq!(c.outbound(now, &ack, &mut out), Outbound::Send(b4_v6));
        assert_eq!(out, ack);
        let other = Ipv4Addr::new(192, 0, 0, 3);
        let cases = [
            // Another outer source than the B4.
            (aftr_v6, syn.clone(), DropReason::SpoofedSource),
            (v6("2001:db8:64::9"), syn.clone(), DropReason::SpoofedSource),
            // The B4 claiming another inner source.
            (
                b4_v6,
                packet(other, WEB, 6, true, b"x"),
                DropReason::SpoofedSource,
            ),
            // To nowhere it may go.
            (
                b4_v6,
                packet(DSLITE_B4, Ipv4Addr::BROADCAST, 17, true, b"x"),
                DropReason::BadInnerAddress,
            ),
            (
                b4_v6,
                packet(DSLITE_B4, DSLITE_B4, 17, true, b"x"),
                DropReason::BadInnerAddress,
            ),
        ];
        for (outer, pkt, reason) in cases {
            assert_eq!(c.inbound(outer, &pkt), Inbound::Drop(reason), "{reason:?}");
        }
        // Nothing into the softwire but packets to the B4.
        let astray = packet(WEB, other, 6, true, b"x");
        assert_eq!(
            c.outbound(now, &astray, &mut out),
            Outbound::Drop(DropReason::NoRoute)
        );
        assert_eq!((c.stats().packets_in, c.stats().packets_out), (1, 1));
        assert_eq!(c.stats().dropped_in_total(), 5);
        // A B4 address that cannot be one is refused at configuration.
        let mut bad = DsLiteConfig::new(b4_v6, aftr_v6);
        bad.local_v4 = Ipv4Addr::BROADCAST;
        assert!(DsLiteCore::new(&bad.aftr_end()).is_err());
    }

    #[test]
    fn round_trip_and_checks() {
        let mut c = b4();
        let now = Instant::now();
        let mut out = Vec::new();
        let pkt = packet(DSLITE_B4, WEB, 6, true, b"syn");
        assert_eq!(
            c.outbound(now, &pkt, &mut out),
            Outbound::Send(v6("2001:db8:64::1"))
        );
        assert_eq!(out, pkt);
        let reply = packet(WEB, DSLITE_B4, 6, true, b"syn-ack");
        assert_eq!(
            c.inbound(v6("2001:db8:64::1"), &reply),
            Inbound::Deliver(&reply[..])
        );
        assert_eq!((c.stats().packets_out, c.stats().packets_in), (1, 1));

        let aftr = v6("2001:db8:64::1");
        let cases: Vec<(Ipv6Addr, Vec<u8>, DropReason)> = vec![
            (
                v6("2001:db8:64::3"),
                reply.clone(),
                DropReason::SpoofedSource,
            ),
            (
                aftr,
                crate::overlay::ipv6::tests::packet(v6("::1"), v6("::2"), 59, b""),
                DropReason::WrongProtocol,
            ),
            (aftr, reply[..25].to_vec(), DropReason::Truncated),
            (
                aftr,
                packet(WEB, Ipv4Addr::new(192, 0, 0, 3), 6, true, b"x"),
                DropReason::WrongDestination,
            ),
            (
                aftr,
                packet(Ipv4Addr::new(224, 0, 0, 5), DSLITE_B4, 17, false, b"x"),
                DropReason::BadInnerAddress,
            ),
            (
                aftr,
                packet(DSLITE_B4, DSLITE_B4, 17, false, b"x"),
                DropReason::BadInnerAddress,
            ),
            (aftr, vec![0x45; 1461], DropReason::TooBig),
            (aftr, vec![0x45, 0, 0, 20], DropReason::Truncated),
        ];
        for (src, p, reason) in &cases {
            assert_eq!(c.inbound(*src, p), Inbound::Drop(*reason), "{reason:?}");
        }
        let mut sum = reply.clone();
        sum[8] ^= 1;
        assert_eq!(c.inbound(aftr, &sum), Inbound::Drop(DropReason::Checksum));
        assert_eq!(c.stats().packets_in, 1);
        assert_eq!(c.stats().dropped_in_total(), cases.len() as u64 + 1);

        // From the host.
        let n = c.stats().dropped_out_total();
        let bcast = packet(DSLITE_B4, Ipv4Addr::BROADCAST, 17, false, b"x");
        assert_eq!(
            c.outbound(now, &bcast, &mut out),
            Outbound::Drop(DropReason::NoRoute)
        );
        let mcast = packet(DSLITE_B4, Ipv4Addr::new(224, 0, 0, 22), 2, false, b"x");
        assert_eq!(
            c.outbound(now, &mcast, &mut out),
            Outbound::Drop(DropReason::NoRoute)
        );
        let other = packet(Ipv4Addr::new(192, 0, 0, 4), WEB, 17, false, b"x");
        assert_eq!(
            c.outbound(now, &other, &mut out),
            Outbound::Drop(DropReason::NotLocalSource)
        );
        assert_eq!(
            c.outbound(now, &[0x60; 40], &mut out),
            Outbound::Drop(DropReason::WrongProtocol)
        );
        assert_eq!(c.stats().dropped_out_total(), n + 4);
    }

    #[test]
    fn too_big_gets_frag_needed_only_with_df() {
        let mut c = b4();
        let now = Instant::now();
        let mut out = Vec::new();
        let big = packet(DSLITE_B4, WEB, 6, true, &[0; 1461 - 20]);
        assert_eq!(c.outbound(now, &big, &mut out), Outbound::Reply);
        let icmp = Ipv4Packet::parse(&out, 1500).unwrap();
        assert_eq!((icmp.src(), icmp.dst()), (WEB, DSLITE_B4));
        assert_eq!(&out[20..22], &[3, 4]);
        assert_eq!(u16::from_be_bytes([out[26], out[27]]), 1460);
        assert_eq!(fold(ones_sum(0, &out[20..])), 0);
        let no_df = packet(DSLITE_B4, WEB, 6, false, &[0; 1461 - 20]);
        assert_eq!(
            c.outbound(now, &no_df, &mut out),
            Outbound::Drop(DropReason::TooBig)
        );
        assert_eq!(c.stats().dropped_out_for(DropReason::TooBig), 2);
        assert_eq!(c.stats().icmp_errors, 1);
        let fits = packet(DSLITE_B4, WEB, 6, true, &[0; 1460 - 20]);
        assert!(matches!(
            c.outbound(now, &fits, &mut out),
            Outbound::Send(_)
        ));
    }

    #[test]
    fn config_is_checked() {
        let a = v6("2001:db8::1");
        assert!(DsLiteCore::new(&DsLiteConfig::new(a, a)).is_err());
        assert!(DsLiteCore::new(&DsLiteConfig::new(a, v6("ff02::1"))).is_err());
        assert!(DsLiteCore::new(&DsLiteConfig::new(a, v6("2001:db8::2")).with_mtu(575)).is_err());
        assert!(
            DsLiteCore::new(&DsLiteConfig::new(a, v6("2001:db8::2")).with_mtu(65_496)).is_err()
        );
        assert!(
            DsLiteCore::new(
                &DsLiteConfig::new(a, v6("2001:db8::2")).with_local_v4(Ipv4Addr::UNSPECIFIED, 29)
            )
            .is_err()
        );
        let mut out = Vec::new();
        encode_4in6(a, v6("2001:db8::2"), 64, &[0x45; 20], &mut out).unwrap();
        assert_eq!((out.len(), out[6], out[7]), (60, 4, 64));
        assert!(encode_4in6(a, a, 1, &vec![0; 65_536], &mut Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn inbound_never_panics_nor_delivers_foreign(buf in proptest::collection::vec(any::<u8>(), 0..120), spoof: bool) {
            let mut c = b4();
            let src = if spoof { v6("2001:db8:64::9") } else { c.aftr() };
            if let Inbound::Deliver(p) = c.inbound(src, &buf) {
                prop_assert!(!spoof);
                prop_assert_eq!(Ipv4Packet::parse(p, 1460).unwrap().dst(), DSLITE_B4);
            }
        }

        #[test]
        fn outbound_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut c = b4();
            let mut out = Vec::new();
            if let Outbound::Send(to) = c.outbound(Instant::now(), &buf, &mut out) {
                prop_assert_eq!(to, c.aftr());
                prop_assert_eq!(&out[..], &buf[..]);
            }
        }
    }
}
