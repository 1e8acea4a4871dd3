//! Adapter of the sans-IO core to `p2p-foundation-sim`, and network builders shared by the
//! simulation tests and the benchmark suite.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use p2p_foundation_dht::{
    Config, Contact, Dht, Event, Message, Output, QueryId, QueryResult, QueryStats, Request,
    Response,
};
use p2p_foundation_identity::{Key, Keypair, PeerId};
use p2p_foundation_sim::{Context, Latency, NetworkConfig, NodeId, SimNode, Simulator};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// Every simulated node has its own IPv4 /24: 10.x.y.1 with x.y = index + 1.
pub fn addr_of(id: NodeId) -> SocketAddr {
    let n = id.0 + 1;
    assert!(n < 1 << 16, "at most 65535 simulated nodes");
    SocketAddr::from((Ipv4Addr::new(10, (n >> 8) as u8, n as u8, 1), 4000))
}

pub fn node_of(addr: SocketAddr) -> NodeId {
    match addr {
        SocketAddr::V4(v4) => {
            let o = v4.ip().octets();
            NodeId((u32::from(o[1]) << 8 | u32::from(o[2])) - 1)
        }
        SocketAddr::V6(_) => NodeId(u32::MAX),
    }
}

/// The deterministic keypair of node `i` in a network built with `seed`.
pub fn keypair(seed: u64, i: u64) -> Keypair {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&seed.to_le_bytes());
    secret[8..16].copy_from_slice(&i.to_le_bytes());
    secret[31] = 0x5a;
    Keypair::from_secret_bytes(secret)
}

/// A simulated node: the core, plus (for adversarial nodes) the set it colludes with.
pub struct Node {
    pub core: Dht,
    pub peer: PeerId,
    /// `Some` for a colluding node: it answers every lookup request with the colluders
    /// closest to the target, never with honest nodes or values, and drops stores.
    pub colluders: Option<Rc<Vec<Contact>>>,
}

impl Node {
    fn flush(&mut self, ctx: &mut Context<'_, Self>) {
        loop {
            match self.core.poll_output() {
                Output::Send { addr, msg, .. } => ctx.send(node_of(addr), (self.peer, msg)),
                Output::Event(e) => ctx.emit(e),
                Output::Timeout(at) => {
                    ctx.set_timer(at);
                    break;
                }
            }
        }
    }

    fn collude(&self, colluders: &[Contact], requester: PeerId, msg: &Message) -> Option<Message> {
        let Message::Request { id, body } = msg else {
            return None;
        };
        let closest = |target: &Key| {
            let mut c: Vec<Contact> = colluders
                .iter()
                .copied()
                .filter(|c| c.peer() != requester && c.peer() != self.peer)
                .collect();
            c.sort_by_key(|c| fast_distance(c.key(), target));
            c.truncate(20);
            c
        };
        let body = match body {
            Request::FindNode { target } => Response::Nodes {
                closer: closest(target),
            },
            Request::FindValue { key } => Response::Value {
                record: None,
                closer: closest(key),
            },
            Request::GetProviders { key } => Response::Providers {
                providers: Vec::new(),
                closer: closest(key),
            },
            Request::Store { .. } | Request::AddProvider { .. } => {
                Response::Stored { accepted: true }
            }
            Request::Ping => return None,
        };
        Some(Message::Response { id: *id, body })
    }
}

impl SimNode for Node {
    type Message = (PeerId, Message);
    type Event = Event;

    fn handle_message(&mut self, ctx: &mut Context<'_, Self>, from: NodeId, msg: Self::Message) {
        let (peer, msg) = msg;
        if let Some(colluders) = &self.colluders {
            if let Some(reply) = self.collude(colluders, peer, &msg) {
                ctx.send(from, (self.peer, reply));
                return;
            }
        }
        self.core
            .handle_message(ctx.now(), peer, addr_of(from), msg);
        self.flush(ctx);
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_, Self>) {
        self.core.handle_timeout(ctx.now());
        self.flush(ctx);
    }
}

pub struct Net {
    pub sim: Simulator<Node>,
    pub seed: u64,
    pub config: Config,
    pub rng: ChaCha8Rng,
}

pub fn network_config() -> NetworkConfig {
    NetworkConfig::default().with_latency(Latency::PerLink {
        min: Duration::from_millis(10),
        max: Duration::from_millis(100),
        jitter: Duration::from_millis(5),
    })
}

