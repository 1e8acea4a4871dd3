#![allow(dead_code, unreachable_pub)]
//! Helpers shared by the integration tests.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use p2p_foundation_transport::{
    Config, Connection, Endpoint, Keypair, Listen, MetricsSnapshot, PathKind,
};

/// Hang guard: a test body that does not finish in a minute has hung.
pub async fn guard<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test hung (60 s guard)")
}

pub async fn endpoint(listen: Listen) -> Endpoint {
    Endpoint::bind(&Keypair::generate(), Config::with_listen(listen))
        .await
        .unwrap()
}

pub async fn endpoint_with(listen: Listen, f: impl FnOnce(&mut Config)) -> Endpoint {
    let mut cfg = Config::with_listen(listen);
    f(&mut cfg);
    Endpoint::bind(&Keypair::generate(), cfg).await.unwrap()
}

/// Dials `server` from `client` over QUIC, or over TCP for any other `path`.
pub async fn connect_by(client: &Endpoint, server: &Endpoint, path: PathKind) -> Connection {
    match path {
        PathKind::Quic => client
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .unwrap(),
        _ => client
            .connect_tcp(server.peer_id(), server.tcp_local_addr().unwrap())
            .await
            .unwrap(),
    }
}

/// Accepts connections forever and echoes every bidirectional stream; uni streams are echoed
/// back on a new uni stream with the same protocol.
pub fn spawn_echo(server: Endpoint) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(conn) = server.accept().await {
            tokio::spawn(echo_conn(conn));
        }
    })
}

pub async fn echo_conn(conn: Connection) {
    let c2 = conn.clone();
    let uni = tokio::spawn(async move {
        while let Ok(mut s) = c2.accept_uni().await {
            let c3 = c2.clone();
            tokio::spawn(async move {
                let Ok(data) = s.recv.read_to_end(1 << 20).await else {
                    return;
                };
                if let Ok(mut out) = c3.open_uni(&s.protocol).await {
                    let _ = out.write_all(&data).await;
                    let _ = out.finish().await;
                    let _ = out.stopped().await;
                }
            });
        }
    });
    while let Ok(mut s) = conn.accept_bi().await {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut s.recv, &mut s.send).await;
            let _ = s.send.finish().await;
            let _ = s.send.stopped().await;
        });
    }
    uni.abort();
}

pub async fn echo(conn: &Connection, protocol: &str, msg: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = conn.open_bi(protocol).await.unwrap();
    // Write and read at once: an echo larger than the flow-control windows would deadlock
    // if the reply were only read after the whole request was written.
    let write = async {
        send.write_all(msg).await.unwrap();
        send.finish().await.unwrap();
    };
    let (_, back) = tokio::join!(write, recv.read_to_end(64 << 20));
    back.unwrap()
}

/// Waits (bounded by the caller's guard) until `cond` holds for the endpoint's metrics.
pub async fn wait_metrics(
    ep: &Endpoint,
    cond: impl Fn(&MetricsSnapshot) -> bool,
) -> MetricsSnapshot {
    loop {
        let m = ep.metrics();
        if cond(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The Destination Connection ID of a QUIC long-header Initial packet, if `d` is one.
pub fn initial_dcid(d: &[u8]) -> Option<Vec<u8>> {
    let first = *d.first()?;
    // Long header, fixed bit, packet type 0 (Initial).
    if first & 0xc0 != 0xc0 || (first >> 4) & 0x03 != 0 {
        return None;
    }
    let len = usize::from(*d.get(5)?);
    d.get(6..6 + len).map(<[u8]>::to_vec)
}

/// Forwards every datagram sent to it on to `server`, from a socket on 127.0.0.1 that never
/// reads what the server answers: to the server, the senders are someone spoofing
/// 127.0.0.1, who never sees a reply. Publishes how many distinct Initials (by DCID) it
/// has forwarded.
pub async fn one_way_proxy(
    server: SocketAddr,
) -> (SocketAddr, tokio::sync::watch::Receiver<usize>) {
    let inbound = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let outbound = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = inbound.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(0);
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut buf = vec![0u8; 2048];
        // Bounded: the test sends a few dozen datagrams at most.
        for _ in 0..10_000 {
            let Ok(n) = inbound.recv(&mut buf).await else {
                return;
            };
            let _ = outbound.send_to(&buf[..n], server).await;
            if let Some(dcid) = initial_dcid(&buf[..n]) {
                if seen.insert(dcid) {
                    tx.send_replace(seen.len());
                }
            }
        }
    });
    (addr, rx)
}
