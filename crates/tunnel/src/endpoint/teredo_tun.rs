//! The Teredo client's tokio driver: one UDP socket (the one that qualified, so the NAT
//! mapping in the Teredo address is this socket's), a TUN device with the Teredo address
//! `/32` (so the kernel routes all of `2001:0::/32` to it) and MTU 1,280, and the
//! [`TeredoCore`] between them, its timers (keepalives, bubbles, expiry) run here.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::UdpSocket;
use tracing::Instrument;

use super::teredo::{TEREDO_MTU, TeredoCore, TeredoInbound, TeredoOutbound, TeredoStats};
use crate::{QualifyOutput, TeredoAddr, TeredoQualifier};

/// The largest UDP datagram read.
const RECV_BUF: usize = 65_535;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs Teredo qualification against `server` over `sock` (RFC 4380 section 5.2.1, the
/// [`TeredoQualifier`]): the Teredo address, or an error saying why not.
pub async fn qualify(sock: &UdpSocket, server: Ipv4Addr, seed: u64) -> io::Result<TeredoAddr> {
    let mut q = TeredoQualifier::new(server, seed);
    q.start(Instant::now());
    let mut deadline = Instant::now();
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        while let Some(out) = q.poll_output() {
            match out {
                QualifyOutput::Send { to, payload } => {
                    sock.send_to(&payload, to).await?;
                }
                QualifyOutput::Timeout(at) => deadline = at,
                QualifyOutput::Qualified(t) => return Ok(t),
                QualifyOutput::Failed(why) => {
                    return Err(io::Error::other(format!("Teredo qualification: {why}")));
                }
            }
        }
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            _ = sleep => q.handle_timeout(Instant::now()),
            r = sock.recv_from(&mut buf) => {
                if let (n, SocketAddr::V4(from)) = r? {
                    q.handle_datagram(Instant::now(), from, &buf[..n]);
                }
            }
        }
    }
}

/// A Teredo client on a TUN device (see [`TeredoCore`] for what is sent and checked).
pub struct TeredoTun {
    dev: tun_rs::AsyncDevice,
    sock: UdpSocket,
    core: Mutex<TeredoCore>,
    name: String,
}

impl std::fmt::Debug for TeredoTun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeredoTun")
            .field("name", &self.name)
            .field("addr", &lock(&self.core).local_v6())
            .finish_non_exhaustive()
    }
}

impl TeredoTun {
    /// Binds a UDP socket on `0.0.0.0:0`, qualifies with `server` over it, and opens the
    /// device named `name` (`%d` replaced by the kernel) with the Teredo address.
    pub async fn qualify_and_open(server: Ipv4Addr, name: &str, seed: u64) -> io::Result<Self> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
        let addr = qualify(&sock, server, seed).await?;
        Self::open(sock, addr, name, seed)
    }

    /// Opens the TUN device `name` with `addr`/32 and MTU 1,280, up, over `sock`, which
    /// must be the socket that qualified for `addr`. Needs `CAP_NET_ADMIN` and
    /// `/dev/net/tun`; must be called inside a tokio runtime.
    pub fn open(sock: UdpSocket, addr: TeredoAddr, name: &str, seed: u64) -> io::Result<Self> {
        let v6 = addr.to_ipv6();
        let dev = tun_rs::DeviceBuilder::new()
            .name(name.to_owned())
            .mtu(TEREDO_MTU)
            .ipv6(v6, 32)
            .build_async()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create the TUN device {name:?} (needs CAP_NET_ADMIN and /dev/net/tun): {e}"),
                )
            })?;
        let name = dev.name()?;
        tracing::debug!(%name, %v6, server = %addr.server, "Teredo TUN client up");
        Ok(Self {
            dev,
            sock,
            core: Mutex::new(TeredoCore::new(addr, Instant::now(), seed)),
            name,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Teredo address on the device.
    pub fn local_v6(&self) -> Ipv6Addr {
        lock(&self.core).local_v6()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TeredoStats {
        lock(&self.core).stats()
    }

    async fn flush(&self) {
        loop {
            let next = lock(&self.core).poll_transmit();
            let Some((to, payload)) = next else {
                return;
            };
            if let Err(e) = self.sock.send_to(&payload, to).await {
                tracing::debug!(error = %e, %to, "Teredo datagram not sent");
            }
        }
    }

    /// Moves packets both ways and runs the timers until the device or the socket fails
    /// (it returns that error). Cancel-safe: drop the future to stop.
    pub async fn run(&self) -> io::Error {
        let span = tracing::debug_span!("tunnel", kind = "teredo", dev = %self.name);
        async {
            let mut tun_buf = vec![0u8; RECV_BUF];
            let mut udp_buf = vec![0u8; RECV_BUF];
            let mut out = Vec::with_capacity(RECV_BUF);
            loop {
                let deadline = lock(&self.core).poll_timeout();
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        lock(&self.core).handle_timeout(Instant::now());
                    }
                    r = self.dev.recv(&mut tun_buf) => {
                        let n = match r { Ok(n) => n, Err(e) => return e };
                        let verdict = lock(&self.core).outbound(Instant::now(), &tun_buf[..n], &mut out);
                        match verdict {
                            TeredoOutbound::Send(to) => {
                                if let Err(e) = self.sock.send_to(&out, to).await {
                                    tracing::debug!(error = %e, %to, "Teredo packet not sent");
                                    lock(&self.core).count_send_error(out.len());
                                }
                            }
                            TeredoOutbound::Reply => {
                                if let Err(e) = self.dev.send(&out).await {
                                    tracing::debug!(error = %e, "ICMPv6 error not written to the TUN");
                                }
                            }
                            TeredoOutbound::Queued => {}
                            TeredoOutbound::Drop(reason) => {
                                tracing::trace!(reason = reason.name(), len = n, "host packet dropped");
                            }
                        }
                    }
                    r = self.sock.recv_from(&mut udp_buf) => {
                        let (n, from) = match r { Ok(r) => r, Err(e) => return e };
                        let SocketAddr::V4(from) = from else { continue };
                        let from: SocketAddrV4 = from;
                        let verdict = lock(&self.core).inbound(Instant::now(), from, &udp_buf[..n]);
                        match verdict {
                            TeredoInbound::Deliver(p) => {
                                if let Err(e) = self.dev.send(p).await {
                                    tracing::debug!(error = %e, "Teredo packet not written to the TUN");
                                }
                            }
                            TeredoInbound::Handled => {}
                            TeredoInbound::Drop(reason) => {
                                tracing::debug!(reason = reason.name(), len = n, %from, "Teredo datagram dropped");
                            }
                        }
                    }
                }
                self.flush().await;
            }
        }
        .instrument(span)
        .await
    }
}
