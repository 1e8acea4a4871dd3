//! The endpoints' tokio drivers: a Linux TUN device (`tun-rs`, as the overlay's) and a raw
//! socket (`socket2`, then driven as a tokio `UdpSocket`, which works on any datagram
//! descriptor), with the sans-IO core between them.
//!
//! - [`SixInFourTun`]: raw `AF_INET` socket of protocol 41 with `IP_HDRINCL` (the core
//!   writes the IPv4 header, so its DF, TTL and identification are what the core chose),
//!   bound to the local IPv4 address.
//! - [`DsLiteTun`]: raw `AF_INET6` socket of protocol 4, bound to the B4's IPv6 address;
//!   the kernel writes and strips the outer IPv6 header.
//!
//! Opening either needs `CAP_NET_ADMIN` (the TUN device), `CAP_NET_RAW` (the socket) and
//! `/dev/net/tun`. The device gets the endpoint's address and prefix and the tunnel MTU, and
//! is brought up; routes beyond the prefix are the caller's, except the DS-Lite B4's IPv4
//! default route, which [`DsLiteTun::add_default_route`] adds over netlink
//! (`route_manager`). The crate stays `#![forbid(unsafe_code)]`: `tun-rs`, `socket2` and
//! `route_manager` do the system calls.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::Instrument;

use super::{
    DsLiteConfig, DsLiteCore, EndpointStats, Inbound, Outbound, SixInFourConfig, SixInFourCore,
};
use crate::PROTO_IPV6;

/// IP protocol number of IPv4-in-IP (RFC 2003, RFC 2473).
const PROTO_IPIP: i32 = 4;
/// Receive buffer: the largest IP packet.
const RECV_BUF: usize = 65_535;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

fn tun_error(name: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot create the TUN device {name:?} (needs CAP_NET_ADMIN and /dev/net/tun): {e}"
        ),
    )
}

fn raw_socket(domain: Domain, proto: i32, bind: SocketAddr) -> io::Result<UdpSocket> {
    let what = format!("raw {domain:?} protocol-{proto} socket bound to {bind}");
    let sock = Socket::new(domain, Type::RAW, Some(Protocol::from(proto)))
        .map_err(|e| io::Error::new(e.kind(), format!("{what} (needs CAP_NET_RAW): {e}")))?;
    if domain == Domain::IPV4 {
        sock.set_header_included_v4(true)?;
    }
    sock.bind(&bind.into())
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(std::net::UdpSocket::from(sock))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the generic driver needs from a core.
trait Core: Send + 'static {
    /// The socket's peer address for an outer destination.
    fn outbound(&mut self, now: Instant, packet: &[u8], out: &mut Vec<u8>) -> Outbound<SocketAddr>;
    fn inbound<'a>(&mut self, from: SocketAddr, packet: &'a [u8]) -> Inbound<'a>;
    fn count_send_error(&mut self, len: usize);
    fn stats(&self) -> EndpointStats;
}

fn map_hop<A: Into<IpAddr>>(o: Outbound<A>) -> Outbound<SocketAddr> {
    match o {
        Outbound::Send(a) => Outbound::Send(SocketAddr::new(a.into(), 0)),
        Outbound::Reply => Outbound::Reply,
        Outbound::Drop(r) => Outbound::Drop(r),
    }
}

impl Core for SixInFourCore {
    fn outbound(&mut self, now: Instant, packet: &[u8], out: &mut Vec<u8>) -> Outbound<SocketAddr> {
        map_hop(SixInFourCore::outbound(self, now, packet, out))
    }
    fn inbound<'a>(&mut self, _from: SocketAddr, packet: &'a [u8]) -> Inbound<'a> {
        // The IPv4 header is in the packet: the core reads the source there.
        SixInFourCore::inbound(self, packet)
    }
    fn count_send_error(&mut self, len: usize) {
        SixInFourCore::count_send_error(self, len)
    }
    fn stats(&self) -> EndpointStats {
        SixInFourCore::stats(self)
    }
}

impl Core for DsLiteCore {
    fn outbound(&mut self, now: Instant, packet: &[u8], out: &mut Vec<u8>) -> Outbound<SocketAddr> {
        map_hop(DsLiteCore::outbound(self, now, packet, out))
    }
    fn inbound<'a>(&mut self, from: SocketAddr, packet: &'a [u8]) -> Inbound<'a> {
        match from {
            SocketAddr::V6(from) => DsLiteCore::inbound(self, *from.ip(), packet),
            // An IPv6 socket reports IPv6 sources; count anything else as spoofed.
            SocketAddr::V4(_) => DsLiteCore::inbound(self, Ipv6Addr::UNSPECIFIED, packet),
        }
    }
    fn count_send_error(&mut self, len: usize) {
        DsLiteCore::count_send_error(self, len)
    }
    fn stats(&self) -> EndpointStats {
        DsLiteCore::stats(self)
    }
}

