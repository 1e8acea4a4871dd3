//! State-machine tests: small networks driven with zero latency and explicit time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_foundation_identity::{Keypair, PeerId, Signature};

use crate::*;

type DropFn = Box<dyn Fn(usize, usize, &Rpc) -> bool>;

struct Net {
    nodes: Vec<Gossip>,
    ids: Vec<PeerId>,
    now: Instant,
    events: Vec<Vec<Event>>,
    drop: Option<DropFn>,
}

impl Net {
    fn new(n: usize, config: Config) -> Self {
        let now = Instant::now();
        let mut nodes = Vec::new();
        let mut ids = Vec::new();
        for i in 0..n {
            let kp = Keypair::from_secret_bytes(seed(i));
            ids.push(kp.peer_id());
            nodes.push(Gossip::new(kp, config.clone(), i as u64, now).unwrap());
        }
        Self {
            nodes,
            ids,
            now,
            events: vec![Vec::new(); n],
            drop: None,
        }
    }

    fn idx(&self, p: &PeerId) -> usize {
        self.ids.iter().position(|x| x == p).unwrap()
    }

    fn connect(&mut self, a: usize, b: usize) {
        let now = self.now;
        let (pa, pb) = (self.ids[a], self.ids[b]);
        self.nodes[a].handle_input(
            now,
            Input::PeerConnected {
                peer: pb,
                ip: None,
                outbound: true,
            },
        );
        self.nodes[b].handle_input(
            now,
            Input::PeerConnected {
                peer: pa,
                ip: None,
                outbound: false,
            },
        );
    }

    fn full_mesh(&mut self) {
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                self.connect(a, b);
            }
        }
    }

    /// Routes every pending frame until the network is quiet.
    fn pump(&mut self) {
        let now = self.now;
        let mut queue: VecDeque<(usize, usize, Rpc)> = VecDeque::new();
        loop {
            for i in 0..self.nodes.len() {
                loop {
                    match self.nodes[i].poll_output() {
                        Output::Send { to, rpc } => {
                            let j = self.idx(&to);
                            if self.drop.as_ref().is_some_and(|d| d(i, j, &rpc)) {
                                continue;
                            }
                            queue.push_back((i, j, rpc));
                        }
                        Output::Event(e) => self.events[i].push(e),
                        Output::Timeout(_) => break,
                    }
                }
            }
            if queue.is_empty() {
                return;
            }
            while let Some((from, to, rpc)) = queue.pop_front() {
                let from = self.ids[from];
                self.nodes[to].handle_input(now, Input::Rpc { from, rpc });
            }
        }
    }

    /// Advances time in 100 ms steps, firing timers and pumping.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(100);
            let now = self.now;
            for n in &mut self.nodes {
                n.handle_input(now, Input::Timeout);
            }
            self.pump();
        }
    }

    fn subscribe_all(&mut self, topic: &Topic) {
        let now = self.now;
        for n in &mut self.nodes {
            n.subscribe(now, topic.clone());
        }
        self.pump();
    }

    fn messages(&self, i: usize) -> Vec<Arc<Message>> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Message { message, .. } => Some(Arc::clone(message)),
                _ => None,
            })
            .collect()
    }
}

fn seed(i: usize) -> [u8; 32] {
    let mut s = [7u8; 32];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s
}

fn topic() -> Topic {
    Topic::new("topic/test").unwrap()
}

#[test]
fn meshes_form_within_bounds_and_everyone_gets_every_message_once() {
    let mut net = Net::new(30, Config::default());
    net.full_mesh();
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(5));
    for n in &net.nodes {
        let m = n.mesh_peers(&topic()).len();
        assert!((4..=12).contains(&m), "mesh of {m} peers");
    }
    let now = net.now;
    let id = net.nodes[3].publish(now, topic(), b"x".to_vec()).unwrap();
    net.pump();
    for i in 0..30 {
        let got = net.messages(i);
        if i == 3 {
            assert!(got.is_empty(), "own messages are not delivered back");
        } else {
            assert_eq!(got.len(), 1, "node {i}");
            assert_eq!(got[0].data, b"x");
        }
    }
    assert!(
        net.nodes
            .iter()
            .map(|n| n.metrics().duplicates)
            .sum::<u64>()
            > 0
    );
    assert_eq!(
        id,
        MessageId::from_author_seq(&net.ids[3], got_seq(&net, 0))
    );
}

fn got_seq(net: &Net, i: usize) -> u64 {
    net.messages(i)[0].seq
}

