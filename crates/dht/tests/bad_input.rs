//! Malformed, oversized, unsolicited and flooding input; forged, misplaced and expired records.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use p2p_foundation_dht::{
    Config, Contact, Dht, Event, Message, Output, QueryResult, RateLimit, Record, Request,
    RequestId, Response,
};
use p2p_foundation_identity::{Key, Keypair, PeerId, Signed};

fn kp(n: u8) -> Keypair {
    Keypair::from_secret_bytes([n; 32])
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 4000))
}

fn node(n: u8, now: Instant, wall: SystemTime) -> Dht {
    Dht::new(kp(n).peer_id(), Config::default(), u64::from(n), now, wall)
}

/// Drains outputs until the timeout; returns sends and events.
fn drain(dht: &mut Dht) -> (Vec<(PeerId, Message)>, Vec<Event>) {
    let mut sends = Vec::new();
    let mut events = Vec::new();
    loop {
        match dht.poll_output() {
            Output::Send { to, msg, .. } => sends.push((to, msg)),
            Output::Event(e) => events.push(e),
            Output::Timeout(_) => return (sends, events),
        }
    }
}

fn request(id: u64, body: Request) -> Message {
    Message::Request {
        id: RequestId(id),
        body,
    }
}

#[test]
fn malformed_and_oversized_frames_are_dropped_and_counted() {
    let now = Instant::now();
    let mut dht = node(1, now, SystemTime::now());
    let peer = kp(2).peer_id();
    dht.handle_frame(now, peer, addr(2), &[0, 0, 0, 3, 1, 0xff, 0xff]);
    dht.handle_frame(now, peer, addr(2), b"");
    dht.handle_frame(now, peer, addr(2), &[0, 0, 0, 1, 9]);
    let mut huge = vec![0u8; 70_000];
    huge[..4].copy_from_slice(&(69_996u32).to_be_bytes());
    dht.handle_frame(now, peer, addr(2), &huge);
    // A length prefix announcing 4 GiB is refused from the header alone.
    dht.handle_frame(now, peer, addr(2), &[0xff, 0xff, 0xff, 0xff, 1]);
    assert_eq!(dht.stats().malformed, 3);
    assert_eq!(dht.stats().oversized, 2);
    let (sends, _) = drain(&mut dht);
    assert!(sends.is_empty(), "nothing answered");
    // A well-formed frame still works.
    let frame = request(7, Request::Ping).encode(64 * 1024).unwrap();
    dht.handle_frame(now, peer, addr(2), &frame);
    let (sends, _) = drain(&mut dht);
    assert_eq!(sends.len(), 1);
    assert!(matches!(
        &sends[0].1,
        Message::Response {
            id: RequestId(7),
            body: Response::Pong
        }
    ));
}

