//! Address maths for the IPv6 transition mechanisms. Pure functions, no I/O.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::TunnelError;

// ---------------------------------------------------------------- 6to4 (RFC 3056)

/// The 6to4 relay anycast address 192.88.99.1 (RFC 3068, deprecated for new use by RFC 7526).
pub const SIXTO4_RELAY_ANYCAST: Ipv4Addr = Ipv4Addr::new(192, 88, 99, 1);

/// The 6to4 /48 prefix `2002:V4ADDR::/48` of an IPv4 address (RFC 3056 section 2).
///
/// Pure maths: use [`sixto4_eligible`] to know whether the address may actually be used.
pub fn sixto4_prefix(v4: Ipv4Addr) -> Ipv6Addr {
    let o = v4.octets();
    Ipv6Addr::new(
        0x2002,
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
        0,
        0,
        0,
        0,
        0,
    )
}

/// Whether `addr` is in 2002::/16.
pub fn is_sixto4(addr: Ipv6Addr) -> bool {
    addr.segments()[0] == 0x2002
}

/// The IPv4 address embedded in a 6to4 address (bits 16..48), or `None` outside 2002::/16.
pub fn sixto4_v4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    if !is_sixto4(addr) {
        return None;
    }
    let o = addr.octets();
    Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
}

/// Whether an IPv4 address is globally routable unicast, hence usable for 6to4 (RFC 3056 section
/// 2 requires a globally unique address) and as a "public IPv4" for Teredo/6in4 decisions.
///
/// Rejects 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24, the three
/// documentation /24s, 192.88.99/24, 192.168/16, 198.18/15, multicast and 240/4.
pub fn sixto4_eligible(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(o[0] == 0
        || o[0] == 10
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || o[0] == 127
        || (o[0] == 169 && o[1] == 254)
        || (o[0] == 172 && (o[1] & 0xf0) == 16)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 0 && o[2] == 2)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
        || (o[0] == 192 && o[1] == 168)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || o[0] >= 224)
}

// ---------------------------------------------------------------- Teredo (RFC 4380)

/// The Teredo prefix 2001::/32 (RFC 4380 section 2.6).
pub const TEREDO_PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0);

/// The parts of a Teredo address (RFC 4380 section 4):
/// `2001:0000 | server IPv4 | flags | port ^ 0xffff | client IPv4 ^ 0xffffffff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TeredoAddr {
    /// The Teredo server's IPv4 address.
    pub server: Ipv4Addr,
    /// The 16 flag bits (bit 0x8000 is the "cone" flag; RFC 5991 randomises twelve others).
    pub flags: u16,
    /// The client's external (mapped) UDP port, stored obfuscated on the wire.
    pub mapped_port: u16,
    /// The client's external (mapped) IPv4 address, stored obfuscated on the wire.
    pub mapped_addr: Ipv4Addr,
}

impl TeredoAddr {
    /// The cone flag bit (RFC 4380 section 4).
    pub const CONE_FLAG: u16 = 0x8000;

    /// Parses a Teredo address; fails outside 2001::/32.
    pub fn from_ipv6(addr: Ipv6Addr) -> Result<Self, TunnelError> {
        let s = addr.segments();
        if s[0] != 0x2001 || s[1] != 0 {
            return Err(TunnelError::NotTeredo(addr));
        }
        let o = addr.octets();
        Ok(Self {
            server: Ipv4Addr::new(o[4], o[5], o[6], o[7]),
            flags: s[4],
            mapped_port: s[5] ^ 0xffff,
            mapped_addr: Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]),
        })
    }

    /// Builds the IPv6 address.
    pub fn to_ipv6(&self) -> Ipv6Addr {
        let sv = self.server.octets();
        let m = self.mapped_addr.octets();
        Ipv6Addr::new(
            0x2001,
            0,
            u16::from_be_bytes([sv[0], sv[1]]),
            u16::from_be_bytes([sv[2], sv[3]]),
            self.flags,
            self.mapped_port ^ 0xffff,
            u16::from_be_bytes([!m[0], !m[1]]),
            u16::from_be_bytes([!m[2], !m[3]]),
        )
    }

    /// Whether the cone flag is set.
    pub fn is_cone(&self) -> bool {
        self.flags & Self::CONE_FLAG != 0
    }
}

