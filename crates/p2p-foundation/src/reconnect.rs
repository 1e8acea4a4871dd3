//! Keeping connections: peers the application asked for (bootstrap seeds, `connect`) are
//! dialled again with backoff when their connection closes, at fresh addresses from the
//! DHT first (a restarted peer is often on a new port), and the application sees
//! [`PeerEvent::Reconnected`](crate::PeerEvent::Reconnected) when one is back, whichever
//! side dialled. A network change
//! ([`PeerEvent::LocalAddressesChanged`](crate::PeerEvent::LocalAddressesChanged), a new
//! reflexive address) ends the wait: the next attempt goes out at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use p2p_foundation_identity::PeerId;
use tracing::Instrument as _;

use crate::net::Net;

/// How the node keeps connections to the peers it was asked to keep.
///
/// ```
/// use std::time::Duration;
/// use p2p_foundation::{P2PNode, ReconnectConfig};
///
/// let mut reconnect = ReconnectConfig::default();
/// reconnect.max_backoff = Duration::from_secs(10);
/// let builder = P2PNode::builder().reconnect_config(reconnect);
/// # drop(builder);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReconnectConfig {
    /// Dial kept peers again when their connection closes. Default `true`.
    pub enabled: bool,
    /// Wait before the first attempt (then doubled per attempt, with up to 25% jitter).
    /// Default 500 ms.
    pub initial_backoff: Duration,
    /// Longest wait between attempts. Default 30 s.
    pub max_backoff: Duration,
    /// Stop trying after the peer has been gone this long (it is dialled again on
    /// demand, and reported if it comes back by itself). Default 10 minutes.
    pub give_up_after: Duration,
    /// Peers kept at most (bootstrap seeds and `connect` targets; the oldest are
    /// dropped beyond it). Default 256.
    pub max_kept_peers: usize,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            give_up_after: Duration::from_secs(600),
            max_kept_peers: 256,
        }
    }
}

/// Peers to keep, and those lost and not yet back.
#[derive(Debug, Default)]
pub(crate) struct Keeper {
    config: OnceLock<ReconnectConfig>,
    /// Kept peers, with the order they were added (to drop the oldest).
    kept: Mutex<HashMap<PeerId, u64>>,
    next: std::sync::atomic::AtomicU64,
    /// Kept peers whose connection closed, and when.
    lost: Mutex<HashMap<PeerId, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Keeper {
    pub(crate) fn configure(&self, config: ReconnectConfig) {
        let _ = self.config.set(config);
    }

    fn config(&self) -> ReconnectConfig {
        self.config.get().cloned().unwrap_or_default()
    }

    /// Keeps `peer` connected from now on.
    pub(crate) fn keep(&self, peer: PeerId) {
        let max = self.config().max_kept_peers.max(1);
        let order = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut kept = lock(&self.kept);
        kept.insert(peer, order);
        while kept.len() > max {
            let Some(oldest) = kept.iter().min_by_key(|(_, o)| **o).map(|(p, _)| *p) else {
                break;
            };
            kept.remove(&oldest);
        }
    }

    /// A peer's last connection closed: if it is kept, remembers it as lost and returns
    /// `true` (the caller starts [`run`]).
    pub(crate) fn lost(&self, peer: PeerId) -> bool {
        if !self.config().enabled || !lock(&self.kept).contains_key(&peer) {
            return false;
        }
        lock(&self.lost).insert(peer, Instant::now()).is_none()
    }

    /// A first connection to `peer` is up: how long it had been gone, if it was a lost
    /// kept peer.
    pub(crate) fn back(&self, peer: &PeerId) -> Option<Duration> {
        lock(&self.lost).remove(peer).map(|at| at.elapsed())
    }

    fn still_lost(&self, peer: &PeerId) -> Option<Instant> {
        lock(&self.lost).get(peer).copied()
    }

    fn give_up(&self, peer: &PeerId) {
        lock(&self.lost).remove(peer);
    }
}

/// Dials `peer` again with backoff until it is back (by this dial or its own), the node
/// shuts down, or [`ReconnectConfig::give_up_after`] passed.
pub(crate) fn run(net: &Arc<Net>, peer: PeerId) {
    let span = tracing::debug_span!("p2pf.reconnect", peer = %peer.short());
    let task_net = Arc::clone(net);
    net.spawn(
        async move {
            let net = task_net;
            let config = net.keeper.config();
            let mut backoff = config.initial_backoff;
            let mut changes = net.network_changes();
            for attempt in 1u32.. {
                let wait = crate::net::with_jitter(backoff);
                if net.wait_unless_network_changes(&mut changes, wait).await {
                    // The path that failed may work on the new network: try now, and
                    // start the backoff over.
                    tracing::debug!(attempt, "network changed: dialling now");
                    backoff = config.initial_backoff;
                }
                let Some(since) = net.keeper.still_lost(&peer) else {
                    return; // Back already (it dialled us, or a dial on demand won).
                };
                if since.elapsed() > config.give_up_after {
                    tracing::info!(attempt, "gave up reconnecting");
                    net.keeper.give_up(&peer);
                    return;
                }
                // Fresh addresses first: the DHT knows a restarted peer's new port once
                // it rejoined; the remembered ones follow.
                let found = net.lookup(peer).await;
                match net.connect(peer, &found).await {
                    Ok(_) => {
                        tracing::debug!(attempt, "reconnected");
                        return;
                    }
                    Err(e) => tracing::debug!(attempt, error = %e, "reconnect attempt failed"),
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
        .instrument(span),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_identity::Keypair;

    #[test]
    fn only_kept_peers_are_lost_and_the_kept_set_is_bounded() {
        let k = Keeper::default();
        k.configure(ReconnectConfig {
            max_kept_peers: 2,
            ..ReconnectConfig::default()
        });
        let [a, b, c] = [1u8, 2, 3].map(|i| Keypair::from_secret_bytes([i; 32]).peer_id());
        assert!(!k.lost(a), "not kept");
        k.keep(a);
        k.keep(b);
        k.keep(c); // drops a, the oldest
        assert!(!k.lost(a));
        assert!(k.lost(b));
        assert!(!k.lost(b), "one reconnect task per lost peer");
        assert!(k.back(&b).is_some());
        assert!(k.back(&b).is_none(), "reported back once");
        assert!(k.back(&c).is_none(), "c was never lost");
    }

    #[test]
    fn disabled_keeps_nothing() {
        let k = Keeper::default();
        k.configure(ReconnectConfig {
            enabled: false,
            ..ReconnectConfig::default()
        });
        let a = Keypair::from_secret_bytes([9; 32]).peer_id();
        k.keep(a);
        assert!(!k.lost(a));
    }
}