#[test]
fn lost_copies_are_repaired_through_ihave_iwant() {
    let mut net = Net::new(20, Config::default());
    net.full_mesh();
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(3));
    // Node 19 loses every forwarded copy of the message; only gossip can bring it.
    net.drop = Some(Box::new(|_, to, rpc| {
        to == 19 && matches!(rpc, Rpc::Publish { .. })
    }));
    let now = net.now;
    net.nodes[0].publish(now, topic(), b"r".to_vec()).unwrap();
    net.pump();
    assert!(net.messages(19).is_empty());
    // Let IWANT replies through again (the copies on mesh paths stay lost).
    let asked = std::rc::Rc::new(std::cell::Cell::new(false));
    let a2 = asked.clone();
    net.drop = Some(Box::new(move |_, to, rpc| {
        if to != 19 {
            return false;
        }
        if let Rpc::Publish { .. } = rpc {
            // The first copy after an IWANT is let through.
            return !a2.get();
        }
        false
    }));
    // Mark that 19 has asked: look for IWANT from 19 by running until its metric says so.
    for _ in 0..30 {
        net.run(Duration::from_millis(100));
        if net.nodes.iter().any(|n| n.metrics().iwant_served > 0) {
            asked.set(true);
        }
        if !net.messages(19).is_empty() {
            break;
        }
        if asked.get() {
            continue;
        }
    }
    // Replies to IWANT may have been dropped before `asked` flipped; the next IHAVE re-asks.
    net.run(Duration::from_secs(3));
    assert_eq!(net.messages(19).len(), 1);
    assert!(net.nodes[19].metrics().repaired >= 1);
}

#[test]
fn bad_signatures_are_dropped_scored_and_graylist_the_sender() {
    let mut net = Net::new(4, Config::default());
    net.full_mesh();
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(2));
    let now = net.now;
    let attacker = Keypair::from_secret_bytes(seed(2));
    let mut m = Message::sign(&attacker, 1, topic(), AckRequest::None, b"evil".to_vec());
    m.signature = Signature::from_bytes([3; 64]);
    net.nodes[0].handle_input(
        now,
        Input::Rpc {
            from: net.ids[2],
            rpc: Rpc::Publish {
                hops: 0,
                msg: Arc::new(m),
            },
        },
    );
    net.pump();
    assert!(net.messages(0).is_empty());
    assert_eq!(net.nodes[0].metrics().invalid_signature, 1);
    assert!(net.nodes[0].peer_score(&net.ids[2], now) <= Config::default().thresholds.graylist);
    // A valid message from the graylisted peer is now ignored.
    let good = Message::sign(&attacker, 2, topic(), AckRequest::None, b"ok".to_vec());
    net.nodes[0].handle_input(
        now,
        Input::Rpc {
            from: net.ids[2],
            rpc: Rpc::Publish {
                hops: 0,
                msg: Arc::new(good),
            },
        },
    );
    assert!(net.nodes[0].metrics().graylisted >= 1);
    // A forged copy does not poison the id: the genuine message is still accepted.
    let honest = Keypair::from_secret_bytes(seed(1));
    let mut forged = Message::sign(&honest, 99, topic(), AckRequest::None, b"real".to_vec());
    let genuine = forged.clone();
    forged.data = b"fake".to_vec();
    net.nodes[0].handle_input(
        now,
        Input::Rpc {
            from: net.ids[3],
            rpc: Rpc::Publish {
                hops: 0,
                msg: Arc::new(forged),
            },
        },
    );
    net.nodes[0].handle_input(
        now,
        Input::Rpc {
            from: net.ids[1],
            rpc: Rpc::Publish {
                hops: 0,
                msg: Arc::new(genuine),
            },
        },
    );
    net.pump();
    let got = net.messages(0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"real");
}

#[test]
fn validator_verdicts_feed_scoring() {
    let config = Config {
        validator: Some(Arc::new(|m: &Message| match m.data.first() {
            Some(b'r') => Acceptance::Reject,
            Some(b'i') => Acceptance::Ignore,
            _ => Acceptance::Accept,
        })),
        ..Config::default()
    };
    let mut net = Net::new(2, config);
    net.full_mesh();
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(2));
    let now = net.now;
    for data in [&b"accept"[..], b"ignore", b"reject"] {
        net.nodes[1].publish(now, topic(), data.to_vec()).unwrap();
    }
    net.pump();
    let got = net.messages(0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"accept");
    let m = net.nodes[0].metrics();
    assert_eq!((m.rejected, m.ignored), (1, 1));
    assert!(net.nodes[0].peer_score(&net.ids[1], now) < 0.0);
}

