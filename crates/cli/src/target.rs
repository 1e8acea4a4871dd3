//! Peers as people write them: `<peer id>@<address>`, a multiaddr with `/p2p/<peer id>`,
//! or an address alone (numbers, three words or a multiaddr), whose id is then learned on
//! first contact.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use p2p_foundation::{P2PNode, PeerId};

use crate::error::CliError;

/// A peer to reach, as given on the command line (`--bootstrap`, `p2pf ping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTarget {
    /// `<peer id>@<address>`: the peer must prove this id.
    Pinned(PeerId, SocketAddr),
    /// An address alone (`127.0.0.1:9000` or `ocean.thunder.falcon`): whoever answers
    /// there (see [`P2PNode::connect_addr`]).
    Addr(SocketAddr),
}

impl PeerTarget {
    /// The address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Pinned(_, a) | Self::Addr(a) => *a,
        }
    }

    /// Connects `node` to the target and returns the peer's proven id.
    pub async fn connect(&self, node: &P2PNode) -> Result<PeerId, CliError> {
        match *self {
            Self::Pinned(peer, addr) => {
                node.connect(peer, &[addr]).await?;
                Ok(peer)
            }
            Self::Addr(addr) => Ok(node.connect_addr(addr).await?),
        }
    }
}

impl fmt::Display for PeerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pinned(p, a) => write!(f, "{p}@{a}"),
            Self::Addr(a) => write!(f, "{a}"),
        }
    }
}

impl FromStr for PeerTarget {
    type Err = String;

    /// Reads `<peer id>@<address>`, `/ip4|ip6/…/udp/…/quic-v1/p2p/<peer id>`, or an
    /// address alone (numbers, three words or a multiaddr), with
    /// [`p2p_foundation::parse_peer`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match p2p_foundation::parse_peer(s) {
            Ok(p2p_foundation::PeerAddr {
                peer: Some(id),
                addr,
            }) => Ok(Self::Pinned(id, addr)),
            Ok(p2p_foundation::PeerAddr { peer: None, addr }) => Ok(Self::Addr(addr)),
            Err(e) => Err(format!(
                "'{}' is not a peer ({e}); expected <peer id>@<address>, or an address as \
                 numbers (127.0.0.1:9000), three words or /ip4/127.0.0.1/udp/9000/quic-v1",
                s.trim()
            )),
        }
    }
}

/// What `p2pf ping` reaches: a [`PeerTarget`], or a bare peer id, whose addresses come
/// from its signed peer record in the DHT (so it needs bootstrap peers to look there
/// through; a peer behind a NAT is then punched to or relayed as its record says).
///
/// ```
/// use p2p_foundation_cli::target::PingTarget;
/// let id = p2p_foundation::Keypair::generate().peer_id();
/// assert!(matches!(id.to_string().parse(), Ok(PingTarget::Id(p)) if p == id));
/// assert!(matches!("127.0.0.1:9000".parse(), Ok(PingTarget::Peer(_))));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingTarget {
    /// A peer with an address.
    Peer(PeerTarget),
    /// A peer id alone.
    Id(PeerId),
}

impl PingTarget {
    /// Connects `node` to the target (a bare id through a DHT lookup) and returns the
    /// peer's proven id.
    pub async fn connect(&self, node: &P2PNode) -> Result<PeerId, CliError> {
        match *self {
            Self::Peer(t) => t.connect(node).await,
            Self::Id(peer) => {
                node.connect(peer, &[]).await?;
                Ok(peer)
            }
        }
    }
}

impl fmt::Display for PingTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peer(t) => t.fmt(f),
            Self::Id(p) => p.fmt(f),
        }
    }
}

impl FromStr for PingTarget {
    type Err = String;

    /// A 52-character peer id alone, or anything [`PeerTarget`] reads.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = s.trim().parse::<PeerId>() {
            return Ok(Self::Id(id));
        }
        s.parse::<PeerTarget>()
            .map(Self::Peer)
            .map_err(|e| format!("{e}; or a peer id alone, found through --bootstrap"))
    }
}

/// The outcome of joining the network through bootstrap targets.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Joined {
    /// Peers reached, with the address used.
    pub peers: Vec<(PeerId, SocketAddr)>,
    /// Targets that failed, with why (the join succeeds if at least one was reached).
    pub failed: Vec<(String, String)>,
    /// Routing-table size after the DHT bootstrap lookup.
    pub routing_table: usize,
}

/// Connects to each target (each dial bounded by `dial_timeout`), then joins the DHT
/// through those reached. Fails with [`CliError::Unreachable`] when none could be reached.
pub async fn join(
    node: &P2PNode,
    targets: &[PeerTarget],
    dial_timeout: Duration,
) -> Result<Joined, CliError> {
    let mut peers = Vec::new();
    let mut failed = Vec::new();
    for t in targets {
        let dialled = tokio::time::timeout(dial_timeout, t.connect(node))
            .await
            .unwrap_or_else(|_| {
                Err(CliError::Unreachable(format!(
                    "no answer within {dial_timeout:?}"
                )))
            });
        match dialled {
            Ok(peer) => peers.push((peer, t.addr())),
            Err(e) => {
                tracing::warn!(target = %t, error = %e, "bootstrap peer unreachable");
                failed.push((t.to_string(), e.to_string()));
            }
        }
    }
    if peers.is_empty() && !targets.is_empty() {
        let detail = failed
            .iter()
            .map(|(t, e)| format!("{t}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(CliError::Unreachable(format!(
            "could not reach any of {} bootstrap peer(s) ({detail}); check that the node \
             there is running and the address is right",
            targets.len()
        )));
    }
    let routing_table = if peers.is_empty() {
        0
    } else {
        node.bootstrap(peers.clone()).await?
    };
    Ok(Joined {
        peers,
        failed,
        routing_table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_pinned_numbers_or_words() {
        let id = p2p_foundation::Keypair::from_secret_bytes([7; 32]).peer_id();
        let addr = SocketAddr::from(([127, 0, 0, 1], 9000));
        assert_eq!(
            format!("{id}@127.0.0.1:9000").parse::<PeerTarget>(),
            Ok(PeerTarget::Pinned(id, addr))
        );
        assert_eq!("127.0.0.1:9000".parse(), Ok(PeerTarget::Addr(addr)));
        assert_eq!(
            format!("/ip4/127.0.0.1/udp/9000/quic-v1/p2p/{id}").parse::<PeerTarget>(),
            Ok(PeerTarget::Pinned(id, addr))
        );
        assert_eq!(
            "/ip4/127.0.0.1/tcp/9000".parse(),
            Ok(PeerTarget::Addr(addr))
        );
        let words = p2p_foundation::WordAddress::from(addr).to_string();
        assert_eq!(words.parse(), Ok(PeerTarget::Addr(addr)));
        let err = "qqqq.wwww.zzzz"
            .parse::<PeerTarget>()
            .expect_err("bad words");
        assert!(err.contains("not a peer"), "{err}");
        let err = "zzz@127.0.0.1:1".parse::<PeerTarget>().expect_err("bad id");
        assert!(err.contains("not a peer id"), "{err}");
    }
}
