//! Userspace tunnel endpoints on a TUN device for the host's own packets: 6in4 / 6to4 (IPv6
//! in IPv4 protocol 41, RFC 4213 and RFC 3056 with the RFC 3964 source checks) and the
//! DS-Lite B4 element, or the AFTR's end of its softwire (IPv4 in IPv6 protocol 4, RFC 6333).
//!
//! Each endpoint is a sans-IO core ([`SixInFourCore`], [`DsLiteCore`]) that decides what
//! happens to one packet, and, with the `tun` feature, a tokio driver ([`SixInFourTun`],
//! [`DsLiteTun`]) that moves packets between a TUN device and a raw socket. The kernel needs
//! no `sit`, `ipip` or `ip6_tunnel` driver: the encapsulation happens here.
//!
//! # Packets
//!
//! `outbound` takes a packet the host wrote to the TUN device and writes into a buffer the
//! caller reuses either the packet for the raw socket ([`Outbound::Send`], with the outer
//! destination) or an ICMP error for the host ([`Outbound::Reply`]); or it drops the packet
//! ([`Outbound::Drop`]). `inbound` takes what the raw socket received and returns the inner
//! packet to write to the TUN device, or drops it. Every drop is counted by reason
//! ([`EndpointStats`]); sizes are checked before anything is copied, and the steady state
//! allocates nothing.
//!
//! # MTU
//!
//! The TUN device's MTU is the tunnel MTU, so the host's kernel never hands the endpoint a
//! larger packet and fragments or shrinks (TCP MSS) on its own. The defaults assume a
//! 1,500-byte outer path: [`SIXIN4_DEFAULT_MTU`] = 1,480 (1,500 − 20 bytes of IPv4 header,
//! what tunnel brokers configure; RFC 4213 section 3.2 allows any static MTU of at least
//! 1,280, which can be configured for a narrower path) and [`DSLITE_DEFAULT_MTU`] = 1,460
//! (1,500 − 40 bytes of IPv6 header, RFC 6333 section 5.3). A packet above the MTU that
//! still reaches an endpoint (a packet socket, a stale route MTU) gets an ICMPv6 Packet Too
//! Big (6in4) or, if it has DF set, an ICMP Fragmentation Needed (DS-Lite) with the MTU, and
//! is dropped; the 6in4 outer header has DF clear (RFC 4213 section 3.2.1), and the raw
//! IPv6 socket of DS-Lite lets the kernel fragment the outer packet. ICMP errors to the host
//! are rate limited ([`ICMP_ERRORS_PER_SEC`]) and never sent about an ICMP error.

pub mod dslite;
pub mod ipv4;
pub mod sixin4;
pub mod teredo;
#[cfg(feature = "tun")]
mod teredo_tun;
#[cfg(feature = "tun")]
mod tun;

pub use dslite::{DSLITE_DEFAULT_MTU, DsLiteConfig, DsLiteCore, DsLiteRole, encode_4in6};
pub use ipv4::{Ipv4Error, Ipv4Packet};
pub use sixin4::{SIXIN4_DEFAULT_MTU, SixInFourConfig, SixInFourCore, SixInFourMode};
pub use teredo::{TEREDO_MTU, TeredoCore, TeredoInbound, TeredoOutbound, TeredoStats};
#[cfg(feature = "tun")]
pub use teredo_tun::{TeredoTun, qualify as teredo_qualify};
#[cfg(feature = "tun")]
pub use tun::{DsLiteTun, SixInFourTun};

use std::time::Instant;

pub use crate::icmp_limit::ICMP_ERRORS_PER_SEC;
pub(crate) use crate::icmp_limit::IcmpLimiter;

/// Why an endpoint dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Not one well-formed packet (bad version, header length, length fields, options).
    Malformed,
    /// Shorter than its headers say.
    Truncated,
    /// The outer IPv4 header checksum is wrong (6in4), or the inner one (DS-Lite).
    Checksum,
    /// An outer IPv4 fragment (the raw socket hands over reassembled packets only).
    Fragment,
    /// The payload is not the protocol this tunnel carries (an IPv4 packet inside
    /// protocol 41, an IPv6 packet inside protocol 4).
    WrongProtocol,
    /// From the network: the outer source is not who may send this packet (the configured
    /// 6in4 peer, the 6to4 relay for a native IPv6 source, the IPv4 address a 6to4 source
    /// embeds, the AFTR), RFC 3964 section 5.2 and RFC 6333 section 5.2.
    SpoofedSource,
    /// From the network: the outer source is not a unicast address (multicast, broadcast,
    /// loopback, unspecified), RFC 3964 section 5.1.
    BadOuterSource,
    /// An inner address that must never cross the tunnel: a multicast, unspecified,
    /// loopback, IPv4-mapped or IPv4-compatible source, or a 6to4 address embedding a
    /// private, loopback, multicast or otherwise non-global IPv4 address (RFC 3964 section
    /// 5.1).
    BadInnerAddress,
    /// From the network: the outer or inner destination is not this endpoint's address.
    WrongDestination,
    /// From the host: the source is not the endpoint's address (router solicitations and
    /// listener reports from link-local addresses, which the kernel sends on every device).
    NotLocalSource,
    /// From the host: the destination cannot go through this tunnel (multicast,
    /// link-local, loopback; a native IPv6 destination in 6to4 mode without a relay).
    NoRoute,
    /// Larger than the tunnel MTU.
    TooBig,
    /// The raw socket refused the packet.
    SendError,
}