// ---------------------------------------------------------------- ISATAP (RFC 5214)

/// The ISATAP interface identifier of an IPv4 address (RFC 5214 section 6.1):
/// `0000:5efe:V4ADDR`, or `0200:5efe:V4ADDR` when `global` (the IPv4 address is globally unique,
/// so the u/l bit is set).
pub fn isatap_iid(v4: Ipv4Addr, global: bool) -> u64 {
    let head: u64 = if global { 0x0200_5efe } else { 0x0000_5efe };
    (head << 32) | u64::from(u32::from(v4))
}

/// The ISATAP address: the upper 64 bits of `prefix` followed by [`isatap_iid`].
pub fn isatap_addr(prefix: Ipv6Addr, v4: Ipv4Addr, global: bool) -> Ipv6Addr {
    let p = u128::from(prefix) & !u128::from(u64::MAX);
    Ipv6Addr::from(p | u128::from(isatap_iid(v4, global)))
}

/// The IPv4 address of an ISATAP address, or `None` when the interface identifier is not
/// `0000:5efe` / `0200:5efe` followed by an IPv4 address.
pub fn isatap_v4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = addr.octets();
    if (o[8] == 0x00 || o[8] == 0x02) && o[9] == 0 && o[10] == 0x5e && o[11] == 0xfe {
        Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    } else {
        None
    }
}

// ---------------------------------------------------------------- NAT64 (RFC 6052, RFC 7050)

/// The name whose AAAA a DNS64 resolver synthesizes (RFC 7050 section 2).
pub const IPV4ONLY_ARPA: &str = "ipv4only.arpa";
/// The first well-known IPv4 address of ipv4only.arpa (RFC 7050 section 2.2).
pub const WKA_170: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 170);
/// The second well-known IPv4 address of ipv4only.arpa.
pub const WKA_171: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 171);

/// A NAT64 prefix `Pref64::/n` (RFC 6052 section 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nat64Prefix {
    prefix: Ipv6Addr,
    len: u8,
}

/// Byte positions in the IPv6 address of the four IPv4 octets for a prefix length: they start at
/// `len / 8` and skip byte 8 (the u-octet).
fn v4_positions(len: u8) -> [usize; 4] {
    let mut out = [0usize; 4];
    let mut pos = usize::from(len / 8);
    for slot in &mut out {
        if pos == 8 {
            pos += 1;
        }
        *slot = pos;
        pos += 1;
    }
    out
}

impl Nat64Prefix {
    /// The well-known prefix 64:ff9b::/96 (RFC 6052 section 2.1).
    pub const WELL_KNOWN: Self = Self {
        prefix: Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        len: 96,
    };

    /// The prefix lengths RFC 6052 allows.
    pub const LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

    /// A prefix; bits past `len` are cleared. Fails on a length RFC 6052 does not allow or a
    /// non-zero u-octet (bits 64..71).
    pub fn new(prefix: Ipv6Addr, len: u8) -> Result<Self, TunnelError> {
        if !Self::LENGTHS.contains(&len) {
            return Err(TunnelError::BadPrefixLength(len));
        }
        let mask = u128::MAX << (128 - u32::from(len));
        let prefix = Ipv6Addr::from(u128::from(prefix) & mask);
        if prefix.octets()[8] != 0 {
            return Err(TunnelError::NonZeroUOctet(prefix));
        }
        Ok(Self { prefix, len })
    }

    /// The prefix bits (everything past the length is zero).
    pub fn prefix(&self) -> Ipv6Addr {
        self.prefix
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Always false: a prefix has at least 32 bits. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `addr` starts with this prefix.
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        let mask = u128::MAX << (128 - u32::from(self.len));
        u128::from(addr) & mask == u128::from(self.prefix)
    }

    /// The IPv4-embedded IPv6 address (RFC 6052 section 2.2); u-octet and suffix are zero.
    pub fn embed(&self, v4: Ipv4Addr) -> Ipv6Addr {
        let mut o = self.prefix.octets();
        for (pos, b) in v4_positions(self.len).into_iter().zip(v4.octets()) {
            o[pos] = b;
        }
        Ipv6Addr::from(o)
    }

    /// The IPv4 address at this prefix length's position in `addr`, or `None` when `addr` is
    /// not under this prefix.
    pub fn extract(&self, addr: Ipv6Addr) -> Option<Ipv4Addr> {
        if !self.contains(addr) {
            return None;
        }
        Some(extract_at(addr, self.len))
    }
}

