//! `p2pf node`: run a node until SIGINT or SIGTERM.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use p2p_foundation::mcp_crate::{Gateway, HttpConfig, HttpGateway, NetworkTools, Query};
use p2p_foundation::{P2PNode, PeerEvent, WordAddress};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::cli::NodeArgs;
use crate::error::CliError;
use crate::output::Output;
use crate::{metrics_http, paths, signal, target};

/// One address the node can be reached at, with its words.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reachable {
    /// The socket address.
    pub(crate) addr: SocketAddr,
    /// The same as words.
    pub(crate) words: String,
}

/// The addresses peers can dial for a node listening on `local`: the address itself when
/// it is a specific one; for a wildcard (`0.0.0.0`, `[::]`), this host's loopback
/// addresses on that port (other interfaces are not enumerated).
pub(crate) fn reachable_addrs(local: SocketAddr) -> Vec<Reachable> {
    let port = local.port();
    let addrs = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))]
        }
        IpAddr::V6(ip) if ip.is_unspecified() => vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ],
        _ => vec![local],
    };
    addrs
        .into_iter()
        .map(|addr| Reachable {
            addr,
            words: WordAddress::from(addr).to_string(),
        })
        .collect()
}

#[derive(Serialize)]
struct Ready {
    event: &'static str,
    peer_id: String,
    listen: SocketAddr,
    addresses: Vec<Reachable>,
    key_file: String,
    bootstrap_peers: usize,
    routing_table: usize,
    relay: bool,
    /// `http://ADDR/metrics`, with `--metrics`.
    metrics_url: Option<String>,
    /// `http://ADDR/mcp`, with `--mcp-http`.
    mcp_url: Option<String>,
}

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    Connected {
        peer: String,
        addr: SocketAddr,
        outbound: bool,
    },
    Disconnected {
        peer: String,
        reason: String,
    },
    Reconnected {
        peer: String,
        addr: SocketAddr,
        after_ms: u64,
    },
    /// This node's reflexive address or mapping behaviour changed.
    NatChanged {
        reflexive: Option<SocketAddr>,
        /// `endpoint_independent`, `endpoint_dependent` or `unknown`.
        mapping: &'static str,
    },
    /// The host's interface addresses changed.
    LocalAddressesChanged {
        added: Vec<std::net::IpAddr>,
        removed: Vec<std::net::IpAddr>,
    },
    /// This node's signed peer record is in the DHT: peers find it by its id alone.
    PeerRecordPublished {
        addrs: Vec<SocketAddr>,
        relays: Vec<String>,
        stored: usize,
    },
    /// A dial reached `peer` on a hole-punched path.
    HolePunched {
        peer: String,
        addr: SocketAddr,
        took_ms: u64,
    },
    /// A dial reached `peer` through `relay`.
    Relayed {
        peer: String,
        relay: String,
        took_ms: u64,
    },
    /// The node chose how it reaches IPv6 (`--tunneling`).
    TunnelSelected {
        /// The mechanism giving IPv6 (`NativeIpv6`, `Overlay`, …), or none.
        ipv6: Option<String>,
        /// Why it was chosen.
        reason: Option<&'static str>,
        /// The mechanism reaching IPv4 peers from IPv6 only, if one was chosen.
        ipv4_access: Option<String>,
        /// Every other mechanism with the reason it was not chosen.
        rejected: Vec<RejectedTunnel>,
        /// The head start IPv6 dials now get, in milliseconds.
        ipv6_head_start_ms: u64,
    },
    Stopped {
        signal: &'static str,
    },
}

#[derive(Serialize)]
struct RejectedTunnel {
    mechanism: String,
    reason: &'static str,
}

