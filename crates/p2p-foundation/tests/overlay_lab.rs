//! The P2P IPv6 overlay between real nodes in the NAT lab (as root; runs in CI, never skips
//! there): two IPv4-only namespaces, B behind an nftables `masquerade` NAT, A on the public
//! side. B joins A; then the hosts' own `ping -6` and TCP connections (ordinary tokio
//! sockets inside each namespace) reach each other's overlay addresses in both directions,
//! and a datagram whose inner source is not its sender's overlay address is dropped and
//! counted. The topology is in `lab/mod.rs`.

mod lab;

use std::net::{Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Lab, NatKind, NsRuntime, Side};
use p2p_foundation::transport::PathKind;
use p2p_foundation::tunnel::overlay::{DATAGRAM_TAG, ipv6};
use p2p_foundation::{OverlayDropReason, OverlayStats, P2PNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HANG_GUARD: Duration = Duration::from_secs(120);

fn overlay_stats(node: &P2PNode) -> OverlayStats {
    node.stats().overlay.expect("the overlay is on")
}

/// A TCP connection from `client_ns` to `[dst]:port`, served in `server_ns`: 64 KiB one
/// way, echoed back. Returns the client address the server saw.
async fn tcp_echo(server_ns: &str, client_ns: &str, dst: Ipv6Addr, port: u16) -> SocketAddr {
    let (server_rt, client_rt) = (NsRuntime::new(server_ns), NsRuntime::new(client_ns));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server = server_rt.spawn(async move {
        let listener = tokio::net::TcpListener::bind((dst, port))
            .await
            .expect("bind the overlay address");
        let _ = ready_tx.send(());
        let (mut s, from) = listener.accept().await.expect("accepted");
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("read");
        s.write_all(&got).await.expect("echo");
        s.shutdown().await.expect("shutdown");
        from
    });
    ready_rx.await.expect("server up");
    let msg: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sent = msg.clone();
    let (local, back) = client_rt
        .run(async move {
            let mut s = tokio::net::TcpStream::connect((dst, port))
                .await
                .expect("TCP connect to the overlay address");
            let local = s.local_addr().expect("local address");
            s.write_all(&sent).await.expect("write");
            s.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.expect("read the echo");
            (local, back)
        })
        .await;
    assert!(back == msg, "the 64 KiB echo came back whole");
    let from = server.await.expect("server task");
    assert_eq!(from, local, "the server saw the client's own address");
    from
}

/// A framed overlay datagram carrying an IPv6/UDP packet from `src` to `[dst]:port`, with a
/// correct UDP checksum.
fn spoofed_udp(src: Ipv6Addr, dst: Ipv6Addr, port: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut udp = Vec::new();
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let sum = ipv6::pseudo_header_checksum(src, dst, 17, &udp);
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    let mut d = vec![DATAGRAM_TAG, 0x60, 0, 0, 0];
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&[17, 64]);
    d.extend_from_slice(&src.octets());
    d.extend_from_slice(&dst.octets());
    d.extend_from_slice(&udp);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_tcp_between_overlay_addresses_across_a_nat() {
    if !lab::can_run("ping_and_tcp_between_overlay_addresses_across_a_nat") {
        return;
    }
    tokio::time::timeout(HANG_GUARD, async {
        let lab = Lab::new(NatKind::Public, NatKind::EndpointIndependent);
        let (ns_a, ns_b) = (lab.lan(Side::A), lab.lan(Side::B));
        let (a, b) = lab::overlay_pair(&lab).await;
        let (id_a, id_b) = (a.node.peer_id(), b.node.peer_id());
        let (addr_a, addr_b) = (
            a.node.overlay_addr().expect("A's overlay address"),
            b.node.overlay_addr().expect("B's overlay address"),
        );
        assert_eq!(addr_a, P2PNode::overlay_addr_of(&id_a));
        let info = a.node.connection_info(&id_b).expect("connected");
        assert_eq!(info.path, PathKind::Quic);
        // B is behind the NAT: A sees it at the NAT's public address.
        assert_eq!(
            info.remote.ip().to_canonical().to_string(),
            Side::B.public_ip()
        );
        let shown = Command::new("ip")
            .args(["-n", &ns_b, "-6", "addr", "show", "dev"])
            .arg(b.node.overlay_interface().expect("device"))
            .output()
            .expect("ip runs");
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.contains(&format!("{addr_b}/48")), "{shown}");

        let started = Instant::now();
        let (got, out) = lab::ping6(&ns_a, addr_b);
        assert_eq!(got, 3, "ping A → B over the overlay:\n{out}");
        let (got, out) = lab::ping6(&ns_b, addr_a);
        assert_eq!(got, 3, "ping B → A over the overlay:\n{out}");
        let pings = started.elapsed();

        let from = tcp_echo(&ns_b, &ns_a, addr_b, 7100).await;
        assert_eq!(from.ip(), std::net::IpAddr::V6(addr_a));
        let from = tcp_echo(&ns_a, &ns_b, addr_a, 7101).await;
        assert_eq!(from.ip(), std::net::IpAddr::V6(addr_b));

        // A misbehaving A: a UDP datagram to a socket on B's overlay address whose inner
        // source is someone else's overlay address (checksums right, so only the overlay's
        // check stands in its way). B drops and counts it; then a genuine one from A's host
        // arrives, and it is the only one the socket ever gets.
        let rt_a = NsRuntime::new(&ns_a);
        let rt_b = NsRuntime::new(&ns_b);
        let sink = rt_b
            .run(async move {
                std::net::UdpSocket::bind((addr_b, 7200))
                    .expect("bind a UDP socket on B's overlay address")
            })
            .await;
        let before = overlay_stats(&b.node);
        let other = P2PNode::overlay_addr_of(&p2p_foundation::Keypair::generate().peer_id());
        a.node
            .overlay_send_unchecked(&id_b, spoofed_udp(other, addr_b, 7200, b"spoofed"))
            .expect("sent on the connection");
        let deadline = Instant::now() + Duration::from_secs(5);
        while overlay_stats(&b.node).dropped_for(OverlayDropReason::SpoofedSource)
            == before.dropped_for(OverlayDropReason::SpoofedSource)
        {
            assert!(
                Instant::now() < deadline,
                "the spoofed datagram was not counted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rt_a.run(async move {
            let s = std::net::UdpSocket::bind((addr_a, 0)).expect("bind on A's overlay address");
            s.send_to(b"genuine", (addr_b, 7200)).expect("sent");
        })
        .await;
        let got = tokio::task::spawn_blocking(move || {
            sink.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = [0u8; 64];
            let (n, from) = sink
                .recv_from(&mut buf)
                .expect("the genuine datagram arrived");
            sink.set_nonblocking(true).expect("nonblocking");
            let more = sink.recv_from(&mut buf).is_ok();
            (buf[..n].to_vec(), from, more)
        })
        .await
        .expect("reader");
        assert_eq!(
            got.0, b"genuine",
            "the spoofed datagram never reached the socket"
        );
        assert_eq!(got.1.ip(), std::net::IpAddr::V6(addr_a));
        assert!(!got.2, "nothing else reached the socket");
        assert_eq!(
            overlay_stats(&b.node).dropped_for(OverlayDropReason::SpoofedSource),
            before.dropped_for(OverlayDropReason::SpoofedSource) + 1
        );

        let (sa, sb) = (overlay_stats(&a.node), overlay_stats(&b.node));
        eprintln!("6 pings in {pings:?}\nA: {sa:?}\nB: {sb:?}");
        assert!(sa.packets_out >= 3 + 3 && sb.packets_in >= 3 + 3);
        let metrics = b.node.metrics().await;
        assert!(
            metrics.contains("p2pf_overlay_dropped_total{reason=\"spoofed_source\"} 1"),
            "{metrics}"
        );
        b.stop().await;
        a.stop().await;
    })
    .await
    .expect("the overlay lab test exceeded its hang guard");
}
