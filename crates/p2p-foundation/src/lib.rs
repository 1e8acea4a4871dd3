#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod addr;
mod api;
mod builder;
mod config;
mod error;
mod kad;
mod lan;
pub mod mcp;
mod metrics;
mod nat;
mod net;
mod netwatch;
pub mod overlay;
pub mod peer_record;
mod pubsub;
mod rebind;
mod reconnect;
mod relay;
pub mod tunneling;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use addr::{PeerAddr, parse_addr, parse_peer};
pub use api::DHT_PUT_TTL;
pub use builder::{NodeBuilder, default_dht_config, default_gossip_config};
pub use config::{McpConfig, NetworkConfig, P2PConfig, P2PConfigBuilder, SecurityConfig};
pub use error::{Error, Result};
pub use lan::{LAN_SERVICE, LanConfig, LanStats, TXT_PEER_ID, TXT_VERSION};
pub use mcp::{DhtRegistry, NodeMcp};
pub use metrics::MetricsHandle;
pub use nat::{NAT_PROTOCOL, NatConfig, NatStats, NatStatus, Observation, Observer};
pub use net::{
    CLOSE_DUPLICATE, CLOSE_SHUTDOWN, ConnectionInfo, GOSSIP_PROTOCOL, KAD_PROTOCOL, MCP_PROTOCOL,
    NodeStats, PeerEvent,
};
pub use overlay::{OverlayConfig, OverlayDropReason, OverlayStats};
pub use p2p_foundation_nat::MappingBehaviour;
pub use pubsub::{Delivery, GossipMessage, Subscription};
pub use reconnect::ReconnectConfig;
pub use relay::{ForwardTap, RELAY_PROTOCOL, RelayConfig, RelayStats};
pub use tunneling::{TunnelStatus, TunnelingConfig};

/// The DHT crate (records, provider records, configuration).
pub use p2p_foundation_dht as dht;
/// The gossip crate (topics, configuration).
pub use p2p_foundation_gossip as gossip;
/// The identity crate.
pub use p2p_foundation_identity as identity;
pub use p2p_foundation_identity::{Key, Keypair, PeerId};
/// The MCP crate (tools, servers, routing).
pub use p2p_foundation_mcp as mcp_crate;
/// The NAT crate (STUN codec, punch probes, mapping behaviour).
pub use p2p_foundation_nat as nat_crate;
/// The transport crate (QUIC endpoint configuration).
pub use p2p_foundation_transport as transport;
/// The tunnel crate (IPv6 transition mechanisms, the overlay's core and TUN endpoint).
pub use p2p_foundation_tunnel as tunnel;
/// The three-word address crate.
pub use p2p_foundation_words as words;
pub use p2p_foundation_words::WordAddress;

use p2p_foundation_dht::{Contact, DhtNode, ProviderRecord, Record};
use p2p_foundation_gossip::{MessageId, Topic};
use p2p_foundation_identity::{Signed, Verified};

use crate::net::Net;
use crate::pubsub::Pubsub;

/// Parses `<peer id>@<address>`, the address as numbers (`127.0.0.1:9000`,
/// `[::1]:9000`) or as a three-word address (`ocean.thunder.falcon`, see [`WordAddress`]).
pub fn parse_peer_addr(s: &str) -> Result<(PeerId, SocketAddr)> {
    let bad = || Error::InvalidPeerAddr(s.to_owned());
    let (peer, addr) = s.split_once('@').ok_or_else(bad)?;
    let peer: PeerId = peer.trim().parse()?;
    let addr = p2p_foundation_words::parse_socket_addr(addr.trim()).map_err(|_| bad())?;
    Ok((peer, addr))
}

/// A peer-to-peer node: one QUIC endpoint and one connection per peer, shared by the
/// Kademlia DHT ([`P2PNode::dht`]), gossip ([`P2PNode::subscribe`], [`P2PNode::publish`])
/// and MCP ([`P2PNode::mcp`]). Inbound streams are routed by their protocol id
/// ([`KAD_PROTOCOL`], [`GOSSIP_PROTOCOL`], [`MCP_PROTOCOL`]).
pub struct P2PNode {
    keypair: Keypair,
    net: Arc<Net>,
    dht: NodeDht,
    pubsub: Pubsub,
    mcp: NodeMcp,
    lan: Option<lan::Lan>,
    span: tracing::Span,
}

