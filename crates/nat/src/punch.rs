//! UDP hole punching as a sans-IO state machine.
//!
//! Both peers know each other's [`PeerId`] and a shared session nonce beforehand (from
//! whoever introduced them), and learn each other's mapped address from a rendezvous. Each
//! then sends signed probes to the other's candidate addresses at a bounded rate for a
//! bounded number of rounds, and answers every authentic probe with a signed ack echoing the
//! probe's fresh challenge. A peer succeeds when an authentic ack for one of its own
//! challenges arrives from the very address that challenge was sent to. Probes and acks
//! are Ed25519-signed over the session nonce, so a third party can neither forge one nor
//! divert the punched path to itself. Layout: `docs/protocols/nat.md`.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2p_foundation_identity::{Keypair, PeerId, Signature};
use sha2::{Digest, Sha256};

use crate::NatError;

/// First four bytes of every punch datagram.
pub const PUNCH_MAGIC: [u8; 4] = *b"P2PH";
/// Size of every punch datagram.
pub const PUNCH_LEN: usize = 133;
const KIND_PROBE: u8 = 1;
const KIND_ACK: u8 = 2;
const SIGNING_DOMAIN: &[u8] = b"p2p-foundation-nat/punch/v1\0";
/// Most candidate addresses one punch probes.
pub const MAX_CANDIDATES: usize = 8;
const MAX_QUEUED_ACKS: usize = 64;
const MAX_OUTSTANDING: usize = 512;
/// Most extra sockets one punch sends from ([`Punch::with_extra_sockets`]).
pub const MAX_EXTRA_SOCKETS: usize = 1024;
/// Most distinct ports one spray probes ([`Punch::with_spray`]); each is probed at most twice.
pub const MAX_SPRAY_PORTS: usize = 2048;
/// Lowest port a spray probes: NATs map ordinary sources into 1024..=65535.
const SPRAY_LOWEST_PORT: u16 = 1024;

/// Timing bounds of a punch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PunchConfig {
    /// Time between probe rounds (one probe per candidate per round).
    pub interval: Duration,
    /// Probe rounds before giving up.
    pub max_rounds: u32,
    /// After the last round, how long to wait for a late ack.
    pub final_wait: Duration,
    /// After success, how long to keep answering the peer's probes so it can finish too.
    pub linger: Duration,
}

impl Default for PunchConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(200),
            max_rounds: 25,
            final_wait: Duration::from_secs(1),
            linger: Duration::from_secs(1),
        }
    }
}

/// Counters of a punch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PunchStats {
    /// Probes sent.
    pub probes_sent: u32,
    /// Authentic probes received (each answered with an ack while room allows).
    pub probes_received: u32,
    /// Authentic acks for our own challenges received.
    pub acks_received: u32,
    /// Punch datagrams rejected: bad signature, wrong peer or session, unknown challenge,
    /// or an ack from another address than its probe went to.
    pub rejected: u32,
}

/// A punched path: the working UDP 5-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PunchedPath {
    /// Our socket's local address.
    pub local: SocketAddr,
    /// The extra socket the path runs through, or `None` for the main socket.
    pub via: Option<SocketAddr>,
    /// The peer's address as seen from here (its NAT's public mapping).
    pub remote: SocketAddr,
    /// Counters at the end.
    pub stats: PunchStats,
}

/// What a [`Punch`] wants done next.
#[derive(Debug)]
pub enum PunchPoll {
    /// Send these bytes.
    Transmit {
        /// The extra socket to send from (its local address), or `None` for the main socket.
        via: Option<SocketAddr>,
        /// Destination.
        to: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Nothing to do until this instant or until a datagram arrives.
    WaitUntil(Instant),
    /// Finished: the punched path or [`NatError::PunchFailed`].
    Done(Result<PunchedPath, NatError>),
}

/// A decoded punch datagram (signature not yet checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PunchMsg {
    kind: u8,
    nonce: [u8; 16],
    challenge: [u8; 16],
    sender: [u8; 32],
    signature: [u8; 64],
}

