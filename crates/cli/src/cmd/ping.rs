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
    /// NAT status is not measured yet: the nat crate is not wired into the node.
    nat: Option<String>,
}

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
            nat: None,
        })
    });
    node.shutdown().await;
    let pong = result?;
    out.emit(&pong, |p| {
        format!(
            "{} at {} over {}: rtt {:.2} ms (connected in {:.1} ms)",
            p.peer_id, p.addr, p.path, p.rtt_ms, p.connect_ms
        )
    });
    Ok(())
}
