//! Five real nodes on 127.0.0.1 (QUIC + TLS), bootstrapped from one: the DHT, gossip and
//! MCP all over the one connection per peer.

use std::net::SocketAddr;
use std::time::Duration;

use p2p_foundation::mcp_crate::{Query, RouteOptions, Tool, tool_result};
use p2p_foundation::transport::TransportError;
use p2p_foundation::{Error, Key, Keypair, P2PNode};
use serde_json::{Value, json};

/// Hang guard only: every wait below is on an event; this bounds a broken run.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn transport_config() -> p2p_foundation::transport::Config {
    let mut c = p2p_foundation::transport::Config::default();
    // A dead peer's address fails in seconds, not the default ten.
    c.handshake_timeout = Duration::from_secs(3);
    c
}

async fn node(bootstrap: Option<&P2PNode>, mcp: bool) -> P2PNode {
    let mut b = P2PNode::builder()
        .listen(loopback())
        .transport_config(transport_config());
    if mcp {
        b = b.with_mcp_server();
    }
    if let Some(seed) = bootstrap {
        b = b.bootstrap(vec![(seed.peer_id(), seed.local_addr().expect("addr"))]);
    }
    b.build().await.expect("node builds")
}

/// Node 0 first, then nodes 1..5 bootstrapping from it.
async fn five(mcp: bool) -> Vec<P2PNode> {
    let first = node(None, mcp).await;
    let mut nodes = vec![first];
    for _ in 1..5 {
        let n = node(Some(&nodes[0]), mcp).await;
        nodes.push(n);
    }
    nodes
}

/// Subscribes every node but the first to `topic`, and waits until the first knows each
/// subscription. Every node bootstrapped from node 0, so node 0 is connected to all of
/// them: publish only once it knows each one's subscription (a message published before a
/// peer subscribes is, by pubsub semantics, not owed to that peer).
async fn subscribe_all_but_the_first(
    nodes: &[P2PNode],
    topic: &str,
) -> Vec<p2p_foundation::Subscription> {
    let mut subs = Vec::new();
    for n in &nodes[1..] {
        subs.push(n.subscribe(topic).await.expect("subscribe"));
    }
    nodes[0]
        .wait_for_topic_peers(topic, subs.len())
        .await
        .expect("topic");
    subs
}

async fn shutdown_all(nodes: Vec<P2PNode>) {
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_record_put_on_node_1_is_got_on_node_5() {
    tokio::time::timeout(HANG_GUARD, async {
        let nodes = five(false).await;
        for n in &nodes[1..] {
            assert!(n.dht().routing_table_len().await.expect("dht") >= 1);
        }
        let key = Key::for_record(b"facade/greeting");
        let stored = nodes[0]
            .dht()
            .put(
                nodes[0].keypair(),
                key,
                b"hello over QUIC".to_vec(),
                1,
                Duration::from_secs(600),
            )
            .await
            .expect("put");
        assert!(stored >= 1, "at least one node stored the record");
        let found = nodes[4].dht().get(key).await.expect("get");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].payload().value, b"hello over QUIC");
        assert_eq!(found[0].signer(), nodes[0].peer_id());

        // Closest-peer lookups learn addresses: node 5 can then dial every node by id.
        let closest = nodes[4]
            .dht()
            .closest_peers(nodes[2].peer_id().kad_key())
            .await
            .expect("lookup");
        assert!(closest.iter().any(|c| c.peer() == nodes[2].peer_id()));
        assert!(!nodes[4].addresses_of(&nodes[2].peer_id()).is_empty());

        // Every DHT exchange went over the facade's streams, one connection per peer.
        let served: u64 = nodes.iter().map(|n| n.stats().kad_served).sum();
        assert!(served > 0);
        for n in &nodes {
            let peers = n.connected_peers();
            let mut unique = peers.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(peers.len(), unique.len());
        }
        shutdown_all(nodes).await;
    })
    .await
    .expect("hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_published_on_node_2_reaches_every_subscriber() {
    tokio::time::timeout(HANG_GUARD, async {
        let nodes = five(false).await;
        let topic = "facade/news";
        let mut subs = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if i != 1 {
                subs.push((n.peer_id(), n.subscribe(topic).await.expect("subscribe")));
            }
        }
        // Wait (on SUBSCRIBE events) until the publisher knows every subscriber: gossip
        // peers are the connected peers, and the DHT bootstrap connected all five.
        nodes[1]
            .wait_for_topic_peers(topic, 4)
            .await
            .expect("topic");
        let id = nodes[1]
            .publish(topic, b"hello subscribers".to_vec())
            .await
            .expect("publish");
        for (peer, sub) in &mut subs {
            let msg = sub.recv().await.expect("a message");
            assert_eq!(msg.id, id, "at {peer}");
            assert_eq!(msg.data(), b"hello subscribers");
            assert_eq!(msg.author(), nodes[1].peer_id());
            assert_eq!(msg.topic().as_str(), topic);
        }
        shutdown_all(nodes).await;
    })
    .await
    .expect("hang guard");
}

