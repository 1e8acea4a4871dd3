//! An in-memory transport: nodes in one process, connected by channels.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_foundation_identity::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::{BoxFuture, Inbound, Transport};
use crate::DhtError;

/// How long a memory request waits for its response.
const MEMORY_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A set of in-process nodes that reach each other by (synthetic) address.
///
/// Sender identities are those given to [`MemoryNetwork::join`]: every node is trusted, so
/// this is for tests and examples, not for untrusted code.
#[derive(Debug, Default)]
pub struct MemoryNetwork {
    nodes: Mutex<MemoryNodes>,
}

#[derive(Debug, Default)]
struct MemoryNodes {
    by_addr: HashMap<SocketAddr, (PeerId, mpsc::Sender<Inbound>)>,
    next: u32,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds `peer`: returns its transport, its address and the channel of its inbound
    /// requests (to hand to [`DhtNode::spawn`](super::DhtNode::spawn)).
    pub fn join(
        self: &Arc<Self>,
        peer: PeerId,
    ) -> (Arc<MemoryTransport>, SocketAddr, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(1024);
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.next += 1;
        let n = nodes.next;
        let addr = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | (n << 8) | 1), 4000));
        nodes.by_addr.insert(addr, (peer, tx));
        let transport = Arc::new(MemoryTransport {
            net: Arc::clone(self),
            local: peer,
            addr,
        });
        (transport, addr, rx)
    }

    /// Removes the node at `addr`: requests to it fail from now on.
    pub fn leave(&self, addr: SocketAddr) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.by_addr.remove(&addr);
    }

    fn route(&self, addr: SocketAddr) -> Option<(PeerId, mpsc::Sender<Inbound>)> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.by_addr.get(&addr).cloned()
    }
}

/// One node's side of a [`MemoryNetwork`].
#[derive(Debug)]
pub struct MemoryTransport {
    net: Arc<MemoryNetwork>,
    local: PeerId,
    addr: SocketAddr,
}

impl MemoryTransport {
    /// This node's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Transport for MemoryTransport {
    fn request(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        frame: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, DhtError>> {
        let route = self.net.route(addr);
        let (from, from_addr) = (self.local, self.addr);
        Box::pin(async move {
            let fail = |reason: &str| DhtError::Transport {
                peer: peer.short().to_string(),
                reason: reason.to_owned(),
            };
            let (actual, tx) = route.ok_or_else(|| fail("nobody at that address"))?;
            if actual != peer {
                return Err(fail("another peer is at that address"));
            }
            let (reply, rx) = oneshot::channel();
            tx.try_send(Inbound {
                from,
                addr: from_addr,
                frame,
                reply,
            })
            .map_err(|_| fail("inbound queue full or closed"))?;
            match tokio::time::timeout(MEMORY_REQUEST_TIMEOUT, rx).await {
                Ok(Ok(frame)) => Ok(frame),
                Ok(Err(_)) => Err(fail("request refused")),
                Err(_) => Err(DhtError::Timeout {
                    peer: peer.short().to_string(),
                }),
            }
        })
    }
}
