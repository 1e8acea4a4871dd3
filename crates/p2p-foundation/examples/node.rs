//! Two nodes on loopback: one serves a tool and publishes it on the DHT, the other
//! discovers it through the DHT and calls it over QUIC.
//!
//! `cargo run -p p2p-foundation --example node`

use std::net::SocketAddr;

use p2p_foundation::P2PNode;
use p2p_foundation::mcp_crate::{Tool, tool_result};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = P2PNode::builder()
        .listen(loopback)
        .with_mcp_server()
        .build()
        .await?;
    server
        .mcp()
        .register_tool(Tool::new("greet").handler(|call| async move {
            let name = call
                .arguments
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("stranger");
            Ok(tool_result::text(format!("Hello, {name}!")))
        }))?;

    let client = P2PNode::builder()
        .listen(loopback)
        .bootstrap(vec![(server.peer_id(), server.local_addr()?)])
        .build()
        .await?;
    server.mcp().register_service("greeter", &["greet"]).await?;

    let args = json!({"name": "Ada"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let answer = client.mcp().call("greet", args).await?;
    println!("{} answered: {:?}", answer.provider, answer.result.content);

    client.shutdown().await;
    server.shutdown().await;
    Ok(())
}
