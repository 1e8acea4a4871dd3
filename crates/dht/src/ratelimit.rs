//! Per-peer token buckets for inbound requests.

use std::collections::HashMap;
use std::time::Instant;

use p2p_foundation_identity::PeerId;

use crate::config::RateLimit;

struct Tokens {
    tokens: f64,
    at: Instant,
}

pub(crate) struct RateLimiter {
    limit: RateLimit,
    peers: HashMap<PeerId, Tokens>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            peers: HashMap::new(),
        }
    }

    /// Takes one token for `peer`; false if it has none left.
    pub(crate) fn allow(&mut self, now: Instant, peer: &PeerId) -> bool {
        let RateLimit {
            per_second, burst, ..
        } = self.limit;
        if let Some(t) = self.peers.get_mut(peer) {
            let elapsed = now.saturating_duration_since(t.at).as_secs_f64();
            t.tokens = (t.tokens + elapsed * per_second).min(burst);
            t.at = now;
            if t.tokens >= 1.0 {
                t.tokens -= 1.0;
                return true;
            }
            return false;
        }
        if self.peers.len() >= self.limit.max_tracked_peers {
            self.forget_idle(now);
            if self.peers.len() >= self.limit.max_tracked_peers {
                // Every tracked peer is active: forget an arbitrary one rather than refuse
                // newcomers (which would let a few busy ids lock everybody else out).
                if let Some(victim) = self.peers.keys().min().copied() {
                    self.peers.remove(&victim);
                }
            }
        }
        if burst < 1.0 {
            return false;
        }
        self.peers.insert(
            *peer,
            Tokens {
                tokens: burst - 1.0,
                at: now,
            },
        );
        true
    }

    /// Forgets peers whose bucket has refilled completely: they are indistinguishable from
    /// peers never seen.
    pub(crate) fn forget_idle(&mut self, now: Instant) {
        let RateLimit {
            per_second, burst, ..
        } = self.limit;
        self.peers.retain(|_, t| {
            let elapsed = now.saturating_duration_since(t.at).as_secs_f64();
            t.tokens + elapsed * per_second < burst
        });
    }
}
