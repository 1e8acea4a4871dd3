//! Simulation scenarios shared by `tests/sim.rs` (which asserts) and `benches/gossip.rs`
//! (which reports): gossip cores wrapped in a `p2p_foundation_sim::SimNode` adapter.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_foundation_gossip::{
    AckRequest, Config, Event, Gossip, Input, Message, MessageId, Output, Rpc, SignatureCache,
    Topic,
};
use p2p_foundation_identity::{Keypair, PeerId, Signature};
use p2p_foundation_sim::{Context, Latency, NetworkConfig, NodeId, SimNode, Simulator};
use rand::RngExt;

pub const TOPIC: &str = "topic/sim";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Honest,
    /// Never forwards or serves a message (but grafts, subscribes and gossips IHAVE).
    Dropper,
    /// Drops like a dropper and floods invalid messages.
    Spammer,
}

/// Who received what, when.
pub struct Tracker {
    /// Message id -> (message index, publish time).
    pub published: HashMap<MessageId, (usize, Instant)>,
    /// Per message, one bit per node.
    pub got: Vec<Vec<u64>>,
    pub latencies_ms: Vec<f64>,
    pub hops: Vec<f64>,
    /// Per message, the time of the last delivery.
    pub last_delivery: Vec<Instant>,
}

impl Tracker {
    fn record(&mut self, node: usize, id: &MessageId, hops: u8, now: Instant) {
        if let Some(&(k, at)) = self.published.get(id) {
            let word = &mut self.got[k][node / 64];
            if *word & (1 << (node % 64)) == 0 {
                *word |= 1 << (node % 64);
                self.latencies_ms
                    .push(now.saturating_duration_since(at).as_secs_f64() * 1e3);
                self.hops.push(f64::from(hops));
                if now > self.last_delivery[k] {
                    self.last_delivery[k] = now;
                }
            }
        }
    }

    pub fn has(&self, msg: usize, node: usize) -> bool {
        self.got[msg][node / 64] & (1 << (node % 64)) != 0
    }
}

/// A fast hasher for the adapter's PeerId -> NodeId table (keys are public keys).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
        self.0 = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub type KeyMap<V> = HashMap<PeerId, V, std::hash::BuildHasherDefault<KeyHasher>>;

pub struct Shared {
    pub peers: Vec<PeerId>,
    pub index: KeyMap<u32>,
    pub tracker: RefCell<Tracker>,
}

pub struct SimGossip {
    pub core: Gossip,
    pub role: Role,
    shared: Rc<Shared>,
    /// This node's neighbours (the static topology): their keys and simulator ids, so that
    /// routing a frame does not probe the 10,000-entry global index (the adapter's tables are
    /// per node, like a real node's connection table).
    nbr_peers: Vec<PeerId>,
    nbr_ids: Vec<u32>,
}

impl SimGossip {
    pub fn flush(&mut self, ctx: &mut Context<'_, Self>) {
        loop {
            match self.core.poll_output() {
                Output::Send { to, rpc } => {
                    if self.role != Role::Honest && matches!(rpc, Rpc::Publish { .. }) {
                        continue;
                    }
                    let local = self.core.local_peer_id();
                    let j = match self.nbr_peers.iter().position(|p| *p == to) {
                        Some(k) => Some(self.nbr_ids[k]),
                        None => self.shared.index.get(&to).copied(),
                    };
                    if let Some(j) = j {
                        ctx.send(NodeId(j), (local, rpc));
                    }
                }
                Output::Event(Event::Message { id, hops, .. }) => {
                    let node = ctx.id().index();
                    self.shared
                        .tracker
                        .borrow_mut()
                        .record(node, &id, hops, ctx.now());
                }
                Output::Event(_) => {}
                Output::Timeout(at) => {
                    ctx.set_timer(at);
                    break;
                }
            }
        }
    }

    pub fn input(&mut self, ctx: &mut Context<'_, Self>, input: Input) {
        self.core.handle_input(ctx.now(), input);
        self.flush(ctx);
    }
}

impl SimNode for SimGossip {
    /// The frame and its sender's key (what an authenticated connection tells a node).
    type Message = (PeerId, Rpc);
    type Event = ();

    fn handle_message(&mut self, ctx: &mut Context<'_, Self>, _: NodeId, msg: (PeerId, Rpc)) {
        let (from, rpc) = msg;
        self.input(ctx, Input::Rpc { from, rpc });
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_, Self>) {
        self.input(ctx, Input::Timeout);
    }
}

