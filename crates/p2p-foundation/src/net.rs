//! One endpoint, one connection per peer, and inbound streams routed by protocol id.
//!
//! Every layer shares the connection table: the DHT transport, the gossip attachment and
//! the MCP connector all go through [`Net::connect`], which returns the live connection to
//! a peer or dials one (addresses from the caller, the address book, or a DHT lookup).
//! When two connections to one peer exist (both sides dialled at once), both sides keep
//! the same one: the connection dialled by the smaller [`PeerId`] (or, when one side
//! dialled both, the newer); the other is closed after a short grace period.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use p2p_foundation_dht::{DhtNode, Inbound};
use p2p_foundation_gossip::GossipHandle;
use p2p_foundation_identity::PeerId;
use p2p_foundation_mcp::{Caller, McpServer, StreamLimits};
use p2p_foundation_transport::{
    Connection, Endpoint, IncomingBi, PathKind, RecvStream, SendStream,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::nat::{NAT_PROTOCOL, NatService, Observer};
use crate::relay::{RELAY_PROTOCOL, RelayService};

/// Protocol id of DHT streams: one request and one response per bidirectional stream.
pub const KAD_PROTOCOL: &str = p2p_foundation_dht::message::PROTOCOL_ID;
/// Protocol id of the gossip stream: one long-lived bidirectional stream per connection.
pub const GOSSIP_PROTOCOL: &str = "/p2pf/gossip/1";
/// Protocol id of MCP streams: one MCP session (newline-delimited JSON-RPC) per stream.
pub const MCP_PROTOCOL: &str = "/p2pf/mcp/1";

/// Application close code of the losing connection of a simultaneous dial.
pub const CLOSE_DUPLICATE: u32 = 0x10;
/// Application close code sent to every peer when the node shuts down: peers remove it
/// from their DHT routing tables at once (it is added again when heard from).
pub const CLOSE_SHUTDOWN: u32 = 0x11;

/// How long the losing connection of a simultaneous dial stays open for the streams
/// already running on it.
const DUPLICATE_GRACE: Duration = Duration::from_secs(2);
/// Peers remembered in the address book.
const MAX_BOOK_PEERS: usize = 10_000;
/// Addresses remembered per peer (most recent first).
const MAX_ADDRS_PER_PEER: usize = 8;

/// What inbound streams are handed to, set once when the node starts.
pub(crate) struct Layers {
    pub(crate) kad_inbound: mpsc::Sender<Inbound>,
    pub(crate) kad_max_frame: usize,
    pub(crate) kad_timeout: Duration,
    pub(crate) gossip: GossipHandle,
    pub(crate) mcp: Option<(McpServer, StreamLimits)>,
}

struct Entry {
    conn: Connection,
    id: u64,
    outbound: bool,
}

/// Connection events, from [`P2PNode::peer_events`](crate::P2PNode::peer_events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// The first connection to `peer` is up (a replacement connection is not reported).
    Connected {
        /// The peer, as proven in the handshake.
        peer: PeerId,
        /// Whether this node dialled it.
        outbound: bool,
        /// Its address on this connection.
        addr: SocketAddr,
    },
    /// The connection to `peer` closed and no other replaced it.
    Disconnected {
        /// The peer.
        peer: PeerId,
        /// Why it closed.
        reason: String,
    },
    /// A peer this node keeps (a bootstrap seed, a [`P2PNode::connect`] target) is
    /// connected again after its connection closed, whichever side dialled (it follows
    /// that connection's [`PeerEvent::Connected`]). See [`crate::ReconnectConfig`].
    ///
    /// [`P2PNode::connect`]: crate::P2PNode::connect
    Reconnected {
        /// The peer.
        peer: PeerId,
        /// Its address on the new connection (a restarted peer may be on a new port).
        addr: SocketAddr,
        /// How long it was gone.
        after: Duration,
    },
    /// The host's interface addresses changed (a new network, a new DHCP lease, an
    /// interface gone): the node asks its observers for its mapping again, tries to move
    /// relayed connections to a direct path and dials lost kept peers, each at once rather
    /// than after its backoff. Sampled every
    /// [`NodeBuilder::network_poll`](crate::NodeBuilder::network_poll).
    LocalAddressesChanged {
        /// Addresses that appeared.
        added: Vec<std::net::IpAddr>,
        /// Addresses that went away.
        removed: Vec<std::net::IpAddr>,
    },
    /// This node's signed peer record (its addresses, reflexive ones and relays) was
    /// stored in the DHT: from now on a peer that knows only this node's PeerId finds it
    /// there ([`P2PNode::peer_record`](crate::P2PNode::peer_record)). Sent for every
    /// publication: at start, on each change of addresses or relays, and each republish.
    PeerRecordPublished {
        /// The record as published.
        record: crate::peer_record::PeerRecord,
        /// DHT nodes that accepted it.
        stored: usize,
    },
    /// This node's reflexive address or NAT mapping behaviour changed (see
    /// [`P2PNode::nat_status`](crate::P2PNode::nat_status) for the evidence).
    NatChanged {
        /// The most recently observed reflexive address of the QUIC socket.
        reflexive: Option<SocketAddr>,
        /// The mapping behaviour, once observers on two IP addresses answered.
        mapping: Option<p2p_foundation_nat::MappingBehaviour>,
    },
    /// The node chose how it reaches IPv6 (or chose differently than before): at start,
    /// then after a network or NAT change ([`crate::NodeBuilder::tunneling`]).
    TunnelSelected {
        /// The choice, the reason, every rejected alternative and the measurements.
        status: crate::TunnelStatus,
    },
    /// A dial reached `peer` on a hole-punched path.
    HolePunched {
        /// The peer.
        peer: PeerId,
        /// The peer's address on the punched path (its NAT's public mapping).
        addr: SocketAddr,
        /// From the start of the dial to the authenticated connection.
        took: Duration,
    },
    /// A dial reached `peer` through `relay` (punching had not worked yet; it goes on in
    /// the background, and a [`PeerEvent::HolePunched`] follows if it moves the
    /// connection to a direct path).
    Relayed {
        /// The peer.
        peer: PeerId,
        /// The relay splicing the connection (it sees only ciphertext).
        relay: PeerId,
        /// From the start of the dial to the authenticated connection.
        took: Duration,
    },
}

