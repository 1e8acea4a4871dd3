//! Socket addresses ⇄ 16-bit word values (before scrambling), as specified in
//! `docs/protocols/words.md`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::WordsError;

/// Compact IPv6 tags (4 bits): which family of addresses the 76-bit body describes.
pub(crate) mod tag {
    /// `::/96`: unspecified, loopback and IPv4-compatible addresses; body = low 32 bits.
    pub(crate) const ZERO_PREFIX: u8 = 0;
    /// `::ffff:0:0/96`: IPv4-mapped addresses; body = the IPv4 address.
    pub(crate) const IPV4_MAPPED: u8 = 1;
    /// `fe80::/64`: link-local; body = the 64-bit interface id.
    pub(crate) const LINK_LOCAL: u8 = 2;
    /// `fd00::/8` with an interface id below 2^20; body = 56-bit global id and subnet ‖ 20-bit iid.
    pub(crate) const UNIQUE_LOCAL: u8 = 3;
    /// `2000::/3` with an interface id below 2^15; body = 61-bit prefix ‖ 15-bit iid.
    pub(crate) const GLOBAL: u8 = 4;
    /// `ff00::/8` with bits 16..60 zero; body = 8-bit flags and scope ‖ 68-bit group id.
    pub(crate) const MULTICAST: u8 = 5;
}

const BODY_BITS: u32 = 76;

const fn low(bits: u32) -> u128 {
    (1u128 << bits) - 1
}

/// The tag and 76-bit body of `ip`'s compact form, if it has one.
pub(crate) fn compact_body(ip: &Ipv6Addr) -> Option<(u8, u128)> {
    let a = u128::from(*ip);
    let iid = a & low(64);
    if a >> 32 == 0 {
        Some((tag::ZERO_PREFIX, a))
    } else if a >> 32 == 0xffff {
        Some((tag::IPV4_MAPPED, a & low(32)))
    } else if a >> 64 == 0xfe80_0000_0000_0000 {
        Some((tag::LINK_LOCAL, iid))
    } else if a >> 120 == 0xfd && iid >> 20 == 0 {
        Some((tag::UNIQUE_LOCAL, (a >> 64 & low(56)) << 20 | iid))
    } else if a >> 125 == 0b001 && iid >> 15 == 0 {
        Some((tag::GLOBAL, (a >> 64 & low(61)) << 15 | iid))
    } else if a >> 120 == 0xff && (a >> 68) & low(44) == 0 {
        Some((tag::MULTICAST, (a >> 112 & 0xff) << 68 | a & low(68)))
    } else {
        None
    }
}

/// The address a compact tag and body describe, or why they describe none.
pub(crate) fn compact_address(tag: u8, body: u128) -> Result<Ipv6Addr, &'static str> {
    let a = match tag {
        tag::ZERO_PREFIX if body >> 32 == 0 => body,
        tag::IPV4_MAPPED if body >> 32 == 0 => 0xffff << 32 | body,
        tag::LINK_LOCAL if body >> 64 == 0 => 0xfe80 << 112 | body,
        tag::UNIQUE_LOCAL => 0xfd << 120 | (body >> 20) << 64 | body & low(20),
        tag::GLOBAL => 0b001 << 125 | (body >> 15) << 64 | body & low(15),
        tag::MULTICAST => 0xff << 120 | (body >> 68) << 112 | body & low(68),
        0..=5 => return Err("reserved bits of the compact IPv6 form are set"),
        _ => return Err("unknown compact IPv6 form"),
    };
    Ok(Ipv6Addr::from(a))
}

/// IPv4: address (32 bits) ‖ port (16 bits).
pub(crate) fn ipv4_values(addr: &SocketAddrV4) -> [u16; 3] {
    let ip = u32::from(*addr.ip());
    [(ip >> 16) as u16, ip as u16, addr.port()]
}

pub(crate) fn ipv4_from_values(v: &[u16]) -> SocketAddr {
    let ip = u32::from(v[0]) << 16 | u32::from(v[1]);
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), v[2]))
}

/// Compact IPv6: tag (4 bits) ‖ body (76 bits) ‖ port (16 bits) = 96 bits, or `None`.
pub(crate) fn ipv6_compact_values(addr: &SocketAddrV6) -> Option<[u16; 6]> {
    let (tag, body) = compact_body(addr.ip())?;
    let value = u128::from(tag) << (BODY_BITS + 16) | body << 16 | u128::from(addr.port());
    Some(std::array::from_fn(|i| (value >> (80 - 16 * i)) as u16))
}

pub(crate) fn ipv6_compact_from_values(v: &[u16]) -> Result<SocketAddr, WordsError> {
    let value = v.iter().fold(0u128, |acc, &w| acc << 16 | u128::from(w));
    let tag = (value >> (BODY_BITS + 16)) as u8;
    let body = value >> 16 & low(BODY_BITS);
    let ip = compact_address(tag, body)
        .map_err(|reason| WordsError::InvalidEncoding { count: 6, reason })?;
    Ok(SocketAddr::V6(SocketAddrV6::new(ip, value as u16, 0, 0)))
}

/// Full IPv6: the eight 16-bit groups of the address, then the port.
pub(crate) fn ipv6_full_values(addr: &SocketAddrV6) -> [u16; 9] {
    let s = addr.ip().segments();
    [s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], addr.port()]
}

pub(crate) fn ipv6_full_from_values(v: &[u16]) -> SocketAddr {
    let ip = Ipv6Addr::new(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
    SocketAddr::V6(SocketAddrV6::new(ip, v[8], 0, 0))
}