/// One simulated run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub nodes: usize,
    /// Connections each node dials (the average degree is twice this).
    pub dial: usize,
    pub messages: usize,
    pub per_second: f64,
    pub payload: usize,
    pub loss: f64,
    /// Fraction of nodes that leave once and come back.
    pub churn: f64,
    pub droppers: f64,
    pub spammers: f64,
    pub seed: u64,
    pub warmup: Duration,
    pub tail: Duration,
}

impl Scenario {
    pub fn base(nodes: usize, messages: usize) -> Self {
        Self {
            nodes,
            dial: 8,
            messages,
            per_second: 20.0,
            payload: 64,
            loss: 0.01,
            churn: 0.0,
            droppers: 0.0,
            spammers: 0.0,
            seed: 7,
            warmup: Duration::from_secs(8),
            tail: Duration::from_secs(6),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// (message, node) pairs that should have been delivered.
    pub expected: u64,
    pub delivered: u64,
    pub latencies_ms: Vec<f64>,
    pub hops: Vec<f64>,
    pub duplicates_per_delivery: f64,
    pub repaired: u64,
    /// Attackers, and how many of them are below the graylist threshold in the view of a
    /// majority of the honest neighbours that hold an opinion on them (score != 0).
    pub attackers: usize,
    pub attackers_graylisted: usize,
    /// Attackers no honest neighbour has an opinion on (never in a mesh, never sent anything).
    pub attackers_unjudged: usize,
    /// (honest neighbour, attacker) views: total with an opinion, and below graylist.
    pub attacker_views: usize,
    pub attacker_views_graylisted: usize,
    /// Views where the attacker sits in the honest node's mesh, not judged yet (P3 activates
    /// once the topic carried enough traffic since the graft).
    pub attacker_views_probation: usize,
    pub mean_mesh: f64,
    pub sim_events: u64,
    pub wall: Duration,
}

impl Outcome {
    pub fn ratio(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.delivered as f64 / self.expected as f64
        }
    }
}

pub fn sim_config() -> Config {
    Config {
        // 10,000 nodes share one process: a 30 s seen window keeps memory modest and is far
        // longer than any message lives in the network (mcache: 5 heartbeats).
        seen_ttl: Duration::from_secs(30),
        ..Config::default()
    }
}

pub struct World {
    pub sim: Simulator<SimGossip>,
    pub shared: Rc<Shared>,
    pub keys: Vec<Keypair>,
    pub adjacency: Vec<Vec<u32>>,
    pub roles: Vec<Role>,
    pub topic: Topic,
}

pub fn ip_of(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + i as u32))
}

