//! A UDP transport: one signed datagram per message.
//!
//! Every datagram is a [`Signed`] envelope (domain `p2pf/dht/udp`) whose payload names the
//! recipient, a nonce matching a response to its request, and the DHT frame. What this
//! authenticates, and what it does not, is spelled out in `docs/protocols/dht.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use p2p_foundation_identity::{Keypair, PeerId, Signed, SignedPayload};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::{BoxFuture, Inbound, Transport};
use crate::DhtError;

/// Largest DHT frame the UDP transport carries (the envelope adds ~170 bytes; a UDP
/// datagram holds at most 65,507).
pub const UDP_MAX_FRAME_LEN: usize = 60 * 1024;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_507;
/// How long a signed datagram stays valid: the replay window.
const DATAGRAM_TTL: Duration = Duration::from_secs(60);
/// How long a request waits for its response.
const UDP_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct UdpPayload {
    /// The recipient: a datagram signed for one node is refused by every other.
    to: PeerId,
    /// Chosen by the requester, echoed by the response.
    nonce: u64,
    /// Whether this answers a request.
    response: bool,
    /// The DHT frame.
    frame: Vec<u8>,
}

impl SignedPayload for UdpPayload {
    const DOMAIN: &'static str = "p2pf/dht/udp";
}

/// Counters of a [`UdpTransport`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams that were not a well-formed envelope.
    pub malformed: u64,
    /// Datagrams with a bad signature or an expired envelope.
    pub bad_signature: u64,
    /// Datagrams signed for another recipient.
    pub misaddressed: u64,
    /// Responses matching no request in flight (late, replayed or forged).
    pub unmatched: u64,
    /// Requests dropped because the driver's inbound queue was full.
    pub overflow: u64,
    /// Requests dropped as replays of one already received (same signer and nonce).
    pub replayed: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    malformed: AtomicU64,
    bad_signature: AtomicU64,
    misaddressed: AtomicU64,
    unmatched: AtomicU64,
    overflow: AtomicU64,
    replayed: AtomicU64,
}

/// Most recent request (signer, nonce) pairs remembered to drop replays.
const REPLAY_CACHE: usize = 65_536;

/// Requests seen within the replay window: a replayed datagram is dropped while its entry
/// is held (for the whole 60-second window unless more than 65,536 requests arrived since).
#[derive(Default)]
struct ReplayCache {
    seen: std::collections::HashSet<(PeerId, u64)>,
    order: std::collections::VecDeque<(std::time::Instant, PeerId, u64)>,
}

impl ReplayCache {
    /// Records a request; false if it was seen already.
    fn first_time(&mut self, now: std::time::Instant, from: PeerId, nonce: u64) -> bool {
        while let Some((at, p, n)) = self.order.front().copied() {
            if now.duration_since(at) <= DATAGRAM_TTL && self.order.len() < REPLAY_CACHE {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&(p, n));
        }
        if !self.seen.insert((from, nonce)) {
            return false;
        }
        self.order.push_back((now, from, nonce));
        true
    }
}

type PendingMap = Arc<Mutex<HashMap<(PeerId, u64), oneshot::Sender<Vec<u8>>>>>;

/// A DHT transport over one UDP socket.
pub struct UdpTransport {
    socket: Arc<UdpSocket>,
    keypair: Arc<Keypair>,
    pending: PendingMap,
    next_nonce: AtomicU64,
    counters: Arc<Counters>,
    receiver: AbortHandle,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpTransport")
            .field("local", &self.keypair.peer_id().short())
            .field("addr", &self.local_addr)
            .finish()
    }
}

impl Drop for UdpTransport {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

fn sign(keypair: &Keypair, payload: UdpPayload) -> Result<Vec<u8>, DhtError> {
    let envelope = Signed::sign(keypair, payload, 0, SystemTime::now() + DATAGRAM_TTL)?;
    Ok(envelope.as_bytes().to_vec())
}

impl UdpTransport {
    /// Binds `addr` and starts receiving. Returns the transport and the inbound requests
    /// (for [`DhtNode::spawn`](super::DhtNode::spawn)).
    pub async fn bind(
        addr: SocketAddr,
        keypair: Keypair,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Inbound>), DhtError> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let local_addr = socket.local_addr()?;
        let keypair = Arc::new(keypair);
        let pending: PendingMap = Arc::default();
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(1024);
        let receiver = tokio::spawn(receive_loop(
            Arc::clone(&socket),
            Arc::clone(&keypair),
            Arc::clone(&pending),
            Arc::clone(&counters),
            tx,
        ))
        .abort_handle();
        let seed = p2p_foundation_identity::unix_millis(SystemTime::now());
        let transport = Arc::new(Self {
            socket,
            keypair,
            pending,
            next_nonce: AtomicU64::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            counters,
            receiver,
            local_addr,
        });
        Ok((transport, rx))
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters.
    pub fn stats(&self) -> UdpStats {
        let c = &self.counters;
        UdpStats {
            received: c.received.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            bad_signature: c.bad_signature.load(Ordering::Relaxed),
            misaddressed: c.misaddressed.load(Ordering::Relaxed),
            unmatched: c.unmatched.load(Ordering::Relaxed),
            overflow: c.overflow.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
        }
    }
}

impl Transport for UdpTransport {
    fn request(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        frame: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, DhtError>> {
        let nonce = self.next_nonce.fetch_add(1, Ordering::Relaxed);
        let socket = Arc::clone(&self.socket);
        let keypair = Arc::clone(&self.keypair);
        let pending = Arc::clone(&self.pending);
        Box::pin(async move {
            if frame.len() > UDP_MAX_FRAME_LEN {
                return Err(DhtError::FrameTooLarge {
                    len: frame.len(),
                    max: UDP_MAX_FRAME_LEN,
                });
            }
            let datagram = sign(
                &keypair,
                UdpPayload {
                    to: peer,
                    nonce,
                    response: false,
                    frame,
                },
            )?;
            let (tx, rx) = oneshot::channel();
            lock(&pending).insert((peer, nonce), tx);
            if let Err(e) = socket.send_to(&datagram, addr).await {
                lock(&pending).remove(&(peer, nonce));
                return Err(e.into());
            }
            let result = tokio::time::timeout(UDP_REQUEST_TIMEOUT, rx).await;
            lock(&pending).remove(&(peer, nonce));
            match result {
                Ok(Ok(frame)) => Ok(frame),
                Ok(Err(_)) => Err(DhtError::Transport {
                    peer: peer.short().to_string(),
                    reason: "transport closed".into(),
                }),
                Err(_) => Err(DhtError::Timeout {
                    peer: peer.short().to_string(),
                }),
            }
        })
    }
}

/// A received UDP datagram whose envelope decoded, verified and was addressed to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// The signer: the sender's authenticated identity.
    pub from: PeerId,
    /// The nonce pairing a response with its request.
    pub nonce: u64,
    /// Whether it is a response.
    pub response: bool,
    /// The DHT frame it carries (decode it with [`Message::decode`](crate::Message::decode)).
    pub frame: Vec<u8>,
}

/// Why a datagram was refused by [`decode_udp_datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatagramError {
    /// Not a well-formed `p2pf/dht/udp` envelope (or larger than a datagram).
    Malformed,
    /// Bad signature, or the envelope expired (outside the replay window).
    BadSignature,
    /// Signed for another recipient.
    Misaddressed,
}

