//! `p2pf node`: run a node until SIGINT or SIGTERM.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use p2p_foundation::{P2PNode, PeerEvent, WordAddress};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::cli::NodeArgs;
use crate::error::CliError;
use crate::output::Output;
use crate::{paths, signal, target};

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
    Stopped {
        signal: &'static str,
    },
}

pub(crate) async fn run(out: Output, data_dir: &Path, args: &NodeArgs) -> Result<(), CliError> {
    let (keypair, key_file, _) = paths::load_identity(data_dir)?;
    let node = P2PNode::builder()
        .keypair(keypair)
        .listen(args.listen())
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