#[test]
fn asynchronous_validation_holds_messages_until_the_verdict() {
    // Node 1 defers every message; 0 publishes; 2 hangs off 1 only, so it can get a message
    // only if 1 forwards it.
    let deferring = Config {
        validator: Some(Arc::new(|_: &Message| Acceptance::Pending)),
        max_pending_validations: 2,
        validation_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let now = Instant::now();
    let mut net = Net::new(3, Config::default());
    let kp1 = Keypair::from_secret_bytes(seed(1));
    net.nodes[1] = Gossip::new(kp1, deferring, 1, now).unwrap();
    net.connect(0, 1);
    net.connect(1, 2);
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(2));
    let t = net.now;
    for data in [&b"accept"[..], b"reject", b"late", b"overflow"] {
        net.nodes[0].publish(t, topic(), data.to_vec()).unwrap();
    }
    net.pump();
    // The first two wait; the queue holds two, so the others are ignored.
    let pending: Vec<(MessageId, Arc<Message>)> = net.events[1]
        .iter()
        .filter_map(|e| match e {
            Event::ValidationPending { id, message, .. } => Some((*id, Arc::clone(message))),
            _ => None,
        })
        .collect();
    assert_eq!(pending.len(), 2);
    assert_eq!(net.nodes[1].pending_validations(), 2);
    let m = net.nodes[1].metrics();
    assert_eq!((m.validations_deferred, m.validation_queue_full), (2, 2));
    assert!(
        net.messages(1).is_empty(),
        "nothing delivered before a verdict"
    );
    assert!(
        net.messages(2).is_empty(),
        "nothing forwarded before a verdict"
    );
    // A duplicate of a waiting message is not validated again.
    let dup = Rpc::Publish {
        hops: 0,
        msg: Arc::clone(&pending[0].1),
    };
    let from = net.ids[0];
    net.nodes[1].handle_input(t, Input::Rpc { from, rpc: dup });
    assert_eq!(net.nodes[1].metrics().validations_deferred, 2);
    // Accept the first: delivered at 1 and forwarded to 2.
    let (accept, reject) = (pending[0].0, pending[1].0);
    assert!(net.nodes[1].report_validation(t, &accept, Acceptance::Accept));
    assert!(
        !net.nodes[1].report_validation(t, &accept, Acceptance::Accept),
        "decided once"
    );
    net.pump();
    assert_eq!(net.messages(1).len(), 1);
    assert_eq!(net.messages(2).len(), 1);
    assert_eq!(net.messages(2)[0].data, b"accept");
    // A verdict that never comes: ignored after the timeout.
    net.nodes[0].publish(t, topic(), b"never".to_vec()).unwrap();
    net.pump();
    assert_eq!(net.nodes[1].pending_validations(), 2);
    // Reject the second: dropped, the sender penalised.
    assert!(net.nodes[1].report_validation(t, &reject, Acceptance::Reject));
    net.pump();
    assert_eq!(net.nodes[1].metrics().rejected, 1);
    assert!(net.nodes[1].peer_score(&net.ids[0], t) < 0.0);
    assert_eq!(net.nodes[1].pending_validations(), 1);
    net.run(Duration::from_secs(4));
    assert_eq!(net.nodes[1].pending_validations(), 0);
    assert_eq!(net.nodes[1].metrics().validation_timeouts, 1);
    assert_eq!(
        net.messages(2).len(),
        1,
        "the timed-out message was not forwarded"
    );
}

#[test]
fn application_score_moves_the_peer_score() {
    let mut net = Net::new(2, Config::default());
    net.full_mesh();
    let now = net.now;
    let p1 = net.ids[1];
    let base = net.nodes[0].peer_score(&p1, now);
    assert!(net.nodes[0].set_application_score(now, &p1, -90.0));
    assert!(net.nodes[0].peer_score(&p1, now) <= base - 90.0);
    // Below the graylist threshold (-80): its frames are ignored.
    net.nodes[0].handle_input(
        now,
        Input::Rpc {
            from: p1,
            rpc: Rpc::Subscribe(topic()),
        },
    );
    assert_eq!(net.nodes[0].metrics().graylisted, 1);
    assert!(net.nodes[0].set_application_score(now, &p1, 0.0));
    assert_eq!(net.nodes[0].peer_score(&p1, now), base);
    let stranger = Keypair::from_secret_bytes([200; 32]).peer_id();
    assert!(!net.nodes[0].set_application_score(now, &stranger, 1.0));
}

