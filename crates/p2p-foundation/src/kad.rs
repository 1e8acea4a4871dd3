//! The DHT's [`Transport`] over the node's QUIC connections: one request and its response
//! per bidirectional stream tagged [`KAD_PROTOCOL`](crate::KAD_PROTOCOL), each side
//! finishing its half after one frame.

use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;

use p2p_foundation_dht::driver::BoxFuture;
use p2p_foundation_dht::{DhtError, Transport};
use p2p_foundation_identity::PeerId;

use crate::net::{KAD_PROTOCOL, Net};

/// Runs DHT requests over the node's connections (dialling on demand).
pub(crate) struct QuicKad {
    /// Weak: the DHT task must not keep the node's endpoint alive after shutdown.
    pub(crate) net: Weak<Net>,
    pub(crate) max_frame: usize,
    pub(crate) timeout: Duration,
}

impl Transport for QuicKad {
    fn request(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        frame: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, DhtError>> {
        let net = self.net.clone();
        let (max_frame, timeout) = (self.max_frame, self.timeout);
        Box::pin(async move {
            let net = net.upgrade().ok_or(DhtError::Stopped)?;
            let fail = |reason: String| DhtError::Transport {
                peer: peer.short().to_string(),
                reason,
            };
            let exchange = async {
                let conn = net
                    .connect(peer, &[addr])
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let (mut send, mut recv) = conn
                    .open_bi(KAD_PROTOCOL)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                send.write_all(&frame)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                send.finish().await.map_err(|e| fail(e.to_string()))?;
                // The limit is enforced while reading: a larger answer is refused unbuffered.
                recv.read_to_end(max_frame)
                    .await
                    .map_err(|e| fail(e.to_string()))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(DhtError::Timeout {
                    peer: peer.short().to_string(),
                }),
            }
        })
    }
}
