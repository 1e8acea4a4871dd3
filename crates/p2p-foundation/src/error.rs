//! The facade's error type.

use std::net::SocketAddr;

use p2p_foundation_identity::{IdentityError, PeerId};

/// Everything that can go wrong in a [`P2PNode`](crate::P2PNode).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed: binding, dialing (including a peer that proved another
    /// identity than the one dialed), a closed connection or stream.
    #[error("transport: {0}")]
    Transport(#[from] p2p_foundation_transport::TransportError),
    /// The DHT failed (lookup, store, or it stopped).
    #[error("dht: {0}")]
    Dht(#[from] p2p_foundation_dht::DhtError),
    /// Gossip failed (invalid topic, message too large, or it stopped).
    #[error("gossip: {0}")]
    Gossip(#[from] p2p_foundation_gossip::GossipError),
    /// MCP failed (registration, discovery, a call).
    #[error("mcp: {0}")]
    Mcp(#[from] p2p_foundation_mcp::McpError),
    /// The IPv6 overlay could not start (its TUN device needs `CAP_NET_ADMIN` and
    /// `/dev/net/tun`) or could not send.
    #[error("overlay: {0}")]
    Overlay(String),
    /// Loading or saving the identity, or signing a record, failed.
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    /// No address is known for `peer`, and a DHT lookup did not find one.
    #[error(
        "no address known for peer {peer} and the DHT did not find one: pass addresses to connect()"
    )]
    NoAddress {
        /// The peer.
        peer: PeerId,
    },
    /// Every bootstrap peer failed; the first failure is given.
    #[error("could not reach any of {tried} bootstrap peer(s); {peer} at {addr}: {source}")]
    Bootstrap {
        /// How many bootstrap peers were tried.
        tried: usize,
        /// The first failing peer.
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
    /// The node was built without [`NodeBuilder::with_mcp_server`](crate::NodeBuilder::with_mcp_server).
    #[error("this node has no MCP server: build it with NodeBuilder::with_mcp_server()")]
    McpDisabled,
    /// A dial or request did not complete in time.
    #[error("{what} with peer {peer} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The peer.
        peer: PeerId,
        /// The limit.
        after: std::time::Duration,
    },
    /// A `<peer id>@<address>` string could not be parsed.
    #[error("invalid peer address '{0}': expected <peer id>@<ip>:<port>, e.g. <id>@[::1]:9000")]
    InvalidPeerAddr(String),
    /// Tool arguments were not a JSON object.
    #[error("{0}")]
    InvalidArguments(String),
    /// An address or peer string could not be parsed; `reason` names the part.
    #[error("invalid address '{input}': {reason}")]
    InvalidAddress {
        /// The text given.
        input: String,
        /// What is wrong, naming the part that does not parse.
        reason: String,
    },
    /// [`P2PNode::connect_addr`](crate::P2PNode::connect_addr) reached this node itself.
    #[error("{addr} is this node's own address: give the address of another node")]
    SelfAddress {
        /// The address.
        addr: SocketAddr,
    },
    /// NAT traversal failed: no rendezvous could introduce the peer, the punch got no
    /// authenticated answer, or a signalling message was refused (the text says which).
    #[error("nat traversal: {0}")]
    Nat(String),
    /// A relay refused a reservation or a circuit, or a relayed stream broke (the text
    /// says which, and why).
    #[error("relay: {0}")]
    Relay(String),
    /// The node is shutting down or has shut down.
    #[error("the node is shut down")]
    Shutdown,
}

/// Shorthand for `Result<T, Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
