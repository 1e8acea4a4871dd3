//! `p2pf mcp list|call`: tools discovered through the DHT, calls routed with failover.

use p2p_foundation::mcp_crate::{McpError, Query, RouteOptions};
use serde::Serialize;
use serde_json::Value;

use crate::cli::McpCommand;
use crate::client;
use crate::error::CliError;
use crate::output::Output;

#[derive(Serialize)]
struct Listed {
    tool: String,
    provider: String,
    service: String,
    description: Option<String>,
    tags: Vec<String>,
    load: u32,
}

#[derive(Serialize)]
struct Called {
    tool: String,
    provider: String,
    failovers: usize,
    is_error: bool,
    structured: Option<Value>,
    text: Vec<String>,
}

/// No provider at all is "not found"; anything else about a call is a failure.
fn call_error(tool: &str, e: p2p_foundation::Error) -> CliError {
    match e {
        p2p_foundation::Error::Mcp(McpError::NoProvider { .. }) => CliError::NotFound(format!(
            "no provider of tool '{tool}' was found in the DHT; check its name with `p2pf mcp list`"
        )),
        other => CliError::Node(other),
    }
}

pub(crate) async fn run(out: Output, cmd: &McpCommand) -> Result<(), CliError> {
    let client = match cmd {
        McpCommand::List { client, .. } | McpCommand::Call { client, .. } => client,
    };
    let (node, _) = client::start(client).await?;
    let result = client::bounded(client, "the MCP request", async {
        match cmd {
            McpCommand::List { tool, tag, .. } => {
                let query = match (tool, tag) {
                    (Some(t), _) => Query::tool(t),
                    (None, Some(t)) => Query::tag(t),
                    (None, None) => Query::tag("p2pf"),
                };
                let found = node.mcp().discover(&query).await?;
                if found.is_empty() {
                    return Err(CliError::NotFound(
                        "no tool matching the query was found in the DHT".into(),
                    ));
                }
                for c in found {
                    let l = Listed {
                        tool: c.tool.name.clone(),
                        provider: c.provider.to_string(),
                        service: c.service.clone(),
                        description: c.tool.description.clone(),
                        tags: c.tool.tags.clone(),
                        load: c.load,
                    };
                    out.emit(&l, |l| {
                        format!(
                            "{:<16} {}  {}",
                            l.tool,
                            l.provider,
                            l.description.as_deref().unwrap_or("")
                        )
                    });
                }
                Ok(())
            }
            McpCommand::Call {
                tool, args, peer, ..
            } => {
                let options = RouteOptions {
                    only: *peer,
                    deadline: client.timeout(),
                    ..RouteOptions::default()
                };
                let routed = node
                    .mcp()
                    .call_with(Query::tool(tool), args.0.clone(), options)
                    .await
                    .map_err(|e| call_error(tool, e))?;
                let text = routed
                    .result
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                    .collect();
                let called = Called {
                    tool: tool.clone(),
                    provider: routed.provider.to_string(),
                    failovers: routed.failovers,
                    is_error: routed.result.is_error.unwrap_or(false),
                    structured: routed.result.structured_content.clone(),
                    text,
                };
                let is_error = called.is_error;
                out.emit(&called, |c| match &c.structured {
                    Some(v) => v.to_string(),
                    None => c.text.join("\n"),
                });
                if is_error {
                    return Err(CliError::Failed(format!("tool '{tool}' reported an error")));
                }
                Ok(())
            }
        }
    })
    .await;
    node.shutdown().await;
    result
}
