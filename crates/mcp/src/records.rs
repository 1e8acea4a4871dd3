//! Service records: signed announcements of the tools a node offers, keyed
//! by tool name and by capability tag, published to a [`Registry`] (the
//! facade implements it on the DHT's provider records) and republished
//! before they expire.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use p2p_foundation_identity::{Key, Keypair, PeerId, Signed, SignedPayload, unix_millis};
use serde::{Deserialize, Serialize};

use crate::{McpError, server::BoxFuture, server::McpServer};

/// Signature domain of service records.
pub const SERVICE_DOMAIN: &str = "p2pf/mcp/service";
/// Default lifetime of a published record.
pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(30 * 60);
/// Largest record accepted from a registry, in bytes.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// One tool as announced in a service record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// Tool name (as called).
    pub name: String,
    /// Description, if any.
    pub description: Option<String>,
    /// Tool version.
    pub version: String,
    /// Capability tags.
    pub tags: Vec<String>,
    /// Input JSON Schema, as JSON text (the record encoding cannot carry
    /// arbitrary JSON values directly).
    pub input_schema: String,
    /// Output JSON Schema as JSON text, if declared.
    pub output_schema: Option<String>,
}

impl ToolRecord {
    /// The input schema parsed (an empty schema, accepting anything, if malformed).
    pub fn input_schema_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.input_schema).unwrap_or(serde_json::Value::Bool(true))
    }
}

/// A node's announcement of one service (a named group of tools).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Service name.
    pub service: String,
    /// Tools offered.
    pub tools: Vec<ToolRecord>,
    /// Load hint: calls in flight at the provider when the record was made.
    pub load: u32,
}

impl SignedPayload for ServiceRecord {
    const DOMAIN: &'static str = SERVICE_DOMAIN;
}

/// A signed service record; the signer is the provider.
pub type SignedServiceRecord = Signed<ServiceRecord>;

/// Registry key of the providers of tool `name`.
pub fn tool_key(name: &str) -> Key {
    Key::for_record(format!("p2pf/mcp/tool/{name}").as_bytes())
}

/// Registry key of the providers of capability tag `tag`.
pub fn tag_key(tag: &str) -> Key {
    Key::for_record(format!("p2pf/mcp/tag/{tag}").as_bytes())
}

/// Where service records are published and found. The facade implements it
/// on the DHT's provider records; [`MemoryRegistry`] serves tests.
pub trait Registry: Send + Sync + 'static {
    /// Publish `record` under `key` (replacing the same provider's older
    /// record for the same service).
    fn publish(&self, key: Key, record: SignedServiceRecord) -> BoxFuture<Result<(), McpError>>;
    /// Records published under `key` (unverified: callers verify).
    fn find(&self, key: Key) -> BoxFuture<Result<Vec<SignedServiceRecord>, McpError>>;
}

/// Records under one key, by (provider, service).
type Slot = HashMap<(PeerId, String), SignedServiceRecord>;

/// An in-memory [`Registry`]: verifies on publish, drops expired records on find.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    map: Mutex<HashMap<Key, Slot>>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remove every record of `provider` (simulates a provider whose records lapsed).
    pub fn forget(&self, provider: PeerId) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for entries in map.values_mut() {
            entries.retain(|(p, _), _| *p != provider);
        }
    }
}

impl Registry for MemoryRegistry {
    fn publish(&self, key: Key, record: SignedServiceRecord) -> BoxFuture<Result<(), McpError>> {
        let result = (|| {
            let service = record
                .clone()
                .verify(SystemTime::now())?
                .into_payload()
                .service;
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            let slot = map.entry(key).or_default();
            let id = (record.signer(), service);
            match slot.get(&id) {
                Some(old) if old.seq() > record.seq() => {}
                _ => {
                    slot.insert(id, record);
                }
            }
            Ok(())
        })();
        Box::pin(std::future::ready(result))
    }

