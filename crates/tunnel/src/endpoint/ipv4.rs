//! The IPv4 header (RFC 791), parsed in place, and the ICMP Fragmentation Needed message
//! (RFC 792, RFC 1191 section 4) the DS-Lite endpoint sends back to its host.

use std::net::Ipv4Addr;

use crate::encap::{IPV4_HEADER_LEN, fold, ones_sum};

/// IPv4 protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// The smallest MTU every IPv4 host must accept without fragments (RFC 791: 68; every
/// link the DS-Lite endpoint runs on carries at least 576 per RFC 1122, the floor used).
pub const IPV4_MIN_MTU: u16 = 576;

/// Why bytes are not one well-formed IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ipv4Error {
    /// Larger than the caller's limit (checked first).
    #[error("IPv4 packet of {len} bytes exceeds the {limit}-byte limit")]
    TooBig {
        /// The packet's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Shorter than the 20-byte header, its IHL, or its total length.
    #[error("IPv4 packet truncated: need {need} bytes, got {got}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// The version nibble is not 4.
    #[error("not an IPv4 packet: version nibble is {0}")]
    Version(u8),
    /// IHL below 5, or a total length below the header or other than the buffer's length.
    #[error("malformed IPv4 header: {0}")]
    Malformed(&'static str),
    /// The header checksum does not verify.
    #[error("IPv4 header checksum does not verify")]
    Checksum,
}

/// An IPv4 packet borrowed from a buffer whose length equals its total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    bytes: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Checks that `buf` is exactly one IPv4 packet of at most `limit` bytes: the size
    /// first, then version, IHL, total length (must equal `buf.len()`) and the header
    /// checksum. Never allocates, never copies.
    pub fn parse(buf: &'a [u8], limit: usize) -> Result<Self, Ipv4Error> {
        if buf.len() > limit {
            return Err(Ipv4Error::TooBig {
                len: buf.len(),
                limit,
            });
        }
        if buf.len() < IPV4_HEADER_LEN {
            return Err(Ipv4Error::Truncated {
                need: IPV4_HEADER_LEN,
                got: buf.len(),
            });
        }
        let version = buf[0] >> 4;
        if version != 4 {
            return Err(Ipv4Error::Version(version));
        }
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        if ihl < IPV4_HEADER_LEN {
            return Err(Ipv4Error::Malformed("IHL below 5"));
        }
        if buf.len() < ihl {
            return Err(Ipv4Error::Truncated {
                need: ihl,
                got: buf.len(),
            });
        }
        let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if total < ihl {
            return Err(Ipv4Error::Malformed("total length below the header length"));
        }
        if total > buf.len() {
            return Err(Ipv4Error::Truncated {
                need: total,
                got: buf.len(),
            });
        }
        if total != buf.len() {
            return Err(Ipv4Error::Malformed(
                "bytes after the total length (one packet per buffer)",
            ));
        }
        if fold(ones_sum(0, &buf[..ihl])) != 0 {
            return Err(Ipv4Error::Checksum);
        }
        Ok(Self { bytes: buf })
    }

    /// The whole packet.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Its length in bytes.
    #[allow(clippy::len_without_is_empty)] // a packet is never empty
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The header length (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.bytes[0] & 0x0f) * 4
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            self.bytes[12],
            self.bytes[13],
            self.bytes[14],
            self.bytes[15],
        )
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(
            self.bytes[16],
            self.bytes[17],
            self.bytes[18],
            self.bytes[19],
        )
    }

    /// The protocol field.
    pub fn protocol(&self) -> u8 {
        self.bytes[9]
    }

    /// Whether DF (don't fragment) is set.
    pub fn dont_fragment(&self) -> bool {
        self.bytes[6] & 0x40 != 0
    }

    /// Whether this is a fragment other than the first (offset not zero).
    pub fn is_later_fragment(&self) -> bool {
        u16::from_be_bytes([self.bytes[6], self.bytes[7]]) & 0x1fff != 0
    }

    /// Whether this is an ICMP error message (types 3, 4, 5, 11, 12) or a later fragment:
    /// no ICMP error may be sent about either (RFC 1122 section 3.2.2).
    pub fn is_icmp_error_or_fragment(&self) -> bool {
        if self.is_later_fragment() {
            return true;
        }
        self.protocol() == PROTO_ICMP
            && self
                .bytes
                .get(self.header_len())
                .is_none_or(|t| matches!(t, 3 | 4 | 5 | 11 | 12))
    }
}

/// Whether `a` may be the source of a unicast packet: not unspecified, loopback,
/// multicast, broadcast or in 240/4.
pub(crate) fn is_unicast_v4(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.octets()[0] >= 224)
}