impl std::fmt::Display for Nat64Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.prefix, self.len)
    }
}

fn extract_at(addr: Ipv6Addr, len: u8) -> Ipv4Addr {
    let o = addr.octets();
    let p = v4_positions(len);
    Ipv4Addr::new(o[p[0]], o[p[1]], o[p[2]], o[p[3]])
}

/// Finds the NAT64 prefixes in the AAAA records a DNS64 resolver returned for `ipv4only.arpa`
/// (RFC 7050 section 3).
///
/// For each record, every RFC 6052 position is tried, /96 first then /64, /56, /48, /40, /32; a
/// position matches when it holds 192.0.0.170 or 192.0.0.171, the u-octet is zero and the suffix
/// after the IPv4 address is zero. The first matching position of each record gives its prefix.
/// Records that match nowhere are ignored. The result has no duplicates and keeps record order.
///
/// Requiring a zero suffix makes the matching position unique (the last IPv4 byte of a longer
/// position, 170 or 171, lies in the suffix of every shorter one), so the multiple-location case
/// of RFC 7050 section 3 cannot arise. A NAT64 that fills the suffix with non-zero bits (RFC 6052
/// only says it SHOULD be zero) is not recognised.
pub fn discover_nat64_prefixes(records: &[Ipv6Addr]) -> Vec<Nat64Prefix> {
    let mut out: Vec<Nat64Prefix> = Vec::new();
    for &rec in records {
        let o = rec.octets();
        if o[8] != 0 {
            continue;
        }
        for len in [96u8, 64, 56, 48, 40, 32] {
            let v4 = extract_at(rec, len);
            if v4 != WKA_170 && v4 != WKA_171 {
                continue;
            }
            let last = v4_positions(len)[3];
            if o[last + 1..].iter().any(|&b| b != 0) {
                continue;
            }
            if let Ok(p) = Nat64Prefix::new(rec, len) {
                if !out.contains(&p) {
                    out.push(p);
                }
                break;
            }
        }
    }
    out
}

// ---------------------------------------------------------------- DS-Lite (RFC 6333)

/// The DS-Lite well-known IPv4 subnet 192.0.0.0/29 (RFC 6333 section 5.7), as (network, length).
pub const DSLITE_SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(192, 0, 0, 0), 29);
/// The AFTR's well-known IPv4 address 192.0.0.1.
pub const DSLITE_AFTR: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 1);
/// The B4 element's well-known IPv4 address 192.0.0.2.
pub const DSLITE_B4: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 2);

