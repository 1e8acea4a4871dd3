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
