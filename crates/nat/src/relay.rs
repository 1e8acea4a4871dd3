//! A minimal UDP relay for peers that cannot punch (both behind symmetric NATs).
//!
//! Allocating is a return-routability handshake: a peer sends REQUEST naming the session,
//! itself and its partner; the relay answers with a CHALLENGE (a cookie keyed by a relay
//! secret over the source address, the session, both peer ids and the time) sent to the
//! source address; the peer returns it inside an ALLOCATE signed with its Ed25519 key, and
//! only then does the relay allocate, bound to that address. So an allocation is made only
//! for an address that received the challenge, by the holder of the key it names: a
//! spoofed source gets nothing forwarded (it never answers), a captured ALLOCATE replayed
//! from elsewhere is refused (its cookie names another address), and a peer that moved
//! can move its allocation only by doing the handshake from the new address.
//!
//! Both partners are named in the signed allocation: A's allocation naming B pairs only with
//! B's allocation naming A, so a third party knowing the session id pairs with nobody.
//! Allocations are refreshed by every ALLOCATE and by DATA from their address, and expire
//! [`ALLOCATION_LIFETIME`] after the last. Bounded: at most [`MAX_ALLOCATIONS`], a quota
//! per peer id and per source (an IPv4 address or an IPv6 /64, [`RelayLimits`]), handshake
//! messages rate-limited per source before any signature is checked, and per-allocation packet and byte rates.
//! Sans-IO: time and the secret are parameters. Layout: `docs/protocols/nat.md`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2p_foundation_identity::{IdentityError, Keypair, PeerId, Signed, SignedPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ratelimit::{Counts, KeyedBuckets};

/// First four bytes of every relay datagram.
pub const RELAY_MAGIC: [u8; 4] = *b"P2PL";
/// Protocol version, the byte after the magic (version 1 had no version byte).
pub const RELAY_VERSION: u8 = 2;
const KIND_REQUEST: u8 = 1;
const KIND_CHALLENGE: u8 = 2;
const KIND_ALLOCATE: u8 = 3;
const KIND_ALLOCATED: u8 = 4;
const KIND_DATA: u8 = 5;
const HEADER_LEN: usize = 6;
/// Length of a REQUEST datagram.
pub const REQUEST_LEN: usize = HEADER_LEN + 16 + 32 + 32;
/// Length of a CHALLENGE datagram (smaller than the REQUEST that triggers it).
pub const CHALLENGE_LEN: usize = HEADER_LEN + 16 + COOKIE_LEN;
const COOKIE_LEN: usize = 8 + 16;
const ENVELOPE_LEN: usize = 8 + 1 + AllocatePayload::DOMAIN.len() + 8 + 8 + 32 + 4 + 72 + 64;
/// Length of an ALLOCATE datagram.
pub const ALLOCATE_LEN: usize = HEADER_LEN + ENVELOPE_LEN;
/// Length of an ALLOCATED datagram.
pub const ALLOCATED_LEN: usize = HEADER_LEN + 16 + 32 + 1;
/// Most allocations a relay holds.
pub const MAX_ALLOCATIONS: usize = 1024;
/// Largest DATA payload forwarded.
pub const MAX_PAYLOAD: usize = 1200;
/// How long an allocation lives after its last ALLOCATE or DATA.
pub const ALLOCATION_LIFETIME: Duration = Duration::from_secs(120);
/// How far in the future an ALLOCATE's signed expiry may lie.
pub const MAX_ALLOCATE_VALIDITY: Duration = Duration::from_secs(5 * 60);
/// How long a CHALLENGE's cookie is accepted after the relay issued it.
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(30);

/// Forwarding limits and quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Datagrams per second forwarded per allocation.
    pub packets_per_sec: u32,
    /// Payload bytes per second forwarded per allocation.
    pub bytes_per_sec: u32,
    /// Most allocations one peer id holds (over all sessions and partners).
    pub max_per_peer: usize,
    /// Most allocations held for one source: an IPv4 address, or an IPv6 /64 (one host
    /// may hold a whole /64).
    pub max_per_ip: usize,
    /// REQUEST and ALLOCATE datagrams handled per second per source (as for `max_per_ip`;
    /// bursts of twice as many); the rest are dropped before any cookie or signature is
    /// computed.
    pub handshakes_per_sec_per_ip: u32,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            packets_per_sec: 500,
            bytes_per_sec: 512 * 1024,
            max_per_peer: 8,
            max_per_ip: 32,
            handshakes_per_sec_per_ip: 20,
        }
    }
}