#[test]
fn prune_carries_peer_exchange_accepted_only_from_trusted_peers() {
    // Node 0 keeps a mesh of at most 2 (D_hi); 1..=5 all graft it. It prunes the surplus and
    // offers the others (with the addresses it knows) in PX.
    let small = Config {
        mesh_n: 2,
        mesh_n_low: 1,
        mesh_n_high: 2,
        mesh_n_score: 1,
        mesh_outbound_min: 0,
        ..Config::default()
    };
    let now = Instant::now();
    let mut net = Net::new(6, Config::default());
    net.nodes[0] = Gossip::new(Keypair::from_secret_bytes(seed(0)), small, 0, now).unwrap();
    for i in 1..6 {
        // Inbound to 0: 0 refuses GRAFTs beyond D_hi from them.
        net.connect(i, 0);
    }
    for i in 1..6 {
        let addr: std::net::SocketAddr = format!("192.0.2.{i}:400{i}").parse().unwrap();
        assert!(net.nodes[0].set_peer_address(&net.ids[i], addr));
    }
    let mut prunes: Vec<(usize, Vec<PxPeer>)> = Vec::new();
    let collect = |net: &mut Net, prunes: &mut Vec<(usize, Vec<PxPeer>)>| {
        loop {
            let (to, rpc) = match net.nodes[0].poll_output() {
                Output::Send { to, rpc } => (to, rpc),
                Output::Event(_) => continue,
                Output::Timeout(_) => break,
            };
            if let Rpc::Prune { px, .. } = &rpc {
                prunes.push((net.idx(&to), px.clone()));
            }
            let j = net.idx(&to);
            let from = net.ids[0];
            net.nodes[j].handle_input(now, Input::Rpc { from, rpc });
        }
    };
    net.nodes[0].subscribe(now, topic());
    collect(&mut net, &mut prunes);
    for i in 1..6 {
        net.nodes[i].subscribe(now, topic());
        loop {
            match net.nodes[i].poll_output() {
                Output::Send { to, rpc } if to == net.ids[0] => {
                    let from = net.ids[i];
                    net.nodes[0].handle_input(now, Input::Rpc { from, rpc });
                }
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        collect(&mut net, &mut prunes);
    }
    assert!(!prunes.is_empty(), "the surplus was pruned");
    for (to, px) in &prunes {
        assert!(!px.is_empty(), "a PRUNE for a full mesh offers peers");
        for p in px {
            assert_ne!(p.peer, net.ids[*to], "never the pruned peer itself");
            let i = net.idx(&p.peer);
            assert_eq!(p.addr, Some(format!("192.0.2.{i}:400{i}").parse().unwrap()));
        }
    }
    assert!(net.nodes[0].metrics().px_sent > 0);
    // The pruned peers do not trust 0 yet (score 0 < accept_px = 10): PX refused.
    let (to, _) = prunes[0];
    assert!(net.nodes[to].metrics().px_refused >= 1);
    assert!(
        !net.events[to]
            .iter()
            .any(|e| matches!(e, Event::PeerExchange { .. }))
    );
    // Once 0 earned trust (here: the application vouches for it), its PX is reported.
    let p0 = net.ids[0];
    assert!(net.nodes[to].set_application_score(now, &p0, 20.0));
    let offered = PxPeer {
        peer: Keypair::from_secret_bytes([99; 32]).peer_id(),
        addr: Some("198.51.100.1:4001".parse().unwrap()),
    };
    net.nodes[to].handle_input(
        now,
        Input::Rpc {
            from: p0,
            rpc: Rpc::Prune {
                topic: topic(),
                backoff_secs: 60,
                px: vec![
                    offered,
                    PxPeer {
                        peer: net.ids[to],
                        addr: None,
                    },
                ],
            },
        },
    );
    let got: Vec<PxPeer> = std::iter::from_fn(|| match net.nodes[to].poll_output() {
        Output::Timeout(_) => None,
        o => Some(o),
    })
    .filter_map(|o| match o {
        Output::Event(Event::PeerExchange { peers, from, .. }) if from == p0 => Some(peers),
        _ => None,
    })
    .flatten()
    .collect();
    assert_eq!(got, vec![offered], "ourselves filtered out");
    // A PRUNE for a bad score carries no PX.
    let mut bad = Net::new(2, Config::default());
    bad.full_mesh();
    bad.subscribe_all(&topic());
    let t = bad.now;
    let p1 = bad.ids[1];
    bad.nodes[0].set_application_score(t, &p1, -5.0);
    bad.run(Duration::from_secs(2));
    assert!(!bad.nodes[0].mesh_peers(&topic()).contains(&p1));
    assert_eq!(bad.nodes[0].metrics().px_sent, 0);
}

#[test]
fn graft_during_backoff_is_penalised_and_pruned() {
    let mut net = Net::new(2, Config::default());
    net.full_mesh();
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(2));
    let now = net.now;
    // Node 1 tells 0 it pruned; 0 backs off. Now 0 (misbehaving) grafts 1 at once.
    net.nodes[1].handle_input(
        now,
        Input::Rpc {
            from: net.ids[0],
            rpc: Rpc::Prune {
                topic: topic(),
                backoff_secs: 60,
                px: Vec::new(),
            },
        },
    );
    net.nodes[1].unsubscribe(now, &topic());
    net.nodes[1].subscribe(now, topic());
    // 1 pruned 0 with backoff (unsubscribe); a graft from 0 within it is a violation.
    for _ in 0..8 {
        net.nodes[1].handle_input(
            now,
            Input::Rpc {
                from: net.ids[0],
                rpc: Rpc::Graft { topic: topic() },
            },
        );
    }
    assert!(!net.nodes[1].mesh_peers(&topic()).contains(&net.ids[0]));
    assert!(net.nodes[1].peer_score(&net.ids[0], now) < 0.0);
}

#[test]
fn acknowledgements_named_count_and_timeout() {
    let mut net = Net::new(12, Config::default());
    // A line-ish topology: acks must travel back over relays.
    for i in 0..11 {
        net.connect(i, i + 1);
    }
    net.connect(0, 5);
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(3));
    let now = net.now;
    let named = vec![net.ids[11], net.ids[6]];
    let id = net.nodes[0]
        .publish_with(
            now,
            topic(),
            b"a".to_vec(),
            PublishOptions {
                ack: AckRequest::Named(named),
                ack_deadline: None,
            },
        )
        .unwrap();
    net.pump();
    let confirmed = net.events[0].iter().find_map(|e| match e {
        Event::DeliveryConfirmed { id: i, ackers } if *i == id => Some(ackers.clone()),
        _ => None,
    });
    let ackers = confirmed.expect("named subscribers acknowledged");
    assert_eq!(ackers.len(), 2);

    let id2 = net.nodes[0]
        .publish_with(
            now,
            topic(),
            b"b".to_vec(),
            PublishOptions {
                ack: AckRequest::Count(5),
                ack_deadline: None,
            },
        )
        .unwrap();
    net.pump();
    assert!(net.events[0].iter().any(
        |e| matches!(e, Event::DeliveryConfirmed { id, ackers } if *id == id2 && ackers.len() >= 5)
    ));

    // A named peer that is not subscribed never acknowledges: the deadline reports it.
    let stranger = Keypair::from_secret_bytes([200; 32]).peer_id();
    let id3 = net.nodes[0]
        .publish_with(
            now,
            topic(),
            b"c".to_vec(),
            PublishOptions {
                ack: AckRequest::Named(vec![net.ids[3], stranger]),
                ack_deadline: Some(Duration::from_secs(2)),
            },
        )
        .unwrap();
    net.pump();
    net.run(Duration::from_secs(3));
    let timed_out = net.events[0].iter().find_map(|e| match e {
        Event::DeliveryTimedOut {
            id,
            ackers,
            missing,
        } if *id == id3 => Some((ackers.clone(), missing.clone())),
        _ => None,
    });
    let (ackers, missing) = timed_out.expect("deadline event");
    assert_eq!(ackers, vec![net.ids[3]]);
    assert_eq!(missing, vec![stranger]);
}

