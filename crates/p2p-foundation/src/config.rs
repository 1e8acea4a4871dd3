//! [`P2PConfig`]: the whole node's configuration as one value (the PRD's configuration
//! API), for applications that load settings before they build a node. Every part has
//! working defaults (F16): `P2PNode::with_config(P2PConfig::default())` is a dual-stack
//! node on a random port with an MCP server, NAT traversal and reconnection.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;
use crate::{NodeBuilder, P2PNode, PeerAddr, RelayConfig, TunnelingConfig};

/// Where the node listens and whom it joins through.
///
/// ```
/// use p2p_foundation::NetworkConfig;
///
/// let net = NetworkConfig::ipv6_only()
///     .listen_on("/ip6/::/udp/9000/quic-v1")
///     .bootstrap(["/ip6/2001:db8::7/udp/9000/quic-v1"]);
/// assert!(net.ipv6_only);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// Listen address as text (see [`crate::parse_addr`]). Default `[::]:0` (dual-stack).
    pub listen: String,
    /// Bootstrap peers as text (see [`crate::parse_peer`]).
    pub bootstrap: Vec<String>,
    /// Listen on IPv6 only (`IPV6_V6ONLY`), even on `[::]`. Default `false`.
    pub ipv6_only: bool,
    /// Relaying (serve for others, or use relays). Default [`RelayConfig::default`].
    pub relay: RelayConfig,
    /// Longest one dial may take. Default 10 s.
    pub dial_timeout: Duration,
    /// Find and announce nodes on the local link over mDNS. Default `true`.
    pub mdns: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen: "[::]:0".to_owned(),
            bootstrap: Vec::new(),
            ipv6_only: false,
            relay: RelayConfig::default(),
            dial_timeout: Duration::from_secs(10),
            mdns: true,
        }
    }
}

impl NetworkConfig {
    /// IPv6 only: `[::]:0` with `IPV6_V6ONLY` (no IPv4-mapped peers).
    pub fn ipv6_only() -> Self {
        Self {
            ipv6_only: true,
            ..Self::default()
        }
    }

    /// Sets the listen address.
    pub fn listen_on(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Adds bootstrap peers.
    pub fn bootstrap<S: Into<String>>(mut self, peers: impl IntoIterator<Item = S>) -> Self {
        self.bootstrap.extend(peers.into_iter().map(Into::into));
        self
    }
}

/// The node's MCP server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct McpConfig {
    /// Serve an MCP server to peers (tools registered on it can be published). Default
    /// `true`.
    pub server: bool,
    /// How long published service records live (republished at half of it). Default
    /// 1 hour.
    pub record_ttl: Duration,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            server: true,
            record_ttl: Duration::from_secs(3600),
        }
    }
}

/// Limits that trade openness for resistance to abuse.
///
/// ```
/// use p2p_foundation::SecurityConfig;
///
/// let strict = SecurityConfig::strict();
/// assert!(strict.handshakes_per_ip_per_sec < SecurityConfig::default().handshakes_per_ip_per_sec);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SecurityConfig {
    /// Handshakes accepted per source IP per second (proven sources; more are refused
    /// before any cryptography). Default 20.
    pub handshakes_per_ip_per_sec: f64,
    /// Burst of handshakes per source IP. Default 40.
    pub handshake_burst_per_ip: u32,
    /// Connections held at most. Default 10,240.
    pub max_connections: usize,
    /// Longest a handshake may take. Default 10 s.
    pub handshake_timeout: Duration,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        let t = p2p_foundation_transport::Config::default();
        Self {
            handshakes_per_ip_per_sec: t.handshakes_per_ip_per_sec,
            handshake_burst_per_ip: t.handshake_burst_per_ip,
            max_connections: t.max_connections,
            handshake_timeout: t.handshake_timeout,
        }
    }
}

