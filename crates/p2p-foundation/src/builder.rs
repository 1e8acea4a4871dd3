//! [`NodeBuilder`]: identity, listen address, bootstrap peers and each layer's configuration.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_foundation_dht::{Contact, DhtNode};
use p2p_foundation_identity::{Keypair, PeerId};
use p2p_foundation_mcp::{Discovery, McpServer, Router, ServicePublisher, StreamLimits};
use p2p_foundation_transport::Listen;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::kad::QuicKad;
use crate::lan::{Lan, LanConfig};
use crate::mcp::{DhtRegistry, NodeMcp, QuicConnector};
use crate::nat::{NatConfig, NatService};
use crate::net::{Layers, Net};
use crate::pubsub::Pubsub;
use crate::relay::{RelayConfig, RelayService};
use crate::{P2PNode, parse_peer_addr};

/// Inbound DHT requests queued for the DHT task before new ones are refused.
const KAD_INBOUND_QUEUE: usize = 1024;
/// Gossip events queued for the dispatcher before new ones are dropped (and counted).
const GOSSIP_EVENT_QUEUE: usize = 4096;

/// Builds a [`P2PNode`]; from [`P2PNode::builder`].
#[must_use = "a builder does nothing until .build().await"]
pub struct NodeBuilder {
    keypair: Option<Keypair>,
    identity_file: Option<PathBuf>,
    listen: SocketAddr,
    advertise: Option<Vec<SocketAddr>>,
    bootstrap: Vec<(PeerId, SocketAddr)>,
    mcp_server: bool,
    transport: p2p_foundation_transport::Config,
    dht: p2p_foundation_dht::Config,
    gossip: p2p_foundation_gossip::Config,
    mcp_limits: StreamLimits,
    mcp_record_ttl: Duration,
    dial_timeout: Duration,
    seed: Option<u64>,
    nat: NatConfig,
    relay: RelayConfig,
    reconnect: crate::ReconnectConfig,
    /// Listen with `IPV6_V6ONLY` even on `[::]`.
    ipv6_only: bool,
    /// Bootstrap addresses given without a peer id (trusted on first use).
    bootstrap_unpinned: Vec<SocketAddr>,
    /// The first string that did not parse ([`NodeBuilder::listen_on`],
    /// [`NodeBuilder::bootstrap_addrs`]); [`NodeBuilder::build`] returns it.
    deferred: Option<Error>,
    lan: LanConfig,
    peer_records: bool,
    network_poll: Duration,
    overlay: Option<crate::OverlayConfig>,
    tunneling: crate::TunnelingConfig,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("identity_file", &self.identity_file)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("bootstrap", &self.bootstrap)
            .field("mcp_server", &self.mcp_server)
            .field("transport", &self.transport)
            .field("dht", &self.dht)
            .field("mcp_record_ttl", &self.mcp_record_ttl)
            .field("dial_timeout", &self.dial_timeout)
            .field("network_poll", &self.network_poll)
            .finish_non_exhaustive()
    }
}

impl Default for NodeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// The facade's DHT defaults: the DHT crate's, with records large enough for MCP service
/// records carrying JSON Schemas (32 KiB; frames stay at the 64 KiB default).
pub fn default_dht_config() -> p2p_foundation_dht::Config {
    let mut c = p2p_foundation_dht::Config::default();
    c.max_record_len = 32 * 1024;
    c
}

/// The facade's gossip defaults: the gossip crate's, with the loopback addresses exempt
/// from the IP-colocation penalty (P6): peers on `127.0.0.1` or `[::1]` are on this host,
/// as the DHT's diversity limits also assume (`exempt_loopback`). Without it, more than
/// four loopback peers (a test network) would graylist each other.
pub fn default_gossip_config() -> p2p_foundation_gossip::Config {
    let mut c = p2p_foundation_gossip::Config::default();
    c.score.ip_colocation_whitelist.extend([
        std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::from(Ipv6Addr::LOCALHOST),
    ]);
    c
}

impl NodeBuilder {
    /// Defaults: a fresh identity, listening on `[::]:0` (dual-stack, any port), no
    /// bootstrap peers, no MCP server, each layer's default configuration.
    pub fn new() -> Self {
        Self {
            keypair: None,
            identity_file: None,
            listen: SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            advertise: None,
            bootstrap: Vec::new(),
            mcp_server: false,
            transport: p2p_foundation_transport::Config::default(),
            dht: default_dht_config(),
            gossip: default_gossip_config(),
            mcp_limits: StreamLimits::default(),
            mcp_record_ttl: p2p_foundation_mcp::records::DEFAULT_RECORD_TTL,
            dial_timeout: Duration::from_secs(15),
            seed: None,
            nat: NatConfig::default(),
            relay: RelayConfig::default(),
            reconnect: crate::ReconnectConfig::default(),
            ipv6_only: false,
            bootstrap_unpinned: Vec::new(),
            deferred: None,
            lan: LanConfig::default(),
            peer_records: true,
            network_poll: Duration::from_secs(2),
            overlay: None,
            tunneling: crate::TunnelingConfig::default(),
        }
    }