#[test]
fn fanout_publishes_without_subscribing() {
    let mut net = Net::new(10, Config::default());
    net.full_mesh();
    let now = net.now;
    for n in net.nodes.iter_mut().skip(1) {
        n.subscribe(now, topic());
    }
    net.pump();
    net.run(Duration::from_secs(2));
    let now = net.now;
    net.nodes[0].publish(now, topic(), b"f".to_vec()).unwrap();
    net.pump();
    for i in 1..10 {
        assert_eq!(net.messages(i).len(), 1, "node {i}");
    }
    assert!(!net.nodes[0].is_subscribed(&topic()));
    let err = net.nodes[0]
        .publish(now, Topic::new("nobody").unwrap(), vec![])
        .unwrap_err();
    assert!(matches!(err, GossipError::NoPeers { .. }), "{err}");
}

#[test]
fn subscription_events_and_peer_leaving() {
    let mut net = Net::new(2, Config::default());
    net.full_mesh();
    net.subscribe_all(&topic());
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Subscribed { peer, .. } if *peer == net.ids[1]))
    );
    let now = net.now;
    net.nodes[1].unsubscribe(now, &topic());
    net.pump();
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Unsubscribed { peer, .. } if *peer == net.ids[1]))
    );
    assert!(net.nodes[0].topic_peers(&topic()).is_empty());
}