impl SecurityConfig {
    /// For exposed nodes: 4 handshakes per IP per second (burst 8), at most 1,024
    /// connections, 5 s to finish a handshake.
    pub fn strict() -> Self {
        Self {
            handshakes_per_ip_per_sec: 4.0,
            handshake_burst_per_ip: 8,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// A node's whole configuration; [`P2PNode::with_config`] builds the node.
///
/// ```no_run
/// use p2p_foundation::{
///     McpConfig, NetworkConfig, P2PConfig, P2PNode, SecurityConfig, TunnelingConfig,
/// };
///
/// # async fn demo() -> p2p_foundation::Result<()> {
/// let config = P2PConfig::builder()
///     .network(NetworkConfig::ipv6_only())
///     .tunneling(TunnelingConfig::auto())
///     .mcp(McpConfig::default())
///     .security(SecurityConfig::strict())
///     .build()?;
/// let node = P2PNode::with_config(config).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct P2PConfig {
    /// Listening and joining.
    pub network: NetworkConfig,
    /// Automatic IPv6 path selection (default off).
    pub tunneling: TunnelingConfig,
    /// The MCP server.
    pub mcp: McpConfig,
    /// Abuse limits.
    pub security: SecurityConfig,
    /// Where the identity is kept (created owner-only if missing); default a fresh one.
    pub identity_file: Option<PathBuf>,
}

impl P2PConfig {
    /// A builder with the defaults.
    pub fn builder() -> P2PConfigBuilder {
        P2PConfigBuilder::default()
    }

    /// The [`NodeBuilder`] this configuration describes.
    pub fn into_builder(self) -> Result<NodeBuilder> {
        let mut transport = p2p_foundation_transport::Config::default();
        let s = &self.security;
        transport.handshakes_per_ip_per_sec = s.handshakes_per_ip_per_sec;
        transport.handshake_burst_per_ip = s.handshake_burst_per_ip;
        transport.max_connections = s.max_connections;
        transport.handshake_timeout = s.handshake_timeout;
        let mut b = NodeBuilder::new()
            .listen(crate::parse_addr(&self.network.listen)?)
            .ipv6_only(self.network.ipv6_only)
            .transport_config(transport)
            .relay_config(self.network.relay.clone())
            .dial_timeout(self.network.dial_timeout)
            .mdns(self.network.mdns)
            .tunneling(self.tunneling.clone())
            .mcp_record_ttl(self.mcp.record_ttl);
        for p in &self.network.bootstrap {
            // Parsed here so a bad entry fails now, naming itself.
            let _: PeerAddr = crate::parse_peer(p)?;
        }
        b = b.bootstrap_addrs(&self.network.bootstrap);
        if self.mcp.server {
            b = b.with_mcp_server();
        }
        if let Some(path) = self.identity_file {
            b = b.identity_file(path);
        }
        Ok(b)
    }
}

/// Builds a [`P2PConfig`]; [`P2PConfigBuilder::build`] checks every address.
#[derive(Debug, Clone, Default)]
pub struct P2PConfigBuilder {
    config: P2PConfig,
}

impl P2PConfigBuilder {
    /// Listening and joining.
    pub fn network(mut self, network: NetworkConfig) -> Self {
        self.config.network = network;
        self
    }

    /// Automatic IPv6 path selection ([`TunnelingConfig::auto`]).
    pub fn tunneling(mut self, tunneling: TunnelingConfig) -> Self {
        self.config.tunneling = tunneling;
        self
    }

    /// The MCP server.
    pub fn mcp(mut self, mcp: McpConfig) -> Self {
        self.config.mcp = mcp;
        self
    }

    /// Abuse limits.
    pub fn security(mut self, security: SecurityConfig) -> Self {
        self.config.security = security;
        self
    }

    /// Where the identity is kept.
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.identity_file = Some(path.into());
        self
    }

    /// The configuration; fails with [`crate::Error::InvalidAddress`] naming the first
    /// listen or bootstrap address that does not parse.
    pub fn build(self) -> Result<P2PConfig> {
        crate::parse_addr(&self.config.network.listen)?;
        for p in &self.config.network.bootstrap {
            crate::parse_peer(p)?;
        }
        Ok(self.config)
    }
}

impl P2PNode {
    /// Builds and starts the node `config` describes (joining its bootstrap peers).
    pub async fn with_config(config: P2PConfig) -> Result<P2PNode> {
        config.into_builder()?.build().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_addresses_fail_at_build_naming_themselves() {
        let e = P2PConfig::builder()
            .network(NetworkConfig::default().listen_on("/ip4/1.2.3.4/udp/99999"))
            .build()
            .expect_err("bad port")
            .to_string();
        assert!(e.contains("'99999'"), "{e}");
        let e = P2PConfig::builder()
            .network(NetworkConfig::default().bootstrap(["/ip4/1.2.3.4/quic"]))
            .build()
            .expect_err("no port")
            .to_string();
        assert!(e.contains("'/quic'"), "{e}");
        assert!(P2PConfig::builder().build().is_ok(), "defaults work");
    }
}