/// Relay counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// CHALLENGEs sent.
    pub challenges: u64,
    /// Allocations granted (refreshes included).
    pub allocations: u64,
    /// REQUESTs and ALLOCATEs refused (malformed, bad cookie or signature, expired, over a
    /// quota or the handshake rate, table full).
    pub refused: u64,
    /// DATA datagrams forwarded.
    pub forwarded: u64,
    /// DATA dropped: unknown sender, unpaired, over the rate limit, or too large.
    pub dropped: u64,
}

/// The relay's return-routability cookie, from a CHALLENGE: echo it in the ALLOCATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cookie {
    issued_unix_ms: [u8; 8],
    mac: [u8; 16],
}

/// What an ALLOCATE signs: the session, the partner, and the relay's cookie. The
/// allocating peer is the envelope's signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatePayload {
    /// Session id.
    pub session: [u8; 16],
    /// The partner's peer id: the allocation pairs only with the partner's naming us.
    pub partner: [u8; 32],
    /// The cookie's issue time, Unix milliseconds, big-endian.
    pub cookie_issued_unix_ms: [u8; 8],
    /// The cookie's MAC.
    pub cookie_mac: [u8; 16],
}

impl SignedPayload for AllocatePayload {
    const DOMAIN: &'static str = "p2pf/nat/relay-allocate/v2";
    const MAX_LIFETIME: Duration = MAX_ALLOCATE_VALIDITY;
}

fn header(kind: u8, capacity: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(capacity);
    b.extend_from_slice(&RELAY_MAGIC);
    b.push(RELAY_VERSION);
    b.push(kind);
    b
}

fn framed(bytes: &[u8], kind: u8) -> bool {
    bytes.len() >= HEADER_LEN
        && bytes[..4] == RELAY_MAGIC
        && bytes[4] == RELAY_VERSION
        && bytes[5] == kind
}

/// Encodes a REQUEST: magic, version 2, kind 1, session (16), our peer id (32), the
/// partner's (32). Unsigned: it only asks for a CHALLENGE.
///
/// ```
/// use p2p_foundation_identity::Keypair;
/// use p2p_foundation_nat::relay::{REQUEST_LEN, encode_request};
///
/// let (me, partner) = (Keypair::generate().peer_id(), Keypair::generate().peer_id());
/// assert_eq!(encode_request(&[1; 16], &me, &partner).len(), REQUEST_LEN);
/// ```
pub fn encode_request(session: &[u8; 16], peer: &PeerId, partner: &PeerId) -> Vec<u8> {
    let mut b = header(KIND_REQUEST, REQUEST_LEN);
    b.extend_from_slice(session);
    b.extend_from_slice(peer.as_bytes());
    b.extend_from_slice(partner.as_bytes());
    b
}

/// Encodes a signed ALLOCATE answering `cookie`: magic, version 2, kind 3, then a
/// [`Signed`]`<`[`AllocatePayload`]`>` envelope by `keypair` with sequence number `seq`,
/// valid until `expires_at` (at most [`MAX_ALLOCATE_VALIDITY`] ahead).
pub fn encode_allocate(
    keypair: &Keypair,
    session: &[u8; 16],
    partner: &PeerId,
    cookie: &Cookie,
    seq: u64,
    expires_at: SystemTime,
) -> Result<Vec<u8>, IdentityError> {
    let payload = AllocatePayload {
        session: *session,
        partner: *partner.as_bytes(),
        cookie_issued_unix_ms: cookie.issued_unix_ms,
        cookie_mac: cookie.mac,
    };
    let envelope = Signed::sign(keypair, payload, seq, expires_at)?;
    let mut b = header(KIND_ALLOCATE, HEADER_LEN + envelope.as_bytes().len());
    b.extend_from_slice(envelope.as_bytes());
    Ok(b)
}

/// Encodes a DATA datagram carrying `payload`: magic, version 2, kind 5, payload.
pub fn encode_data(payload: &[u8]) -> Vec<u8> {
    let mut b = header(KIND_DATA, HEADER_LEN + payload.len());
    b.extend_from_slice(payload);
    b
}

/// What a relay datagram received by a peer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayReply<'a> {
    /// Answer this with an ALLOCATE ([`encode_allocate`]) carrying the cookie.
    Challenge {
        /// Session id.
        session: [u8; 16],
        /// The relay's cookie.
        cookie: Cookie,
    },
    /// The allocation for `session` naming `partner` is in place; `paired` when the partner
    /// holds one naming us.
    Allocated {
        /// Session id.
        session: [u8; 16],
        /// The partner named.
        partner: PeerId,
        /// Whether DATA will now be forwarded.
        paired: bool,
    },
    /// A payload from the partner.
    Data(&'a [u8]),
}

