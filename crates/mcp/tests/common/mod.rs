#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::Duration;

use p2p_foundation_identity::{Keypair, PeerId};
use p2p_foundation_mcp::{
    Caller, Era, JsonObject, McpClient, McpServer, Prompt, Resource, StreamLimits, Tool, rmcp,
    serve_stream, tool_result,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub const HANG_GUARD: Duration = Duration::from_secs(60);

pub fn obj(v: Value) -> JsonObject {
    v.as_object().cloned().expect("object")
}

/// A server with the demo tool set used across tests.
pub fn demo_server(owner: PeerId) -> McpServer {
    let server = McpServer::new(owner);
    server
        .register_tool(
            Tool::new("echo")
                .with_description("Returns its arguments as structured content")
                .with_tags(["debug"])
                .handler(|call| async move {
                    Ok(tool_result::structured(Value::Object(call.arguments)))
                }),
        )
        .expect("echo");
    server
        .register_tool(
            Tool::new("add")
                .with_description("Adds two integers")
                .with_tags(["math"])
                .with_schema(json!({
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                    "required": ["a", "b"]
                }))
                .with_output_schema(json!({
                    "type": "object",
                    "properties": {"sum": {"type": "integer"}},
                    "required": ["sum"]
                }))
                .handler(|call| async move {
                    let a = call.arguments["a"].as_i64().unwrap_or(0);
                    let b = call.arguments["b"].as_i64().unwrap_or(0);
                    Ok(tool_result::structured(json!({"sum": a + b})))
                }),
        )
        .expect("add");
    server
        .register_tool(
            Tool::new("fail")
                .with_description("Always fails at the tool level (isError)")
                .handler(
                    |_call| async move { Ok(tool_result::error("the tool failed on purpose")) },
                ),
        )
        .expect("fail");
    server
        .register_tool(
            Tool::new("count")
                .with_description("Counts to n, reporting progress after each step")
                .with_schema(json!({
                    "type": "object",
                    "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 100}},
                    "required": ["n"]
                }))
                .handler(|call| async move {
                    let n = call.arguments["n"].as_u64().unwrap_or(1);
                    for i in 1..=n {
                        call.progress
                            .report(i as f64, Some(n as f64), Some(format!("step {i}")))
                            .await;
                    }
                    Ok(tool_result::text(format!("counted to {n}")))
                }),
        )
        .expect("count");
    server
        .register_tool(
            Tool::new("wait_for_cancel")
                .with_description("Blocks until cancelled; reports whether cancellation arrived")
                .handler(|call| async move {
                    call.cancel.cancelled().await;
                    Ok(tool_result::text("cancelled"))
                }),
        )
        .expect("wait");
    server.register_resource(
        Resource::text("p2pf://readme", "readme", "hello from a p2p node")
            .with_description("A text resource"),
    );
    server.register_prompt(
        Prompt::new("greet", "Greets someone", |args| {
            let who = args
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("stranger")
                .to_owned();
            Ok(rmcp::model::GetPromptResult::new(vec![
                rmcp::model::PromptMessage::new_text(
                    rmcp::model::Role::User,
                    format!("Say hello to {who}"),
                ),
            ]))
        })
        .with_argument("name", "Who to greet", true),
    );
    server
}

/// Serve `server` to `caller` on one end of a duplex pipe, return a client on the other.
pub async fn duplex_client(server: &McpServer, caller: PeerId, era: Era) -> McpClient {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (ar, aw) = tokio::io::split(a);
    let server = server.clone();
    tokio::spawn(async move {
        let _ = serve_stream(
            &server,
            Caller::Peer(caller),
            ar,
            aw,
            StreamLimits::default(),
        )
        .await;
    });
    let (br, bw) = tokio::io::split(b);
    McpClient::connect(br, bw, StreamLimits::default(), era)
        .await
        .expect("connect")
}

/// A raw line-level peer for bad-input tests.
pub struct RawPeer {
    pub reader: BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
    pub writer: tokio::io::WriteHalf<tokio::io::DuplexStream>,
}

impl RawPeer {
    pub async fn start(server: &McpServer, limits: StreamLimits) -> RawPeer {
        let (a, b) = tokio::io::duplex(1024 * 1024);
        let (ar, aw) = tokio::io::split(a);
        let server = server.clone();
        let caller = Keypair::generate().peer_id();
        tokio::spawn(async move {
            let _ = serve_stream(&server, Caller::Peer(caller), ar, aw, limits).await;
        });
        let (br, bw) = tokio::io::split(b);
        RawPeer {
            reader: BufReader::new(br),
            writer: bw,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
        self.writer.flush().await.expect("flush");
    }

    pub async fn send(&mut self, v: Value) {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    pub async fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(HANG_GUARD, self.reader.read_line(&mut line))
            .await
            .expect("hang guard")
            .expect("read");
        assert!(n > 0, "server closed the stream");
        serde_json::from_str(&line).expect("server sent JSON")
    }

    /// Receive until a response (not a notification) arrives.
    pub async fn recv_response(&mut self) -> Value {
        loop {
            let v = self.recv().await;
            if v.get("id").is_some() && (v.get("result").is_some() || v.get("error").is_some()) {
                return v;
            }
        }
    }

    pub async fn initialize(&mut self) {
        self.send(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}))
            .await;
        let r = self.recv_response().await;
        assert_eq!(r["result"]["protocolVersion"], "2025-11-25", "{r}");
        self.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
    }
}
