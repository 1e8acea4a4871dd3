//! A distributed AI tool: one node registers `summarize` (capability tag `text`), another
//! finds it by capability through the DHT and calls it over QUIC.
//!
//! `cargo run -p p2p-foundation --example ai_tool`

use p2p_foundation::P2PNode;
use p2p_foundation::mcp_crate::{Query, Tool, tool_result};
use serde_json::json;

/// Runs both nodes; returns the summary the tool answered.
pub(crate) async fn run() -> p2p_foundation::Result<String> {
    let model = P2PNode::new()
        .with_mcp_server()
        .listen_on("127.0.0.1:0")
        .build()
        .await?;
    let summarize = Tool::new("summarize")
        .with_description("first sentence of a text")
        .with_tags(["text"])
        .handler(|call| async move {
            let text = call
                .arguments
                .get("text")
                .and_then(|t| t.as_str())
                .unwrap_or("");
            let first = text.split('.').next().unwrap_or("").trim();
            Ok(tool_result::structured(json!({ "summary": first })))
        });
    model
        .register_mcp_service("tiny-model", vec![summarize])
        .await?;

    let app = P2PNode::new()
        .listen_on("127.0.0.1:0")
        .bootstrap_addrs([format!("{}@{}", model.peer_id(), model.local_addr()?)])
        .build()
        .await?;
    let found = app.discover_tools(&Query::tag("text")).await?;
    println!(
        "found {} tool(s) tagged text: {}",
        found.len(),
        found[0].tool.name
    );
    let answer = app
        .call_tool(
            &found[0].tool.name,
            json!({ "text": "P2P is here. More later." }),
        )
        .await?;
    let summary = answer
        .result
        .structured_content
        .map(|v| v["summary"].to_string());

    app.shutdown().await;
    model.shutdown().await;
    Ok(summary.unwrap_or_default())
}

#[allow(dead_code)] // also compiled into tests/examples.rs, which calls run()
#[tokio::main]
async fn main() -> p2p_foundation::Result<()> {
    println!("summary: {}", run().await?);
    Ok(())
}
