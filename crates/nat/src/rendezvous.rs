//! A minimal rendezvous: two peers register under a shared session id from the socket they
//! will punch with; the server tells each the other's peer id and observed (mapped) address.
//!
//! The rendezvous is not trusted: it only supplies addresses. Who the peer is, and that the
//! path reaches it, is established by the signed probes of [`crate::punch`](mod@crate::punch).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use p2p_foundation_identity::PeerId;

/// First four bytes of every rendezvous datagram.
pub const RENDEZVOUS_MAGIC: [u8; 4] = *b"P2PR";
const KIND_REGISTER: u8 = 1;
const KIND_PEER: u8 = 2;
/// Length of a REGISTER datagram.
pub const REGISTER_LEN: usize = 53;
/// Most sessions the server holds at once; registrations for new sessions beyond it are dropped.
pub const MAX_SESSIONS: usize = 4096;
/// How long a registration is kept.
pub const REGISTRATION_TTL: Duration = Duration::from_secs(60);

/// Encodes a REGISTER datagram: magic, kind 1, session id (16), peer id (32).
pub fn encode_register(session: &[u8; 16], peer: &PeerId) -> Vec<u8> {
    let mut b = Vec::with_capacity(REGISTER_LEN);
    b.extend_from_slice(&RENDEZVOUS_MAGIC);
    b.push(KIND_REGISTER);
    b.extend_from_slice(session);
    b.extend_from_slice(peer.as_bytes());
    b
}

/// Encodes a PEER datagram: magic, kind 2, session id (16), peer id (32), family (4 or 6),
/// port (2), address (4 or 16).
pub fn encode_peer(session: &[u8; 16], peer: &PeerId, addr: SocketAddr) -> Vec<u8> {
    let mut b = Vec::with_capacity(73);
    b.extend_from_slice(&RENDEZVOUS_MAGIC);
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

/// Decodes a PEER datagram into (session, peer id, address).
pub fn decode_peer(bytes: &[u8]) -> Option<([u8; 16], PeerId, SocketAddr)> {
    if bytes.len() < 56 || bytes[..4] != RENDEZVOUS_MAGIC || bytes[4] != KIND_PEER {
        return None;
    }
    let mut session = [0u8; 16];
    session.copy_from_slice(&bytes[5..21]);
    let peer = PeerId::from_slice(&bytes[21..53]).ok()?;
    let port = u16::from_be_bytes([bytes[54], bytes[55]]);
    let ip = match (bytes[53], bytes.len()) {
        (4, 60) => IpAddr::V4(Ipv4Addr::new(bytes[56], bytes[57], bytes[58], bytes[59])),
        (6, 72) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&bytes[56..72]);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some((session, peer, SocketAddr::new(ip, port)))
}

fn decode_register(bytes: &[u8]) -> Option<([u8; 16], PeerId)> {
    if bytes.len() != REGISTER_LEN || bytes[..4] != RENDEZVOUS_MAGIC || bytes[4] != KIND_REGISTER {
        return None;
    }
    let mut session = [0u8; 16];
    session.copy_from_slice(&bytes[5..21]);
    Some((session, PeerId::from_slice(&bytes[21..53]).ok()?))
}

#[derive(Debug, Clone, Copy)]
struct Registration {
    peer: PeerId,
    addr: SocketAddr,
    at: Instant,
}

/// Rendezvous server state (sans-IO).
#[derive(Debug, Default)]
pub struct RendezvousServer {
    sessions: HashMap<[u8; 16], [Option<Registration>; 2]>,
}

impl RendezvousServer {
    /// An empty server.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sessions currently held.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Handles one datagram; returns the datagrams to send. A registration whose session
    /// already holds the other peer makes the server introduce both to each other.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let Some((session, peer)) = decode_register(bytes) else {
            return Vec::new();
        };
        self.sessions.retain(|_, regs| {
            regs.iter()
                .flatten()
                .any(|r| now.duration_since(r.at) < REGISTRATION_TTL)
        });
        if !self.sessions.contains_key(&session) && self.sessions.len() >= MAX_SESSIONS {
            tracing::debug!(%from, "rendezvous full: registration dropped");
            return Vec::new();
        }
        let regs = self.sessions.entry(session).or_insert([None, None]);
        let me = Registration {
            peer,
            addr: from,
            at: now,
        };
        let slot = if regs[0].is_none_or(|r| r.peer == peer) {
            0
        } else if regs[1].is_none_or(|r| r.peer == peer) {
            1
        } else {
            // A third peer in a two-party session: ignored.
            return Vec::new();
        };
        regs[slot] = Some(me);
        match regs[1 - slot] {
            Some(other) => vec![
                (from, encode_peer(&session, &other.peer, other.addr)),
                (other.addr, encode_peer(&session, &peer, from)),
            ],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_identity::Keypair;

    #[test]
    fn introduces_two_registrants() {
        let a = Keypair::from_secret_bytes([1; 32]).peer_id();
        let b = Keypair::from_secret_bytes([2; 32]).peer_id();
        let c = Keypair::from_secret_bytes([3; 32]).peer_id();
        let (aa, ba): (SocketAddr, SocketAddr) = (
            "203.0.113.1:4000".parse().expect("addr"),
            "[2001:db8::2]:5000".parse().expect("addr"),
        );
        let s = [7; 16];
        let mut srv = RendezvousServer::new();
        let now = Instant::now();
        assert!(srv.handle(now, aa, &encode_register(&s, &a)).is_empty());
        let out = srv.handle(now, ba, &encode_register(&s, &b));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, ba);
        assert_eq!(decode_peer(&out[0].1), Some((s, a, aa)));
        assert_eq!(out[1].0, aa);
        assert_eq!(decode_peer(&out[1].1), Some((s, b, ba)));
        assert!(srv.handle(now, aa, &encode_register(&s, &c)).is_empty());
        assert!(srv.handle(now, aa, b"garbage").is_empty());
        // Expired registrations are forgotten.
        let later = now + REGISTRATION_TTL + Duration::from_secs(1);
        assert!(
            srv.handle(later, aa, &encode_register(&[8; 16], &a))
                .is_empty()
        );
        assert_eq!(srv.sessions(), 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            let mut srv = RendezvousServer::new();
            let from: SocketAddr = "203.0.113.1:4000".parse().expect("addr");
            let _ = srv.handle(Instant::now(), from, &bytes);
            let _ = decode_peer(&bytes);
        }
    }
}
