//! The endpoint: one QUIC socket and one TCP listener for one identity.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use p2p_foundation_identity::{Keypair, PeerId};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::Config;
use crate::connection::{Connection, PathKind, QuicStart};
use crate::error::{Result, TransportError};
use crate::filter::{CidKey, Filter, FilteredSocket, KeyedCidGenerator};
use crate::header::{self, StreamKind};
use crate::limits::{Proof, SourceLimits};
use crate::metrics::{FailureReason, Metrics, MetricsSnapshot};
use crate::session::{self, MuxSettings};
use crate::side::{SideChannel, SideTap};
use crate::stream::{RecvInner, RecvStream, SendInner, SendStream};
use crate::tls::{self, DialAttempt, TlsContext};

/// State shared by an endpoint and its connections.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) tls: TlsContext,
    pub(crate) metrics: Arc<Metrics>,
    limiter: StdMutex<SourceLimits>,
    open: AtomicUsize,
    transport: Arc<quinn::TransportConfig>,
    /// [`Config::ipv6_head_start`], in microseconds, as last set.
    ipv6_head_start_us: AtomicU64,
}

/// One unit of [`Config::max_connections`] and of the open-connection gauges, released on
/// drop. A connection's stream accept loop owns it, so it is released when the connection
/// closes (the loop ends) or when the last handle is dropped (the loop is aborted).
pub(crate) struct ConnSlot {
    shared: Arc<Shared>,
    /// 0: handshaking, 1: QUIC, 2: TCP or stream.
    path: std::sync::atomic::AtomicU8,
}

impl ConnSlot {
    fn try_new(shared: &Arc<Shared>) -> Option<Self> {
        let limit = shared.config.max_connections;
        shared
            .open
            .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| Self {
                shared: shared.clone(),
                path: std::sync::atomic::AtomicU8::new(0),
            })
    }

    /// Marks the connection established on `path` (counted once).
    pub(crate) fn establish(&self, path: PathKind) {
        let m = &self.shared.metrics;
        let code = match path {
            PathKind::Quic => 1,
            PathKind::Tcp | PathKind::Stream => 2,
        };
        if self.path.swap(code, Relaxed) != 0 {
            return;
        }
        if code == 1 {
            m.quic_open.fetch_add(1, Relaxed);
            m.quic_total.fetch_add(1, Relaxed);
        } else {
            m.tcp_open.fetch_add(1, Relaxed);
            m.tcp_total.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Relaxed);
        let m = &self.shared.metrics;
        match self.path.load(Relaxed) {
            1 => {
                m.quic_open.fetch_sub(1, Relaxed);
            }
            2 => {
                m.tcp_open.fetch_sub(1, Relaxed);
            }
            _ => {}
        }
    }
}

struct EndpointInner {
    shared: Arc<Shared>,
    quic: quinn::Endpoint,
    tcp_addr: Option<SocketAddr>,
    incoming: Mutex<mpsc::Receiver<Connection>>,
    /// The accept loops (QUIC, TCP): they own the TCP listener and a QUIC handle.
    tasks: StdMutex<Vec<JoinHandle<()>>>,
    filter: Arc<Filter>,
    side: Option<SideChannel>,
}

impl Drop for EndpointInner {
    fn drop(&mut self) {
        for t in self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            t.abort();
        }
        self.quic
            .close(quinn::VarInt::from_u32(0), b"endpoint closed");
    }
}

/// A node's transport endpoint: a QUIC socket and a TCP listener bound to one Ed25519
/// identity. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("peer_id", &self.peer_id())
            .field("quic", &self.inner.quic.local_addr().ok())
            .field("tcp", &self.inner.tcp_addr)
            .finish()
    }
}

/// The result of [`Endpoint::connect_early`].
#[derive(Debug)]
pub struct EarlyConnect {
    /// The connection.
    pub connection: Connection,
    /// Sending half of the request stream (already finished).
    pub send: SendStream,
    /// Receiving half: read the response here.
    pub recv: RecvStream,
    /// Whether the request went out in 0-RTT and the server accepted it.
    pub zero_rtt: bool,
}

pub(crate) fn udp_socket(
    addr: SocketAddr,
    v6only: Option<bool>,
) -> std::io::Result<std::net::UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Some(only) = v6only {
        sock.set_only_v6(only)?;
    }
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