/// Which path won a dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Won {
    Direct,
    Punched,
    Relayed(PeerId),
    /// The peer dialled this node back (connection reversal): already registered.
    Reversed,
}

/// A direct dial or a punch running as its own task (so it can outlive a race the relay
/// won, and still move the connection to a direct path).
type PathTask = tokio::task::JoinHandle<Option<Result<Connection>>>;

/// A live connection's path and measurements, from
/// [`P2PNode::connection_info`](crate::P2PNode::connection_info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// QUIC, or the TCP + TLS fallback.
    pub path: p2p_foundation_transport::PathKind,
    /// The peer's address on this connection.
    pub remote: SocketAddr,
    /// The transport's smoothed round-trip estimate.
    pub rtt: Duration,
}

/// Peer events buffered per receiver before the oldest are dropped.
const PEER_EVENT_QUEUE: usize = 1024;

/// Counters of the facade's stream routing.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) inbound_connections: AtomicU64,
    pub(crate) outbound_connections: AtomicU64,
    pub(crate) duplicate_connections: AtomicU64,
    pub(crate) unknown_protocol_streams: AtomicU64,
    pub(crate) kad_served: AtomicU64,
    pub(crate) kad_refused: AtomicU64,
    pub(crate) mcp_sessions: AtomicU64,
    pub(crate) peer_records_published: AtomicU64,
    pub(crate) peer_record_lookups: AtomicU64,
    pub(crate) peer_records_found: AtomicU64,
    pub(crate) network_changes: AtomicU64,
}

/// Snapshot of the facade's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Connections accepted.
    pub inbound_connections: u64,
    /// Connections dialled.
    pub outbound_connections: u64,
    /// Connections closed because another connection to the same peer won.
    pub duplicate_connections: u64,
    /// Inbound streams refused because their protocol id is not served.
    pub unknown_protocol_streams: u64,
    /// DHT requests answered.
    pub kad_served: u64,
    /// DHT requests refused (oversized, too slow, rate limited, queue full).
    pub kad_refused: u64,
    /// MCP sessions served.
    pub mcp_sessions: u64,
    /// Times this node's peer record was stored in the DHT (see [`crate::peer_record`]).
    pub peer_records_published: u64,
    /// Peer records looked up (a dial to a peer with no known address).
    pub peer_record_lookups: u64,
    /// Of those, lookups that found a record signed by the peer.
    pub peer_records_found: u64,
    /// Changes of the host's interface addresses seen ([`PeerEvent::LocalAddressesChanged`]).
    pub network_changes: u64,
    /// Peers with a live connection now.
    pub connected_peers: usize,
    /// The IPv6 overlay's packet counters, when it is on ([`crate::NodeBuilder::overlay`]).
    pub overlay: Option<crate::OverlayStats>,
    /// The DS-Lite B4's packet counters, while the node runs one
    /// ([`crate::TunnelingConfig::aftr`]).
    pub dslite: Option<p2p_foundation_tunnel::endpoint::EndpointStats>,
}

pub(crate) struct Net {
    pub(crate) endpoint: Endpoint,
    pub(crate) local: PeerId,
    conns: Mutex<HashMap<PeerId, Entry>>,
    book: Mutex<HashMap<PeerId, Vec<SocketAddr>>>,
    /// Relays named by peers' records (peer → relays), bounded like the book.
    relay_hints: Mutex<HashMap<PeerId, Vec<PeerId>>>,
    dialing: Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<()>>>>,
    next_id: AtomicU64,
    layers: OnceLock<Layers>,
    dht: Mutex<Option<DhtNode>>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    dial_timeout: Duration,
    pub(crate) counters: Counters,
    /// The instruments behind [`crate::P2PNode::metrics`].
    pub(crate) instruments: crate::metrics::Instruments,
    /// The peers kept connected, and those lost (see [`crate::reconnect`]).
    pub(crate) keeper: crate::reconnect::Keeper,
    pub(crate) events: broadcast::Sender<PeerEvent>,
    /// Serialises gossip attachments, so the gossip driver sees them in table order.
    gossip_turn: tokio::sync::Mutex<()>,
    /// NAT traversal, when enabled.
    pub(crate) nat: OnceLock<Arc<NatService>>,
    /// Relaying (as relay, holder and dialer), when NAT traversal is enabled.
    pub(crate) relay: OnceLock<Arc<RelayService>>,
    /// LAN discovery's state, when it runs.
    pub(crate) lan: OnceLock<Arc<crate::lan::Shared>>,
    /// Bumped on every network change (local addresses, reflexive address, mapping):
    /// backoff waits end early when it moves ([`Net::wait_unless_network_changes`]).
    network: tokio::sync::watch::Sender<u64>,
    /// Peers whose relayed connection an upgrade task is moving to a direct path.
    upgrading: Mutex<HashSet<PeerId>>,
    /// The IPv6 overlay, when enabled (see [`crate::overlay`]).
    pub(crate) overlay: OnceLock<Arc<crate::overlay::Overlay>>,
    /// Automatic tunnel selection, when enabled (see [`crate::tunneling`]).
    pub(crate) tunneling: OnceLock<Arc<crate::tunneling::Tunneling>>,
}

/// A reader that yields nothing until its gate opens: the gossip driver drops frames from
/// a peer stream it has not registered yet, so frames must wait until it has.
struct Gated<R> {
    inner: R,
    gate: Option<oneshot::Receiver<()>>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Gated<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(gate) = self.gate.as_mut() {
            match Pin::new(gate).poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Opened, or the attachment was abandoned (then the stream is dropped soon).
                Poll::Ready(_) => self.gate = None,
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The address as a peer would dial it: v4-mapped IPv6 addresses (seen on dual-stack
/// sockets) become IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn dialable(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
}

/// Whether a new connection replaces the existing one to the same peer. Both sides
/// compute the same answer: a direct connection beats a relayed one (both sides see the
/// same path kinds); otherwise the connection dialled by the smaller peer id wins, and
/// between two connections dialled by the same side, the newer one.
fn new_wins(
    local: PeerId,
    peer: PeerId,
    (old_outbound, old_relayed): (bool, bool),
    (new_outbound, new_relayed): (bool, bool),
) -> bool {
    if old_relayed != new_relayed {
        return old_relayed;
    }
    if old_outbound == new_outbound {
        return true;
    }
    let new_dialer = if new_outbound { local } else { peer };
    new_dialer == local.min(peer)
}

impl Net {
    pub(crate) fn new(endpoint: Endpoint, dial_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            local: endpoint.peer_id(),
            endpoint,
            conns: Mutex::new(HashMap::new()),
            book: Mutex::new(HashMap::new()),
            relay_hints: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            layers: OnceLock::new(),
            dht: Mutex::new(None),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            dial_timeout,
            counters: Counters::default(),
            instruments: crate::metrics::Instruments::default(),
            keeper: crate::reconnect::Keeper::default(),
            events: broadcast::channel(PEER_EVENT_QUEUE).0,
            gossip_turn: tokio::sync::Mutex::new(()),
            nat: OnceLock::new(),
            lan: OnceLock::new(),
            relay: OnceLock::new(),
            network: tokio::sync::watch::channel(0).0,
            upgrading: Mutex::new(HashSet::new()),
            overlay: OnceLock::new(),
            tunneling: OnceLock::new(),
        })
    }

