//! The overlay's TUN endpoint (tokio, on `tun-rs`): a Linux TUN device holding this node's
//! overlay address, whose packets go to peers through an [`OverlayLink`] the caller
//! supplies, and into which packets from peers are written.
//!
//! The device is a layer-3 TUN without packet information, brought up with the node's
//! address as `<addr>/48`, so the kernel routes the whole overlay prefix to it. Creating it
//! needs `CAP_NET_ADMIN` and `/dev/net/tun`.
//!
//! This crate stays `#![forbid(unsafe_code)]`: `tun-rs` does the `ioctl`s (`TUNSETIFF`,
//! `SIOCSIFMTU`, `SIOCSIFADDR` on an `AF_INET6` socket, `SIOCSIFFLAGS`) behind a safe API.
//! It is used without its `address-management` feature (netlink address enumeration),
//! which the overlay does not need.

use std::io;
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use p2p_foundation_identity::PeerId;

use super::{Inbound, Outbound, OverlayConfig, OverlayCore, OverlayStats};

/// What the overlay needs from the transport: datagrams to a connected peer. The facade
/// implements it on the node's QUIC connections; the tunnel crate knows nothing of them.
pub trait OverlayLink: Send + Sync + 'static {
    /// Sends one overlay datagram to `peer` over its connection. An error (not connected,
    /// no datagrams on its path) is counted as a drop.
    fn send(&self, peer: &PeerId, datagram: Vec<u8>) -> Result<(), String>;

    /// The largest datagram the connection to `peer` carries now (`None`: not connected,
    /// or its path carries no datagrams).
    fn max_datagram_size(&self, peer: &PeerId) -> Option<usize>;
}

/// A TUN device carrying the overlay. Cheap to share (`Arc`); the device goes away when
/// the last reference is dropped.
pub struct OverlayTun {
    dev: tun_rs::AsyncDevice,
    core: Mutex<OverlayCore>,
    name: String,
    addr: Ipv6Addr,
    mtu: usize,
}

impl std::fmt::Debug for OverlayTun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayTun")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

impl OverlayTun {
    /// Creates the TUN device for the node `local` (inside the caller's network
    /// namespace), with its overlay address, the configured MTU, up. Must be called inside
    /// a tokio runtime.
    pub fn open(local: PeerId, config: &OverlayConfig) -> io::Result<Arc<Self>> {
        let core = OverlayCore::new(local, config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let addr = core.addr();
        let dev = tun_rs::DeviceBuilder::new()
            .name(config.name.clone())
            .mtu(config.mtu)
            .ipv6(addr, super::OVERLAY_PREFIX_LEN)
            .build_async()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot create the overlay TUN device {:?} (needs CAP_NET_ADMIN and /dev/net/tun): {e}",
                        config.name
                    ),
                )
            })?;
        let name = dev.name()?;
        tracing::debug!(%name, %addr, mtu = config.mtu, "overlay TUN device up");
        Ok(Arc::new(Self {
            dev,
            mtu: core.mtu(),
            core: Mutex::new(core),
            name,
            addr,
        }))
    }

    fn core(&self) -> MutexGuard<'_, OverlayCore> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device's name (e.g. `p2pf0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's overlay address.
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    /// The device's MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> OverlayStats {
        self.core().stats()
    }

    /// Routes `peer`'s overlay address to it (see [`OverlayCore::add_peer`]).
    pub fn add_peer(&self, peer: PeerId) -> Option<Ipv6Addr> {
        self.core().add_peer(peer)
    }

    /// Stops routing to `peer` (see [`OverlayCore::remove_peer`]).
    pub fn remove_peer(&self, peer: &PeerId) {
        self.core().remove_peer(peer)
    }

    /// Checks a datagram `from` sent and writes its packet to the device if it passes
    /// ([`OverlayCore::inbound`]). Returns whether it was delivered.
    pub async fn deliver(&self, from: &PeerId, datagram: &[u8]) -> bool {
        let packet = match self.core().inbound(from, datagram) {
            Inbound::Deliver(p) => p,
            Inbound::Drop(reason) => {
                tracing::debug!(peer = %from.short(), reason = reason.name(), "overlay datagram dropped");
                return false;
            }
        };
        match self.dev.send(packet).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "overlay TUN write failed");
                false
            }
        }
    }

    /// Reads packets the host writes to the device and sends each where
    /// [`OverlayCore::outbound`] says, until the device fails (it returns that error).
    pub async fn run(&self, link: Arc<dyn OverlayLink>) -> io::Error {
        // One packet per read; larger than the MTU so an oversized one is seen as such.
        let mut buf = vec![0u8; self.mtu + 1];
        loop {
            let n = match self.dev.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) => return e,
            };
            let decision = self
                .core()
                .outbound(Instant::now(), &buf[..n], |p| link.max_datagram_size(p));
            match decision {
                Outbound::Send { peer, datagram } => {
                    let len = datagram.len();
                    if let Err(e) = link.send(&peer, datagram) {
                        tracing::debug!(peer = %peer.short(), error = %e, "overlay datagram not sent");
                        self.core().count_link_error(len);
                    }
                }
                Outbound::Reply(icmp) => {
                    if let Err(e) = self.dev.send(&icmp).await {
                        tracing::debug!(error = %e, "overlay ICMPv6 reply not written");
                    }
                }
                Outbound::Drop(reason) => {
                    tracing::trace!(reason = reason.name(), len = n, "host packet dropped")
                }
            }
        }
    }
}
