//! Extra UDP sockets beside the QUIC socket, for NAT traversal's birthday technique.
//!
//! Behind an endpoint-dependent ("symmetric") NAT every destination gets its own public
//! port, so the peer cannot predict which one to probe. Opening many sockets and sending
//! from each towards the peer opens many mappings at once; the peer probes many random
//! ports of that NAT, and by the birthday paradox one of its probes soon lands on one of
//! them. The socket that heard it then carries that peer's QUIC packets:
//! [`ExtraSocket::route`] sends everything quinn sends to the peer's address through it,
//! and the QUIC datagrams it receives join the endpoint's receive path like the main
//! socket's. quinn sees one socket and one path; only the local port differs.
//!
//! Bounds: at most [`MAX_EXTRA_SOCKETS`] are open at once per endpoint, each is closed
//! when its guard ([`ExtraSockets`] or [`ExtraSocket`]) is dropped, and a datagram an extra
//! socket cannot send at once is dropped (counted) rather than stalling the endpoint.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};

use quinn::AsyncUdpSocket;
use quinn::udp::{RecvMeta, Transmit};

/// Most extra sockets open at once on one endpoint.
pub const MAX_EXTRA_SOCKETS: usize = 1024;

type Socket = Arc<dyn AsyncUdpSocket>;

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// The address form routes are keyed by (IPv4 rather than v4-mapped IPv6).
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn too_many(open: usize, count: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("{open} extra sockets open; {count} more would exceed {MAX_EXTRA_SOCKETS}"),
    )
}

/// The endpoint's extra sockets and the routes through them.
#[derive(Default)]
pub(crate) struct ExtraTable {
    /// Open extra sockets by local address.
    sockets: RwLock<Vec<(SocketAddr, Socket)>>,
    /// Remote address → the local address of the extra socket that carries its packets.
    routes: RwLock<HashMap<SocketAddr, SocketAddr>>,
    /// `sockets.len()` and `routes.len()`, read without a lock on the hot paths.
    open: AtomicUsize,
    routed: AtomicUsize,
    /// Round-robin start, so one busy extra socket cannot starve the others.
    next: AtomicUsize,
    /// Where new extra sockets bind: the QUIC socket's IP, and its IPV6_V6ONLY setting.
    bind: RwLock<Option<(IpAddr, Option<bool>)>>,
    /// QUIC datagrams an extra socket could not send at once (dropped, like a lost packet).
    pub(crate) send_dropped: AtomicU64,
}

impl fmt::Debug for ExtraTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtraTable")
            .field("open", &self.open.load(Relaxed))
            .field("routed", &self.routed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl ExtraTable {
    /// Records where the QUIC socket is bound, so extra sockets bind alike.
    pub(crate) fn set_bind(&self, ip: IpAddr, v6only: Option<bool>) {
        *write(&self.bind) = Some((ip, v6only));
    }

    pub(crate) fn open_count(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Opens `count` sockets on the QUIC socket's IP, each on a port the OS picks.
    fn open(&self, count: usize) -> io::Result<Vec<SocketAddr>> {
        let Some((ip, v6only)) = *read(&self.bind) else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "endpoint closed",
            ));
        };
        let already = self.open.load(Relaxed);
        if already + count > MAX_EXTRA_SOCKETS {
            return Err(too_many(already, count));
        }
        let mut opened = Vec::with_capacity(count);
        let mut sockets = Vec::with_capacity(count);
        for _ in 0..count {
            let std = crate::endpoint::udp_socket(SocketAddr::new(ip, 0), v6only)?;
            use quinn::Runtime as _;
            let socket = quinn::TokioRuntime.wrap_udp_socket(std)?;
            let addr = socket.local_addr()?;
            opened.push(addr);
            sockets.push((addr, socket));
        }
        let mut table = write(&self.sockets);
        if table.len() + count > MAX_EXTRA_SOCKETS {
            return Err(too_many(table.len(), count));
        }
        table.extend(sockets);
        self.open.store(table.len(), Relaxed);
        Ok(opened)
    }

    /// Closes the extra sockets at `addrs` and every route through them.
    fn close(&self, addrs: &[SocketAddr]) {
        if addrs.is_empty() {
            return;
        }
        {
            let mut routes = write(&self.routes);
            routes.retain(|_, via| !addrs.contains(via));
            self.routed.store(routes.len(), Relaxed);
        }
        let mut table = write(&self.sockets);
        table.retain(|(a, _)| !addrs.contains(a));
        self.open.store(table.len(), Relaxed);
    }

    fn socket(&self, local: SocketAddr) -> Option<Socket> {
        read(&self.sockets)
            .iter()
            .find(|(a, _)| *a == local)
            .map(|(_, s)| s.clone())
    }

    /// Sends `remote`'s QUIC packets through the extra socket at `via`.
    fn route(&self, remote: SocketAddr, via: SocketAddr) {
        let mut routes = write(&self.routes);
        routes.insert(canonical(remote), via);
        self.routed.store(routes.len(), Relaxed);
    }

    /// Replies go out where the peer's packets come in: a QUIC datagram from `remote` on
    /// the extra socket `via` routes `remote` through that socket; one on the QUIC socket
    /// (`via` = `None`) removes its route. Two sides that each proved a different one of a
    /// punch's many paths thus settle on the one the dialer's handshake took.
    pub(crate) fn learn(&self, remote: SocketAddr, via: Option<SocketAddr>) {
        if via.is_none() && self.routed.load(Relaxed) == 0 {
            return;
        }
        let remote = canonical(remote);
        if read(&self.routes).get(&remote).copied() == via {
            return;
        }
        let mut routes = write(&self.routes);
        match via {
            Some(via) => {
                // Only sockets still open carry routes.
                if read(&self.sockets).iter().any(|(a, _)| *a == via) {
                    routes.insert(remote, via);
                }
            }
            None => {
                routes.remove(&remote);
            }
        }
        self.routed.store(routes.len(), Relaxed);
    }

    fn routed_via(&self, remote: SocketAddr) -> Option<SocketAddr> {
        read(&self.routes).get(&canonical(remote)).copied()
    }

    /// The extra socket that carries packets to `destination`, if one was routed.
    pub(crate) fn route_for(&self, destination: SocketAddr) -> Option<Socket> {
        if self.routed.load(Relaxed) == 0 {
            return None;
        }
        let via = *read(&self.routes).get(&canonical(destination))?;
        self.socket(via)
    }

    /// Sends a QUIC transmit on an extra socket; a full socket buffer drops it (QUIC
    /// recovers from the loss) instead of making quinn wait on the main socket's poller.
    pub(crate) fn try_send(&self, socket: &Socket, transmit: &Transmit<'_>) -> io::Result<()> {
        match socket.try_send(transmit) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.send_dropped.fetch_add(1, Relaxed);
                Ok(())
            }
            other => other,
        }
    }

    /// Polls the extra sockets, starting at a rotating index; `Ready((n, via))` with the
    /// local address of the socket that received. A socket's receive error is logged and
    /// skipped: it must not end the endpoint.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<(usize, SocketAddr)> {
        if self.open.load(Relaxed) == 0 {
            return Poll::Pending;
        }
        let sockets = read(&self.sockets);
        let len = sockets.len();
        let start = self.next.fetch_add(1, Relaxed);
        for i in 0..len {
            let (addr, socket) = &sockets[(start + i) % len];
            match socket.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => return Poll::Ready((n, *addr)),
                Poll::Ready(Err(e)) => {
                    tracing::debug!(local = %addr, error = %e, "extra socket receive error");
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

/// Extra sockets just opened, from
/// [`SideChannel::open_extra_sockets`](crate::SideChannel::open_extra_sockets): all closed
/// on drop, except the one [`ExtraSockets::keep`] keeps.
///
/// ```no_run
/// # async fn demo(side: p2p_foundation_transport::SideChannel, peer: std::net::SocketAddr)
/// # -> std::io::Result<()> {
/// let extras = side.open_extra_sockets(256)?;
/// for &local in extras.addrs() {
///     side.send_via(local, b"opener", peer).await?;
/// }
/// // ... the peer's probe arrives on one of them (`SideDatagram::via`) ...
/// # let heard_on = extras.addrs()[0];
/// if let Some(kept) = extras.keep(heard_on) {
///     kept.route(peer); // the peer's QUIC packets now use this socket
/// }
/// # Ok(()) }
/// ```
pub struct ExtraSockets {
    table: Arc<ExtraTable>,
    addrs: Vec<SocketAddr>,
}

impl fmt::Debug for ExtraSockets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtraSockets")
            .field("count", &self.addrs.len())
            .finish_non_exhaustive()
    }
}

