//! Thin tokio drivers: a STUN Binding server and client over real UDP sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::NatError;
use crate::binding::{
    BindingOutcome, BindingPoll, BindingTransaction, RetransmitConfig, answer_binding_request,
};

/// Runs one Binding transaction on `socket` against `server`, retransmitting per `config`.
///
/// Datagrams from other addresses or for other transactions that arrive meanwhile are
/// dropped and counted in [`BindingOutcome::stats`]; do not share the socket with another
/// reader during the call.
pub async fn stun_binding(
    socket: &UdpSocket,
    server: SocketAddr,
    config: RetransmitConfig,
) -> Result<BindingOutcome, NatError> {
    let span = tracing::debug_span!("stun_binding", %server);
    binding_inner(socket, server, config).instrument(span).await
}

async fn binding_inner(
    socket: &UdpSocket,
    server: SocketAddr,
    config: RetransmitConfig,
) -> Result<BindingOutcome, NatError> {
    let mut tx = BindingTransaction::new(server, config, Instant::now())?;
    let mut buf = vec![0u8; 2048];
    loop {
        match tx.poll(Instant::now()) {
            BindingPoll::Transmit { to, bytes } => {
                socket.send_to(&bytes, to).await?;
            }
            BindingPoll::WaitUntil(at) => {
                tokio::select! {
                    received = socket.recv_from(&mut buf) => match received {
                        Ok((n, from)) => tx.handle_datagram(from, &buf[..n]),
                        // An ICMP error reported on the socket: the next retransmission may succeed.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                        Err(e) => return Err(e.into()),
                    },
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
            BindingPoll::Done(result) => return result,
        }
    }
}

/// Per-source limits of a [`StunServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StunLimits {
    /// Answers per second to one source: an IPv4 address, or an IPv6 /64 (token-bucket
    /// rate).
    pub answers_per_sec_per_ip: u32,
    /// Answers one source may get in a burst (bucket size).
    pub burst_per_ip: u32,
    /// Most source addresses tracked at once; beyond, new sources wait until a tracked one
    /// goes idle (bounded memory under a spoofed-source flood).
    pub max_sources: usize,
}

impl Default for StunLimits {
    /// 20 answers a second per source with bursts of 40, 4,096 sources tracked.
    fn default() -> Self {
        Self {
            answers_per_sec_per_ip: 20,
            burst_per_ip: 40,
            max_sources: 4096,
        }
    }
}

/// A STUN Binding server on one UDP socket, answering until dropped.
///
/// Answers are rate-limited per source (an IPv4 address or an IPv6 /64, [`StunLimits`]) and
/// never larger than the request beyond the smallest possible answer
/// ([`answer_binding_request`]), so the server is a poor reflector for traffic aimed at a
/// spoofed source.
#[derive(Debug)]
pub struct StunServer {
    local: SocketAddr,
    answered: Arc<AtomicU64>,
    limited: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl StunServer {
    /// Binds `addr` and starts answering Binding requests on the current tokio runtime,
    /// with the default [`StunLimits`].
    pub async fn bind(addr: SocketAddr) -> Result<Self, NatError> {
        Self::bind_with_limits(addr, StunLimits::default()).await
    }

    /// Binds `addr` and serves with `limits`.
    ///
    /// ```
    /// use p2p_foundation_nat::udp::{StunLimits, StunServer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let limits = StunLimits { answers_per_sec_per_ip: 5, burst_per_ip: 10, ..StunLimits::default() };
    /// let server = StunServer::bind_with_limits("127.0.0.1:0".parse()?, limits).await?;
    /// assert_eq!(server.rate_limited(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn bind_with_limits(addr: SocketAddr, limits: StunLimits) -> Result<Self, NatError> {
        let socket = UdpSocket::bind(addr).await?;
        Self::serve(socket, limits)
    }

    /// Serves on an already bound socket, with the default [`StunLimits`].
    pub fn from_socket(socket: UdpSocket) -> Result<Self, NatError> {
        Self::serve(socket, StunLimits::default())
    }

    fn serve(socket: UdpSocket, limits: StunLimits) -> Result<Self, NatError> {
        let local = socket.local_addr()?;
        let answered = Arc::new(AtomicU64::new(0));
        let limited = Arc::new(AtomicU64::new(0));
        let (answers, refusals) = (answered.clone(), limited.clone());
        let mut buckets = crate::ratelimit::KeyedBuckets::new(
            limits.answers_per_sec_per_ip,
            limits.burst_per_ip,
            limits.max_sources,
        );
        let span = tracing::debug_span!("stun_server", %local);
        let task = tokio::spawn(
            async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    let (n, from) = match socket.recv_from(&mut buf).await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!(error = %e, "STUN server receive error");
                            continue;
                        }
                    };
                    let Some(reply) = answer_binding_request(from, &buf[..n]) else {
                        continue;
                    };
                    if !buckets.allow(crate::ratelimit::source(from), Instant::now()) {
                        refusals.fetch_add(1, Ordering::Relaxed);
                        tracing::trace!(%from, "STUN answer rate-limited");
                        continue;
                    }
                    // Sent to the address exactly as the socket reported it (a dual-stack
                    // socket needs the v4-mapped form); the answer carries the plain one.
                    if let Err(e) = socket.send_to(&reply, from).await {
                        tracing::debug!(%from, error = %e, "STUN server send error");
                    } else {
                        answers.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            .instrument(span),
        );
        tracing::debug!(%local, "STUN server listening");
        Ok(Self {
            local,
            answered,
            limited,
            task,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Responses sent so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Binding requests left unanswered because their source was over its rate.
    pub fn rate_limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }
}

impl Drop for StunServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registers with a rendezvous from `socket` (the socket that will punch) as `keypair`,
/// naming `remote`, and waits for the rendezvous to introduce `remote`; returns `remote`'s
/// address as the rendezvous saw it. Each registration is freshly signed (sequence number:
/// the wall clock in milliseconds, strictly increasing) and repeated every `interval`, at
/// most `max_sends` times.
///
/// ```
/// use std::time::Duration;
/// use p2p_foundation_identity::Keypair;
/// use p2p_foundation_nat::{RendezvousService, rendezvous_register};
/// use tokio::net::UdpSocket;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let server = RendezvousService::bind("127.0.0.1:0".parse()?).await?;
/// let (ka, kb) = (Keypair::generate(), Keypair::generate());
/// let sa = UdpSocket::bind("127.0.0.1:0").await?;
/// let sb = UdpSocket::bind("127.0.0.1:0").await?;
/// let (to, step) = (server.local_addr(), Duration::from_millis(50));
/// let (ida, idb) = (ka.peer_id(), kb.peer_id());
/// let (b_seen_by_a, a_seen_by_b) = tokio::join!(
///     rendezvous_register(&sa, to, [2; 16], &ka, &idb, step, 40),
///     rendezvous_register(&sb, to, [2; 16], &kb, &ida, step, 40),
/// );
/// assert_eq!(b_seen_by_a?, sb.local_addr()?);
/// assert_eq!(a_seen_by_b?, sa.local_addr()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn rendezvous_register(
    socket: &UdpSocket,
    server: SocketAddr,
    session: [u8; 16],
    keypair: &p2p_foundation_identity::Keypair,
    remote: &p2p_foundation_identity::PeerId,
    interval: std::time::Duration,
    max_sends: u32,
) -> Result<SocketAddr, NatError> {
    let span = tracing::debug_span!("rendezvous_register", %server, remote = %remote.short());
    async move {
        let mut buf = vec![0u8; 2048];
        let mut seq = 0u64;
        for _ in 0..max_sends {
            seq = unix_ms_now().max(seq + 1);
            let expires = std::time::SystemTime::now() + crate::rendezvous::REGISTRATION_TTL;
            let register =
                crate::rendezvous::encode_register(keypair, &session, remote, seq, expires)
                    .map_err(NatError::Sign)?;
            socket.send_to(&register, server).await?;
            let until = tokio::time::Instant::now() + interval;
            while let Some((n, from)) = recv_before(socket, &mut buf, until).await? {
                if crate::canonical_addr(from) != crate::canonical_addr(server) {
                    continue;
                }
                if let Some((s, peer, addr)) = crate::rendezvous::decode_peer(&buf[..n]) {
                    if s == session && peer == *remote {
                        return Ok(addr);
                    }
                }
            }
        }
        Err(NatError::RendezvousTimeout {
            server,
            sends: max_sends,
        })
    }
    .instrument(span)
    .await
}

/// Receives one datagram on `socket` before `until`: `Ok(None)` once the deadline passes.
/// An ICMP error reported on the socket (`ConnectionRefused`) is skipped.
async fn recv_before(
    socket: &UdpSocket,
    buf: &mut [u8],
    until: tokio::time::Instant,
) -> Result<Option<(usize, SocketAddr)>, NatError> {
    loop {
        tokio::select! {
            received = socket.recv_from(buf) => match received {
                Ok(r) => return Ok(Some(r)),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e.into()),
            },
            () = tokio::time::sleep_until(until) => return Ok(None),
        }
    }
}