fn tcp_listener(addr: SocketAddr, v6only: Option<bool>) -> std::io::Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if let Some(only) = v6only {
        sock.set_only_v6(only)?;
    }
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    sock.set_nonblocking(true)?;
    TcpListener::from_std(sock.into())
}

fn transport_config(cfg: &Config) -> Result<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let streams = quinn::VarInt::from_u32(cfg.max_streams_per_connection);
    t.max_concurrent_bidi_streams(streams);
    t.max_concurrent_uni_streams(streams);
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(cfg.idle_timeout)
            .map_err(|_| TransportError::TlsConfig("idle_timeout too large".into()))?,
    ));
    t.keep_alive_interval(cfg.keep_alive);
    t.datagram_receive_buffer_size(Some(cfg.datagram_receive_buffer));
    // Let up to 64 concurrently written streams each buffer a full stream window, so the
    // round-robin scheduler interleaves all of them instead of the few that wrote first.
    let stream_window: u64 = 1_250_000;
    t.send_window(stream_window * u64::from(cfg.max_streams_per_connection.clamp(8, 64)));
    Ok(t)
}

fn classify_quic(err: &quinn::ConnectionError) -> FailureReason {
    match err {
        quinn::ConnectionError::TimedOut => FailureReason::Timeout,
        quinn::ConnectionError::TransportError(t) if is_crypto(t.code) => FailureReason::Tls,
        quinn::ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
            FailureReason::Tls
        }
        _ => FailureReason::Transport,
    }
}

fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

fn peer_from_quinn(conn: &quinn::Connection) -> Option<PeerId> {
    let any = conn.peer_identity()?;
    let chain = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    tls::peer_id_from_chain(&chain)
}

impl Endpoint {
    /// Binds the QUIC socket and (unless disabled) the TCP listener, on the same port.
    pub async fn bind(keypair: &Keypair, config: Config) -> Result<Self> {
        let tls = TlsContext::new(keypair, config.session_cache_peers)?;
        let transport = Arc::new(transport_config(&config)?);
        let quic_crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(tls.quic_server.clone())
                .map_err(|e| TransportError::TlsConfig(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
        server.transport_config(transport.clone());
        server.migration(true);
        server.max_incoming(4096);
        let (addr, v6only) = config.listen.socket_addr();
        let (udp, tcp) = bind_pair(addr, v6only, config.tcp_listener)?;
        let metrics = Arc::new(Metrics::default());
        // Connection ids come from a keyed generator the receive filter can check, and the
        // fixed bit is not greased, so a clear fixed bit is always junk (see filter.rs).
        let cid_key = Arc::new(CidKey::new());
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config.grease_quic_bit(false);
        endpoint_config.cid_generator({
            let key = cid_key.clone();
            move || Box::new(KeyedCidGenerator(key.clone()))
        });
        let side = config.side_channel.as_ref().map(SideTap::new);
        let mut filter = Filter::new(
            cid_key,
            metrics.clone(),
            config.max_connections.saturating_mul(2),
        );
        if let Some((tap, _)) = &side {
            filter = filter.with_side_channel(tap.clone());
        }
        let side = side.map(|(tap, rx)| SideChannel::new(tap, rx));
        let filter = Arc::new(filter);
        let socket = FilteredSocket::wrap(udp, filter.clone())
            .map_err(|source| TransportError::Bind { addr, source })?;
        let quic = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            limiter: StdMutex::new(SourceLimits::new(
                config.handshakes_per_ip_per_sec,
                config.handshake_burst_per_ip,
                65_536,
            )),
            tls,
            metrics,
            open: AtomicUsize::new(0),
            ipv6_head_start_us: AtomicU64::new(duration_us(config.ipv6_head_start)),
            config,
            transport,
        });
        let (incoming_tx, incoming_rx) = mpsc::channel(1024);
        let span = tracing::info_span!("endpoint", peer = %shared.tls.peer_id.short());
        let mut tasks = vec![tokio::spawn(
            quic_listen(quic.clone(), shared.clone(), incoming_tx.clone()).instrument(span.clone()),
        )];
        let tcp_addr = match tcp {
            Some(l) => {
                let a = l.local_addr().ok();
                tasks.push(tokio::spawn(
                    tcp_listen(l, shared.clone(), incoming_tx.clone()).instrument(span),
                ));
                a
            }
            None => None,
        };
        tracing::info!(quic = ?quic.local_addr().ok(), tcp = ?tcp_addr, "endpoint bound");
        Ok(Self {
            inner: Arc::new(EndpointInner {
                shared,
                quic,
                tcp_addr,
                incoming: Mutex::new(incoming_rx),
                tasks: StdMutex::new(tasks),
                filter,
                side,
            }),
        })
    }

