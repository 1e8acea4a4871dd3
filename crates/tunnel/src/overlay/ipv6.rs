//! The fixed IPv6 header (RFC 8200 section 3), parsed in place, and the two ICMPv6 error
//! messages the overlay sends back to its own host (RFC 4443 sections 3.1 and 3.2).

use std::net::Ipv6Addr;

use crate::encap::{IPV6_HEADER_LEN, fold, ones_sum};

/// Next-header value of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// The smallest MTU every IPv6 link must carry (RFC 8200 section 5).
pub const IPV6_MIN_MTU: usize = 1280;
/// ICMPv6 Destination Unreachable.
pub const ICMPV6_DEST_UNREACHABLE: u8 = 1;
/// ICMPv6 Packet Too Big.
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;

/// Why bytes are not one well-formed IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ipv6Error {
    /// Fewer than the 40 bytes of the fixed header.
    #[error("IPv6 packet truncated: {got} bytes, the fixed header alone is 40")]
    Truncated {
        /// Bytes available.
        got: usize,
    },
    /// The version nibble is not 6.
    #[error("not an IPv6 packet: version nibble is {0}")]
    Version(u8),
    /// The payload length does not match the bytes given (40 + payload length must equal
    /// the buffer's length exactly: one packet per buffer, no trailing bytes).
    #[error("IPv6 payload length says {header} bytes, the packet carries {actual}")]
    Length {
        /// Payload length from the header.
        header: usize,
        /// Payload bytes present.
        actual: usize,
    },
    /// Payload length 0 with a hop-by-hop header: a jumbogram (RFC 2675), which no link
    /// the overlay uses can carry.
    #[error("IPv6 jumbograms (RFC 2675) are not carried")]
    Jumbogram,
    /// Larger than the limit the caller set (checked before anything is read past the
    /// header or copied).
    #[error("IPv6 packet of {len} bytes exceeds the {limit}-byte limit")]
    TooBig {
        /// The packet's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// An IPv6 packet borrowed from a buffer whose length was checked against the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<'a> {
    bytes: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    /// Checks that `buf` is exactly one IPv6 packet of at most `limit` bytes: the size is
    /// compared with `limit` first, then the version, then the payload length against the
    /// buffer. Never allocates, never copies.
    pub fn parse(buf: &'a [u8], limit: usize) -> Result<Self, Ipv6Error> {
        if buf.len() > limit {
            return Err(Ipv6Error::TooBig {
                len: buf.len(),
                limit,
            });
        }
        if buf.len() < IPV6_HEADER_LEN {
            return Err(Ipv6Error::Truncated { got: buf.len() });
        }
        let version = buf[0] >> 4;
        if version != 6 {
            return Err(Ipv6Error::Version(version));
        }
        let header = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
        let actual = buf.len() - IPV6_HEADER_LEN;
        if header == 0 && buf[6] == 0 && actual > 0 {
            return Err(Ipv6Error::Jumbogram);
        }
        if header != actual {
            return Err(Ipv6Error::Length { header, actual });
        }
        Ok(Self { bytes: buf })
    }

    /// The whole packet, header included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The packet's length in bytes (40 + payload length).
    #[allow(clippy::len_without_is_empty)] // a packet is never empty
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        addr_at(self.bytes, 8)
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        addr_at(self.bytes, 24)
    }

    /// The next-header field (the first extension header or the upper-layer protocol).
    pub fn next_header(&self) -> u8 {
        self.bytes[6]
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.bytes[7]
    }

    /// The bytes after the fixed header.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[IPV6_HEADER_LEN..]
    }

    /// Whether this is an ICMPv6 error message (type below 128, RFC 4443 section 2.1)
    /// right after the fixed header: no ICMPv6 error may be sent about one (section 2.4 e).
    /// A packet with extension headers before its ICMPv6 header counts as one too (the
    /// overlay does not walk extension headers, so it stays on the safe side).
    pub fn is_icmpv6_error(&self) -> bool {
        match self.next_header() {
            PROTO_ICMPV6 => self.payload().first().is_none_or(|t| *t < 128),
            // Hop-by-hop, routing, fragment, destination options: may hide an ICMPv6 error.
            0 | 43 | 44 | 60 => true,
            _ => false,
        }
    }
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// The upper-layer checksum (ICMPv6, UDP, TCP) over the IPv6 pseudo-header (RFC 8200
/// section 8.1: source, destination, upper-layer length, next header `proto`) and
/// `message`, checksum field included (zero it to compute, or check that the result is 0).
pub fn pseudo_header_checksum(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, message: &[u8]) -> u16 {
    let mut sum = ones_sum(0, &src.octets());
    sum = ones_sum(sum, &dst.octets());
    let len = message.len() as u32;
    sum = ones_sum(sum, &len.to_be_bytes());
    sum = ones_sum(sum, &[0, 0, 0, proto]);
    fold(ones_sum(sum, message))
}