impl DropReason {
    /// Every reason, in the order of [`EndpointStats::dropped_in`] and [`EndpointStats::dropped_out`].
    pub const ALL: [DropReason; 13] = [
        DropReason::Malformed,
        DropReason::Truncated,
        DropReason::Checksum,
        DropReason::Fragment,
        DropReason::WrongProtocol,
        DropReason::SpoofedSource,
        DropReason::BadOuterSource,
        DropReason::BadInnerAddress,
        DropReason::WrongDestination,
        DropReason::NotLocalSource,
        DropReason::NoRoute,
        DropReason::TooBig,
        DropReason::SendError,
    ];

    /// A short snake-case name (metric labels, logs).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Truncated => "truncated",
            DropReason::Checksum => "checksum",
            DropReason::Fragment => "fragment",
            DropReason::WrongProtocol => "wrong_protocol",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::BadOuterSource => "bad_outer_source",
            DropReason::BadInnerAddress => "bad_inner_address",
            DropReason::WrongDestination => "wrong_destination",
            DropReason::NotLocalSource => "not_local_source",
            DropReason::NoRoute => "no_route",
            DropReason::TooBig => "too_big",
            DropReason::SendError => "send_error",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// An endpoint's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Packets from the network written to the TUN device.
    pub packets_in: u64,
    /// Their bytes (inner packets).
    pub bytes_in: u64,
    /// Packets from the host encapsulated and handed to the raw socket.
    pub packets_out: u64,
    /// Their bytes (inner packets).
    pub bytes_out: u64,
    /// ICMP errors sent back to the host (Packet Too Big, Fragmentation Needed,
    /// Destination Unreachable).
    pub icmp_errors: u64,
    /// ICMP errors not sent because of the rate limit.
    pub icmp_rate_limited: u64,
    /// Packets from the network dropped, indexed like [`DropReason::ALL`] (see
    /// [`EndpointStats::dropped_in_for`]).
    pub dropped_in: [u64; 13],
    /// Packets from the host dropped, indexed like [`DropReason::ALL`] (see
    /// [`EndpointStats::dropped_out_for`]).
    pub dropped_out: [u64; 13],
}

impl EndpointStats {
    /// Packets from the network dropped for `reason`.
    pub fn dropped_in_for(&self, reason: DropReason) -> u64 {
        self.dropped_in[reason.index()]
    }

    /// Packets from the host dropped for `reason`.
    pub fn dropped_out_for(&self, reason: DropReason) -> u64 {
        self.dropped_out[reason.index()]
    }

    /// Packets from the network dropped for any reason.
    pub fn dropped_in_total(&self) -> u64 {
        self.dropped_in.iter().sum()
    }

    /// Packets from the host dropped for any reason.
    pub fn dropped_out_total(&self) -> u64 {
        self.dropped_out.iter().sum()
    }

    pub(crate) fn drop_in(&mut self, reason: DropReason) -> DropReason {
        self.dropped_in[reason.index()] += 1;
        reason
    }

    pub(crate) fn drop_out(&mut self, reason: DropReason) -> DropReason {
        self.dropped_out[reason.index()] += 1;
        reason
    }
}

/// What to do with a packet from the host; the bytes are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound<A> {
    /// Send the buffer (the outer packet for the raw socket) to this outer destination.
    Send(A),
    /// Write the buffer (an ICMP error) back to the TUN device, to the host.
    Reply,
    /// Drop the packet (counted).
    Drop(DropReason),
}

/// What to do with a packet from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// Write this inner packet to the TUN device.
    Deliver(&'a [u8]),
    /// Drop it (counted).
    Drop(DropReason),
}

/// Takes an ICMP error token from `icmp` at `now`, counting the error or the refusal.
pub(crate) fn icmp_allowed(
    icmp: &mut IcmpLimiter,
    now: Instant,
    stats: &mut EndpointStats,
) -> bool {
    if icmp.allow(now) {
        stats.icmp_errors += 1;
        true
    } else {
        stats.icmp_rate_limited += 1;
        false
    }
}

/// A configuration an endpoint cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointConfigError {
    /// The MTU is below what the inner protocol needs.
    #[error("tunnel MTU {mtu} is below {min}, the smallest the inner protocol allows")]
    MtuTooSmall {
        /// The configured MTU.
        mtu: u16,
        /// The minimum.
        min: u16,
    },
    /// The MTU leaves no room for the outer header within 65,535 bytes.
    #[error("tunnel MTU {mtu} plus the outer header exceeds 65535 bytes")]
    MtuTooLarge {
        /// The configured MTU.
        mtu: u16,
    },
    /// An address the endpoint cannot use.
    #[error("{0}")]
    BadAddress(String),
}