    /// Stops accepting (the TCP listener is closed when this returns) and closes every
    /// connection with `code` and `reason`. QUIC releases the UDP socket once the last
    /// handle to this endpoint is dropped and the closed connections drained (three probe
    /// timeouts each: milliseconds for a peer that answered, about 3 s for a handshake
    /// nobody answered). Later dials fail.
    ///
    /// ```no_run
    /// # async fn f(endpoint: p2p_foundation_transport::Endpoint) {
    /// endpoint.close(0, b"shutting down").await;
    /// drop(endpoint);
    /// # }
    /// ```
    pub async fn close(&self, code: u32, reason: &[u8]) {
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            // Cancelled (or already ended): either way its listener is dropped now.
            let _ = t.await;
        }
        self.inner.quic.close(quinn::VarInt::from_u32(code), reason);
    }

    /// The side channel of the QUIC socket: the non-QUIC datagrams that
    /// [`Config::side_channel`] claims, and a way to send from the same socket. `None` when it
    /// was not configured.
    pub fn side_channel(&self) -> Option<SideChannel> {
        self.inner.side.clone()
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.inner.shared.tls.peer_id
    }

    /// The QUIC (UDP) socket's local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.inner.quic.local_addr()?)
    }

    /// The TCP listener's local address, if listening on TCP.
    pub fn tcp_local_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_addr
    }

    /// The endpoint's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.shared.metrics.snapshot()
    }

    /// Waits for the next authenticated incoming connection (QUIC or TCP).
    pub async fn accept(&self) -> Option<Connection> {
        self.inner.incoming.lock().await.recv().await
    }

    /// Moves the QUIC socket to a new local address (e.g. after a network change); open QUIC
    /// connections migrate to it. The TCP listener is unaffected.
    pub fn rebind(&self, addr: SocketAddr) -> Result<()> {
        let v6only = match addr {
            SocketAddr::V4(_) => None,
            SocketAddr::V6(a) if a.ip().is_unspecified() => Some(false),
            SocketAddr::V6(_) => Some(true),
        };
        let sock = udp_socket(addr, v6only)
            .and_then(|s| FilteredSocket::wrap(s, self.inner.filter.clone()))
            .map_err(|source| TransportError::Bind { addr, source })?;
        self.inner
            .quic
            .rebind_abstract(sock)
            .map_err(|source| TransportError::Bind { addr, source })
    }

    /// How long a dial gives IPv6 addresses before it tries IPv4 ones
    /// ([`Config::ipv6_head_start`]).
    pub fn ipv6_head_start(&self) -> Duration {
        Duration::from_micros(self.inner.shared.ipv6_head_start_us.load(Relaxed))
    }

    /// Changes [`Config::ipv6_head_start`] for dials that start from now on: a node that
    /// learns it has no IPv6 path sets zero, one that gains IPv6 gives it back its head start.
    ///
    /// ```no_run
    /// # fn demo(endpoint: &p2p_foundation_transport::Endpoint) {
    /// endpoint.set_ipv6_head_start(std::time::Duration::ZERO);
    /// # }
    /// ```
    pub fn set_ipv6_head_start(&self, head_start: Duration) {
        self.inner
            .shared
            .ipv6_head_start_us
            .store(duration_us(head_start), Relaxed);
    }

    /// Happy eyeballs: dials `peer` over QUIC, first at its IPv6 addresses and at its IPv4
    /// ones after [`Config::ipv6_head_start`] (or as soon as every IPv6 attempt failed), then
    /// over TCP at every address after [`Config::tcp_fallback_delay`] (or at once when every
    /// QUIC attempt has failed). The first authenticated connection wins; the other attempts
    /// are cancelled.
    pub async fn connect(&self, peer: PeerId, addrs: &[SocketAddr]) -> Result<Connection> {
        if addrs.is_empty() {
            return Err(TransportError::NoAddress);
        }
        let head_start = self.ipv6_head_start();
        let (v6, mut v4_later): (Vec<SocketAddr>, Vec<SocketAddr>) =
            addrs.iter().partition(|a| a.ip().to_canonical().is_ipv6());
        let mut quic: FuturesUnordered<_> = if v6.is_empty() || head_start.is_zero() {
            let all = addrs.iter().map(|a| self.connect_quic(peer, *a)).collect();
            v4_later.clear();
            all
        } else {
            v6.iter().map(|a| self.connect_quic(peer, *a)).collect()
        };
        let v4_timer = tokio::time::sleep(head_start);
        tokio::pin!(v4_timer);
        let mut tcp = FuturesUnordered::new();
        let mut tcp_started = false;
        let delay = tokio::time::sleep(self.inner.shared.config.tcp_fallback_delay);
        tokio::pin!(delay);
        let mut best: Option<TransportError> = None;
        let keep = |e: TransportError, best: &mut Option<TransportError>| {
            let definitive = matches!(e, TransportError::PeerIdMismatch { .. });
            if definitive || !matches!(best, Some(TransportError::PeerIdMismatch { .. })) {
                *best = Some(e);
            }
        };
        loop {
            if !v4_later.is_empty() && quic.is_empty() {
                quic.extend(v4_later.drain(..).map(|a| self.connect_quic(peer, a)));
            }
            if !tcp_started && quic.is_empty() {
                tcp_started = true;
                tcp.extend(addrs.iter().map(|a| Box::pin(self.connect_tcp(peer, *a))));
            }
            tokio::select! {
                () = &mut v4_timer, if !v4_later.is_empty() => {
                    quic.extend(v4_later.drain(..).map(|a| self.connect_quic(peer, a)));
                }
                Some(r) = quic.next(), if !quic.is_empty() => match r {
                    Ok(c) => return Ok(c),
                    Err(e) => { tracing::debug!(%e, "QUIC attempt failed"); keep(e, &mut best) }
                },
                () = &mut delay, if !tcp_started => {
                    tcp_started = true;
                    tcp.extend(addrs.iter().map(|a| Box::pin(self.connect_tcp(peer, *a))));
                }
                Some(r) = tcp.next(), if !tcp.is_empty() => match r {
                    Ok(c) => return Ok(c),
                    Err(e) => { tracing::debug!(%e, "TCP attempt failed"); keep(e, &mut best) }
                },
                else => break,
            }
        }
        Err(best.unwrap_or(TransportError::NoAddress))
    }

    fn quic_client(&self, peer: PeerId) -> Result<(quinn::ClientConfig, DialAttempt)> {
        let seen = self.inner.shared.tls.client(peer)?.attempt();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(seen.quic.clone())
            .map_err(|e| TransportError::TlsConfig(e.to_string()))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        cfg.transport_config(self.inner.shared.transport.clone());
        Ok((cfg, seen))
    }

    fn slot(&self) -> Result<ConnSlot> {
        let shared = &self.inner.shared;
        ConnSlot::try_new(shared).ok_or_else(|| {
            shared.metrics.fail(FailureReason::ConnectionLimit);
            TransportError::ConnectionLimit {
                limit: shared.config.max_connections,
            }
        })
    }

    fn dial_failed(
        &self,
        addr: SocketAddr,
        expected: PeerId,
        seen: &DialAttempt,
        err: TransportError,
        reason: FailureReason,
    ) -> TransportError {
        let m = &self.inner.shared.metrics;
        match seen.mismatch() {
            Some(actual) => {
                m.fail(FailureReason::PeerIdMismatch);
                TransportError::PeerIdMismatch { expected, actual }
            }
            _ => {
                m.fail(reason);
                match (reason, err) {
                    (FailureReason::Timeout, _) => TransportError::HandshakeTimeout { addr },
                    (FailureReason::Tls, e) => TransportError::Handshake {
                        addr,
                        reason: e.to_string(),
                    },
                    (_, e) => e,
                }
            }
        }
    }

    /// Dials `peer` at `addr` over QUIC only.
    pub async fn connect_quic(&self, peer: PeerId, addr: SocketAddr) -> Result<Connection> {
        let slot = self.slot()?;
        let (cfg, seen) = self.quic_client(peer)?;
        let connecting = self
            .inner
            .quic
            .connect_with(cfg, addr, &tls::server_name(&peer))?;
        let conn = self.await_handshake(connecting, addr, peer, &seen).await?;
        self.finish_quic(conn, peer, false, slot)
    }

    /// Waits for a QUIC handshake within the configured timeout; a failure becomes a counted
    /// dial error.
    async fn await_handshake(
        &self,
        connecting: quinn::Connecting,
        addr: SocketAddr,
        peer: PeerId,
        seen: &DialAttempt,
    ) -> Result<quinn::Connection> {
        let timeout = self.inner.shared.config.handshake_timeout;
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                let reason = classify_quic(&e);
                Err(self.dial_failed(addr, peer, seen, e.into(), reason))
            }
            Err(_) => Err(self.handshake_timed_out(addr, peer, seen)),
        }
    }

    fn handshake_timed_out(
        &self,
        addr: SocketAddr,
        peer: PeerId,
        seen: &DialAttempt,
    ) -> TransportError {
        let err = TransportError::HandshakeTimeout { addr };
        self.dial_failed(addr, peer, seen, err, FailureReason::Timeout)
    }

    fn finish_quic(
        &self,
        conn: quinn::Connection,
        peer: PeerId,
        zero_rtt: bool,
        slot: ConnSlot,
    ) -> Result<Connection> {
        // Defense in depth: the verifier pinned `peer`; check what the session reports.
        match peer_from_quinn(&conn) {
            Some(p) if p == peer => {}
            other => {
                conn.close(quinn::VarInt::from_u32(1), b"peer id mismatch");
                self.inner
                    .shared
                    .metrics
                    .fail(FailureReason::PeerIdMismatch);
                return Err(match other {
                    Some(actual) => TransportError::PeerIdMismatch {
                        expected: peer,
                        actual,
                    },
                    None => TransportError::Handshake {
                        addr: conn.remote_address(),
                        reason: "no peer certificate".into(),
                    },
                });
            }
        }
        if zero_rtt {
            self.inner.shared.metrics.zero_rtt.fetch_add(1, Relaxed);
        }
        Ok(Connection::from_quic(
            conn,
            peer,
            zero_rtt,
            self.inner.shared.clone(),
            slot,
        ))
    }

    /// Dials `peer` at `addr` over QUIC and sends `request` on a new bidirectional stream for
    /// `protocol` in 0-RTT when a session ticket for `peer` is cached. 0-RTT data can be
    /// replayed by an attacker, so `protocol` must be listed in
    /// [`Config::zero_rtt_protocols`] (idempotent requests only). If the server rejects 0-RTT,
    /// the request is sent again after the handshake. Read the response from `recv`.
    pub async fn connect_early(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        protocol: &str,
        request: &[u8],
    ) -> Result<EarlyConnect> {
        let shared = &self.inner.shared;
        header::validate_protocol(protocol, shared.config.max_protocol_len)?;
        if !shared
            .config
            .zero_rtt_protocols
            .iter()
            .any(|p| p == protocol)
        {
            return Err(TransportError::NotReplaySafe(protocol.to_owned()));
        }
        // Sent in 0-RTT: flagged so the receiver applies its replay policy.
        let mut early_msg = header::encode(StreamKind::EarlyBi, protocol);
        early_msg.extend_from_slice(request);
        // Re-sent after the handshake if the server rejected 0-RTT: ordinary 1-RTT data.
        let mut msg = header::encode(StreamKind::Bi, protocol);
        msg.extend_from_slice(request);
        let msg = Bytes::from(msg);
        let slot = self.slot()?;
        let (cfg, seen) = self.quic_client(peer)?;
        let connecting = self
            .inner
            .quic
            .connect_with(cfg, addr, &tls::server_name(&peer))?;
        let timeout = shared.config.handshake_timeout;
        let zr = connecting.into_0rtt();
        let (conn, early) = match zr {
            Ok((conn, accepted)) => {
                let (mut s, r) = conn.open_bi().await?;
                // Errors here mean 0-RTT was rejected; the request is re-sent below.
                let _ = s.write_all(&early_msg).await;
                let _ = s.finish();
                match tokio::time::timeout(timeout, accepted).await {
                    Ok(true) => (conn, Some((s, r))),
                    Ok(false) => (conn, None),
                    Err(_) => return Err(self.handshake_timed_out(addr, peer, &seen)),
                }
            }
            Err(connecting) => (
                self.await_handshake(connecting, addr, peer, &seen).await?,
                None,
            ),
        };
        if let Some(reason) = conn.close_reason() {
            let r = classify_quic(&reason);
            return Err(self.dial_failed(addr, peer, &seen, reason.into(), r));
        }
        let zero_rtt = early.is_some();
        let connection = self.finish_quic(conn.clone(), peer, zero_rtt, slot)?;
        let metrics = shared.metrics.clone();
        let (s, r) = match early {
            Some(pair) => pair,
            None => {
                let (mut s, r) = conn.open_bi().await?;
                s.write_all(&msg).await?;
                let _ = s.finish();
                (s, r)
            }
        };
        metrics.bytes_out.fetch_add(request.len() as u64, Relaxed);
        Ok(EarlyConnect {
            connection,
            send: SendStream {
                inner: SendInner::Quic(s),
                metrics: metrics.clone(),
            },
            recv: RecvStream {
                inner: RecvInner::Quic(r),
                metrics,
                replayable: false,
            },
            zero_rtt,
        })
    }

    /// Dials `peer` at `addr` over TCP only (TLS 1.3 + multiplexer).
    pub async fn connect_tcp(&self, peer: PeerId, addr: SocketAddr) -> Result<Connection> {
        let slot = self.slot()?;
        let timeout = self.inner.shared.config.handshake_timeout;
        let start = Instant::now();
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                self.inner.shared.metrics.fail(FailureReason::Transport);
                return Err(e.into());
            }
            Err(_) => {
                self.inner.shared.metrics.fail(FailureReason::Timeout);
                return Err(TransportError::HandshakeTimeout { addr });
            }
        };
        let rtt = start.elapsed();
        self.tune_tcp(&tcp);
        self.upgrade_outbound_inner(tcp, peer, addr, PathKind::Tcp, rtt, slot)
            .await
    }

    fn tune_tcp(&self, tcp: &TcpStream) {
        let _ = tcp.set_nodelay(true);
        if let Some(k) = self.inner.shared.config.keep_alive {
            let ka = socket2::TcpKeepalive::new().with_time(k).with_interval(k);
            let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka);
        }
    }

    /// Runs the secure multiplexed session (TLS 1.3 pinned to `peer`, then the multiplexer)
    /// as the dialer over any byte stream, e.g. a relayed stream.
    pub async fn upgrade_outbound<T>(
        &self,
        io: T,
        peer: PeerId,
        remote: SocketAddr,
    ) -> Result<Connection>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let slot = self.slot()?;
        self.upgrade_outbound_inner(io, peer, remote, PathKind::Stream, Duration::ZERO, slot)
            .await
    }

    async fn upgrade_outbound_inner<T>(
        &self,
        io: T,
        peer: PeerId,
        addr: SocketAddr,
        path: PathKind,
        rtt: Duration,
        slot: ConnSlot,
    ) -> Result<Connection>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = &self.inner.shared;
        let seen = shared.tls.client(peer)?.attempt();
        let cfg = seen.tcp.clone();
        let name = ServerName::try_from(tls::server_name(&peer))
            .map_err(|e| TransportError::TlsConfig(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let tls = match tokio::time::timeout(
            shared.config.handshake_timeout,
            connector.connect(name, io),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let reason = if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
                    FailureReason::Tls
                } else {
                    FailureReason::Transport
                };
                return Err(self.dial_failed(addr, peer, &seen, e.into(), reason));
            }
            Err(_) => {
                return Err(self.dial_failed(
                    addr,
                    peer,
                    &seen,
                    TransportError::HandshakeTimeout { addr },
                    FailureReason::Timeout,
                ));
            }
        };
        let proven = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(tls::peer_id_from_chain);
        if proven != Some(peer) {
            shared.metrics.fail(FailureReason::PeerIdMismatch);
            return Err(match proven {
                Some(actual) => TransportError::PeerIdMismatch {
                    expected: peer,
                    actual,
                },
                None => TransportError::Handshake {
                    addr,
                    reason: "no peer certificate".into(),
                },
            });
        }
        let (handle, inbound) =
            session::spawn(tls, true, self.mux_settings(), shared.metrics.clone());
        Ok(Connection::from_mux(
            handle,
            inbound,
            peer,
            addr,
            path,
            rtt,
            shared.clone(),
            slot,
        ))
    }

    /// Runs the secure multiplexed session as the listener over any byte stream; the
    /// connection is returned (not queued for [`Endpoint::accept`]).
    pub async fn upgrade_inbound<T>(&self, io: T, remote: SocketAddr) -> Result<Connection>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let slot = self.slot()?;
        accept_session(
            self.inner.shared.clone(),
            io,
            remote,
            PathKind::Stream,
            slot,
        )
        .await
    }

    fn mux_settings(&self) -> MuxSettings {
        mux_settings(&self.inner.shared.config)
    }
}