/// Whether `v4` is in 192.0.0.0/29. A host whose IPv4 address is here sits behind a DS-Lite B4.
pub fn is_dslite_reserved(v4: Ipv4Addr) -> bool {
    u32::from(v4) & 0xffff_fff8 == u32::from(DSLITE_SUBNET.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn sixto4_both_ways() {
        let a = Ipv4Addr::new(192, 88, 99, 1);
        assert_eq!(sixto4_prefix(a), v6("2002:c058:6301::"));
        assert_eq!(sixto4_v4(v6("2002:c058:6301:1::5")), Some(a));
        assert_eq!(sixto4_v4(v6("2001:db8::1")), None);
        assert!(is_sixto4(v6("2002::")));
        assert!(!is_sixto4(v6("2003::")));
    }

    #[test]
    fn sixto4_eligibility() {
        for bad in [
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!sixto4_eligible(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.0.1",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.254",
        ] {
            assert!(sixto4_eligible(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn teredo_miredo_example() {
        let a = v6("2001:0:cb00:7105:3455:35c0:34ff:8efe");
        let t = TeredoAddr::from_ipv6(a).unwrap();
        assert_eq!(t.server, Ipv4Addr::new(203, 0, 113, 5));
        assert_eq!(t.mapped_addr, Ipv4Addr::new(203, 0, 113, 1));
        assert_eq!(t.mapped_port, 0x35c0 ^ 0xffff);
        assert_eq!(t.mapped_port, 51775);
        assert_eq!(t.flags, 0x3455);
        assert!(!t.is_cone());
        assert_eq!(t.to_ipv6(), a);
    }

    #[test]
    fn teredo_rfc4380_example() {
        // RFC 4380 section 4: server 65.54.227.120, cone, mapped 192.0.2.45:40000.
        let t = TeredoAddr {
            server: Ipv4Addr::new(65, 54, 227, 120),
            flags: TeredoAddr::CONE_FLAG,
            mapped_port: 40000,
            mapped_addr: Ipv4Addr::new(192, 0, 2, 45),
        };
        assert_eq!(t.to_ipv6(), v6("2001:0:4136:e378:8000:63bf:3fff:fdd2"));
        assert!(t.is_cone());
        assert_eq!(
            TeredoAddr::from_ipv6(v6("2002::1")),
            Err(TunnelError::NotTeredo(v6("2002::1")))
        );
        assert!(TeredoAddr::from_ipv6(v6("2001:1::1")).is_err());
    }

    #[test]
    fn isatap() {
        let v4 = Ipv4Addr::new(192, 0, 2, 143);
        assert_eq!(isatap_iid(v4, false), 0x0000_5efe_c000_028f);
        assert_eq!(isatap_iid(v4, true), 0x0200_5efe_c000_028f);
        assert_eq!(
            isatap_addr(v6("fe80::1:2:3:4"), v4, false),
            v6("fe80::5efe:c000:28f")
        );
        assert_eq!(
            isatap_addr(v6("2001:db8:1:2::"), v4, true),
            v6("2001:db8:1:2:200:5efe:c000:28f")
        );
        assert_eq!(isatap_v4(v6("2001:db8:1:2:200:5efe:c000:28f")), Some(v4));
        assert_eq!(isatap_v4(v6("fe80::5efe:c000:28f")), Some(v4));
        assert_eq!(isatap_v4(v6("fe80::5eff:c000:28f")), None);
        assert_eq!(isatap_v4(v6("fe80::400:5efe:c000:28f")), None);
    }

    #[test]
    fn nat64_rfc6052_table() {
        // RFC 6052 section 2.4, Table 1: 192.0.2.33 under 2001:db8:.../n.
        let v4 = Ipv4Addr::new(192, 0, 2, 33);
        let cases = [
            ("2001:db8::", 32, "2001:db8:c000:221::"),
            ("2001:db8:100::", 40, "2001:db8:1c0:2:21::"),
            ("2001:db8:122::", 48, "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::", 56, "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::", 64, "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::", 96, "2001:db8:122:344::192.0.2.33"),
        ];
        for (p, len, want) in cases {
            let pre = Nat64Prefix::new(v6(p), len).unwrap();
            assert_eq!(pre.embed(v4), v6(want), "/{len}");
            assert_eq!(pre.extract(v6(want)), Some(v4), "/{len}");
            assert_eq!(pre.len(), len);
        }
        assert_eq!(Nat64Prefix::WELL_KNOWN.embed(v4), v6("64:ff9b::192.0.2.33"));
        assert_eq!(Nat64Prefix::WELL_KNOWN.extract(v6("2001:db8::1")), None);
        assert_eq!(Nat64Prefix::WELL_KNOWN.to_string(), "64:ff9b::/96");
    }

    #[test]
    fn nat64_prefix_validation() {
        for len in [0u8, 31, 33, 63, 65, 95, 97, 128] {
            assert_eq!(
                Nat64Prefix::new(v6("2001:db8::"), len),
                Err(TunnelError::BadPrefixLength(len))
            );
        }
        assert!(matches!(
            Nat64Prefix::new(v6("2001:db8:0:0:ff00::"), 96),
            Err(TunnelError::NonZeroUOctet(_))
        ));
        // Bits past the length are cleared, so a /64 ignores a non-zero u-octet in its input.
        assert_eq!(
            Nat64Prefix::new(v6("2001:db8::ff00:0:0:1"), 64)
                .unwrap()
                .prefix(),
            v6("2001:db8::")
        );
    }

    #[test]
    fn nat64_discovery() {
        for len in Nat64Prefix::LENGTHS {
            let pre = Nat64Prefix::new(v6("2001:db8:122:344::"), len).unwrap();
            let recs = [pre.embed(WKA_170), pre.embed(WKA_171)];
            assert_eq!(discover_nat64_prefixes(&recs), vec![pre], "/{len}");
        }
        assert_eq!(
            discover_nat64_prefixes(&[v6("64:ff9b::c000:aa")]),
            vec![Nat64Prefix::WELL_KNOWN]
        );
        // Two different prefixes (two NAT64s) are both reported, each once.
        let a = Nat64Prefix::new(v6("2001:db8:aaaa::"), 48).unwrap();
        let recs = [
            a.embed(WKA_170),
            Nat64Prefix::WELL_KNOWN.embed(WKA_171),
            a.embed(WKA_171),
        ];
        assert_eq!(
            discover_nat64_prefixes(&recs),
            vec![a, Nat64Prefix::WELL_KNOWN]
        );
        // A real, non-synthesized address yields nothing.
        assert!(discover_nat64_prefixes(&[v6("2001:db8::1"), v6("64:ff9b::c000:ab01")]).is_empty());
        assert!(discover_nat64_prefixes(&[]).is_empty());
    }

    #[test]
    fn dslite() {
        assert!(is_dslite_reserved(DSLITE_AFTR));
        assert!(is_dslite_reserved(DSLITE_B4));
        assert!(is_dslite_reserved(Ipv4Addr::new(192, 0, 0, 7)));
        assert!(!is_dslite_reserved(Ipv4Addr::new(192, 0, 0, 8)));
        assert!(!is_dslite_reserved(WKA_170));
    }

    fn any_v4() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>().prop_map(Ipv4Addr::from)
    }

    proptest! {
        #[test]
        fn teredo_round_trip(server in any_v4(), flags: u16, port: u16, mapped in any_v4()) {
            let t = TeredoAddr { server, flags, mapped_port: port, mapped_addr: mapped };
            prop_assert_eq!(TeredoAddr::from_ipv6(t.to_ipv6()), Ok(t));
        }

        #[test]
        fn teredo_parse_never_panics(bits: u128) {
            let a = Ipv6Addr::from(bits);
            if let Ok(t) = TeredoAddr::from_ipv6(a) {
                prop_assert_eq!(t.to_ipv6(), a);
            }
        }

        #[test]
        fn sixto4_round_trip(v4 in any_v4(), host: u128) {
            let a = Ipv6Addr::from(u128::from(sixto4_prefix(v4)) | (host & ((1u128 << 80) - 1)));
            prop_assert_eq!(sixto4_v4(a), Some(v4));
        }

        #[test]
        fn isatap_round_trip(prefix: u128, v4 in any_v4(), global: bool) {
            let a = isatap_addr(Ipv6Addr::from(prefix), v4, global);
            prop_assert_eq!(isatap_v4(a), Some(v4));
            prop_assert_eq!(u128::from(a) >> 64, prefix >> 64);
        }

        #[test]
        fn nat64_round_trip(bits: u128, idx in 0usize..6, v4 in any_v4()) {
            let len = Nat64Prefix::LENGTHS[idx];
            let bits = bits & !(0xffu128 << 56); // clear the u-octet
            let pre = Nat64Prefix::new(Ipv6Addr::from(bits), len).unwrap();
            let a = pre.embed(v4);
            prop_assert!(pre.contains(a));
            prop_assert_eq!(a.octets()[8], 0);
            prop_assert_eq!(pre.extract(a), Some(v4));
        }

        #[test]
        fn nat64_discovery_finds_synthesized(bits: u128, idx in 0usize..6, which: bool) {
            let len = Nat64Prefix::LENGTHS[idx];
            let pre = Nat64Prefix::new(Ipv6Addr::from(bits & !(0xffu128 << 56)), len).unwrap();
            let wka = if which { WKA_171 } else { WKA_170 };
            let found = discover_nat64_prefixes(&[pre.embed(wka)]);
            prop_assert_eq!(found.len(), 1);
            // A prefix whose own bits happen to look like a longer match may be read as that
            // longer prefix; either way the record must re-embed to itself.
            prop_assert_eq!(found[0].embed(wka), pre.embed(wka));
        }

        #[test]
        fn discovery_never_panics(recs in proptest::collection::vec(any::<u128>(), 0..8)) {
            let recs: Vec<Ipv6Addr> = recs.into_iter().map(Ipv6Addr::from).collect();
            for p in discover_nat64_prefixes(&recs) {
                prop_assert!(Nat64Prefix::LENGTHS.contains(&p.len()));
            }
        }
    }
}