fn echo_tool(me: String) -> Tool {
    Tool::new("echo")
        .with_description("echoes its arguments and says who served them")
        .with_tags(["test"])
        .handler(move |call| {
            let me = me.clone();
            async move {
                Ok(tool_result::structured(json!({
                    "served_by": me,
                    "echo": Value::Object(call.arguments),
                })))
            }
        })
}

fn args() -> serde_json::Map<String, Value> {
    json!({"text": "ping"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tool_is_discovered_on_the_dht_and_fails_over_when_its_provider_stops() {
    tokio::time::timeout(HANG_GUARD, async {
        let mut nodes = five(true).await;
        for i in [2, 3] {
            let mcp = nodes[i].mcp();
            mcp.register_tool(echo_tool(nodes[i].peer_id().to_string()))
                .expect("tool");
            mcp.register_service("echo-service", &["echo"])
                .await
                .expect("publish");
        }
        let (p3, p4) = (nodes[2].peer_id(), nodes[3].peer_id());

        // Discovery through the DHT: both providers, from node 1.
        let found = nodes[0]
            .mcp()
            .discover(&Query::tool("echo"))
            .await
            .expect("discover");
        let mut providers: Vec<_> = found.iter().map(|c| c.provider).collect();
        providers.sort();
        let mut expected = vec![p3, p4];
        expected.sort();
        assert_eq!(providers, expected);
        // And by tag.
        let tagged = nodes[0]
            .mcp()
            .discover(&Query::tag("test"))
            .await
            .expect("discover by tag");
        assert_eq!(tagged.len(), 2);

        // A call pinned to node 3 succeeds (and makes node 3 the preferred provider).
        let pinned = RouteOptions {
            only: Some(p3),
            ..RouteOptions::default()
        };
        let routed = nodes[0]
            .mcp()
            .call_with(Query::tool("echo"), args(), pinned)
            .await
            .expect("call node 3");
        assert_eq!(routed.provider, p3);
        let out = routed.result.structured_content.expect("structured");
        assert_eq!(out["served_by"], json!(p3.to_string()));
        assert_eq!(out["echo"], json!({"text": "ping"}));

        // The preferred provider goes away: the next call fails over to node 4.
        let gone = nodes.remove(2);
        gone.shutdown().await;
        let routed = nodes[0]
            .mcp()
            .call("echo", args())
            .await
            .expect("failover call");
        assert_eq!(routed.provider, p4);
        assert_eq!(routed.failovers, 1, "node 3 was tried first");
        let out = routed.result.structured_content.expect("structured");
        assert_eq!(out["served_by"], json!(p4.to_string()));
        shutdown_all(nodes).await;
    })
    .await
    .expect("hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_peer_id_in_bootstrap_is_refused() {
    tokio::time::timeout(HANG_GUARD, async {
        let real = node(None, false).await;
        let impostor = Keypair::generate().peer_id();
        let err = P2PNode::builder()
            .listen(loopback())
            .bootstrap(vec![(impostor, real.local_addr().expect("addr"))])
            .build()
            .await
            .expect_err("a peer proving another id is refused");
        match &err {
            Error::Bootstrap { source, peer, .. } => {
                assert_eq!(*peer, impostor);
                assert!(
                    matches!(
                        **source,
                        Error::Transport(TransportError::PeerIdMismatch { expected, actual })
                            if expected == impostor && actual == real.peer_id()
                    ),
                    "{source}"
                );
            }
            other => panic!("unexpected error: {other}"),
        }
        // The same through connect() on a running node.
        let other = node(None, false).await;
        let err = other
            .connect(impostor, &[real.local_addr().expect("addr")])
            .await
            .expect_err("refused");
        assert!(matches!(
            err,
            Error::Transport(TransportError::PeerIdMismatch { .. })
        ));
        assert!(other.connected_peers().is_empty());
        // The right id connects.
        other
            .connect(real.peer_id(), &[real.local_addr().expect("addr")])
            .await
            .expect("connects");
        assert_eq!(other.connected_peers(), vec![real.peer_id()]);
        other.shutdown().await;
        real.shutdown().await;
    })
    .await
    .expect("hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_file_is_created_then_reused_and_mcp_needs_the_server() {
    tokio::time::timeout(HANG_GUARD, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let a = P2PNode::builder()
            .listen(loopback())
            .identity_file(&path)
            .build()
            .await
            .expect("build");
        let id = a.peer_id();
        assert!(matches!(
            a.mcp().register_tool(echo_tool(String::new())),
            Err(Error::McpDisabled)
        ));
        a.shutdown().await;
        let b = P2PNode::builder()
            .listen(loopback())
            .identity_file(&path)
            .build()
            .await
            .expect("build");
        assert_eq!(b.peer_id(), id);
        b.shutdown().await;
    })
    .await
    .expect("hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_reaches_every_subscriber_among_eight_loopback_nodes() {
    // More than four peers share 127.0.0.1: without the facade's loopback exemption from
    // gossip's IP-colocation penalty they would graylist each other and nothing would flow.
    tokio::time::timeout(HANG_GUARD, async {
        let mut nodes = five(false).await;
        for _ in 0..3 {
            let n = node(Some(&nodes[0]), false).await;
            nodes.push(n);
        }
        let topic = "facade/crowd";
        let mut subs = subscribe_all_but_the_first(&nodes, topic).await;
        let id = nodes[0]
            .publish(topic, b"to the crowd".to_vec())
            .await
            .expect("publish");
        for sub in &mut subs {
            let msg = sub.recv().await.expect("a message");
            assert_eq!(msg.id, id);
            assert_eq!(msg.data(), b"to the crowd");
        }
        let m = nodes[0].gossip().metrics().await.expect("metrics");
        assert_eq!(m.graylisted, 0, "no loopback peer graylisted");
        shutdown_all(nodes).await;
    })
    .await
    .expect("hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_addr_learns_and_proves_the_peer_id_at_a_word_address() {
    tokio::time::timeout(HANG_GUARD, async {
        let a = node(None, false).await;
        let b = node(None, false).await;
        // What a person would type: the three words of a's address, no id.
        let words = a.word_address().expect("words").to_string();
        let addr = p2p_foundation::words::parse_socket_addr(&words).expect("parses");
        let peer = b.connect_addr(addr).await.expect("connects");
        assert_eq!(peer, a.peer_id());
        assert_eq!(b.connected_peers(), vec![a.peer_id()]);
        assert!(b.addresses_of(&a.peer_id()).contains(&addr));
        let info = b.connection_info(&a.peer_id()).expect("a live connection");
        assert_eq!(info.path, p2p_foundation::transport::PathKind::Quic);
        assert_eq!(info.remote, addr);
        assert!(info.rtt > Duration::ZERO && info.rtt < Duration::from_secs(5));
        assert!(b.connection_info(&Keypair::generate().peer_id()).is_none());
        // Its own address is refused with an error naming it.
        let own = b.local_addr().expect("addr");
        assert!(matches!(
            b.connect_addr(own).await,
            Err(Error::SelfAddress { addr }) if addr == own
        ));
        // Nobody listening: a transport error, not a hang.
        let dead = {
            let s = std::net::UdpSocket::bind(loopback()).expect("bind");
            s.local_addr().expect("addr")
        };
        assert!(matches!(
            b.connect_addr(dead).await,
            Err(Error::Transport(_))
        ));
        b.shutdown().await;
        a.shutdown().await;
    })
    .await
    .expect("hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_confirmed_waits_for_every_subscribers_signed_acknowledgement() {
    tokio::time::timeout(HANG_GUARD, async {
        let nodes = five(false).await;
        let topic = "facade/acked";
        let mut subs = subscribe_all_but_the_first(&nodes, topic).await;
        let delivery = nodes[0]
            .publish_confirmed(topic, b"ack me".to_vec(), 4, Duration::from_secs(20))
            .await
            .expect("publish");
        assert!(delivery.complete, "{delivery:?}");
        let mut ackers = delivery.ackers.clone();
        ackers.sort();
        let mut expected: Vec<_> = nodes[1..].iter().map(|n| n.peer_id()).collect();
        expected.sort();
        assert_eq!(ackers, expected);
        for sub in &mut subs {
            assert_eq!(sub.recv().await.expect("message").id, delivery.id);
        }
        // Asking more acknowledgements than there are subscribers times out, with the
        // ones that did come.
        let short = nodes[0]
            .publish_confirmed(topic, b"too many".to_vec(), 9, Duration::from_millis(800))
            .await
            .expect("publish");
        assert!(!short.complete);
        assert_eq!(short.ackers.len(), 4);
        shutdown_all(nodes).await;
    })
    .await
    .expect("hang guard");
}
