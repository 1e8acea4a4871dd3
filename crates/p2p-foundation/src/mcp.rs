//! MCP on the node: the local server on inbound [`MCP_PROTOCOL`]
//! streams, service records on the DHT ([`DhtRegistry`]), and the router calling any tool
//! in the network over QUIC ([`NodeMcp::call`]).
//!
//! Storage of service records (documented in `docs/protocols/facade.md`): for every
//! registry key (a tool-name key or a tag key, see [`p2p_foundation_mcp::records`]) the
//! provider announces a DHT **provider record** under that key, and stores the signed
//! service records themselves in one DHT **record** under
//! [`bundle_key`]`(key, provider)`, signed by the provider. A finder asks for the
//! providers of the key, then fetches each provider's bundle, all from the DHT: no
//! provider has to be online to be discovered, only to be called.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use p2p_foundation_dht::{DhtNode, ProviderRecord, Record};
use p2p_foundation_identity::{Key, Keypair, PeerId, Signed, unix_millis};
use p2p_foundation_mcp::records::{MAX_RECORD_BYTES, SignedServiceRecord};
use p2p_foundation_mcp::server::BoxFuture;
use p2p_foundation_mcp::stream::{BoxRead, BoxWrite, Connector};
use p2p_foundation_mcp::{
    Candidate, JsonObject, McpError, McpServer, Query, Registry, RouteOptions, Routed, Router,
    ServicePublisher, Tool,
};

use crate::error::{Error, Result};
use crate::metrics::timed_dht;
use crate::net::{MCP_PROTOCOL, Net};

/// Version byte of a service-record bundle.
pub const BUNDLE_VERSION: u8 = 1;
/// Most service records in one bundle (one provider, one key).
pub const MAX_BUNDLE_RECORDS: usize = 64;
/// Most providers whose bundles one lookup fetches.
pub const MAX_PROVIDERS_FETCHED: usize = 32;

/// The DHT key of the bundle of `provider`'s service records published under `key`:
/// `SHA-256("p2pf/mcp/bundle/" ‖ key ‖ provider)`.
pub fn bundle_key(key: &Key, provider: &PeerId) -> Key {
    let mut name = b"p2pf/mcp/bundle/".to_vec();
    name.extend_from_slice(key.as_bytes());
    name.extend_from_slice(provider.as_bytes());
    Key::for_record(&name)
}