/// An ICMP Destination Unreachable, code 4 (fragmentation needed and DF set), telling the
/// sender of `invoking` that the next hop carries `mtu` bytes (RFC 1191 section 4), sent
/// from `src`; it quotes the invoking header and the first 8 bytes after it. Written into
/// `out` (cleared first).
pub fn frag_needed(src: Ipv4Addr, invoking: &Ipv4Packet<'_>, mtu: u16, out: &mut Vec<u8>) {
    let quoted = &invoking.bytes()[..(invoking.header_len() + 8).min(invoking.len())];
    let total = IPV4_HEADER_LEN + 8 + quoted.len();
    out.clear();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 64, PROTO_ICMP, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&invoking.src().octets());
    let c = fold(ones_sum(0, &out[..IPV4_HEADER_LEN]));
    out[10..12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&mtu.to_be_bytes());
    out.extend_from_slice(quoted);
    let c = fold(ones_sum(0, &out[IPV4_HEADER_LEN..]));
    out[IPV4_HEADER_LEN + 2..IPV4_HEADER_LEN + 4].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An IPv4 packet from `src` to `dst`, protocol `proto`, DF as given, with `payload`.
    pub(crate) fn packet(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        df: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 7, if df { 0x40 } else { 0 }, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        let c = fold(ones_sum(0, &p));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);

    #[test]
    fn parses_and_checks() {
        let p = packet(A, B, 17, true, b"12345678");
        let v = Ipv4Packet::parse(&p, 1500).unwrap();
        assert_eq!((v.src(), v.dst(), v.protocol(), v.len()), (A, B, 17, 28));
        assert!(v.dont_fragment() && !v.is_icmp_error_or_fragment());
        assert_eq!(
            Ipv4Packet::parse(&p, 27),
            Err(Ipv4Error::TooBig { len: 28, limit: 27 })
        );
        assert_eq!(
            Ipv4Packet::parse(&p[..19], 1500),
            Err(Ipv4Error::Truncated { need: 20, got: 19 })
        );
        assert_eq!(
            Ipv4Packet::parse(&p[..27], 1500),
            Err(Ipv4Error::Truncated { need: 28, got: 27 })
        );
        let mut long = p.clone();
        long.push(0);
        assert!(matches!(
            Ipv4Packet::parse(&long, 1500),
            Err(Ipv4Error::Malformed(_))
        ));
        let mut v6 = p.clone();
        v6[0] = 0x65;
        assert_eq!(Ipv4Packet::parse(&v6, 1500), Err(Ipv4Error::Version(6)));
        let mut ihl = p.clone();
        ihl[0] = 0x44;
        assert!(matches!(
            Ipv4Packet::parse(&ihl, 1500),
            Err(Ipv4Error::Malformed(_))
        ));
        let mut ihl = p.clone();
        ihl[0] = 0x4f;
        assert!(matches!(
            Ipv4Packet::parse(&ihl, 1500),
            Err(Ipv4Error::Truncated { need: 60, got: 28 })
        ));
        let mut sum = p.clone();
        sum[8] = 63;
        assert_eq!(Ipv4Packet::parse(&sum, 1500), Err(Ipv4Error::Checksum));
        let err = packet(A, B, PROTO_ICMP, false, &[3, 1, 0, 0]);
        assert!(
            Ipv4Packet::parse(&err, 1500)
                .unwrap()
                .is_icmp_error_or_fragment()
        );
        let echo = packet(A, B, PROTO_ICMP, false, &[8, 0, 0, 0]);
        assert!(
            !Ipv4Packet::parse(&echo, 1500)
                .unwrap()
                .is_icmp_error_or_fragment()
        );
    }

    #[test]
    fn frag_needed_layout_and_checksums() {
        let big = packet(A, B, 6, true, &[9u8; 1500]);
        let inv = Ipv4Packet::parse(&big, 2000).unwrap();
        let mut out = Vec::new();
        frag_needed(B, &inv, 1460, &mut out);
        let v = Ipv4Packet::parse(&out, 1500).unwrap();
        assert_eq!((v.src(), v.dst(), v.protocol()), (B, A, PROTO_ICMP));
        assert_eq!(v.len(), 20 + 8 + 28);
        let icmp = &out[20..];
        assert_eq!(&icmp[..2], &[3, 4]);
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1460);
        assert_eq!(&icmp[8..], &big[..28]);
        assert_eq!(fold(ones_sum(0, icmp)), 0, "ICMP checksum verifies");
        assert!(v.is_icmp_error_or_fragment());
    }

    proptest! {
        #[test]
        fn parse_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..120), limit in 0usize..200) {
            if let Ok(p) = Ipv4Packet::parse(&buf, limit) {
                prop_assert_eq!(p.len(), buf.len());
                prop_assert!(p.header_len() <= p.len());
                let _ = (p.src(), p.dst(), p.is_icmp_error_or_fragment());
                let mut out = Vec::new();
                frag_needed(p.dst(), &p, 1280, &mut out);
                prop_assert!(Ipv4Packet::parse(&out, 200).is_ok());
            }
        }
    }
}
