//! The side channel: datagrams on the QUIC socket that are not QUIC.
//!
//! NAT traversal only works on the socket whose mapping it learns and opens: a STUN answer
//! or a punched hole for another socket is useless to a QUIC connection. So the endpoint can
//! hand out of its receive path the datagrams a [`SideChannelConfig`]'s matcher claims (STUN
//! by its leading zero bits and magic cookie, RFC 7983 style; NAT probes by their own magic),
//! and send datagrams through the same socket. The transport knows nothing of what they
//! mean; the facade plugs the NAT crate's sans-IO cores into this hook.
//!
//! The matcher runs before the QUIC filter on every received datagram, so it must be cheap
//! and must never claim a QUIC packet. Claimed datagrams are copied into a bounded queue;
//! when it is full they are dropped and counted ([`SideChannelStats::dropped`]), so a flood
//! of them costs bounded memory and never delays QUIC.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use quinn::AsyncUdpSocket;
use quinn::udp::Transmit;
use tokio::sync::{Mutex, mpsc};

use crate::extra::{ExtraSockets, ExtraTable, socket_at};

/// Decides whether one received datagram belongs to the side channel.
type Matcher = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// Which received datagrams the side channel takes, and how many it queues.
///
/// ```
/// use p2p_foundation_transport::{Config, SideChannelConfig};
///
/// // Claim STUN messages (first two bits zero, magic cookie at bytes 4..8).
/// let stun = SideChannelConfig::new(|d: &[u8]| {
///     d.len() >= 20 && d[0] & 0xC0 == 0 && d[4..8] == [0x21, 0x12, 0xA4, 0x42]
/// });
/// let mut config = Config::default();
/// config.side_channel = Some(stun.with_capacity(128));
/// ```
#[derive(Clone)]
pub struct SideChannelConfig {
    matcher: Matcher,
    capacity: usize,
}

impl fmt::Debug for SideChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideChannelConfig")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SideChannelConfig {
    /// Default number of queued datagrams.
    pub const DEFAULT_CAPACITY: usize = 256;

    /// Claims the datagrams for which `matcher` returns true. It sees each datagram (each GRO
    /// segment) before QUIC does: keep it cheap, and never claim a QUIC packet.
    pub fn new(matcher: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> Self {
        Self {
            matcher: Arc::new(matcher),
            capacity: Self::DEFAULT_CAPACITY,
        }
    }

    /// Queues at most `capacity` (at least 1) datagrams; more are dropped and counted.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }
}

/// One datagram taken out of the QUIC socket's receive path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideDatagram {
    /// Who sent it.
    pub from: SocketAddr,
    /// Its bytes.
    pub data: Bytes,
    /// The extra socket it arrived on (its local address), or `None` for the QUIC socket
    /// (see [`SideChannel::open_extra_sockets`]).
    pub via: Option<SocketAddr>,
}

/// Counters of the side channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SideChannelStats {
    /// Datagrams the matcher claimed and queued.
    pub received: u64,
    /// Datagrams the matcher claimed but the full queue could not take (dropped).
    pub dropped: u64,
    /// Datagrams sent through [`SideChannel::send_to`] and [`SideChannel::send_via`].
    pub sent: u64,
    /// Extra sockets open now ([`SideChannel::open_extra_sockets`]).
    pub extra_sockets: usize,
    /// QUIC datagrams an extra socket could not send at once (dropped like lost packets).
    pub extra_send_dropped: u64,
}

/// The receive-path end of the side channel, held by the socket filter.
pub(crate) struct SideTap {
    matcher: Matcher,
    tx: mpsc::Sender<SideDatagram>,
    received: AtomicU64,
    dropped: AtomicU64,
    sent: AtomicU64,
    /// The socket in use now (replaced on rebind), for sending.
    socket: RwLock<Option<Arc<dyn AsyncUdpSocket>>>,
    /// Extra sockets beside it (for the birthday technique) and the routes through them.
    pub(crate) extras: Arc<ExtraTable>,
}

