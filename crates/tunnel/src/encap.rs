//! 6in4 / 6to4 encapsulation (RFC 4213 section 3, RFC 3056 section 5): an IPv6 packet carried as
//! the payload of an IPv4 packet with protocol number 41.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::TunnelError;

/// IPv4 protocol number of an encapsulated IPv6 packet.
pub const PROTO_IPV6: u8 = 41;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// The largest IPv4 packet (the total-length field is 16 bits).
pub const MAX_IPV4_PACKET: usize = 65_535;

/// A decoded 6in4 packet; `inner` borrows the IPv6 packet from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SixIn4Packet<'a> {
    /// Outer IPv4 source.
    pub src: Ipv4Addr,
    /// Outer IPv4 destination.
    pub dst: Ipv4Addr,
    /// Outer IPv4 time to live.
    pub ttl: u8,
    /// Outer IPv4 identification.
    pub ident: u16,
    /// The IPv6 packet: exactly 40 bytes of header plus its payload length.
    pub inner: &'a [u8],
}

/// Adds `data` to a running RFC 1071 one's-complement sum (an odd last byte is padded with
/// zero). Start from 0; finish with [`fold`].
pub(crate) fn ones_sum(mut sum: u32, data: &[u8]) -> u32 {
    let mut pairs = data.chunks_exact(2);
    for pair in &mut pairs {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        // Fold early so the sum never overflows, whatever the length.
        if sum > 0xffff_0000 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = pairs.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// The one's complement of a folded [`ones_sum`]: the checksum field's value.
pub(crate) fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The RFC 1071 internet checksum of `data` (an odd last byte is padded with zero).
fn checksum(data: &[u8]) -> u16 {
    fold(ones_sum(0, data))
}

/// Checks that `inner` starts with an IPv6 header and returns its length (40 + payload length).
fn ipv6_len(inner: &[u8]) -> Result<usize, TunnelError> {
    if inner.len() < IPV6_HEADER_LEN {
        return Err(TunnelError::Truncated {
            need: IPV6_HEADER_LEN,
            got: inner.len(),
        });
    }
    let version = inner[0] >> 4;
    if version != 6 {
        return Err(TunnelError::Malformed {
            field: "inner IPv6 version",
            detail: format!("version nibble is {version}, expected 6"),
        });
    }
    let payload = usize::from(u16::from_be_bytes([inner[4], inner[5]]));
    let need = IPV6_HEADER_LEN + payload;
    if inner.len() < need {
        return Err(TunnelError::Truncated {
            need,
            got: inner.len(),
        });
    }
    Ok(need)
}

impl<'a> SixIn4Packet<'a> {
    /// Decodes an IPv4 packet (as a raw protocol-41 socket delivers it, header included).
    ///
    /// Checks version, header length, total length against the buffer, the header checksum,
    /// protocol 41, that the packet is not a fragment, and that the payload is an IPv6 packet
    /// whose payload length fits. Bytes after the IPv4 total length, and after the IPv6 packet
    /// within it, are ignored. Never allocates except for an error message.
    pub fn decode(buf: &'a [u8]) -> Result<Self, TunnelError> {
        if buf.len() < IPV4_HEADER_LEN {
            return Err(TunnelError::Truncated {
                need: IPV4_HEADER_LEN,
                got: buf.len(),
            });
        }
        let version = buf[0] >> 4;
        if version != 4 {
            return Err(TunnelError::Malformed {
                field: "IPv4 version",
                detail: format!("version nibble is {version}, expected 4"),
            });
        }
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        if ihl < IPV4_HEADER_LEN {
            return Err(TunnelError::Malformed {
                field: "IPv4 header length",
                detail: format!("IHL gives {ihl} bytes, minimum is 20"),
            });
        }
        let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if total < ihl {
            return Err(TunnelError::Malformed {
                field: "IPv4 total length",
                detail: format!("total length {total} is shorter than the {ihl}-byte header"),
            });
        }
        if buf.len() < total {
            return Err(TunnelError::Truncated {
                need: total,
                got: buf.len(),
            });
        }
        // A header whose checksum field is right sums (one's complement) to 0xffff, so the
        // checksum over the whole header, field included, is zero.
        if checksum(&buf[..ihl]) != 0 {
            let stored = u16::from_be_bytes([buf[10], buf[11]]);
            let mut hdr = [0u8; 60];
            hdr[..ihl].copy_from_slice(&buf[..ihl]);
            hdr[10] = 0;
            hdr[11] = 0;
            let computed = checksum(&hdr[..ihl]);
            return Err(TunnelError::Checksum { stored, computed });
        }
        let frag = u16::from_be_bytes([buf[6], buf[7]]);
        let more = frag & 0x2000 != 0;
        let offset = frag & 0x1fff;
        if more || offset != 0 {
            return Err(TunnelError::Fragment { offset, more });
        }
        if buf[9] != PROTO_IPV6 {
            return Err(TunnelError::NotProto41(buf[9]));
        }
        let payload = &buf[ihl..total];
        let inner_len = ipv6_len(payload)?;
        Ok(Self {
            src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
            dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
            ttl: buf[8],
            ident: u16::from_be_bytes([buf[4], buf[5]]),
            inner: &payload[..inner_len],
        })
    }

    /// Source address of the inner IPv6 header.
    pub fn inner_src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.inner[8..24]);
        Ipv6Addr::from(a)
    }

    /// Destination address of the inner IPv6 header.
    pub fn inner_dst(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.inner[24..40]);
        Ipv6Addr::from(a)
    }

    /// Re-encodes this packet (an option-free IPv4 header) into `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), TunnelError> {
        encode_6in4(self.src, self.dst, self.ttl, self.ident, self.inner, out)
    }
}

