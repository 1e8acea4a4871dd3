//! One-shot commands (`ping`, `dht`, `pub`, `sub`, `mcp`) run a short-lived node of their
//! own: it joins the network through `--bootstrap`, does its one job and shuts down.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use p2p_foundation::P2PNode;

use crate::error::CliError;
use crate::target::{self, Joined, PeerTarget};

/// How a one-shot command joins the network.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// A peer to join through: `<peer id>@<address>` or an address alone (numbers or three
    /// words). Repeatable; at least one, here or in the configuration's `client.bootstrap`.
    #[arg(long, short, value_name = "PEER")]
    pub bootstrap: Vec<PeerTarget>,
    /// Longest a dial to one bootstrap peer may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub dial_timeout: u64,
    /// Longest this short-lived node waits for one peer's handshake or DHT answer, in
    /// seconds. Nodes that vanished without shutting down (killed, network lost) stay in
    /// routing tables until requests to them fail, and each such request costs this much.
    /// [default: 3]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=60))]
    pub peer_timeout: Option<u64>,
    /// Longest the command's own work may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

impl ClientArgs {
    /// Fills what the command line left unset from the `[client]` table; fails if no
    /// bootstrap peer is given either way.
    pub fn merge(&mut self, cfg: &crate::config::ClientConfig) -> Result<(), CliError> {
        if self.bootstrap.is_empty() {
            self.bootstrap =
                crate::config::each("client.bootstrap", &cfg.bootstrap, |s| s.parse())?;
        }
        if self.bootstrap.is_empty() {
            return Err(CliError::Usage(
                "no peer to join the network through: give --bootstrap PEER (or set \
                 client.bootstrap in the configuration file)"
                    .into(),
            ));
        }
        self.peer_timeout = self.peer_timeout.or(cfg.peer_timeout);
        Ok(())
    }

    /// The per-peer timeout (default [`CLIENT_PEER_TIMEOUT`]).
    pub fn peer_timeout(&self) -> Duration {
        self.peer_timeout
            .map_or(CLIENT_PEER_TIMEOUT, Duration::from_secs)
    }

    /// The command's own time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// The default of `--peer-timeout`: a short-lived node waits this long for a handshake
/// or a DHT answer, not the 10-second defaults of a long-running node.
pub const CLIENT_PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts a node with a fresh identity (so it never collides with a `p2pf node` running
/// from the same data directory), listening on the address family of `targets`, without
/// mDNS, and joined to nobody yet; `peer_timeout` bounds each handshake and DHT request.
pub async fn start_bare(
    targets: &[PeerTarget],
    peer_timeout: Duration,
) -> Result<P2PNode, CliError> {
    let all_v4 = targets.iter().all(|t| t.addr().is_ipv4());
    let listen = if all_v4 {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let mut transport = p2p_foundation::transport::Config::default();
    transport.handshake_timeout = peer_timeout;
    let mut dht = p2p_foundation::default_dht_config();
    dht.request_timeout = peer_timeout;
    Ok(P2PNode::builder()
        .listen(listen)
        .transport_config(transport)
        .dht_config(dht)
        .dial_timeout(peer_timeout * 2)
        // It joins through --bootstrap and does one job: no LAN discovery, and no peer
        // record (nobody will dial a client that is about to exit).
        .mdns(false)
        .peer_records(false)
        .with_mcp_server()
        .build()
        .await?)
}

/// [`start_bare`], then joins the network through `args.bootstrap`.
pub async fn start(args: &ClientArgs) -> Result<(P2PNode, Joined), CliError> {
    let _progress = crate::progress::Progress::start(format!(
        "joining the network through {} peer(s)",
        args.bootstrap.len()
    ));
    let node = start_bare(&args.bootstrap, args.peer_timeout()).await?;
    match target::join(
        &node,
        &args.bootstrap,
        Duration::from_secs(args.dial_timeout),
    )
    .await
    {
        Ok(joined) => Ok((node, joined)),
        Err(e) => {
            node.shutdown().await;
            Err(e)
        }
    }
}

/// Runs `work` within the command's time limit, naming it in the error.
pub async fn bounded<T>(
    args: &ClientArgs,
    what: &str,
    work: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    let _progress = crate::progress::Progress::start(what);
    tokio::time::timeout(args.timeout(), work)
        .await
        .unwrap_or_else(|_| {
            Err(CliError::Failed(format!(
                "{what} did not finish within {}s (raise --timeout)",
                args.timeout
            )))
        })
}