/// Encodes signed service records as a bundle: version (1 byte), count (u16 BE), then per
/// record its length (u32 BE) and its signed bytes.
pub fn encode_bundle<'a>(records: impl IntoIterator<Item = &'a SignedServiceRecord>) -> Vec<u8> {
    let records: Vec<&[u8]> = records
        .into_iter()
        .take(MAX_BUNDLE_RECORDS)
        .map(|r| r.as_bytes())
        .collect();
    let mut out = Vec::with_capacity(3 + records.iter().map(|r| 4 + r.len()).sum::<usize>());
    out.push(BUNDLE_VERSION);
    // At most MAX_BUNDLE_RECORDS (64): fits a u16.
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// Decodes a bundle into its signed service records (not verified: callers verify).
/// Every length is checked against the bytes present and the limits before use.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<SignedServiceRecord>, McpError> {
    let bad = |why: &str| McpError::Invalid(format!("service record bundle: {why}"));
    let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
    if version != BUNDLE_VERSION {
        return Err(bad("unknown version"));
    }
    let (count, mut rest) = rest
        .split_at_checked(2)
        .ok_or_else(|| bad("truncated count"))?;
    let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
    if count > MAX_BUNDLE_RECORDS {
        return Err(bad("too many records"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, tail) = rest
            .split_at_checked(4)
            .ok_or_else(|| bad("truncated length"))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_RECORD_BYTES {
            return Err(bad("record over the size limit"));
        }
        let (record, tail) = tail
            .split_at_checked(len)
            .ok_or_else(|| bad("truncated record"))?;
        out.push(Signed::decode_with_limit(record, MAX_RECORD_BYTES)?);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A [`Registry`] on the DHT: provider records under each tool and tag key, and the signed
/// service records in a per-provider bundle record (see the [module docs](self)).
#[derive(Clone)]
pub struct DhtRegistry {
    dht: DhtNode,
    keypair: Keypair,
    net: Weak<Net>,
    advertise: Arc<Vec<SocketAddr>>,
    bundles: Arc<Mutex<HashMap<Key, BTreeMap<String, SignedServiceRecord>>>>,
    seq: Arc<AtomicU64>,
    max_ttl: Duration,
}

impl std::fmt::Debug for DhtRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtRegistry")
            .field("local", &self.keypair.peer_id().short())
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

impl DhtRegistry {
    pub(crate) fn new(
        dht: DhtNode,
        keypair: Keypair,
        net: Weak<Net>,
        advertise: Vec<SocketAddr>,
        max_ttl: Duration,
    ) -> Self {
        Self {
            dht,
            keypair,
            net,
            advertise: Arc::new(advertise),
            bundles: Arc::new(Mutex::new(HashMap::new())),
            seq: Arc::new(AtomicU64::new(0)),
            max_ttl,
        }
    }

    /// A sequence number above every earlier one (milliseconds since the epoch, bumped).
    fn next_seq(&self, now: SystemTime) -> u64 {
        let ms = unix_millis(now);
        let prev = self
            .seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_add(1).max(ms))
            })
            .unwrap_or(ms);
        prev.saturating_add(1).max(ms)
    }

    async fn publish_now(&self, key: Key, record: SignedServiceRecord) -> Result<(), McpError> {
        let local = self.keypair.peer_id();
        if record.signer() != local {
            return Err(McpError::Invalid(format!(
                "the DHT registry of {local} publishes only this node's own records, not {}'s",
                record.signer()
            )));
        }
        let now = SystemTime::now();
        let service = record.clone().verify(now)?.into_payload().service;
        let now_ms = unix_millis(now);
        let (value, expires_ms) = {
            let mut bundles = lock(&self.bundles);
            let slot = bundles.entry(key).or_default();
            slot.retain(|_, r| r.expires_at_ms() > now_ms);
            let newer = slot
                .get(&service)
                .is_none_or(|old| old.seq() <= record.seq());
            if newer {
                slot.insert(service, record);
            }
            if slot.len() > MAX_BUNDLE_RECORDS {
                return Err(McpError::Invalid(format!(
                    "more than {MAX_BUNDLE_RECORDS} services under one key"
                )));
            }
            let expires = slot
                .values()
                .map(|r| r.expires_at_ms())
                .max()
                .unwrap_or(now_ms);
            (encode_bundle(slot.values()), expires)
        };
        let expires =
            (SystemTime::UNIX_EPOCH + Duration::from_millis(expires_ms)).min(now + self.max_ttl);
        let seq = self.next_seq(now);
        let bundle = Signed::sign(
            &self.keypair,
            Record::new(bundle_key(&key, &local), value),
            seq,
            expires,
        )?;
        let provider = Signed::sign(
            &self.keypair,
            ProviderRecord::new(key, self.advertise.to_vec()),
            seq,
            expires,
        )?;
        let dht_err = |what: &str, e: p2p_foundation_dht::DhtError| {
            McpError::Connection(format!("storing the {what} on the DHT failed: {e}"))
        };
        let stored = timed_dht(&self.net, "put", self.dht.put_record(bundle))
            .await
            .map_err(|e| dht_err("service record bundle", e))?;
        let announced = timed_dht(&self.net, "provide", self.dht.add_provider(provider))
            .await
            .map_err(|e| dht_err("provider record", e))?;
        tracing::debug!(stored, announced, "service records published on the DHT");
        Ok(())
    }

    async fn find_now(&self, key: Key) -> Result<Vec<SignedServiceRecord>, McpError> {
        let providers = timed_dht(&self.net, "providers", self.dht.get_providers(key))
            .await
            .map_err(|e| McpError::Connection(format!("DHT provider lookup failed: {e}")))?;
        let net = self.net.upgrade();
        let mut lookups = tokio::task::JoinSet::new();
        for p in providers.into_iter().take(MAX_PROVIDERS_FETCHED) {
            let provider = p.signer();
            if let Some(net) = &net {
                // Provider records make their signers dialable.
                net.learn(provider, p.payload().addrs.iter().copied());
            }
            let (dht, net) = (self.dht.clone(), self.net.clone());
            lookups.spawn(async move {
                let found = timed_dht(&net, "get", dht.get_record(bundle_key(&key, &provider)));
                (provider, found.await)
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = lookups.join_next().await {
            let Ok((provider, found)) = joined else {
                continue;
            };
            let records = match found {
                Ok(records) => records,
                Err(e) => {
                    tracing::debug!(provider = %provider.short(), error = %e, "bundle lookup failed");
                    continue;
                }
            };
            // The DHT verified the bundle's signature; it must be the provider's own.
            let Some(bundle) = records.into_iter().find(|r| r.signer() == provider) else {
                continue;
            };
            match decode_bundle(&bundle.payload().value) {
                Ok(entries) => out.extend(entries.into_iter().filter(|r| r.signer() == provider)),
                Err(e) => tracing::debug!(provider = %provider.short(), error = %e, "bad bundle"),
            }
        }
        Ok(out)
    }
}

impl Registry for DhtRegistry {
    fn publish(&self, key: Key, record: SignedServiceRecord) -> BoxFuture<Result<(), McpError>> {
        let this = self.clone();
        Box::pin(async move { this.publish_now(key, record).await })
    }

    fn find(&self, key: Key) -> BoxFuture<Result<Vec<SignedServiceRecord>, McpError>> {
        let this = self.clone();
        Box::pin(async move { this.find_now(key).await })
    }
}

/// Opens [`MCP_PROTOCOL`] streams to peers over the node's connections (dialling on
/// demand).
pub(crate) struct QuicConnector {
    pub(crate) net: Weak<Net>,
}

impl Connector for QuicConnector {
    fn connect(&self, peer: PeerId) -> BoxFuture<std::io::Result<(BoxRead, BoxWrite)>> {
        let net = self.net.clone();
        Box::pin(async move {
            let net = net
                .upgrade()
                .ok_or_else(|| std::io::Error::other("the node is shut down"))?;
            let conn = net
                .connect(peer, &[])
                .await
                .map_err(std::io::Error::other)?;
            let (send, recv) = conn
                .open_bi(MCP_PROTOCOL)
                .await
                .map_err(std::io::Error::other)?;
            Ok((Box::new(recv) as BoxRead, Box::new(send) as BoxWrite))
        })
    }
}

/// The node's MCP: its own server (with [`NodeBuilder::with_mcp_server`]), service
/// registration on the DHT, and calls to any tool in the network.
///
/// [`NodeBuilder::with_mcp_server`]: crate::NodeBuilder::with_mcp_server
pub struct NodeMcp {
    pub(crate) server: Option<McpServer>,
    pub(crate) publisher: Option<Arc<ServicePublisher>>,
    pub(crate) registry: Arc<DhtRegistry>,
    pub(crate) router: Arc<Router>,
    pub(crate) net: Arc<Net>,
    pub(crate) ttl: Duration,
    pub(crate) republishing: Mutex<HashMap<String, tokio_util::sync::CancellationToken>>,
}

impl std::fmt::Debug for NodeMcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMcp")
            .field("server", &self.server.is_some())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl NodeMcp {
    /// The node's MCP server, if it was built with one.
    pub fn server(&self) -> Option<&McpServer> {
        self.server.as_ref()
    }

    /// Registers a tool on the node's server (callable by peers once a service lists it).
    pub fn register_tool(&self, tool: Tool) -> Result<()> {
        let server = self.server.as_ref().ok_or(Error::McpDisabled)?;
        server.register_tool(tool)?;
        Ok(())
    }

    /// Signs service `name` offering `tools` (registered on this node's server), publishes
    /// it on the DHT under every tool-name and tag key, and republishes it every half
    /// record lifetime until the node shuts down (or the service is registered again).
    pub async fn register_service(
        &self,
        name: &str,
        tools: &[&str],
    ) -> Result<SignedServiceRecord> {
        let publisher = self.publisher.as_ref().ok_or(Error::McpDisabled)?;
        let record = publisher.register_service(name, tools).await?;
        let token = self.net.cancel.child_token();
        if let Some(old) = lock(&self.republishing).insert(name.to_owned(), token.clone()) {
            old.cancel();
        }
        let publisher = Arc::clone(publisher);
        let (name, tools): (String, Vec<String>) = (
            name.to_owned(),
            tools.iter().map(|t| (*t).to_owned()).collect(),
        );
        let period = (self.ttl / 2).max(Duration::from_secs(1));
        self.net.spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(period) => {}
                }
                let names: Vec<&str> = tools.iter().map(String::as_str).collect();
                if let Err(e) = publisher.register_service(&name, &names).await {
                    tracing::warn!(service = %name, error = %e, "republishing a service record failed");
                }
            }
        });
        Ok(record)
    }

    /// Providers of the tools matching `query`, best first (never this node itself).
    pub async fn discover(&self, query: &Query) -> Result<Vec<Candidate>> {
        Ok(self.router.discovery().find(query).await?)
    }

    /// Calls `tool` at the best provider in the network, failing over to the next one on
    /// connection failure or timeout.
    pub async fn call(&self, tool: &str, arguments: JsonObject) -> Result<Routed> {
        self.timed(tool, self.router.call(tool, arguments)).await
    }

    /// Calls the tool `query` names, with routing options (deadline, per-attempt timeout,
    /// capability tokens, progress, a pinned provider).
    pub async fn call_with(
        &self,
        query: Query,
        arguments: JsonObject,
        options: RouteOptions,
    ) -> Result<Routed> {
        let tool = query.tool.clone().unwrap_or_else(|| "by_tag".to_owned());
        self.timed(&tool, self.router.call_with(query, arguments, options))
            .await
    }

    /// Runs one call, recording its latency and outcome under `tool`.
    async fn timed(
        &self,
        tool: &str,
        call: impl Future<Output = std::result::Result<Routed, p2p_foundation_mcp::McpError>>,
    ) -> Result<Routed> {
        let started = std::time::Instant::now();
        let result = call.await;
        let outcome = match &result {
            Ok(r) if r.result.is_error == Some(true) => crate::metrics::Outcome::ToolError,
            Ok(_) => crate::metrics::Outcome::Ok,
            Err(_) => crate::metrics::Outcome::Failed,
        };
        self.net
            .instruments
            .mcp_call(tool, started.elapsed(), outcome);
        Ok(result?)
    }

    /// The router (discovery, ranking statistics, failover).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The DHT registry service records are published to and found in.
    pub fn registry(&self) -> &Arc<DhtRegistry> {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_mcp::ServiceRecord;
    use proptest::prelude::*;

    fn record(k: &Keypair, service: &str) -> SignedServiceRecord {
        let payload = ServiceRecord {
            service: service.into(),
            tools: Vec::new(),
            load: 0,
        };
        Signed::sign(k, payload, 1, SystemTime::now() + Duration::from_secs(60)).expect("sign")
    }

    #[test]
    fn bundles_round_trip() {
        let k = Keypair::generate();
        let records = [record(&k, "a"), record(&k, "b")];
        let bytes = encode_bundle(records.iter());
        let back = decode_bundle(&bytes).expect("decodes");
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].as_bytes(), records[0].as_bytes());
        let verified = back[1].clone().verify(SystemTime::now()).expect("verifies");
        assert_eq!(verified.payload().service, "b");
        // Truncated or extended bundles are refused.
        assert!(decode_bundle(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_bundle(&longer).is_err());
        assert!(decode_bundle(&[]).is_err());
        assert!(decode_bundle(&[2, 0, 0]).is_err());
        assert!(decode_bundle(&[1, 0xff, 0xff]).is_err());
    }

    #[test]
    fn bundle_keys_differ_by_provider_and_key() {
        let (a, b) = (Keypair::generate().peer_id(), Keypair::generate().peer_id());
        let (k1, k2) = (Key::for_record(b"1"), Key::for_record(b"2"));
        assert_ne!(bundle_key(&k1, &a), bundle_key(&k1, &b));
        assert_ne!(bundle_key(&k1, &a), bundle_key(&k2, &a));
    }

    proptest! {
        #[test]
        fn decode_bundle_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_bundle(&bytes);
        }

        #[test]
        fn decode_bundle_never_panics_on_plausible_headers(
            count in 0u16..80,
            lens in proptest::collection::vec(any::<u32>(), 0..4),
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut bytes = vec![BUNDLE_VERSION];
            bytes.extend_from_slice(&count.to_be_bytes());
            for l in lens {
                bytes.extend_from_slice(&(l % 1024).to_be_bytes());
            }
            bytes.extend_from_slice(&tail);
            let _ = decode_bundle(&bytes);
        }
    }
}