/// Appends to `out` an IPv4 packet (20-byte header, no options, DF clear as RFC 4213 section
/// 3.2.1 asks for a fixed 1280-byte tunnel MTU, checksum filled in) carrying `inner`, which must
/// be exactly one IPv6 packet (its payload length plus 40 equals `inner.len()`).
///
/// The size limit is checked before anything is appended.
pub fn encode_6in4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    ident: u16,
    inner: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TunnelError> {
    let total = IPV4_HEADER_LEN + inner.len();
    if total > MAX_IPV4_PACKET {
        return Err(TunnelError::TooLarge(total));
    }
    let need = ipv6_len(inner)?;
    if need != inner.len() {
        return Err(TunnelError::Malformed {
            field: "inner IPv6 payload length",
            detail: format!(
                "header says {need} bytes but {} were given; pass exactly one IPv6 packet",
                inner.len()
            ),
        });
    }
    let total16 = u16::try_from(total).map_err(|_| TunnelError::TooLarge(total))?;
    let mut hdr = [0u8; IPV4_HEADER_LEN];
    hdr[0] = 0x45;
    hdr[2..4].copy_from_slice(&total16.to_be_bytes());
    hdr[4..6].copy_from_slice(&ident.to_be_bytes());
    hdr[8] = ttl;
    hdr[9] = PROTO_IPV6;
    hdr[12..16].copy_from_slice(&src.octets());
    hdr[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&hdr);
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
    out.reserve(total);
    out.extend_from_slice(&hdr);
    out.extend_from_slice(inner);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ipv6_packet(payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; IPV6_HEADER_LEN];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p[6] = 59; // no next header
        p[7] = 64;
        p[8..24].copy_from_slice(&"2002:c000:201::1".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"2002:c000:202::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn round_trip_and_checks() {
        let inner = ipv6_packet(b"hello");
        let (s, d) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        let mut out = Vec::new();
        encode_6in4(s, d, 64, 7, &inner, &mut out).unwrap();
        assert_eq!(out.len(), 20 + 45);
        assert_eq!(checksum(&out[..20]), 0, "a valid header sums to zero");
        let p = SixIn4Packet::decode(&out).unwrap();
        assert_eq!((p.src, p.dst, p.ttl, p.ident), (s, d, 64, 7));
        assert_eq!(p.inner, &inner[..]);
        assert_eq!(
            p.inner_src(),
            "2002:c000:201::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            p.inner_dst(),
            "2002:c000:202::2".parse::<Ipv6Addr>().unwrap()
        );
        // Trailing bytes after the total length (Ethernet padding) are ignored.
        let mut padded = out.clone();
        padded.extend_from_slice(&[0; 9]);
        assert_eq!(SixIn4Packet::decode(&padded).unwrap(), p);

        let mut bad = out.clone();
        bad[11] ^= 1;
        assert!(matches!(
            SixIn4Packet::decode(&bad),
            Err(TunnelError::Checksum { .. })
        ));
        let fix = |mut b: Vec<u8>| {
            b[10] = 0;
            b[11] = 0;
            let c = checksum(&b[..20]);
            b[10..12].copy_from_slice(&c.to_be_bytes());
            b
        };
        let mut b = out.clone();
        b[9] = 17;
        assert_eq!(
            SixIn4Packet::decode(&fix(b)),
            Err(TunnelError::NotProto41(17))
        );
        let mut b = out.clone();
        b[6] = 0x20;
        assert!(matches!(
            SixIn4Packet::decode(&fix(b)),
            Err(TunnelError::Fragment { more: true, .. })
        ));
        let mut b = out.clone();
        b[0] = 0x65;
        assert!(matches!(
            SixIn4Packet::decode(&b),
            Err(TunnelError::Malformed { .. })
        ));
        let mut b = out.clone();
        b[0] = 0x44;
        assert!(matches!(
            SixIn4Packet::decode(&b),
            Err(TunnelError::Malformed { .. })
        ));
        let mut b = out.clone();
        b[20] = 0x40;
        assert!(matches!(
            SixIn4Packet::decode(&b),
            Err(TunnelError::Malformed { .. })
        ));
        assert!(matches!(
            SixIn4Packet::decode(&out[..40]),
            Err(TunnelError::Truncated { need: 65, got: 40 })
        ));
        // Inner payload length pointing past the outer packet.
        let mut b = out.clone();
        b[25] = 200;
        assert!(matches!(
            SixIn4Packet::decode(&b),
            Err(TunnelError::Truncated { .. })
        ));
    }

    #[test]
    fn encode_limits() {
        let mut out = Vec::new();
        let big = ipv6_packet(&vec![0; 65_535 - 40]);
        assert_eq!(
            encode_6in4(
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::LOCALHOST,
                1,
                0,
                &big,
                &mut out
            ),
            Err(TunnelError::TooLarge(65_555))
        );
        assert!(out.is_empty());
        let max = ipv6_packet(&vec![0; 65_535 - 60]);
        encode_6in4(
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
            1,
            0,
            &max,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 65_535);
        let mut short = ipv6_packet(b"abc");
        short.push(0);
        assert!(
            encode_6in4(
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::LOCALHOST,
                1,
                0,
                &short,
                &mut Vec::new()
            )
            .is_err()
        );
        assert!(
            encode_6in4(
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::LOCALHOST,
                1,
                0,
                &[0x60; 10],
                &mut Vec::new()
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SixIn4Packet::decode(&buf);
        }

        #[test]
        fn decode_never_panics_near_valid(payload in proptest::collection::vec(any::<u8>(), 0..64), flip in 0usize..128, bit in 0u8..8) {
            let mut out = Vec::new();
            encode_6in4(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8), 9, 10, &ipv6_packet(&payload), &mut out).unwrap();
            let i = flip % out.len();
            out[i] ^= 1 << bit;
            if let Ok(p) = SixIn4Packet::decode(&out) {
                let mut again = Vec::new();
                p.encode(&mut again).unwrap();
                prop_assert_eq!(SixIn4Packet::decode(&again).unwrap(), p);
            }
        }

        #[test]
        fn round_trip(s: u32, d: u32, ttl: u8, ident: u16, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let inner = ipv6_packet(&payload);
            let mut out = Vec::new();
            encode_6in4(Ipv4Addr::from(s), Ipv4Addr::from(d), ttl, ident, &inner, &mut out).unwrap();
            let p = SixIn4Packet::decode(&out).unwrap();
            prop_assert_eq!((u32::from(p.src), u32::from(p.dst), p.ttl, p.ident), (s, d, ttl, ident));
            prop_assert_eq!(p.inner, &inner[..]);
        }
    }
}
