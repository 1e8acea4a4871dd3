//! A minimal rendezvous: two peers register under a shared session id from the socket they
//! will punch with, each naming the other; the server tells each the other's peer id and
//! observed (mapped) address.
//!
//! Registrations are signed by the registering peer (an identity [`Signed`] envelope with
//! its own domain, [`RegisterPayload::DOMAIN`], checked with its expiry), so a registration
//! for a peer id can only come from the holder of its key: nobody who merely knows the
//! session id can overwrite a peer's slot. A captured registration replayed from another
//! address does not move the slot either (it needs a higher sequence number, which only a
//! new signature gives). Peers are introduced only when both name each other, so a third
//! party registering under the same session id pairs with nobody.
//!
//! The rendezvous is still not trusted with more than addresses: who the peer is, and that
//! the path reaches it, is established by the signed probes of [`crate::punch`](mod@crate::punch).
//! Layout: `docs/protocols/nat.md`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use p2p_foundation_identity::{IdentityError, Keypair, PeerId, Signed, SignedPayload};
use serde::{Deserialize, Serialize};

use crate::ratelimit::{Counts, KeyedBuckets};

/// First four bytes of every rendezvous datagram.
pub const RENDEZVOUS_MAGIC: [u8; 4] = *b"P2PR";
/// Protocol version, the byte after the magic (version 1 had no version byte).
pub const RENDEZVOUS_VERSION: u8 = 2;
const KIND_REGISTER: u8 = 1;
const KIND_PEER: u8 = 2;
/// Length of the signed envelope inside a REGISTER.
const ENVELOPE_LEN: usize = 8 + 1 + RegisterPayload::DOMAIN.len() + 8 + 8 + 32 + 4 + 48 + 64;
/// Length of a REGISTER datagram.
pub const REGISTER_LEN: usize = 6 + ENVELOPE_LEN;
/// Most registrations the server holds at once; registrations beyond it are dropped.
pub const MAX_REGISTRATIONS: usize = 8192;
/// Most registrations held for one source: an IPv4 address, or an IPv6 /64 (one host may
/// hold a whole /64).
pub const MAX_REGISTRATIONS_PER_IP: usize = 64;
/// REGISTER datagrams verified per second per source (as for [`MAX_REGISTRATIONS_PER_IP`];
/// bursts of twice as many); the rest are dropped before their signature is checked.
pub const REGISTERS_PER_SEC_PER_IP: u32 = 20;
/// How long a registration is kept after its last refresh.
pub const REGISTRATION_TTL: Duration = Duration::from_secs(60);
/// How far in the future a registration's signed expiry may lie.
pub const MAX_REGISTRATION_VALIDITY: Duration = Duration::from_secs(5 * 60);

/// What a REGISTER signs: the session and the peer the registrant wants to meet. The
/// registrant is the envelope's signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterPayload {
    /// Session id, shared by the two peers beforehand.
    pub session: [u8; 16],
    /// The peer id of the other peer (its Ed25519 public key).
    pub remote: [u8; 32],
}

impl SignedPayload for RegisterPayload {
    const DOMAIN: &'static str = "p2pf/nat/rendezvous-register/v2";
    const MAX_LIFETIME: Duration = MAX_REGISTRATION_VALIDITY;
}