    /// Uses this identity.
    pub fn keypair(mut self, keypair: Keypair) -> Self {
        self.keypair = Some(keypair);
        self
    }

    /// Loads the identity from `path`, or generates one and saves it there (owner-only
    /// permissions) if the file does not exist.
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity_file = Some(path.into());
        self
    }

    /// Where to listen: `[::]:port` is dual-stack (IPv6 and IPv4), an IPv4 address is
    /// IPv4 only, any other IPv6 address IPv6 only. Default `[::]:0`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// IPv6 only: on `[::]:port` accept no IPv4 (`IPV6_V6ONLY`). Default `false`
    /// (dual-stack). No effect on an IPv4 or a specific IPv6 listen address.
    pub fn ipv6_only(mut self, only: bool) -> Self {
        self.ipv6_only = only;
        self
    }

    /// Where to listen, as text: a socket address, three words, or a multiaddr such as
    /// `/ip6/::/udp/9000/quic-v1` or `/ip4/0.0.0.0/tcp/9000` (QUIC and TCP share the
    /// port). A string that does not parse makes [`NodeBuilder::build`] fail with
    /// [`Error::InvalidAddress`], naming the part.
    ///
    /// ```no_run
    /// # async fn demo() -> p2p_foundation::Result<()> {
    /// let node = p2p_foundation::P2PNode::new()
    ///     .with_mcp_server()
    ///     .listen_on("/ip6/::/udp/9000/quic-v1")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn listen_on(mut self, addr: impl AsRef<str>) -> Self {
        match crate::addr::parse_addr(addr.as_ref()) {
            Ok(a) => self.listen = a,
            Err(e) => {
                self.deferred.get_or_insert(e);
            }
        }
        self
    }

    /// Peers to join through, as text: `<peer id>@<address>`, a multiaddr ending in
    /// `/p2p/<peer id>`, or an address alone (numbers, words or multiaddr; the peer's id
    /// is then learned and proven on first contact, see [`P2PNode::connect_addr`]). Bad
    /// text makes [`NodeBuilder::build`] fail with [`Error::InvalidAddress`].
    ///
    /// ```no_run
    /// # async fn demo() -> p2p_foundation::Result<()> {
    /// let node = p2p_foundation::P2PNode::new()
    ///     .bootstrap_addrs(["/ip4/192.0.2.7/udp/9000/quic-v1", "ocean.thunder.falcon"])
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn bootstrap_addrs<S: AsRef<str>>(mut self, peers: impl IntoIterator<Item = S>) -> Self {
        for p in peers {
            match crate::addr::parse_peer(p.as_ref()) {
                Ok(crate::PeerAddr {
                    peer: Some(id),
                    addr,
                }) => self.bootstrap.push((id, addr)),
                Ok(crate::PeerAddr { peer: None, addr }) => self.bootstrap_unpinned.push(addr),
                Err(e) => {
                    self.deferred.get_or_insert(e);
                }
            }
        }
        self
    }

    /// Addresses announced in this node's DHT provider records (MCP services). Default:
    /// the listen address when it is a specific one, none when listening on `[::]` (peers
    /// then find the node's address with a DHT lookup of its id).
    pub fn advertise(mut self, addrs: Vec<SocketAddr>) -> Self {
        self.advertise = Some(addrs);
        self
    }

    /// Peers to join the network through. [`NodeBuilder::build`] fails if none of them
    /// can be reached, or if a peer at the address proves another identity than the one
    /// given.
    pub fn bootstrap(mut self, peers: Vec<(PeerId, SocketAddr)>) -> Self {
        self.bootstrap.extend(peers);
        self
    }

    /// A bootstrap peer written `<peer id>@<socket address>`, e.g.
    /// `b5lq…@[2001:db8::1]:9000` (see [`parse_peer_addr`]).
    pub fn bootstrap_str(mut self, peer: &str) -> Result<Self> {
        self.bootstrap.push(parse_peer_addr(peer)?);
        Ok(self)
    }

    /// Serves an MCP server on inbound `/p2pf/mcp/1` streams, so tools registered with
    /// [`NodeMcp::register_tool`] can be published and called by peers.
    pub fn with_mcp_server(mut self) -> Self {
        self.mcp_server = true;
        self
    }

    /// Transport configuration (its `listen` field is replaced by [`NodeBuilder::listen`]).
    pub fn transport_config(mut self, config: p2p_foundation_transport::Config) -> Self {
        self.transport = config;
        self
    }

    /// DHT configuration (default [`default_dht_config`]).
    pub fn dht_config(mut self, config: p2p_foundation_dht::Config) -> Self {
        self.dht = config;
        self
    }

    /// Gossip configuration (default [`default_gossip_config`]).
    pub fn gossip_config(mut self, config: p2p_foundation_gossip::Config) -> Self {
        self.gossip = config;
        self
    }

    /// Per-stream limits of MCP sessions (served and opened).
    pub fn mcp_limits(mut self, limits: StreamLimits) -> Self {
        self.mcp_limits = limits;
        self
    }

    /// Lifetime of published MCP service records (republished at half of it). Default 30
    /// minutes.
    pub fn mcp_record_ttl(mut self, ttl: Duration) -> Self {
        self.mcp_record_ttl = ttl;
        self
    }

    /// Longest a dial may take before it fails (default 15 s).
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// NAT traversal: observed addresses, STUN on the QUIC port, coordinated hole punching
    /// (default [`NatConfig::default`], on). With `enabled` off, the node neither answers
    /// STUN nor punches.
    pub fn nat_config(mut self, config: NatConfig) -> Self {
        self.nat = config;
        self
    }

    /// Relaying (default [`RelayConfig::default`]: this node does not relay for others,
    /// but holds reservations at relays while it is NATed and dials through them when
    /// neither the direct path nor a punch works).
    pub fn relay_config(mut self, config: RelayConfig) -> Self {
        self.relay = config;
        self
    }

    /// Keeping connections (default [`ReconnectConfig::default`](crate::ReconnectConfig):
    /// bootstrap seeds and [`P2PNode::connect`] targets are dialled again with backoff
    /// when their connection closes).
    pub fn reconnect_config(mut self, config: crate::ReconnectConfig) -> Self {
        self.reconnect = config;
        self
    }

    /// LAN discovery over mDNS (default on): advertise this node on the link and connect
    /// to the nodes found there, with no bootstrap peer. `false` turns it off. Nodes
    /// listening on a loopback address never run it. See [`LanConfig`].
    pub fn mdns(mut self, enabled: bool) -> Self {
        self.lan.enabled = enabled;
        self
    }

    /// Signed peer records (default on): keep this node's addresses, reflexive address and
    /// relays in the DHT under a key derived from its PeerId, so that a peer knowing only
    /// the PeerId can reach it through NATs. `false` stops publishing them (lookups of other
    /// peers' records still happen). See [`crate::peer_record`].
    ///
    /// ```
    /// # async fn run() -> p2p_foundation::Result<()> {
    /// let node = p2p_foundation::P2PNode::builder().peer_records(false).build().await?;
    /// # node.shutdown().await; Ok(()) }
    /// ```
    pub fn peer_records(mut self, enabled: bool) -> Self {
        self.peer_records = enabled;
        self
    }

    /// How often the host's interface addresses are checked for a network change
    /// (default 2 s; [`Duration::ZERO`] turns the check off). On a change the node
    /// reports [`PeerEvent::LocalAddressesChanged`](crate::PeerEvent::LocalAddressesChanged),
    /// asks its observers for its mapping again, punches again to relayed peers and dials
    /// lost kept peers, each at once.
    ///
    /// ```no_run
    /// # async fn f() -> p2p_foundation::Result<()> {
    /// use std::time::Duration;
    /// let node = p2p_foundation::P2PNode::builder()
    ///     .network_poll(Duration::from_millis(500))
    ///     .build()
    ///     .await?;
    /// # node.shutdown().await; Ok(()) }
    /// ```
    pub fn network_poll(mut self, every: Duration) -> Self {
        self.network_poll = every;
        self
    }

    /// The P2P IPv6 overlay (default off): a TUN device holding this node's overlay address
    /// ([`P2PNode::overlay_addr`], derived from its PeerId), so that the host's ordinary
    /// IPv6 sockets reach every peer connected over QUIC that runs the overlay too, at its
    /// own overlay address; packets travel as QUIC datagrams on the existing connection.
    /// Needs `CAP_NET_ADMIN` and `/dev/net/tun`: without them [`NodeBuilder::build`] fails
    /// with [`Error::Overlay`]. See [`crate::overlay`] and `docs/protocols/tunnel.md`.
    ///
    /// ```no_run
    /// # async fn run() -> p2p_foundation::Result<()> {
    /// let node = p2p_foundation::P2PNode::builder()
    ///     .overlay(p2p_foundation::OverlayConfig::default())
    ///     .build()
    ///     .await?;
    /// println!("reach me at {}", node.overlay_addr().expect("overlay on"));
    /// # Ok(()) }
    /// ```
    pub fn overlay(mut self, config: crate::OverlayConfig) -> Self {
        self.overlay = Some(config);
        self
    }

    /// Automatic IPv6 path selection (default off; [`crate::TunnelingConfig::auto`] turns
    /// it on): the node measures its connectivity, ranks native IPv6, the transition tunnels
    /// and the P2P overlay, starts the best one it can run (the overlay behind a NAT with
    /// no native IPv6), makes its dials prefer IPv6 while it has a native IPv6 path, and
    /// reports each choice as a [`crate::PeerEvent::TunnelSelected`] with the reason and
    /// every rejected alternative; again after each network or NAT change. See
    /// [`crate::tunneling`].
    ///
    /// ```no_run
    /// # async fn run() -> p2p_foundation::Result<()> {
    /// use p2p_foundation::{P2PNode, PeerEvent, TunnelingConfig};
    ///
    /// let node = P2PNode::builder().tunneling(TunnelingConfig::auto()).build().await?;
    /// let mut events = node.peer_events();
    /// while let Ok(event) = events.recv().await {
    ///     if let PeerEvent::TunnelSelected { status } = event {
    ///         println!("IPv6 through {:?}; rejected: {:?}", status.ipv6, status.rejected);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn tunneling(mut self, config: crate::TunnelingConfig) -> Self {
        self.tunneling = config;
        self
    }

    /// LAN discovery settings (default [`LanConfig::default`], on).
    pub fn lan_config(mut self, config: LanConfig) -> Self {
        self.lan = config;
        self
    }

    /// Seed of the DHT's and gossip's random choices (default: from the OS).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    fn listen_config(addr: SocketAddr) -> Listen {
        match addr {
            SocketAddr::V6(a) if a.ip().is_unspecified() => Listen::DualStack { port: a.port() },
            SocketAddr::V6(a) => Listen::Ipv6(a),
            SocketAddr::V4(a) => Listen::Ipv4(a),
        }
    }

    /// Binds the endpoint, starts the DHT, gossip and MCP, and joins the network through
    /// the bootstrap peers.
    pub async fn build(mut self) -> Result<P2PNode> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let keypair = match (self.keypair, &self.identity_file) {
            (Some(k), _) => k,
            (None, Some(path)) => Keypair::load_or_generate(path)?,
            (None, None) => Keypair::generate(),
        };
        let local = keypair.peer_id();
        let seed = match self.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&Keypair::generate().secret_bytes()[..8]);
                u64::from_le_bytes(b)
            }
        };
        let mut transport = self.transport;
        transport.listen = match self.listen {
            SocketAddr::V6(a) if self.ipv6_only => Listen::Ipv6(a),
            addr => Self::listen_config(addr),
        };
        if self.nat.enabled {
            transport.side_channel = Some(crate::nat::side_channel_config());
        }
        let endpoint = crate::rebind::bind(&keypair, transport).await?;
        let local_addr = endpoint.local_addr()?;
        let side = endpoint.side_channel();
        let net = Net::new(endpoint, self.dial_timeout);
        net.keeper.configure(self.reconnect);
        if let Some(side) = side {
            let nat = NatService::new(keypair.clone(), side, self.nat);
            nat.start(&net);
            let _ = net.nat.set(nat);
        }
        if let Some(config) = &self.overlay {
            let overlay = crate::overlay::Overlay::start(&net, config)?;
            let _ = net.overlay.set(overlay);
        }
        if self.tunneling.enabled {
            let tunneling = crate::tunneling::Tunneling::start(&net, self.tunneling.clone());
            let _ = net.tunneling.set(tunneling);
        }
        let relay = RelayService::new(self.relay);
        relay.start(&net);
        let _ = net.relay.set(relay);
        if !self.network_poll.is_zero() {
            crate::netwatch::start(&net, self.network_poll);
        }
        let span = tracing::info_span!("p2pf.node", node = %local.short());
        let _enter = span.enter();

        // DHT over QUIC streams.
        let kad_timeout = self.dht.request_timeout;
        let kad_max_frame = self.dht.max_frame_len;
        let max_ttl = self.dht.max_record_ttl;
        let (kad_tx, kad_rx) = mpsc::channel(KAD_INBOUND_QUEUE);
        let kad = Arc::new(QuicKad {
            net: Arc::downgrade(&net),
            max_frame: kad_max_frame,
            timeout: kad_timeout,
        });
        let dht = DhtNode::spawn_with_validator(
            local,
            self.dht,
            seed,
            kad,
            kad_rx,
            crate::peer_record::PeerRecordValidator,
        );

        // Gossip on one stream per connection.
        let (gossip, events) = p2p_foundation_gossip::spawn(
            keypair.clone(),
            self.gossip,
            seed.wrapping_add(1),
            GOSSIP_EVENT_QUEUE,
        )?;
        let (pubsub, dispatch) = Pubsub::new(gossip.clone(), events);
        net.spawn(dispatch);

        // MCP: the local server, service records on the DHT, routing over QUIC.
        let server = self.mcp_server.then(|| McpServer::new(local));
        let advertise = self.advertise.unwrap_or_else(|| {
            if local_addr.ip().is_unspecified() {
                Vec::new()
            } else {
                vec![local_addr]
            }
        });
        let registry = Arc::new(DhtRegistry::new(
            dht.clone(),
            keypair.clone(),
            Arc::downgrade(&net),
            advertise.clone(),
            max_ttl,
        ));
        let publisher = server.as_ref().map(|s| {
            Arc::new(
                ServicePublisher::new(keypair.clone(), s.clone(), registry.clone())
                    .with_ttl(self.mcp_record_ttl),
            )
        });
        let connector = Arc::new(QuicConnector {
            net: Arc::downgrade(&net),
        });
        let router = Arc::new(Router::new(
            Discovery::new(registry.clone()).excluding(local),
            connector,
        ));
        let mcp = NodeMcp {
            server: server.clone(),
            publisher,
            registry,
            router,
            net: Arc::clone(&net),
            ttl: self.mcp_record_ttl,
            republishing: Mutex::new(Default::default()),
        };

        net.set_layers(
            Layers {
                kad_inbound: kad_tx,
                kad_max_frame,
                kad_timeout,
                gossip: gossip.clone(),
                mcp: server.map(|s| (s, self.mcp_limits)),
            },
            dht.clone(),
        );
        net.start_accepting();
        if self.peer_records {
            crate::peer_record::publish::start(&net, keypair.clone(), advertise);
        }
        let lan = Lan::start(&net, local_addr, self.lan);
        drop(_enter);

        let node = P2PNode {
            keypair,
            dht: crate::NodeDht::new(dht, &net),
            net,
            pubsub,
            mcp,
            lan,
            span,
        };
        let mut seeds = self.bootstrap;
        let mut unreachable = None;
        for addr in self.bootstrap_unpinned {
            match node.connect_addr(addr).await {
                Ok(peer) => seeds.push((peer, addr)),
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "bootstrap address unreachable");
                    unreachable = Some(e);
                }
            }
        }
        if let (true, Some(e)) = (seeds.is_empty(), unreachable) {
            node.shutdown().await;
            return Err(e);
        }
        if !seeds.is_empty() {
            if let Err(e) = node.bootstrap(seeds).await {
                node.shutdown().await;
                return Err(e);
            }
        }
        Ok(node)
    }
}

/// Dials each seed, then joins the DHT through those that answered.
pub(crate) async fn bootstrap(
    net: &Arc<Net>,
    dht: &DhtNode,
    seeds: Vec<(PeerId, SocketAddr)>,
) -> Result<usize> {
    let tried = seeds.len();
    let mut first_failure = None;
    let mut contacts = Vec::new();
    for (peer, addr) in seeds {
        match net.connect(peer, &[addr]).await {
            Ok(conn) => contacts.push(Contact::new(
                peer,
                crate::net::canonical(if conn.path() == p2p_foundation_transport::PathKind::Quic {
                    conn.remote_address()
                } else {
                    addr
                }),
            )),
            Err(e) => {
                tracing::warn!(peer = %peer.short(), %addr, error = %e, "bootstrap peer failed");
                if first_failure.is_none() {
                    first_failure = Some((peer, addr, e));
                }
            }
        }
    }
    if contacts.is_empty() {
        return match first_failure {
            Some((peer, addr, source)) => Err(Error::Bootstrap {
                tried,
                peer,
                addr,
                source: Box::new(source),
            }),
            None => Ok(0),
        };
    }
    Ok(dht.bootstrap(contacts).await?)
}
