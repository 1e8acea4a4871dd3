//! Codec round trips and never-panics properties for every decoder.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2p_foundation_dht::driver::{DatagramError, decode_udp_datagram, encode_udp_datagram};
use p2p_foundation_dht::message::{FRAME_HEADER_LEN, frame_body_len};
use p2p_foundation_dht::{
    Config, Contact, Dht, DhtError, Message, Output, ProviderRecord, Record, Request, RequestId,
    Response, RoutingSnapshot,
};
use p2p_foundation_identity::{Key, Keypair, Signed};
use proptest::prelude::*;

fn contact(n: u8) -> Contact {
    Contact::new(
        Keypair::from_secret_bytes([n; 32]).peer_id(),
        SocketAddr::from(([10, n, 0, 1], 4000 + u16::from(n))),
    )
}

fn samples() -> Vec<Message> {
    let kp = Keypair::from_secret_bytes([3; 32]);
    let key = Key::for_record(b"k");
    let exp = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let record = Signed::sign(&kp, Record::new(key, vec![1, 2, 3]), 5, exp).unwrap();
    let provider = Signed::sign(
        &kp,
        ProviderRecord::new(key, vec!["[2001:db8::1]:9000".parse().unwrap()]),
        1,
        exp,
    )
    .unwrap();
    let id = RequestId(0x0123_4567_89ab_cdef);
    let closer = vec![contact(1), contact(2)];
    vec![
        Message::Request {
            id,
            body: Request::Ping,
        },
        Message::Request {
            id,
            body: Request::FindNode { target: key },
        },
        Message::Request {
            id,
            body: Request::FindValue { key },
        },
        Message::Request {
            id,
            body: Request::Store {
                record: Box::new(record.clone()),
            },
        },
        Message::Request {
            id,
            body: Request::AddProvider {
                record: Box::new(provider.clone()),
            },
        },
        Message::Request {
            id,
            body: Request::GetProviders { key },
        },
        Message::Response {
            id,
            body: Response::Pong,
        },
        Message::Response {
            id,
            body: Response::Nodes {
                closer: closer.clone(),
            },
        },
        Message::Response {
            id,
            body: Response::Value {
                record: Some(Box::new(record)),
                closer: closer.clone(),
            },
        },
        Message::Response {
            id,
            body: Response::Value {
                record: None,
                closer: vec![],
            },
        },
        Message::Response {
            id,
            body: Response::Providers {
                providers: vec![provider],
                closer,
            },
        },
        Message::Response {
            id,
            body: Response::Stored { accepted: true },
        },
    ]
}

#[test]
fn every_message_round_trips() {
    for msg in samples() {
        let frame = msg.encode(64 * 1024).unwrap();
        assert_eq!(frame[4], 1, "version byte");
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len + 4, frame.len());
        assert_eq!(Message::decode(&frame, 64 * 1024).unwrap(), msg);
        assert_eq!(Message::decode_body(&frame[4..]).unwrap(), msg);
        // Every strict prefix is refused.
        for cut in 0..frame.len() {
            assert!(Message::decode(&frame[..cut], 64 * 1024).is_err());
        }
    }
}

#[test]
fn known_bytes() {
    // PING with id 1: length 3, version 1, variant 0 (Request), id 1, variant 0 (Ping).
    let ping = Message::Request {
        id: RequestId(1),
        body: Request::Ping,
    };
    assert_eq!(ping.encode(1024).unwrap(), vec![0, 0, 0, 4, 1, 0, 1, 0]);
    // PONG answering id 300 (varint 0xfb 0x2c 0x01).
    let pong = Message::Response {
        id: RequestId(300),
        body: Response::Pong,
    };
    assert_eq!(
        pong.encode(1024).unwrap(),
        vec![0, 0, 0, 6, 1, 1, 0xfb, 0x2c, 0x01, 0]
    );
}