/// Encodes a signed REGISTER: magic, version 2, kind 1, then a [`Signed`]`<`[`RegisterPayload`]`>`
/// envelope by `keypair`, sequence number `seq` (each new registration of a peer must use a
/// higher one; a clock in milliseconds does), valid until `expires_at`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use p2p_foundation_identity::Keypair;
/// use p2p_foundation_nat::rendezvous::{REGISTER_LEN, encode_register};
///
/// let me = Keypair::generate();
/// let them = Keypair::generate().peer_id();
/// let expires = SystemTime::now() + Duration::from_secs(60);
/// let datagram = encode_register(&me, &[7; 16], &them, 1, expires)?;
/// assert_eq!(datagram.len(), REGISTER_LEN);
/// # Ok::<(), p2p_foundation_identity::IdentityError>(())
/// ```
pub fn encode_register(
    keypair: &Keypair,
    session: &[u8; 16],
    remote: &PeerId,
    seq: u64,
    expires_at: SystemTime,
) -> Result<Vec<u8>, IdentityError> {
    let payload = RegisterPayload {
        session: *session,
        remote: *remote.as_bytes(),
    };
    let envelope = Signed::sign(keypair, payload, seq, expires_at)?;
    let mut b = Vec::with_capacity(6 + envelope.as_bytes().len());
    b.extend_from_slice(&RENDEZVOUS_MAGIC);
    b.push(RENDEZVOUS_VERSION);
    b.push(KIND_REGISTER);
    b.extend_from_slice(envelope.as_bytes());
    Ok(b)
}

/// Encodes a PEER datagram: magic, version 2, kind 2, session id (16), peer id (32), family
/// (4 or 6), port (2), address (4 or 16). A v4-mapped address is written as IPv4.
pub fn encode_peer(session: &[u8; 16], peer: &PeerId, addr: SocketAddr) -> Vec<u8> {
    let addr = crate::canonical_addr(addr);
    let mut b = Vec::with_capacity(74);
    b.extend_from_slice(&RENDEZVOUS_MAGIC);
    b.push(RENDEZVOUS_VERSION);
    b.push(KIND_PEER);
    b.extend_from_slice(session);
    b.extend_from_slice(peer.as_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            b.push(4);
            b.extend_from_slice(&addr.port().to_be_bytes());
            b.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            b.push(6);
            b.extend_from_slice(&addr.port().to_be_bytes());
            b.extend_from_slice(&ip.octets());
        }
    }
    b
}

/// Decodes a PEER datagram into (session, peer id, address); a v4-mapped IPv6 address is
/// returned as plain IPv4.
///
/// ```
/// use p2p_foundation_identity::Keypair;
/// use p2p_foundation_nat::rendezvous::{decode_peer, encode_peer};
///
/// let peer = Keypair::generate().peer_id();
/// let bytes = encode_peer(&[1; 16], &peer, "[::ffff:192.0.2.7]:9000".parse()?);
/// assert_eq!(decode_peer(&bytes), Some(([1; 16], peer, "192.0.2.7:9000".parse()?)));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn decode_peer(bytes: &[u8]) -> Option<([u8; 16], PeerId, SocketAddr)> {
    if bytes.len() < 57
        || bytes[..4] != RENDEZVOUS_MAGIC
        || bytes[4] != RENDEZVOUS_VERSION
        || bytes[5] != KIND_PEER
    {
        return None;
    }
    let mut session = [0u8; 16];
    session.copy_from_slice(&bytes[6..22]);
    let peer = PeerId::from_slice(&bytes[22..54]).ok()?;
    let port = u16::from_be_bytes([bytes[55], bytes[56]]);
    let ip = match (bytes[54], bytes.len()) {
        (4, 61) => IpAddr::V4(Ipv4Addr::new(bytes[57], bytes[58], bytes[59], bytes[60])),
        (6, 73) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&bytes[57..73]);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some((
        session,
        peer,
        crate::canonical_addr(SocketAddr::new(ip, port)),
    ))
}

/// Rendezvous counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RendezvousStats {
    /// Registrations accepted (refreshes included).
    pub registered: u64,
    /// Pairs introduced.
    pub introduced: u64,
    /// REGISTERs dropped: malformed, bad signature, expired, replayed from another address,
    /// over a quota or the rate limit, or the table full.
    pub refused: u64,
}

#[derive(Debug, Clone, Copy)]
struct Registration {
    remote: PeerId,
    /// The source exactly as the socket reported it: where introductions are sent.
    addr: SocketAddr,
    /// Its canonical form: the address introduced to the other peer, and the quota key.
    canonical: SocketAddr,
    seq: u64,
    at: Instant,
}

