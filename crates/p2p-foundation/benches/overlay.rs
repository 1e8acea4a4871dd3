//! `cargo xtask bench overlay` (as root): the P2P IPv6 overlay between two nodes in the NAT
//! lab's namespaces (A public, B behind an endpoint-independent `masquerade` NAT), each
//! figure beside the same traffic over the plain IPv4 path between the same two hosts in
//! the same run. Ordinary tokio sockets inside the namespaces are the traffic; the overlay
//! carries it as QUIC datagrams over the nodes' connection.
//!
//! - `overlay.tcp_mib_s` beside `overlay.ipv4_tcp_mib_s`: one TCP connection from B's host
//!   to A's overlay address (to A's IPv4 address for the baseline), 64 MiB one way; the
//!   median of 3 interleaved rounds.
//! - `overlay.rtt_us_p50` / `_p99` beside `overlay.ipv4_rtt_us_p50` / `_p99`: 64-byte UDP
//!   echo round trips from B's host to a dual-stack echo socket on A's host, 500 each,
//!   interleaved in batches of 50; `overlay.echo_lost` counts overlay probes not answered
//!   within 1 s.
//!
//! The node has no raw stream API for applications, so the baseline is the network path
//! the overlay runs over, not a QUIC stream of the node's (the transport suite has the QUIC
//! stream's own figure, `quic.bulk`).

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lab::{Lab, NatKind, NsRuntime, Side};
use p2p_foundation_benchkit::{Better, Suite, percentile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: f64 = 1024.0 * 1024.0;
const TCP_PORT: u16 = 7100;
const ECHO_PORT: u16 = 7101;
/// Longest one echo may take before it counts as lost.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);

/// `bytes` over one TCP connection from `client` to `dst` (served in `server`); MiB/s from
/// the first byte written to the server's last byte read.
async fn tcp_bulk(server: &NsRuntime, client: &NsRuntime, dst: IpAddr, bytes: usize) -> f64 {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sink = server.spawn(async move {
        let listener = tokio::net::TcpListener::bind((dst, TCP_PORT))
            .await
            .expect("bind the bulk sink");
        let _ = ready_tx.send(());
        let (mut s, _) = listener.accept().await.expect("accepted");
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0usize;
        loop {
            match s.read(&mut buf).await.expect("read") {
                0 => break,
                n => got += n,
            }
        }
        s.write_all(&(got as u64).to_be_bytes())
            .await
            .expect("report");
        got
    });
    ready_rx.await.expect("sink up");
    let took = client
        .run(async move {
            let chunk = vec![0x5au8; 256 * 1024];
            let mut s = tokio::net::TcpStream::connect((dst, TCP_PORT))
                .await
                .expect("TCP connect");
            let start = Instant::now();
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                s.write_all(&chunk[..n]).await.expect("write");
                left -= n;
            }
            s.shutdown().await.expect("shutdown");
            let mut report = [0u8; 8];
            s.read_exact(&mut report).await.expect("the sink's count");
            (start.elapsed(), u64::from_be_bytes(report))
        })
        .await;
    let got = sink.await.expect("sink task");
    assert_eq!((got, took.1), (bytes, bytes as u64), "every byte arrived");
    bytes as f64 / MIB / took.0.as_secs_f64()
}

/// `count` 64-byte UDP echo round trips from `client` to `dst`; microseconds of each that
/// came back, and how many were lost.
async fn udp_rtts(client: &NsRuntime, dst: IpAddr, count: usize) -> (Vec<f64>, usize) {
    client
        .run(async move {
            let bind: SocketAddr = match dst {
                IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let s = tokio::net::UdpSocket::bind(bind).await.expect("bind");
            s.connect((dst, ECHO_PORT)).await.expect("connect");
            let (mut rtts, mut lost) = (Vec::with_capacity(count), 0);
            let mut buf = [0u8; 128];
            for i in 0..count as u64 {
                let mut msg = [0u8; 64];
                msg[..8].copy_from_slice(&i.to_be_bytes());
                let start = Instant::now();
                s.send(&msg).await.expect("send");
                // Skip late answers to earlier, lost probes.
                let answered = tokio::time::timeout(ECHO_TIMEOUT, async {
                    loop {
                        let n = s.recv(&mut buf).await.expect("recv");
                        if n == 64 && buf[..8] == i.to_be_bytes() {
                            return;
                        }
                    }
                })
                .await;
                match answered {
                    Ok(()) => rtts.push(start.elapsed().as_secs_f64() * 1e6),
                    Err(_) => lost += 1,
                }
            }
            (rtts, lost)
        })
        .await
}

/// A dual-stack UDP echo socket on `ECHO_PORT` in `server`, for the rest of the run.
async fn udp_echo(server: &NsRuntime) {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    server.spawn(async move {
        let s = tokio::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, ECHO_PORT))
            .await
            .expect("bind the echo socket");
        let _ = ready_tx.send(());
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], from).await;
        }
    });
    ready_rx.await.expect("echo up");
}