impl World {
    pub fn build(sc: &Scenario, config: Config) -> Self {
        let net = NetworkConfig::default()
            .with_latency(Latency::PerLink {
                min: Duration::from_millis(50),
                max: Duration::from_millis(145),
                jitter: Duration::from_millis(5),
            })
            .with_loss(sc.loss);
        let mut sim = Simulator::new(sc.seed, net);
        sim.reserve(sc.nodes);
        let keys: Vec<Keypair> = (0..sc.nodes)
            .map(|i| {
                let mut s = [0u8; 32];
                s[..8].copy_from_slice(&(i as u64).to_le_bytes());
                s[8..16].copy_from_slice(&sc.seed.to_le_bytes());
                s[31] = 1;
                Keypair::from_secret_bytes(s)
            })
            .collect();
        let peers: Vec<PeerId> = keys.iter().map(Keypair::peer_id).collect();
        let index = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32))
            .collect();
        let tracker = Tracker {
            published: HashMap::new(),
            got: Vec::new(),
            latencies_ms: Vec::new(),
            hops: Vec::new(),
            last_delivery: Vec::new(),
        };
        let shared = Rc::new(Shared {
            peers,
            index,
            tracker: RefCell::new(tracker),
        });
        let sig_cache = Arc::new(SignatureCache::new(8192));
        // One configuration shared by every node (read-only), as one process would.
        let config = Arc::new(config);
        let n_drop = (sc.nodes as f64 * sc.droppers).round() as usize;
        let n_spam = (sc.nodes as f64 * sc.spammers).round() as usize;
        let mut roles = vec![Role::Honest; sc.nodes];
        // Attackers are spread over the index space (every k-th node).
        let attackers = n_drop + n_spam;
        if let Some(step) = sc.nodes.checked_div(attackers) {
            for a in 0..attackers {
                roles[a * step + step / 2] = if a < n_drop {
                    Role::Dropper
                } else {
                    Role::Spammer
                };
            }
        }
        let topic = Topic::new(TOPIC).expect("topic");
        for (i, kp) in keys.iter().enumerate() {
            let core = Gossip::new(
                kp.clone(),
                Arc::clone(&config),
                sc.seed ^ (i as u64) << 20,
                sim.now(),
            )
            .expect("config")
            .with_signature_cache(Arc::clone(&sig_cache));
            sim.add_node(SimGossip {
                core,
                role: roles[i],
                shared: Rc::clone(&shared),
                nbr_peers: Vec::new(),
                nbr_ids: Vec::new(),
            });
        }
        for i in 0..sc.nodes {
            let t = topic.clone();
            sim.with_node(NodeId(i as u32), |n, ctx| {
                n.core.subscribe(ctx.now(), t);
                n.flush(ctx);
            });
        }
        let mut adjacency = vec![Vec::new(); sc.nodes];
        for i in 0..sc.nodes {
            let mut dialled = 0;
            let mut tries = 0;
            while dialled < sc.dial && tries < sc.dial * 20 {
                tries += 1;
                let j = sim.rng().random_range(0..sc.nodes);
                if j == i || adjacency[i].contains(&(j as u32)) {
                    continue;
                }
                adjacency[i].push(j as u32);
                adjacency[j].push(i as u32);
                dialled += 1;
            }
        }
        for (i, nbrs) in adjacency.iter().enumerate() {
            let peers: Vec<PeerId> = nbrs.iter().map(|j| shared.peers[*j as usize]).collect();
            let ids = nbrs.clone();
            sim.with_node(NodeId(i as u32), |n, _| {
                n.nbr_peers = peers;
                n.nbr_ids = ids;
            });
        }
        let mut world = Self {
            sim,
            shared,
            keys,
            adjacency,
            roles,
            topic,
        };
        for i in 0..sc.nodes {
            for &j in &world.adjacency[i].clone() {
                if (j as usize) > i {
                    world.connect(i, j as usize, true);
                }
            }
        }
        world
    }

    /// Opens the connection i -> j on both sides (`i` dialled).
    pub fn connect(&mut self, i: usize, j: usize, i_dialled: bool) {
        let (pi, pj) = (self.shared.peers[i], self.shared.peers[j]);
        self.sim.with_node(NodeId(i as u32), |n, ctx| {
            n.input(
                ctx,
                Input::PeerConnected {
                    peer: pj,
                    ip: Some(ip_of(j)),
                    outbound: i_dialled,
                },
            )
        });
        self.sim.with_node(NodeId(j as u32), |n, ctx| {
            n.input(
                ctx,
                Input::PeerConnected {
                    peer: pi,
                    ip: Some(ip_of(i)),
                    outbound: !i_dialled,
                },
            )
        });
    }

    pub fn disconnect_all(&mut self, i: usize) {
        let pi = self.shared.peers[i];
        for &j in &self.adjacency[i].clone() {
            let pj = self.shared.peers[j as usize];
            self.sim.with_node(NodeId(j), |n, ctx| {
                n.input(ctx, Input::PeerDisconnected { peer: pi })
            });
            self.sim.with_node(NodeId(i as u32), |n, ctx| {
                n.input(ctx, Input::PeerDisconnected { peer: pj })
            });
        }
    }

    /// Publishes from node `i`; returns the message index.
    pub fn publish(&mut self, i: usize, payload: usize) -> Option<usize> {
        let topic = self.topic.clone();
        let shared = Rc::clone(&self.shared);
        self.sim.with_node(NodeId(i as u32), |n, ctx| {
            let now = ctx.now();
            let data = vec![0xab; payload];
            let id = n.core.publish(now, topic, data).ok()?;
            let mut t = shared.tracker.borrow_mut();
            let k = t.got.len();
            t.published.insert(id, (k, now));
            let words = shared.peers.len().div_ceil(64);
            t.got.push(vec![0; words]);
            t.last_delivery.push(now);
            drop(t);
            n.flush(ctx);
            Some(k)
        })
    }

    /// Every spammer sends one forged message to each neighbour.
    pub fn spam(&mut self, round: u64) {
        for i in 0..self.roles.len() {
            if self.roles[i] != Role::Spammer {
                continue;
            }
            let mut m = Message::sign(
                &self.keys[i],
                round,
                self.topic.clone(),
                AckRequest::None,
                vec![0xee; 64],
            );
            m.signature = Signature::from_bytes([round as u8; 64]);
            let m = Arc::new(m);
            let neighbours = self.adjacency[i].clone();
            self.sim.with_node(NodeId(i as u32), |_, ctx| {
                for j in neighbours {
                    ctx.send(
                        NodeId(j),
                        (
                            m.author,
                            Rpc::Publish {
                                hops: 0,
                                msg: Arc::clone(&m),
                            },
                        ),
                    );
                }
            });
        }
    }

    pub fn honest(&self, i: usize) -> bool {
        self.roles[i] == Role::Honest
    }

    /// Summarises deliveries of messages to `receivers`.
    pub fn outcome(&self, receivers: &[bool], publishers: &[usize], started: Instant) -> Outcome {
        let t = self.shared.tracker.borrow();
        let mut out = Outcome::default();
        for (k, &p) in publishers.iter().enumerate() {
            for (node, &r) in receivers.iter().enumerate() {
                if r && node != p {
                    out.expected += 1;
                    if t.has(k, node) {
                        out.delivered += 1;
                    }
                }
            }
        }
        out.latencies_ms = t.latencies_ms.clone();
        out.hops = t.hops.clone();
        let (mut dup, mut del, mut mesh, mut n) = (0u64, 0u64, 0usize, 0usize);
        for (i, node) in self.sim.nodes().iter().enumerate() {
            if self.honest(i) {
                let m = node.core.metrics();
                dup += m.duplicates;
                del += m.delivered;
                out.repaired += m.repaired;
                mesh += node.core.mesh_peers(&self.topic).len();
                n += 1;
            }
        }
        out.duplicates_per_delivery = if del == 0 {
            0.0
        } else {
            dup as f64 / del as f64
        };
        out.mean_mesh = mesh as f64 / n.max(1) as f64;
        let now = self.sim.now();
        let graylist = self.sim.nodes()[0].core.config().thresholds.graylist;
        for (a, role) in self.roles.iter().enumerate() {
            if *role == Role::Honest {
                continue;
            }
            out.attackers += 1;
            let pa = self.shared.peers[a];
            let (mut views, mut below) = (0usize, 0usize);
            for &j in &self.adjacency[a] {
                if !self.honest(j as usize) {
                    continue;
                }
                let core = &self.sim.nodes()[j as usize].core;
                let s = core.peer_score(&pa, now);
                if s >= 0.0 && core.mesh_peers(&self.topic).contains(&pa) {
                    // On probation in this neighbour's mesh: not judged yet.
                    out.attacker_views_probation += 1;
                } else if s != 0.0 {
                    views += 1;
                    if s < graylist {
                        below += 1;
                    }
                }
            }
            out.attacker_views += views;
            out.attacker_views_graylisted += below;
            if views > 0 && below * 2 > views {
                out.attackers_graylisted += 1;
            }
            if views == 0 {
                out.attackers_unjudged += 1;
            }
        }
        out.sim_events = self.sim.stats().events_processed;
        out.wall = started.elapsed();
        out
    }
}

