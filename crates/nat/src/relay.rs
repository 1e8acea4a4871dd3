//! A minimal UDP relay for peers that cannot punch (both behind symmetric NATs).
//!
//! A peer allocates with a signed ALLOCATE naming a session; the relay binds the allocation to
//! the address the request came from. When both peers of a session hold allocations, DATA
//! from one is forwarded to the other. Bounded: at most [`MAX_ALLOCATIONS`] allocations,
//! two per session, each rate-limited (packets and bytes per second) and expiring unless
//! refreshed. Sans-IO: time is a parameter. Layout: `docs/protocols/nat.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2p_foundation_identity::{Keypair, PeerId, Signature};

/// First four bytes of every relay datagram.
pub const RELAY_MAGIC: [u8; 4] = *b"P2PL";
const KIND_ALLOCATE: u8 = 1;
const KIND_ALLOCATED: u8 = 2;
const KIND_DATA: u8 = 3;
const SIGNING_DOMAIN: &[u8] = b"p2p-foundation-nat/relay-allocate/v1\0";
/// Length of an ALLOCATE datagram.
pub const ALLOCATE_LEN: usize = 125;
/// Most allocations a relay holds.
pub const MAX_ALLOCATIONS: usize = 1024;
/// Largest DATA payload forwarded.
pub const MAX_PAYLOAD: usize = 1200;
/// How long an allocation lives without a refresh (a new ALLOCATE).
pub const ALLOCATION_LIFETIME: Duration = Duration::from_secs(120);
/// How far in the future an ALLOCATE's expiry may lie.
pub const MAX_ALLOCATE_VALIDITY_MS: u64 = 5 * 60 * 1000;

/// Per-allocation forwarding limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Datagrams per second forwarded per allocation.
    pub packets_per_sec: u32,
    /// Payload bytes per second forwarded per allocation.
    pub bytes_per_sec: u32,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            packets_per_sec: 500,
            bytes_per_sec: 512 * 1024,
        }
    }
}

/// Relay counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Allocations granted (refreshes included).
    pub allocations: u64,
    /// ALLOCATEs refused (bad signature, expired, table full, session full).
    pub refused: u64,
    /// DATA datagrams forwarded.
    pub forwarded: u64,
    /// DATA dropped: unknown sender, unpaired, over the rate limit, or too large.
    pub dropped: u64,
}

/// Encodes a signed ALLOCATE: magic, kind 1, session (16), peer id (32), expiry unix ms (8),
/// signature (64) over the signing domain, session, peer id and expiry.
pub fn encode_allocate(keypair: &Keypair, session: &[u8; 16], expires_unix_ms: u64) -> Vec<u8> {
    let peer = keypair.peer_id();
    let sig = keypair.sign(&signed_part(session, &peer, expires_unix_ms));
    let mut b = Vec::with_capacity(ALLOCATE_LEN);
    b.extend_from_slice(&RELAY_MAGIC);
    b.push(KIND_ALLOCATE);
    b.extend_from_slice(session);
    b.extend_from_slice(peer.as_bytes());
    b.extend_from_slice(&expires_unix_ms.to_be_bytes());
    b.extend_from_slice(sig.as_bytes());
    b
}

/// Encodes a DATA datagram carrying `payload`.
pub fn encode_data(payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + payload.len());
    b.extend_from_slice(&RELAY_MAGIC);
    b.push(KIND_DATA);
    b.extend_from_slice(payload);
    b
}

/// What a relay datagram received by a peer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayReply<'a> {
    /// The allocation for `session` is in place; `paired` when the other peer has one too.
    Allocated {
        /// Session id.
        session: [u8; 16],
        /// Whether DATA will now be forwarded.
        paired: bool,
    },
    /// A payload from the other peer.
    Data(&'a [u8]),
}