/// Decodes and checks one datagram received by `local` at wall-clock time `now`: envelope
/// structure, signature, expiry, recipient, frame size.
pub fn decode_udp_datagram(
    bytes: &[u8],
    local: &PeerId,
    now: SystemTime,
) -> Result<UdpDatagram, DatagramError> {
    let envelope = Signed::<UdpPayload>::decode_with_limit(bytes, MAX_DATAGRAM)
        .map_err(|_| DatagramError::Malformed)?;
    let envelope = envelope
        .verify(now)
        .map_err(|_| DatagramError::BadSignature)?;
    let from = envelope.signer();
    let payload = envelope.into_payload();
    if &payload.to != local {
        return Err(DatagramError::Misaddressed);
    }
    if payload.frame.len() > UDP_MAX_FRAME_LEN {
        return Err(DatagramError::Malformed);
    }
    Ok(UdpDatagram {
        from,
        nonce: payload.nonce,
        response: payload.response,
        frame: payload.frame,
    })
}

/// Encodes a datagram from `keypair` to `to` (what [`UdpTransport`] sends), for tests and
/// other implementations.
pub fn encode_udp_datagram(
    keypair: &Keypair,
    to: PeerId,
    nonce: u64,
    response: bool,
    frame: Vec<u8>,
) -> Result<Vec<u8>, DhtError> {
    sign(
        keypair,
        UdpPayload {
            to,
            nonce,
            response,
            frame,
        },
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn receive_loop(
    socket: Arc<UdpSocket>,
    keypair: Arc<Keypair>,
    pending: PendingMap,
    counters: Arc<Counters>,
    inbound: mpsc::Sender<Inbound>,
) {
    let local = keypair.peer_id();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut replays = ReplayCache::default();
    loop {
        let (len, from_addr) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors surface here on some platforms; keep serving.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        counters.received.fetch_add(1, Ordering::Relaxed);
        let payload = match decode_udp_datagram(&buf[..len], &local, SystemTime::now()) {
            Ok(p) => p,
            Err(e) => {
                let counter = match e {
                    DatagramError::Malformed => &counters.malformed,
                    DatagramError::BadSignature => &counters.bad_signature,
                    DatagramError::Misaddressed => &counters.misaddressed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let from = payload.from;
        if payload.response {
            match lock(&pending).remove(&(from, payload.nonce)) {
                Some(tx) => {
                    let _ = tx.send(payload.frame);
                }
                None => {
                    counters.unmatched.fetch_add(1, Ordering::Relaxed);
                }
            }
            continue;
        }
        if !replays.first_time(std::time::Instant::now(), from, payload.nonce) {
            counters.replayed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (reply, rx) = oneshot::channel();
        let request = Inbound {
            from,
            addr: from_addr,
            frame: payload.frame,
            reply,
        };
        if inbound.try_send(request).is_err() {
            counters.overflow.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let socket = Arc::clone(&socket);
        let keypair = Arc::clone(&keypair);
        let nonce = payload.nonce;
        tokio::spawn(async move {
            let Ok(frame) = rx.await else {
                return; // refused (rate limited, malformed): no answer
            };
            if frame.len() > UDP_MAX_FRAME_LEN {
                tracing::debug!(len = frame.len(), "response too large for a datagram");
                return;
            }
            let payload = UdpPayload {
                to: from,
                nonce,
                response: true,
                frame,
            };
            match sign(&keypair, payload) {
                Ok(datagram) => {
                    if let Err(e) = socket.send_to(&datagram, from_addr).await {
                        tracing::debug!(error = %e, "udp send error");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not sign a response"),
            }
        });
    }
}