#[test]
fn bad_input_is_dropped_counted_and_scored() {
    let config = Config {
        max_topics_per_peer: 16,
        max_ihave_len: 100,
        ..Config::default()
    };
    let mut net = Net::new(3, config);
    net.full_mesh();
    net.subscribe_all(&topic());
    let now = net.now;
    let (victim, attacker) = (0, net.ids[1]);
    // Malformed and oversized frames.
    net.nodes[victim].handle_frame(now, attacker, &[0, 0, 0, 3, 1, 99, 0]);
    net.nodes[victim].handle_frame(now, attacker, &[0xff, 0xff, 0xff, 0xff, 1, 1]);
    let m = net.nodes[victim].metrics();
    assert_eq!((m.malformed_frames, m.oversized_frames), (1, 1));
    // A flood of unknown topics: capped per peer.
    for i in 0..1000 {
        let t = Topic::new(&format!("spam/{i}")).unwrap();
        net.nodes[victim].handle_input(
            now,
            Input::Rpc {
                from: attacker,
                rpc: Rpc::Subscribe(t),
            },
        );
    }
    let m = net.nodes[victim].metrics();
    assert_eq!(m.unknown_topic + m.graylisted, 1000 - 15, "{m:?}");
    assert_eq!(
        net.nodes[victim]
            .topic_peers(&Topic::new("spam/0").unwrap())
            .len(),
        1
    );
    assert!(
        net.nodes[victim]
            .topic_peers(&Topic::new("spam/999").unwrap())
            .is_empty()
    );
    // IWANT floods for ids that do not exist (from another peer).
    let attacker = net.ids[2];
    for i in 0..50u32 {
        let ids = (0..100u32).map(|j| {
            let mut id = [0u8; 20];
            id[..4].copy_from_slice(&i.to_le_bytes());
            id[4..8].copy_from_slice(&j.to_le_bytes());
            MessageId(id)
        });
        net.nodes[victim].handle_input(
            now,
            Input::Rpc {
                from: attacker,
                rpc: Rpc::IWant { ids: ids.collect() },
            },
        );
    }
    let m = net.nodes[victim].metrics();
    assert!(m.iwant_unknown >= 500, "{m:?}");
    assert!(net.nodes[victim].peer_score(&attacker, now) < Config::default().thresholds.gossip);
    assert!(
        m.below_gossip_threshold > 0,
        "further IWANTs are ignored: {m:?}"
    );
    let (seen, cached, promises, peers) = net.nodes[victim].cache_sizes();
    assert!(seen == 0 && cached == 0 && promises == 0 && peers == 2);
}

#[test]
fn rate_limit_drops_floods() {
    let config = Config {
        rate_limit_frames_per_sec: 10.0,
        rate_limit_burst: 20.0,
        ..Config::default()
    };
    let mut net = Net::new(2, config);
    net.full_mesh();
    let now = net.now;
    for _ in 0..100 {
        net.nodes[0].handle_input(
            now,
            Input::Rpc {
                from: net.ids[1],
                rpc: Rpc::IWant { ids: vec![] },
            },
        );
    }
    assert_eq!(net.nodes[0].metrics().rate_limited, 80);
    // Tokens come back with time.
    let later = now + Duration::from_secs(1);
    net.nodes[0].handle_input(
        later,
        Input::Rpc {
            from: net.ids[1],
            rpc: Rpc::IWant { ids: vec![] },
        },
    );
    assert_eq!(net.nodes[0].metrics().rate_limited, 80);
}

#[test]
fn same_seed_same_outputs() {
    fn trace(seed_offset: u64) -> Vec<String> {
        let mut net = Net::new(15, Config::default());
        let now = net.now;
        for (i, n) in net.nodes.iter_mut().enumerate() {
            let kp = Keypair::from_secret_bytes(seed(i));
            *n = Gossip::new(kp, Config::default(), i as u64 + seed_offset, now).unwrap();
        }
        net.full_mesh();
        net.subscribe_all(&topic());
        net.run(Duration::from_secs(3));
        net.nodes
            .iter()
            .map(|n| format!("{:?}", n.mesh_peers(&topic())))
            .collect()
    }
    assert_eq!(trace(0), trace(0));
    assert_ne!(trace(0), trace(1000));
}