/// Runs the publish phase: `sc.messages` messages from random honest publishers in
/// `eligible`, at `sc.per_second`, calling `between` at every publish step.
pub fn publish_phase(
    world: &mut World,
    sc: &Scenario,
    eligible: &[usize],
    mut between: impl FnMut(&mut World, Duration),
) -> Vec<usize> {
    let step = Duration::from_secs_f64(1.0 / sc.per_second);
    let start = world.sim.elapsed();
    let mut publishers = Vec::with_capacity(sc.messages);
    for k in 0..sc.messages {
        let at = start + step * k as u32;
        world.sim.run_until(at);
        between(world, at);
        // A publisher with no subscribed peer left (possible under churn) picks again.
        for _ in 0..100 {
            let p = eligible[world.sim.rng().random_range(0..eligible.len())];
            if world.sim.is_online(NodeId(p as u32)) && world.publish(p, sc.payload).is_some() {
                publishers.push(p);
                break;
            }
        }
    }
    publishers
}

pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}

/// The steady-state scenario: every node subscribed, lossy links.
pub fn run_steady(sc: &Scenario) -> Outcome {
    let started = Instant::now();
    let mut world = World::build(sc, sim_config());
    world.sim.run_for(sc.warmup);
    let everyone: Vec<usize> = (0..sc.nodes).collect();
    let publishers = publish_phase(&mut world, sc, &everyone, |_, _| {});
    world.sim.run_for(sc.tail);
    let receivers = vec![true; sc.nodes];
    world.outcome(&receivers, &publishers, started)
}