fn mux_settings(cfg: &Config) -> MuxSettings {
    MuxSettings {
        max_streams: cfg.max_streams_per_connection as usize,
        max_frame: cfg.tcp_max_frame,
        idle_timeout: if cfg.keep_alive.is_some() {
            None
        } else {
            Some(cfg.idle_timeout)
        },
    }
}

fn bind_pair(
    addr: SocketAddr,
    v6only: Option<bool>,
    with_tcp: bool,
) -> Result<(std::net::UdpSocket, Option<TcpListener>)> {
    let mut last = None;
    for _ in 0..16 {
        let udp =
            udp_socket(addr, v6only).map_err(|source| TransportError::Bind { addr, source })?;
        if !with_tcp {
            return Ok((udp, None));
        }
        let port = udp
            .local_addr()
            .map_err(|source| TransportError::Bind { addr, source })?
            .port();
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match tcp_listener(tcp_addr, v6only) {
            Ok(l) => return Ok((udp, Some(l))),
            Err(source) if addr.port() == 0 => {
                last = Some(TransportError::Bind {
                    addr: tcp_addr,
                    source,
                })
            }
            Err(source) => {
                return Err(TransportError::Bind {
                    addr: tcp_addr,
                    source,
                });
            }
        }
    }
    Err(last.unwrap_or(TransportError::NoAddress))
}

