//! `cargo xtask bench facade`: what wiring the layers together costs, each figure beside
//! the layer driven directly in the same run.
//!
//! - `dht_loopback.lookup_ms_p50` / `get_ms_p50`: DHT lookups and record gets on N nodes
//!   on 127.0.0.1, through the facade (one QUIC connection per peer, one stream per
//!   request), beside the same lookups on N DHT nodes over the DHT crate's own
//!   `UdpTransport` (one signed datagram per message).
//! - `mcp.routed_call_us_p50` / `p99`: a tool call routed by `node.mcp().call` (discovery
//!   cache, ranking, session pool over the node's connection), beside a call on an MCP
//!   session opened by hand on a bare transport connection to the same server.
//! - `mcp.routed_calls_per_s`: 32 concurrent routed calls, beside the same on 4 hand-made
//!   sessions.
//! - `gossip.delivery_ms_p50`: one message to all subscribers of N nodes (recorded alone:
//!   the gossip crate's own suite has the flooding baseline).
//! - `node.build_ms_p50`, `node.rss_per_node_bytes`.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use p2p_foundation::dht::{Config as DhtConfig, Contact, DhtNode, UdpTransport};
use p2p_foundation::mcp_crate::{Era, McpClient, StreamLimits, Tool, tool_result};
use p2p_foundation::transport::{Config, Endpoint, Listen};
use p2p_foundation::{Key, Keypair, MCP_PROTOCOL, P2PNode};
use p2p_foundation_benchkit::{Better, Suite, percentile, rss_bytes};
use serde_json::json;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn main() {
    let mut suite = Suite::new("facade");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let t = Instant::now();
    rt.block_on(dht(&mut suite));
    eprintln!("dht: {:?}", t.elapsed());
    let t = Instant::now();
    rt.block_on(mcp(&mut suite));
    eprintln!("mcp: {:?}", t.elapsed());
    let t = Instant::now();
    rt.block_on(gossip(&mut suite));
    eprintln!("gossip: {:?}", t.elapsed());
    suite.finish();
}