/// Churn: a fraction of nodes leaves once during the publish phase and comes back 5–20 s
/// later. Delivery is measured to the nodes that stayed online the whole run.
pub fn run_churn(sc: &Scenario) -> Outcome {
    let started = Instant::now();
    let mut world = World::build(sc, sim_config());
    world.sim.run_for(sc.warmup);
    let n_churn = (sc.nodes as f64 * sc.churn).round() as usize;
    let publish_span = Duration::from_secs_f64(sc.messages as f64 / sc.per_second);
    let t0 = world.sim.elapsed();
    // (time, node, leave?)
    let mut plan: Vec<(Duration, usize, bool)> = Vec::new();
    let mut churned = vec![false; sc.nodes];
    while plan.len() < n_churn * 2 {
        let i = world.sim.rng().random_range(0..sc.nodes);
        if churned[i] {
            continue;
        }
        churned[i] = true;
        let leave = t0 + publish_span.mul_f64(world.sim.rng().random_range(0.0..0.8));
        let back = leave + Duration::from_millis(world.sim.rng().random_range(5_000..20_000));
        plan.push((leave, i, true));
        plan.push((back, i, false));
    }
    plan.sort();
    let mut next = 0;
    let stable: Vec<usize> = (0..sc.nodes).filter(|i| !churned[*i]).collect();
    let mut apply = |world: &mut World, until: Duration| {
        while next < plan.len() && plan[next].0 <= until {
            let (_, i, leave) = plan[next];
            next += 1;
            if leave {
                world.disconnect_all(i);
                world.sim.remove_node(NodeId(i as u32));
            } else {
                world.sim.restore_node(NodeId(i as u32));
                for j in world.adjacency[i].clone() {
                    if world.sim.is_online(NodeId(j)) {
                        world.connect(i, j as usize, true);
                    }
                }
            }
        }
    };
    let publishers = publish_phase(&mut world, sc, &stable, &mut apply);
    let end = world.sim.elapsed() + sc.tail + Duration::from_secs(20);
    let mut t = world.sim.elapsed();
    while t < end {
        t += Duration::from_millis(500);
        world.sim.run_until(t);
        apply(&mut world, t);
    }
    let receivers: Vec<bool> = (0..sc.nodes).map(|i| !churned[i]).collect();
    world.outcome(&receivers, &publishers, started)
}

/// Attack: droppers and spammers; delivery measured to honest nodes.
pub fn run_attack(sc: &Scenario) -> Outcome {
    let started = Instant::now();
    let mut world = World::build(sc, sim_config());
    world.sim.run_for(sc.warmup);
    let honest: Vec<usize> = (0..sc.nodes).filter(|i| world.honest(*i)).collect();
    let mut round = 0u64;
    let mut last_spam = Duration::ZERO;
    let publishers = publish_phase(&mut world, sc, &honest, |w, at| {
        if at >= last_spam + Duration::from_secs(1) {
            last_spam = at;
            round += 1;
            w.spam(round);
        }
    });
    // The attack goes on until the end.
    let end = world.sim.elapsed() + sc.tail;
    while world.sim.elapsed() < end {
        world.sim.run_for(Duration::from_secs(1));
        round += 1;
        world.spam(round);
    }
    let receivers: Vec<bool> = (0..sc.nodes).map(|i| world.honest(i)).collect();
    world.outcome(&receivers, &publishers, started)
}

/// What a partition run measured.
#[derive(Debug, Clone, Default)]
pub struct PartitionOutcome {
    /// Delivery of every message to every node.
    pub all: Outcome,
    /// Messages published while the network was split.
    pub during_split: usize,
    /// (message, node) pairs on the far side of a message published during the split.
    pub cross_expected: u64,
    /// How many of them were delivered.
    pub cross_delivered: u64,
    /// Heartbeats from the heal to the last delivery of a message published during the split.
    pub heal_heartbeats: f64,
    /// The same per message published during the split, sorted.
    pub per_message_heartbeats: Vec<f64>,
}

