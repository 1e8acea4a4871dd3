use std::net::Ipv6Addr;

/// Every error this crate returns.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TunnelError {
    /// A NAT64 prefix length other than 32, 40, 48, 56, 64 or 96 (RFC 6052 section 2.2).
    #[error(
        "NAT64 prefix length /{0} is not allowed: RFC 6052 permits only /32, /40, /48, /56, /64 and /96"
    )]
    BadPrefixLength(u8),
    /// A NAT64 prefix whose bits 64..71 (the u-octet) are not zero.
    #[error("NAT64 prefix {0} has a non-zero u-octet (bits 64..71); RFC 6052 requires them zero")]
    NonZeroUOctet(Ipv6Addr),
    /// The address is not a Teredo address (not in 2001::/32).
    #[error("{0} is not a Teredo address: Teredo addresses are in 2001::/32")]
    NotTeredo(Ipv6Addr),
    /// The packet is shorter than a header it must contain.
    #[error("packet truncated: need at least {need} bytes, got {got}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// The packet is larger than an IPv4 packet can be.
    #[error(
        "packet of {0} bytes exceeds the IPv4 maximum of 65535; fragment or shrink the IPv6 packet"
    )]
    TooLarge(usize),
    /// A malformed header field.
    #[error("malformed {field}: {detail}")]
    Malformed {
        /// Which header field.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The IPv4 header checksum does not match.
    #[error("IPv4 header checksum mismatch: header says {stored:#06x}, computed {computed:#06x}")]
    Checksum {
        /// Checksum in the header.
        stored: u16,
        /// Checksum computed over the header.
        computed: u16,
    },
    /// The IPv4 protocol is not 41 (IPv6).
    #[error("IPv4 protocol is {0}, not 41 (IPv6 encapsulation)")]
    NotProto41(u8),
    /// The IPv4 packet is a fragment; reassemble before decapsulating.
    #[error(
        "IPv4 packet is a fragment (offset {offset}, more fragments {more}); reassemble it first"
    )]
    Fragment {
        /// Fragment offset in 8-byte units.
        offset: u16,
        /// The MF flag.
        more: bool,
    },
}
