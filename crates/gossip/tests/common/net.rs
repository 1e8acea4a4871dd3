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

/// The test graph: a ring plus `dial - 1` pseudo-random chords per node (connected), sorted.
pub fn edges(n: usize, dial: usize, seed: u64) -> Vec<(usize, usize)> {
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
    edges
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
    let edges = edges(n, dial, seed);
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

/// The baseline for `loopback100`: plain flooding over the same graph, the same TCP adapter
/// (signed hello) and the same frames. Every node forwards the first copy of each frame to
/// every neighbour but the sender; nothing else (no mesh, no scoring, no gossip). With
/// `verify`, each node decodes the frame and checks the author's signature once per message
/// (what gossip does too); without, it de-duplicates on the frame's (author, seq) bytes.
pub struct FloodNet {
    publish: Vec<tokio::sync::mpsc::Sender<Vec<u8>>>,
    delivered: Arc<std::sync::atomic::AtomicU64>,
    progress: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seed: u64,
}

enum FloodIn {
    Frame(usize, Arc<Vec<u8>>),
    Publish(Vec<u8>),
}

pub async fn start_flood(n: usize, dial: usize, seed: u64, verify: bool) -> FloodNet {
    use p2p_foundation_gossip::codec::{self, Limits};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    let delivered = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let keys: Vec<Keypair> = (0..n).map(|i| key(i, seed)).collect();
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        addrs.push(l.local_addr().expect("addr"));
        listeners.push(l);
    }
    let edges = edges(n, dial, seed);
    // Per node: its connections' halves, in edge order.
    let mut halves: Vec<
        Vec<(
            tokio::net::tcp::OwnedReadHalf,
            tokio::net::tcp::OwnedWriteHalf,
        )>,
    > = (0..n).map(|_| Vec::new()).collect();
    for &(i, j) in &edges {
        let accept = listeners[j].accept();
        let (dialled, accepted) = tokio::join!(tcp::connect(&keys[i], addrs[j]), async {
            let (stream, _) = accept.await.expect("accept");
            tcp::handshake(&keys[j], stream).await
        });
        let (_, _, r, w) = dialled.expect("dial loopback");
        halves[i].push((r, w));
        let (_, _, r, w) = accepted.expect("accept hello");
        halves[j].push((r, w));
    }
    let mut publish = Vec::new();
    let mut tasks = Vec::new();
    for conns in halves {
        let (tx, mut rx) = mpsc::channel::<FloodIn>(4096);
        let mut writers = Vec::new();
        for (c, (mut r, mut w)) in conns.into_iter().enumerate() {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut prefix = [0u8; 4];
                while r.read_exact(&mut prefix).await.is_ok() {
                    let len = u32::from_be_bytes(prefix) as usize;
                    if len > 1 << 21 {
                        return;
                    }
                    let mut frame = vec![0u8; 4 + len];
                    frame[..4].copy_from_slice(&prefix);
                    if r.read_exact(&mut frame[4..]).await.is_err()
                        || tx.send(FloodIn::Frame(c, Arc::new(frame))).await.is_err()
                    {
                        return;
                    }
                }
            }));
            let (wtx, mut wrx) = mpsc::channel::<Arc<Vec<u8>>>(1024);
            tasks.push(tokio::spawn(async move {
                while let Some(f) = wrx.recv().await {
                    if w.write_all(&f).await.is_err() {
                        return;
                    }
                    while let Ok(more) = wrx.try_recv() {
                        if w.write_all(&more).await.is_err() {
                            return;
                        }
                    }
                    if w.flush().await.is_err() {
                        return;
                    }
                }
            }));
            writers.push(wtx);
        }
        let (ptx, mut prx) = mpsc::channel::<Vec<u8>>(1024);
        publish.push(ptx);
        let (del, pg) = (Arc::clone(&delivered), Arc::clone(&progress));
        tasks.push(tokio::spawn(async move {
            let mut seen: HashSet<[u8; 40]> = HashSet::new();
            let limits = Limits::default();
            loop {
                let input = tokio::select! {
                    Some(f) = rx.recv() => f,
                    Some(p) = prx.recv() => FloodIn::Publish(p),
                    else => return,
                };
                let (from, frame) = match input {
                    FloodIn::Frame(c, f) => (Some(c), f),
                    FloodIn::Publish(f) => (None, Arc::new(f)),
                };
                // (author, seq) of the PUBLISH frame: bytes 7..47.
                let Some(key) = frame.get(7..47).and_then(|k| <[u8; 40]>::try_from(k).ok()) else {
                    continue;
                };
                if !seen.insert(key) {
                    continue;
                }
                if from.is_some() {
                    if verify {
                        let ok = match codec::decode_frame(&frame, &limits) {
                            Ok(p2p_foundation_gossip::Rpc::Publish { msg, .. }) => {
                                msg.verify().is_ok()
                            }
                            _ => false,
                        };
                        if !ok {
                            continue;
                        }
                    }
                    del.fetch_add(1, Ordering::Relaxed);
                    pg.notify_waiters();
                }
                for (c, w) in writers.iter().enumerate() {
                    if Some(c) != from {
                        let _ = w.send(Arc::clone(&frame)).await;
                    }
                }
            }
        }));
    }
    FloodNet {
        publish,
        delivered,
        progress,
        tasks,
        seed,
    }
}

impl FloodNet {
    /// Publishes `count` signed PUBLISH frames of `size` bytes (from nodes in turn, as
    /// [`LoopbackNet::publish_and_wait`]), then waits until every other node has every one or
    /// `guard` passes. Returns the time from the first publish to the last delivery and the
    /// deliveries seen.
    pub async fn publish_and_wait(
        &self,
        count: usize,
        size: usize,
        guard: Duration,
    ) -> (Duration, usize) {
        use p2p_foundation_gossip::{AckRequest, Message, Rpc, codec};
        use std::sync::atomic::Ordering;
        let n = self.publish.len();
        let topic = Topic::new("topic/loopback").expect("topic");
        // Signed beforehand: the gossip side signs inside `publish`, so this favours the
        // baseline slightly (by one signature per message).
        let frames: Vec<(usize, Vec<u8>)> = (0..count)
            .map(|k| {
                let from = (k * 7919) % n;
                let mut data = vec![0u8; size];
                data[..8.min(size)].copy_from_slice(&(k as u64).to_le_bytes()[..8.min(size)]);
                let msg = Message::sign(
                    &key(from, self.seed),
                    k as u64,
                    topic.clone(),
                    AckRequest::None,
                    data,
                );
                let rpc = Rpc::Publish {
                    hops: 0,
                    msg: Arc::new(msg),
                };
                (from, codec::encode(&rpc))
            })
            .collect();
        let before = self.delivered.load(Ordering::Relaxed) as usize;
        let target = before + count * (n - 1);
        let start = Instant::now();
        for (from, f) in frames {
            self.publish[from].send(f).await.expect("flood node alive");
        }
        let end = start + guard;
        loop {
            let notified = self.progress.notified();
            let got = self.delivered.load(Ordering::Relaxed) as usize;
            if got >= target || Instant::now() >= end {
                return (start.elapsed(), got - before);
            }
            let left = end.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }

    pub fn shutdown(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}