    fn find(&self, key: Key) -> BoxFuture<Result<Vec<SignedServiceRecord>, McpError>> {
        let now = unix_millis(SystemTime::now());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let out = match map.get_mut(&key) {
            Some(slot) => {
                slot.retain(|_, r| r.expires_at_ms() > now);
                slot.values().cloned().collect()
            }
            None => Vec::new(),
        };
        Box::pin(std::future::ready(Ok(out)))
    }
}

/// Build the signed record of service `name` offering `tools` of `server`.
pub fn service_record(
    keypair: &Keypair,
    server: &McpServer,
    name: &str,
    tools: &[&str],
    ttl: Duration,
) -> Result<SignedServiceRecord, McpError> {
    let mut records = Vec::with_capacity(tools.len());
    for t in tools {
        let tool = server.tool(t).ok_or_else(|| {
            McpError::Invalid(format!(
                "service '{name}' lists tool '{t}' which is not registered"
            ))
        })?;
        records.push(ToolRecord {
            name: tool.name().to_owned(),
            description: tool
                .definition()
                .description
                .as_ref()
                .map(|d| d.to_string()),
            version: tool.version().to_owned(),
            tags: tool.tags().to_vec(),
            input_schema: tool.input_schema().to_string(),
            output_schema: tool.output_schema().map(|s| s.to_string()),
        });
    }
    let record = ServiceRecord {
        service: name.to_owned(),
        tools: records,
        load: u32::try_from(server.in_flight()).unwrap_or(u32::MAX),
    };
    let now = SystemTime::now();
    // Millisecond timestamps as sequence numbers: later records supersede earlier ones.
    Ok(Signed::sign(keypair, record, unix_millis(now), now + ttl)?)
}

/// Keys a record is published under: each tool name and each tag.
pub fn record_keys(record: &ServiceRecord) -> Vec<Key> {
    let mut keys: Vec<Key> = Vec::new();
    for t in &record.tools {
        keys.push(tool_key(&t.name));
        keys.extend(t.tags.iter().map(|tag| tag_key(tag)));
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Publishes a node's services and keeps them fresh.
pub struct ServicePublisher {
    keypair: Keypair,
    server: McpServer,
    registry: Arc<dyn Registry>,
    ttl: Duration,
}

impl std::fmt::Debug for ServicePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePublisher")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ServicePublisher {
    /// A publisher signing as `keypair` for `server`'s tools into `registry`.
    pub fn new(keypair: Keypair, server: McpServer, registry: Arc<dyn Registry>) -> Self {
        Self {
            keypair,
            server,
            registry,
            ttl: DEFAULT_RECORD_TTL,
        }
    }

    /// Set the record lifetime (republishing happens at half of it).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sign and publish service `name` offering `tools` under every tool name
    /// and tag key. Returns the record.
    pub async fn register_service(
        &self,
        name: &str,
        tools: &[&str],
    ) -> Result<SignedServiceRecord, McpError> {
        let record = service_record(&self.keypair, &self.server, name, tools, self.ttl)?;
        // Our own signature, checked once more: the keys come from the verified payload.
        let keys = record_keys(record.clone().verify(SystemTime::now())?.payload());
        for key in keys {
            self.registry.publish(key, record.clone()).await?;
        }
        tracing::debug!(
            service = name,
            tools = tools.len(),
            "published service record"
        );
        Ok(record)
    }

    /// Republish service `name` every half TTL (with a fresh load hint) until
    /// the returned task is aborted.
    pub fn spawn_republish(
        self: Arc<Self>,
        name: String,
        tools: Vec<String>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let period = (self.ttl / 2).max(Duration::from_millis(10));
            loop {
                let names: Vec<&str> = tools.iter().map(String::as_str).collect();
                if let Err(e) = self.register_service(&name, &names).await {
                    tracing::warn!(service = %name, error = %e, "republishing service record failed");
                }
                tokio::time::sleep(period).await;
            }
        })
    }
}
