//! `p2pf ping PEER`: reach one peer and report how (a bare peer id through the DHT,
//! after joining `--bootstrap`).

use std::time::{Duration, Instant};

use p2p_foundation::transport::PathKind;
use serde::Serialize;

use crate::cli::PingArgs;
use crate::client;
use crate::error::CliError;
use crate::output::Output;
use crate::target::{self, PingTarget};

#[derive(Serialize)]
struct Pong {
    peer_id: String,
    addr: String,
    path: String,
    /// Joining the network through `--bootstrap` (the DHT lookups of the join may already
    /// connect to the peer: `connect_ms` is then near zero).
    join_ms: Option<f64>,
    connect_ms: f64,
    rtt_ms: f64,
    /// This node's reflexive address as the peer saw it (STUN on its QUIC port), if it
    /// answered within [`OBSERVATION_WAIT`] (QUIC paths only).
    reflexive: Option<String>,
    /// Whether that differs from the local address (`None`: cannot tell).
    behind_nat: Option<bool>,
}

/// How long `ping` waits for the peer's observation of this node's address.
const OBSERVATION_WAIT: Duration = Duration::from_secs(1);

pub(crate) async fn run(out: Output, args: &PingArgs) -> Result<(), CliError> {
    if matches!(args.peer, PingTarget::Id(_)) && args.bootstrap.is_empty() {
        return Err(CliError::Usage(format!(
            "{} is a peer id alone: its addresses are found through the DHT, so give \
             --bootstrap PEER to join the network first (or ping <peer id>@<address>)",
            args.peer
        )));
    }
    let mut family = args.bootstrap.clone();
    if let PingTarget::Peer(t) = args.peer {
        family.push(t);
    }
    let node = client::start_bare(&family, client::CLIENT_PEER_TIMEOUT).await?;
    let mut join_ms = None;
    if !args.bootstrap.is_empty() {
        let joining = Instant::now();
        let dial_timeout = Duration::from_secs(args.dial_timeout);
        if let Err(e) = target::join(&node, &args.bootstrap, dial_timeout).await {
            node.shutdown().await;
            return Err(e);
        }
        join_ms = Some(joining.elapsed().as_secs_f64() * 1e3);
    }
    let started = Instant::now();
    let dialled = tokio::time::timeout(
        Duration::from_secs(args.dial_timeout),
        args.peer.connect(&node),
    )
    .await
    .unwrap_or_else(|_| {
        Err(CliError::Unreachable(format!(
            "{} did not answer within {}s",
            args.peer, args.dial_timeout
        )))
    });
    let connect_ms = started.elapsed().as_secs_f64() * 1e3;
    if dialled.is_ok() {
        let mut events = node.peer_events();
        let _ = tokio::time::timeout(OBSERVATION_WAIT, async {
            while node.nat_status().reflexive.is_none() {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = events.recv().await {
                    return;
                }
            }
        })
        .await;
    }
    let nat = node.nat_status();
    let result = dialled.and_then(|peer| {
        let info = node.connection_info(&peer).ok_or_else(|| {
            CliError::Unreachable(format!("the connection to {peer} closed at once"))
        })?;
        Ok(Pong {
            peer_id: peer.to_string(),
            addr: info.remote.to_string(),
            path: match info.path {
                PathKind::Quic => "quic",
                PathKind::Tcp => "tcp",
                // The node's only byte-stream path is a relay's circuit.
                PathKind::Stream => "relayed",
            }
            .to_owned(),
            join_ms,
            connect_ms,
            rtt_ms: info.rtt.as_secs_f64() * 1e3,
            reflexive: nat.reflexive.map(|a| a.to_string()),
            behind_nat: nat.behind_nat,
        })
    });
    node.shutdown().await;
    let pong = result?;
    out.emit(&pong, |p| {
        let mut s = format!(
            "{} at {} over {}: rtt {:.2} ms (connected in {:.1} ms)",
            p.peer_id, p.addr, p.path, p.rtt_ms, p.connect_ms
        );
        if let Some(r) = &p.reflexive {
            s.push_str(&format!("\nthe peer sees this node at {r}"));
        }
        s
    });
    Ok(())
}