#[test]
fn limits_are_enforced_both_ways() {
    let big = Message::Response {
        id: RequestId(1),
        body: Response::Nodes {
            closer: vec![contact(1); 300],
        },
    };
    assert!(matches!(
        big.encode(8 * 1024),
        Err(DhtError::FrameTooLarge { .. })
    ));
    let frame = big.encode(1 << 20).unwrap();
    assert!(matches!(
        Message::decode(&frame, 8 * 1024),
        Err(DhtError::FrameTooLarge { .. })
    ));
    // 300 contacts fit in 1 MiB, but more than 256 per list is refused.
    assert!(matches!(
        Message::decode(&frame, 1 << 20),
        Err(DhtError::Malformed { .. })
    ));
    assert!(matches!(
        frame_body_len([0xff; 4], 64 * 1024),
        Err(DhtError::FrameTooLarge { .. })
    ));
    assert!(matches!(
        frame_body_len([0; 4], 64 * 1024),
        Err(DhtError::Malformed { .. })
    ));
    assert_eq!(FRAME_HEADER_LEN, 5);
    let mut v2 = Message::Request {
        id: RequestId(1),
        body: Request::Ping,
    }
    .encode(1024)
    .unwrap();
    v2[4] = 2;
    assert!(matches!(
        Message::decode(&v2, 1024),
        Err(DhtError::UnsupportedVersion { found: 2, .. })
    ));
}

#[test]
fn udp_datagrams_authenticate_sender_and_recipient() {
    let (a, b, c) = (
        Keypair::from_secret_bytes([1; 32]),
        Keypair::from_secret_bytes([2; 32]),
        Keypair::from_secret_bytes([3; 32]),
    );
    let frame = Message::Request {
        id: RequestId(9),
        body: Request::Ping,
    }
    .encode(1024)
    .unwrap();
    let datagram = encode_udp_datagram(&a, b.peer_id(), 77, false, frame.clone()).unwrap();
    let now = SystemTime::now();
    let got = decode_udp_datagram(&datagram, &b.peer_id(), now).unwrap();
    assert_eq!(
        (got.from, got.nonce, got.response, got.frame),
        (a.peer_id(), 77, false, frame)
    );
    assert_eq!(
        decode_udp_datagram(&datagram, &c.peer_id(), now),
        Err(DatagramError::Misaddressed)
    );
    assert_eq!(
        decode_udp_datagram(&datagram, &b.peer_id(), now + Duration::from_secs(61)),
        Err(DatagramError::BadSignature)
    );
    let mut tampered = datagram.clone();
    let last = tampered.len() - 70;
    tampered[last] ^= 1;
    assert!(decode_udp_datagram(&tampered, &b.peer_id(), now).is_err());
    assert_eq!(
        decode_udp_datagram(b"nonsense", &b.peer_id(), now),
        Err(DatagramError::Malformed)
    );
}

#[test]
fn snapshot_round_trips() {
    let snapshot = RoutingSnapshot {
        contacts: (1..30).map(contact).collect(),
    };
    let bytes = snapshot.encode().unwrap();
    assert_eq!(RoutingSnapshot::decode(&bytes).unwrap(), snapshot);
    assert!(RoutingSnapshot::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(RoutingSnapshot::decode(&[]).is_err());
    // Restoring it fills a fresh node's table.
    let now = Instant::now();
    let mut dht = Dht::new(
        Keypair::from_secret_bytes([99; 32]).peer_id(),
        Config::default(),
        1,
        now,
        SystemTime::now(),
    );
    dht.restore_routing(now, &snapshot);
    assert_eq!(dht.routing_table_len(), 29);
    assert_eq!(dht.routing_snapshot().contacts.len(), 29);
}

proptest! {
    #[test]
    fn frame_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::decode(&bytes, 64 * 1024);
        let _ = Message::decode_body(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(pick in 0usize..12, flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8)) {
        let mut frame = samples()[pick].encode(64 * 1024).unwrap();
        for (pos, x) in flips {
            let i = usize::from(pos) % frame.len();
            frame[i] ^= x;
        }
        if let Ok(msg) = Message::decode(&frame, 64 * 1024) {
            prop_assert_eq!(msg.encode(64 * 1024).unwrap(), frame);
        }
    }

    #[test]
    fn snapshot_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = RoutingSnapshot::decode(&bytes);
    }

    #[test]
    fn datagram_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let local = Keypair::from_secret_bytes([1; 32]).peer_id();
        let _ = decode_udp_datagram(&bytes, &local, SystemTime::now());
    }

    #[test]
    fn core_survives_arbitrary_frames(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20)) {
        let now = Instant::now();
        let peer = Keypair::from_secret_bytes([2; 32]).peer_id();
        let addr: SocketAddr = "192.0.2.2:4000".parse().unwrap();
        let mut dht = Dht::new(Keypair::from_secret_bytes([1; 32]).peer_id(), Config::default(), 1, now, SystemTime::now());
        dht.add_contact(now, Contact::new(peer, addr));
        let _ = dht.find_node(now, Key::for_record(b"x"));
        for f in frames {
            dht.handle_frame(now, peer, addr, &f);
            while !matches!(dht.poll_output(), Output::Timeout(_)) {}
        }
        prop_assert!(dht.stats().malformed + dht.stats().oversized + dht.stats().responses_received
            + dht.stats().requests_received + dht.stats().unknown_responses >= 1);
    }
}