/// Drives a [`crate::Punch`] on `socket` to its end. Non-punch datagrams arriving meanwhile
/// are discarded.
pub async fn punch(
    socket: &UdpSocket,
    punch: crate::Punch,
) -> Result<crate::PunchedPath, NatError> {
    let span = tracing::debug_span!("punch", local = ?socket.local_addr().ok());
    punch_inner(socket, punch).instrument(span).await
}

async fn punch_inner(
    socket: &UdpSocket,
    mut punch: crate::Punch,
) -> Result<crate::PunchedPath, NatError> {
    let mut buf = vec![0u8; 2048];
    loop {
        match punch.poll(Instant::now()) {
            crate::punch::PunchPoll::Transmit { to, bytes, .. } => {
                if let Err(e) = socket.send_to(&bytes, to).await {
                    // An unreachable candidate must not end the punch: other candidates or later rounds may work.
                    tracing::debug!(%to, error = %e, "punch probe not sent");
                }
            }
            crate::punch::PunchPoll::WaitUntil(at) => {
                tokio::select! {
                    received = socket.recv_from(&mut buf) => match received {
                        Ok((n, from)) => { punch.handle_datagram(Instant::now(), from, &buf[..n]); }
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                        Err(e) => return Err(e.into()),
                    },
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
            crate::punch::PunchPoll::Done(result) => return result,
        }
    }
}

/// The receive loop of a UDP service driven by a sans-IO server: every datagram goes to
/// `handle`, whose answers are sent at once. A receive error (an ICMP error reported on the
/// socket, a datagram larger than the buffer) is logged and the loop goes on; a send error
/// drops that one answer.
async fn serve_datagrams<I>(
    socket: UdpSocket,
    service: &'static str,
    mut handle: impl FnMut(SocketAddr, &[u8]) -> I,
) where
    I: IntoIterator<Item = (SocketAddr, Vec<u8>)>,
{
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(service, error = %e, "receive error");
                continue;
            }
        };
        for (to, bytes) in handle(from, &buf[..n]) {
            if let Err(e) = socket.send_to(&bytes, to).await {
                tracing::debug!(service, %to, error = %e, "send error");
            }
        }
    }
}