/// A TUN device, a raw socket and a core between them.
struct Driver<C> {
    dev: tun_rs::AsyncDevice,
    sock: UdpSocket,
    core: Mutex<C>,
    name: String,
}

impl<C: Core> Driver<C> {
    fn stats(&self) -> EndpointStats {
        lock(&self.core).stats()
    }

    async fn run(&self, kind: &'static str) -> io::Error {
        let span = tracing::debug_span!("tunnel", kind, dev = %self.name);
        async {
            tokio::select! {
                e = self.host_to_net() => e,
                e = self.net_to_host() => e,
            }
        }
        .instrument(span)
        .await
    }

    async fn host_to_net(&self) -> io::Error {
        let mut buf = vec![0u8; RECV_BUF];
        let mut out = Vec::with_capacity(RECV_BUF);
        loop {
            let n = match self.dev.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) => return e,
            };
            let verdict = lock(&self.core).outbound(Instant::now(), &buf[..n], &mut out);
            match verdict {
                Outbound::Send(hop) => {
                    if let Err(e) = self.sock.send_to(&out, hop).await {
                        tracing::debug!(error = %e, %hop, "encapsulated packet not sent");
                        lock(&self.core).count_send_error(out.len());
                    }
                }
                Outbound::Reply => {
                    if let Err(e) = self.dev.send(&out).await {
                        tracing::debug!(error = %e, "ICMP error not written to the TUN");
                    }
                }
                Outbound::Drop(reason) => {
                    tracing::trace!(reason = reason.name(), len = n, "host packet dropped")
                }
            }
        }
    }

    async fn net_to_host(&self) -> io::Error {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let (n, from) = match self.sock.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => return e,
            };
            let verdict = lock(&self.core).inbound(from, &buf[..n]);
            match verdict {
                Inbound::Deliver(inner) => {
                    if let Err(e) = self.dev.send(inner).await {
                        tracing::debug!(error = %e, "decapsulated packet not written to the TUN");
                    }
                }
                Inbound::Drop(reason) => {
                    tracing::debug!(reason = reason.name(), len = n, %from, "tunnel packet dropped")
                }
            }
        }
    }
}

/// A 6in4 / 6to4 endpoint on a TUN device (see [`SixInFourCore`] for the checks).
pub struct SixInFourTun {
    driver: Driver<SixInFourCore>,
    config: SixInFourConfig,
}

