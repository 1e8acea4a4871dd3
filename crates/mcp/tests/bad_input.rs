//! Bad input on peer streams: invalid JSON, unknown methods, schema-violating
//! arguments, oversized messages, stalled clients. Each gets the specification's
//! JSON-RPC error code, and the node keeps serving everyone else.

mod common;

use std::time::Duration;

use common::*;
use p2p_foundation_identity::Keypair;
use p2p_foundation_mcp::{CallOptions, Caller, Era, StreamLimits, serve_stream};
use serde_json::json;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn invalid_json_unknown_methods_and_bad_arguments_get_spec_codes() {
    let server = demo_server(Keypair::generate().peer_id());
    let mut raw = RawPeer::start(&server, StreamLimits::default()).await;
    // Before the handshake: a parse error is answered (-32700, id null).
    raw.send_raw(b"{this is not json\n").await;
    let e = raw.recv().await;
    assert_eq!(e["error"]["code"], -32700, "{e}");
    assert!(e["id"].is_null());
    raw.initialize().await;

    raw.send_raw(b"[1, 2,\n").await;
    let e = raw.recv_response().await;
    assert_eq!(e["error"]["code"], -32700, "{e}");

    // Valid JSON, not a JSON-RPC message: -32600 with the id echoed when there is one.
    raw.send(json!({"jsonrpc": "2.0", "id": 41, "params": {}}))
        .await;
    let e = raw.recv_response().await;
    assert_eq!(e["error"]["code"], -32600, "{e}");
    assert_eq!(e["id"], 41);

    // Unknown method: -32601.
    raw.send(json!({"jsonrpc": "2.0", "id": 42, "method": "tools/explode", "params": {}}))
        .await;
    let e = raw.recv_response().await;
    assert_eq!(e["error"]["code"], -32601, "{e}");
    assert_eq!(e["id"], 42);

    // Schema violation: -32602 naming the offending field.
    raw.send(json!({"jsonrpc": "2.0", "id": 43, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 1}}}))
        .await;
    let e = raw.recv_response().await;
    assert_eq!(e["error"]["code"], -32602, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("'b'"),
        "{e}"
    );

    // Unknown tool: -32602 as well (MCP's code for it).
    raw.send(json!({"jsonrpc": "2.0", "id": 44, "method": "tools/call",
        "params": {"name": "nope", "arguments": {}}}))
        .await;
    let e = raw.recv_response().await;
    assert_eq!(e["error"]["code"], -32602, "{e}");

    // Still serving on the same connection.
    raw.send(json!({"jsonrpc": "2.0", "id": 45, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 20, "b": 22}}}))
        .await;
    let ok = raw.recv_response().await;
    assert_eq!(ok["id"], 45);
    assert_eq!(ok["result"]["structuredContent"]["sum"], 42, "{ok}");
}

#[tokio::test]
async fn oversized_messages_are_refused_before_buffering() {
    let server = demo_server(Keypair::generate().peer_id());
    let limits = StreamLimits {
        max_message_bytes: 4096,
        ..StreamLimits::default()
    };
    let mut raw = RawPeer::start(&server, limits).await;
    raw.initialize().await;
    // 1 MiB without a newline, in chunks: refused once 4 KiB is crossed.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        raw.send_raw(&chunk).await;
    }
    let e = raw.recv().await;
    assert_eq!(e["error"]["code"], -32600, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("4096"),
        "{e}"
    );
    // The rest of the oversized line is skipped; the next message is served.
    raw.send_raw(b"tail-of-the-big-line\n").await;
    raw.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}))
        .await;
    let ok = raw.recv_response().await;
    assert_eq!(ok["id"], 7);
    assert_eq!(ok["result"]["structuredContent"]["sum"], 3, "{ok}");
    // A big but allowed message passes.
    let text = "y".repeat(3000);
    raw.send(json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}}))
        .await;
    let ok = raw.recv_response().await;
    assert_eq!(
        ok["result"]["structuredContent"]["text"]
            .as_str()
            .map(str::len),
        Some(3000)
    );
}

#[tokio::test]
async fn stalled_and_slow_clients_do_not_block_others() {
    let server = demo_server(Keypair::generate().peer_id());
    // A stalled client: floods requests and never reads. Its pipe is tiny, so the
    // server's writes block; the write timeout then closes its connection.
    let (a, mut b) = tokio::io::duplex(1024);
    let (ar, aw) = tokio::io::split(a);
    let stalled_server = server.clone();
    let stalled = tokio::spawn(async move {
        let limits = StreamLimits {
            write_timeout: Duration::from_millis(200),
            ..StreamLimits::default()
        };
        serve_stream(
            &stalled_server,
            Caller::Peer(Keypair::generate().peer_id()),
            ar,
            aw,
            limits,
        )
        .await
    });
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"stall","version":"0"}}});
    let mut flood = format!("{init}\n").into_bytes();
    for id in 1..200 {
        let req = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"pad":"z".repeat(200)}}});
        flood.extend_from_slice(format!("{req}\n").as_bytes());
    }
    let writer = tokio::spawn(async move {
        // Bounded: stops when the server stops reading (pipe full) or closes.
        let _ = tokio::time::timeout(HANG_GUARD, b.write_all(&flood)).await;
        b
    });
    // A slow-loris client: half a message, then silence.
    let mut loris = RawPeer::start(&server, StreamLimits::default()).await;
    loris
        .send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"meth")
        .await;

    // Meanwhile a well-behaved client is served, on both eras.
    for era in [Era::Initialize2025, Era::Stateless2026] {
        let client = duplex_client(&server, Keypair::generate().peer_id(), era).await;
        let r = tokio::time::timeout(
            HANG_GUARD,
            client.call("add", obj(json!({"a": 5, "b": 6})), CallOptions::default()),
        )
        .await
        .expect("hang guard")
        .expect("served despite stalled peers");
        assert_eq!(r.structured_content, Some(json!({"sum": 11})));
    }
    // The stalled connection is closed by the server (write timeout), not left hanging.
    let ended = tokio::time::timeout(HANG_GUARD, stalled)
        .await
        .expect("stalled connection must end");
    assert!(ended.is_ok());
    drop(writer);
}