impl std::fmt::Debug for P2PNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2PNode")
            .field("peer_id", &self.keypair.peer_id())
            .field("local_addr", &self.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl P2PNode {
    /// A builder with the defaults (fresh identity, `[::]:0`, no bootstrap peers).
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new()
    }

    /// This node's id.
    pub fn peer_id(&self) -> PeerId {
        self.keypair.peer_id()
    }

    /// This node's identity (to sign application records).
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The address the node listens on (UDP for QUIC; TCP on the same port).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.net.endpoint.local_addr()?)
    }

    /// The listen address as words (3 for IPv4, 6 or 9 for IPv6), for people to type.
    pub fn word_address(&self) -> Result<WordAddress> {
        Ok(WordAddress::from(net::canonical(self.local_addr()?)))
    }

    /// `<peer id>@<listen address>`, as [`parse_peer_addr`] and
    /// [`NodeBuilder::bootstrap_str`] read it.
    pub fn peer_addr(&self) -> Result<String> {
        Ok(format!("{}@{}", self.peer_id(), self.local_addr()?))
    }

    /// Connection events (first connection to a peer up, last one down). Events sent
    /// before this call are not seen; a receiver more than 1,024 events behind loses the
    /// oldest.
    pub fn peer_events(&self) -> tokio::sync::broadcast::Receiver<PeerEvent> {
        self.net.events.subscribe()
    }

    /// Connects to `peer` (or reuses the connection to it) at `addrs`, which are
    /// remembered for later dials. Fails if the peer at an address proves another id.
    /// From then on the node keeps the peer connected: if the connection closes, it dials
    /// again with backoff and reports [`PeerEvent::Reconnected`] (see
    /// [`ReconnectConfig`]).
    pub async fn connect(&self, peer: PeerId, addrs: &[SocketAddr]) -> Result<()> {
        self.net.connect(peer, addrs).await?;
        self.net.learn(peer, addrs.iter().copied());
        self.net.keeper.keep(peer);
        Ok(())
    }

    /// Connects to whoever answers at `addr` and returns the [`PeerId`] it proved: for
    /// addresses that come without an id, such as three words a person typed.
    ///
    /// Trust on first use: a word address names a place, not an identity, so the peer is
    /// whoever holds the key at that place now. A first handshake pinned to a throwaway id
    /// learns the id the peer's certificate names (it is aborted there, before the peer
    /// has proven anything, and the peer counts a failed handshake); a second dial pinned
    /// to that id then authenticates it in full, so the id returned is proven. The
    /// address is remembered for later dials, as with [`P2PNode::connect`].
    ///
    /// Fails with [`Error::SelfAddress`] if `addr` is this node's own endpoint.
    pub async fn connect_addr(&self, addr: SocketAddr) -> Result<PeerId> {
        use tracing::Instrument as _;
        let span = tracing::debug_span!(parent: &self.span, "connect_addr", %addr);
        self.connect_addr_inner(addr).instrument(span).await
    }

    async fn connect_addr_inner(&self, addr: SocketAddr) -> Result<PeerId> {
        let probe = Keypair::generate().peer_id();
        let peer = match self.net.endpoint.connect(probe, &[addr]).await {
            Err(p2p_foundation_transport::TransportError::PeerIdMismatch { actual, .. }) => actual,
            // The peer proved the throwaway id: it holds a key generated a moment ago
            // here, which cannot happen; refuse rather than trust it.
            Ok(conn) => {
                conn.close(p2p_foundation_transport::CLOSE_NORMAL, b"identity probe");
                return Err(Error::InvalidPeerAddr(addr.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        if peer == self.peer_id() {
            return Err(Error::SelfAddress { addr });
        }
        tracing::debug!(peer = %peer.short(), %addr, "learned the peer id at an address");
        self.connect(peer, &[addr]).await?;
        Ok(peer)
    }

    /// Joins the network through `seeds` (dials each, then a DHT bootstrap lookup);
    /// resolves to the routing table size. Fails if no seed could be reached. The seeds
    /// are kept connected, as with [`P2PNode::connect`].
    pub async fn bootstrap(&self, seeds: Vec<(PeerId, SocketAddr)>) -> Result<usize> {
        for (peer, addr) in &seeds {
            self.net.learn(*peer, [*addr]);
            self.net.keeper.keep(*peer);
        }
        builder::bootstrap(&self.net, &self.dht.node, seeds).await
    }

    /// The live connection to `peer`, if there is one: its path (QUIC or TCP), the
    /// peer's address on it and the transport's current round-trip estimate.
    pub fn connection_info(&self, peer: &PeerId) -> Option<ConnectionInfo> {
        self.net.connected(peer).map(|c| ConnectionInfo {
            path: c.path(),
            remote: c.remote_address(),
            rtt: c.rtt(),
        })
    }

    /// This node's NAT as peers see it: the reflexive address of its QUIC socket, the
    /// mapping behaviour and the observations behind them. Empty until a peer (or a STUN
    /// server) answered; observers are asked as connections come up.
    ///
    /// ```no_run
    /// # async fn demo(node: p2p_foundation::P2PNode) {
    /// if let Some(public) = node.nat_status().reflexive {
    ///     println!("peers see this node at {public}");
    /// }
    /// # }
    /// ```
    pub fn nat_status(&self) -> NatStatus {
        let local = self
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        match self.net.nat.get() {
            Some(nat) => nat.status(local),
            None => {
                nat::Observations::new(2, Duration::ZERO).status(local, std::time::Instant::now())
            }
        }
    }

    /// The node's IPv6 path choice, the reason and the rejected alternatives, when
    /// tunnel selection is on ([`NodeBuilder::tunneling`]) and has run once.
    ///
    /// ```no_run
    /// # fn demo(node: &p2p_foundation::P2PNode) {
    /// if let Some(status) = node.tunnel_status() {
    ///     println!("IPv6: {:?}", status.ipv6.map(|c| c.mechanism));
    /// }
    /// # }
    /// ```
    pub fn tunnel_status(&self) -> Option<TunnelStatus> {
        self.net.tunneling.get().and_then(|t| t.status())
    }

    /// Counters of NAT traversal (all zero when it is off).
    pub fn nat_stats(&self) -> NatStats {
        self.net.nat.get().map(|n| n.stats()).unwrap_or_default()
    }

    /// Counters of relaying: as a relay (reservations, circuits, bytes) and as a holder or
    /// dialer (reservations held, relayed connections, upgrades to a direct path).
    ///
    /// ```no_run
    /// # async fn demo(node: p2p_foundation::P2PNode) {
    /// let relay = node.relay_stats();
    /// println!("{} circuits, {} bytes relayed", relay.circuits_served, relay.bytes_relayed);
    /// # }
    /// ```
    pub fn relay_stats(&self) -> RelayStats {
        self.net.relay.get().map(|r| r.stats()).unwrap_or_default()
    }

    /// Counters of LAN discovery (mDNS): peers found on the link, records ignored, dials.
    pub fn lan_stats(&self) -> LanStats {
        self.lan.as_ref().map(|l| l.stats()).unwrap_or_default()
    }

    /// Peers with a live connection.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.net.connected_peers()
    }

    /// Addresses known for `peer` (from dials, inbound connections, the DHT, provider
    /// records).
    pub fn addresses_of(&self, peer: &PeerId) -> Vec<SocketAddr> {
        self.net.addresses(peer)
    }

    /// `peer`'s signed peer record, looked up in the DHT: its direct and reflexive
    /// addresses and the relays holding a reservation for it. `None` when no record signed
    /// by `peer` itself is found. A dial to a peer with no known address does this lookup by
    /// itself.
    ///
    /// ```no_run
    /// # async fn run(node: p2p_foundation::P2PNode, peer: p2p_foundation::PeerId) -> p2p_foundation::Result<()> {
    /// if let Some(record) = node.peer_record(peer).await? {
    ///     println!("{peer} at {:?}, relays {:?}", record.dial_addrs(), record.relays());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn peer_record(&self, peer: PeerId) -> Result<Option<peer_record::PeerRecord>> {
        let dht = self.net.dht().ok_or(Error::Shutdown)?;
        Ok(peer_record::publish::fetch(&self.net, &dht, peer).await)
    }

    /// The DHT.
    pub fn dht(&self) -> &NodeDht {
        &self.dht
    }

    /// Subscribes to `topic`: messages published on it anywhere in the network arrive on
    /// the returned [`Subscription`].
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        Ok(self.pubsub.subscribe(Topic::new(topic)?).await?)
    }

    /// Publishes `data` on `topic` (signed by this node).
    pub async fn publish(&self, topic: &str, data: impl Into<Vec<u8>>) -> Result<MessageId> {
        Ok(self
            .pubsub
            .handle
            .publish(Topic::new(topic)?, data.into())
            .await?)
    }

    /// Publishes `data` on `topic` and waits until `subscribers` of them have confirmed
    /// delivery with a signed acknowledgement (gossip's delivery confirmation), or until
    /// `deadline`. [`Delivery::complete`] says whether enough confirmed; the acknowledging
    /// peers are listed either way.
    pub async fn publish_confirmed(
        &self,
        topic: &str,
        data: impl Into<Vec<u8>>,
        subscribers: u16,
        deadline: Duration,
    ) -> Result<Delivery> {
        Ok(self
            .pubsub
            .publish_confirmed(Topic::new(topic)?, data.into(), subscribers, deadline)
            .await?)
    }

    /// Connected peers that announced a subscription to `topic`.
    pub fn topic_peers(&self, topic: &str) -> Result<Vec<PeerId>> {
        Ok(self.pubsub.topic_peers(&Topic::new(topic)?))
    }

    /// Waits until at least `n` connected peers have announced a subscription to `topic`
    /// (driven by their SUBSCRIBE messages, no polling).
    pub async fn wait_for_topic_peers(&self, topic: &str, n: usize) -> Result<()> {
        self.pubsub.wait_topic_peers(&Topic::new(topic)?, n).await;
        Ok(())
    }

    /// The gossip driver (mesh peers, scores, validation, metrics).
    pub fn gossip(&self) -> &p2p_foundation_gossip::GossipHandle {
        &self.pubsub.handle
    }

    /// Gossip messages dropped because a [`Subscription`] was not read in time.
    pub fn dropped_gossip_messages(&self) -> u64 {
        self.pubsub.dropped()
    }

    /// MCP: this node's tools and services, and calls to tools anywhere in the network.
    pub fn mcp(&self) -> &NodeMcp {
        &self.mcp
    }

    /// Counters of connections and routed streams.
    pub fn stats(&self) -> NodeStats {
        self.net.stats()
    }

    /// Everything the node counts, as OpenMetrics text (what a Prometheus server scrapes
    /// from `/metrics`): connections by path, bytes, handshake failures by reason, dial
    /// outcomes, DHT operations (latency histogram, hops), gossip, NAT and relay counters,
    /// MCP calls by tool (latency histogram, outcomes). Every series is named `p2pf_…`;
    /// `docs/metrics.md` lists them.
    ///
    /// ```no_run
    /// # async fn demo(node: p2p_foundation::P2PNode) {
    /// let text = node.metrics().await;
    /// assert!(text.contains("p2pf_connections_established_total"));
    /// # }
    /// ```
    pub async fn metrics(&self) -> String {
        self.metrics_handle().encode().await
    }

    /// A cheap, cloneable handle that encodes [`P2PNode::metrics`], for an HTTP handler
    /// or a task that outlives this borrow (it keeps nothing of the node alive: after
    /// shutdown it encodes an empty exposition).
    ///
    /// ```no_run
    /// # async fn demo(node: p2p_foundation::P2PNode) {
    /// let metrics = node.metrics_handle();
    /// tokio::spawn(async move { println!("{}", metrics.encode().await) });
    /// # }
    /// ```
    pub fn metrics_handle(&self) -> MetricsHandle {
        MetricsHandle::new(&self.net)
    }

    /// The transport's counters (handshakes, bytes, junk datagrams, failures).
    pub fn transport_metrics(&self) -> p2p_foundation_transport::MetricsSnapshot {
        self.net.endpoint.metrics()
    }

    /// Shuts down gracefully: says goodbye on the link and stops the mDNS thread (LAN
    /// discovery), stops republishing, stops gossip, closes every connection
    /// with [`CLOSE_SHUTDOWN`] (peers see it at once) and waits for every task of the
    /// node to end. The TCP listener is closed when this returns; QUIC releases the UDP
    /// socket once the closed connections drained, and a node built on the same address
    /// in this process meanwhile waits for it (up to 4 s), so a restart in place works.
    /// The DHT task ends once the last [`NodeDht`] clone is dropped.
    pub async fn shutdown(mut self) {
        let span = self.span.clone();
        let _e = span.enter();
        tracing::debug!("shutting down");
        if let Some(lan) = self.lan.take() {
            lan.stop().await;
        }
        self.pubsub.handle.shutdown().await;
        self.net.shutdown().await;
        tracing::debug!("shut down");
    }
}

