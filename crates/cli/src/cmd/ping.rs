//! `p2pf ping PEER`: reach one peer and report how.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::PingArgs;
use crate::client;
use crate::error::CliError;
use crate::output::Output;

#[derive(Serialize)]
struct Pong {
    peer_id: String,
    addr: String,
    path: String,
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
    let node = client::start_bare(&[args.peer], client::CLIENT_PEER_TIMEOUT).await?;
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
            path: format!("{:?}", info.path).to_lowercase(),
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
