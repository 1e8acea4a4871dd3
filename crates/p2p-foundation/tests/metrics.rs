//! `P2PNode::metrics`: three real nodes on loopback do DHT and MCP work, and the caller's
//! OpenMetrics text shows exactly that work.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use p2p_foundation::mcp_crate::{Tool, tool_result};
use p2p_foundation::{Key, P2PNode};
use serde_json::json;

/// Hang guard only: every wait below is on an event; this bounds a broken run.
const HANG_GUARD: Duration = Duration::from_secs(120);

async fn node(seed: Option<&P2PNode>) -> P2PNode {
    let mut b = P2PNode::builder()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .with_mcp_server();
    if let Some(seed) = seed {
        b = b.bootstrap(vec![(seed.peer_id(), seed.local_addr().expect("addr"))]);
    }
    b.build().await.expect("node builds")
}

/// The samples of an OpenMetrics text: `name{labels}` to value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_dht_operations_and_mcp_calls_by_tool() {
    tokio::time::timeout(HANG_GUARD, async {
        let seed = node(None).await;
        let provider = node(Some(&seed)).await;
        provider
            .mcp()
            .register_tool(Tool::new("echo").handler(|call| async move {
                Ok(tool_result::structured(json!({ "echo": call.arguments })))
            }))
            .expect("tool");
        provider
            .mcp()
            .register_service("svc", &["echo"])
            .await
            .expect("service");
        let caller = node(Some(&seed)).await;

        let key = Key::for_record(b"metrics-test");
        caller
            .dht()
            .put(
                caller.keypair(),
                key,
                b"v".to_vec(),
                1,
                Duration::from_secs(60),
            )
            .await
            .expect("put");
        assert_eq!(caller.dht().get(key).await.expect("get").len(), 1);
        caller
            .dht()
            .closest_peers(Key::for_record(b"somewhere"))
            .await
            .expect("lookup");
        let mut args = serde_json::Map::new();
        args.insert("text".into(), json!("hi"));
        caller.mcp().call("echo", args.clone()).await.expect("call");
        caller.mcp().call("echo", args.clone()).await.expect("call");
        caller
            .mcp()
            .call("no-such-tool", args)
            .await
            .expect_err("nobody provides it");

        let text = caller.metrics().await;
        let s = samples(&text);
        let get = |series: &str| {
            s.get(series)
                .copied()
                .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        };
        assert!(
            text.trim_end().ends_with("# EOF"),
            "OpenMetrics ends with # EOF"
        );
        assert_eq!(
            get(r#"p2pf_dht_operations_total{op="put",outcome="ok"}"#),
            1.0
        );
        // Its own get, and the service-record bundle the MCP discovery fetched.
        let gets = get(r#"p2pf_dht_operations_total{op="get",outcome="ok"}"#);
        assert!(gets >= 2.0, "{gets}");
        assert_eq!(get(r#"p2pf_dht_operation_seconds_count{op="get"}"#), gets);
        // Discovery looked up the providers of echo and of no-such-tool.
        assert!(get(r#"p2pf_dht_operations_total{op="providers",outcome="ok"}"#) >= 2.0);
        assert_eq!(get("p2pf_dht_lookup_hops_count"), 1.0);
        assert!(get("p2pf_dht_lookup_hops_sum") >= 1.0);
        assert_eq!(
            get(r#"p2pf_mcp_calls_total{tool="echo",outcome="ok"}"#),
            2.0
        );
        assert_eq!(
            get(r#"p2pf_mcp_calls_total{tool="no-such-tool",outcome="failed"}"#),
            1.0
        );
        assert_eq!(get(r#"p2pf_mcp_call_seconds_count{tool="echo"}"#), 2.0);
        // Connections: the caller dialled the seed (bootstrap) and the provider (the call).
        let peers = caller.connected_peers().len() as f64;
        assert!(peers >= 2.0);
        assert_eq!(get(r#"p2pf_connections{path="quic"}"#), peers);
        assert_eq!(get("p2pf_connected_peers"), peers);
        assert!(get(r#"p2pf_dials_total{outcome="direct"}"#) >= 2.0);
        assert!(
            get(r#"p2pf_connections_established_total{direction="outbound",path="quic"}"#) >= 2.0
        );
        assert!(get(r#"p2pf_transport_bytes_total{direction="out"}"#) > 0.0);
        assert!(get(r#"p2pf_transport_bytes_total{direction="in"}"#) > 0.0);
        assert_eq!(get(r#"p2pf_handshake_failures_total{reason="tls"}"#), 0.0);
        assert!(get("p2pf_dht_routing_table_peers") >= 2.0);
        // The provider served the two calls' session(s).
        let served = samples(&provider.metrics().await);
        assert!(served["p2pf_mcp_sessions_served_total"] >= 1.0);
        for n in [caller, provider, seed] {
            n.shutdown().await;
        }
    })
    .await
    .expect("hang guard");
}