    pub(crate) fn set_layers(&self, layers: Layers, dht: DhtNode) {
        let _ = self.layers.set(layers);
        *lock(&self.dht) = Some(dht);
    }

    /// Spawns `fut` on the node's task tracker; it is dropped when the node shuts down.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = fut => {}
            }
        });
    }

    /// Spawns `fut` on the node's task tracker and returns its handle; the output is
    /// `None` when the node shut down first.
    fn spawn_handle<T, F>(&self, fut: F) -> tokio::task::JoinHandle<Option<T>>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => None,
                out = fut => Some(out),
            }
        })
    }

    pub(crate) fn stats(&self) -> NodeStats {
        let c = &self.counters;
        NodeStats {
            inbound_connections: c.inbound_connections.load(Ordering::Relaxed),
            outbound_connections: c.outbound_connections.load(Ordering::Relaxed),
            duplicate_connections: c.duplicate_connections.load(Ordering::Relaxed),
            unknown_protocol_streams: c.unknown_protocol_streams.load(Ordering::Relaxed),
            kad_served: c.kad_served.load(Ordering::Relaxed),
            kad_refused: c.kad_refused.load(Ordering::Relaxed),
            mcp_sessions: c.mcp_sessions.load(Ordering::Relaxed),
            peer_records_published: c.peer_records_published.load(Ordering::Relaxed),
            peer_record_lookups: c.peer_record_lookups.load(Ordering::Relaxed),
            peer_records_found: c.peer_records_found.load(Ordering::Relaxed),
            network_changes: c.network_changes.load(Ordering::Relaxed),
            connected_peers: lock(&self.conns).len(),
            overlay: self.overlay.get().map(|o| o.stats()),
            dslite: self.tunneling.get().and_then(|t| t.dslite_stats()),
        }
    }

    /// Starts the accept loop.
    pub(crate) fn start_accepting(self: &Arc<Self>) {
        let net = Arc::clone(self);
        let span = tracing::debug_span!("p2pf.accept", node = %self.local.short());
        self.spawn(
            async move {
                while let Some(conn) = net.endpoint.accept().await {
                    net.counters
                        .inbound_connections
                        .fetch_add(1, Ordering::Relaxed);
                    net.register(conn, false);
                }
            }
            .instrument(span),
        );
    }

    /// Adds a connection accepted through a relay.
    pub(crate) fn accept_relayed(self: &Arc<Self>, conn: Connection) {
        self.counters
            .inbound_connections
            .fetch_add(1, Ordering::Relaxed);
        self.register(conn, false);
    }

    /// Remembers addresses of `peer` (most recent first, bounded).
    pub(crate) fn learn(&self, peer: PeerId, addrs: impl IntoIterator<Item = SocketAddr>) {
        if peer == self.local {
            return;
        }
        let mut book = lock(&self.book);
        if !book.contains_key(&peer) && book.len() >= MAX_BOOK_PEERS {
            // Forget a peer we hold no connection to, to make room.
            let conns = lock(&self.conns);
            let victim = book.keys().find(|p| !conns.contains_key(p)).copied();
            drop(conns);
            match victim {
                Some(v) => {
                    book.remove(&v);
                }
                None => return,
            }
        }
        let list = book.entry(peer).or_default();
        for addr in addrs {
            let addr = canonical(addr);
            if !dialable(&addr) {
                continue;
            }
            list.retain(|a| *a != addr);
            list.insert(0, addr);
        }
        list.truncate(MAX_ADDRS_PER_PEER);
        if list.is_empty() {
            book.remove(&peer);
        }
    }

    /// The relays `peer`'s record named when it was last looked up.
    pub(crate) fn relay_hints(&self, peer: &PeerId) -> Vec<PeerId> {
        lock(&self.relay_hints)
            .get(peer)
            .cloned()
            .unwrap_or_default()
    }

    fn hint_relays(&self, peer: PeerId, relays: Vec<PeerId>) {
        let mut hints = lock(&self.relay_hints);
        if !hints.contains_key(&peer) && hints.len() >= MAX_BOOK_PEERS {
            let victim = hints.keys().next().copied();
            if let Some(v) = victim {
                hints.remove(&v);
            }
        }
        if relays.is_empty() {
            hints.remove(&peer);
        } else {
            hints.insert(peer, relays);
        }
    }

    /// Known addresses of `peer`.
    pub(crate) fn addresses(&self, peer: &PeerId) -> Vec<SocketAddr> {
        lock(&self.book).get(peer).cloned().unwrap_or_default()
    }

    /// The live connection to `peer`, if any.
    /// Every current connection with its registration id.
    pub(crate) fn live_connections(&self) -> Vec<(Connection, u64)> {
        lock(&self.conns)
            .values()
            .map(|e| (e.conn.clone(), e.id))
            .collect()
    }

    pub(crate) fn connected(&self, peer: &PeerId) -> Option<Connection> {
        lock(&self.conns).get(peer).map(|e| e.conn.clone())
    }

    /// Every live connection (one per peer).
    pub(crate) fn connections(&self) -> Vec<Connection> {
        lock(&self.conns).values().map(|e| e.conn.clone()).collect()
    }

    /// Whether this node's UDP looks blocked: it has connections and none of them is QUIC
    /// (all TCP, or relayed).
    pub(crate) fn udp_looks_blocked(&self) -> bool {
        let conns = lock(&self.conns);
        !conns.is_empty() && conns.values().all(|e| e.conn.path() != PathKind::Quic)
    }

    /// The DHT handle while the node runs (cleared at shutdown).
    pub(crate) fn dht(&self) -> Option<DhtNode> {
        lock(&self.dht).clone()
    }

    /// The gossip handle, once the node started.
    pub(crate) fn gossip(&self) -> Option<GossipHandle> {
        self.layers.get().map(|l| l.gossip.clone())
    }

    /// Connections open now, by [`crate::metrics::PATHS`].
    pub(crate) fn open_by_path(&self) -> [u64; 3] {
        let mut open = [0u64; 3];
        for entry in lock(&self.conns).values() {
            let path = entry.conn.path();
            if let Some(i) = crate::metrics::PATHS.iter().position(|p| *p == path) {
                open[i] += 1;
            }
        }
        open
    }

    pub(crate) fn connected_peers(&self) -> Vec<PeerId> {
        lock(&self.conns).keys().copied().collect()
    }

    fn is_current(&self, peer: &PeerId, id: u64) -> bool {
        lock(&self.conns).get(peer).is_some_and(|e| e.id == id)
    }

    /// The connection to `peer`: the live one, or a new one dialled at `hint`, the
    /// addresses in the book, or (if none is known) the addresses a DHT lookup finds.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        peer: PeerId,
        hint: &[SocketAddr],
    ) -> Result<Connection> {
        if self.cancel.is_cancelled() {
            return Err(Error::Shutdown);
        }
        if let Some(c) = self.connected(&peer) {
            return Ok(c);
        }
        let mut addrs: Vec<SocketAddr> = hint
            .iter()
            .map(|a| canonical(*a))
            .filter(dialable)
            .collect();
        for a in self.addresses(&peer) {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            // Look the peer up without holding its dial lock: the lookup itself may dial it.
            addrs = self.lookup(peer).await;
            if let Some(c) = self.connected(&peer) {
                return Ok(c);
            }
        }
        if addrs.is_empty() && self.nat.get().is_none() {
            return Err(Error::NoAddress { peer });
        }
        let gate = Arc::clone(lock(&self.dialing).entry(peer).or_default());
        let result = {
            let _turn = gate.lock().await;
            match self.connected(&peer) {
                Some(c) => Ok(c),
                None => self.dial(peer, &addrs).await,
            }
        };
        {
            let mut dialing = lock(&self.dialing);
            if dialing.get(&peer).is_some_and(|g| Arc::ptr_eq(g, &gate)) {
                dialing.remove(&peer);
            }
        }
        result
    }

    async fn dial(self: &Arc<Self>, peer: PeerId, addrs: &[SocketAddr]) -> Result<Connection> {
        tracing::debug!(peer = %peer.short(), ?addrs, "dialing");
        let started = std::time::Instant::now();
        let attempt = tokio::time::timeout(self.dial_timeout, self.race(peer, addrs, started));
        let (conn, won) = tokio::select! {
            () = self.cancel.cancelled() => return Err(Error::Shutdown),
            r = attempt => match r {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    self.instruments.dial("failed");
                    return Err(e);
                }
                Err(_) => {
                    self.instruments.dial("failed");
                    return Err(Error::Timeout { what: "dial", peer, after: self.dial_timeout });
                }
            },
        };
        self.instruments.dial(match won {
            Won::Direct => "direct",
            Won::Punched => "punched",
            Won::Relayed(_) => "relayed",
            Won::Reversed => "reversed",
        });
        if won == Won::Reversed {
            tracing::debug!(peer = %peer.short(), path = ?conn.path(), "the peer dialled back");
            return Ok(conn);
        }
        self.counters
            .outbound_connections
            .fetch_add(1, Ordering::Relaxed);
        if conn.path() == PathKind::Quic {
            self.learn(peer, [conn.remote_address()]);
        }
        let event = match won {
            Won::Direct | Won::Reversed => None,
            Won::Punched => Some(PeerEvent::HolePunched {
                peer,
                addr: canonical(conn.remote_address()),
                took: started.elapsed(),
            }),
            Won::Relayed(relay) => Some(PeerEvent::Relayed {
                peer,
                relay,
                took: started.elapsed(),
            }),
        };
        let conn = self.register(conn, true);
        if let Some(event) = event {
            let _ = self.events.send(event);
        }
        Ok(conn)
    }

    /// The direct dial, raced against a coordinated punch that starts once the direct
    /// dial has had [`NatConfig::punch_after`](crate::NatConfig::punch_after) to itself, and
    /// against a relayed dial that starts after
    /// [`RelayConfig::relay_after`](crate::RelayConfig::relay_after). The first connection
    /// wins; an error only when every path failed. When the relay wins, the punch goes on
    /// and, with retries, moves the connection to a direct path ([`Net::upgrade_later`]).
    /// A peer whose UDP is blocked answers the punch's introduction by dialling back
    /// (connection reversal): that inbound connection wins the race too.
    async fn race(
        self: &Arc<Self>,
        peer: PeerId,
        addrs: &[SocketAddr],
        started: std::time::Instant,
    ) -> Result<(Connection, Won)> {
        let Some(nat) = self.nat.get().cloned() else {
            return Ok((self.endpoint.connect(peer, addrs).await?, Won::Direct));
        };
        let relay = self.relay.get().cloned();
        // Subscribed before anything is sent, so a dial back cannot be missed.
        let mut events = self.events.subscribe();
        // Aborted when the race ends, unless handed on to move a relayed connection.
        let mut direct = AbortOnDropHandle::new({
            let net = Arc::clone(self);
            let addrs = addrs.to_vec();
            self.spawn_handle(async move {
                if addrs.is_empty() {
                    return Err(Error::NoAddress { peer });
                }
                Ok(net.endpoint.connect(peer, &addrs).await?)
            })
        });
        let punch_delay = if addrs.is_empty() {
            Duration::ZERO
        } else {
            nat.config.punch_after
        };
        let net = Arc::clone(self);
        let nat2 = Arc::clone(&nat);
        let mut punched = AbortOnDropHandle::new(self.spawn_handle(async move {
            tokio::time::sleep(punch_delay).await;
            nat2.punch_connect(&net, peer).await
        }));
        let relayed = async {
            let Some(relay) = &relay else {
                return Err(Error::Relay("relaying is off".into()));
            };
            tokio::time::sleep(relay.config.relay_after).await;
            relay.dial(self, peer).await
        };
        tokio::pin!(relayed);
        let (mut direct_err, mut punch_err, mut relay_err) = (None, None, None);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(PeerEvent::Connected { peer: p, outbound: false, .. }) if p == peer => {
                        if let Some(c) = self.connected(&peer) {
                            return Ok((c, Won::Reversed));
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(c) = self.connected(&peer).filter(|c| c.path() != PathKind::Stream) {
                            return Ok((c, Won::Reversed));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return Err(Error::Shutdown);
                    }
                },
                r = &mut direct, if direct_err.is_none() => match r {
                    Ok(Some(Ok(c))) => return Ok((c, Won::Direct)),
                    Ok(Some(Err(e))) => direct_err = Some(e),
                    Ok(None) | Err(_) => direct_err = Some(Error::Shutdown),
                },
                r = &mut punched, if punch_err.is_none() => match r {
                    Ok(Some(Ok(c))) => return Ok((c, Won::Punched)),
                    Ok(Some(Err(e))) => punch_err = Some(e),
                    Ok(None) | Err(_) => punch_err = Some(Error::Shutdown),
                },
                r = &mut relayed, if relay_err.is_none() => match r {
                    Ok((c, via)) => {
                        // A direct dial still running (a TCP fallback slower than the
                        // relay, say) and the punch may yet find a direct path.
                        let mut pending = Vec::new();
                        if direct_err.is_none() {
                            pending.push(direct.detach());
                        }
                        if punch_err.is_none() {
                            pending.push(punched.detach());
                        }
                        self.upgrade_later(peer, pending, started, false);
                        return Ok((c, Won::Relayed(via)));
                    }
                    Err(e) => relay_err = Some(e),
                },
            }
            if let (Some(d), Some(p), Some(r)) = (&direct_err, &punch_err, &relay_err) {
                tracing::debug!(peer = %peer.short(), direct = %d, punch = %p, relay = %r, "every path failed");
                // The most telling error: the direct dial's when there was an address,
                // else the punch's (the relay's only when it is on).
                return Err(match (direct_err, punch_err, relay_err) {
                    (Some(Error::NoAddress { .. }), Some(p), Some(r)) => {
                        if relay.is_some() {
                            Error::Relay(format!("{r}; punching failed too: {p}"))
                        } else {
                            p
                        }
                    }
                    (Some(d), _, _) => d,
                    _ => Error::NoAddress { peer },
                });
            }
        }
    }

    /// Whether the live connection to `peer` is relayed.
    fn is_relayed(&self, peer: &PeerId) -> bool {
        self.connected(peer)
            .is_some_and(|c| c.path() == PathKind::Stream)
    }

    /// Moves a relayed connection to a direct path: waits for the direct dial and the punch
    /// still running (if any; the first to connect wins), then retries the punch with
    /// backoff (1 s, 2 s, 4 s, … plus up to 25% jitter) up to
    /// [`RelayConfig::upgrade_attempts`](crate::RelayConfig::upgrade_attempts) times while
    /// the connection is still relayed. A network change ([`Net::network_changed`], a new
    /// reflexive address or mapping) ends the wait at once and restarts the count: the
    /// punch that failed on the old network may work on the new one. The punched
    /// connection replaces the relayed one (streams already open on the relayed connection
    /// keep it for the duplicate grace period; new streams, and the gossip stream, go on
    /// the direct path). `started` is when the dial began (the [`PeerEvent::HolePunched`]
    /// `took` counts from it); `punch_now` skips the first wait. One task per peer: a
    /// second call while one runs only drops `pending`.
    fn upgrade_later(
        self: &Arc<Self>,
        peer: PeerId,
        pending: Vec<PathTask>,
        started: std::time::Instant,
        punch_now: bool,
    ) {
        let (Some(nat), Some(relay)) = (self.nat.get().cloned(), self.relay.get().cloned()) else {
            return;
        };
        if !lock(&self.upgrading).insert(peer) {
            return;
        }
        let net = Arc::clone(self);
        let span =
            tracing::debug_span!("p2pf.upgrade", node = %self.local.short(), peer = %peer.short());
        self.spawn(
            async move {
                let _upgrading = Upgrading {
                    net: Arc::clone(&net),
                    peer,
                };
                let mut changes = net.network.subscribe();
                let mut result = if pending.is_empty() {
                    None
                } else {
                    first_connected(pending).await
                };
                let mut punch_now = punch_now;
                let attempts = relay.config.upgrade_attempts;
                let (mut backoff, mut left) = (UPGRADE_FIRST_BACKOFF, attempts);
                loop {
                    if result.is_none() {
                        if changes.has_changed().unwrap_or(false) {
                            // Changed while the last punch ran.
                            changes.borrow_and_update();
                            (backoff, left, punch_now) = (UPGRADE_FIRST_BACKOFF, attempts, true);
                        }
                        if !punch_now {
                            if left == 0 {
                                return;
                            }
                            left -= 1;
                            let wait = with_jitter(backoff);
                            if net.wait_unless_network_changes(&mut changes, wait).await {
                                tracing::debug!("network changed: punching again now");
                                (backoff, left) = (UPGRADE_FIRST_BACKOFF, attempts);
                            } else {
                                backoff *= 2;
                            }
                        }
                        punch_now = false;
                        if !net.is_relayed(&peer) {
                            return;
                        }
                        result = Some(nat.punch_connect(&net, peer).await);
                    }
                    match result.take() {
                        Some(Ok(conn)) if net.is_relayed(&peer) => {
                            let addr = canonical(conn.remote_address());
                            net.learn(peer, [addr]);
                            let path = conn.path();
                            net.register(conn, true);
                            relay.count_upgrade();
                            tracing::debug!(%addr, ?path, "moved to a direct path");
                            if path == PathKind::Quic {
                                let _ = net.events.send(PeerEvent::HolePunched {
                                    peer,
                                    addr,
                                    took: started.elapsed(),
                                });
                            }
                            return;
                        }
                        Some(Ok(conn)) => {
                            // Replaced meanwhile (the peer dialled us, or it went away).
                            conn.close(CLOSE_DUPLICATE, b"no longer needed");
                            return;
                        }
                        Some(Err(e)) => tracing::debug!(error = %e, "no direct path yet"),
                        None => {}
                    }
                }
            }
            .instrument(span),
        );
    }

    /// The host's interface addresses changed: counted, reported as
    /// [`PeerEvent::LocalAddressesChanged`], observers asked for the new mapping, and every
    /// wait for a retry that a network change can help (punches, reconnects) ended.
    pub(crate) fn network_changed(self: &Arc<Self>, change: crate::netwatch::AddressChange) {
        self.counters
            .network_changes
            .fetch_add(1, Ordering::Relaxed);
        let _ = self.events.send(PeerEvent::LocalAddressesChanged {
            added: change.added,
            removed: change.removed,
        });
        if let Some(nat) = self.nat.get() {
            nat.network_changed(self);
        }
        self.network_moved();
    }

    /// Something about this node's network changed (its local addresses, its reflexive
    /// address, its mapping behaviour): retry waits end now, and each relayed connection
    /// gets a punch at once.
    pub(crate) fn network_moved(self: &Arc<Self>) {
        self.network.send_modify(|epoch| *epoch += 1);
        let relayed: Vec<PeerId> = self
            .connections()
            .into_iter()
            .filter(|c| c.path() == PathKind::Stream)
            .map(|c| c.peer_id())
            .collect();
        for peer in relayed {
            self.upgrade_later(peer, Vec::new(), std::time::Instant::now(), true);
        }
    }

    /// A receiver of network changes, for [`Net::wait_unless_network_changes`].
    pub(crate) fn network_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.network.subscribe()
    }

    /// Sleeps `wait`, or less if the network changes meanwhile: `true` then.
    pub(crate) async fn wait_unless_network_changes(
        &self,
        changes: &mut tokio::sync::watch::Receiver<u64>,
        wait: Duration,
    ) -> bool {
        tokio::select! {
            () = tokio::time::sleep(wait) => false,
            changed = changes.changed() => changed.is_ok(),
        }
    }

    /// The addresses a DHT lookup finds for `peer` (remembered, most recent first): its
    /// signed peer record (direct and reflexive addresses first) and the contacts of a
    /// node lookup, side by side. The relays the record names are dialled, so that they
    /// can introduce a punch or splice a circuit to `peer` ([`Net::relay_hints`]).
    ///
    /// Boxed with its `Send` bound spelt out: a lookup dials, and a dial may look up.
    pub(crate) fn lookup(
        self: &Arc<Self>,
        peer: PeerId,
    ) -> std::pin::Pin<Box<dyn Future<Output = Vec<SocketAddr>> + Send + '_>> {
        Box::pin(self.lookup_now(peer))
    }

    async fn lookup_now(self: &Arc<Self>, peer: PeerId) -> Vec<SocketAddr> {
        let dht = lock(&self.dht).clone();
        let Some(dht) = dht else {
            return Vec::new();
        };
        // The node lookup runs beside the record's; a record makes waiting for it needless
        // (it may wait out timeouts of contacts behind NATs).
        let finder = {
            let dht = dht.clone();
            self.spawn_handle(async move { dht.find_node(peer.kad_key()).await })
        };
        let record = crate::peer_record::publish::fetch(self, &dht, peer)
            .await
            .filter(|r| !r.is_empty());
        if record.is_some() {
            finder.abort();
        } else {
            match finder.await {
                Ok(Some(Ok((contacts, _)))) => {
                    for c in &contacts {
                        self.learn(c.peer(), [c.addr()]);
                    }
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(peer = %peer.short(), error = %e, "node lookup failed")
                }
                Ok(None) | Err(_) => {}
            }
        }
        if let Some(record) = record {
            tracing::debug!(peer = %peer.short(), addrs = ?record.addrs(), "peer record found");
            // Most recent first: learn the record's preferred address last.
            self.learn(peer, record.dial_addrs().into_iter().rev());
            let relays: Vec<(PeerId, SocketAddr)> = record
                .relays()
                .into_iter()
                .filter(|(r, a)| *r != self.local && *r != peer && dialable(a))
                .take(crate::peer_record::publish::MAX_RELAY_HINTS)
                .collect();
            self.hint_relays(peer, relays.iter().map(|(r, _)| *r).collect());
            let mut dials = tokio::task::JoinSet::new();
            for (relay, addr) in relays {
                let net = Arc::clone(self);
                dials.spawn(async move {
                    if let Err(e) = net.connect(relay, &[addr]).await {
                        tracing::debug!(relay = %relay.short(), error = %e, "hinted relay unreachable");
                    }
                });
            }
            while dials.join_next().await.is_some() {}
        }
        self.addresses(&peer)
    }

    /// Adds a new authenticated connection and returns the one to use for its peer (the
    /// new one, or the existing one if that wins; see [`new_wins`]).
    fn register(self: &Arc<Self>, conn: Connection, outbound: bool) -> Connection {
        let peer = conn.peer_id();
        self.instruments
            .connection_established(outbound, conn.path());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (winner, loser, new_is_current) = {
            let mut conns = lock(&self.conns);
            let (winner, loser, new_is_current) = match conns.get(&peer) {
                Some(old)
                    if !new_wins(
                        self.local,
                        peer,
                        (old.outbound, old.conn.path() == PathKind::Stream),
                        (outbound, conn.path() == PathKind::Stream),
                    ) =>
                {
                    (old.conn.clone(), Some(conn.clone()), false)
                }
                _ => {
                    let old = conns.insert(
                        peer,
                        Entry {
                            conn: conn.clone(),
                            id,
                            outbound,
                        },
                    );
                    if old.is_none() {
                        // Sent under the table lock, so it precedes the matching Disconnected.
                        let addr = canonical(conn.remote_address());
                        let _ = self.events.send(PeerEvent::Connected {
                            peer,
                            outbound,
                            addr,
                        });
                        if let Some(after) = self.keeper.back(&peer) {
                            let _ = self
                                .events
                                .send(PeerEvent::Reconnected { peer, addr, after });
                        }
                    }
                    (conn.clone(), old.map(|e| e.conn), true)
                }
            };
            if loser.is_some() {
                // Counted under the table lock, before any stream of either connection is
                // routed, so a peer that sees the loser refused also sees it counted.
                self.counters
                    .duplicate_connections
                    .fetch_add(1, Ordering::Relaxed);
            }
            (winner, loser, new_is_current)
        };
        if !outbound && conn.path() == PathKind::Quic {
            // A QUIC peer sends from the socket it listens on.
            self.learn(peer, [conn.remote_address()]);
        }
        if let (Some(nat), PathKind::Quic) = (self.nat.get(), conn.path()) {
            // Every QUIC peer answers STUN on the socket this connection reaches.
            nat.maybe_observe(self, Observer::Peer(peer), conn.remote_address());
        }
        let span = tracing::debug_span!(
            "p2pf.conn",
            node = %self.local.short(),
            peer = %peer.short(),
            id,
            outbound,
        );
        // Streams on this connection (also during a duplicate's grace period).
        let net = Arc::clone(self);
        let c = conn.clone();
        self.spawn(
            async move {
                while let Ok(stream) = c.accept_bi().await {
                    net.route(&c, id, stream);
                }
            }
            .instrument(span.clone()),
        );
        if let Some(overlay) = self.overlay.get() {
            overlay.attach(self, &conn, id);
        }
        // No protocol uses unidirectional streams: refuse them so they cannot pile up.
        let c = conn.clone();
        self.spawn(async move {
            while let Ok(mut s) = c.accept_uni().await {
                s.recv.stop();
            }
        });
        // Forget the connection when it closes.
        let net = Arc::clone(self);
        let c = conn.clone();
        self.spawn(
            async move {
                let (code, why) = c.closed_with_code().await;
                tracing::debug!(%why, "connection closed");
                let current = {
                    let mut conns = lock(&net.conns);
                    let current = conns.get(&peer).is_some_and(|e| e.id == id);
                    if current {
                        conns.remove(&peer);
                        let _ = net
                            .events
                            .send(PeerEvent::Disconnected { peer, reason: why });
                    }
                    current
                };
                if current && !net.cancel.is_cancelled() && net.keeper.lost(peer) {
                    crate::reconnect::run(&net, peer);
                }
                if current && code == Some(CLOSE_SHUTDOWN) {
                    // It is leaving: lookups must not wait on it until it times out.
                    if let Some(dht) = net.dht() {
                        let forgot = dht.forget(peer).await.unwrap_or(false);
                        tracing::debug!(forgot, "peer left the network");
                    }
                }
            }
            .instrument(span.clone()),
        );
        if let Some(loser) = loser {
            self.spawn(async move {
                tokio::time::sleep(DUPLICATE_GRACE).await;
                loser.close(CLOSE_DUPLICATE, b"duplicate connection");
            });
        }
        if new_is_current && outbound {
            // The dialer of the connection in use opens the gossip stream.
            let net = Arc::clone(self);
            let c = conn.clone();
            self.spawn(
                async move {
                    match c.open_bi(GOSSIP_PROTOCOL).await {
                        Ok((send, recv)) => {
                            let ip = Some(canonical(c.remote_address()).ip());
                            net.attach_gossip(peer, id, ip, true, send, recv).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "could not open the gossip stream"),
                    }
                }
                .instrument(span),
            );
        }
        winner
    }

    /// Hands an inbound stream to the layer its protocol id names.
    fn route(self: &Arc<Self>, conn: &Connection, id: u64, stream: IncomingBi) {
        let IncomingBi {
            protocol,
            mut send,
            mut recv,
        } = stream;
        let Some(layers) = self.layers.get() else {
            send.reset();
            recv.stop();
            return;
        };
        let peer = conn.peer_id();
        match protocol.as_str() {
            KAD_PROTOCOL => {
                let addr = self.contact_addr(conn);
                let net = Arc::clone(self);
                self.spawn(async move { net.serve_kad(peer, addr, send, recv).await });
            }
            GOSSIP_PROTOCOL => {
                let ip: Option<IpAddr> = Some(canonical(conn.remote_address()).ip());
                let net = Arc::clone(self);
                self.spawn(async move { net.attach_gossip(peer, id, ip, false, send, recv).await });
            }
            RELAY_PROTOCOL => match self.relay.get() {
                Some(relay) => {
                    let (relay, net, c) = (Arc::clone(relay), Arc::clone(self), conn.clone());
                    self.spawn(async move { relay.serve(net, c, send, recv).await });
                }
                None => self.refuse_stream(send, recv),
            },
            NAT_PROTOCOL => match self.nat.get() {
                Some(nat) => {
                    let (nat, net, c) = (Arc::clone(nat), Arc::clone(self), conn.clone());
                    self.spawn(async move { nat.serve(net, c, send, recv).await });
                }
                None => self.refuse_stream(send, recv),
            },
            MCP_PROTOCOL => match &layers.mcp {
                Some((server, limits)) => {
                    self.counters.mcp_sessions.fetch_add(1, Ordering::Relaxed);
                    let server = server.clone();
                    let limits = *limits;
                    self.spawn(async move {
                        if let Err(e) = p2p_foundation_mcp::serve_stream(
                            &server,
                            Caller::Peer(peer),
                            recv,
                            send,
                            limits,
                        )
                        .await
                        {
                            tracing::debug!(error = %e, "MCP session ended with an error");
                        }
                    });
                }
                None => self.refuse_stream(send, recv),
            },
            other => {
                tracing::debug!(protocol = other, "refusing a stream of an unknown protocol");
                self.refuse_stream(send, recv);
            }
        }
    }

    /// Refuses a stream whose protocol this node does not serve.
    fn refuse_stream(&self, mut send: SendStream, mut recv: RecvStream) {
        self.counters
            .unknown_protocol_streams
            .fetch_add(1, Ordering::Relaxed);
        send.reset();
        recv.stop();
    }

    /// Hands a gossip stream to the gossip driver if it belongs to the peer's current
    /// connection (only the connection both sides keep carries gossip), else resets it.
    /// Attachments are serialised and the current-connection check is made under the same
    /// turn, so the driver always ends up on the stream of the current connection.
    async fn attach_gossip(
        &self,
        peer: PeerId,
        id: u64,
        ip: Option<IpAddr>,
        outbound: bool,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        let Some(layers) = self.layers.get() else {
            return;
        };
        let (open, gate) = oneshot::channel();
        {
            let _turn = self.gossip_turn.lock().await;
            if !self.is_current(&peer, id) {
                send.reset();
                recv.stop();
                return;
            }
            let reader = Gated {
                inner: recv,
                gate: Some(gate),
            };
            if let Err(e) = layers
                .gossip
                .add_peer(peer, ip, outbound, reader, send)
                .await
            {
                tracing::debug!(error = %e, "gossip did not take the peer");
                return;
            }
            // Commands are handled in order: once this answer is back, the driver has
            // registered the stream and will not drop its first frames.
            let _ = layers.gossip.metrics().await;
        }
        let _ = open.send(());
    }

    /// The address the DHT should record for the peer behind `conn`: its QUIC address
    /// (the socket it listens on), or over TCP the best address in the book.
    fn contact_addr(&self, conn: &Connection) -> SocketAddr {
        let remote = canonical(conn.remote_address());
        if conn.path() == PathKind::Quic {
            return remote;
        }
        self.addresses(&conn.peer_id())
            .into_iter()
            .next()
            .unwrap_or(remote)
    }

    async fn serve_kad(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        let Some(layers) = self.layers.get() else {
            return;
        };
        let refuse = |send: &mut SendStream| {
            self.counters.kad_refused.fetch_add(1, Ordering::Relaxed);
            send.reset();
        };
        // The frame limit is enforced while reading: nothing past it is buffered.
        let frame =
            match tokio::time::timeout(layers.kad_timeout, recv.read_to_end(layers.kad_max_frame))
                .await
            {
                Ok(Ok(frame)) => frame,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer.short(), error = %e, "bad DHT request stream");
                    recv.stop();
                    return refuse(&mut send);
                }
                Err(_) => {
                    recv.stop();
                    return refuse(&mut send);
                }
            };
        let (reply, answer) = oneshot::channel();
        let inbound = Inbound {
            from: peer,
            addr,
            frame,
            reply,
        };
        if layers.kad_inbound.try_send(inbound).is_err() {
            return refuse(&mut send);
        }
        match tokio::time::timeout(layers.kad_timeout, answer).await {
            Ok(Ok(response)) => {
                if send.write_all(&response).await.is_ok() && send.finish().await.is_ok() {
                    self.counters.kad_served.fetch_add(1, Ordering::Relaxed);
                    // Keep the stream until the answer is delivered, but not forever.
                    let _ = tokio::time::timeout(layers.kad_timeout, send.stopped()).await;
                }
            }
            // Refused by the DHT (rate limit, malformed) or too slow.
            _ => refuse(&mut send),
        }
    }

    /// Closes every connection and stops every task.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        let conns: Vec<Connection> = lock(&self.conns).drain().map(|(_, e)| e.conn).collect();
        for c in &conns {
            c.close(CLOSE_SHUTDOWN, b"node shutting down");
        }
        lock(&self.dht).take();
        self.tracker.close();
        self.tracker.wait().await;
        // The listeners are closed when this returns; QUIC lets go of the UDP socket once
        // the closed connections drained. A node built on this address meanwhile waits for
        // it (`crate::rebind`).
        self.endpoint
            .close(CLOSE_SHUTDOWN, b"node shutting down")
            .await;
        if let Ok(addr) = self.endpoint.local_addr() {
            crate::rebind::releasing(addr);
        }
    }
}