#[test]
fn documented_layouts() {
    // FIND_NODE for the all-0x11 key, id 5.
    let target = Key::from_bytes([0x11; 32]);
    let find = Message::Request {
        id: RequestId(5),
        body: Request::FindNode { target },
    };
    let mut want = vec![0, 0, 0, 37, 1, 0, 5, 1, 32];
    want.extend([0x11; 32]);
    assert_eq!(find.encode(1024).unwrap(), want);
    // NODES with one IPv4 and one IPv6 contact, id 5.
    let a = Keypair::from_secret_bytes([1; 32]).peer_id();
    let v4 = Contact::new(a, "192.0.2.1:4000".parse().unwrap());
    let v6 = Contact::new(a, "[2001:db8::1]:443".parse().unwrap());
    let nodes = Message::Response {
        id: RequestId(5),
        body: Response::Nodes {
            closer: vec![v4, v6],
        },
    };
    let frame = nodes.encode(1024).unwrap();
    let mut body = vec![1, 1, 5, 1, 2];
    body.push(32);
    body.extend(a.as_bytes());
    body.extend([0, 192, 0, 2, 1, 0xfb, 0xa0, 0x0f]); // V4, 192.0.2.1, port 4000 (0xfb + u16 LE)
    body.push(32);
    body.extend(a.as_bytes());
    body.push(1); // V6
    body.extend(
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    body.extend([0xfb, 0xbb, 0x01]); // port 443
    assert_eq!(&frame[4..], &body[..]);
    // STORED accepted, id 5.
    let stored = Message::Response {
        id: RequestId(5),
        body: Response::Stored { accepted: true },
    };
    assert_eq!(
        stored.encode(1024).unwrap(),
        vec![0, 0, 0, 5, 1, 1, 5, 4, 1]
    );
}

#[test]
fn contacts_with_invalid_keys_are_refused_and_keys_are_derived() {
    use p2p_foundation_identity::PeerId;
    let a = Keypair::from_secret_bytes([1; 32]).peer_id();
    let contact = Contact::new(a, "192.0.2.1:4000".parse().unwrap());
    // The key is the hash of the peer id, whatever the sender might have wanted.
    assert_eq!(*contact.key(), a.kad_key());
    let msg = Message::Response {
        id: RequestId(5),
        body: Response::Nodes {
            closer: vec![contact],
        },
    };
    let frame = msg.encode(1024).unwrap();
    let back = Message::decode(&frame, 1024).unwrap();
    let Message::Response {
        body: Response::Nodes { closer },
        ..
    } = back
    else {
        panic!()
    };
    assert_eq!(*closer[0].key(), a.kad_key());
    // Replace the peer id with 32 bytes that are not an Ed25519 point: refused.
    let invalid = (0u8..=255)
        .map(|i| {
            let mut b = [i; 32];
            b[0] = 2;
            b
        })
        .find(|b| PeerId::from_bytes(*b).is_err())
        .expect("some byte strings are not points");
    let pos = frame.windows(32).position(|w| w == a.as_bytes()).unwrap();
    let mut bad = frame.clone();
    bad[pos..pos + 32].copy_from_slice(&invalid);
    assert!(matches!(
        Message::decode(&bad, 1024),
        Err(DhtError::Malformed { .. })
    ));
}