/// The ICMPv6 checksum over the pseudo-header and `message`.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    pseudo_header_checksum(src, dst, PROTO_ICMPV6, message)
}

/// Builds an ICMPv6 error message (`kind`, `code`, the 4-byte `word`) about `invoking`,
/// from `src` to the invoking packet's source, carrying as much of the invoking packet as
/// keeps the whole message within 1,280 bytes (RFC 4443 section 2.4 c).
fn icmpv6_error(kind: u8, code: u8, word: [u8; 4], src: Ipv6Addr, invoking: &[u8]) -> Vec<u8> {
    let dst = addr_at(invoking, 8);
    let quoted = invoking.len().min(IPV6_MIN_MTU - IPV6_HEADER_LEN - 8);
    let payload_len = 8 + quoted;
    let mut out = Vec::with_capacity(IPV6_HEADER_LEN + payload_len);
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(payload_len as u16).to_be_bytes());
    out.push(PROTO_ICMPV6);
    out.push(255);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&[kind, code, 0, 0]);
    out.extend_from_slice(&word);
    out.extend_from_slice(&invoking[..quoted]);
    let c = icmpv6_checksum(src, dst, &out[IPV6_HEADER_LEN..]);
    out[IPV6_HEADER_LEN + 2..IPV6_HEADER_LEN + 4].copy_from_slice(&c.to_be_bytes());
    out
}

/// An ICMPv6 Packet Too Big (type 2, code 0, RFC 4443 section 3.2) telling the sender of
/// `invoking` that the next hop carries at most `mtu` bytes, sent from `src`. `mtu` is
/// raised to 1,280 if lower: a node never lowers its path MTU below that (RFC 8201
/// section 4).
pub fn packet_too_big(src: Ipv6Addr, invoking: &Ipv6Packet<'_>, mtu: usize) -> Vec<u8> {
    let mtu = u32::try_from(mtu.max(IPV6_MIN_MTU)).unwrap_or(u32::MAX);
    icmpv6_error(
        ICMPV6_PACKET_TOO_BIG,
        0,
        mtu.to_be_bytes(),
        src,
        invoking.bytes(),
    )
}