/// The first wait before an upgrade punch is retried (then doubled per attempt).
const UPGRADE_FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Takes a peer out of [`Net`]'s upgrading set when its upgrade task ends (or is dropped
/// at shutdown).
struct Upgrading {
    net: Arc<Net>,
    peer: PeerId,
}

impl Drop for Upgrading {
    fn drop(&mut self) {
        lock(&self.net.upgrading).remove(&self.peer);
    }
}

/// The first of `tasks` to connect (or the last error). Connections that the others make
/// afterwards are closed as duplicates.
async fn first_connected(tasks: Vec<PathTask>) -> Option<Result<Connection>> {
    let mut set = tokio::task::JoinSet::new();
    for task in tasks {
        set.spawn(async move { task.await.ok().flatten() });
    }
    let mut last = None;
    while let Some(done) = set.join_next().await {
        match done {
            Ok(Some(Ok(conn))) => {
                tokio::spawn(async move {
                    while let Some(later) = set.join_next().await {
                        if let Ok(Some(Ok(extra))) = later {
                            extra.close(CLOSE_DUPLICATE, b"no longer needed");
                        }
                    }
                });
                return Some(Ok(conn));
            }
            Ok(Some(Err(e))) => last = Some(Err(e)),
            Ok(None) | Err(_) => {}
        }
    }
    last
}