/// Charges a handshake from `remote` to its `proof` budget; false means over budget.
fn allow_handshake(shared: &Shared, remote: SocketAddr, proof: Proof) -> bool {
    shared
        .limiter
        .lock()
        .map(|mut l| l.allow(remote.ip(), proof, Instant::now()))
        .unwrap_or(false)
}

async fn quic_listen(quic: quinn::Endpoint, shared: Arc<Shared>, out: mpsc::Sender<Connection>) {
    while let Some(incoming) = quic.accept().await {
        let remote = incoming.remote_address();
        // Before any crypto: the per-source rate limit, then the connection limit. A source
        // that has not echoed a Retry token only claims its address, which a spoofer may
        // have forged to spend the owner's budget: over budget, it is asked to prove the
        // address with a (stateless, smaller than the Initial) Retry instead of being
        // refused, and is then charged to its proven budget (see limits.rs).
        let proof = if incoming.remote_address_validated() {
            Proof::Validated
        } else {
            Proof::Claimed
        };
        if !allow_handshake(&shared, remote, proof) {
            if proof == Proof::Claimed {
                shared.metrics.retries.fetch_add(1, Relaxed);
                tracing::trace!(%remote, "unproven QUIC source over budget: sending Retry");
                if let Err(e) = incoming.retry() {
                    // Cannot happen without a token (quinn guarantees `may_retry`); silence
                    // is the safe answer to a sender that cannot be told from a spoofer.
                    tracing::debug!(%remote, "Retry refused by QUIC: {e}");
                    e.into_incoming().ignore();
                }
                continue;
            }
            shared.metrics.fail(FailureReason::RateLimited);
            tracing::debug!(%remote, "refusing QUIC handshake: rate limited");
            incoming.refuse();
            continue;
        }
        let Some(slot) = ConnSlot::try_new(&shared) else {
            shared.metrics.fail(FailureReason::ConnectionLimit);
            tracing::debug!(%remote, "refusing QUIC handshake: connection limit");
            incoming.refuse();
            continue;
        };
        let (shared, out) = (shared.clone(), out.clone());
        tokio::spawn(async move {
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => {
                    shared.metrics.fail(classify_quic(&e));
                    return;
                }
            };
            // Servers always get a 0-RTT-capable connection: start accepting streams now so
            // the accept loop sees which arrive as (replayable) 0-RTT data and applies the
            // replay policy; the application gets the connection once the peer is proven.
            let (conn, done) = match connecting.into_0rtt() {
                Ok(pair) => pair,
                Err(connecting) => {
                    match tokio::time::timeout(shared.config.handshake_timeout, connecting).await {
                        Ok(Ok(c)) => {
                            let start = QuicStart::new(c, shared.clone(), slot);
                            finish_accept(start, &shared, remote, &out).await;
                        }
                        Ok(Err(e)) => shared.metrics.fail(classify_quic(&e)),
                        Err(_) => shared.metrics.fail(FailureReason::Timeout),
                    }
                    return;
                }
            };
            let start = QuicStart::new(conn.clone(), shared.clone(), slot);
            if tokio::time::timeout(shared.config.handshake_timeout, done)
                .await
                .is_err()
            {
                conn.close(quinn::VarInt::from_u32(1), b"handshake timeout");
                shared.metrics.fail(FailureReason::Timeout);
                start.abort();
                return;
            }
            if let Some(e) = conn.close_reason() {
                tracing::debug!(%remote, %e, "QUIC handshake failed");
                shared.metrics.fail(classify_quic(&e));
                start.abort();
                return;
            }
            finish_accept(start, &shared, remote, &out).await;
        });
    }
}

