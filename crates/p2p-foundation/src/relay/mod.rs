//! Relaying: a public node splices a stream from a dialer to a stream to a NATed target
//! that holds a reservation with it, and the two peers run their own authenticated,
//! encrypted session (the transport's TLS 1.3 + multiplexer) over the spliced bytes.
//!
//! - [`server`]: the relay's side: reservations, circuits, limits and refusals.
//! - [`client`]: holding reservations, dialling through a relay, accepting through one.
//! - [`splice`]: the bounded byte copy.
//! - [`wire`]: the control messages.
//!
//! The relay sees only TLS records between the two peers, and cannot impersonate either:
//! each side's TLS handshake is pinned to the other's key. A relayed connection is a
//! [`PathKind::Stream`](p2p_foundation_transport::PathKind::Stream) connection like any
//! other; the dialer keeps punching (with backoff) and moves to a direct connection when a
//! punch works (see [`crate::net`]).

mod client;
mod config;
mod server;
mod splice;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use p2p_foundation_identity::PeerId;
use p2p_foundation_transport::{Connection, RecvStream, SendStream};
use tracing::Instrument;

pub use config::{ForwardTap, RelayConfig};
pub use wire::RELAY_PROTOCOL;

use crate::net::Net;
use wire::{RelayMessage, read_frame};

/// Longest a control exchange (request and answer) may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Relay counters, from [`P2PNode::relay_stats`](crate::P2PNode::relay_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// As a relay: reservations granted (renewals included).
    pub reservations_granted: u64,
    /// As a relay: reservations refused (not a relay, full).
    pub reservations_refused: u64,
    /// As a relay: reservations held for others now.
    pub reservations_live: usize,
    /// As a relay: circuits spliced.
    pub circuits_served: u64,
    /// As a relay: circuits refused (no reservation, over a limit, target gone, target
    /// declined).
    pub circuits_refused: u64,
    /// As a relay: circuits spliced now.
    pub circuits_live: usize,
    /// As a relay: payload bytes forwarded, both directions.
    pub bytes_relayed: u64,
    /// As a relay: circuits reset for running out of bytes or time.
    pub circuits_cut: u64,
    /// As a holder: reservations this node holds at relays now.
    pub reservations_held: usize,
    /// Connections this node dialled through a relay.
    pub relayed_dials: u64,
    /// Connections this node accepted through a relay.
    pub relayed_accepts: u64,
    /// Relayed connections this node moved to a direct path.
    pub upgrades: u64,
}

#[derive(Debug, Default)]
struct Counters {
    reservations_granted: AtomicU64,
    reservations_refused: AtomicU64,
    circuits_served: AtomicU64,
    circuits_refused: AtomicU64,
    bytes_relayed: AtomicU64,
    circuits_cut: AtomicU64,
    relayed_dials: AtomicU64,
    relayed_accepts: AtomicU64,
    upgrades: AtomicU64,
}

/// The node's relay service: both roles, as a relay and as a holder/dialer.
pub(crate) struct RelayService {
    pub(crate) config: RelayConfig,
    /// As a relay: reservation holder → expiry.
    reservations: Mutex<HashMap<PeerId, Instant>>,
    /// As a relay: peer → circuits it is in now; the total is the sum over pairs / 2.
    circuits: Mutex<(usize, HashMap<PeerId, usize>)>,
    /// As a holder: relay → when to renew.
    held: Mutex<HashMap<PeerId, Instant>>,
    /// As a holder: relay → when it may be asked again after refusing.
    refused_by: Mutex<HashMap<PeerId, Instant>>,
    /// Signalled when the set of relays holding a reservation for this node changes (the
    /// peer-record publisher waits on it).
    pub(crate) held_changed: tokio::sync::Notify,
    counters: Counters,
}

impl std::fmt::Debug for RelayService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayService")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl RelayService {
    pub(crate) fn new(config: RelayConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            reservations: Mutex::new(HashMap::new()),
            circuits: Mutex::new((0, HashMap::new())),
            held: Mutex::new(HashMap::new()),
            refused_by: Mutex::new(HashMap::new()),
            held_changed: tokio::sync::Notify::new(),
            counters: Counters::default(),
        })
    }

    pub(crate) fn stats(&self) -> RelayStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Relaxed);
        let now = Instant::now();
        RelayStats {
            reservations_granted: l(&c.reservations_granted),
            reservations_refused: l(&c.reservations_refused),
            reservations_live: lock(&self.reservations)
                .values()
                .filter(|e| **e > now)
                .count(),
            circuits_served: l(&c.circuits_served),
            circuits_refused: l(&c.circuits_refused),
            circuits_live: lock(&self.circuits).0,
            bytes_relayed: l(&c.bytes_relayed),
            circuits_cut: l(&c.circuits_cut),
            reservations_held: lock(&self.held).len(),
            relayed_dials: l(&c.relayed_dials),
            relayed_accepts: l(&c.relayed_accepts),
            upgrades: l(&c.upgrades),
        }
    }

    /// The relays holding a reservation for this node now.
    pub(crate) fn held_relays(&self) -> Vec<PeerId> {
        lock(&self.held).keys().copied().collect()
    }

    /// Changes the set of relays holding a reservation, and says so when it changed.
    fn update_held(&self, change: impl FnOnce(&mut HashMap<PeerId, Instant>)) {
        let mut held = lock(&self.held);
        let before: Vec<PeerId> = held.keys().copied().collect();
        change(&mut held);
        let changed = held.len() != before.len() || before.iter().any(|p| !held.contains_key(p));
        drop(held);
        if changed {
            self.held_changed.notify_one();
        }
    }

    pub(crate) fn count_upgrade(&self) {
        self.counters.upgrades.fetch_add(1, Relaxed);
    }

    /// Serves one inbound `/p2pf/relay/1` stream from the peer behind `conn`.
    pub(crate) async fn serve(
        self: Arc<Self>,
        net: Arc<Net>,
        conn: Connection,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        let peer = conn.peer_id();
        let span =
            tracing::debug_span!("p2pf.relay", node = %net.local.short(), peer = %peer.short());
        async move {
            let first = match tokio::time::timeout(CONTROL_TIMEOUT, read_frame(&mut recv)).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "bad relay request");
                    return refuse(&mut send, e.to_string()).await;
                }
                Err(_) => return refuse(&mut send, "relay request too slow".into()).await,
            };
            match first {
                RelayMessage::Reserve {} => self.reserve(&net, peer, &mut send).await,
                RelayMessage::Connect { target } => {
                    self.connect(&net, &conn, target, send, recv).await
                }
                RelayMessage::Incoming { from } => {
                    self.incoming(&net, &conn, from, send, recv).await
                }
                other => refuse(&mut send, format!("not a request: {other:?}")).await,
            }
        }
        .instrument(span)
        .await
    }
}

/// Answers `message` as the last one on the stream: finishes it and waits (bounded) until
/// the peer has read it.
async fn reply_last(send: &mut SendStream, message: &RelayMessage) {
    if wire::write_frame(send, message).await.is_ok() {
        let _ = send.finish().await;
        let _ = tokio::time::timeout(CONTROL_TIMEOUT, send.stopped()).await;
    }
}

/// Answers a refusal and finishes the stream.
async fn refuse(send: &mut SendStream, reason: String) {
    reply_last(send, &RelayMessage::Refused { reason }).await;
}
