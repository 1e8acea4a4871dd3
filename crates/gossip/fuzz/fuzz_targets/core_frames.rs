//! Arbitrary frames from two peers into a subscribed core, with time moving on: the core
//! must never panic and its caches must stay within their caps. Messages whose payload starts
//! with an odd byte are deferred (asynchronous validation); selector bits report verdicts.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

use p2p_foundation_gossip::{Acceptance, Config, Event, Gossip, Input, Message, Output, Topic};
use p2p_foundation_identity::Keypair;

fuzz_target!(|data: &[u8]| {
    let validator = Arc::new(|m: &Message| match m.data.first() {
        Some(b) if b % 2 == 1 => Acceptance::Pending,
        Some(0) => Acceptance::Reject,
        _ => Acceptance::Accept,
    });
    let config = Config {
        max_seen: 64,
        max_cached_messages: 64,
        max_promises: 64,
        max_pending_validations: 8,
        validator: Some(validator),
        ..Config::default()
    };
    let mut pending = Vec::new();
    let mut now = Instant::now();
    let mut core = Gossip::new(Keypair::from_secret_bytes([1; 32]), config, 7, now).expect("config");
    let peers = [Keypair::from_secret_bytes([2; 32]).peer_id(), Keypair::from_secret_bytes([3; 32]).peer_id()];
    for (i, p) in peers.iter().enumerate() {
        core.handle_input(now, Input::PeerConnected { peer: *p, ip: None, outbound: i == 0 });
    }
    core.subscribe(now, Topic::new("fuzz").expect("topic"));
    // Input: [selector][len][frame bytes]...
    let mut rest = data;
    while rest.len() >= 2 {
        let (sel, len) = (rest[0], usize::from(rest[1]));
        rest = &rest[2..];
        let take = len.min(rest.len());
        let (frame, tail) = rest.split_at(take);
        rest = tail;
        now += Duration::from_millis(u64::from(sel >> 2) * 10);
        core.handle_frame(now, peers[usize::from(sel & 1)], frame);
        if sel & 2 != 0 {
            core.handle_input(now, Input::Timeout);
        }
        loop {
            match core.poll_output() {
                Output::Timeout(_) => break,
                Output::Event(Event::ValidationPending { id, .. }) => pending.push(id),
                _ => {}
            }
        }
        if sel & 0x40 != 0 {
            if let Some(id) = pending.pop() {
                let verdict = match sel >> 7 {
                    0 => Acceptance::Accept,
                    _ => Acceptance::Reject,
                };
                core.report_validation(now, &id, verdict);
                while !matches!(core.poll_output(), Output::Timeout(_)) {}
            }
        }
        assert!(core.pending_validations() <= 8);
    }
    let (seen, cached, promises, known) = core.cache_sizes();
    assert!(seen <= 64 && cached <= 64 && promises <= 64 && known <= 2);
});
