//! Service records, discovery and routing with failover, over loopback TCP.

mod common;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use common::*;
use p2p_foundation_identity::{Keypair, PeerId, Signed, unix_millis};
use p2p_foundation_mcp::{
    Discovery, McpError, McpServer, MemoryRegistry, Query, Registry, RouteOptions, Router,
    ServicePublisher, StreamLimits, Tool,
    records::{ServiceRecord, record_keys, service_record, tag_key, tool_key},
    tcp, tool_result,
};
use serde_json::json;

struct Node {
    keypair: Keypair,
    server: McpServer,
    addr: std::net::SocketAddr,
}

async fn spawn_node(server: McpServer, keypair: Keypair) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(tcp::serve_tcp(
        server.clone(),
        listener,
        StreamLimits::default(),
    ));
    Node {
        keypair,
        server,
        addr,
    }
}

fn echo_tool(label: &'static str) -> Tool {
    Tool::new("generate_text")
        .with_tags(["text-generation"])
        .with_schema(json!({"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}))
        .handler(move |call| async move { Ok(tool_result::structured(json!({"by": label, "prompt": call.arguments["prompt"]}))) })
}

fn stalled_tool() -> Tool {
    Tool::new("generate_text")
        .with_tags(["text-generation"])
        .handler(|call| async move {
            call.cancel.cancelled().await;
            Ok(tool_result::text("too late"))
        })
}

/// Publish `server`'s `generate_text` as provider `keypair` with an explicit load hint.
async fn publish_with_load(
    registry: &MemoryRegistry,
    keypair: &Keypair,
    server: &McpServer,
    load: u32,
) {
    let base = service_record(
        keypair,
        server,
        "llm",
        &["generate_text"],
        Duration::from_secs(600),
    )
    .expect("record");
    let now = SystemTime::now();
    let mut payload = base
        .verify(now)
        .expect("own record verifies")
        .into_payload();
    payload.load = load;
    let record = Signed::sign(
        keypair,
        payload,
        unix_millis(now),
        now + Duration::from_secs(600),
    )
    .expect("sign");
    let keys = record_keys(record.clone().verify(now).expect("verifies").payload());
    for key in keys {
        registry
            .publish(key, record.clone())
            .await
            .expect("publish");
    }
}

fn router_for(registry: Arc<MemoryRegistry>, nodes: &[(PeerId, std::net::SocketAddr)]) -> Router {
    let me = Keypair::generate().peer_id();
    let connector = tcp::TcpConnector::new(me);
    for (p, a) in nodes {
        connector.add(*p, *a);
    }
    Router::new(Discovery::new(registry), Arc::new(connector))
}

#[tokio::test]
async fn fails_over_past_dead_and_stalled_providers() {
    let registry = Arc::new(MemoryRegistry::new());
    // Dead: a listener that is gone (connection refused).
    let dead_key = Keypair::generate();
    let dead_server = McpServer::new(dead_key.peer_id());
    dead_server.register_tool(echo_tool("dead")).expect("reg");
    let dead_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    // Stalled: accepts, never answers the call.
    let slow_key = Keypair::generate();
    let slow_server = McpServer::new(slow_key.peer_id());
    slow_server.register_tool(stalled_tool()).expect("reg");
    let slow = spawn_node(slow_server, slow_key).await;
    // Good, but advertising the highest load so it ranks last.
    let good_key = Keypair::generate();
    let good_server = McpServer::new(good_key.peer_id());
    good_server.register_tool(echo_tool("good")).expect("reg");
    let good = spawn_node(good_server, good_key).await;

    publish_with_load(&registry, &dead_key, &dead_server, 0).await;
    publish_with_load(&registry, &slow.keypair, &slow.server, 1).await;
    publish_with_load(&registry, &good.keypair, &good.server, 50).await;

    let router = router_for(
        registry.clone(),
        &[
            (dead_key.peer_id(), dead_addr),
            (slow.keypair.peer_id(), slow.addr),
            (good.keypair.peer_id(), good.addr),
        ],
    );
    let ranked = router
        .discovery()
        .find(&Query::tool("generate_text"))
        .await
        .expect("find");
    let order: Vec<PeerId> = ranked.iter().map(|c| c.provider).collect();
    assert_eq!(
        order,
        vec![
            dead_key.peer_id(),
            slow.keypair.peer_id(),
            good.keypair.peer_id()
        ]
    );

    let opts = RouteOptions {
        attempt_timeout: Duration::from_millis(500),
        deadline: Duration::from_secs(50),
        ..Default::default()
    };
    let routed = router
        .call_with(
            Query::tool("generate_text"),
            obj(json!({"prompt": "hi"})),
            opts.clone(),
        )
        .await
        .expect("routed");
    assert_eq!(routed.provider, good.keypair.peer_id());
    assert_eq!(routed.failovers, 2);
    assert_eq!(
        routed.result.structured_content,
        Some(json!({"by": "good", "prompt": "hi"}))
    );

    // Failures are remembered: the good provider now ranks first.
    let routed = router
        .call_with(
            Query::tool("generate_text"),
            obj(json!({"prompt": "again"})),
            opts,
        )
        .await
        .expect("routed");
    assert_eq!(routed.provider, good.keypair.peer_id());
    assert_eq!(routed.failovers, 0);
}

#[tokio::test]
async fn tool_errors_are_returned_not_retried() {
    let registry = Arc::new(MemoryRegistry::new());
    let a_key = Keypair::generate();
    let a = McpServer::new(a_key.peer_id());
    a.register_tool(
        Tool::new("generate_text")
            .handler(|_call| async move { Ok(tool_result::error("model refused")) }),
    )
    .expect("reg");
    let a = spawn_node(a, a_key).await;
    let b_key = Keypair::generate();
    let b = McpServer::new(b_key.peer_id());
    b.register_tool(echo_tool("b")).expect("reg");
    let b = spawn_node(b, b_key).await;
    publish_with_load(&registry, &a.keypair, &a.server, 0).await;
    publish_with_load(&registry, &b.keypair, &b.server, 99).await;
    let router = router_for(
        registry,
        &[(a.keypair.peer_id(), a.addr), (b.keypair.peer_id(), b.addr)],
    );
    let routed = router
        .call("generate_text", obj(json!({"prompt": "x"})))
        .await
        .expect("answer");
    assert_eq!(routed.provider, a.keypair.peer_id());
    assert_eq!(routed.result.is_error, Some(true));
    assert_eq!(routed.failovers, 0);
    assert_eq!(
        b.server.served(),
        0,
        "an isError answer must not be retried elsewhere"
    );
}

#[tokio::test]
async fn deadline_bounds_all_attempts() {
    let registry = Arc::new(MemoryRegistry::new());
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let k = Keypair::generate();
        let s = McpServer::new(k.peer_id());
        s.register_tool(stalled_tool()).expect("reg");
        let n = spawn_node(s, k).await;
        publish_with_load(&registry, &n.keypair, &n.server, 0).await;
        nodes.push((n.keypair.peer_id(), n.addr));
    }
    let router = router_for(registry, &nodes);
    let opts = RouteOptions {
        attempt_timeout: Duration::from_secs(5),
        deadline: Duration::from_millis(300),
        ..Default::default()
    };
    let e = router
        .call_with(Query::tool("generate_text"), obj(json!({})), opts)
        .await
        .unwrap_err();
    assert!(matches!(e, McpError::Deadline { attempts: 1, .. }), "{e:?}");
    let e = router
        .call("no_such_tool", obj(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, McpError::NoProvider { .. }), "{e:?}");
}

#[tokio::test]
async fn discovery_filters_by_tag_and_schema_and_skips_forgeries() {
    let registry = Arc::new(MemoryRegistry::new());
    let owner = Keypair::generate();
    let server = demo_server(owner.peer_id());
    server.register_tool(echo_tool("x")).expect("reg");
    let publisher = ServicePublisher::new(owner.clone(), server.clone(), registry.clone());
    let record = publisher
        .register_service("demo", &["add", "echo", "generate_text"])
        .await
        .expect("publish");
    assert_eq!(record.signer(), owner.peer_id());
    let record = record.verify(SystemTime::now()).expect("verifies");
    assert_eq!(record.payload().tools.len(), 3);
    assert!(registry.find(tool_key("add")).await.expect("find").len() == 1);
    assert!(registry.find(tag_key("math")).await.expect("find").len() == 1);

    let d = Discovery::new(registry.clone());
    let math = d.find(&Query::tag("math")).await.expect("find");
    assert_eq!(math.len(), 1);
    assert_eq!(math[0].tool.name, "add");
    let ok = d
        .find(&Query::tool("add").accepting(obj(json!({"a": 1, "b": 2}))))
        .await
        .expect("find");
    assert_eq!(ok.len(), 1);
    let incompatible = d
        .find(&Query::tool("add").accepting(obj(json!({"a": "one"}))))
        .await
        .expect("find");
    assert!(incompatible.is_empty());
    let by_tag = d
        .find(&Query::tag("text-generation").accepting(obj(json!({"prompt": "p"}))))
        .await
        .expect("find");
    assert_eq!(by_tag.len(), 1);
    assert!(d.find(&Query::default()).await.is_err());

    // Expired records are refused at publication.
    let expired = Signed::sign(
        &owner,
        ServiceRecord {
            service: "old".into(),
            tools: vec![],
            load: 0,
        },
        1,
        SystemTime::now() - Duration::from_secs(1),
    )
    .expect("sign");
    assert!(registry.publish(tool_key("add"), expired).await.is_err());
    assert!(d.find(&Query::tool("add")).await.expect("find").len() == 1);
    // Excluding self.
    let d_self = Discovery::new(registry).excluding(owner.peer_id());
    assert!(
        d_self
            .find(&Query::tool("add"))
            .await
            .expect("find")
            .is_empty()
    );
}

#[tokio::test]
async fn republish_refreshes_records() {
    let registry = Arc::new(MemoryRegistry::new());
    let owner = Keypair::generate();
    let server = demo_server(owner.peer_id());
    let publisher = Arc::new(
        ServicePublisher::new(owner.clone(), server, registry.clone())
            .with_ttl(Duration::from_millis(200)),
    );
    let task = publisher.spawn_republish("demo".into(), vec!["echo".into()]);
    let first_seq = tokio::time::timeout(HANG_GUARD, async {
        loop {
            if let Some(r) = registry.find(tool_key("echo")).await.expect("find").first() {
                return r.seq();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("first publication");
    // A later publication supersedes the first (its expiry moves forward too).
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            let recs = registry.find(tool_key("echo")).await.expect("find");
            if recs.len() == 1 && recs[0].seq() > first_seq {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("republished");
    task.abort();
}

#[tokio::test]
async fn capability_tokens_travel_with_routed_calls() {
    use p2p_foundation_mcp::{Policy, access};
    let registry = Arc::new(MemoryRegistry::new());
    let owner = Keypair::generate();
    let server = McpServer::new(owner.peer_id());
    server
        .register_tool(echo_tool("paid").with_policy(Policy::Capability))
        .expect("reg");
    let node = spawn_node(server, owner.clone()).await;
    publish_with_load(&registry, &node.keypair, &node.server, 0).await;
    let me = Keypair::generate();
    let connector = tcp::TcpConnector::new(me.peer_id());
    connector.add(owner.peer_id(), node.addr);
    let router = Router::new(Discovery::new(registry), Arc::new(connector));

    // Without a token: the provider's denial comes back as it is (not retried).
    let e = router
        .call("generate_text", obj(json!({"prompt": "x"})))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, McpError::Remote { code, message } if *code == access::ACCESS_DENIED && message.contains("requires a capability token")),
        "{e:?}"
    );
    // With a token the owner issued to this node.
    let token = access::issue_token(
        &owner,
        me.peer_id(),
        ["generate_text"],
        SystemTime::now() + Duration::from_secs(60),
    )
    .expect("token");
    let mut tokens = std::collections::HashMap::new();
    tokens.insert(owner.peer_id(), access::encode_token(&token));
    let opts = RouteOptions {
        capabilities: Arc::new(tokens),
        ..Default::default()
    };
    let routed = router
        .call_with(
            Query::tool("generate_text"),
            obj(json!({"prompt": "x"})),
            opts,
        )
        .await
        .expect("allowed with token");
    assert_eq!(
        routed.result.structured_content,
        Some(json!({"by": "paid", "prompt": "x"}))
    );
}
