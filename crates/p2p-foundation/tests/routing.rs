//! Stream routing, connection de-duplication, shutdown and addressing, on loopback with
//! real QUIC.

use std::net::SocketAddr;
use std::time::Duration;

use p2p_foundation::transport::{Config, Endpoint, Listen};
use p2p_foundation::{
    Error, GOSSIP_PROTOCOL, KAD_PROTOCOL, Keypair, MCP_PROTOCOL, P2PNode, PeerEvent,
    parse_peer_addr,
};

/// Hang guard only: every wait below is on an event; this bounds a broken run.
const HANG_GUARD: Duration = Duration::from_secs(120);

async fn guard<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .expect("hang guard");
}

async fn node(mcp: bool) -> P2PNode {
    let b = P2PNode::builder().listen(SocketAddr::from(([127, 0, 0, 1], 0)));
    let b = if mcp { b.with_mcp_server() } else { b };
    b.build().await.expect("node builds")
}

/// A bare transport endpoint, to send what a p2p-foundation node never would.
async fn raw() -> Endpoint {
    Endpoint::bind(
        &Keypair::generate(),
        Config::with_listen(Listen::loopback_v4()),
    )
    .await
    .expect("bind")
}

/// Opens `protocol`, sends `payload`, and reports whether the node answered or reset.
async fn exchange(ep: &Endpoint, node: &P2PNode, protocol: &str, payload: &[u8]) -> bool {
    let conn = ep
        .connect(node.peer_id(), &[node.local_addr().expect("addr")])
        .await
        .expect("connect");
    let (mut send, mut recv) = conn.open_bi(protocol).await.expect("open");
    // The node may reset the stream before everything is written: that is an answer too.
    let _ = send.write_all(payload).await;
    let _ = send.finish().await;
    recv.read_to_end(1 << 20).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_unknown_or_unserved_protocols_are_refused() {
    guard(async {
        let plain = node(false).await;
        let ep = raw().await;
        assert!(!exchange(&ep, &plain, "/evil/1", b"hello").await);
        assert_eq!(plain.stats().unknown_protocol_streams, 1);
        // MCP is not served without with_mcp_server().
        assert!(!exchange(&ep, &plain, MCP_PROTOCOL, b"{}\n").await);
        assert_eq!(plain.stats().unknown_protocol_streams, 2);
        assert_eq!(plain.stats().mcp_sessions, 0);
        plain.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_malformed_dht_requests_are_refused_and_the_node_keeps_serving() {
    guard(async {
        let n = node(false).await;
        let ep = raw().await;
        // 64 KiB is the frame limit: one byte more is refused without being buffered.
        assert!(!exchange(&ep, &n, KAD_PROTOCOL, &vec![0u8; 64 * 1024 + 1]).await);
        assert_eq!(n.stats().kad_refused, 1);
        // Garbage of a legal size: the DHT refuses it, the stream is reset.
        assert!(!exchange(&ep, &n, KAD_PROTOCOL, b"\x01\x00\x00\x00\x03abc").await);
        assert_eq!(n.stats().kad_refused, 2);
        // A real node still gets its DHT requests served by it.
        let other = P2PNode::builder()
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .bootstrap(vec![(n.peer_id(), n.local_addr().expect("addr"))])
            .build()
            .await
            .expect("bootstraps");
        assert!(n.stats().kad_served >= 1);
        other.shutdown().await;
        n.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gossip_stream_from_a_connection_that_is_not_kept_is_refused() {
    use tokio::io::AsyncReadExt;
    guard(async {
        let n = node(false).await;
        // Subscribed, so the node's gossip sends SUBSCRIBE down every gossip stream it takes.
        let _sub = n.subscribe("t").await.expect("subscribe");
        let ep = raw().await;
        let addr = [n.local_addr().expect("addr")];
        let first = ep.connect(n.peer_id(), &addr).await.expect("connect");
        let (_s1, mut r1) = first.open_bi(GOSSIP_PROTOCOL).await.expect("open");
        let mut prefix = [0u8; 4];
        r1.read_exact(&mut prefix)
            .await
            .expect("the node took the gossip stream");
        // A second connection from the same dialer replaces the first (the newer wins) ...
        let second = ep
            .connect(n.peer_id(), &addr)
            .await
            .expect("second connection");
        let (_s2, mut r2) = second.open_bi(GOSSIP_PROTOCOL).await.expect("open");
        r2.read_exact(&mut prefix)
            .await
            .expect("taken on the new connection");
        // ... so a gossip stream on the first one is refused from now on.
        let (_s3, mut r3) = first.open_bi(GOSSIP_PROTOCOL).await.expect("open on old");
        assert!(
            r3.read_to_end(1 << 16).await.is_err(),
            "reset on the replaced connection"
        );
        assert_eq!(n.stats().duplicate_connections, 1);
        n.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_leave_both_sides_on_one_connection() {
    guard(async {
        let a = node(false).await;
        let b = node(false).await;
        let (a_addr, b_addr) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        let (to_b, to_a) = ([b_addr], [a_addr]);
        let (ra, rb) = tokio::join!(a.connect(b.peer_id(), &to_b), b.connect(a.peer_id(), &to_a));
        ra.expect("a dials b");
        rb.expect("b dials a");
        assert_eq!(a.connected_peers(), vec![b.peer_id()]);
        assert_eq!(b.connected_peers(), vec![a.peer_id()]);
        // Gossip runs on the connection both kept: it flows both ways.
        let mut sub_a = a.subscribe("both/ways").await.expect("sub");
        let mut sub_b = b.subscribe("both/ways").await.expect("sub");
        a.wait_for_topic_peers("both/ways", 1).await.expect("topic");
        b.wait_for_topic_peers("both/ways", 1).await.expect("topic");
        a.publish("both/ways", b"from a".to_vec())
            .await
            .expect("publish");
        b.publish("both/ways", b"from b".to_vec())
            .await
            .expect("publish");
        assert_eq!(sub_b.recv().await.expect("at b").data(), b"from a");
        assert_eq!(sub_a.recv().await.expect("at a").data(), b"from b");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_and_peers_see_it_at_once() {
    guard(async {
        let a = node(true).await;
        let b = node(false).await;
        let mut events = a.peer_events();
        b.connect(a.peer_id(), &[a.local_addr().expect("addr")])
            .await
            .expect("connect");
        // Precondition: the acceptor has the connection too. If the transport completes a
        // dial without ever handing the connection to the acceptor, say so plainly.
        let accepted = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                if let PeerEvent::Connected { peer, .. } = events.recv().await.expect("event") {
                    if peer == b.peer_id() {
                        break;
                    }
                }
            }
        })
        .await;
        assert!(
            accepted.is_ok(),
            "the dial completed at b but a never got the connection: a {:?} / b {:?}",
            a.transport_metrics(),
            b.transport_metrics()
        );
        let (b_id, b_addr) = (b.peer_id(), b.local_addr().expect("addr"));
        b.shutdown().await;
        // Not after the 30 s idle timeout: the close reaches a with the shutdown code.
        loop {
            match events.recv().await.expect("event") {
                PeerEvent::Disconnected { peer, reason } if peer == b_id => {
                    assert!(reason.contains("node shutting down"), "{reason}");
                    break;
                }
                _ => {}
            }
        }
        assert!(a.connected_peers().is_empty());
        // A node that is shut down is gone: dialling its address fails.
        let mut quick = Config::default();
        quick.handshake_timeout = Duration::from_secs(2);
        let c = P2PNode::builder()
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .transport_config(quick)
            .build()
            .await
            .expect("build");
        let err = c.connect(b_id, &[b_addr]).await.expect_err("nobody there");
        assert!(
            matches!(err, Error::Transport(_) | Error::Timeout { .. }),
            "{err}"
        );
        c.shutdown().await;
        a.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_listen_is_dual_stack_and_peer_addresses_parse_as_numbers_or_words() {
    guard(async {
        // The default listen address, but no LAN discovery: this test stays on loopback
        // and sends nothing out of the host's interfaces (tests/lan.rs covers mDNS).
        let server = P2PNode::builder()
            .mdns(false)
            .build()
            .await
            .expect("default build");
        let port = server.local_addr().expect("addr").port();
        assert!(server.local_addr().expect("addr").ip().is_unspecified());
        // Reached over IPv4 ...
        let v4 = node(false).await;
        v4.connect(
            server.peer_id(),
            &[SocketAddr::from(([127, 0, 0, 1], port))],
        )
        .await
        .expect("over IPv4");
        // ... and over IPv6, through a bootstrap string.
        let text = format!("{}@[::1]:{port}", server.peer_id());
        let v6 = P2PNode::builder()
            .listen("[::1]:0".parse().expect("addr"))
            .bootstrap_str(&text)
            .expect("parses")
            .build()
            .await
            .expect("over IPv6");
        assert_eq!(v6.connected_peers(), vec![server.peer_id()]);
        // Three words name an IPv4 socket address.
        let words = v4.word_address().expect("words");
        assert_eq!(words.words().len(), 3);
        let (peer, addr) =
            parse_peer_addr(&format!("{}@{words}", v4.peer_id())).expect("words parse");
        assert_eq!((peer, addr), (v4.peer_id(), v4.local_addr().expect("addr")));
        assert!(parse_peer_addr("no-at-sign").is_err());
        assert!(parse_peer_addr(&format!("{}@not an address", v4.peer_id())).is_err());
        for n in [server, v4, v6] {
            n.shutdown().await;
        }
    })
    .await;
}

/// Whether `peer` is in `node`'s DHT routing table.
async fn in_table(node: &P2PNode, peer: p2p_foundation::PeerId) -> bool {
    let snapshot = node.dht().node().routing_snapshot().await.expect("dht");
    snapshot.contacts.iter().any(|c| c.peer() == peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_shuts_down_leaves_its_peers_routing_tables_at_once() {
    guard(async {
        let a = node(false).await;
        let seed = vec![(a.peer_id(), a.local_addr().expect("addr"))];
        let b = P2PNode::builder()
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .bootstrap(seed.clone())
            .build()
            .await
            .expect("b");
        let c = P2PNode::builder()
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .bootstrap(seed)
            .build()
            .await
            .expect("c");
        assert!(in_table(&a, b.peer_id()).await && in_table(&a, c.peer_id()).await);
        let mut events = a.peer_events();
        let b_id = b.peer_id();
        b.shutdown().await;
        loop {
            if let PeerEvent::Disconnected { peer, .. } = events.recv().await.expect("event") {
                if peer == b_id {
                    break;
                }
            }
        }
        // The forget follows the Disconnected event on the same task: a bounded poll for
        // that one step, not for a timeout (a dead contact would otherwise stay until
        // requests to it failed).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while in_table(&a, b_id).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "b is still in a's routing table after it shut down"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Only the node that left: c stays, and a dropped connection is not a departure.
        assert!(in_table(&a, c.peer_id()).await);
        c.shutdown().await;
        a.shutdown().await;
    })
    .await;
}

/// A node that shut down releases its port at once: a node built on the same port right
/// after (a service restarted in the same process, a binding's `shutdown()` then `start()`)
/// binds it, on both QUIC and TCP, and its old peer reaches the new node there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_port_for_a_node_started_on_it_next() {
    guard(async {
        let a = node(true).await;
        let addr = a.local_addr().expect("addr");
        let b = node(false).await;
        // A live connection at shutdown: QUIC holds the socket until it has drained.
        b.connect(a.peer_id(), &[addr]).await.expect("connect");
        a.shutdown().await;
        let again = P2PNode::builder()
            .listen(addr)
            .build()
            .await
            .unwrap_or_else(|e| panic!("rebinding {addr} right after shutdown: {e}"));
        assert_eq!(again.local_addr().expect("addr"), addr);
        b.connect(again.peer_id(), &[addr])
            .await
            .expect("the new node answers on the old port");
        again.shutdown().await;
        b.shutdown().await;
    })
    .await;
}