/// Decodes a datagram a relay sent to a peer.
pub fn decode_reply(bytes: &[u8]) -> Option<RelayReply<'_>> {
    if bytes.len() < 5 || bytes[..4] != RELAY_MAGIC {
        return None;
    }
    match bytes[4] {
        KIND_ALLOCATED if bytes.len() == 22 => {
            let mut session = [0u8; 16];
            session.copy_from_slice(&bytes[5..21]);
            Some(RelayReply::Allocated {
                session,
                paired: bytes[21] == 1,
            })
        }
        KIND_DATA => Some(RelayReply::Data(&bytes[5..])),
        _ => None,
    }
}

fn signed_part(session: &[u8; 16], peer: &PeerId, expires: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + 56);
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(session);
    m.extend_from_slice(peer.as_bytes());
    m.extend_from_slice(&expires.to_be_bytes());
    m
}

fn allocated(session: &[u8; 16], paired: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(22);
    b.extend_from_slice(&RELAY_MAGIC);
    b.push(KIND_ALLOCATED);
    b.extend_from_slice(session);
    b.push(u8::from(paired));
    b
}

#[derive(Debug, Clone, Copy)]
struct Allocation {
    session: [u8; 16],
    peer: PeerId,
    expires: Instant,
    window_start: Instant,
    packets: u32,
    bytes: u32,
    /// The session's other allocation, cached so DATA is forwarded without a table scan
    /// (checked against the table before use: it may have expired or moved).
    partner: Option<SocketAddr>,
}

/// Relay server state (sans-IO).
#[derive(Debug, Default)]
pub struct RelayServer {
    limits: RelayLimits,
    by_addr: HashMap<SocketAddr, Allocation>,
    stats: RelayStats,
}

impl RelayServer {
    /// An empty relay with these limits.
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            limits,
            by_addr: HashMap::new(),
            stats: RelayStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Live allocations.
    pub fn allocations(&self) -> usize {
        self.by_addr.len()
    }

    fn partner(
        &self,
        me: SocketAddr,
        session: &[u8; 16],
        peer: &PeerId,
        now: Instant,
    ) -> Option<SocketAddr> {
        self.by_addr
            .iter()
            .find(|(a, al)| {
                **a != me && al.session == *session && al.peer != *peer && al.expires > now
            })
            .map(|(a, _)| *a)
    }

    /// Handles one datagram from `from`; `now_unix_ms` is the wall clock (for ALLOCATE
    /// expiry). Returns datagrams to send.
    pub fn handle(
        &mut self,
        now: Instant,
        now_unix_ms: u64,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        if bytes.len() < 5 || bytes[..4] != RELAY_MAGIC {
            return Vec::new();
        }
        match bytes[4] {
            KIND_ALLOCATE => self.allocate(now, now_unix_ms, from, bytes),
            KIND_DATA => self.data(now, from, &bytes[5..]),
            _ => Vec::new(),
        }
    }

    fn allocate(
        &mut self,
        now: Instant,
        now_unix_ms: u64,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        if bytes.len() != ALLOCATE_LEN {
            self.stats.refused += 1;
            return Vec::new();
        }
        let mut session = [0u8; 16];
        session.copy_from_slice(&bytes[5..21]);
        let Ok(peer) = PeerId::from_slice(&bytes[21..53]) else {
            self.stats.refused += 1;
            return Vec::new();
        };
        let mut e = [0u8; 8];
        e.copy_from_slice(&bytes[53..61]);
        let expires_ms = u64::from_be_bytes(e);
        let mut s = [0u8; 64];
        s.copy_from_slice(&bytes[61..125]);
        let fresh =
            expires_ms > now_unix_ms && expires_ms - now_unix_ms <= MAX_ALLOCATE_VALIDITY_MS;
        if !fresh
            || peer
                .verify(
                    &signed_part(&session, &peer, expires_ms),
                    &Signature::from_bytes(s),
                )
                .is_err()
        {
            self.stats.refused += 1;
            tracing::debug!(%from, "relay: refused ALLOCATE (expired or bad signature)");
            return Vec::new();
        }
        self.by_addr.retain(|_, a| a.expires > now);
        // One allocation per (session, peer): a peer that moved (new mapping) replaces its old one.
        self.by_addr
            .retain(|a, al| *a == from || !(al.session == session && al.peer == peer));
        let in_session = self
            .by_addr
            .iter()
            .filter(|(a, al)| **a != from && al.session == session)
            .count();
        if in_session >= 2
            || (!self.by_addr.contains_key(&from) && self.by_addr.len() >= MAX_ALLOCATIONS)
        {
            self.stats.refused += 1;
            return Vec::new();
        }
        let partner = self.partner(from, &session, &peer, now);
        self.by_addr.insert(
            from,
            Allocation {
                session,
                peer,
                expires: now + ALLOCATION_LIFETIME,
                window_start: now,
                packets: 0,
                bytes: 0,
                partner,
            },
        );
        self.stats.allocations += 1;
        match partner {
            Some(other) => {
                if let Some(o) = self.by_addr.get_mut(&other) {
                    o.partner = Some(from);
                }
                vec![
                    (from, allocated(&session, true)),
                    (other, allocated(&session, true)),
                ]
            }
            None => vec![(from, allocated(&session, false))],
        }
    }