impl fmt::Debug for SideTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideTap")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SideTap {
    pub(crate) fn new(config: &SideChannelConfig) -> (Arc<Self>, mpsc::Receiver<SideDatagram>) {
        let (tx, rx) = mpsc::channel(config.capacity);
        let tap = Arc::new(Self {
            matcher: config.matcher.clone(),
            tx,
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            socket: RwLock::new(None),
            extras: Arc::new(ExtraTable::default()),
        });
        (tap, rx)
    }

    /// Takes `datagram` (received on the extra socket `via`, or on the QUIC socket) if the
    /// matcher claims it; returns whether it did.
    pub(crate) fn claim(&self, datagram: &[u8], from: SocketAddr, via: Option<SocketAddr>) -> bool {
        if !(self.matcher)(datagram) {
            return false;
        }
        let item = SideDatagram {
            from,
            data: Bytes::copy_from_slice(datagram),
            via,
        };
        match self.tx.try_send(item) {
            Ok(()) => self.received.fetch_add(1, Relaxed),
            Err(_) => self.dropped.fetch_add(1, Relaxed),
        };
        true
    }

    /// The QUIC socket now in use; `v6only` is its IPV6_V6ONLY setting (extra sockets
    /// bind alike).
    pub(crate) fn set_socket(&self, socket: Arc<dyn AsyncUdpSocket>, v6only: Option<bool>) {
        if let Ok(local) = socket.local_addr() {
            self.extras.set_bind(local.ip(), v6only);
        }
        if let Ok(mut slot) = self.socket.write() {
            *slot = Some(socket);
        }
    }

    fn stats(&self) -> SideChannelStats {
        SideChannelStats {
            received: self.received.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            sent: self.sent.load(Relaxed),
            extra_sockets: self.extras.open_count(),
            extra_send_dropped: self.extras.send_dropped.load(Relaxed),
        }
    }
}

/// Receives the claimed datagrams and sends datagrams through the endpoint's QUIC socket.
/// Obtained from [`Endpoint::side_channel`](crate::Endpoint::side_channel); cheap to clone
/// (clones share one queue).
///
/// ```no_run
/// # async fn demo(endpoint: p2p_foundation_transport::Endpoint) -> std::io::Result<()> {
/// let side = endpoint.side_channel().expect("configured with Config::side_channel");
/// while let Some(datagram) = side.recv().await {
///     // Echo it back from the QUIC port.
///     side.send_to(&datagram.data, datagram.from).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SideChannel {
    tap: Arc<SideTap>,
    rx: Arc<Mutex<mpsc::Receiver<SideDatagram>>>,
}

impl fmt::Debug for SideChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SideChannel")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SideChannel {
    pub(crate) fn new(tap: Arc<SideTap>, rx: mpsc::Receiver<SideDatagram>) -> Self {
        Self {
            tap,
            rx: Arc::new(Mutex::new(rx)),
        }
    }

    /// The next claimed datagram; `None` once the endpoint is gone.
    pub async fn recv(&self) -> Option<SideDatagram> {
        self.rx.lock().await.recv().await
    }

    /// Sends one datagram from the QUIC socket (the one in use now, after any rebind). An
    /// IPv4 destination is sent to in its v4-mapped form when the socket is dual-stack.
    pub async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        let socket = self
            .tap
            .socket
            .read()
            .ok()
            .and_then(|slot| slot.clone())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "endpoint closed"))?;
        self.send_on(socket, data, to).await
    }

    /// Sends one datagram from the extra socket at `via` (see
    /// [`open_extra_sockets`](Self::open_extra_sockets)); `NotFound` once it is closed.
    pub async fn send_via(&self, via: SocketAddr, data: &[u8], to: SocketAddr) -> io::Result<()> {
        let socket = socket_at(&self.tap.extras, via)?;
        self.send_on(socket, data, to).await
    }

    /// Opens `count` extra UDP sockets on the QUIC socket's IP (ports the OS picks), for
    /// NAT traversal's birthday technique: datagrams the matcher claims arrive on this side
    /// channel with [`SideDatagram::via`] set, QUIC datagrams join the endpoint's receive
    /// path, and [`ExtraSocket::route`](crate::ExtraSocket::route) makes one carry a peer's
    /// QUIC packets. At most [`MAX_EXTRA_SOCKETS`](crate::MAX_EXTRA_SOCKETS) are open at
    /// once; dropping the guard closes them.
    ///
    /// ```no_run
    /// # fn demo(side: p2p_foundation_transport::SideChannel) -> std::io::Result<()> {
    /// let extras = side.open_extra_sockets(16)?;
    /// assert_eq!(extras.addrs().len(), 16);
    /// drop(extras); // all closed again
    /// # Ok(()) }
    /// ```
    pub fn open_extra_sockets(&self, count: usize) -> io::Result<ExtraSockets> {
        ExtraSockets::open(self.tap.extras.clone(), count)
    }

    async fn send_on(
        &self,
        socket: Arc<dyn AsyncUdpSocket>,
        data: &[u8],
        to: SocketAddr,
    ) -> io::Result<()> {
        // An IPv6 socket (dual-stack) reaches IPv4 destinations by their v4-mapped form.
        let to = match (to, socket.local_addr()) {
            (SocketAddr::V4(v4), Ok(SocketAddr::V6(_))) => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            _ => to,
        };
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip: None,
        };
        let mut poller = socket.clone().create_io_poller();
        // Bounded: a socket that stays unwritable for 64 wake-ups in a row is reported.
        for _ in 0..64 {
            match socket.try_send(&transmit) {
                Ok(()) => {
                    self.tap.sent.fetch_add(1, Relaxed);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx)).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "UDP socket stayed unwritable",
        ))
    }

    /// Counters so far.
    pub fn stats(&self) -> SideChannelStats {
        self.tap.stats()
    }
}