#[test]
fn config_is_validated() {
    let bad = Config {
        mesh_n_low: 8,
        ..Config::default()
    };
    assert!(matches!(
        Gossip::new(Keypair::from_secret_bytes([1; 32]), bad, 0, Instant::now()),
        Err(GossipError::InvalidConfig { .. })
    ));
    // The seen-cache must cover two message-cache histories.
    let short_seen = Config {
        history_length: 20,
        history_gossip: 20,
        seen_ttl: Duration::from_secs(39),
        ..Config::default()
    };
    assert!(
        Gossip::new(
            Keypair::from_secret_bytes([1; 32]),
            short_seen,
            0,
            Instant::now()
        )
        .is_err()
    );
    let long_history = Config {
        history_length: 20,
        history_gossip: 20,
        seen_ttl: Duration::from_secs(40),
        ..Config::default()
    };
    assert!(
        Gossip::new(
            Keypair::from_secret_bytes([1; 32]),
            long_history,
            0,
            Instant::now()
        )
        .is_ok()
    );
}

#[test]
fn our_own_message_relayed_back_late_is_not_delivered_to_us() {
    // After a partition heals, peers that got our message late advertise it for a whole
    // history; by then it may have left our caches. It must not come back to us as new.
    let config = Config {
        seen_ttl: Duration::from_secs(10),
        ..Config::default()
    };
    let mut net = Net::new(2, config);
    net.full_mesh();
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(2));
    let t = net.now;
    net.nodes[0].publish(t, topic(), b"mine".to_vec()).unwrap();
    net.pump();
    let echo = Arc::clone(&net.messages(1)[0]);
    net.run(Duration::from_secs(12));
    assert_eq!(net.nodes[0].cache_sizes().0, 0, "forgotten");
    let before = net.nodes[0].metrics().duplicates;
    let now = net.now;
    let from = net.ids[1];
    net.nodes[0].handle_input(
        now,
        Input::Rpc {
            from,
            rpc: Rpc::Publish { hops: 3, msg: echo },
        },
    );
    net.pump();
    assert!(net.messages(0).is_empty());
    assert_eq!(net.nodes[0].metrics().duplicates, before + 1);
}

#[test]
fn custom_message_ids_dedupe_by_content() {
    let config = Config {
        message_id: Some(Arc::new(|m: &Message| {
            let mut id = [0u8; 20];
            for (i, b) in m.data.iter().enumerate() {
                id[i % 20] ^= *b;
            }
            MessageId(id)
        })),
        ..Config::default()
    };
    let mut net = Net::new(3, config);
    net.full_mesh();
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(2));
    let now = net.now;
    net.nodes[1]
        .publish(now, topic(), b"same".to_vec())
        .unwrap();
    net.nodes[2]
        .publish(now, topic(), b"same".to_vec())
        .unwrap();
    net.pump();
    assert_eq!(
        net.messages(0).len(),
        1,
        "same content, same id: delivered once"
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Arbitrary frames, valid frames with mutations, and time jumps into a subscribed
        /// core: no panic, and the caches stay within their caps.
        #[test]
        fn core_survives_arbitrary_frames(
            frames in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..40),
        ) {
            let config = Config { max_seen: 32, max_cached_messages: 32, max_promises: 32, ..Config::default() };
            let mut net = Net::new(3, config);
            net.full_mesh();
            net.subscribe_all(&topic());
            let mut now = net.now;
            let kp = Keypair::from_secret_bytes(seed(1));
            let valid = crate::codec::encode(&Rpc::Publish {
                hops: 0,
                msg: Arc::new(Message::sign(&kp, 5, topic(), AckRequest::Count(2), b"v".to_vec())),
            });
            for (sel, bytes) in frames {
                now += Duration::from_millis(u64::from(sel) * 7);
                let from = net.ids[1 + usize::from(sel & 1)];
                if sel & 4 != 0 {
                    let mut f = valid.clone();
                    if !bytes.is_empty() {
                        let i = usize::from(bytes[0]) % f.len();
                        f[i] ^= bytes.get(1).copied().unwrap_or(1);
                    }
                    net.nodes[0].handle_frame(now, from, &f);
                } else {
                    net.nodes[0].handle_frame(now, from, &bytes);
                }
                net.nodes[0].handle_input(now, Input::Timeout);
                while !matches!(net.nodes[0].poll_output(), Output::Timeout(_)) {}
            }
            let (seen, cached, promises, peers) = net.nodes[0].cache_sizes();
            prop_assert!(seen <= 32 && cached <= 32 && promises <= 32 && peers == 2);
        }
    }
}