/// Partition and heal: `sc.messages` messages from random publishers at `sc.per_second`; the
/// network splits in two halves `split_at` into the publish phase and heals `split` later.
/// The configuration's gossip history (`history_gossip` heartbeats) must cover the split for
/// the messages published early in it to be repaired.
pub fn run_partition(
    sc: &Scenario,
    config: Config,
    split_at: Duration,
    split: Duration,
) -> PartitionOutcome {
    let started = Instant::now();
    let mut world = World::build(sc, config);
    world.sim.run_for(sc.warmup);
    let half = sc.nodes / 2;
    let side_a: Vec<NodeId> = (0..half).map(|i| NodeId(i as u32)).collect();
    let side_b: Vec<NodeId> = (half..sc.nodes).map(|i| NodeId(i as u32)).collect();
    let t0 = world.sim.elapsed();
    let (split_start, split_end) = (t0 + split_at, t0 + split_at + split);
    let mut state = 0; // 0: joined, 1: split, 2: healed
    let mut healed_at = None;
    let mut split_msgs: Vec<usize> = Vec::new();
    let everyone: Vec<usize> = (0..sc.nodes).collect();
    let publishers = publish_phase(&mut world, sc, &everyone, |w, at| {
        if state == 0 && at >= split_start {
            w.sim.partition([side_a.clone(), side_b.clone()]);
            state = 1;
        }
        if state == 1 && at >= split_end {
            w.sim.heal();
            healed_at = Some(w.sim.now());
            state = 2;
        }
        if state == 1 {
            // The message about to be published goes out during the split.
            split_msgs.push(w.shared.tracker.borrow().got.len());
        }
    });
    assert!(healed_at.is_some(), "the publish phase outlasts the split");
    world.sim.run_for(sc.tail);
    let healed_at = healed_at.unwrap_or_else(|| world.sim.now());
    let all = world.outcome(&vec![true; sc.nodes], &publishers, started);
    let t = world.shared.tracker.borrow();
    let mut out = PartitionOutcome {
        all,
        during_split: split_msgs.len(),
        ..PartitionOutcome::default()
    };
    let hb = world.sim.nodes()[0].core.config().heartbeat_interval;
    for &k in &split_msgs {
        let Some(&p) = publishers.get(k) else {
            continue;
        };
        let far = if p < half { half..sc.nodes } else { 0..half };
        for node in far {
            out.cross_expected += 1;
            if t.has(k, node) {
                out.cross_delivered += 1;
            }
        }
        out.per_message_heartbeats.push(
            t.last_delivery[k]
                .saturating_duration_since(healed_at)
                .as_secs_f64()
                / hb.as_secs_f64(),
        );
    }
    out.per_message_heartbeats.sort_by(f64::total_cmp);
    out.heal_heartbeats = out.per_message_heartbeats.last().copied().unwrap_or(0.0);
    out
}

/// The configuration of the partition scenario: a gossip history of `history` heartbeats
/// (IHAVE advertises, and the message cache serves, every message of that many heartbeats).
pub fn partition_config(history: usize) -> Config {
    Config {
        history_length: history,
        history_gossip: history,
        // At least two histories (Config::validate).
        seen_ttl: Duration::from_secs(2 * history as u64).max(Duration::from_secs(30)),
        ..sim_config()
    }
}

pub fn summary(name: &str, o: &Outcome) -> String {
    format!(
        "{name}: delivered {}/{} ({:.4}%), p50 {:.0} ms, p99 {:.0} ms, hops p50 {:.0} max {:.0}, \
         dup/delivery {:.2}, mesh {:.2}, repaired {}, attackers graylisted {}/{} (unjudged {}, judged views {}/{}, on probation {}), \
         {} sim events in {:.1?}",
        o.delivered,
        o.expected,
        o.ratio() * 100.0,
        percentile(&o.latencies_ms, 50.0),
        percentile(&o.latencies_ms, 99.0),
        percentile(&o.hops, 50.0),
        percentile(&o.hops, 100.0),
        o.duplicates_per_delivery,
        o.mean_mesh,
        o.repaired,
        o.attackers_graylisted,
        o.attackers,
        o.attackers_unjudged,
        o.attacker_views_graylisted,
        o.attacker_views,
        o.attacker_views_probation,
        o.sim_events,
        o.wall
    )
}