impl std::fmt::Debug for SixInFourTun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SixInFourTun")
            .field("name", &self.driver.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SixInFourTun {
    /// Creates the TUN device (in the caller's network namespace) with `local_v6/prefix_len`
    /// and the tunnel MTU, up, and the raw protocol-41 socket. Must be called inside a tokio
    /// runtime.
    pub fn open(config: &SixInFourConfig) -> io::Result<Self> {
        let core = SixInFourCore::new(config).map_err(invalid)?;
        let sock = raw_socket(
            Domain::IPV4,
            i32::from(PROTO_IPV6),
            SocketAddrV4::new(config.local_v4, 0).into(),
        )?;
        let dev = tun_rs::DeviceBuilder::new()
            .name(config.name.clone())
            .mtu(config.mtu)
            .ipv6(config.local_v6, config.prefix_len)
            .build_async()
            .map_err(|e| tun_error(&config.name, e))?;
        let name = dev.name()?;
        tracing::debug!(%name, local_v6 = %config.local_v6, local_v4 = %config.local_v4, mode = ?config.mode, mtu = config.mtu, "6in4 TUN endpoint up");
        Ok(Self {
            driver: Driver {
                dev,
                sock,
                core: Mutex::new(core),
                name,
            },
            config: config.clone(),
        })
    }

    /// The device's name (e.g. `p2p6in40`).
    pub fn name(&self) -> &str {
        &self.driver.name
    }

    /// The IPv6 address on the device.
    pub fn local_v6(&self) -> Ipv6Addr {
        self.config.local_v6
    }

    /// The IPv4 address the tunnel runs from.
    pub fn local_v4(&self) -> Ipv4Addr {
        self.config.local_v4
    }

    /// The tunnel MTU (the device's).
    pub fn mtu(&self) -> u16 {
        self.config.mtu
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SixInFourConfig {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EndpointStats {
        self.driver.stats()
    }

    /// Moves packets both ways until the device or the socket fails (it returns that
    /// error). Cancel-safe: drop the future to stop.
    pub async fn run(&self) -> io::Error {
        self.driver.run("6in4").await
    }
}

/// A DS-Lite B4, or the AFTR's end of its softwire, on a TUN device (see [`DsLiteCore`]
/// for the checks).
pub struct DsLiteTun {
    driver: Driver<DsLiteCore>,
    config: DsLiteConfig,
}

impl std::fmt::Debug for DsLiteTun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsLiteTun")
            .field("name", &self.driver.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DsLiteTun {
    /// Creates the TUN device (in the caller's network namespace) with
    /// `local_v4/prefix_len` and the tunnel MTU, up, and the raw IPv6 protocol-4 socket
    /// bound to this end's address ([`DsLiteConfig::local_v6`], which must already be an
    /// address of this host). Must be called
    /// inside a tokio runtime.
    pub fn open(config: &DsLiteConfig) -> io::Result<Self> {
        let core = DsLiteCore::new(config).map_err(invalid)?;
        let sock = raw_socket(
            Domain::IPV6,
            PROTO_IPIP,
            SocketAddrV6::new(config.local_v6(), 0, 0, 0).into(),
        )?;
        let dev = tun_rs::DeviceBuilder::new()
            .name(config.name.clone())
            .mtu(config.mtu)
            .ipv4(config.local_v4, config.prefix_len, None)
            .build_async()
            .map_err(|e| tun_error(&config.name, e))?;
        let name = dev.name()?;
        tracing::debug!(%name, b4 = %config.b4_v6, aftr = %config.aftr, role = ?config.role, local_v4 = %config.local_v4, mtu = config.mtu, "DS-Lite TUN endpoint up");
        Ok(Self {
            driver: Driver {
                dev,
                sock,
                core: Mutex::new(core),
                name,
            },
            config: config.clone(),
        })
    }

    /// The device's name (e.g. `p2pdslite0`).
    pub fn name(&self) -> &str {
        &self.driver.name
    }

    /// The IPv4 address on the device.
    pub fn local_v4(&self) -> Ipv4Addr {
        self.config.local_v4
    }

    /// The B4's IPv6 address (the softwire's local end).
    pub fn b4_v6(&self) -> Ipv6Addr {
        self.config.b4_v6
    }

    /// The AFTR's IPv6 address.
    pub fn aftr(&self) -> Ipv6Addr {
        self.config.aftr
    }

    /// The tunnel MTU (the device's).
    pub fn mtu(&self) -> u16 {
        self.config.mtu
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &DsLiteConfig {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EndpointStats {
        self.driver.stats()
    }

    /// Points the IPv4 default route into the softwire (RFC 6333 section 5.7: the B4
    /// reaches the IPv4 Internet through the AFTR): adds `0.0.0.0/0 dev <device>` to the
    /// main routing table of the calling thread's network namespace, over netlink. Needs
    /// `CAP_NET_ADMIN`. The route is the kernel's until the device goes: dropping the
    /// endpoint removes both. A host that already has an IPv4 default route keeps it and
    /// this fails with [`io::ErrorKind::AlreadyExists`] (a DS-Lite B4 is for hosts without
    /// IPv4 of their own).
    ///
    /// ```no_run
    /// # async fn b4() -> std::io::Result<()> {
    /// use p2p_foundation_tunnel::endpoint::{DsLiteConfig, DsLiteTun};
    ///
    /// let b4 = DsLiteTun::open(&DsLiteConfig::new("2001:db8::2".parse().unwrap(), "2001:db8::1".parse().unwrap()))?;
    /// b4.add_default_route()?;
    /// let error = b4.run().await; // IPv4 now leaves through the AFTR
    /// # Err(error) }
    /// ```
    pub fn add_default_route(&self) -> io::Result<()> {
        let route = route_manager::Route::new(Ipv4Addr::UNSPECIFIED.into(), 0)
            .with_if_name(self.driver.name.clone());
        route_manager::RouteManager::new()
            .and_then(|mut routes| routes.add(&route))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot route IPv4 into the DS-Lite device {} (needs CAP_NET_ADMIN and no other IPv4 default route): {e}",
                        self.driver.name
                    ),
                )
            })?;
        tracing::debug!(device = %self.driver.name, "IPv4 default route into the DS-Lite softwire");
        Ok(())
    }

    /// Moves packets both ways until the device or the socket fails (it returns that
    /// error). Cancel-safe: drop the future to stop.
    pub async fn run(&self) -> io::Error {
        self.driver.run("dslite").await
    }
}