/// An ICMPv6 Destination Unreachable with code 3, address unreachable (RFC 4443 section
/// 3.1), about `invoking`, sent from `src`.
pub fn address_unreachable(src: Ipv6Addr, invoking: &Ipv6Packet<'_>) -> Vec<u8> {
    icmpv6_error(ICMPV6_DEST_UNREACHABLE, 3, [0; 4], src, invoking.bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An IPv6 packet from `src` to `dst` with next header `nh` and `payload`.
    pub(crate) fn packet(src: Ipv6Addr, dst: Ipv6Addr, nh: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.push(nh);
        p.push(64);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(payload);
        p
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_checks_lengths() {
        let p = packet(a("fd00::1"), a("fd00::2"), 17, b"12345678");
        let v = Ipv6Packet::parse(&p, 1500).unwrap();
        assert_eq!((v.src(), v.dst()), (a("fd00::1"), a("fd00::2")));
        assert_eq!((v.next_header(), v.hop_limit(), v.len()), (17, 64, 48));
        assert_eq!(v.payload(), b"12345678");
        assert!(!v.is_icmpv6_error());

        assert_eq!(
            Ipv6Packet::parse(&p, 47),
            Err(Ipv6Error::TooBig { len: 48, limit: 47 })
        );
        assert_eq!(
            Ipv6Packet::parse(&p[..39], 1500),
            Err(Ipv6Error::Truncated { got: 39 })
        );
        assert_eq!(
            Ipv6Packet::parse(&p[..47], 1500),
            Err(Ipv6Error::Length {
                header: 8,
                actual: 7
            })
        );
        let mut long = p.clone();
        long.push(0);
        assert_eq!(
            Ipv6Packet::parse(&long, 1500),
            Err(Ipv6Error::Length {
                header: 8,
                actual: 9
            })
        );
        let mut v4 = p.clone();
        v4[0] = 0x45;
        assert_eq!(Ipv6Packet::parse(&v4, 1500), Err(Ipv6Error::Version(4)));
        let mut jumbo = p.clone();
        jumbo[4] = 0;
        jumbo[5] = 0;
        jumbo[6] = 0;
        assert_eq!(Ipv6Packet::parse(&jumbo, 1500), Err(Ipv6Error::Jumbogram));
        // A header alone (payload length 0, no next header) is a valid packet.
        let empty = packet(a("fd00::1"), a("fd00::2"), 59, b"");
        assert_eq!(Ipv6Packet::parse(&empty, 1500).unwrap().len(), 40);
    }

    #[test]
    fn icmpv6_errors_are_recognised() {
        let err = packet(a("fd00::1"), a("fd00::2"), PROTO_ICMPV6, &[1, 0, 0, 0]);
        assert!(Ipv6Packet::parse(&err, 1500).unwrap().is_icmpv6_error());
        let echo = packet(a("fd00::1"), a("fd00::2"), PROTO_ICMPV6, &[128, 0, 0, 0]);
        assert!(!Ipv6Packet::parse(&echo, 1500).unwrap().is_icmpv6_error());
        let hbh = packet(a("fd00::1"), a("fd00::2"), 0, &[58, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Ipv6Packet::parse(&hbh, 1500).unwrap().is_icmpv6_error());
    }

    /// The RFC 4443 layout of a Packet Too Big, and a checksum that verifies: the sum over
    /// the pseudo-header and the message, checksum field included, is 0xffff (so the
    /// recomputed complement is zero).
    #[test]
    fn packet_too_big_layout_and_checksum() {
        let big = packet(a("fd00::1"), a("fd00::2"), 6, &[7u8; 1400]);
        let inv = Ipv6Packet::parse(&big, 2000).unwrap();
        let ptb = packet_too_big(a("fd00::2"), &inv, 1350);
        assert_eq!(
            ptb.len(),
            1280,
            "as much of the packet as fits in 1280 bytes"
        );
        let v = Ipv6Packet::parse(&ptb, 1280).unwrap();
        assert_eq!((v.src(), v.dst()), (a("fd00::2"), a("fd00::1")));
        assert_eq!((v.next_header(), v.hop_limit()), (PROTO_ICMPV6, 255));
        let icmp = v.payload();
        assert_eq!(&icmp[..2], &[2, 0]);
        assert_eq!(
            u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
            1350
        );
        assert_eq!(&icmp[8..48], &big[..40], "the invoking header is quoted");
        assert_eq!(icmpv6_checksum(v.src(), v.dst(), icmp), 0);
        assert!(v.is_icmpv6_error());
        // Never below the IPv6 minimum MTU.
        let low = packet_too_big(a("fd00::2"), &inv, 1000);
        assert_eq!(
            u32::from_be_bytes([low[44], low[45], low[46], low[47]]),
            1280
        );
        // A short invoking packet is quoted whole.
        let small = packet(a("fd00::1"), a("fd00::2"), 6, &[1; 20]);
        let un = address_unreachable(a("fd00::9"), &Ipv6Packet::parse(&small, 2000).unwrap());
        assert_eq!(un.len(), 40 + 8 + 60);
        assert_eq!(&un[40..44], &[1, 3, un[42], un[43]]);
        assert_eq!(icmpv6_checksum(a("fd00::9"), a("fd00::1"), &un[40..]), 0);
    }

    /// The checksum against an independent computation: RFC 1071's worked example sums
    /// 00 01 f2 03 f4 f5 f6 f7 to 0xddf2, so a message of those bytes with an all-zero
    /// pseudo-header part checks to !0xddf2 once the fixed pseudo-header words are added.
    #[test]
    fn checksum_matches_rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(ones_sum(0, &data)), !0xddf2);
        // Pseudo-header of :: to :: with length 8 adds 8 + 58 to the sum.
        let c = icmpv6_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, &data);
        assert_eq!(c, !(0xddf2u16 + 8 + 58));
    }

    proptest! {
        #[test]
        fn parse_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200), limit in 0usize..300) {
            if let Ok(p) = Ipv6Packet::parse(&buf, limit) {
                prop_assert_eq!(p.len(), buf.len());
                prop_assert!(p.len() <= limit);
                let _ = (p.src(), p.dst(), p.is_icmpv6_error());
            }
        }
    }
}
