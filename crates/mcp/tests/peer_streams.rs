//! MCP over peer streams: tools, resources, prompts, progress, cancellation,
//! access control, both protocol eras, over duplex pipes and loopback TCP.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use p2p_foundation_identity::Keypair;
use p2p_foundation_mcp::{
    CallOptions, Caller, Era, McpError, Policy, RateLimit, ServerSettings, StreamLimits, Tool,
    access, rmcp, stream::Connector, tcp, tool_result,
};
use serde_json::{Value, json};

#[tokio::test]
async fn tools_resources_prompts_over_duplex_both_eras() {
    let owner = Keypair::generate();
    let server = demo_server(owner.peer_id());
    for era in [Era::Initialize2025, Era::Stateless2026] {
        let client = duplex_client(&server, Keypair::generate().peer_id(), era).await;
        let expected = match era {
            Era::Initialize2025 => "2025-11-25",
            Era::Stateless2026 => "2026-07-28",
        };
        assert_eq!(client.protocol_version().as_deref(), Some(expected));
        let tools = client.list_tools().await.expect("list");
        let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
        for n in ["echo", "add", "fail", "count"] {
            assert!(names.contains(&n.to_owned()), "{names:?}");
        }
        let add = tools.iter().find(|t| t.name == "add").expect("add");
        assert!(add.output_schema.is_some());

        let r = client
            .call("add", obj(json!({"a": 2, "b": 40})), CallOptions::default())
            .await
            .expect("add");
        assert_eq!(r.structured_content, Some(json!({"sum": 42})));
        assert_ne!(r.is_error, Some(true));

        let r = client
            .call("fail", obj(json!({})), CallOptions::default())
            .await
            .expect("fail");
        assert_eq!(r.is_error, Some(true));

        let res = client.peer().list_all_resources().await.expect("resources");
        assert_eq!(res[0].uri, "p2pf://readme");
        let read = client
            .peer()
            .read_resource(rmcp::model::ReadResourceRequestParams::new("p2pf://readme"))
            .await
            .expect("read");
        let text = serde_json::to_value(&read.contents[0]).expect("json");
        assert_eq!(text["text"], "hello from a p2p node");

        let prompts = client.peer().list_all_prompts().await.expect("prompts");
        assert_eq!(prompts[0].name, "greet");
        let mut args = serde_json::Map::new();
        args.insert("name".into(), "Ada".into());
        let got = client
            .peer()
            .get_prompt(rmcp::model::GetPromptRequestParams::new("greet").with_arguments(args))
            .await
            .expect("prompt");
        assert!(
            serde_json::to_string(&got.messages)
                .expect("json")
                .contains("Say hello to Ada")
        );
        client.close().await;
    }
}