/// Decodes a datagram a relay sent to a peer.
///
/// ```
/// use p2p_foundation_nat::relay::{RelayReply, decode_reply, encode_data};
///
/// assert_eq!(decode_reply(&encode_data(b"hi")), Some(RelayReply::Data(b"hi")));
/// assert_eq!(decode_reply(b"P2PL"), None);
/// ```
pub fn decode_reply(bytes: &[u8]) -> Option<RelayReply<'_>> {
    if bytes.len() < HEADER_LEN || bytes[..4] != RELAY_MAGIC || bytes[4] != RELAY_VERSION {
        return None;
    }
    let session = |b: &[u8]| {
        let mut s = [0u8; 16];
        s.copy_from_slice(&b[HEADER_LEN..HEADER_LEN + 16]);
        s
    };
    match bytes[5] {
        KIND_CHALLENGE if bytes.len() == CHALLENGE_LEN => {
            let mut issued_unix_ms = [0u8; 8];
            issued_unix_ms.copy_from_slice(&bytes[22..30]);
            let mut mac = [0u8; 16];
            mac.copy_from_slice(&bytes[30..46]);
            Some(RelayReply::Challenge {
                session: session(bytes),
                cookie: Cookie {
                    issued_unix_ms,
                    mac,
                },
            })
        }
        KIND_ALLOCATED if bytes.len() == ALLOCATED_LEN && bytes[54] <= 1 => {
            Some(RelayReply::Allocated {
                session: session(bytes),
                partner: PeerId::from_slice(&bytes[22..54]).ok()?,
                paired: bytes[54] == 1,
            })
        }
        KIND_DATA => Some(RelayReply::Data(&bytes[HEADER_LEN..])),
        _ => None,
    }
}

fn allocated(session: &[u8; 16], partner: &PeerId, paired: bool) -> Vec<u8> {
    let mut b = header(KIND_ALLOCATED, ALLOCATED_LEN);
    b.extend_from_slice(session);
    b.extend_from_slice(partner.as_bytes());
    b.push(u8::from(paired));
    b
}

/// HMAC-SHA-256 (RFC 2104) of `parts` under `key`, truncated to 16 bytes.
fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 16] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(ipad);
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(opad);
    outer.update(inner.finalize());
    let mut out = [0u8; 16];
    out.copy_from_slice(&outer.finalize()[..16]);
    out
}

/// Compares without an early exit, so the time taken says nothing about where a guessed
/// MAC first differs.
fn same(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn addr_bytes(addr: SocketAddr) -> [u8; 18] {
    let mut b = [0u8; 18];
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    b[..16].copy_from_slice(&ip.octets());
    b[16..].copy_from_slice(&addr.port().to_be_bytes());
    b
}

type AllocKey = ([u8; 16], PeerId, PeerId);

#[derive(Debug, Clone, Copy)]
struct Allocation {
    /// The source as the socket reported it: where DATA for this peer is sent.
    addr: SocketAddr,
    /// The quota key ([`ratelimit::source`](crate::ratelimit::source) of `addr`).
    ip: IpAddr,
    expires: Instant,
    window_start: Instant,
    packets: u32,
    bytes: u32,
}

/// Relay server state (sans-IO).
///
/// Two peers allocate (REQUEST, CHALLENGE, signed ALLOCATE), then DATA flows between them:
///
/// ```
/// use std::net::SocketAddr;
/// use std::time::{Duration, Instant, SystemTime};
/// use p2p_foundation_identity::Keypair;
/// use p2p_foundation_nat::relay::{
///     RelayLimits, RelayReply, RelayServer, decode_reply, encode_allocate, encode_data,
///     encode_request,
/// };
///
/// let mut relay = RelayServer::new(RelayLimits::default(), [7; 32]);
/// let (now, wall) = (Instant::now(), SystemTime::now());
/// let (ka, kb) = (Keypair::generate(), Keypair::generate());
/// let a: SocketAddr = "203.0.113.1:1000".parse()?;
/// let b: SocketAddr = "203.0.113.2:2000".parse()?;
/// let session = [1; 16];
/// for (k, from, partner) in [(&ka, a, kb.peer_id()), (&kb, b, ka.peer_id())] {
///     let request = encode_request(&session, &k.peer_id(), &partner);
///     let out = relay.handle(now, wall, from, &request);
///     let Some(RelayReply::Challenge { cookie, .. }) = decode_reply(&out[0].1) else {
///         panic!("the relay challenges the source address first");
///     };
///     let expires = wall + Duration::from_secs(60);
///     let allocate = encode_allocate(k, &session, &partner, &cookie, 1, expires)?;
///     relay.handle(now, wall, from, &allocate);
/// }
/// let out = relay.handle(now, wall, a, &encode_data(b"hi"));
/// assert_eq!(out, vec![(b, encode_data(b"hi"))]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RelayServer {
    limits: RelayLimits,
    secret: [u8; 32],
    allocations: HashMap<AllocKey, Allocation>,
    by_addr: HashMap<SocketAddr, AllocKey>,
    per_peer: Counts<PeerId>,
    per_ip: Counts<IpAddr>,
    handshakes: KeyedBuckets<IpAddr>,
    stats: RelayStats,
}