fn tunnel_event(status: &p2p_foundation::TunnelStatus) -> Event {
    Event::TunnelSelected {
        ipv6: status.ipv6.as_ref().map(|c| format!("{:?}", c.mechanism)),
        reason: status.ipv6.as_ref().map(|c| c.reason),
        ipv4_access: status
            .ipv4_access
            .as_ref()
            .map(|c| format!("{:?}", c.mechanism)),
        rejected: status
            .rejected
            .iter()
            .map(|r| RejectedTunnel {
                mechanism: format!("{:?}", r.mechanism),
                reason: r.reason,
            })
            .collect(),
        ipv6_head_start_ms: millis(status.ipv6_head_start),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) async fn run(out: Output, data_dir: &Path, args: &NodeArgs) -> Result<(), CliError> {
    let (keypair, key_file, _) = paths::load_identity(data_dir)?;
    let mut relay = p2p_foundation::RelayConfig::default();
    relay.serve = args.relay;
    let node = P2PNode::builder()
        .keypair(keypair)
        .listen(args.listen())
        .relay_config(relay)
        .mdns(!args.no_mdns)
        .tunneling(if args.tunneling {
            p2p_foundation::TunnelingConfig::auto()
        } else {
            p2p_foundation::TunnelingConfig::off()
        })
        .with_mcp_server()
        .build()
        .await?;
    let result = serve(out, &node, args, &key_file).await;
    node.shutdown().await;
    let signal = result?;
    tracing::info!(signal, "node stopped");
    out.emit(&Event::Stopped { signal }, |_| {
        format!("stopped ({signal})")
    });
    Ok(())
}

async fn serve(
    out: Output,
    node: &P2PNode,
    args: &NodeArgs,
    key_file: &Path,
) -> Result<&'static str, CliError> {
    let mut events = node.peer_events();
    offer_tools(node, &args.tool).await?;
    // Bound before joining, so a busy port fails at once.
    let metrics = match args.metrics {
        Some(addr) => Some(metrics_http::serve(addr, node.metrics_handle()).await?),
        None => None,
    };
    let gateway = match args.mcp_http {
        Some(addr) => Some(serve_gateway(node, addr, &args.mcp_expose()).await?),
        None => None,
    };
    let _stop_gateway = StopOnDrop(gateway.as_ref());
    let joined = target::join(node, &args.bootstrap, args.dial_timeout()).await?;
    publish_tools(node, &args.tool).await?;
    let ready = Ready {
        event: "ready",
        peer_id: node.peer_id().to_string(),
        listen: node.local_addr()?,
        addresses: reachable_addrs(node.local_addr()?),
        key_file: key_file.display().to_string(),
        bootstrap_peers: joined.peers.len(),
        routing_table: joined.routing_table,
        relay: args.relay,
        metrics_url: metrics
            .as_ref()
            .map(|m| format!("http://{}/metrics", m.local_addr())),
        mcp_url: gateway.as_ref().map(|g| g.url()),
    };
    tracing::info!(peer_id = %ready.peer_id, listen = %ready.listen, "node running");
    out.emit(&ready, |r| {
        let mut s = format!("peer id   {}\nlistening {}", r.peer_id, r.listen);
        for a in &r.addresses {
            s.push_str(&format!(
                "\naddress   {}  ({})\n          {}@{}",
                a.words, a.addr, r.peer_id, a.addr
            ));
        }
        if !args.bootstrap.is_empty() {
            s.push_str(&format!(
                "\njoined through {} of {} bootstrap peer(s); routing table {}",
                r.bootstrap_peers,
                args.bootstrap.len(),
                r.routing_table
            ));
        }
        if r.relay {
            s.push_str("\nrelaying for peers behind NATs");
        }
        if let Some(url) = &r.metrics_url {
            s.push_str(&format!("\nmetrics   {url}"));
        }
        if let Some(url) = &r.mcp_url {
            s.push_str(&format!("\nmcp       {url}"));
        }
        s.push_str("\nCtrl-C to stop");
        s
    });
    let stop = signal::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            signal = &mut stop => return Ok(signal),
            event = events.recv() => match event {
                Ok(e) => report(out, e),
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "peer events missed"),
                Err(RecvError::Closed) => return Err(p2p_foundation::Error::Shutdown.into()),
            },
        }
    }
}

/// Shuts the MCP gateway down when the node stops.
struct StopOnDrop<'a>(Option<&'a HttpGateway>);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            g.shutdown();
        }
    }
}

/// Serves this node's tools, and the network's tools tagged with one of `tags`, to
/// ordinary MCP clients over Streamable HTTP at `addr`.
async fn serve_gateway(
    node: &P2PNode,
    addr: SocketAddr,
    tags: &[String],
) -> Result<HttpGateway, CliError> {
    let server = node
        .mcp()
        .server()
        .ok_or(p2p_foundation::Error::McpDisabled)?
        .clone();
    let queries = tags.iter().map(Query::tag).collect();
    let network = NetworkTools::new(std::sync::Arc::clone(node.mcp().router()), queries);
    let config = HttpConfig {
        bind: addr,
        ..HttpConfig::default()
    };
    let gateway = Gateway::new(server)
        .with_network(network)
        .serve_http(config)
        .await
        .map_err(|e| {
            CliError::Usage(format!(
                "cannot serve the MCP gateway on {addr}: {e} (choose another --mcp-http address)"
            ))
        })?;
    tracing::info!(url = %gateway.url(), "serving the MCP gateway");
    Ok(gateway)
}

