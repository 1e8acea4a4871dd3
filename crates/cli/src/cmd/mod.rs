//! One module per command.

pub(crate) mod demo;
pub(crate) mod dht;
pub(crate) mod id;
pub(crate) mod mcp;
pub(crate) mod nat;
pub(crate) mod node;
pub(crate) mod ping;
pub(crate) mod pubsub;
pub(crate) mod words;