impl RelayServer {
    /// An empty relay with these limits; `secret` keys the cookies (32 random bytes, kept
    /// secret: whoever knows it can allocate for spoofed addresses).
    ///
    /// ```
    /// use p2p_foundation_nat::relay::{RelayLimits, RelayServer};
    ///
    /// let mut secret = [0u8; 32];
    /// getrandom::fill(&mut secret).expect("OS randomness");
    /// let relay = RelayServer::new(RelayLimits::default(), secret);
    /// assert_eq!(relay.allocations(), 0);
    /// ```
    pub fn new(limits: RelayLimits, secret: [u8; 32]) -> Self {
        Self {
            limits,
            secret,
            allocations: HashMap::new(),
            by_addr: HashMap::new(),
            per_peer: Counts::default(),
            per_ip: Counts::default(),
            handshakes: KeyedBuckets::new(
                limits.handshakes_per_sec_per_ip,
                limits.handshakes_per_sec_per_ip.saturating_mul(2),
                MAX_ALLOCATIONS * 4,
            ),
            stats: RelayStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Live allocations (expired ones are removed as datagrams arrive).
    pub fn allocations(&self) -> usize {
        self.allocations.len()
    }

    fn cookie_mac(
        &self,
        from: SocketAddr,
        session: &[u8; 16],
        peer: &PeerId,
        partner: &PeerId,
        issued: &[u8; 8],
    ) -> [u8; 16] {
        let addr = addr_bytes(crate::canonical_addr(from));
        mac(
            &self.secret,
            &[
                b"p2pf/nat/relay-cookie/v2\0",
                &addr,
                session,
                peer.as_bytes(),
                partner.as_bytes(),
                issued,
            ],
        )
    }

    fn refuse(&mut self, from: SocketAddr, why: &'static str) -> Vec<(SocketAddr, Vec<u8>)> {
        self.stats.refused += 1;
        tracing::debug!(%from, why, "relay: refused");
        Vec::new()
    }

    /// Handles one datagram from `from`; `wall` is the wall clock (for cookie and signature
    /// expiry). Returns datagrams to send.
    pub fn handle(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        if bytes.len() < HEADER_LEN || bytes[..4] != RELAY_MAGIC || bytes[4] != RELAY_VERSION {
            return Vec::new();
        }
        match bytes[5] {
            KIND_REQUEST | KIND_ALLOCATE => {
                if !self.handshakes.allow(crate::ratelimit::source(from), now) {
                    return self.refuse(from, "source over its handshake rate");
                }
                if framed(bytes, KIND_REQUEST) {
                    self.challenge(wall, from, bytes)
                } else {
                    self.allocate(now, wall, from, bytes)
                }
            }
            KIND_DATA => self.data(now, from, &bytes[HEADER_LEN..]),
            _ => Vec::new(),
        }
    }

    fn challenge(
        &mut self,
        wall: SystemTime,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        if bytes.len() != REQUEST_LEN {
            return self.refuse(from, "REQUEST of the wrong length");
        }
        let mut session = [0u8; 16];
        session.copy_from_slice(&bytes[6..22]);
        let (Ok(peer), Ok(partner)) = (
            PeerId::from_slice(&bytes[22..54]),
            PeerId::from_slice(&bytes[54..86]),
        ) else {
            return self.refuse(from, "REQUEST names no peer id");
        };
        let issued = unix_ms(wall).to_be_bytes();
        let mac = self.cookie_mac(from, &session, &peer, &partner, &issued);
        let mut b = header(KIND_CHALLENGE, CHALLENGE_LEN);
        b.extend_from_slice(&session);
        b.extend_from_slice(&issued);
        b.extend_from_slice(&mac);
        self.stats.challenges += 1;
        vec![(from, b)]
    }

    fn expire(&mut self, now: Instant) {
        let dead: Vec<AllocKey> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in dead {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &AllocKey) {
        if let Some(a) = self.allocations.remove(key) {
            if self.by_addr.get(&a.addr) == Some(key) {
                self.by_addr.remove(&a.addr);
            }
            self.per_peer.release(key.1);
            self.per_ip.release(a.ip);
        }
    }

    fn allocate(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        if !framed(bytes, KIND_ALLOCATE) || bytes.len() != ALLOCATE_LEN {
            return self.refuse(from, "ALLOCATE of the wrong length");
        }
        let Ok(verified) =
            Signed::<AllocatePayload>::decode_with_limit(&bytes[HEADER_LEN..], ENVELOPE_LEN)
                .and_then(|e| e.verify(wall))
        else {
            return self.refuse(from, "malformed, forged or expired ALLOCATE");
        };
        let peer = verified.signer();
        let p = *verified.payload();
        let Ok(partner) = PeerId::from_bytes(p.partner) else {
            return self.refuse(from, "partner is not a peer id");
        };
        let issued_ms = u64::from_be_bytes(p.cookie_issued_unix_ms);
        let now_ms = unix_ms(wall);
        let lifetime_ms = u64::try_from(COOKIE_LIFETIME.as_millis()).unwrap_or(u64::MAX);
        let expected = self.cookie_mac(from, &p.session, &peer, &partner, &p.cookie_issued_unix_ms);
        if issued_ms > now_ms || now_ms - issued_ms > lifetime_ms || !same(&expected, &p.cookie_mac)
        {
            return self.refuse(from, "cookie not for this address, or stale");
        }
        if partner == peer {
            return self.refuse(from, "a peer cannot partner itself");
        }
        let session = p.session;
        let key = (session, peer, partner);
        let ip = crate::ratelimit::source(from);
        self.expire(now);
        // The address now belongs to this allocation: whatever it held before is dropped.
        if let Some(previous) = self.by_addr.get(&from).copied() {
            if previous != key {
                self.remove(&previous);
            }
        }
        let fresh = Allocation {
            addr: from,
            ip,
            expires: now + ALLOCATION_LIFETIME,
            window_start: now,
            packets: 0,
            bytes: 0,
        };
        let allocation = match self.allocations.get(&key).copied() {
            Some(existing) => {
                if existing.ip != ip && self.per_ip.get(ip) >= self.limits.max_per_ip {
                    return self.refuse(from, "source over its quota");
                }
                if existing.addr != from {
                    // The peer moved (proven by the handshake from its new address).
                    self.by_addr.remove(&existing.addr);
                    self.per_ip.release(existing.ip);
                    self.per_ip.add(ip);
                }
                // A refresh keeps the rate window: re-allocating does not reset the limit.
                Allocation {
                    window_start: existing.window_start,
                    packets: existing.packets,
                    bytes: existing.bytes,
                    ..fresh
                }
            }
            None => {
                if self.allocations.len() >= MAX_ALLOCATIONS {
                    return self.refuse(from, "table full");
                }
                if self.per_peer.get(peer) >= self.limits.max_per_peer {
                    return self.refuse(from, "peer over its quota");
                }
                if self.per_ip.get(ip) >= self.limits.max_per_ip {
                    return self.refuse(from, "source over its quota");
                }
                self.per_peer.add(peer);
                self.per_ip.add(ip);
                fresh
            }
        };
        self.allocations.insert(key, allocation);
        self.by_addr.insert(from, key);
        self.stats.allocations += 1;
        tracing::debug!(%from, peer = %peer.short(), partner = %partner.short(), "relay: allocated");
        match self.allocations.get(&(session, partner, peer)) {
            Some(other) => vec![
                (from, allocated(&session, &partner, true)),
                (other.addr, allocated(&session, &peer, true)),
            ],
            None => vec![(from, allocated(&session, &partner, false))],
        }
    }

    fn data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        payload: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let limits = self.limits;
        let Some(key) = self.by_addr.get(&from).copied() else {
            self.stats.dropped += 1;
            return Vec::new();
        };
        if self.allocations.get(&key).is_none_or(|a| a.expires <= now) {
            self.remove(&key);
            self.stats.dropped += 1;
            return Vec::new();
        }
        let (session, peer, partner) = key;
        let to = self
            .allocations
            .get(&(session, partner, peer))
            .filter(|o| o.expires > now)
            .map(|o| o.addr);
        let Some(al) = self.allocations.get_mut(&key) else {
            return Vec::new();
        };
        // DATA from the allocation's address keeps it alive.
        al.expires = now + ALLOCATION_LIFETIME;
        let Some(to) = to else {
            self.stats.dropped += 1;
            return Vec::new();
        };
        if payload.len() > MAX_PAYLOAD {
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

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
