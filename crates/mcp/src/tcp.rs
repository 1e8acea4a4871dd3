//! MCP streams over TCP on loopback, for tests, benchmarks and local demos.
//!
//! **Not authenticated.** The opener announces its peer id in a 32-byte
//! preamble and the acceptor believes it. In a real node the facade supplies
//! streams from the QUIC transport, whose TLS handshake authenticates the
//! peer; this module exists so the crate can be exercised over real sockets
//! without depending on the transport crate.

use std::{collections::HashMap, net::SocketAddr, sync::RwLock};

use p2p_foundation_identity::PeerId;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    access::Caller,
    framing::StreamLimits,
    server::{BoxFuture, McpServer},
    stream::{BoxRead, BoxWrite, Connector, serve_stream},
};

/// Accept connections on `listener` forever, serving `server` on each; the
/// caller is the peer id announced in the preamble.
pub async fn serve_tcp(
    server: McpServer,
    listener: TcpListener,
    limits: StreamLimits,
) -> std::io::Result<()> {
    loop {
        let (mut sock, addr) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let mut id = [0u8; 32];
            let caller = match sock
                .read_exact(&mut id)
                .await
                .ok()
                .and_then(|_| PeerId::from_bytes(id).ok())
            {
                Some(p) => p,
                None => {
                    tracing::debug!(%addr, "connection without a valid peer-id preamble");
                    return;
                }
            };
            let (r, w) = sock.into_split();
            if let Err(e) = serve_stream(&server, Caller::Peer(caller), r, w, limits).await {
                tracing::debug!(%addr, error = %e, "mcp connection ended");
            }
        });
    }
}

/// Opens loopback TCP streams to peers whose addresses it was told.
#[derive(Debug)]
pub struct TcpConnector {
    local: PeerId,
    addrs: RwLock<HashMap<PeerId, SocketAddr>>,
}

impl TcpConnector {
    /// A connector announcing itself as `local`.
    pub fn new(local: PeerId) -> Self {
        Self {
            local,
            addrs: RwLock::new(HashMap::new()),
        }
    }

    /// Record where `peer` listens.
    pub fn add(&self, peer: PeerId, addr: SocketAddr) {
        self.addrs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, addr);
    }
}

impl Connector for TcpConnector {
    fn connect(&self, peer: PeerId) -> BoxFuture<std::io::Result<(BoxRead, BoxWrite)>> {
        let addr = self
            .addrs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .copied();
        let local = self.local;
        Box::pin(async move {
            let addr = addr.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no address known for peer {peer}"),
                )
            })?;
            let mut sock = TcpStream::connect(addr).await?;
            sock.set_nodelay(true)?;
            sock.write_all(local.as_bytes()).await?;
            let (r, w) = sock.into_split();
            Ok((Box::new(r) as BoxRead, Box::new(w) as BoxWrite))
        })
    }
}