#[test]
fn outbound_quota_is_kept() {
    let mut net = Net::new(21, Config::default());
    // Node 0 dialled 1..=3; 4..=20 dialled node 0. Everyone else is fully connected.
    for i in 1..21 {
        if i <= 3 {
            net.connect(0, i);
        } else {
            net.connect(i, 0);
        }
        for j in i + 1..21 {
            net.connect(i, j);
        }
    }
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(5));
    let outbound = net.nodes[0]
        .mesh_peers(&topic())
        .iter()
        .filter(|p| net.ids[1..=3].contains(p))
        .count();
    assert!(
        outbound >= 2,
        "mesh {:?} keeps the outbound quota",
        net.nodes[0].mesh_peers(&topic())
    );
}

#[test]
fn opportunistic_grafting_adds_well_scored_peers() {
    let config = Config {
        opportunistic_graft_ticks: 3,
        ..Config::default()
    };
    let mut net = Net::new(20, config);
    net.full_mesh();
    net.subscribe_all(&topic());
    net.run(Duration::from_secs(2));
    let mesh_before: Vec<PeerId> = net.nodes[0].mesh_peers(&topic()).to_vec();
    // Peers outside node 0's mesh publish: node 0 gets their messages first (flood
    // publishing), so their P2 rises while the mesh peers' stays at 0.
    let outside: Vec<usize> = (1..20)
        .filter(|i| !mesh_before.contains(&net.ids[*i]))
        .collect();
    for _ in 0..5 {
        let now = net.now;
        for &i in &outside {
            net.nodes[i].publish(now, topic(), vec![i as u8]).unwrap();
        }
        net.pump();
    }
    net.run(Duration::from_secs(3));
    let mesh_after = net.nodes[0].mesh_peers(&topic());
    let grafted = mesh_after
        .iter()
        .filter(|p| !mesh_before.contains(p))
        .count();
    assert!(
        grafted >= 1,
        "opportunistic grafts: before {mesh_before:?}, after {mesh_after:?}"
    );
}

#[test]
fn a_peer_that_grafted_before_subscribing_leaves_the_mesh_on_disconnect() {
    let mut net = Net::new(2, Config::default());
    net.full_mesh();
    let now = net.now;
    net.nodes[0].subscribe(now, topic());
    // Node 1 grafts without having announced a subscription.
    net.nodes[0].handle_input(
        now,
        Input::Rpc {
            from: net.ids[1],
            rpc: Rpc::Graft { topic: topic() },
        },
    );
    assert_eq!(net.nodes[0].mesh_peers(&topic()), &[net.ids[1]]);
    net.nodes[0].handle_input(now, Input::PeerDisconnected { peer: net.ids[1] });
    assert!(net.nodes[0].mesh_peers(&topic()).is_empty());
}

#[test]
fn an_unanswered_iwant_is_one_broken_promise() {
    let mut net = Net::new(2, Config::default());
    net.full_mesh();
    net.subscribe_all(&topic());
    // Node 1's answers never arrive.
    net.drop = Some(Box::new(|from, _, rpc| {
        from == 1 && matches!(rpc, Rpc::Publish { .. })
    }));
    let now = net.now;
    let ids: Vec<MessageId> = (0..5u8).map(|i| MessageId([i + 1; 20])).collect();
    net.nodes[0].handle_input(
        now,
        Input::Rpc {
            from: net.ids[1],
            rpc: Rpc::IHave {
                topic: topic(),
                ids,
            },
        },
    );
    net.pump();
    net.run(Duration::from_secs(5));
    assert_eq!(net.nodes[0].metrics().broken_promises, 1);
    assert_eq!(net.nodes[1].metrics().iwant_unknown, 5);
}

#[test]
fn the_default_id_is_memoised_and_follows_field_changes() {
    let kp = Keypair::from_secret_bytes([3; 32]);
    let mut m = Message::sign(&kp, 7, topic(), AckRequest::None, b"x".to_vec());
    assert_eq!(m.default_id(), MessageId::from_author_seq(&kp.peer_id(), 7));
    assert_eq!(m.default_id(), MessageId::from_author_seq(&kp.peer_id(), 7));
    m.seq = 8;
    assert_eq!(m.default_id(), MessageId::from_author_seq(&kp.peer_id(), 8));
    let other = Keypair::from_secret_bytes([4; 32]).peer_id();
    m.author = other;
    assert_eq!(m.default_id(), MessageId::from_author_seq(&other, 8));
    // Equality ignores the memo.
    let fresh = Message::sign(&kp, 7, topic(), AckRequest::None, b"x".to_vec());
    let used = fresh.clone();
    let _ = used.default_id();
    assert_eq!(fresh, used);
}
