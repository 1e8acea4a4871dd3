//! The P2P IPv6 overlay in the node (opt-in, [`NodeBuilder::overlay`]): a TUN device with
//! this node's overlay address, whose packets travel as QUIC datagrams over the connections
//! the node already has.
//!
//! The tunnel crate owns the device, the address scheme and every check
//! ([`p2p_foundation_tunnel::overlay`], wire format in `docs/protocols/tunnel.md`); this
//! module only plugs the node's connections into its [`OverlayLink`] hook:
//!
//! - **Out.** A packet for a peer's overlay address goes, as one datagram, on the live
//!   connection to that peer, if it is a QUIC connection: peers
//!   connected over the TCP fallback or a relay carry no datagrams, so they have no overlay
//!   route (the host gets an ICMPv6 Destination Unreachable).
//! - **In.** Every QUIC connection the node registers gets a task reading its datagrams and
//!   handing them to the TUN endpoint with the connection's authenticated PeerId, which the
//!   inner source address must match. QUIC datagrams are used by nothing else in the node;
//!   the overlay's one-byte tag (0x06) leaves room for another user.
//! - A peer is routed from its first QUIC connection until [`PeerEvent::Disconnected`]. The
//!   overlay does not dial: a peer is reachable at its overlay address while connected.
//!
//! [`NodeBuilder::overlay`]: crate::NodeBuilder::overlay
//! [`PeerEvent::Disconnected`]: crate::PeerEvent::Disconnected

use std::collections::HashSet;
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use p2p_foundation_identity::PeerId;
use p2p_foundation_transport::{Connection, PathKind};
use p2p_foundation_tunnel::overlay::{OverlayLink, OverlayTun};
use tracing::Instrument;

pub use p2p_foundation_tunnel::overlay::{
    DropReason as OverlayDropReason, OverlayConfig, OverlayStats,
};

use crate::P2PNode;
use crate::error::{Error, Result};
use crate::net::{Net, PeerEvent};

/// The node's overlay: its TUN endpoint.
pub(crate) struct Overlay {
    tun: Arc<OverlayTun>,
    /// Registration ids of the connections whose datagrams are read (each once).
    attached: Arc<Mutex<HashSet<u64>>>,
}

/// [`OverlayLink`] on the node's connections.
struct NetLink {
    net: Weak<Net>,
}

impl NetLink {
    fn quic(&self, peer: &PeerId) -> Option<Connection> {
        self.net
            .upgrade()?
            .connected(peer)
            .filter(|c| c.path() == PathKind::Quic)
    }
}

impl OverlayLink for NetLink {
    fn send(&self, peer: &PeerId, datagram: Vec<u8>) -> std::result::Result<(), String> {
        let conn = self.quic(peer).ok_or("no QUIC connection to the peer")?;
        conn.send_datagram(Bytes::from(datagram))
            .map_err(|e| e.to_string())
    }

    fn max_datagram_size(&self, peer: &PeerId) -> Option<usize> {
        self.quic(peer)?.max_datagram_size()
    }
}

impl Overlay {
    /// Opens the TUN device (in the caller's network namespace) and starts moving the
    /// host's packets to peers.
    pub(crate) fn start(net: &Arc<Net>, config: &OverlayConfig) -> Result<Arc<Self>> {
        let tun = OverlayTun::open(net.local, config).map_err(|e| Error::Overlay(e.to_string()))?;
        let overlay = Arc::new(Self {
            tun,
            attached: Arc::new(Mutex::new(HashSet::new())),
        });
        let span = tracing::debug_span!(
            "p2pf.overlay",
            node = %net.local.short(),
            dev = %overlay.tun.name(),
            addr = %overlay.tun.addr(),
        );
        let link: Arc<dyn OverlayLink> = Arc::new(NetLink {
            net: Arc::downgrade(net),
        });
        let tun = Arc::clone(&overlay.tun);
        net.spawn(
            async move {
                let e = tun.run(link).await;
                tracing::warn!(error = %e, "overlay TUN device failed; the overlay stopped");
            }
            .instrument(span.clone()),
        );
        // Routes end when a peer's last connection does.
        let mut events = net.events.subscribe();
        let tun = Arc::clone(&overlay.tun);
        net.spawn(
            async move {
                loop {
                    match events.recv().await {
                        Ok(PeerEvent::Disconnected { peer, .. }) => tun.remove_peer(&peer),
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(missed = n, "overlay missed peer events");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
            .instrument(span),
        );
        Ok(overlay)
    }

    /// Starts the overlay on a running node (tunnel selection chose it): every connection
    /// already up is attached too. A no-op when the overlay is on already.
    pub(crate) fn start_late(net: &Arc<Net>, config: &OverlayConfig) -> Result<()> {
        if net.overlay.get().is_some() {
            return Ok(());
        }
        let overlay = Self::start(net, config)?;
        if net.overlay.set(Arc::clone(&overlay)).is_err() {
            return Ok(());
        }
        // Connections registered from here on attach themselves; `attach` skips any
        // connection both paths see.
        for (conn, id) in net.live_connections() {
            overlay.attach(net, &conn, id);
        }
        Ok(())
    }

    /// Routes `conn`'s peer and delivers the datagrams it sends (QUIC connections only);
    /// `id` is its registration id, so a connection is attached once.
    pub(crate) fn attach(&self, net: &Net, conn: &Connection, id: u64) {
        if conn.path() != PathKind::Quic || !crate::net::lock(&self.attached).insert(id) {
            return;
        }
        let peer = conn.peer_id();
        self.tun.add_peer(peer);
        let (tun, conn) = (Arc::clone(&self.tun), conn.clone());
        let attached = Arc::clone(&self.attached);
        let span = tracing::debug_span!("p2pf.overlay.rx", peer = %peer.short());
        net.spawn(
            async move {
                while let Ok(datagram) = conn.read_datagram().await {
                    tun.deliver(&peer, &datagram).await;
                }
                crate::net::lock(&attached).remove(&id);
            }
            .instrument(span),
        );
    }

    pub(crate) fn stats(&self) -> OverlayStats {
        self.tun.stats()
    }
}

impl P2PNode {
    /// This node's overlay IPv6 address (derived from its PeerId, inside
    /// `fdb0:1139:e4a8::/48`), when the overlay is on ([`crate::NodeBuilder::overlay`]).
    /// Any peer connected over QUIC with the overlay on reaches this node at it with
    /// ordinary sockets.
    pub fn overlay_addr(&self) -> Option<Ipv6Addr> {
        self.net.overlay.get().map(|o| o.tun.addr())
    }

    /// The overlay address `peer` has (whether or not it runs the overlay).
    pub fn overlay_addr_of(peer: &PeerId) -> Ipv6Addr {
        p2p_foundation_tunnel::overlay::overlay_addr(peer)
    }

    /// The name of the overlay's TUN device (e.g. `p2pf0`), when the overlay is on.
    pub fn overlay_interface(&self) -> Option<String> {
        self.net.overlay.get().map(|o| o.tun.name().to_owned())
    }

    /// Sends `datagram` to `peer` as it is, on the QUIC connection, skipping every check
    /// this node makes on its own packets: what a misbehaving peer could send. For tests of
    /// the receiving side's checks.
    #[doc(hidden)]
    pub fn overlay_send_unchecked(&self, peer: &PeerId, datagram: Vec<u8>) -> Result<()> {
        let link = NetLink {
            net: Arc::downgrade(&self.net),
        };
        link.send(peer, datagram).map_err(Error::Overlay)
    }
}