#[test]
fn unsolicited_and_misattributed_responses_are_dropped_and_counted() {
    let now = Instant::now();
    let mut dht = node(1, now, SystemTime::now());
    let (b, c) = (kp(2).peer_id(), kp(3).peer_id());
    // Unknown id.
    dht.handle_message(
        now,
        b,
        addr(2),
        Message::Response {
            id: RequestId(42),
            body: Response::Pong,
        },
    );
    assert_eq!(dht.stats().unknown_responses, 1);
    // A lookup asks b; c answers with b's request id: dropped. b's own answer is taken.
    dht.add_contact(now, Contact::new(b, addr(2)));
    let q = dht.find_node(now, Key::for_record(b"t"));
    let (sends, _) = drain(&mut dht);
    let (to, Message::Request { id, .. }) = &sends[0] else {
        panic!()
    };
    assert_eq!(*to, b);
    let forged = Contact::new(kp(9).peer_id(), addr(9));
    dht.handle_message(
        now,
        c,
        addr(3),
        Message::Response {
            id: *id,
            body: Response::Nodes {
                closer: vec![forged],
            },
        },
    );
    assert_eq!(dht.stats().unexpected_peer, 1);
    dht.handle_message(
        now,
        b,
        addr(2),
        Message::Response {
            id: *id,
            body: Response::Nodes { closer: vec![] },
        },
    );
    let (_, events) = drain(&mut dht);
    let [
        Event::QueryFinished {
            id: done,
            result: QueryResult::FindNode { closest },
            ..
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(*done, q);
    assert_eq!(
        closest.iter().map(|c| c.peer()).collect::<Vec<_>>(),
        vec![b]
    );
    // Replaying b's response now that the request is answered: unknown id.
    dht.handle_message(
        now,
        b,
        addr(2),
        Message::Response {
            id: *id,
            body: Response::Pong,
        },
    );
    assert_eq!(dht.stats().unknown_responses, 2);
    // A response of the wrong type counts as a failure, not as an answer.
    let _ = dht.find_node(now, Key::for_record(b"u"));
    let (sends, _) = drain(&mut dht);
    let (_, Message::Request { id, .. }) = &sends[0] else {
        panic!()
    };
    dht.handle_message(
        now,
        b,
        addr(2),
        Message::Response {
            id: *id,
            body: Response::Pong,
        },
    );
    assert_eq!(dht.stats().mismatched_responses, 1);
}

#[test]
fn a_flooding_peer_is_rate_limited_while_others_are_served() {
    let now = Instant::now();
    let limit = RateLimit {
        per_second: 10.0,
        burst: 20.0,
        ..RateLimit::default()
    };
    let config = Config::default().with_rate_limit(limit);
    let mut dht = Dht::new(kp(1).peer_id(), config, 1, now, SystemTime::now());
    let (flooder, honest) = (kp(2).peer_id(), kp(3).peer_id());
    let mut answered_flooder = 0;
    let mut answered_honest = 0;
    for i in 0..1000u64 {
        let t = now + Duration::from_millis(i); // 1,000 requests in one second
        dht.handle_message(
            t,
            flooder,
            addr(2),
            request(
                i,
                Request::FindNode {
                    target: Key::for_record(b"x"),
                },
            ),
        );
        if i % 100 == 0 {
            dht.handle_message(t, honest, addr(3), request(10_000 + i, Request::Ping));
        }
        let (sends, _) = drain(&mut dht);
        for (to, _) in sends {
            if to == flooder {
                answered_flooder += 1;
            } else if to == honest {
                answered_honest += 1;
            }
        }
    }
    // Burst of 20 plus 10 per second over ~1 s.
    assert!((20..=31).contains(&answered_flooder), "{answered_flooder}");
    assert_eq!(answered_honest, 10, "the other peer is still served");
    assert_eq!(dht.stats().rate_limited, 1000 - answered_flooder);
}

fn signed(n: u8, key: Key, value: &str, seq: u64, expires: SystemTime) -> Signed<Record> {
    Signed::sign(&kp(n), Record::new(key, value), seq, expires).unwrap()
}

fn store(dht: &mut Dht, now: Instant, from: u8, record: Signed<Record>) -> bool {
    dht.handle_message(
        now,
        kp(from).peer_id(),
        addr(from),
        request(
            u64::from(from) << 32 | record.seq(),
            Request::Store {
                record: Box::new(record),
            },
        ),
    );
    let (sends, _) = drain(dht);
    match &sends[..] {
        [
            (
                _,
                Message::Response {
                    body: Response::Stored { accepted },
                    ..
                },
            ),
        ] => *accepted,
        other => panic!("{other:?}"),
    }
}

fn find_value(dht: &mut Dht, now: Instant, key: Key) -> Option<Box<Signed<Record>>> {
    dht.handle_message(
        now,
        kp(50).peer_id(),
        addr(50),
        request(99, Request::FindValue { key }),
    );
    let (sends, _) = drain(dht);
    match sends.into_iter().next() {
        Some((
            _,
            Message::Response {
                body: Response::Value { record, .. },
                ..
            },
        )) => record,
        other => panic!("{other:?}"),
    }
}

#[test]
fn forged_expired_and_stale_records_are_never_stored_or_returned() {
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut dht = node(1, now, wall);
    let key = Key::for_record(b"name");
    let later = wall + Duration::from_secs(600);

    // Bad signature: flip a byte of the value inside the envelope.
    let good = signed(2, key, "hello", 1, later);
    let mut bytes = good.as_bytes().to_vec();
    let pos = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[pos] ^= 1;
    let forged = Signed::<Record>::decode(&bytes).unwrap();
    assert!(!store(&mut dht, now, 2, forged));
    assert!(find_value(&mut dht, now, key).is_none());

    // Expired envelope.
    let expired = signed(2, key, "old", 1, wall - Duration::from_secs(1));
    assert!(!store(&mut dht, now, 2, expired));
    assert!(find_value(&mut dht, now, key).is_none());
    assert_eq!(dht.stats().records_rejected, 2);

    // Good record stored and returned; then it expires and is no longer returned.
    let short = signed(2, key, "v1", 1, wall + Duration::from_secs(5));
    assert!(store(&mut dht, now, 2, short.clone()));
    assert_eq!(find_value(&mut dht, now, key).as_deref(), Some(&short));
    assert!(find_value(&mut dht, now + Duration::from_secs(6), key).is_none());

    // Sequence numbers: higher replaces lower, lower is refused, another signer cannot take
    // over a live record.
    let v2 = signed(2, key, "v2", 2, later);
    let v3 = signed(2, key, "v3", 3, later);
    assert!(store(&mut dht, now, 2, v3.clone()));
    assert!(!store(&mut dht, now, 2, v2));
    assert_eq!(find_value(&mut dht, now, key).as_deref(), Some(&v3));
    assert!(!store(&mut dht, now, 3, signed(3, key, "mine", 9, later)));
    assert_eq!(find_value(&mut dht, now, key).as_deref(), Some(&v3));
    let v4 = signed(2, key, "v4", 4, later);
    assert!(store(&mut dht, now, 2, v4.clone()));
    assert_eq!(find_value(&mut dht, now, key).as_deref(), Some(&v4));

    // Too large.
    let big = signed(2, Key::for_record(b"big"), &"x".repeat(9000), 1, later);
    assert!(!store(&mut dht, now, 2, big));
}

#[test]
fn lookups_never_return_forged_misplaced_or_expired_records() {
    let now = Instant::now();
    let wall = SystemTime::now();
    let key = Key::for_record(b"wanted");
    let later = wall + Duration::from_secs(600);
    let mut bad_sig = signed(2, key, "hello", 1, later).as_bytes().to_vec();
    let pos = bad_sig.windows(5).position(|w| w == b"hello").unwrap();
    bad_sig[pos] ^= 1;
    let candidates = [
        Signed::<Record>::decode(&bad_sig).unwrap(),
        signed(2, Key::for_record(b"other"), "wrong key", 1, later),
        signed(2, key, "expired", 1, wall - Duration::from_secs(1)),
    ];
    for bad in candidates {
        let mut dht = node(1, now, wall);
        let b = kp(2).peer_id();
        dht.add_contact(now, Contact::new(b, addr(2)));
        let _ = dht.get_record(now, key);
        let (sends, _) = drain(&mut dht);
        let (
            _,
            Message::Request {
                id,
                body: Request::FindValue { .. },
            },
        ) = &sends[0]
        else {
            panic!()
        };
        dht.handle_message(
            now,
            b,
            addr(2),
            Message::Response {
                id: *id,
                body: Response::Value {
                    record: Some(Box::new(bad)),
                    closer: vec![],
                },
            },
        );
        let (_, events) = drain(&mut dht);
        let [
            Event::QueryFinished {
                result: QueryResult::GetRecord { records },
                ..
            },
        ] = &events[..]
        else {
            panic!("{events:?}")
        };
        assert!(records.is_empty());
        assert_eq!(dht.stats().records_rejected, 1);
    }
}

#[test]
fn put_refuses_bad_records_up_front() {
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut dht = node(1, now, wall);
    let expired = signed(
        1,
        Key::for_record(b"k"),
        "v",
        1,
        wall - Duration::from_secs(1),
    );
    assert!(dht.put_record(now, expired).is_err());
}

#[test]
fn the_application_validator_decides() {
    struct Utf8Only;
    impl p2p_foundation_dht::Validator for Utf8Only {
        fn validate_record(&self, record: &Record, _signer: &PeerId) -> bool {
            std::str::from_utf8(&record.value).is_ok()
        }
    }
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut dht = node(1, now, wall);
    dht.set_validator(Utf8Only);
    let later = wall + Duration::from_secs(600);
    let key = Key::for_record(b"v");
    let binary = Signed::sign(&kp(2), Record::new(key, vec![0xff, 0xfe]), 1, later).unwrap();
    assert!(!store(&mut dht, now, 2, binary));
    assert!(find_value(&mut dht, now, key).is_none());
    let text = signed(2, key, "fine", 2, later);
    assert!(store(&mut dht, now, 2, text.clone()));
    assert_eq!(find_value(&mut dht, now, key).as_deref(), Some(&text));
}

#[test]
fn a_key_owner_replaces_a_squatter_but_not_the_reverse() {
    /// Keys `SHA-256("home/" ‖ peer id)` belong to that peer.
    struct Homes;
    fn home(peer: &PeerId) -> Key {
        let mut name = b"home/".to_vec();
        name.extend_from_slice(peer.as_bytes());
        Key::for_record(&name)
    }
    impl p2p_foundation_dht::Validator for Homes {
        fn is_owner(&self, record: &Record, signer: &PeerId) -> bool {
            record.key == home(signer)
        }
    }
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut dht = node(1, now, wall);
    dht.set_validator(Homes);
    let later = wall + Duration::from_secs(600);
    let key = home(&kp(2).peer_id());

    // A stranger stores first under peer 2's key, with a high sequence number.
    let squat = signed(3, key, "squat", 1_000, later);
    assert!(store(&mut dht, now, 3, squat));
    // The owner replaces it, whatever its own sequence number.
    let owned = signed(2, key, "mine", 1, later);
    assert!(store(&mut dht, now, 2, owned.clone()));
    assert_eq!(find_value(&mut dht, now, key).as_deref(), Some(&owned));
    // The stranger cannot take it back, and the owner's own rules still hold.
    assert!(!store(
        &mut dht,
        now,
        3,
        signed(3, key, "again", 2_000, later)
    ));
    assert!(!store(&mut dht, now, 2, signed(2, key, "older", 0, later)));
    assert_eq!(find_value(&mut dht, now, key).as_deref(), Some(&owned));

    // Without an owner the first signer keeps the key (the default validator).
    let mut plain = node(1, now, wall);
    assert!(store(&mut plain, now, 3, signed(3, key, "squat", 1, later)));
    assert!(!store(&mut plain, now, 2, signed(2, key, "mine", 1, later)));
}