async fn finish_accept(
    start: QuicStart,
    shared: &Arc<Shared>,
    remote: SocketAddr,
    out: &mpsc::Sender<Connection>,
) {
    let Some(peer) = peer_from_quinn(start.conn()) else {
        shared.metrics.fail(FailureReason::Tls);
        start
            .conn()
            .close(quinn::VarInt::from_u32(1), b"no peer certificate");
        start.abort();
        return;
    };
    tracing::debug!(%remote, peer = %peer.short(), "QUIC connection accepted");
    let _ = out.send(start.finish(peer, false)).await;
}

async fn tcp_listen(listener: TcpListener, shared: Arc<Shared>, out: mpsc::Sender<Connection>) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The three-way handshake proved the address.
        if !allow_handshake(&shared, remote, Proof::Validated) {
            shared.metrics.fail(FailureReason::RateLimited);
            tracing::debug!(%remote, "refusing TCP handshake: rate limited");
            continue;
        }
        let Some(slot) = ConnSlot::try_new(&shared) else {
            shared.metrics.fail(FailureReason::ConnectionLimit);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        if let Some(k) = shared.config.keep_alive {
            let ka = socket2::TcpKeepalive::new().with_time(k).with_interval(k);
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&ka);
        }
        let (shared, out) = (shared.clone(), out.clone());
        tokio::spawn(async move {
            if let Ok(c) = accept_session(shared, tcp, remote, PathKind::Tcp, slot).await {
                let _ = out.send(c).await;
            }
        });
    }
}