impl ExtraSockets {
    pub(crate) fn open(table: Arc<ExtraTable>, count: usize) -> io::Result<Self> {
        let addrs = table.open(count)?;
        Ok(Self { table, addrs })
    }

    /// The local addresses of the sockets.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Sends every QUIC packet for `remote` through the socket at `local` (one of these),
    /// until a QUIC packet from `remote` arrives on another socket: replies follow the
    /// peer's packets (see [`keep_routed`](Self::keep_routed)).
    pub fn route(&self, local: SocketAddr, remote: SocketAddr) {
        if self.addrs.contains(&local) {
            self.table.route(remote, local);
        }
    }

    /// Keeps the one of these sockets that `remote`'s packets are routed through now (by
    /// [`route`](Self::route) or because its QUIC packets last arrived there) and closes
    /// the rest; `None` (and all closed) if none of them is.
    pub fn keep_routed(self, remote: SocketAddr) -> Option<ExtraSocket> {
        let local = self.table.routed_via(remote)?;
        self.keep(local)
    }

    /// Closes every socket but the one at `local`, which stays open as long as the
    /// returned guard lives. `None` (and all closed) if `local` is not one of them.
    pub fn keep(mut self, local: SocketAddr) -> Option<ExtraSocket> {
        let at = self.addrs.iter().position(|a| *a == local)?;
        let kept = self.addrs.swap_remove(at);
        Some(ExtraSocket {
            table: self.table.clone(),
            addr: kept,
        })
    }
}

impl Drop for ExtraSockets {
    fn drop(&mut self) {
        self.table.close(&self.addrs);
    }
}

/// One extra socket kept open (see [`ExtraSockets::keep`]); closed, with its routes, on drop.
pub struct ExtraSocket {
    table: Arc<ExtraTable>,
    addr: SocketAddr,
}

impl fmt::Debug for ExtraSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtraSocket")
            .field("local", &self.addr)
            .finish()
    }
}

impl ExtraSocket {
    /// Its local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends every QUIC packet for `remote` through this socket (until it is dropped).
    pub fn route(&self, remote: SocketAddr) {
        self.table.route(remote, self.addr);
    }
}

impl Drop for ExtraSocket {
    fn drop(&mut self) {
        self.table.close(&[self.addr]);
    }
}

/// Looks up the extra socket at `local` for a side-channel send.
pub(crate) fn socket_at(table: &ExtraTable, local: SocketAddr) -> io::Result<Socket> {
    table.socket(local).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no extra socket open at {local}"),
        )
    })
}
