#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod behaviour;
pub mod binding;
mod crc32;
mod error;
pub mod punch;
mod ratelimit;
pub mod relay;
pub mod rendezvous;
pub mod stun;
pub mod udp;

pub use behaviour::{BehaviourServers, MappingBehaviour, NatBehaviour, discover_behaviour};
pub use binding::{BindingOutcome, BindingStats, RetransmitConfig};
pub use error::NatError;
pub use punch::{Punch, PunchConfig, PunchSession, PunchStats, PunchedPath};
pub use udp::{
    RelayService, RendezvousService, StunLimits, StunServer, punch, relay_allocate,
    rendezvous_register, stun_binding,
};

/// `addr` with a v4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports
/// for an IPv4 peer) turned into the plain IPv4 address; any other address unchanged.
///
/// Every address this crate takes from a socket or a message goes through it, so one peer
/// never has two spellings (in STUN answers, rendezvous introductions, quotas, comparisons).
///
/// ```
/// use p2p_foundation_nat::canonical_addr;
///
/// let mapped = "[::ffff:198.51.100.7]:3478".parse()?;
/// assert_eq!(canonical_addr(mapped), "198.51.100.7:3478".parse()?);
/// let v6 = "[2001:db8::1]:3478".parse()?;
/// assert_eq!(canonical_addr(v6), v6);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn canonical_addr(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => std::net::SocketAddr::new(v4.into(), addr.port()),
            None => addr,
        },
        std::net::IpAddr::V4(_) => addr,
    }
}