fn keypair(i: u32) -> Keypair {
    let mut s = [7u8; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    Keypair::from_secret_bytes(s)
}

async fn network(n: u32) -> (Vec<P2PNode>, Vec<f64>) {
    let mut nodes: Vec<P2PNode> = Vec::new();
    let mut build_ms = Vec::new();
    for i in 0..n {
        let mut b = P2PNode::builder()
            .listen(loopback())
            .keypair(keypair(i))
            .seed(u64::from(i));
        if let Some(via) = nodes.get((i as usize * 7919) % nodes.len().max(1)) {
            b = b.bootstrap(vec![(via.peer_id(), via.local_addr().expect("addr"))]);
        }
        let t = Instant::now();
        nodes.push(b.build().await.expect("node"));
        build_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (nodes, build_ms)
}

async fn dht(suite: &mut Suite) {
    let n: u32 = suite.scale(100, 10);
    let lookups: u32 = suite.scale(300, 10);
    let gets: u32 = suite.scale(100, 5);
    let rss_before = rss_bytes();
    let (nodes, mut build_ms) = network(n).await;
    eprintln!("dht: {n} nodes built");
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        suite.record(
            "node.rss_per_node_bytes",
            after.saturating_sub(before) as f64 / f64::from(n),
            "bytes",
            Better::Lower,
        );
    }
    suite.record(
        "node.build_ms_p50",
        percentile(&mut build_ms, 50.0),
        "ms",
        Better::Lower,
    );

    // The baseline: the same DHT over its own UDP transport.
    let mut udp = Vec::new();
    for i in 0..n {
        let kp = keypair(i);
        let (t, inbound) = UdpTransport::bind(loopback(), kp.clone())
            .await
            .expect("bind");
        let contact = Contact::new(kp.peer_id(), t.local_addr());
        let node = DhtNode::spawn(kp.peer_id(), DhtConfig::default(), u64::from(i), t, inbound);
        udp.push((node, contact));
    }
    for i in 1..n as usize {
        let via = udp[(i * 7919) % i].1;
        udp[i].0.bootstrap(vec![via]).await.expect("bootstrap");
    }

    eprintln!("dht: baseline built");
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 0..lookups {
        let at = (i * 37 % n) as usize;
        let key = Key::for_record(&i.to_be_bytes());
        let t = Instant::now();
        nodes[at].dht().closest_peers(key).await.expect("lookup");
        ours.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        udp[at].0.find_node(key).await.expect("lookup");
        base.push(t.elapsed().as_secs_f64() * 1e3);
    }
    suite.record_vs(
        "dht_loopback.lookup_ms_p50",
        percentile(&mut ours, 50.0),
        "ms",
        Better::Lower,
        "dht over UdpTransport",
        percentile(&mut base, 50.0),
    );

    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for v in 0..gets {
        let p = (v * 13 % n) as usize;
        let q = (p + 1) % n as usize;
        let key = Key::for_record(format!("bench/{v}").as_bytes());
        nodes[p]
            .dht()
            .put(
                nodes[p].keypair(),
                key,
                b"x".to_vec(),
                1,
                Duration::from_secs(600),
            )
            .await
            .expect("put");
        let record = p2p_foundation::identity::Signed::sign(
            &keypair(p as u32),
            p2p_foundation::dht::Record::new(key, "x"),
            1,
            SystemTime::now() + Duration::from_secs(600),
        )
        .expect("sign");
        udp[p].0.put_record(record).await.expect("put");
        let t = Instant::now();
        assert!(!nodes[q].dht().get(key).await.expect("get").is_empty());
        ours.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        assert!(!udp[q].0.get_record(key).await.expect("get").is_empty());
        base.push(t.elapsed().as_secs_f64() * 1e3);
    }
    suite.record_vs(
        "dht_loopback.get_ms_p50",
        percentile(&mut ours, 50.0),
        "ms",
        Better::Lower,
        "dht over UdpTransport",
        percentile(&mut base, 50.0),
    );
    drop(udp);
    for node in nodes {
        node.shutdown().await;
    }
}

fn args() -> serde_json::Map<String, serde_json::Value> {
    json!({"message": "hello"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

async fn mcp(suite: &mut Suite) {
    let calls: usize = suite.scale(2000, 20);
    let server = P2PNode::builder()
        .listen(loopback())
        .with_mcp_server()
        .build()
        .await
        .expect("server");
    server
        .mcp()
        .register_tool(Tool::new("echo").handler(|call| async move {
            Ok(tool_result::structured(serde_json::Value::Object(
                call.arguments,
            )))
        }))
        .expect("tool");
    let client = P2PNode::builder()
        .listen(loopback())
        .bootstrap(vec![(server.peer_id(), server.local_addr().expect("addr"))])
        .build()
        .await
        .expect("client");
    server
        .mcp()
        .register_service("bench", &["echo"])
        .await
        .expect("publish");
    // The baseline: sessions opened by hand on a bare connection to the same server.
    let bare = Endpoint::bind(
        &Keypair::generate(),
        Config::with_listen(Listen::loopback_v4()),
    )
    .await
    .expect("bind");
    let conn = bare
        .connect(server.peer_id(), &[server.local_addr().expect("addr")])
        .await
        .expect("connect");
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let (send, recv) = conn.open_bi(MCP_PROTOCOL).await.expect("stream");
        sessions.push(Arc::new(
            McpClient::connect(recv, send, StreamLimits::default(), Era::Initialize2025)
                .await
                .expect("session"),
        ));
    }
    // Warm up both paths (discovery, session setup).
    for _ in 0..10 {
        client.mcp().call("echo", args()).await.expect("routed");
        sessions[0]
            .call("echo", args(), Default::default())
            .await
            .expect("direct");
    }
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..calls {
        let t = Instant::now();
        client.mcp().call("echo", args()).await.expect("routed");
        ours.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        sessions[0]
            .call("echo", args(), Default::default())
            .await
            .expect("direct");
        base.push(t.elapsed().as_secs_f64() * 1e6);
    }
    for (name, p) in [
        ("mcp.routed_call_us_p50", 50.0),
        ("mcp.routed_call_us_p99", 99.0),
    ] {
        suite.record_vs(
            name,
            percentile(&mut ours, p),
            "us",
            Better::Lower,
            "one hand-made session on a bare connection",
            percentile(&mut base, p),
        );
    }

    let concurrent = 32;
    let per_task = calls / concurrent + 1;
    let router = Arc::clone(client.mcp().router());
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrent {
        let router = Arc::clone(&router);
        tasks.spawn(async move {
            for _ in 0..per_task {
                router.call("echo", args()).await.expect("routed");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let ours = (concurrent * per_task) as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..concurrent {
        let session = Arc::clone(&sessions[i % sessions.len()]);
        tasks.spawn(async move {
            for _ in 0..per_task {
                session
                    .call("echo", args(), Default::default())
                    .await
                    .expect("direct");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let base = (concurrent * per_task) as f64 / t.elapsed().as_secs_f64();
    suite.record_vs(
        "mcp.routed_calls_per_s",
        ours,
        "calls/s",
        Better::Higher,
        "4 hand-made sessions on a bare connection",
        base,
    );
    drop(sessions);
    client.shutdown().await;
    server.shutdown().await;
}

async fn gossip(suite: &mut Suite) {
    let n: u32 = suite.scale(30, 5);
    let messages: usize = suite.scale(50, 3);
    let (nodes, _) = network(n).await;
    let topic = "bench/gossip";
    let mut subs = Vec::new();
    for node in &nodes[1..] {
        subs.push(node.subscribe(topic).await.expect("subscribe"));
    }
    // The publisher knows every subscriber before the first message: one published while
    // it knew only some goes to those as fanout, and a subscriber reachable only through
    // the publisher (its mesh in another part of the network) would wait for gossip that
    // excludes fanout members. The figure is delivery time, not join time.
    tokio::time::timeout(
        Duration::from_secs(30),
        nodes[0].wait_for_topic_peers(topic, subs.len()),
    )
    .await
    .expect("every subscriber announced within 30 s")
    .expect("topic");
    // Let meshes form: wait until every subscriber has a mesh peer (driven by heartbeats).
    let t_topic = p2p_foundation::gossip::Topic::new(topic).expect("topic");
    for node in &nodes[1..] {
        let mut polls = 0;
        while node
            .gossip()
            .mesh_peers(t_topic.clone())
            .await
            .expect("mesh")
            .is_empty()
        {
            polls += 1;
            assert!(polls < 300, "no mesh after 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut delivery = Vec::new();
    for m in 0..messages {
        let t = Instant::now();
        let id = nodes[0]
            .publish(topic, format!("m{m}").into_bytes())
            .await
            .expect("publish");
        for sub in &mut subs {
            let wait = async {
                loop {
                    let got = sub.recv().await.expect("delivered");
                    if got.id == id {
                        break;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(30), wait)
                .await
                .expect("delivered within 30 s");
        }
        delivery.push(t.elapsed().as_secs_f64() * 1e3);
    }
    suite.record(
        "gossip.delivery_ms_p50",
        percentile(&mut delivery, 50.0),
        "ms",
        Better::Lower,
    );
    for node in nodes {
        node.shutdown().await;
    }
}
