use super::*;

const SECRET: [u8; 32] = [0x5e; 32];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn key(n: u8) -> Keypair {
    Keypair::from_secret_bytes([n; 32])
}

fn relay() -> RelayServer {
    RelayServer::new(RelayLimits::default(), SECRET)
}

/// The CHALLENGE the relay sent to `to` among `out`.
fn challenge_in(out: &[(SocketAddr, Vec<u8>)], to: SocketAddr) -> Cookie {
    assert_eq!(out.len(), 1, "one CHALLENGE");
    assert_eq!(out[0].0, to, "sent to the REQUEST's source");
    assert!(out[0].1.len() < REQUEST_LEN, "no amplification");
    match decode_reply(&out[0].1) {
        Some(RelayReply::Challenge { cookie, .. }) => cookie,
        other => panic!("expected a CHALLENGE, got {other:?}"),
    }
}

fn allocate_msg(
    k: &Keypair,
    s: &[u8; 16],
    partner: &PeerId,
    cookie: &Cookie,
    wall: SystemTime,
) -> Vec<u8> {
    encode_allocate(k, s, partner, cookie, 1, wall + Duration::from_secs(60)).expect("signs")
}

/// The whole handshake from `from`: REQUEST, CHALLENGE, ALLOCATE; returns the relay's answer
/// to the ALLOCATE.
fn handshake(
    r: &mut RelayServer,
    now: Instant,
    wall: SystemTime,
    from: SocketAddr,
    k: &Keypair,
    s: &[u8; 16],
    partner: &PeerId,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let out = r.handle(now, wall, from, &encode_request(s, &k.peer_id(), partner));
    let cookie = challenge_in(&out, from);
    r.handle(now, wall, from, &allocate_msg(k, s, partner, &cookie, wall))
}

fn paired_reply(s: [u8; 16], partner: PeerId) -> Vec<u8> {
    allocated(&s, &partner, true)
}

/// Two honest peers, A at 203.0.113.1:1000 and B at 203.0.113.2:2000, of session `[4; 16]`,
/// a relay, and a frozen clock.
struct World {
    a: SocketAddr,
    b: SocketAddr,
    ka: Keypair,
    kb: Keypair,
    s: [u8; 16],
    now: Instant,
    wall: SystemTime,
    r: RelayServer,
}

impl World {
    fn new(limits: RelayLimits) -> Self {
        Self {
            a: addr("203.0.113.1:1000"),
            b: addr("203.0.113.2:2000"),
            ka: key(1),
            kb: key(2),
            s: [4; 16],
            now: Instant::now(),
            wall: SystemTime::now(),
            r: RelayServer::new(limits, SECRET),
        }
    }

    /// A's and B's ids.
    fn ids(&self) -> (PeerId, PeerId) {
        (self.ka.peer_id(), self.kb.peer_id())
    }

    fn handshake(
        &mut self,
        from: SocketAddr,
        k: &Keypair,
        partner: &PeerId,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let (now, wall, s) = (self.now, self.wall, self.s);
        handshake(&mut self.r, now, wall, from, k, &s, partner)
    }

    /// A allocates naming B, then B naming A; returns B's answer.
    fn pair(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let (ka, kb) = (self.ka.clone(), self.kb.clone());
        let (a, b) = (self.ka.peer_id(), self.kb.peer_id());
        self.handshake(self.a, &ka, &b);
        self.handshake(self.b, &kb, &a)
    }

    fn send(&mut self, from: SocketAddr, bytes: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        self.r.handle(self.now, self.wall, from, bytes)
    }

    fn data_at(
        &mut self,
        at: Instant,
        from: SocketAddr,
        payload: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        self.r.handle(at, self.wall, from, &encode_data(payload))
    }
}

#[test]
fn pairs_two_peers_that_name_each_other_and_forwards_both_ways() {
    let mut w = World::new(RelayLimits::default());
    let (ida, idb) = w.ids();
    let ka = w.ka.clone();
    let out = w.handshake(w.a, &ka, &idb);
    assert_eq!(
        out,
        vec![(w.a, allocated(&w.s, &idb, false))],
        "allocated, not yet paired"
    );
    // Unpaired data is dropped.
    assert!(w.data_at(w.now, w.a, b"early").is_empty());
    let kb = w.kb.clone();
    let out = w.handshake(w.b, &kb, &ida);
    assert_eq!(
        out,
        vec![(w.b, paired_reply(w.s, ida)), (w.a, paired_reply(w.s, idb))]
    );
    assert_eq!(
        w.data_at(w.now, w.a, b"hello b"),
        vec![(w.b, encode_data(b"hello b"))]
    );
    assert_eq!(
        w.data_at(w.now, w.b, b"hello a"),
        vec![(w.a, encode_data(b"hello a"))]
    );
    assert_eq!(w.r.stats().forwarded, 2);
    assert_eq!(w.r.stats().challenges, 2);
    // The lengths docs/protocols/nat.md gives.
    assert_eq!(
        (REQUEST_LEN, CHALLENGE_LEN, ALLOCATE_LEN, ALLOCATED_LEN),
        (86, 46, 229, 55)
    );
}