/// Rendezvous server state (sans-IO).
///
/// ```
/// use std::net::SocketAddr;
/// use std::time::{Duration, Instant, SystemTime};
/// use p2p_foundation_identity::Keypair;
/// use p2p_foundation_nat::rendezvous::{RendezvousServer, decode_peer, encode_register};
///
/// let mut server = RendezvousServer::new();
/// let (now, wall) = (Instant::now(), SystemTime::now());
/// let (ka, kb) = (Keypair::generate(), Keypair::generate());
/// let a: SocketAddr = "203.0.113.1:4000".parse()?;
/// let b: SocketAddr = "203.0.113.2:5000".parse()?;
/// let expires = wall + Duration::from_secs(60);
/// let register_a = encode_register(&ka, &[7; 16], &kb.peer_id(), 1, expires)?;
/// assert!(server.handle(now, wall, a, &register_a).is_empty());
/// let register_b = encode_register(&kb, &[7; 16], &ka.peer_id(), 1, expires)?;
/// let out = server.handle(now, wall, b, &register_b);
/// // Each learns the other's id and address.
/// assert_eq!(out[0].0, b);
/// assert_eq!(decode_peer(&out[0].1), Some(([7; 16], ka.peer_id(), a)));
/// assert_eq!(decode_peer(&out[1].1), Some(([7; 16], kb.peer_id(), b)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RendezvousServer {
    registrations: HashMap<([u8; 16], PeerId), Registration>,
    per_ip: Counts<IpAddr>,
    verify_budget: KeyedBuckets<IpAddr>,
    stats: RendezvousStats,
}

impl Default for RendezvousServer {
    fn default() -> Self {
        Self::new()
    }
}

impl RendezvousServer {
    /// An empty server.
    pub fn new() -> Self {
        Self {
            registrations: HashMap::new(),
            per_ip: Counts::default(),
            verify_budget: KeyedBuckets::new(
                REGISTERS_PER_SEC_PER_IP,
                2 * REGISTERS_PER_SEC_PER_IP,
                MAX_REGISTRATIONS,
            ),
            stats: RendezvousStats::default(),
        }
    }

    /// Registrations currently held.
    pub fn registrations(&self) -> usize {
        self.registrations.len()
    }

    /// Counters.
    pub fn stats(&self) -> RendezvousStats {
        self.stats
    }

    fn refuse(&mut self, from: SocketAddr, why: &'static str) -> Vec<(SocketAddr, Vec<u8>)> {
        self.stats.refused += 1;
        tracing::debug!(%from, why, "rendezvous: REGISTER refused");
        Vec::new()
    }

    fn expire(&mut self, now: Instant) {
        let per_ip = &mut self.per_ip;
        self.registrations.retain(|_, r| {
            let live = now.duration_since(r.at) < REGISTRATION_TTL;
            if !live {
                per_ip.release(crate::ratelimit::source(r.canonical));
            }
            live
        });
    }

