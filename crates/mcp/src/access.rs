//! Access control (PRD S5): per-tool policies, capability tokens, per-peer rate limits.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use p2p_foundation_identity::{Keypair, PeerId, Signed, SignedPayload};
use serde::{Deserialize, Serialize};

use crate::McpError;

/// JSON-RPC error code of a call refused by policy (server-defined range).
pub const ACCESS_DENIED: i32 = -32003;
/// JSON-RPC error code of a call refused by the caller's rate limit (server-defined range).
pub const RATE_LIMITED: i32 = -32029;
/// Request `_meta` key carrying a capability token (hex of the signed envelope).
pub const CAPABILITY_META_KEY: &str = "p2pf/capability";
/// Largest accepted encoded capability token.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Who may call a tool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Anyone who can reach the node.
    #[default]
    Public,
    /// Only these peers.
    AllowList(BTreeSet<PeerId>),
    /// Only holders of a [`CapabilityToken`] issued by the node owner to the
    /// caller, unexpired, whose scope covers the tool.
    Capability,
}

impl Policy {
    /// Allow-list policy from peers.
    pub fn allow(peers: impl IntoIterator<Item = PeerId>) -> Self {
        Policy::AllowList(peers.into_iter().collect())
    }
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// The node's own user through a local gateway (stdio, or HTTP on loopback).
    /// Local callers are the owner and pass every policy.
    Local,
    /// A remote peer, authenticated by the transport that accepted the stream.
    Peer(PeerId),
}

impl Caller {
    /// The remote peer id, if any.
    pub fn peer(&self) -> Option<PeerId> {
        match self {
            Caller::Local => None,
            Caller::Peer(p) => Some(*p),
        }
    }
}

/// Payload of a capability token: the owner grants `subject` the right to
/// call the tools in `scope` (`"*"` for all) until the envelope expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Peer allowed to use the token.
    pub subject: PeerId,
    /// Tool names covered; `"*"` covers every tool.
    pub scope: Vec<String>,
}

impl SignedPayload for Grant {
    const DOMAIN: &'static str = "p2pf/mcp/grant";
}

/// A grant signed by the node owner (an identity [`Signed`] envelope).
pub type CapabilityToken = Signed<Grant>;

/// Issue a capability token as `owner` for `subject`, valid until `expires_at`.
pub fn issue_token(
    owner: &Keypair,
    subject: PeerId,
    scope: impl IntoIterator<Item = impl Into<String>>,
    expires_at: SystemTime,
) -> Result<CapabilityToken, McpError> {
    let grant = Grant {
        subject,
        scope: scope.into_iter().map(Into::into).collect(),
    };
    let seq = p2p_foundation_identity::unix_millis(SystemTime::now());
    Ok(Signed::sign(owner, grant, seq, expires_at)?)
}

/// Hex text of a token, as carried in request `_meta` under [`CAPABILITY_META_KEY`].
pub fn encode_token(token: &CapabilityToken) -> String {
    crate::hex::encode(token.as_bytes())
}

/// Decode a token from its hex text (bounded by [`MAX_TOKEN_BYTES`]).
pub fn decode_token(text: &str) -> Result<CapabilityToken, String> {
    if text.len() > MAX_TOKEN_BYTES * 2 {
        return Err(format!(
            "capability token longer than {MAX_TOKEN_BYTES} bytes"
        ));
    }
    let bytes = crate::hex::decode(text).ok_or("capability token is not hex")?;
    Signed::decode_with_limit(&bytes, MAX_TOKEN_BYTES)
        .map_err(|e| format!("capability token malformed: {e}"))
}

/// Decide whether `caller` may call `tool` under `policy`.
///
/// `owner` is the node's peer id (the only valid token issuer); `token` is the
/// encoded token the caller presented, if any. The error is the reason, sent
/// back to the caller.
pub fn check(
    policy: &Policy,
    tool: &str,
    caller: Caller,
    owner: PeerId,
    token: Option<&str>,
    now: SystemTime,
) -> Result<(), String> {
    let Caller::Peer(peer) = caller else {
        return Ok(());
    };
    match policy {
        Policy::Public => Ok(()),
        Policy::AllowList(peers) => {
            if peers.contains(&peer) {
                Ok(())
            } else {
                Err(format!(
                    "access denied: peer {peer} is not on the allow-list of tool '{tool}'"
                ))
            }
        }
        Policy::Capability => {
            let Some(text) = token else {
                return Err(format!(
                    "access denied: tool '{tool}' requires a capability token in _meta[\"{CAPABILITY_META_KEY}\"]"
                ));
            };
            let token = decode_token(text).map_err(|e| format!("access denied: {e}"))?;
            if token.signer() != owner {
                return Err(format!(
                    "access denied: capability token was issued by {}, not by this node's owner {owner}",
                    token.signer()
                ));
            }
            let grant = token
                .verify(now)
                .map_err(|e| format!("access denied: capability token invalid: {e}"))?
                .into_payload();
            if grant.subject != peer {
                return Err(format!(
                    "access denied: capability token was granted to {}, not to {peer}",
                    grant.subject
                ));
            }
            if !grant.scope.iter().any(|s| s == "*" || s == tool) {
                return Err(format!(
                    "access denied: capability token scope does not cover tool '{tool}'"
                ));
            }
            Ok(())
        }
    }
}