/// Issue 18: a spoofed source is sent one CHALLENGE (smaller than the REQUEST) and nothing
/// else; whatever Mallory sends, nothing is forwarded to the victim.
#[test]
fn a_spoofed_source_gets_nothing_forwarded() {
    let victim = addr("192.0.2.80:80");
    let mallory = addr("198.51.100.66:6666");
    let (k1, k2) = (key(7), key(8));
    let s = [9; 16];
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut r = relay();
    let mut to_victim = Vec::new();
    let mut send = |r: &mut RelayServer, from: SocketAddr, bytes: &[u8]| {
        let out = r.handle(now, wall, from, bytes);
        to_victim.extend(out.iter().filter(|(to, _)| *to == victim).cloned());
        out
    };
    // A REQUEST "from" the victim: the challenge goes to the victim, who ignores it.
    let out = send(
        &mut r,
        victim,
        &encode_request(&s, &k1.peer_id(), &k2.peer_id()),
    );
    let _ = challenge_in(&out, victim);
    // Mallory cannot see it; she tries a made-up cookie, then a real one obtained for her
    // own address, both "from" the victim.
    let guessed = Cookie {
        issued_unix_ms: unix_ms(wall).to_be_bytes(),
        mac: [0; 16],
    };
    assert!(
        send(
            &mut r,
            victim,
            &allocate_msg(&k1, &s, &k2.peer_id(), &guessed, wall)
        )
        .is_empty()
    );
    let out = r.handle(
        now,
        wall,
        mallory,
        &encode_request(&s, &k1.peer_id(), &k2.peer_id()),
    );
    let hers = challenge_in(&out, mallory);
    assert!(
        send(
            &mut r,
            victim,
            &allocate_msg(&k1, &s, &k2.peer_id(), &hers, wall)
        )
        .is_empty()
    );
    // Her second identity allocates honestly from her own address, and sends DATA.
    handshake(&mut r, now, wall, mallory, &k2, &s, &k1.peer_id());
    for _ in 0..10 {
        assert!(send(&mut r, mallory, &encode_data(&[0xAA; 1000])).is_empty());
    }
    assert_eq!(to_victim.len(), 1, "only the challenge reached the victim");
    assert_eq!(to_victim[0].1.len(), CHALLENGE_LEN);
    assert_eq!(r.stats().forwarded, 0);
}

/// Issue 18: an ALLOCATE seen on the wire and replayed from elsewhere does not move the
/// peer's allocation; a stranger cannot finish a handshake for a peer id it has no key for.
#[test]
fn a_replayed_allocate_does_not_take_a_peers_place() {
    let mut w = World::new(RelayLimits::default());
    let eve = addr("198.51.100.7:3000");
    let (ida, idb) = w.ids();
    let out = w.send(w.a, &encode_request(&w.s, &ida, &idb));
    let cookie = challenge_in(&out, w.a);
    let seen = allocate_msg(&w.ka, &w.s, &idb, &cookie, w.wall);
    w.send(w.a, &seen);
    let kb = w.kb.clone();
    w.handshake(w.b, &kb, &ida);
    // Eve replays A's ALLOCATE from her address.
    assert!(w.send(eve, &seen).is_empty());
    // Eve gets a challenge for A's ids but signs with her own key: refused, since the
    // signer is not the peer the cookie was made for.
    let out = w.send(eve, &encode_request(&w.s, &ida, &idb));
    let hers = challenge_in(&out, eve);
    let forged = allocate_msg(&key(66), &w.s, &idb, &hers, w.wall);
    assert!(w.send(eve, &forged).is_empty());
    // B's traffic still reaches A.
    assert_eq!(
        w.data_at(w.now, w.b, b"to a"),
        vec![(w.a, encode_data(b"to a"))]
    );
    assert!(w.data_at(w.now, eve, b"x").is_empty());
    // A stale cookie is refused even from the right address.
    w.wall += COOKIE_LIFETIME + Duration::from_secs(1);
    let late = allocate_msg(&w.ka, &w.s, &idb, &cookie, w.wall);
    assert!(w.send(w.a, &late).is_empty());
}