impl Drop for P2PNode {
    /// Dropping a node without [`P2PNode::shutdown`] still stops its tasks (at their next
    /// await point) and so releases its connections and socket.
    fn drop(&mut self) {
        self.net.cancel.cancel();
    }
}

/// The node's Kademlia DHT: records signed by this node, provider records, lookups. Peers
/// found by lookups are remembered, so they can be dialled by id.
#[derive(Clone, Debug)]
pub struct NodeDht {
    node: DhtNode,
    net: std::sync::Weak<Net>,
}

impl NodeDht {
    fn new(node: DhtNode, net: &Arc<Net>) -> Self {
        Self {
            node,
            net: Arc::downgrade(net),
        }
    }

    fn learn(&self, peer: PeerId, addrs: impl IntoIterator<Item = SocketAddr>) {
        if let Some(net) = self.net.upgrade() {
            net.learn(peer, addrs);
        }
    }

    /// Runs one DHT operation, recording its latency and outcome as `op`.
    async fn timed<T, E>(
        &self,
        op: &'static str,
        work: impl Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, E> {
        metrics::timed_dht(&self.net, op, work).await
    }

    /// The DHT driver handle (everything, including records signed by other keys).
    pub fn node(&self) -> &DhtNode {
        &self.node
    }

    /// Signs `value` under `key` with `keypair` (valid for `ttl`) and stores it on the k
    /// closest nodes; resolves to how many accepted it. `seq` must grow with each update.
    pub async fn put(
        &self,
        keypair: &Keypair,
        key: Key,
        value: impl Into<Vec<u8>>,
        seq: u64,
        ttl: Duration,
    ) -> Result<usize> {
        let record = Signed::sign(
            keypair,
            Record::new(key, value),
            seq,
            SystemTime::now() + ttl,
        )?;
        Ok(self.timed("put", self.node.put_record(record)).await?)
    }

    /// Stores an already signed record; resolves to how many nodes accepted it.
    pub async fn put_record(&self, record: Signed<Record>) -> Result<usize> {
        Ok(self.timed("put", self.node.put_record(record)).await?)
    }

    /// Valid records under `key`, highest sequence number first (empty if none).
    pub async fn get(&self, key: Key) -> Result<Vec<Verified<Record>>> {
        Ok(self.timed("get", self.node.get_record(key)).await?)
    }

    /// Announces that `keypair`'s node provides `key`, reachable at `addrs`, for `ttl`.
    pub async fn provide(
        &self,
        keypair: &Keypair,
        key: Key,
        addrs: Vec<SocketAddr>,
        seq: u64,
        ttl: Duration,
    ) -> Result<usize> {
        let record = Signed::sign(
            keypair,
            ProviderRecord::new(key, addrs),
            seq,
            SystemTime::now() + ttl,
        )?;
        Ok(self
            .timed("provide", self.node.add_provider(record))
            .await?)
    }

    /// Provider records for `key`, one per provider.
    pub async fn providers(&self, key: Key) -> Result<Vec<Verified<ProviderRecord>>> {
        let providers = self
            .timed("providers", self.node.get_providers(key))
            .await?;
        for p in &providers {
            self.learn(p.signer(), p.payload().addrs.iter().copied());
        }
        Ok(providers)
    }

    /// The k closest nodes to `key` that answered.
    pub async fn closest_peers(&self, key: Key) -> Result<Vec<Contact>> {
        let (contacts, stats) = self.timed("find_node", self.node.find_node(key)).await?;
        if let Some(net) = self.net.upgrade() {
            net.instruments.dht_hops(stats.hops);
        }
        for c in &contacts {
            self.learn(c.peer(), [c.addr()]);
        }
        Ok(contacts)
    }

    /// The routing table size.
    pub async fn routing_table_len(&self) -> Result<usize> {
        Ok(self.node.stats().await?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn peer_addresses_parse() {
        let id = Keypair::from_secret_bytes([3; 32]).peer_id();
        let (p, a) = parse_peer_addr(&format!("{id}@127.0.0.1:9000")).expect("numbers");
        assert_eq!((p, a), (id, SocketAddr::from(([127, 0, 0, 1], 9000))));
        let (_, a) = parse_peer_addr(&format!("{id}@[::1]:9000")).expect("IPv6");
        assert_eq!(a, "[::1]:9000".parse().expect("addr"));
        let words = WordAddress::from(SocketAddr::from(([203, 0, 113, 9], 9000)));
        let (_, a) = parse_peer_addr(&format!("{id}@{words}")).expect("words");
        assert_eq!(a, SocketAddr::from(([203, 0, 113, 9], 9000)));
        assert!(matches!(
            parse_peer_addr("nothing"),
            Err(Error::InvalidPeerAddr(_))
        ));
        assert!(matches!(
            parse_peer_addr("x@127.0.0.1:1"),
            Err(Error::Identity(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_peer_addr_never_panics(text in "\\PC{0,200}") {
            let _ = parse_peer_addr(&text);
        }

        #[test]
        fn parse_peer_addr_never_panics_with_an_at_sign(a in "\\PC{0,60}", b in "\\PC{0,60}") {
            let _ = parse_peer_addr(&format!("{a}@{b}"));
        }
    }
}