async fn accept_session<T>(
    shared: Arc<Shared>,
    io: T,
    remote: SocketAddr,
    path: PathKind,
    slot: ConnSlot,
) -> Result<Connection>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let start = Instant::now();
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.tcp_server.clone());
    let tls = match tokio::time::timeout(shared.config.handshake_timeout, acceptor.accept(io)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let reason = if e.get_ref().is_some_and(|i| i.is::<rustls::Error>())
                || e.kind() == std::io::ErrorKind::InvalidData
            {
                FailureReason::Tls
            } else {
                FailureReason::Transport
            };
            tracing::debug!(%remote, %e, ?reason, "TLS handshake failed");
            shared.metrics.fail(reason);
            return Err(TransportError::Handshake {
                addr: remote,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            shared.metrics.fail(FailureReason::Timeout);
            return Err(TransportError::HandshakeTimeout { addr: remote });
        }
    };
    let Some(peer) = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(tls::peer_id_from_chain)
    else {
        shared.metrics.fail(FailureReason::Tls);
        return Err(TransportError::Handshake {
            addr: remote,
            reason: "no peer certificate".into(),
        });
    };
    let rtt = start.elapsed();
    let (handle, inbound) = session::spawn(
        tls,
        false,
        mux_settings(&shared.config),
        shared.metrics.clone(),
    );
    tracing::debug!(%remote, peer = %peer.short(), "TCP connection accepted");
    Ok(Connection::from_mux(
        handle, inbound, peer, remote, path, rtt, shared, slot,
    ))
}

/// `d` in whole microseconds, saturating.
fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
