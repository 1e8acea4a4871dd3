#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod config;
mod core;
mod dist;
pub mod driver;
mod error;
pub mod message;
mod persist;
mod ratelimit;
pub mod record;
mod routing;

pub use crate::config::{Config, DiversityLimits, RateLimit};
pub use crate::core::{Dht, Event, Input, Output, QueryId, QueryResult, QueryStats, Stats};
pub use crate::driver::{DhtNode, Inbound, MemoryNetwork, Transport, UdpTransport};
pub use crate::error::{DhtError, RejectReason};
pub use crate::message::{Contact, Message, Request, RequestId, Response};
pub use crate::persist::{MAX_SNAPSHOT_LEN, RoutingSnapshot};
pub use crate::record::{AcceptAll, ProviderRecord, Record, Validator};