fn signed_part(kind: u8, nonce: &[u8; 16], challenge: &[u8; 16], sender: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + 65);
    m.extend_from_slice(SIGNING_DOMAIN);
    m.push(kind);
    m.extend_from_slice(nonce);
    m.extend_from_slice(challenge);
    m.extend_from_slice(sender);
    m
}

fn encode(keypair: &Keypair, kind: u8, nonce: &[u8; 16], challenge: &[u8; 16]) -> Vec<u8> {
    let sender = *keypair.peer_id().as_bytes();
    let sig = keypair.sign(&signed_part(kind, nonce, challenge, &sender));
    let mut b = Vec::with_capacity(PUNCH_LEN);
    b.extend_from_slice(&PUNCH_MAGIC);
    b.push(kind);
    b.extend_from_slice(nonce);
    b.extend_from_slice(challenge);
    b.extend_from_slice(&sender);
    b.extend_from_slice(sig.as_bytes());
    b
}

fn decode(bytes: &[u8]) -> Option<PunchMsg> {
    if bytes.len() != PUNCH_LEN || bytes[..4] != PUNCH_MAGIC {
        return None;
    }
    let kind = bytes[4];
    if kind != KIND_PROBE && kind != KIND_ACK {
        return None;
    }
    let mut m = PunchMsg {
        kind,
        nonce: [0; 16],
        challenge: [0; 16],
        sender: [0; 32],
        signature: [0; 64],
    };
    m.nonce.copy_from_slice(&bytes[5..21]);
    m.challenge.copy_from_slice(&bytes[21..37]);
    m.sender.copy_from_slice(&bytes[37..69]);
    m.signature.copy_from_slice(&bytes[69..133]);
    Some(m)
}

/// Whether a datagram has the punch layout (for demultiplexing; says nothing of authenticity).
pub fn looks_like_punch(bytes: &[u8]) -> bool {
    decode(bytes).is_some()
}

/// Where and how fast a [`Punch::with_spray`] probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SprayConfig {
    /// The peer's public IP (its endpoint-dependent NAT's address).
    pub ip: std::net::IpAddr,
    /// Distinct ports to probe (at most [`MAX_SPRAY_PORTS`]).
    pub ports: usize,
    /// Ports probed per round.
    pub per_round: usize,
    /// No spray probe before this instant (when the peer's extra sockets will have sent).
    pub start: Instant,
}

/// The spray in progress.
struct Spray {
    ip: std::net::IpAddr,
    per_round: usize,
    start: Instant,
    ports: Vec<u16>,
    /// Index into `ports × 2` (two passes) of the next port to probe.
    next: usize,
    sprayed: HashSet<u16>,
    probe: Vec<u8>,
    challenge: [u8; 16],
}

impl Spray {
    /// This round's destinations (none before `start` or after two passes).
    fn round(&mut self, now: Instant) -> Vec<SocketAddr> {
        if now < self.start {
            return Vec::new();
        }
        let end = (self.next + self.per_round).min(self.ports.len() * 2);
        let out = (self.next..end)
            .map(|i| self.ports[i % self.ports.len()])
            .inspect(|p| {
                self.sprayed.insert(*p);
            })
            .map(|p| SocketAddr::new(self.ip, p))
            .collect();
        self.next = end;
        out
    }

    fn was_sprayed(&self, from: SocketAddr) -> bool {
        from.ip().to_canonical() == self.ip.to_canonical() && self.sprayed.contains(&from.port())
    }
}

/// Who punches to whom, in which session.
#[derive(Clone, Debug)]
pub struct PunchSession {
    /// Our identity (signs our probes and acks).
    pub keypair: Keypair,
    /// The peer's identity (its probes and acks must verify under it).
    pub remote: PeerId,
    /// The session nonce both peers share (from whoever introduced them).
    pub nonce: [u8; 16],
}

/// The hole-punching state machine for one peer.
pub struct Punch {
    keypair: Keypair,
    remote: PeerId,
    nonce: [u8; 16],
    local: SocketAddr,
    candidates: Vec<SocketAddr>,
    config: PunchConfig,
    seed: [u8; 32],
    counter: u64,
    outstanding: VecDeque<([u8; 16], SocketAddr)>,
    queue: VecDeque<(Option<SocketAddr>, SocketAddr, Vec<u8>)>,
    next_round: Instant,
    rounds: u32,
    give_up_at: Option<Instant>,
    success: Option<(SocketAddr, Option<SocketAddr>, Instant)>,
    extra: Vec<SocketAddr>,
    spray: Option<Spray>,
    done: bool,
    stats: PunchStats,
}