/// Issue 18: the second allocator of a session id becomes nobody's partner unless the first
/// named it.
#[test]
fn a_third_party_in_the_session_pairs_with_nobody() {
    let mut w = World::new(RelayLimits::default());
    let m = addr("198.51.100.7:3000");
    let (ida, idb) = w.ids();
    let ka = w.ka.clone();
    w.handshake(w.a, &ka, &idb);
    // Mallory knows the session id and A's peer id, and allocates naming A.
    let out = w.handshake(m, &key(9), &ida);
    assert_eq!(out, vec![(m, allocated(&w.s, &ida, false))]);
    assert!(w.data_at(w.now, w.a, b"for b only").is_empty());
    assert!(w.data_at(w.now, m, b"to a?").is_empty());
    assert_eq!(w.r.stats().forwarded, 0);
}

#[test]
fn a_peer_that_moves_re_handshakes_from_its_new_address() {
    let mut w = World::new(RelayLimits::default());
    let a2 = addr("203.0.113.1:1001");
    w.pair();
    let (ka, idb) = (w.ka.clone(), w.kb.peer_id());
    assert_eq!(w.handshake(a2, &ka, &idb).len(), 2);
    assert_eq!(w.r.allocations(), 2);
    assert_eq!(w.data_at(w.now, w.b, b"hi"), vec![(a2, encode_data(b"hi"))]);
    assert!(w.data_at(w.now, w.a, b"stale").is_empty());
}

/// Issue 18: DATA refreshes an allocation; an idle one still expires.
#[test]
fn data_keeps_allocations_alive_and_idle_ones_expire() {
    let mut w = World::new(RelayLimits::default());
    w.pair();
    // Traffic both ways every 100 s, for ten minutes: well past ALLOCATION_LIFETIME.
    for i in 1..=6u32 {
        let t = w.now + Duration::from_secs(100) * i;
        assert_eq!(w.data_at(t, w.a, b"ping").len(), 1, "round {i}");
        assert_eq!(w.data_at(t, w.b, b"pong").len(), 1, "round {i}");
    }
    // Then silence: both expire.
    let later = w.now + Duration::from_secs(600) + ALLOCATION_LIFETIME;
    assert!(w.data_at(later, w.a, b"late").is_empty());
    assert!(w.data_at(later, w.b, b"late").is_empty());
    assert_eq!(w.r.allocations(), 0);
}

/// Issue 18: the handshake repeated from the same address (no DATA at all) refreshes an
/// allocation too, and keeps its place: a refreshed pair still forwards long after the
/// first allocation's lifetime.
#[test]
fn a_repeated_allocate_refreshes_the_allocation() {
    let mut w = World::new(RelayLimits::default());
    w.pair();
    let (ida, idb) = w.ids();
    let (ka, kb) = (w.ka.clone(), w.kb.clone());
    let start = w.now;
    for i in 1..=3u32 {
        w.now = start + Duration::from_secs(100) * i;
        assert_eq!(
            w.handshake(w.a, &ka, &idb).len(),
            2,
            "round {i}: A refreshed, paired"
        );
        assert_eq!(
            w.handshake(w.b, &kb, &ida).len(),
            2,
            "round {i}: B refreshed, paired"
        );
    }
    assert_eq!(w.r.allocations(), 2);
    let t = w.now + ALLOCATION_LIFETIME - Duration::from_secs(1);
    assert_eq!(
        w.data_at(t, w.a, b"ping"),
        vec![(w.b, encode_data(b"ping"))]
    );
}

#[test]
fn quotas_per_peer_and_per_source_ip() {
    let limits = RelayLimits {
        max_per_peer: 3,
        max_per_ip: 5,
        handshakes_per_sec_per_ip: 1000,
        ..RelayLimits::default()
    };
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut r = RelayServer::new(limits, SECRET);
    let ka = key(1);
    // One peer, many sessions, each from its own address: three allocations at most.
    for i in 0..6u8 {
        let from = SocketAddr::new(IpAddr::from([203, 0, 113, 10 + i]), 1000);
        handshake(&mut r, now, wall, from, &ka, &[i; 16], &key(2).peer_id());
    }
    assert_eq!(r.allocations(), 3);
    // Many peers behind one IP: five allocations at most.
    for i in 0..9u8 {
        let from = SocketAddr::new(IpAddr::from([198, 51, 100, 1]), 2000 + u16::from(i));
        handshake(
            &mut r,
            now,
            wall,
            from,
            &key(100 + i),
            &[1; 16],
            &key(2).peer_id(),
        );
    }
    assert_eq!(r.allocations(), 3 + 5);
    assert_eq!(r.stats().refused, 3 + 4);
}

