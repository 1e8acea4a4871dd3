//! N real gossip nodes in one process, over TCP on 127.0.0.1, through the tokio driver.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2p_foundation_gossip::driver::tcp;
use p2p_foundation_gossip::{Config, Event, GossipHandle, MessageId, Topic, spawn};
use p2p_foundation_identity::Keypair;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub struct Node {
    pub handle: GossipHandle,
    pub received: Arc<Mutex<HashSet<MessageId>>>,
    pub duplicates: Arc<Mutex<u64>>,
}

pub struct LoopbackNet {
    pub nodes: Vec<Node>,
    pub topic: Topic,
    /// Notified on every delivery.
    pub progress: Arc<Notify>,
    pub connections: usize,
}

fn key(i: usize, seed: u64) -> Keypair {
    let mut s = [9u8; 32];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s[8..16].copy_from_slice(&seed.to_le_bytes());
    Keypair::from_secret_bytes(s)
}

/// Starts `n` nodes; each dials `dial` others (a deterministic pseudo-random graph plus a ring,
/// so the graph is connected), and every node subscribes to one topic.
pub async fn start(n: usize, dial: usize, seed: u64) -> LoopbackNet {
    let topic = Topic::new("topic/loopback").expect("topic");
    let progress = Arc::new(Notify::new());
    let mut nodes = Vec::with_capacity(n);
    let mut addrs = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let kp = key(i, seed);
        keys.push(kp.clone());
        // Every node is on 127.0.0.1: exempt it from the IP-colocation penalty.
        let mut config = Config::default();
        config.score.ip_colocation_whitelist = vec![std::net::Ipv4Addr::LOCALHOST.into()];
        let (handle, mut events) =
            spawn(kp.clone(), config, seed ^ i as u64, 1 << 16).expect("spawn");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        addrs.push(listener.local_addr().expect("addr"));
        let h = handle.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h, kp) = (h.clone(), kp.clone());
                tokio::spawn(async move {
                    if let Ok((peer, addr, r, w)) = tcp::handshake(&kp, stream).await {
                        let _ = h.add_peer(peer, Some(addr.ip()), false, r, w).await;
                    }
                });
            }
        });
        let received = Arc::new(Mutex::new(HashSet::new()));
        let duplicates = Arc::new(Mutex::new(0u64));
        let (rc, dc, pg) = (
            Arc::clone(&received),
            Arc::clone(&duplicates),
            Arc::clone(&progress),
        );
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let Event::Message { id, .. } = e {
                    let fresh = rc.lock().map(|mut s| s.insert(id)).unwrap_or(false);
                    if !fresh {
                        if let Ok(mut d) = dc.lock() {
                            *d += 1;
                        }
                    }
                    pg.notify_waiters();
                }
            }
        });
        handle.subscribe(topic.clone()).await.expect("subscribe");
        nodes.push(Node {
            handle,
            received,
            duplicates,
        });
    }
    // Edges: a ring plus `dial - 1` pseudo-random chords per node.
    let mut edges = HashSet::new();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in 0..n {
        edges.insert((i.min((i + 1) % n), i.max((i + 1) % n)));
        for _ in 1..dial {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = (x >> 33) as usize % n;
            if j != i {
                edges.insert((i.min(j), i.max(j)));
            }
        }
    }
    let mut edges: Vec<_> = edges.into_iter().collect();
    edges.sort_unstable();
    for &(i, j) in &edges {
        let (peer, addr, r, w) = tcp::connect(&keys[i], addrs[j])
            .await
            .expect("dial loopback");
        nodes[i]
            .handle
            .add_peer(peer, Some(addr.ip()), true, r, w)
            .await
            .expect("add peer");
    }
    LoopbackNet {
        nodes,
        topic,
        progress,
        connections: edges.len(),
    }
}

impl LoopbackNet {
    /// Waits (polling, bounded by `guard`) until every node has a mesh of at least `min`.
    pub async fn wait_for_meshes(&self, min: usize, guard: Duration) -> bool {
        let end = Instant::now() + guard;
        while Instant::now() < end {
            let mut ok = true;
            for n in &self.nodes {
                if n.handle
                    .mesh_peers(self.topic.clone())
                    .await
                    .map_or(0, |m| m.len())
                    < min
                {
                    ok = false;
                    break;
                }
            }
            if ok {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn deliveries(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.received.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    /// Publishes `count` messages of `size` bytes from nodes in turn, then waits on delivery
    /// events until every other node has every message or `guard` passes. Returns the time
    /// from the first publish to the last delivery and the deliveries seen.
    pub async fn publish_and_wait(
        &self,
        count: usize,
        size: usize,
        guard: Duration,
    ) -> (Duration, usize) {
        let before = self.deliveries();
        let target = before + count * (self.nodes.len() - 1);
        let start = Instant::now();
        for k in 0..count {
            let from = (k * 7919) % self.nodes.len();
            let mut data = vec![0u8; size];
            data[..8.min(size)].copy_from_slice(&(k as u64).to_le_bytes()[..8.min(size)]);
            self.nodes[from]
                .handle
                .publish(self.topic.clone(), data)
                .await
                .expect("publish");
        }
        let end = start + guard;
        loop {
            let notified = self.progress.notified();
            let got = self.deliveries();
            if got >= target {
                return (start.elapsed(), got - before);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (start.elapsed(), got - before);
            }
            // Wake on the next delivery (or re-check every 100 ms).
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }

    pub async fn shutdown(&self) {
        for n in &self.nodes {
            n.handle.shutdown().await;
        }
    }
}
