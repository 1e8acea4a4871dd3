#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod addr;
mod encap;
pub mod endpoint;
mod error;
mod icmp_limit;
pub mod overlay;
mod select;
mod teredo;

pub use addr::{
    DSLITE_AFTR, DSLITE_B4, DSLITE_SUBNET, IPV4ONLY_ARPA, Nat64Prefix, SIXTO4_RELAY_ANYCAST,
    TEREDO_PREFIX, TeredoAddr, WKA_170, WKA_171, discover_nat64_prefixes, is_dslite_reserved,
    is_sixto4, isatap_addr, isatap_iid, isatap_v4, sixto4_eligible, sixto4_prefix, sixto4_v4,
};
pub use encap::{
    IPV4_HEADER_LEN, IPV6_HEADER_LEN, MAX_IPV4_PACKET, PROTO_IPV6, SixIn4Packet, encode_6in4,
};
pub use error::TunnelError;
pub use select::{Candidate, Connectivity, Mechanism, NatKind, Rejection, Selection, select};
pub use teredo::{
    ALL_ROUTERS, OriginIndication, QualifyOutput, RANDOM_FLAG_BITS, RS_ATTEMPTS, RS_RETRANSMIT,
    RS_SOURCE, TEREDO_PORT, TeredoPacket, TeredoQualifier, encode_rs, ra_prefix,
};