async fn run(suite: &mut Suite) {
    let lab = Lab::new(NatKind::Public, NatKind::EndpointIndependent);
    let (ns_a, ns_b) = (lab.lan(Side::A), lab.lan(Side::B));
    let (a, b) = lab::overlay_pair(&lab).await;
    // Traffic goes from B's host (behind the NAT) to A's (public), where the plain IPv4
    // path needs no port forwarding: both paths leave through B's NAT.
    let overlay_a = IpAddr::V6(a.node.overlay_addr().expect("A's overlay address"));
    let plain_a: IpAddr = Side::A.host_ip().parse().expect("A's address");
    let (rt_a, rt_b) = (NsRuntime::new(&ns_a), NsRuntime::new(&ns_b));

    let rounds = suite.scale(3, 1);
    let bytes = suite.scale(64, 2) << 20;
    let (mut overlay_tcp, mut plain_tcp) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let o = tcp_bulk(&rt_a, &rt_b, overlay_a, bytes).await;
        let p = tcp_bulk(&rt_a, &rt_b, plain_a, bytes).await;
        eprintln!("  round {round}: overlay {o:.1} MiB/s, IPv4 {p:.1} MiB/s");
        overlay_tcp.push(o);
        plain_tcp.push(p);
    }
    suite.record_vs(
        "overlay.tcp_mib_s",
        percentile(&mut overlay_tcp, 50.0),
        "MiB/s",
        Better::Higher,
        "overlay.ipv4_tcp_mib_s",
        percentile(&mut plain_tcp, 50.0),
    );

    udp_echo(&rt_a).await;
    let (batches, per_batch) = (suite.scale(10, 2), 50);
    let (mut overlay_rtt, mut plain_rtt, mut lost) = (Vec::new(), Vec::new(), (0, 0));
    for _ in 0..batches {
        let (o, lo) = udp_rtts(&rt_b, overlay_a, per_batch).await;
        let (p, lp) = udp_rtts(&rt_b, plain_a, per_batch).await;
        overlay_rtt.extend(o);
        plain_rtt.extend(p);
        lost = (lost.0 + lo, lost.1 + lp);
    }
    eprintln!(
        "  UDP echo: {} overlay and {} IPv4 round trips, lost {} and {}",
        overlay_rtt.len(),
        plain_rtt.len(),
        lost.0,
        lost.1
    );
    suite.record_vs(
        "overlay.rtt_us_p50",
        percentile(&mut overlay_rtt, 50.0),
        "µs",
        Better::Lower,
        "overlay.ipv4_rtt_us_p50",
        percentile(&mut plain_rtt, 50.0),
    );
    suite.record_vs(
        "overlay.rtt_us_p99",
        percentile(&mut overlay_rtt, 99.0),
        "µs",
        Better::Lower,
        "overlay.ipv4_rtt_us_p99",
        percentile(&mut plain_rtt, 99.0),
    );
    suite.record("overlay.echo_lost", lost.0 as f64, "probes", Better::Lower);
    drop((rt_a, rt_b));
    b.stop().await;
    a.stop().await;
}

fn main() -> ExitCode {
    let (mut suite, rt) = match lab::bench_start(
        "overlay",
        "it builds network namespaces, an nftables NAT and TUN devices",
    ) {
        Ok(started) => started,
        Err(code) => return code,
    };
    rt.block_on(run(&mut suite));
    suite.finish();
    ExitCode::SUCCESS
}
