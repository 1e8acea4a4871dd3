//! The PRD's API, end to end on loopback: multiaddr and word addresses, `P2PConfig`,
//! `register_mcp_service`, `discover_tools`, `call_tool`, `call_peer`, `dht_put` /
//! `dht_get` and `events`.

use std::time::Duration;

use p2p_foundation::mcp_crate::{Query, Tool, tool_result};
use p2p_foundation::{
    Error, NetworkConfig, P2PConfig, P2PNode, PeerEvent, SecurityConfig, WordAddress,
};
use serde_json::json;

/// Hang guard only: every wait below is on an event; this bounds a broken run.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn echo() -> Tool {
    Tool::new("echo").handler(|call| async move {
        Ok(tool_result::structured(json!({ "echo": call.arguments })))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prd_api_from_multiaddrs_to_routed_calls() {
    tokio::time::timeout(HANG_GUARD, async {
        let provider = P2PNode::new()
            .with_mcp_server()
            .listen_on("/ip4/127.0.0.1/udp/0/quic-v1")
            .build()
            .await
            .expect("provider");
        let addr = provider.local_addr().expect("addr");
        let mut events = provider.events();
        let pinned = format!(
            "/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{}",
            addr.port(),
            provider.peer_id()
        );
        let config = P2PConfig::builder()
            .network(
                NetworkConfig::default()
                    .listen_on("/ip4/127.0.0.1/tcp/0")
                    .bootstrap([pinned]),
            )
            .security(SecurityConfig::strict())
            .build()
            .expect("config");
        let caller = P2PNode::with_config(config).await.expect("caller");
        // A third node knows only the provider's three words (its id is learned).
        let words = WordAddress::from(addr).to_string();
        let third = P2PNode::new()
            .listen_on("127.0.0.1:0")
            .bootstrap_addrs([words.as_str()])
            .build()
            .await
            .expect("third");
        assert!(third.connected_peers().contains(&provider.peer_id()));

        provider
            .register_mcp_service("svc", vec![echo()])
            .await
            .expect("register");
        let found = caller
            .discover_tools(&Query::tool("echo"))
            .await
            .expect("discover");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].provider, provider.peer_id());

        let routed = caller
            .call_tool("echo", json!({"text": "hi"}))
            .await
            .expect("call_tool");
        assert_eq!(routed.provider, provider.peer_id());
        assert_eq!(
            routed.result.structured_content,
            Some(json!({"echo": {"text": "hi"}}))
        );
        let pinned = caller
            .call_peer(provider.peer_id(), "echo", json!({"n": 1}))
            .await
            .expect("call_peer");
        assert_eq!(pinned.provider, provider.peer_id());
        // That peer only: the third node offers no such tool, so nobody answers.
        assert!(
            caller
                .call_peer(third.peer_id(), "echo", json!({}))
                .await
                .is_err()
        );
        let bad = caller
            .call_tool("echo", json!([1, 2]))
            .await
            .expect_err("array");
        assert!(matches!(bad, Error::InvalidArguments(_)), "{bad}");

        assert!(
            caller
                .dht_put("api/key", b"v1".to_vec())
                .await
                .expect("put")
                >= 1
        );
        assert!(
            caller
                .dht_put("api/key", b"v2".to_vec())
                .await
                .expect("put")
                >= 1
        );
        assert_eq!(
            third.dht_get("api/key").await.expect("get"),
            Some(b"v2".to_vec()),
            "the newer put wins"
        );
        assert_eq!(third.dht_get("api/none").await.expect("get"), None);

        // events(): the provider saw the caller join.
        loop {
            if let PeerEvent::Connected { peer, .. } = events.recv().await.expect("event") {
                if peer == caller.peer_id() {
                    break;
                }
            }
        }
        for n in [third, caller, provider] {
            n.shutdown().await;
        }
    })
    .await
    .expect("hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_addresses_are_refused_naming_the_part_and_ipv6_only_listens_on_ipv6() {
    let e = P2PNode::new()
        .listen_on("/ip4/127.0.0.1/udp/nine/quic-v1")
        .build()
        .await
        .expect_err("bad port");
    assert!(matches!(e, Error::InvalidAddress { .. }));
    assert!(e.to_string().contains("'nine'"), "{e}");
    let e = P2PNode::new()
        .bootstrap_addrs(["/ip4/127.0.0.1/udp/1/quic-v1/p2p/not-a-peer"])
        .build()
        .await
        .expect_err("bad id");
    assert!(e.to_string().contains("'not-a-peer'"), "{e}");

    let v6 = P2PNode::with_config(
        P2PConfig::builder()
            .network(NetworkConfig::ipv6_only().listen_on("/ip6/::1/udp/0/quic-v1"))
            .build()
            .expect("config"),
    )
    .await
    .expect("v6 node");
    assert!(v6.local_addr().expect("addr").is_ipv6());
    let peer = P2PNode::new()
        .listen_on("[::1]:0")
        .build()
        .await
        .expect("peer");
    peer.connect(v6.peer_id(), &[v6.local_addr().expect("addr")])
        .await
        .expect("an IPv6 peer connects");
    peer.shutdown().await;
    v6.shutdown().await;
}
