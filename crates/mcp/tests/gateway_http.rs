//! The Streamable HTTP gateway: loopback binding and Origin validation.

mod common;

use common::{HANG_GUARD, demo_server};
use p2p_foundation_identity::Keypair;
use p2p_foundation_mcp::{Gateway, HttpConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POST an `initialize` with `origin` and return the HTTP status code.
async fn post_initialize(addr: std::net::SocketAddr, origin: Option<&str>) -> u16 {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(o) = origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut head = [0u8; 12];
    sock.read_exact(&mut head).await.expect("status line");
    let line = String::from_utf8_lossy(&head).to_string();
    line[9..12].parse().expect("status code")
}

#[tokio::test]
async fn binds_loopback_and_validates_origin() {
    let gw = Gateway::new(demo_server(Keypair::generate().peer_id()));
    let http = gw.serve_http(HttpConfig::default()).await.expect("serve");
    assert!(
        http.local_addr().ip().is_loopback(),
        "default bind must be loopback"
    );
    let addr = http.local_addr();
    let run = async {
        // Non-browser clients send no Origin: accepted.
        assert_eq!(post_initialize(addr, None).await, 200);
        // A local browser page: accepted.
        assert_eq!(
            post_initialize(addr, Some(&format!("http://localhost:{}", addr.port()))).await,
            200
        );
        // A foreign web page (DNS-rebinding / CSRF vector): refused.
        assert_eq!(
            post_initialize(addr, Some("http://evil.example")).await,
            403
        );
    };
    tokio::time::timeout(HANG_GUARD, run)
        .await
        .expect("hang guard");
    http.shutdown();
}

/// The gateway lists network tools namespaced by provider and routes calls over
/// peer streams (loopback TCP here), with failover for `any.<tool>`.
#[tokio::test]
async fn network_tools_are_namespaced_and_routed() {
    use std::sync::Arc;

    use common::obj;
    use p2p_foundation_mcp::{
        CallOptions, Discovery, Era, McpClient, McpServer, MemoryRegistry, NetworkTools, Query,
        Router, ServicePublisher, StreamLimits, Tool, framing::LineTransport, tcp, tool_result,
    };
    use serde_json::json;

    let registry = Arc::new(MemoryRegistry::new());
    let me = Keypair::generate();
    let connector = Arc::new(tcp::TcpConnector::new(me.peer_id()));
    let mut providers = Vec::new();
    for label in ["alpha", "beta"] {
        let k = Keypair::generate();
        let s = McpServer::new(k.peer_id());
        s.register_tool(
            Tool::new("generate_text")
                .with_tags(["text-generation"])
                .handler(
                    move |_call| async move { Ok(tool_result::structured(json!({"by": label}))) },
                ),
        )
        .expect("reg");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        connector.add(k.peer_id(), l.local_addr().expect("addr"));
        ServicePublisher::new(k.clone(), s.clone(), registry.clone())
            .register_service("llm", &["generate_text"])
            .await
            .expect("publish");
        let task = tokio::spawn(tcp::serve_tcp(s, l, StreamLimits::default()));
        providers.push((k.peer_id(), label, task));
    }
    // A ghost: a published provider whose address no longer listens.
    let ghost_key = Keypair::generate();
    let ghost = ghost_key.peer_id();
    let ghost_server = McpServer::new(ghost);
    ghost_server
        .register_tool(
            Tool::new("generate_text")
                .with_tags(["text-generation"])
                .handler(|_call| async move { Ok(tool_result::text("unreachable")) }),
        )
        .expect("reg");
    ServicePublisher::new(ghost_key, ghost_server, registry.clone())
        .register_service("llm", &["generate_text"])
        .await
        .expect("publish");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    connector.add(ghost, closed.local_addr().expect("addr"));
    drop(closed);
    let router = Arc::new(Router::new(Discovery::new(registry), connector));
    let gw = Gateway::new(demo_server(me.peer_id())).with_network(NetworkTools::new(
        router,
        vec![Query::tag("text-generation")],
    ));

    // Serve the gateway session to a local client over an in-memory pipe (as stdio would).
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (ar, aw) = tokio::io::split(a);
    let session = gw.session();
    tokio::spawn(async move {
        let t = LineTransport::<p2p_foundation_mcp::rmcp::RoleServer, _, _>::new(
            ar,
            aw,
            StreamLimits::default(),
        );
        if let Ok(running) = p2p_foundation_mcp::rmcp::serve_server(session, t).await {
            let _ = running.waiting().await;
        }
    });
    let (br, bw) = tokio::io::split(b);
    let run = async {
        let client = McpClient::connect(br, bw, StreamLimits::default(), Era::Stateless2026)
            .await
            .expect("connect");
        let names: Vec<String> = client
            .list_tools()
            .await
            .expect("list")
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert!(
            names.contains(&"echo".to_owned()),
            "own tools listed: {names:?}"
        );
        assert!(names.contains(&"any.generate_text".to_owned()), "{names:?}");
        for (peer, label, _task) in &providers {
            let pinned = format!("{}.generate_text", peer.short());
            assert!(names.contains(&pinned), "{pinned} in {names:?}");
            let r = client
                .call(&pinned, obj(json!({})), CallOptions::default())
                .await
                .expect("pinned call");
            assert_eq!(r.structured_content, Some(json!({"by": label})));
        }
        // A provider that is gone (published, but nothing listens): its pinned name
        // fails with an error saying so; `any.` still answers from a live provider.
        let ghost_pinned = format!("{}.generate_text", ghost.short());
        assert!(names.contains(&ghost_pinned), "{names:?}");
        let e = client
            .call(&ghost_pinned, obj(json!({})), CallOptions::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("routing failed"), "{e}");
        for _ in 0..4 {
            let r = client
                .call("any.generate_text", obj(json!({})), CallOptions::default())
                .await;
            assert!(r.is_ok(), "routed call must avoid the dead provider: {r:?}");
        }
    };
    tokio::time::timeout(HANG_GUARD, run)
        .await
        .expect("hang guard");
}

/// Send one raw HTTP/1.1 request (`Connection: close`) and read the whole
/// response, head and (chunked) body, until the server closes.
async fn http(addr: std::net::SocketAddr, head: &str, body: &str) -> String {
    let req = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    sock.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// SEP-1699 polling: a tool ends its SSE response stream mid-call; the client
/// reconnects with `Last-Event-ID` and gets the result there.
#[tokio::test]
async fn a_tool_closes_its_sse_stream_and_the_result_follows_the_reconnection() {
    use std::time::Duration;

    use p2p_foundation_mcp::{McpServer, Tool, tool_result};

    let server = McpServer::new(Keypair::generate().peer_id());
    server
        .register_tool(Tool::new("long_job").handler(|call| async move {
            assert!(call.stream.can_close());
            let closed = call
                .stream
                .close_sse_stream(Duration::from_millis(250))
                .await;
            let back = closed && call.stream.reconnected(HANG_GUARD).await;
            Ok(tool_result::text(format!(
                "job done (closed {closed}, reconnected {back})"
            )))
        }))
        .expect("register");
    let http_gw = Gateway::new(server)
        .serve_http(HttpConfig::default())
        .await
        .expect("serve");
    let addr = http_gw.local_addr();
    let run = async {
        let post = "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2025-11-25";
        let init = http(addr, post, r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#).await;
        let session = init
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("mcp-session-id")
                    .then(|| v.trim().to_owned())
            })
            .expect("session id");
        let post = format!("{post}\r\nMcp-Session-Id: {session}");
        http(
            addr,
            &post,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await;

        let first = http(addr, &post, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"long_job","arguments":{}}}"#).await;
        assert!(first.contains("retry: 250"), "reconnect hint sent: {first}");
        assert!(
            !first.contains("job done"),
            "the stream ended before the result: {first}"
        );
        let last_id = first
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .next_back()
            .expect("event ids")
            .trim()
            .to_owned();

        let get = format!(
            "GET /mcp HTTP/1.1\r\nAccept: text/event-stream\r\nMcp-Protocol-Version: 2025-11-25\r\nMcp-Session-Id: {session}\r\nLast-Event-ID: {last_id}"
        );
        let resumed = http(addr, &get, "").await;
        assert!(
            resumed.contains("job done (closed true, reconnected true)"),
            "the result arrives on the resumed stream: {resumed}"
        );
    };
    tokio::time::timeout(HANG_GUARD, run)
        .await
        .expect("hang guard");
    http_gw.shutdown();
}

/// SEP-2243: a parameter annotated `x-mcp-header` must also travel as an
/// `Mcp-Param-*` header that matches the body; the gateway's tool schemas let
/// rmcp's HTTP server check it.
#[tokio::test]
async fn mcp_param_headers_are_checked_against_the_body() {
    use p2p_foundation_mcp::{McpServer, Tool, tool_result};
    use serde_json::json;

    let server = McpServer::new(Keypair::generate().peer_id());
    server
        .register_tool(
            Tool::new("regional")
                .with_schema(json!({
                    "type": "object",
                    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                    "required": ["region"]
                }))
                .handler(|call| async move {
                    Ok(tool_result::text(format!(
                        "in {}",
                        call.arguments["region"]
                    )))
                }),
        )
        .expect("register");
    let http_gw = Gateway::new(server)
        .serve_http(HttpConfig::default())
        .await
        .expect("serve");
    let addr = http_gw.local_addr();
    let call = |header: Option<&'static str>| async move {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "regional", "arguments": {"region": "eu-west"},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}
        }}})
        .to_string();
        let mut head = "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: regional".to_owned();
        if let Some(h) = header {
            head.push_str("\r\nMcp-Param-Region: ");
            head.push_str(h);
        }
        http(addr, &head, &body).await
    };
    let run = async {
        let ok = call(Some("eu-west")).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("in \\\"eu-west\\\""), "{ok}");
        for bad in [None, Some("us-east"), Some("=?base64?SGVsbG8?=")] {
            let r = call(bad).await;
            assert!(
                r.starts_with("HTTP/1.1 400"),
                "{bad:?} must be refused: {r}"
            );
            assert!(!r.contains("in \\\""), "the tool must not run: {r}");
        }
    };
    tokio::time::timeout(HANG_GUARD, run)
        .await
        .expect("hang guard");
    http_gw.shutdown();
}