/// `d` plus up to 25% of it, at random.
pub(crate) fn with_jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let extra = match getrandom::fill(&mut b) {
        Ok(()) => u32::from(b[0]) * 25 / 255,
        Err(_) => 0,
    };
    d + d * extra / 100
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_identity::Keypair;

    #[test]
    fn both_sides_keep_the_same_connection() {
        let a = Keypair::generate().peer_id();
        let b = Keypair::generate().peer_id();
        // a dialled conn1 (outbound at a, inbound at b); b dialled conn2.
        // At a: old = conn1 (outbound), new = conn2 (inbound). At b: old = conn2 (outbound),
        // new = conn1 (inbound). Both must keep the conn dialled by min(a, b).
        let (out, inb) = ((true, false), (false, false));
        let a_keeps_new = new_wins(a, b, out, inb);
        let b_keeps_new = new_wins(b, a, out, inb);
        let a_keeps = if a_keeps_new { "conn2" } else { "conn1" };
        let b_keeps = if b_keeps_new { "conn1" } else { "conn2" };
        assert_eq!(a_keeps, b_keeps);
        let expected = if a < b { "conn1" } else { "conn2" };
        assert_eq!(a_keeps, expected);
        // Redialled by the same side: the newer connection wins.
        assert!(new_wins(a, b, out, out));
        assert!(new_wins(a, b, inb, inb));
        // A direct connection beats a relayed one whoever dialled either, on both sides:
        // conn1 relayed (dialled by a), conn2 direct (dialled by b, a connection reversal).
        let relayed_out = (true, true);
        assert!(new_wins(a, b, relayed_out, inb), "a takes the direct conn2");
        assert!(
            !new_wins(b, a, out, (false, true)),
            "b keeps its direct connection over a relayed newcomer"
        );
        assert!(
            !new_wins(a, b, out, (true, true)),
            "a relayed newcomer never wins"
        );
    }

    #[test]
    fn canonical_unmaps_v4_mapped_addresses() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000"
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 1)));
        assert_eq!(canonical(mapped), SocketAddr::from(([127, 0, 0, 1], 4000)));
        assert!(!dialable(&SocketAddr::from(([0, 0, 0, 0], 4000))));
        assert!(!dialable(&SocketAddr::from(([127, 0, 0, 1], 0))));
    }
}