    /// Handles one datagram from `from` at `now` (`wall` is the wall clock, for the
    /// signature's expiry); returns the datagrams to send. A registration whose named
    /// remote has registered naming it back makes the server introduce both to each other.
    pub fn handle(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        if bytes.len() < 6
            || bytes[..4] != RENDEZVOUS_MAGIC
            || bytes[4] != RENDEZVOUS_VERSION
            || bytes[5] != KIND_REGISTER
        {
            return Vec::new();
        }
        if bytes.len() != REGISTER_LEN {
            return self.refuse(from, "wrong length");
        }
        let canonical = crate::canonical_addr(from);
        let source = crate::ratelimit::source(from);
        if !self.verify_budget.allow(source, now) {
            return self.refuse(from, "source over its rate");
        }
        let verified = match Signed::<RegisterPayload>::decode_with_limit(&bytes[6..], ENVELOPE_LEN)
            .and_then(|s| s.verify(wall))
        {
            Ok(v) => v,
            Err(_) => return self.refuse(from, "malformed, forged or expired"),
        };
        let peer = verified.signer();
        let seq = verified.envelope().seq();
        let payload = *verified.payload();
        let Ok(remote) = PeerId::from_bytes(payload.remote) else {
            return self.refuse(from, "remote is not a peer id");
        };
        let session = payload.session;
        self.expire(now);
        let key = (session, peer);
        match self.registrations.get_mut(&key) {
            Some(old) if seq < old.seq || (seq == old.seq && old.addr != from) => {
                // A replay (possibly from somewhere else): the slot stays where it is.
                return self.refuse(from, "stale or replayed");
            }
            Some(old) => {
                let old_source = crate::ratelimit::source(old.canonical);
                if old_source != source {
                    if self.per_ip.get(source) >= MAX_REGISTRATIONS_PER_IP {
                        return self.refuse(from, "source over its quota");
                    }
                    self.per_ip.release(old_source);
                    self.per_ip.add(source);
                }
                *old = Registration {
                    remote,
                    addr: from,
                    canonical,
                    seq,
                    at: now,
                };
            }
            None => {
                if self.registrations.len() >= MAX_REGISTRATIONS {
                    return self.refuse(from, "table full");
                }
                if self.per_ip.get(source) >= MAX_REGISTRATIONS_PER_IP {
                    return self.refuse(from, "source over its quota");
                }
                self.per_ip.add(source);
                self.registrations.insert(
                    key,
                    Registration {
                        remote,
                        addr: from,
                        canonical,
                        seq,
                        at: now,
                    },
                );
            }
        }
        self.stats.registered += 1;
        match self.registrations.get(&(session, remote)) {
            Some(other) if other.remote == peer => {
                self.stats.introduced += 1;
                tracing::debug!(me = %peer.short(), other = %remote.short(), "rendezvous: introduced");
                vec![
                    (from, encode_peer(&session, &remote, other.canonical)),
                    (other.addr, encode_peer(&session, &peer, canonical)),
                ]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(k: &Keypair, s: &[u8; 16], remote: &PeerId, seq: u64, wall: SystemTime) -> Vec<u8> {
        encode_register(k, s, remote, seq, wall + Duration::from_secs(60)).expect("signs")
    }

    #[test]
    fn introduces_two_registrants_that_name_each_other() {
        let (ka, kb, kc) = (
            Keypair::from_secret_bytes([1; 32]),
            Keypair::from_secret_bytes([2; 32]),
            Keypair::from_secret_bytes([3; 32]),
        );
        let (a, b) = (ka.peer_id(), kb.peer_id());
        let (aa, ba): (SocketAddr, SocketAddr) = (
            "203.0.113.1:4000".parse().expect("addr"),
            "[2001:db8::2]:5000".parse().expect("addr"),
        );
        let s = [7; 16];
        let wall = SystemTime::now();
        let now = Instant::now();
        let mut srv = RendezvousServer::new();
        assert!(
            srv.handle(now, wall, aa, &register(&ka, &s, &b, 1, wall))
                .is_empty()
        );
        // A third peer in the session that names A is introduced to nobody.
        let ca: SocketAddr = "198.51.100.3:1".parse().expect("addr");
        assert!(
            srv.handle(now, wall, ca, &register(&kc, &s, &a, 1, wall))
                .is_empty()
        );
        let out = srv.handle(now, wall, ba, &register(&kb, &s, &a, 1, wall));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, ba);
        assert_eq!(decode_peer(&out[0].1), Some((s, a, aa)));
        assert_eq!(out[1].0, aa);
        assert_eq!(decode_peer(&out[1].1), Some((s, b, ba)));
        assert!(srv.handle(now, wall, aa, b"garbage").is_empty());
        // The lengths docs/protocols/nat.md gives.
        assert_eq!(REGISTER_LEN, 210);
        assert_eq!(encode_peer(&s, &a, aa).len(), 61);
        assert_eq!(encode_peer(&s, &b, ba).len(), 73);
        // Expired registrations are forgotten.
        let later = now + REGISTRATION_TTL + Duration::from_secs(1);
        assert!(
            srv.handle(later, wall, aa, &register(&ka, &[8; 16], &b, 2, wall))
                .is_empty()
        );
        assert_eq!(srv.registrations(), 1);
    }

    #[test]
    fn a_forged_or_replayed_registration_does_not_replace_the_real_one() {
        let (ka, kb, km) = (
            Keypair::from_secret_bytes([1; 32]),
            Keypair::from_secret_bytes([2; 32]),
            Keypair::from_secret_bytes([9; 32]),
        );
        let (a, b) = (ka.peer_id(), kb.peer_id());
        let aa: SocketAddr = "203.0.113.1:4000".parse().expect("addr");
        let ba: SocketAddr = "203.0.113.2:5000".parse().expect("addr");
        let evil: SocketAddr = "198.51.100.66:6666".parse().expect("addr");
        let s = [7; 16];
        let wall = SystemTime::now();
        let now = Instant::now();
        let mut srv = RendezvousServer::new();
        let real = register(&ka, &s, &b, 10, wall);
        assert!(srv.handle(now, wall, aa, &real).is_empty());

        // Mallory claims A's peer id with her own signature (the signer field swapped in).
        let mut forged = register(&km, &s, &b, 11, wall);
        let signer_at = 6 + 8 + 1 + RegisterPayload::DOMAIN.len() + 16;
        forged[signer_at..signer_at + 32].copy_from_slice(a.as_bytes());
        assert!(srv.handle(now, wall, evil, &forged).is_empty());
        // A bit flipped in A's real registration.
        let mut tampered = real.clone();
        tampered[REGISTER_LEN - 70] ^= 1;
        assert!(srv.handle(now, wall, evil, &tampered).is_empty());
        // A's real registration replayed from Mallory's address.
        assert!(srv.handle(now, wall, evil, &real).is_empty());
        // An expired one.
        let old = encode_register(&ka, &s, &b, 12, wall - Duration::from_secs(1)).expect("signs");
        assert!(srv.handle(now, wall, evil, &old).is_empty());
        assert_eq!(srv.stats().refused, 4);

        // B is introduced to A's real address, and A to B.
        let out = srv.handle(now, wall, ba, &register(&kb, &s, &a, 1, wall));
        assert_eq!(
            out,
            vec![(ba, encode_peer(&s, &a, aa)), (aa, encode_peer(&s, &b, ba)),]
        );
        // A itself may move: a newer registration from a new address.
        let a2: SocketAddr = "203.0.113.1:4001".parse().expect("addr");
        let out = srv.handle(now, wall, a2, &register(&ka, &s, &b, 13, wall));
        assert_eq!(out[1], (ba, encode_peer(&s, &a, a2)));
    }

    #[test]
    fn v4_mapped_sources_are_introduced_as_ipv4() {
        let (ka, kb) = (
            Keypair::from_secret_bytes([1; 32]),
            Keypair::from_secret_bytes([2; 32]),
        );
        let mapped: SocketAddr = "[::ffff:203.0.113.1]:4000".parse().expect("addr");
        let plain: SocketAddr = "203.0.113.1:4000".parse().expect("addr");
        let ba: SocketAddr = "[::ffff:203.0.113.2]:5000".parse().expect("addr");
        let s = [7; 16];
        let wall = SystemTime::now();
        let now = Instant::now();
        let mut srv = RendezvousServer::new();
        srv.handle(
            now,
            wall,
            mapped,
            &register(&ka, &s, &kb.peer_id(), 1, wall),
        );
        let out = srv.handle(now, wall, ba, &register(&kb, &s, &ka.peer_id(), 1, wall));
        // Sent to the socket's own spelling, introducing the plain IPv4 address.
        assert_eq!(out[1].0, mapped);
        assert_eq!(decode_peer(&out[0].1).map(|p| p.2), Some(plain));
        assert_eq!(
            decode_peer(&out[1].1).map(|p| p.2),
            Some("203.0.113.2:5000".parse().expect("addr"))
        );
        assert_eq!(out[0].1[54], 4, "family byte is IPv4");
    }

    #[test]
    fn quotas_bound_one_source() {
        let wall = SystemTime::now();
        let now = Instant::now();
        let mut srv = RendezvousServer::new();
        let from: SocketAddr = "198.51.100.9:1".parse().expect("addr");
        let remote = Keypair::from_secret_bytes([0xEE; 32]).peer_id();
        let mut t = now;
        for i in 0..(MAX_REGISTRATIONS_PER_IP as u8 + 10) {
            let k = Keypair::from_secret_bytes([i; 32]);
            // Spaced out so the verification rate limit is not what stops them.
            t += Duration::from_millis(100);
            srv.handle(t, wall, from, &register(&k, &[i; 16], &remote, 1, wall));
        }
        assert_eq!(srv.registrations(), MAX_REGISTRATIONS_PER_IP);
        // And a burst beyond the verification budget is dropped unverified.
        let k = Keypair::from_secret_bytes([0xAB; 32]);
        let burst = register(&k, &[1; 16], &remote, 1, wall);
        let other: SocketAddr = "198.51.100.10:1".parse().expect("addr");
        for _ in 0..100 {
            srv.handle(t, wall, other, &burst);
        }
        assert_eq!(srv.stats().registered, MAX_REGISTRATIONS_PER_IP as u64 + 40);
    }

    /// Issue 18: every address of one IPv6 /64 is one source for the registration quota
    /// and the verification budget; the next /64 is another.
    #[test]
    fn an_ipv6_64_is_one_source() {
        let wall = SystemTime::now();
        let mut t = Instant::now();
        let mut srv = RendezvousServer::new();
        let in_64 = |prefix: u16, host: u16| {
            SocketAddr::new(
                std::net::IpAddr::from([0x2001, 0xdb8, 0, prefix, 0, 0, 0, host]),
                4000,
            )
        };
        let remote = Keypair::from_secret_bytes([0xEE; 32]).peer_id();
        for i in 0..(MAX_REGISTRATIONS_PER_IP as u16 + 10) {
            let k = Keypair::from_secret_bytes([i as u8; 32]);
            t += Duration::from_millis(100);
            let datagram = register(&k, &[i as u8; 16], &remote, 1, wall);
            srv.handle(t, wall, in_64(1, i), &datagram);
        }
        assert_eq!(srv.registrations(), MAX_REGISTRATIONS_PER_IP);
        let k = Keypair::from_secret_bytes([0xAB; 32]);
        let datagram = register(&k, &[0xAB; 16], &remote, 1, wall);
        srv.handle(t, wall, in_64(2, 1), &datagram);
        assert_eq!(
            srv.registrations(),
            MAX_REGISTRATIONS_PER_IP + 1,
            "the next /64"
        );
        // A burst from many addresses of a third /64 is verified 40 times, not 100.
        let before = srv.stats().registered;
        for i in 0..100u16 {
            let k = Keypair::from_secret_bytes([100 + i as u8; 32]);
            let datagram = register(&k, &[1; 16], &remote, 1, wall);
            srv.handle(t, wall, in_64(3, i), &datagram);
        }
        assert_eq!(srv.stats().registered - before, 40);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut srv = RendezvousServer::new();
            let from: SocketAddr = "203.0.113.1:4000".parse().expect("addr");
            let mut framed = bytes.clone();
            if framed.len() >= 6 {
                framed[..4].copy_from_slice(&RENDEZVOUS_MAGIC);
                framed[4] = RENDEZVOUS_VERSION;
                framed[5] = KIND_REGISTER;
            }
            let _ = srv.handle(Instant::now(), SystemTime::now(), from, &bytes);
            let _ = srv.handle(Instant::now(), SystemTime::now(), from, &framed);
            let _ = decode_peer(&bytes);
            proptest::prop_assert_eq!(srv.registrations(), 0);
        }
    }
}