#[test]
fn handshakes_are_rate_limited_per_source_ip() {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut r = relay();
    let from = addr("198.51.100.1:1");
    let req = encode_request(&[1; 16], &key(1).peer_id(), &key(2).peer_id());
    let challenges = (0..100)
        .filter(|_| !r.handle(now, wall, from, &req).is_empty())
        .count();
    assert_eq!(challenges, 40);
}

/// Issue 18: an IPv6 sender holds a whole /64, so its addresses are one source: the
/// handshake rate and the allocation quota are shared by the /64 (a v4-mapped address is
/// the IPv4 one), while the next /64 has its own.
#[test]
fn an_ipv6_64_is_one_source_for_rates_and_quotas() {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let in_64 = |prefix: u16, host: u16| {
        SocketAddr::new(
            IpAddr::from([0x2001, 0xdb8, 0, prefix, 0, 0, 0, host]),
            4000,
        )
    };
    let mut r = relay();
    let req = encode_request(&[1; 16], &key(1).peer_id(), &key(2).peer_id());
    let challenges = (0..100)
        .filter(|&i| !r.handle(now, wall, in_64(1, i), &req).is_empty())
        .count();
    assert_eq!(challenges, 40, "one /64, one handshake budget");
    assert_eq!(
        r.handle(now, wall, in_64(2, 0), &req).len(),
        1,
        "the next /64"
    );

    let limits = RelayLimits {
        max_per_ip: 3,
        handshakes_per_sec_per_ip: 1000,
        ..RelayLimits::default()
    };
    let mut r = RelayServer::new(limits, SECRET);
    for i in 0..6u16 {
        let k = key(10 + i as u8);
        handshake(
            &mut r,
            now,
            wall,
            in_64(1, i),
            &k,
            &[i as u8; 16],
            &key(2).peer_id(),
        );
    }
    assert_eq!(r.allocations(), 3, "one /64, one quota");
    let (mapped, plain) = (
        |port| SocketAddr::new("::ffff:198.51.100.1".parse().expect("ip"), port),
        |port| SocketAddr::new(IpAddr::from([198, 51, 100, 1]), port),
    );
    for (i, from) in [mapped(1), plain(2), mapped(3), plain(4)]
        .into_iter()
        .enumerate()
    {
        let k = key(20 + i as u8);
        handshake(&mut r, now, wall, from, &k, &[9; 16], &key(2).peer_id());
    }
    assert_eq!(
        r.allocations(),
        3 + 3,
        "v4-mapped and plain IPv4 share one quota"
    );
}

#[test]
fn forged_and_expired_allocations_are_refused() {
    let mut w = World::new(RelayLimits::default());
    let (ida, idb) = w.ids();
    let out = w.send(w.a, &encode_request(&w.s, &ida, &idb));
    let cookie = challenge_in(&out, w.a);
    let mut forged = allocate_msg(&w.ka, &w.s, &idb, &cookie, w.wall);
    forged[ALLOCATE_LEN - 100] ^= 1; // payload changed after signing
    assert!(w.send(w.a, &forged).is_empty());
    for expires in [
        w.wall - Duration::from_secs(1),
        w.wall + Duration::from_secs(3600),
    ] {
        let bad = encode_allocate(&w.ka, &w.s, &idb, &cookie, 1, expires).expect("signs");
        assert!(w.send(w.a, &bad).is_empty());
    }
    assert_eq!(w.r.stats().refused, 3);
    assert_eq!(w.r.allocations(), 0);
}

#[test]
fn rate_limit_drops_the_excess_and_resets_each_second() {
    let mut w = World::new(RelayLimits {
        packets_per_sec: 3,
        bytes_per_sec: 1_000_000,
        ..RelayLimits::default()
    });
    w.pair();
    let sent = (0..10)
        .filter(|_| !w.data_at(w.now, w.a, b"x").is_empty())
        .count();
    assert_eq!(sent, 3);
    let later = w.now + Duration::from_secs(1);
    assert_eq!(w.data_at(later, w.a, b"x").len(), 1);
    assert!(w.data_at(later, w.a, &[0; MAX_PAYLOAD + 1]).is_empty());
}

proptest::proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let a = addr("203.0.113.1:1000");
        let mut r = relay();
        let mut framed = bytes.clone();
        if framed.len() >= 6 {
            framed[..4].copy_from_slice(&RELAY_MAGIC);
            framed[4] = RELAY_VERSION;
        }
        let _ = r.handle(Instant::now(), SystemTime::now(), a, &bytes);
        let _ = r.handle(Instant::now(), SystemTime::now(), a, &framed);
        let _ = decode_reply(&bytes);
        let _ = decode_reply(&framed);
        proptest::prop_assert_eq!(r.allocations(), 0);
    }
}
