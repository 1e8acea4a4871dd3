#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod config;
mod connection;
mod endpoint;
mod error;
mod extra;
pub mod filter;
pub mod header;
mod limits;
mod metrics;
mod session;
mod side;
mod stream;
mod tls;

pub use config::{Config, Listen};
pub use connection::{
    CLOSE_NORMAL, CLOSE_PROTOCOL, Connection, IncomingBi, IncomingUni, PathKind, STREAM_BAD_HEADER,
    STREAM_NOT_REPLAY_SAFE,
};
pub use endpoint::{EarlyConnect, Endpoint};
pub use error::{Result, TransportError};
pub use extra::{ExtraSocket, ExtraSockets, MAX_EXTRA_SOCKETS};
pub use metrics::{FailureReason, JunkReason, MetricsSnapshot};
pub use side::{SideChannel, SideChannelConfig, SideChannelStats, SideDatagram};
pub use stream::{RecvStream, STREAM_CANCELLED, SendStream};
pub use tls::ALPN;

pub use p2p_foundation_identity::{Keypair, PeerId};