#[tokio::test]
async fn schema_violations_and_unknown_tools_are_invalid_params() {
    let server = demo_server(Keypair::generate().peer_id());
    let client = duplex_client(&server, Keypair::generate().peer_id(), Era::Initialize2025).await;
    let e = client
        .call(
            "add",
            obj(json!({"a": "two", "b": 1})),
            CallOptions::default(),
        )
        .await
        .unwrap_err();
    match e {
        McpError::Remote { code, message } => {
            assert_eq!(code, -32602);
            assert!(message.contains("$.a"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let e = client
        .call("nope", obj(json!({})), CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, McpError::Remote { code: -32602, .. }), "{e:?}");
    // The connection keeps serving after errors.
    let r = client
        .call("add", obj(json!({"a": 1, "b": 1})), CallOptions::default())
        .await
        .expect("add");
    assert_eq!(r.structured_content, Some(json!({"sum": 2})));
}

#[tokio::test]
async fn progress_crosses_the_stream() {
    let server = demo_server(Keypair::generate().peer_id());
    let client = duplex_client(&server, Keypair::generate().peer_id(), Era::Initialize2025).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let opts = CallOptions {
        progress: Some(tx),
        ..Default::default()
    };
    let r = client
        .call("count", obj(json!({"n": 5})), opts)
        .await
        .expect("count");
    assert_ne!(r.is_error, Some(true));
    // Every notification was sent before the result, on the same ordered stream.
    let mut seen = Vec::new();
    while let Ok(u) = rx.try_recv() {
        seen.push(u.progress);
    }
    assert_eq!(seen, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
}

#[tokio::test]
async fn cancellation_crosses_the_stream() {
    let owner = Keypair::generate();
    let server = demo_server(owner.peer_id());
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<bool>(1);
    server
        .register_tool(Tool::new("block").handler(move |call| {
            let started = started_tx.clone();
            let done = done_tx.clone();
            async move {
                let _ = started.send(()).await;
                call.cancel.cancelled().await;
                let _ = done.send(true).await;
                Ok(tool_result::text("unreachable for the caller"))
            }
        }))
        .expect("register");
    let client =
        Arc::new(duplex_client(&server, Keypair::generate().peer_id(), Era::Initialize2025).await);
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.call("block", obj(json!({})), CallOptions::default())
            .await
    });
    tokio::time::timeout(HANG_GUARD, started_rx.recv())
        .await
        .expect("guard");
    call.abort(); // the caller gives up: the client sends notifications/cancelled
    let cancelled = tokio::time::timeout(HANG_GUARD, done_rx.recv())
        .await
        .expect("guard");
    assert_eq!(cancelled, Some(true));
    // Still usable.
    let r = client
        .call("add", obj(json!({"a": 1, "b": 2})), CallOptions::default())
        .await
        .expect("add");
    assert_eq!(r.structured_content, Some(json!({"sum": 3})));
}

#[tokio::test]
async fn access_control_and_rate_limits() {
    let owner = Keypair::generate();
    let alice = Keypair::generate();
    let bob = Keypair::generate();
    let server = p2p_foundation_mcp::McpServer::with_settings(
        owner.peer_id(),
        ServerSettings {
            rate_limit: Some(RateLimit::new(0.001, 3)),
            ..Default::default()
        },
    );
    let echo = |name: &str, policy: Policy| {
        Tool::new(name)
            .with_policy(policy)
            .handler(
                |call| async move { Ok(tool_result::structured(Value::Object(call.arguments))) },
            )
    };
    server
        .register_tool(echo("private", Policy::allow([alice.peer_id()])))
        .expect("reg");
    server
        .register_tool(echo("paid", Policy::Capability))
        .expect("reg");

    let as_alice = duplex_client(&server, alice.peer_id(), Era::Initialize2025).await;
    let as_bob = duplex_client(&server, bob.peer_id(), Era::Stateless2026).await;
    // Allow-list.
    as_alice
        .call("private", obj(json!({})), CallOptions::default())
        .await
        .expect("alice allowed");
    let e = as_bob
        .call("private", obj(json!({})), CallOptions::default())
        .await
        .unwrap_err();
    match e {
        McpError::Remote { code, message } => {
            assert_eq!(code, access::ACCESS_DENIED);
            assert!(message.contains("allow-list"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Capability token for bob.
    let token = access::issue_token(
        &owner,
        bob.peer_id(),
        ["paid"],
        std::time::SystemTime::now() + Duration::from_secs(60),
    )
    .expect("token");
    let with_token = CallOptions {
        capability: Some(access::encode_token(&token)),
        ..Default::default()
    };
    as_bob
        .call("paid", obj(json!({})), with_token.clone())
        .await
        .expect("bob with token");
    let e = as_bob
        .call("paid", obj(json!({})), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, McpError::Remote { code, message } if *code == access::ACCESS_DENIED && message.contains("requires")),
        "{e:?}"
    );
    // Bob's token presented by alice is refused.
    let e = as_alice
        .call("paid", obj(json!({})), with_token)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, McpError::Remote { message, .. } if message.contains("granted to")),
        "{e:?}"
    );
    // Rate limit (refused attempts count too): bob has made 3 calls (burst 3),
    // the next is refused; alice is unaffected.
    let e = as_bob
        .call("private", obj(json!({})), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, McpError::Remote { code, message } if *code == access::RATE_LIMITED && message.contains("rate limited")),
        "{e:?}"
    );
    // Alice made 2 so far: one more passes, then she is limited too.
    as_alice
        .call("private", obj(json!({})), CallOptions::default())
        .await
        .expect("alice 3rd");
    let e = as_alice
        .call("private", obj(json!({})), CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, McpError::Remote { code, .. } if *code == access::RATE_LIMITED),
        "{e:?}"
    );
}

#[tokio::test]
async fn tools_see_the_authenticated_caller_over_tcp() {
    let owner = Keypair::generate();
    let server = demo_server(owner.peer_id());
    server
        .register_tool(Tool::new("whoami").handler(|call| async move {
            Ok(tool_result::text(match call.caller {
                Caller::Peer(p) => p.to_string(),
                Caller::Local => "local".into(),
            }))
        }))
        .expect("reg");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(tcp::serve_tcp(
        server.clone(),
        listener,
        StreamLimits::default(),
    ));
    let me = Keypair::generate().peer_id();
    let connector = tcp::TcpConnector::new(me);
    connector.add(owner.peer_id(), addr);
    let (r, w) = connector.connect(owner.peer_id()).await.expect("connect");
    let client =
        p2p_foundation_mcp::McpClient::connect(r, w, StreamLimits::default(), Era::Initialize2025)
            .await
            .expect("client");
    let r = client
        .call("whoami", obj(json!({})), CallOptions::default())
        .await
        .expect("call");
    let text = serde_json::to_value(&r.content[0]).expect("json");
    assert_eq!(text["text"], me.to_string());
    let r = client
        .call(
            "add",
            obj(json!({"a": 20, "b": 22})),
            CallOptions::default(),
        )
        .await
        .expect("call");
    assert_eq!(r.structured_content, Some(json!({"sum": 42})));
}

#[tokio::test]
async fn typed_tools_generate_schemas_and_validate() {
    #[derive(serde::Deserialize, rmcp::schemars::JsonSchema)]
    #[schemars(crate = "rmcp::schemars")]
    struct In {
        text: String,
        times: u8,
    }
    #[derive(serde::Serialize, rmcp::schemars::JsonSchema)]
    #[schemars(crate = "rmcp::schemars")]
    struct Out {
        repeated: String,
    }
    let server = p2p_foundation_mcp::McpServer::new(Keypair::generate().peer_id());
    server
        .register_tool(Tool::typed("repeat", |_caller, i: In| async move {
            if i.times > 10 {
                return Err("too many".to_owned());
            }
            Ok(Out {
                repeated: i.text.repeat(usize::from(i.times)),
            })
        }))
        .expect("reg");
    let client = duplex_client(&server, Keypair::generate().peer_id(), Era::Initialize2025).await;
    let tools = client.list_tools().await.expect("list");
    let schema = serde_json::to_value(&tools[0].input_schema).expect("json");
    assert_eq!(schema["properties"]["text"]["type"], "string");
    let r = client
        .call(
            "repeat",
            obj(json!({"text": "ab", "times": 3})),
            CallOptions::default(),
        )
        .await
        .expect("call");
    assert_eq!(r.structured_content, Some(json!({"repeated": "ababab"})));
    let r = client
        .call(
            "repeat",
            obj(json!({"text": "ab", "times": 11})),
            CallOptions::default(),
        )
        .await
        .expect("call");
    assert_eq!(r.is_error, Some(true));
    let e = client
        .call("repeat", obj(json!({"text": "ab"})), CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, McpError::Remote { code: -32602, .. }), "{e:?}");
}