/// Token-bucket rate limit per peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained calls per second.
    pub per_second: f64,
    /// Burst size (bucket capacity).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` sustained with a burst of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-peer token buckets. Bounded: when it tracks more than `max_peers`,
/// buckets that have refilled completely (and so carry no state) are dropped.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    max_peers: usize,
    buckets: Mutex<HashMap<PeerId, Bucket>>,
}

impl RateLimiter {
    /// A limiter applying `limit` to each peer independently.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            max_peers: 65_536,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `peer` at `now`; the error says when to retry.
    pub fn check(&self, peer: PeerId, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let cap = f64::from(self.limit.burst.max(1));
        if buckets.len() >= self.max_peers && !buckets.contains_key(&peer) {
            let rate = self.limit.per_second;
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < cap
            });
        }
        let bucket = buckets.entry(peer).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.limit.per_second).min(cap);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            let wait = if self.limit.per_second > 0.0 {
                Duration::from_secs_f64((missing / self.limit.per_second).min(86_400.0))
            } else {
                Duration::from_secs(86_400)
            };
            Err(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_and_local() {
        let a = Keypair::generate().peer_id();
        let b = Keypair::generate().peer_id();
        let owner = Keypair::generate().peer_id();
        let p = Policy::allow([a]);
        let now = SystemTime::now();
        assert!(check(&p, "t", Caller::Peer(a), owner, None, now).is_ok());
        let e = check(&p, "t", Caller::Peer(b), owner, None, now).unwrap_err();
        assert!(e.contains("allow-list"), "{e}");
        assert!(check(&p, "t", Caller::Local, owner, None, now).is_ok());
    }

    #[test]
    fn capability_tokens() {
        let owner = Keypair::generate();
        let stranger = Keypair::generate();
        let alice = Keypair::generate().peer_id();
        let bob = Keypair::generate().peer_id();
        let now = SystemTime::now();
        let exp = now + Duration::from_secs(60);
        let tok = encode_token(&issue_token(&owner, alice, ["gen"], exp).unwrap());
        let p = Policy::Capability;
        let o = owner.peer_id();
        assert!(check(&p, "gen", Caller::Peer(alice), o, Some(&tok), now).is_ok());
        assert!(
            check(&p, "gen", Caller::Peer(alice), o, None, now)
                .unwrap_err()
                .contains("requires")
        );
        assert!(
            check(&p, "gen", Caller::Peer(bob), o, Some(&tok), now)
                .unwrap_err()
                .contains("granted to")
        );
        assert!(
            check(&p, "other", Caller::Peer(alice), o, Some(&tok), now)
                .unwrap_err()
                .contains("scope")
        );
        let late = exp + Duration::from_secs(1);
        assert!(
            check(&p, "gen", Caller::Peer(alice), o, Some(&tok), late)
                .unwrap_err()
                .contains("invalid")
        );
        let forged = encode_token(&issue_token(&stranger, alice, ["*"], exp).unwrap());
        assert!(
            check(&p, "gen", Caller::Peer(alice), o, Some(&forged), now)
                .unwrap_err()
                .contains("issued by")
        );
        assert!(
            check(&p, "gen", Caller::Peer(alice), o, Some("zz"), now)
                .unwrap_err()
                .contains("hex")
        );
    }

    #[test]
    fn rate_limit_buckets_per_peer() {
        let rl = RateLimiter::new(RateLimit::new(1.0, 2));
        let a = Keypair::generate().peer_id();
        let b = Keypair::generate().peer_id();
        let t0 = Instant::now();
        assert!(rl.check(a, t0).is_ok());
        assert!(rl.check(a, t0).is_ok());
        let wait = rl.check(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO);
        assert!(rl.check(b, t0).is_ok());
        assert!(rl.check(a, t0 + Duration::from_secs(1)).is_ok());
    }
}