impl std::fmt::Debug for Punch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Punch")
            .field("remote", &self.remote)
            .field("candidates", &self.candidates)
            .field("rounds", &self.rounds)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Punch {
    /// Starts punching towards `remote` at `candidates` (at most [`MAX_CANDIDATES`] are used).
    ///
    /// `local` is our socket's address (reported
    /// in the result); `seed` keys the challenge generator and must be secret and fresh
    /// (for example 32 bytes from the OS random number generator).
    pub fn new(
        session: PunchSession,
        local: SocketAddr,
        candidates: &[SocketAddr],
        config: PunchConfig,
        seed: [u8; 32],
        now: Instant,
    ) -> Self {
        let mut c: Vec<SocketAddr> = Vec::with_capacity(candidates.len().min(MAX_CANDIDATES));
        for a in candidates {
            if c.len() < MAX_CANDIDATES && !c.contains(a) {
                c.push(*a);
            }
        }
        let PunchSession {
            keypair,
            remote,
            nonce,
        } = session;
        Self {
            keypair,
            remote,
            nonce,
            local,
            candidates: c,
            config,
            seed,
            counter: 0,
            outstanding: VecDeque::new(),
            queue: VecDeque::new(),
            next_round: now,
            rounds: 0,
            give_up_at: None,
            success: None,
            extra: Vec::new(),
            spray: None,
            done: false,
            stats: PunchStats::default(),
        }
    }

    /// Also sends each probe to the first candidate from these extra sockets (the
    /// endpoint-dependent side of the birthday technique: every socket opens its own
    /// mapping in this side's NAT), in rounds 1 to 3 and every fifth round after, so a
    /// punch sends at most `(3 + max_rounds / 5) × extra` datagrams from them. Acks are
    /// sent from the socket the probe arrived on. At most [`MAX_EXTRA_SOCKETS`] are used.
    pub fn with_extra_sockets(mut self, locals: &[SocketAddr]) -> Self {
        self.extra = locals.iter().copied().take(MAX_EXTRA_SOCKETS).collect();
        self
    }

    /// Also probes `spray.ports` random distinct ports (1024..=65535) of `spray.ip`, at
    /// most `spray.per_round` per round from `spray.start` on, and each a second time once
    /// all were probed (the endpoint-independent side of the birthday technique: one of
    /// them is likely one of the mappings the other side's extra sockets opened). One
    /// signed probe serves every port; an ack for it counts only from a sprayed port.
    pub fn with_spray(mut self, spray: SprayConfig) -> Self {
        let total = spray.ports.min(MAX_SPRAY_PORTS);
        let mut ports = Vec::with_capacity(total);
        let mut seen: HashSet<u16> = self.candidates.iter().map(|c| c.port()).collect();
        let mut counter = 0u64;
        while ports.len() < total {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(b"spray");
            h.update(counter.to_be_bytes());
            counter += 1;
            for pair in h.finalize().chunks_exact(2) {
                let span = u32::from(u16::MAX - SPRAY_LOWEST_PORT) + 1;
                let raw = u32::from(u16::from_be_bytes([pair[0], pair[1]]));
                let port = SPRAY_LOWEST_PORT + (raw % span) as u16;
                if ports.len() < total && seen.insert(port) {
                    ports.push(port);
                }
            }
        }
        let challenge = self.next_challenge();
        self.spray = Some(Spray {
            ip: spray.ip,
            per_round: spray.per_round.max(1),
            start: spray.start,
            sprayed: HashSet::with_capacity(ports.len()),
            ports,
            next: 0,
            probe: encode(&self.keypair, KIND_PROBE, &self.nonce, &challenge),
            challenge,
        });
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> PunchStats {
        self.stats
    }

    fn next_challenge(&mut self) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.counter.to_be_bytes());
        self.counter += 1;
        let d = h.finalize();
        let mut c = [0u8; 16];
        c.copy_from_slice(&d[..16]);
        c
    }

    fn failure_reason(&self) -> String {
        format!(
            "no authenticated answer from {} at {:?} after {} probe rounds ({} probes sent, {} of its probes heard); \
             at least one side's NAT likely maps endpoint-dependently (symmetric): use a relay",
            self.remote.short(),
            self.candidates,
            self.rounds,
            self.stats.probes_sent,
            self.stats.probes_received,
        )
    }

    /// Advances to `now`.
    pub fn poll(&mut self, now: Instant) -> PunchPoll {
        if let Some((via, to, bytes)) = self.queue.pop_front() {
            return PunchPoll::Transmit { via, to, bytes };
        }
        if self.done {
            return PunchPoll::Done(Err(NatError::PunchFailed {
                reason: "punch already finished".into(),
            }));
        }
        if let Some((remote, via, linger_until)) = self.success {
            if now >= linger_until {
                self.done = true;
                return PunchPoll::Done(Ok(PunchedPath {
                    local: self.local,
                    via,
                    remote,
                    stats: self.stats,
                }));
            }
            return PunchPoll::WaitUntil(linger_until);
        }
        if self.candidates.is_empty() && self.spray.is_none() {
            self.done = true;
            return PunchPoll::Done(Err(NatError::PunchFailed {
                reason: "no candidate address for the peer".into(),
            }));
        }
        if let Some(at) = self.give_up_at {
            if now >= at {
                self.done = true;
                return PunchPoll::Done(Err(NatError::PunchFailed {
                    reason: self.failure_reason(),
                }));
            }
            return PunchPoll::WaitUntil(at);
        }
        if now >= self.next_round {
            self.rounds += 1;
            let open_extras = self.rounds <= 3 || self.rounds % 5 == 0;
            for i in 0..self.candidates.len() {
                let to = self.candidates[i];
                let challenge = self.next_challenge();
                if self.outstanding.len() == MAX_OUTSTANDING {
                    self.outstanding.pop_front();
                }
                self.outstanding.push_back((challenge, to));
                let bytes = encode(&self.keypair, KIND_PROBE, &self.nonce, &challenge);
                if i == 0 && open_extras {
                    for via in &self.extra {
                        self.stats.probes_sent += 1;
                        self.queue.push_back((Some(*via), to, bytes.clone()));
                    }
                }
                self.stats.probes_sent += 1;
                self.queue.push_back((None, to, bytes));
            }
            if let Some(spray) = self.spray.as_mut() {
                for to in spray.round(now) {
                    self.stats.probes_sent += 1;
                    self.queue.push_back((None, to, spray.probe.clone()));
                }
            }
            if self.rounds >= self.config.max_rounds {
                self.give_up_at = Some(now + self.config.final_wait);
            } else {
                self.next_round = now + self.config.interval;
            }
            return self.poll(now);
        }
        PunchPoll::WaitUntil(self.next_round)
    }

    /// Offers a datagram received on the main socket. Returns `false` if it is not a punch
    /// datagram at all (the caller may handle it otherwise); authentic-looking but invalid
    /// ones are counted as rejected.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        self.handle_datagram_via(now, None, from, bytes)
    }

    /// Offers a datagram received on the extra socket `via` (`None`: the main socket); an
    /// ack to a probe goes back out of the socket the probe came in on.
    pub fn handle_datagram_via(
        &mut self,
        now: Instant,
        via: Option<SocketAddr>,
        from: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        let Some(m) = decode(bytes) else { return false };
        if self.done {
            return true;
        }
        let sig = Signature::from_bytes(m.signature);
        if m.nonce != self.nonce
            || m.sender != *self.remote.as_bytes()
            || self
                .remote
                .verify(
                    &signed_part(m.kind, &m.nonce, &m.challenge, &m.sender),
                    &sig,
                )
                .is_err()
        {
            self.stats.rejected += 1;
            tracing::debug!(%from, "rejected punch datagram (wrong session, peer or signature)");
            return true;
        }
        if m.kind == KIND_PROBE {
            self.stats.probes_received += 1;
            if self.queue.len() < MAX_QUEUED_ACKS {
                let ack = encode(&self.keypair, KIND_ACK, &self.nonce, &m.challenge);
                self.queue.push_back((via, from, ack));
            }
            return true;
        }
        // An ack: must echo one of our challenges and come from where that challenge went.
        let matched = self.outstanding.iter().any(|(c, to)| {
            *c == m.challenge && crate::canonical_addr(*to) == crate::canonical_addr(from)
        }) || self
            .spray
            .as_ref()
            .is_some_and(|s| s.challenge == m.challenge && s.was_sprayed(from));
        if !matched {
            self.stats.rejected += 1;
            tracing::debug!(%from, "rejected punch ack (unknown challenge or address)");
            return true;
        }
        self.stats.acks_received += 1;
        if self.success.is_none() {
            tracing::debug!(%from, ?via, "hole punched");
            self.success = Some((from, via, now + self.config.linger));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Keypair, Keypair) {
        (
            Keypair::from_secret_bytes([1; 32]),
            Keypair::from_secret_bytes([2; 32]),
        )
    }

    fn cfg() -> PunchConfig {
        PunchConfig {
            interval: Duration::from_millis(100),
            max_rounds: 5,
            final_wait: Duration::from_millis(300),
            linger: Duration::from_millis(200),
        }
    }

    type Drained = (
        Vec<(SocketAddr, Vec<u8>)>,
        Option<Result<PunchedPath, NatError>>,
    );

    fn session(keypair: &Keypair, remote: &Keypair, nonce: [u8; 16]) -> PunchSession {
        PunchSession {
            keypair: keypair.clone(),
            remote: remote.peer_id(),
            nonce,
        }
    }

    fn drain(p: &mut Punch, now: Instant) -> Drained {
        let mut out = Vec::new();
        loop {
            match p.poll(now) {
                PunchPoll::Transmit { to, bytes, .. } => out.push((to, bytes)),
                PunchPoll::WaitUntil(_) => return (out, None),
                PunchPoll::Done(r) => return (out, Some(r)),
            }
        }
    }

    #[test]
    fn two_peers_punch_over_a_perfect_network() {
        let (ka, kb) = pair();
        let a_addr: SocketAddr = "203.0.113.1:4000".parse().expect("addr");
        let b_addr: SocketAddr = "203.0.113.2:5000".parse().expect("addr");
        let t0 = Instant::now();
        let nonce = [9; 16];
        let mut a = Punch::new(
            session(&ka, &kb, nonce),
            a_addr,
            &[b_addr],
            cfg(),
            [3; 32],
            t0,
        );
        let mut b = Punch::new(
            session(&kb, &ka, nonce),
            b_addr,
            &[a_addr],
            cfg(),
            [4; 32],
            t0,
        );
        let mut results = (None, None);
        let mut now = t0;
        for _ in 0..100 {
            let (out_a, ra) = drain(&mut a, now);
            let (out_b, rb) = drain(&mut b, now);
            for (to, bytes) in out_a {
                assert_eq!(to, b_addr);
                assert!(b.handle_datagram(now, a_addr, &bytes));
            }
            for (to, bytes) in out_b {
                assert_eq!(to, a_addr);
                assert!(a.handle_datagram(now, b_addr, &bytes));
            }
            results.0 = results.0.or(ra.map(|r| r.expect("a punches")));
            results.1 = results.1.or(rb.map(|r| r.expect("b punches")));
            if results.0.is_some() && results.1.is_some() {
                break;
            }
            now += Duration::from_millis(50);
        }
        let (pa, pb) = (
            results.0.expect("a finished"),
            results.1.expect("b finished"),
        );
        assert_eq!((pa.local, pa.remote), (a_addr, b_addr));
        assert_eq!((pb.local, pb.remote), (b_addr, a_addr));
        assert!(pa.stats.acks_received >= 1 && pb.stats.acks_received >= 1);
    }

    #[test]
    fn silence_fails_after_bounded_rounds() {
        let (ka, kb) = pair();
        let t0 = Instant::now();
        let b_addr: SocketAddr = "203.0.113.2:5000".parse().expect("addr");
        let mut a = Punch::new(
            session(&ka, &kb, [0; 16]),
            b_addr,
            &[b_addr],
            cfg(),
            [3; 32],
            t0,
        );
        let mut now = t0;
        let mut sent = 0;
        let result = loop {
            match a.poll(now) {
                PunchPoll::Transmit { .. } => sent += 1,
                PunchPoll::WaitUntil(at) => now = at,
                PunchPoll::Done(r) => break r,
            }
        };
        assert_eq!(sent, 5);
        match result {
            Err(NatError::PunchFailed { reason }) => assert!(reason.contains("relay"), "{reason}"),
            other => panic!("expected PunchFailed, got {other:?}"),
        }
    }

    #[test]
    fn forged_and_diverted_acks_are_rejected() {
        let (ka, kb) = pair();
        let mallory = Keypair::from_secret_bytes([7; 32]);
        let t0 = Instant::now();
        let b_addr: SocketAddr = "203.0.113.2:5000".parse().expect("addr");
        let evil: SocketAddr = "198.51.100.66:1".parse().expect("addr");
        let nonce = [5; 16];
        let mut a = Punch::new(
            session(&ka, &kb, nonce),
            b_addr,
            &[b_addr],
            cfg(),
            [3; 32],
            t0,
        );
        let (out, _) = drain(&mut a, t0);
        let probe = decode(&out[0].1).expect("probe decodes");
        // Mallory signs an ack with her own key.
        let forged = encode(&mallory, KIND_ACK, &nonce, &probe.challenge);
        assert!(a.handle_datagram(t0, b_addr, &forged));
        // A genuine ack from B, replayed from Mallory's address.
        let genuine = encode(&kb, KIND_ACK, &nonce, &probe.challenge);
        assert!(a.handle_datagram(t0, evil, &genuine));
        // A genuine ack for a challenge A never issued.
        let stale = encode(&kb, KIND_ACK, &nonce, &[0xEE; 16]);
        assert!(a.handle_datagram(t0, b_addr, &stale));
        // Wrong session.
        let other_session = encode(&kb, KIND_ACK, &[6; 16], &probe.challenge);
        assert!(a.handle_datagram(t0, b_addr, &other_session));
        // A flipped signature bit.
        let mut flipped = genuine.clone();
        flipped[100] ^= 1;
        assert!(a.handle_datagram(t0, b_addr, &flipped));
        assert!(!a.handle_datagram(t0, b_addr, b"not a punch datagram"));
        assert_eq!(a.stats().rejected, 5);
        assert_eq!(a.stats().acks_received, 0);
        // The genuine ack from B, as a dual-stack socket reports an IPv4 peer
        // (`::ffff:a.b.c.d`): the same address as the one the probe went to, so it counts.
        let b_mapped: SocketAddr = "[::ffff:203.0.113.2]:5000".parse().expect("addr");
        assert!(a.handle_datagram(t0, b_mapped, &genuine));
        assert_eq!(a.stats().acks_received, 1);
    }

    /// A model of the two NATs: the hard side's maps each (local socket, destination) to a
    /// port of its own (address-and-port-dependent filtering); the easy side's maps
    /// everything to one port and lets in only sources it has sent to.
    #[test]
    fn birthday_spray_finds_one_of_many_endpoint_dependent_mappings() {
        use std::collections::HashMap;
        let (k_easy, k_hard) = pair();
        let easy_public: SocketAddr = "198.51.100.1:40000".parse().expect("addr");
        let hard_ip: std::net::IpAddr = "203.0.113.9".parse().expect("ip");
        let hard_main: SocketAddr = "10.0.2.2:5000".parse().expect("addr");
        let extras: Vec<SocketAddr> = (0..256)
            .map(|i| SocketAddr::new("10.0.2.2".parse().expect("ip"), 6000 + i))
            .collect();
        let t0 = Instant::now();
        let nonce = [8; 16];
        let config = PunchConfig {
            interval: Duration::from_millis(200),
            max_rounds: 25,
            final_wait: Duration::from_secs(1),
            linger: Duration::from_millis(200),
        };
        let mut hard = Punch::new(
            session(&k_hard, &k_easy, nonce),
            hard_main,
            &[easy_public],
            config,
            [4; 32],
            t0,
        )
        .with_extra_sockets(&extras);
        let mut easy = Punch::new(
            session(&k_easy, &k_hard, nonce),
            easy_public,
            &[SocketAddr::new(hard_ip, 31000)],
            config,
            [3; 32],
            t0,
        )
        .with_spray(SprayConfig {
            ip: hard_ip,
            ports: 1024,
            per_round: 256,
            start: t0 + Duration::from_millis(50),
        });
        // The hard NAT: (local, destination) → public port, from a fixed-seed generator.
        let mut hard_map: HashMap<(SocketAddr, SocketAddr), u16> = HashMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut easy_sent_to: HashSet<SocketAddr> = HashSet::new();
        let (mut from_extras, mut sprayed) = (0u32, 0u32);
        let (mut easy_done, mut hard_done) = (None, None);
        let mut now = t0;
        while now < t0 + Duration::from_secs(10) && (easy_done.is_none() || hard_done.is_none()) {
            loop {
                match hard.poll(now) {
                    PunchPoll::Transmit { via, to, bytes } => {
                        let local = via.unwrap_or(hard_main);
                        from_extras += u32::from(via.is_some());
                        let port = *hard_map.entry((local, to)).or_insert_with(|| {
                            seed = seed
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            1024 + ((seed >> 33) % 64512) as u16
                        });
                        let src = SocketAddr::new(hard_ip, port);
                        if to == easy_public && easy_sent_to.contains(&src) {
                            easy.handle_datagram(now, src, &bytes);
                        }
                    }
                    PunchPoll::WaitUntil(_) => break,
                    PunchPoll::Done(r) => {
                        hard_done = hard_done.or(Some(r));
                        break;
                    }
                }
            }
            loop {
                match easy.poll(now) {
                    PunchPoll::Transmit { via, to, bytes } => {
                        assert_eq!(via, None, "the easy side sends only from its main socket");
                        sprayed += 1;
                        easy_sent_to.insert(to);
                        let inbound = hard_map
                            .iter()
                            .find(|((_, dest), port)| {
                                *dest == easy_public && SocketAddr::new(hard_ip, **port) == to
                            })
                            .map(|((local, _), _)| *local);
                        if let Some(local) = inbound {
                            let via = (local != hard_main).then_some(local);
                            hard.handle_datagram_via(now, via, easy_public, &bytes);
                        }
                    }
                    PunchPoll::WaitUntil(_) => break,
                    PunchPoll::Done(r) => {
                        easy_done = easy_done.or(Some(r));
                        break;
                    }
                }
            }
            now += Duration::from_millis(10);
        }
        let easy_path = easy_done
            .expect("easy side finished")
            .expect("easy side punched");
        let hard_path = hard_done
            .expect("hard side finished")
            .expect("hard side punched");
        let via = hard_path
            .via
            .expect("the path runs through an extra socket");
        assert!(extras.contains(&via));
        assert_eq!(hard_path.remote, easy_public);
        assert_eq!(
            easy_path.remote,
            SocketAddr::new(hard_ip, hard_map[&(via, easy_public)])
        );
        assert_eq!(easy_path.via, None);
        // Bounded: at most three opening rounds plus every fifth, and two passes of the spray.
        assert!(
            from_extras <= (3 + 25 / 5) * 256,
            "{from_extras} sent from extra sockets"
        );
        assert!(
            sprayed <= 2 * 1024 + 25 + 64,
            "{sprayed} sent by the easy side"
        );
    }

    proptest::proptest! {
        #[test]
        fn handle_datagram_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let (ka, kb) = pair();
            let t0 = Instant::now();
            let addr: SocketAddr = "203.0.113.2:5000".parse().expect("addr");
            let mut a = Punch::new(
            session(&ka, &kb, [0; 16]), addr, &[addr], cfg(), [3; 32], t0);
            let mut b = bytes.clone();
            if b.len() >= 4 { b[..4].copy_from_slice(&PUNCH_MAGIC); }
            let _ = a.handle_datagram(t0, addr, &bytes);
            let _ = a.handle_datagram(t0, addr, &b);
        }
    }
}