/// A rendezvous server on one UDP socket, serving until dropped.
#[derive(Debug)]
pub struct RendezvousService {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl RendezvousService {
    /// Binds `addr` and serves on the current tokio runtime.
    pub async fn bind(addr: SocketAddr) -> Result<Self, NatError> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let mut state = crate::rendezvous::RendezvousServer::new();
        let task = tokio::spawn(
            serve_datagrams(socket, "rendezvous", move |from, datagram| {
                state.handle(Instant::now(), std::time::SystemTime::now(), from, datagram)
            })
            .instrument(tracing::debug_span!("rendezvous_server", %local)),
        );
        Ok(Self { local, task })
    }

    /// The address served on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for RendezvousService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Allocates on a relay from `socket` as `keypair`, naming `partner`, and waits until the
/// partner holds an allocation naming us. Each round sends a REQUEST (or, once the relay's
/// CHALLENGE has arrived, the signed ALLOCATE answering it) every `interval`, at most
/// `max_sends` rounds; a CHALLENGE is answered at once.
///
/// ```
/// use std::time::Duration;
/// use p2p_foundation_identity::Keypair;
/// use p2p_foundation_nat::relay::RelayLimits;
/// use p2p_foundation_nat::{RelayService, relay_allocate};
/// use tokio::net::UdpSocket;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let relay = RelayService::bind("127.0.0.1:0".parse()?, RelayLimits::default()).await?;
/// let (ka, kb) = (Keypair::generate(), Keypair::generate());
/// let sa = UdpSocket::bind("127.0.0.1:0").await?;
/// let sb = UdpSocket::bind("127.0.0.1:0").await?;
/// let (to, step) = (relay.local_addr(), Duration::from_millis(50));
/// let (ida, idb) = (ka.peer_id(), kb.peer_id());
/// let (ra, rb) = tokio::join!(
///     relay_allocate(&sa, to, &ka, [1; 16], &idb, step, 40),
///     relay_allocate(&sb, to, &kb, [1; 16], &ida, step, 40),
/// );
/// ra?;
/// rb?; // both paired: DATA sent to the relay now reaches the other
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn relay_allocate(
    socket: &UdpSocket,
    relay: SocketAddr,
    keypair: &p2p_foundation_identity::Keypair,
    session: [u8; 16],
    partner: &p2p_foundation_identity::PeerId,
    interval: std::time::Duration,
    max_sends: u32,
) -> Result<(), NatError> {
    use crate::relay::{RelayReply, decode_reply, encode_allocate, encode_request};
    let span = tracing::debug_span!("relay_allocate", %relay, partner = %partner.short());
    async move {
        let request = encode_request(&session, &keypair.peer_id(), partner);
        let mut buf = vec![0u8; 2048];
        let mut seq = 0u64;
        let mut allocate = |cookie| {
            seq = unix_ms_now().max(seq + 1);
            let expires = std::time::SystemTime::now() + crate::relay::ALLOCATION_LIFETIME;
            encode_allocate(keypair, &session, partner, &cookie, seq, expires)
                .map_err(NatError::Sign)
        };
        // The last cookie and when it came: reused (re-signed) while fresh.
        let mut cookie: Option<(crate::relay::Cookie, tokio::time::Instant)> = None;
        let fresh = crate::relay::COOKIE_LIFETIME / 2;
        for _ in 0..max_sends {
            let datagram = match cookie {
                Some((c, at)) if at.elapsed() < fresh => allocate(c)?,
                _ => request.clone(),
            };
            socket.send_to(&datagram, relay).await?;
            let until = tokio::time::Instant::now() + interval;
            while let Some((n, from)) = recv_before(socket, &mut buf, until).await? {
                if crate::canonical_addr(from) != crate::canonical_addr(relay) {
                    continue;
                }
                match decode_reply(&buf[..n]) {
                    Some(RelayReply::Challenge {
                        session: s,
                        cookie: c,
                    }) if s == session => {
                        cookie = Some((c, tokio::time::Instant::now()));
                        socket.send_to(&allocate(c)?, relay).await?;
                    }
                    Some(RelayReply::Allocated {
                        session: s,
                        partner: p,
                        paired: true,
                    }) if s == session && p == *partner => return Ok(()),
                    _ => {}
                }
            }
        }
        Err(NatError::RelayTimeout {
            relay,
            sends: max_sends,
        })
    }
    .instrument(span)
    .await
}

/// A relay server on one UDP socket, serving until dropped.
#[derive(Debug)]
pub struct RelayService {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl RelayService {
    /// Binds `addr` and relays with `limits` on the current tokio runtime; the cookie secret
    /// comes from the OS random number generator.
    pub async fn bind(
        addr: SocketAddr,
        limits: crate::relay::RelayLimits,
    ) -> Result<Self, NatError> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| {
            NatError::Io(std::io::Error::other(format!("OS randomness failed: {e}")))
        })?;
        let mut state = crate::relay::RelayServer::new(limits, secret);
        let task = tokio::spawn(
            serve_datagrams(socket, "relay", move |from, datagram| {
                state.handle(Instant::now(), std::time::SystemTime::now(), from, datagram)
            })
            .instrument(tracing::debug_span!("relay_server", %local)),
        );
        Ok(Self { local, task })
    }

    /// The address served on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for RelayService {
    fn drop(&mut self) {
        self.task.abort();
    }
}
