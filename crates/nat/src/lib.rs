#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod behaviour;
pub mod binding;
mod crc32;
mod error;
pub mod punch;
pub mod relay;
pub mod rendezvous;
pub mod stun;
pub mod udp;

pub use behaviour::{BehaviourServers, MappingBehaviour, NatBehaviour, discover_behaviour};
pub use binding::{BindingOutcome, BindingStats, RetransmitConfig};
pub use error::NatError;
pub use punch::{Punch, PunchConfig, PunchSession, PunchStats, PunchedPath};
pub use udp::{
    RelayService, RendezvousService, StunServer, punch, relay_allocate, rendezvous_register,
    stun_binding,
};
