#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod behaviour;
mod cache;
pub mod codec;
mod config;
pub mod driver;
mod error;
mod hash;
mod score;
mod types;

pub use behaviour::{Event, Gossip, Input, Metrics, Output, PublishOptions};
pub use cache::SignatureCache;
pub use config::{
    Acceptance, Config, MessageIdFn, ScoreParams, Thresholds, TopicScoreParams, ValidatorFn,
};
pub use driver::{GossipHandle, spawn};
pub use error::GossipError;
pub use types::{
    ACK_DOMAIN, Ack, AckRequest, MAX_NAMED_ACKERS, MAX_PX_PEERS, MAX_TOPIC_LEN, MESSAGE_DOMAIN,
    Message, MessageId, PxPeer, Rpc, Topic,
};

#[cfg(test)]
mod tests;