/// Registers the built-in tools `names` on the node's MCP server.
async fn offer_tools(node: &P2PNode, names: &[String]) -> Result<(), CliError> {
    for name in names {
        let tool = crate::tools::builtin(name, serde_json::json!(node.peer_id().to_string()))
            .ok_or_else(|| CliError::Usage(format!("no built-in tool '{name}'")))?;
        node.mcp().register_tool(tool)?;
    }
    Ok(())
}

/// Publishes the tools as the service `p2pf` on the DHT (after the node joined, so the
/// records reach other nodes; republished before they expire).
async fn publish_tools(node: &P2PNode, names: &[String]) -> Result<(), CliError> {
    if !names.is_empty() {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        node.mcp().register_service("p2pf", &names).await?;
    }
    Ok(())
}

fn report(out: Output, event: PeerEvent) {
    let event = match event {
        PeerEvent::Connected {
            peer,
            outbound,
            addr,
        } => {
            tracing::info!(peer = %peer.short(), %addr, outbound, "peer connected");
            Event::Connected {
                peer: peer.to_string(),
                addr,
                outbound,
            }
        }
        PeerEvent::Disconnected { peer, reason } => {
            tracing::info!(peer = %peer.short(), %reason, "peer disconnected");
            Event::Disconnected {
                peer: peer.to_string(),
                reason,
            }
        }
        PeerEvent::Reconnected { peer, addr, after } => {
            tracing::info!(peer = %peer.short(), %addr, after_ms = after.as_millis(), "peer reconnected");
            Event::Reconnected {
                peer: peer.to_string(),
                addr,
                after_ms: millis(after),
            }
        }
        PeerEvent::NatChanged { reflexive, mapping } => {
            let mapping = crate::cmd::nat::mapping_name(mapping);
            tracing::info!(?reflexive, ?mapping, "NAT status changed");
            Event::NatChanged { reflexive, mapping }
        }
        PeerEvent::LocalAddressesChanged { added, removed } => {
            tracing::info!(?added, ?removed, "local addresses changed");
            Event::LocalAddressesChanged { added, removed }
        }
        PeerEvent::PeerRecordPublished { record, stored } => {
            let addrs = record.dial_addrs();
            let relays: Vec<String> = record.relays().iter().map(|(r, _)| r.to_string()).collect();
            tracing::debug!(
                ?addrs,
                relays = relays.len(),
                stored,
                "peer record published"
            );
            Event::PeerRecordPublished {
                addrs,
                relays,
                stored,
            }
        }
        PeerEvent::HolePunched { peer, addr, took } => {
            tracing::info!(peer = %peer.short(), %addr, took_ms = millis(took), "hole punched");
            Event::HolePunched {
                peer: peer.to_string(),
                addr,
                took_ms: millis(took),
            }
        }
        PeerEvent::Relayed { peer, relay, took } => {
            tracing::info!(peer = %peer.short(), relay = %relay.short(), took_ms = millis(took), "relayed");
            Event::Relayed {
                peer: peer.to_string(),
                relay: relay.to_string(),
                took_ms: millis(took),
            }
        }
        PeerEvent::TunnelSelected { status } => {
            tracing::info!(
                ipv6 = ?status.ipv6.as_ref().map(|c| c.mechanism),
                reason = status.ipv6.as_ref().map_or("no mechanism works here", |c| c.reason),
                "tunnel selected"
            );
            tunnel_event(&status)
        }
        other => {
            tracing::debug!(?other, "peer event");
            return;
        }
    };
    // Peer events are for scripts; people read them in the logs.
    if out.is_json() {
        out.emit(&event, |_| String::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let v6 = reachable_addrs("[::]:9000".parse().expect("addr"));
        let addrs: Vec<_> = v6.iter().map(|r| r.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:9000", "[::1]:9000"]);
        assert_eq!(v6[0].words.split('.').count(), 3);
        let v4 = reachable_addrs("0.0.0.0:1".parse().expect("addr"));
        assert_eq!(v4[0].addr.to_string(), "127.0.0.1:1");
        let exact = reachable_addrs("192.0.2.1:5".parse().expect("addr"));
        assert_eq!(exact[0].addr.to_string(), "192.0.2.1:5");
    }
}
