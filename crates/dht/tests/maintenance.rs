//! Timers: bucket refresh, request timeouts, least-recently-seen eviction through the core API.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use p2p_foundation_dht::{Config, Contact, Dht, Event, Message, Output, QueryResult, Request};
use p2p_foundation_identity::{Key, Keypair};

fn contact(n: u32) -> Contact {
    let mut s = [3u8; 32];
    s[..4].copy_from_slice(&n.to_be_bytes());
    Contact::new(
        Keypair::from_secret_bytes(s).peer_id(),
        SocketAddr::from(([10, (n >> 8) as u8, n as u8, 1], 4000)),
    )
}

fn drain(dht: &mut Dht) -> (Vec<Message>, Vec<Event>, Instant) {
    let mut sends = Vec::new();
    let mut events = Vec::new();
    loop {
        match dht.poll_output() {
            Output::Send { msg, .. } => sends.push(msg),
            Output::Event(e) => events.push(e),
            Output::Timeout(at) => return (sends, events, at),
        }
    }
}

#[test]
fn idle_buckets_are_refreshed() {
    let now = Instant::now();
    let mut dht = Dht::new(
        Keypair::from_secret_bytes([1; 32]).peer_id(),
        Config::default(),
        1,
        now,
        SystemTime::now(),
    );
    for n in 0..10 {
        dht.add_contact(now, contact(n));
    }
    let (sends, _, _) = drain(&mut dht);
    assert!(sends.is_empty());
    // Nothing before the refresh interval...
    dht.handle_timeout(now + Duration::from_secs(600));
    assert!(drain(&mut dht).0.is_empty());
    // ...then a FIND_NODE for a random key in every idle bucket.
    dht.handle_timeout(now + Duration::from_secs(15 * 60 + 60));
    let (sends, _, _) = drain(&mut dht);
    assert!(!sends.is_empty());
    assert!(sends.iter().all(|m| matches!(
        m,
        Message::Request {
            body: Request::FindNode { .. },
            ..
        }
    )));
}

#[test]
fn unanswered_requests_time_out_and_lookups_still_end() {
    let now = Instant::now();
    let mut dht = Dht::new(
        Keypair::from_secret_bytes([1; 32]).peer_id(),
        Config::default(),
        1,
        now,
        SystemTime::now(),
    );
    for n in 0..5 {
        dht.add_contact(now, contact(n));
    }
    let q = dht.find_node(now, Key::for_record(b"t"));
    let (sends, _, at) = drain(&mut dht);
    assert_eq!(sends.len(), 3, "alpha = 3 in flight");
    assert_eq!(
        at,
        now + Duration::from_secs(10),
        "next timer is the request timeout"
    );
    // Nobody answers: after each timeout the next contacts are asked, then the lookup ends.
    let mut t = now;
    let mut finished = None;
    for _ in 0..5 {
        t += Duration::from_secs(10);
        dht.handle_timeout(t);
        let (_, events, _) = drain(&mut dht);
        if let Some(Event::QueryFinished { id, result, stats }) = events.into_iter().next() {
            finished = Some((id, result, stats));
            break;
        }
    }
    let (id, result, stats) = finished.expect("lookup ended");
    assert_eq!(id, q);
    assert!(matches!(result, QueryResult::FindNode { closest } if closest.is_empty()));
    assert_eq!(stats.failures, 5);
    assert_eq!(dht.stats().request_failures, 5);
    // Three failures (max_failures) with no replacement waiting remove an entry; one so far.
    assert_eq!(dht.routing_table_len(), 5);
}