impl Net {
    pub fn new(seed: u64, config: Config) -> Self {
        Self {
            sim: Simulator::new(seed, network_config()),
            seed,
            config,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xd1b5_4a32_d192_ed03),
        }
    }

    pub fn random_below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    pub fn random_key(&mut self) -> Key {
        let mut k = [0u8; 32];
        self.rng.fill_bytes(&mut k);
        Key::from_bytes(k)
    }

    /// Adds node number `index` (keypair index) online, not yet bootstrapped.
    pub fn add(&mut self, index: u64, colluders: Option<Rc<Vec<Contact>>>) -> NodeId {
        let peer = keypair(self.seed, index).peer_id();
        let core = Dht::new(
            peer,
            self.config.clone(),
            self.seed.wrapping_mul(31).wrapping_add(index),
            self.sim.now(),
            self.sim.system_time(),
        );
        self.sim.add_node(Node {
            core,
            peer,
            colluders,
        })
    }

    pub fn contact(&self, id: NodeId) -> Contact {
        Contact::new(self.sim.node(id).peer, addr_of(id))
    }

    /// Starts `id`'s bootstrap through `via`.
    pub fn bootstrap(&mut self, id: NodeId, via: NodeId) {
        let seed = self.contact(via);
        self.sim.with_node(id, |node, ctx| {
            node.core.bootstrap(ctx.now(), &[seed]);
            node.flush(ctx);
        });
    }

    /// Builds `n` honest nodes joining one after the other, `gap` apart, each through a
    /// random earlier node; then lets the network settle for `settle`.
    pub fn grow(&mut self, n: usize, gap: Duration, settle: Duration) {
        let first = self.sim.node_count();
        for i in 0..n {
            let index = (first + i) as u64;
            let id = self.add(index, None);
            // A random earlier node that is online (bounded tries).
            if id.index() > 0 {
                for _ in 0..1000 {
                    let via = NodeId(self.random_below(id.index()) as u32);
                    if self.sim.is_online(via) {
                        self.bootstrap(id, via);
                        break;
                    }
                }
            }
            self.sim.run_for(gap);
        }
        self.sim.run_for(settle);
    }

    /// Adds one honest node and starts its bootstrap through a random online node.
    pub fn join_one(&mut self) -> NodeId {
        let index = self.sim.node_count() as u64;
        let id = self.add(index, None);
        if let Some(via) = self.random_online(Some(id)) {
            self.bootstrap(id, via);
        }
        id
    }

    /// A random online node other than `not`.
    pub fn random_online(&mut self, not: Option<NodeId>) -> Option<NodeId> {
        let n = self.sim.node_count();
        for _ in 0..10_000 {
            let id = NodeId(self.random_below(n) as u32);
            if Some(id) != not && self.sim.is_online(id) && self.sim.node(id).colluders.is_none() {
                return Some(id);
            }
        }
        None
    }

    /// Runs a command on node `id`, returning its query id.
    pub fn command(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut Dht, std::time::Instant, SystemTime) -> QueryId,
    ) -> QueryId {
        self.sim.with_node(id, |node, ctx| {
            let q = f(&mut node.core, ctx.now(), ctx.system_time());
            node.flush(ctx);
            q
        })
    }

    /// Runs until every query in `wanted` has reported (bounded by `limit` of virtual time),
    /// and returns their outcomes.
    pub fn wait_for(
        &mut self,
        wanted: &[(NodeId, QueryId)],
        limit: Duration,
    ) -> HashMap<(NodeId, QueryId), (QueryResult, QueryStats)> {
        let mut done = HashMap::new();
        let want: std::collections::HashSet<(NodeId, QueryId)> = wanted.iter().copied().collect();
        let deadline = self.sim.elapsed() + limit;
        while done.len() < want.len() && self.sim.elapsed() < deadline {
            self.sim.run_for(Duration::from_millis(500));
            for e in self.sim.drain_events() {
                let Event::QueryFinished { id, result, stats } = e.event;
                if want.contains(&(e.node, id)) {
                    done.insert((e.node, id), (result, stats));
                }
            }
        }
        done
    }

    /// Online nodes' (key, id), for brute-force checks.
    pub fn online_keys(&self) -> Vec<(Key, NodeId)> {
        self.sim
            .node_ids()
            .filter(|id| self.sim.is_online(*id))
            .map(|id| (*self.contact(id).key(), id))
            .collect()
    }
}

/// The true `k` closest of `all` to `target`, never `exclude`, closest first.
pub fn true_closest(all: &[(Key, NodeId)], target: &Key, k: usize, exclude: NodeId) -> Vec<NodeId> {
    let mut d: Vec<_> = all
        .iter()
        .filter(|(_, id)| *id != exclude)
        .map(|(key, id)| (fast_distance(key, target), *id))
        .collect();
    if d.len() > k {
        d.select_nth_unstable_by_key(k - 1, |x| x.0);
        d.truncate(k);
    }
    d.sort_by_key(|x| x.0);
    d.into_iter().map(|x| x.1).collect()
}

/// XOR distance as two big-endian `u128`s (the identity crate's is not optimised in tests).
pub fn fast_distance(a: &Key, b: &Key) -> (u128, u128) {
    let half = |k: &Key, r: std::ops::Range<usize>| {
        let mut h = [0u8; 16];
        h.copy_from_slice(&k.as_bytes()[r]);
        u128::from_be_bytes(h)
    };
    (
        half(a, 0..16) ^ half(b, 0..16),
        half(a, 16..32) ^ half(b, 16..32),
    )
}
