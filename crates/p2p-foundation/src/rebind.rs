//! Binding an address a node of this process has just shut down. QUIC lets go of the UDP
//! socket only once the connections it closed have drained (three probe timeouts: a few
//! milliseconds for peers that answered, about 3 s for a handshake nobody answered), so a
//! node restarted on the same port — a service restarted in place, a binding's
//! `shutdown()` then `start()` — would otherwise fail with "address in use". Shutdown
//! records its address here; a bind on that port that finds it in use tries again until
//! it is free, for at most [`RELEASE_WAIT`]. Any other "address in use" fails at once.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use p2p_foundation_identity::Keypair;
use p2p_foundation_transport::{Config, Endpoint, TransportError};

/// Longest a bind waits for a port this process is releasing (QUIC's longest drain, with
/// room to spare).
pub(crate) const RELEASE_WAIT: Duration = Duration::from_secs(4);

/// Addresses released at most this many at once are remembered (older ones are dropped).
const MAX_RELEASING: usize = 1024;

/// Addresses of nodes shut down in this process, with when their socket is surely gone.
static RELEASING: Mutex<Vec<(SocketAddr, Instant)>> = Mutex::new(Vec::new());

fn releasing_now() -> std::sync::MutexGuard<'static, Vec<(SocketAddr, Instant)>> {
    let mut list = RELEASING.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    list.retain(|(_, until)| *until > now);
    list
}

/// A node that was bound to `addr` shut down: its UDP socket goes once QUIC drained.
pub(crate) fn releasing(addr: SocketAddr) {
    let mut list = releasing_now();
    if list.len() >= MAX_RELEASING {
        list.remove(0);
    }
    list.push((addr, Instant::now() + RELEASE_WAIT));
}

/// Whether binding `wanted` may be waiting for a node of this process to let go of it.
fn is_releasing(wanted: SocketAddr) -> bool {
    wanted.port() != 0
        && releasing_now().iter().any(|(addr, _)| {
            addr.port() == wanted.port()
                && (addr.ip() == wanted.ip()
                    || addr.ip().is_unspecified()
                    || wanted.ip().is_unspecified())
        })
}

/// [`Endpoint::bind`], waiting out a port this process is releasing.
pub(crate) async fn bind(keypair: &Keypair, config: Config) -> Result<Endpoint, TransportError> {
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        match Endpoint::bind(keypair, config.clone()).await {
            Err(TransportError::Bind { addr, source })
                if source.kind() == std::io::ErrorKind::AddrInUse
                    && is_releasing(addr)
                    && Instant::now() < deadline =>
            {
                tracing::debug!(%addr, "waiting for the node shut down on this port to release it");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ports_being_released_are_waited_for() {
        let addr: SocketAddr = "127.0.0.1:47123".parse().expect("addr");
        assert!(!is_releasing(addr));
        releasing(addr);
        assert!(is_releasing(addr));
        assert!(is_releasing("0.0.0.0:47123".parse().expect("addr")));
        assert!(!is_releasing("127.0.0.1:47124".parse().expect("addr")));
        assert!(!is_releasing("127.0.0.1:0".parse().expect("addr")));
    }
}