    fn data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        payload: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let limits = self.limits;
        let Some(al) = self.by_addr.get(&from).copied() else {
            self.stats.dropped += 1;
            return Vec::new();
        };
        let to = al.partner.filter(|p| {
            self.by_addr
                .get(p)
                .is_some_and(|o| o.session == al.session && o.peer != al.peer && o.expires > now)
        });
        let Some(to) = to else {
            self.stats.dropped += 1;
            return Vec::new();
        };
        let Some(al) = self.by_addr.get_mut(&from) else {
            return Vec::new();
        };
        if al.expires <= now || payload.len() > MAX_PAYLOAD {
            self.stats.dropped += 1;
            return Vec::new();
        }
        if now.duration_since(al.window_start) >= Duration::from_secs(1) {
            al.window_start = now;
            al.packets = 0;
            al.bytes = 0;
        }
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        if al.packets >= limits.packets_per_sec
            || al.bytes.saturating_add(len) > limits.bytes_per_sec
        {
            self.stats.dropped += 1;
            return Vec::new();
        }
        al.packets += 1;
        al.bytes += len;
        self.stats.forwarded += 1;
        vec![(to, encode_data(payload))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn addrs() -> (SocketAddr, SocketAddr, SocketAddr) {
        (
            "203.0.113.1:1000".parse().expect("addr"),
            "203.0.113.2:2000".parse().expect("addr"),
            "198.51.100.7:3000".parse().expect("addr"),
        )
    }

    #[test]
    fn pairs_two_peers_and_forwards_both_ways() {
        let (a, b, evil) = addrs();
        let ka = Keypair::from_secret_bytes([1; 32]);
        let kb = Keypair::from_secret_bytes([2; 32]);
        let s = [4; 16];
        let now = Instant::now();
        let mut r = RelayServer::new(RelayLimits::default());
        let out = r.handle(now, NOW_MS, a, &encode_allocate(&ka, &s, NOW_MS + 60_000));
        assert_eq!(out.len(), 1);
        assert_eq!(
            decode_reply(&out[0].1),
            Some(RelayReply::Allocated {
                session: s,
                paired: false
            })
        );
        // Unpaired data is dropped.
        assert!(r.handle(now, NOW_MS, a, &encode_data(b"early")).is_empty());
        let out = r.handle(now, NOW_MS, b, &encode_allocate(&kb, &s, NOW_MS + 60_000));
        assert_eq!(out.len(), 2);
        let out = r.handle(now, NOW_MS, a, &encode_data(b"hello b"));
        assert_eq!(out, vec![(b, encode_data(b"hello b"))]);
        let out = r.handle(now, NOW_MS, b, &encode_data(b"hello a"));
        assert_eq!(out, vec![(a, encode_data(b"hello a"))]);
        // A stranger can neither send through the relay nor join the full session.
        assert!(
            r.handle(now, NOW_MS, evil, &encode_data(b"spoof"))
                .is_empty()
        );
        let mallory = Keypair::from_secret_bytes([9; 32]);
        assert!(
            r.handle(
                now,
                NOW_MS,
                evil,
                &encode_allocate(&mallory, &s, NOW_MS + 60_000)
            )
            .is_empty()
        );
        assert_eq!(r.stats().forwarded, 2);
        assert_eq!(r.stats().refused, 1);
    }

    #[test]
    fn a_peer_that_moves_takes_its_allocation_along() {
        let (a, b, a2) = addrs();
        let ka = Keypair::from_secret_bytes([1; 32]);
        let kb = Keypair::from_secret_bytes([2; 32]);
        let now = Instant::now();
        let mut r = RelayServer::new(RelayLimits::default());
        r.handle(
            now,
            NOW_MS,
            a,
            &encode_allocate(&ka, &[4; 16], NOW_MS + 60_000),
        );
        r.handle(
            now,
            NOW_MS,
            b,
            &encode_allocate(&kb, &[4; 16], NOW_MS + 60_000),
        );
        // A's NAT mapping changed: it re-allocates from a new address.
        let out = r.handle(
            now,
            NOW_MS,
            a2,
            &encode_allocate(&ka, &[4; 16], NOW_MS + 60_000),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(r.allocations(), 2);
        assert_eq!(
            r.handle(now, NOW_MS, b, &encode_data(b"hi")),
            vec![(a2, encode_data(b"hi"))]
        );
        assert!(r.handle(now, NOW_MS, a, &encode_data(b"stale")).is_empty());
        // Allocations expire.
        let later = now + ALLOCATION_LIFETIME;
        assert!(r.handle(later, NOW_MS, b, &encode_data(b"late")).is_empty());
    }

    #[test]
    fn refuses_forged_and_expired_allocations() {
        let (a, _, _) = addrs();
        let ka = Keypair::from_secret_bytes([1; 32]);
        let now = Instant::now();
        let mut r = RelayServer::new(RelayLimits::default());
        let mut forged = encode_allocate(&ka, &[4; 16], NOW_MS + 60_000);
        forged[10] ^= 1; // session changed after signing
        assert!(r.handle(now, NOW_MS, a, &forged).is_empty());
        assert!(
            r.handle(now, NOW_MS, a, &encode_allocate(&ka, &[4; 16], NOW_MS - 1))
                .is_empty()
        );
        assert!(
            r.handle(
                now,
                NOW_MS,
                a,
                &encode_allocate(&ka, &[4; 16], NOW_MS + 3_600_000)
            )
            .is_empty()
        );
        assert_eq!(r.stats().refused, 3);
        assert_eq!(r.allocations(), 0);
    }

    #[test]
    fn rate_limit_drops_the_excess_and_resets_each_second() {
        let (a, b, _) = addrs();
        let ka = Keypair::from_secret_bytes([1; 32]);
        let kb = Keypair::from_secret_bytes([2; 32]);
        let now = Instant::now();
        let mut r = RelayServer::new(RelayLimits {
            packets_per_sec: 3,
            bytes_per_sec: 1_000_000,
        });
        r.handle(
            now,
            NOW_MS,
            a,
            &encode_allocate(&ka, &[4; 16], NOW_MS + 60_000),
        );
        r.handle(
            now,
            NOW_MS,
            b,
            &encode_allocate(&kb, &[4; 16], NOW_MS + 60_000),
        );
        let sent = (0..10)
            .filter(|_| !r.handle(now, NOW_MS, a, &encode_data(b"x")).is_empty())
            .count();
        assert_eq!(sent, 3);
        let later = now + Duration::from_secs(1);
        assert_eq!(r.handle(later, NOW_MS, a, &encode_data(b"x")).len(), 1);
        assert!(
            r.handle(now, NOW_MS, a, &encode_data(&[0; MAX_PAYLOAD + 1]))
                .is_empty()
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let (a, _, _) = addrs();
            let mut r = RelayServer::new(RelayLimits::default());
            let mut framed = bytes.clone();
            if framed.len() >= 5 { framed[..4].copy_from_slice(&RELAY_MAGIC); }
            let _ = r.handle(Instant::now(), NOW_MS, a, &bytes);
            let _ = r.handle(Instant::now(), NOW_MS, a, &framed);
            let _ = decode_reply(&bytes);
        }
    }
}
