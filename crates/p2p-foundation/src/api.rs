//! The short forms of the PRD's API on [`P2PNode`]: one call each for what an
//! application does most (register tools, find them, call them, keep values on the DHT,
//! watch peers). The full forms stay on [`P2PNode::mcp`] and [`P2PNode::dht`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p2p_foundation_identity::{Key, PeerId};
use p2p_foundation_mcp::{Candidate, JsonObject, Query, RouteOptions, Routed, Tool};

use p2p_foundation_mcp::records::SignedServiceRecord;

use crate::error::{Error, Result};
use crate::{NodeBuilder, P2PNode, PeerEvent};

/// How long a value stored with [`P2PNode::dht_put`] lives.
pub const DHT_PUT_TTL: Duration = Duration::from_secs(3600);

/// The last sequence number [`P2PNode::dht_put`] used in this process (so two puts in
/// one millisecond still order).
static LAST_SEQ: AtomicU64 = AtomicU64::new(0);

fn next_seq() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let prev = LAST_SEQ
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
            Some(s.saturating_add(1).max(ms))
        })
        .unwrap_or(ms);
    prev.saturating_add(1).max(ms)
}

/// Tool arguments given as any JSON value: they must be an object.
fn arguments(args: serde_json::Value) -> Result<JsonObject> {
    match args {
        serde_json::Value::Object(o) => Ok(o),
        serde_json::Value::Null => Ok(JsonObject::new()),
        other => Err(Error::InvalidArguments(format!(
            "tool arguments must be a JSON object, not {other}"
        ))),
    }
}

impl P2PNode {
    /// A builder, as [`P2PNode::builder`] (the PRD's spelling).
    ///
    /// ```no_run
    /// # async fn demo() -> p2p_foundation::Result<()> {
    /// let node = p2p_foundation::P2PNode::new()
    ///     .with_mcp_server()
    ///     .listen_on("/ip6/::/udp/9000/quic-v1")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> NodeBuilder {
        NodeBuilder::new()
    }

    /// Connection events, as [`P2PNode::peer_events`].
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<PeerEvent> {
        self.peer_events()
    }

    /// Registers `tools` on this node's MCP server and publishes them as service `name` on
    /// the DHT (republished until shutdown), so any peer can discover and call them.
    /// Needs [`NodeBuilder::with_mcp_server`].
    ///
    /// ```no_run
    /// # async fn demo(node: p2p_foundation::P2PNode) -> p2p_foundation::Result<()> {
    /// use p2p_foundation::mcp_crate::{Tool, tool_result};
    /// node.register_mcp_service("my-ai-model", vec![
    ///     Tool::new("generate_text").handler(|call| async move {
    ///         Ok(tool_result::text(format!("you said {:?}", call.arguments)))
    ///     }),
    /// ]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_mcp_service(
        &self,
        name: &str,
        tools: Vec<Tool>,
    ) -> Result<SignedServiceRecord> {
        let names: Vec<String> = tools.iter().map(|t| t.name().to_owned()).collect();
        for tool in tools {
            self.mcp().register_tool(tool)?;
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.mcp().register_service(name, &names).await
    }

    /// Providers of the tools `query` matches (a tool name: `Query::tool("x")`, or a
    /// capability tag: `Query::tag("text")`), best first, never this node.
    pub async fn discover_tools(&self, query: &Query) -> Result<Vec<Candidate>> {
        self.mcp().discover(query).await
    }

    /// Calls `tool` at the best provider in the network, failing over to the next; `args`
    /// must be a JSON object (or `null` for none).
    ///
    /// ```no_run
    /// # async fn demo(node: p2p_foundation::P2PNode) -> p2p_foundation::Result<()> {
    /// let answer = node
    ///     .call_tool("generate_text", serde_json::json!({"prompt": "hi"}))
    ///     .await?;
    /// println!("{} answered: {:?}", answer.provider, answer.result.content);
    /// # Ok(()) }
    /// ```
    pub async fn call_tool(&self, tool: &str, args: serde_json::Value) -> Result<Routed> {
        self.mcp().call(tool, arguments(args)?).await
    }

    /// Calls `tool` at `peer` only (no failover).
    pub async fn call_peer(
        &self,
        peer: PeerId,
        tool: &str,
        args: serde_json::Value,
    ) -> Result<Routed> {
        let options = RouteOptions {
            only: Some(peer),
            ..RouteOptions::default()
        };
        self.mcp()
            .call_with(Query::tool(tool), arguments(args)?, options)
            .await
    }

    /// Stores `value` under the name `key` (its DHT key is SHA-256 of the name), signed by
    /// this node, for [`DHT_PUT_TTL`]; a later put supersedes an earlier one. Resolves to
    /// how many nodes accepted it.
    pub async fn dht_put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<usize> {
        self.dht()
            .put(
                self.keypair(),
                Key::for_record(key.as_bytes()),
                value,
                next_seq(),
                DHT_PUT_TTL,
            )
            .await
    }

    /// The newest value stored under the name `key` by any node (`None` if there is none).
    pub async fn dht_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let records = self.dht().get(Key::for_record(key.as_bytes())).await?;
        Ok(records
            .into_iter()
            .max_by_key(|r| r.seq())
            .map(|r| r.payload().value.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_an_object_and_sequence_numbers_grow() {
        assert!(arguments(serde_json::json!({"a": 1})).is_ok());
        assert!(arguments(serde_json::Value::Null).expect("none").is_empty());
        let e = arguments(serde_json::json!([1]))
            .expect_err("array")
            .to_string();
        assert!(e.contains("JSON object"), "{e}");
        let (a, b) = (next_seq(), next_seq());
        assert!(b > a);
    }
}
