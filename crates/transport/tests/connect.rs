//! Loopback QUIC and TCP over IPv4 and IPv6: streams, datagrams, identities, fallback.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use p2p_foundation_transport::{Endpoint, Keypair, Listen, PathKind, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn exercise(listen: Listen, path: PathKind) {
    let server = endpoint(listen).await;
    let client = endpoint(listen).await;
    let echo_task = spawn_echo(server.clone());
    let conn = connect_by(&client, &server, path).await;
    assert_eq!(conn.peer_id(), server.peer_id());
    assert_eq!(conn.path(), path);
    assert_eq!(
        conn.remote_address().ip(),
        server.local_addr().unwrap().ip()
    );
    assert!(conn.rtt() > std::time::Duration::ZERO);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo(&conn, "/p2pf/kad/1", b"ping").await, b"ping");
    assert_eq!(echo(&conn, "/p2pf/gossip/1", &big).await, big);
    // Unidirectional: the echo server answers on its own uni stream with the same protocol.
    let mut uni = conn.open_uni("/p2pf/mcp/1").await.unwrap();
    uni.write_all(b"one way").await.unwrap();
    uni.finish().await.unwrap();
    let mut back = conn.accept_uni().await.unwrap();
    assert_eq!(back.protocol, "/p2pf/mcp/1");
    assert_eq!(back.recv.read_to_end(1024).await.unwrap(), b"one way");
    match path {
        PathKind::Quic => {
            assert!(conn.max_datagram_size().is_some());
            conn.send_datagram(Bytes::from_static(b"dgram")).unwrap();
        }
        _ => {
            assert!(matches!(
                conn.send_datagram(Bytes::new()),
                Err(TransportError::Unsupported(_))
            ));
            assert!(conn.max_datagram_size().is_none());
        }
    }
    let m = client.metrics();
    assert!(
        m.bytes_out >= big.len() as u64 && m.bytes_in >= big.len() as u64,
        "{m:?}"
    );
    match path {
        PathKind::Quic => assert_eq!((m.quic_connections, m.tcp_connections), (1, 0)),
        _ => assert_eq!((m.quic_connections, m.tcp_connections), (0, 1)),
    }
    echo_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_ipv4() {
    guard(exercise(Listen::loopback_v4(), PathKind::Quic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_ipv6() {
    guard(exercise(Listen::loopback_v6(), PathKind::Quic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_ipv4() {
    guard(exercise(Listen::loopback_v4(), PathKind::Tcp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_ipv6() {
    guard(exercise(Listen::loopback_v6(), PathKind::Tcp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_both_ways() {
    guard(async {
        let server = endpoint(Listen::loopback_v4()).await;
        let client = endpoint(Listen::loopback_v4()).await;
        let conn = client
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .unwrap();
        let accepted = server.accept().await.unwrap();
        assert_eq!(accepted.peer_id(), client.peer_id());
        // Datagrams are unreliable: resend until one arrives (loopback rarely drops).
        let reader = tokio::spawn({
            let accepted = accepted.clone();
            async move { accepted.read_datagram().await.unwrap() }
        });
        for _ in 0..100 {
            conn.send_datagram(Bytes::from_static(b"hello dgram"))
                .unwrap();
            if reader.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(&reader.await.unwrap()[..], b"hello dgram");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_accepts_v4_and_v6() {
    guard(async {
        let server = endpoint(Listen::DualStack { port: 0 }).await;
        let port = server.local_addr().unwrap().port();
        assert_eq!(server.tcp_local_addr().unwrap().port(), port);
        let echo_task = spawn_echo(server.clone());
        let v4: SocketAddr = ([127, 0, 0, 1], port).into();
        let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
        let c4 = endpoint(Listen::loopback_v4()).await;
        let c6 = endpoint(Listen::loopback_v6()).await;
        for (client, addr) in [(&c4, v4), (&c6, v6)] {
            let q = client.connect_quic(server.peer_id(), addr).await.unwrap();
            assert_eq!(echo(&q, "/t/1", b"q").await, b"q");
            let t = client.connect_tcp(server.peer_id(), addr).await.unwrap();
            assert_eq!(echo(&t, "/t/1", b"t").await, b"t");
        }
        echo_task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_peer_id_is_refused() {
    guard(async {
        let server = endpoint(Listen::loopback_v4()).await;
        let client = endpoint(Listen::loopback_v4()).await;
        let echo_task = spawn_echo(server.clone());
        let imposter_target = Keypair::generate().peer_id();
        let quic = client.connect_quic(imposter_target, server.local_addr().unwrap()).await.unwrap_err();
        match quic {
            TransportError::PeerIdMismatch { expected, actual } => {
                assert_eq!((expected, actual), (imposter_target, server.peer_id()));
            }
            other => panic!("expected PeerIdMismatch, got {other}"),
        }
        let tcp = client.connect_tcp(imposter_target, server.tcp_local_addr().unwrap()).await.unwrap_err();
        assert!(matches!(tcp, TransportError::PeerIdMismatch { actual, .. } if actual == server.peer_id()), "{tcp}");
        assert!(tcp.to_string().contains("proved it is"), "{tcp}");
        let both = client.connect(imposter_target, &[server.local_addr().unwrap()]).await.unwrap_err();
        assert!(matches!(both, TransportError::PeerIdMismatch { .. }), "{both}");
        assert!(client.metrics().failed_peer_id_mismatch >= 3);
        // The server counts the aborted handshakes as TLS failures and keeps serving.
        wait_metrics(&server, |m| m.failed_tls >= 2).await;
        let ok = client.connect(server.peer_id(), &[server.local_addr().unwrap()]).await.unwrap();
        assert_eq!(echo(&ok, "/t/1", b"still serving").await, b"still serving");
        echo_task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_eyeballs_prefers_quic() {
    guard(async {
        let server = endpoint(Listen::loopback_v4()).await;
        // A long fallback delay: on a loaded machine TCP must not win by timing alone.
        let client = endpoint_with(Listen::loopback_v4(), |c| {
            c.tcp_fallback_delay = std::time::Duration::from_secs(30);
        })
        .await;
        let echo_task = spawn_echo(server.clone());
        let conn = client
            .connect(server.peer_id(), &[server.local_addr().unwrap()])
            .await
            .unwrap();
        assert_eq!(conn.path(), PathKind::Quic);
        assert_eq!(echo(&conn, "/t/1", b"x").await, b"x");
        echo_task.abort();
    })
    .await;
}

/// A dual-stack server and a dual-stack client with `head_start` for IPv6.
async fn dual_stack_pair(head_start: Duration) -> (Endpoint, Endpoint, u16) {
    let server = endpoint(Listen::DualStack { port: 0 }).await;
    let client = endpoint_with(Listen::DualStack { port: 0 }, |c| {
        c.ipv6_head_start = head_start;
        c.tcp_fallback_delay = Duration::from_secs(30);
    })
    .await;
    let port = server.local_addr().unwrap().port();
    (server, client, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_eyeballs_prefers_ipv6_when_the_peer_has_both() {
    guard(async {
        // A head start far beyond a loopback handshake, so IPv4 cannot win by timing.
        let (server, client, port) = dual_stack_pair(Duration::from_secs(20)).await;
        let echo_task = spawn_echo(server.clone());
        let v4 = SocketAddr::from(([127, 0, 0, 1], port));
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        for addrs in [[v4, v6], [v6, v4]] {
            let started = std::time::Instant::now();
            let conn = client.connect(server.peer_id(), &addrs).await.unwrap();
            assert!(
                conn.remote_address().is_ipv6(),
                "{addrs:?}: {}",
                conn.remote_address()
            );
            assert!(started.elapsed() < Duration::from_secs(10));
            assert_eq!(echo(&conn, "/t/1", b"six").await, b"six");
        }
        echo_task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_eyeballs_falls_back_to_ipv4_after_the_head_start() {
    guard(async {
        let head_start = Duration::from_secs(1);
        let (server, client, port) = dual_stack_pair(head_start).await;
        let echo_task = spawn_echo(server.clone());
        // Nothing answers QUIC on this IPv6 port: the attempt stays silent (no error).
        let silent = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let v6 = silent.local_addr().unwrap();
        let v4 = SocketAddr::from(([127, 0, 0, 1], port));
        let started = std::time::Instant::now();
        let conn = client.connect(server.peer_id(), &[v6, v4]).await.unwrap();
        let took = started.elapsed();
        assert!(conn.remote_address().ip().to_canonical().is_ipv4());
        assert_eq!(conn.path(), PathKind::Quic);
        assert!(
            took >= head_start,
            "IPv4 started before the head start ended: {took:?}"
        );
        assert!(took < Duration::from_secs(10), "{took:?}");
        // With no head start every address is dialled at once: no wait.
        client.set_ipv6_head_start(Duration::ZERO);
        assert_eq!(client.ipv6_head_start(), Duration::ZERO);
        let started = std::time::Instant::now();
        let conn = client.connect(server.peer_id(), &[v6, v4]).await.unwrap();
        assert!(conn.remote_address().ip().to_canonical().is_ipv4());
        assert!(started.elapsed() < head_start, "{:?}", started.elapsed());
        echo_task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_eyeballs_falls_back_to_tcp_when_udp_is_a_black_hole() {
    guard(async {
        // A port whose UDP side swallows everything and whose TCP side runs the server's
        // secure session over the accepted byte stream (the API a relay uses).
        let server = endpoint(Listen::loopback_v4()).await;
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let _black_hole = std::net::UdpSocket::bind(addr).unwrap();
        let srv = server.clone();
        let accept = tokio::spawn(async move {
            let (io, remote) = tcp.accept().await.unwrap();
            let conn = srv.upgrade_inbound(io, remote).await.unwrap();
            echo_conn(conn).await;
        });
        let client = endpoint_with(Listen::loopback_v4(), |c| {
            c.tcp_fallback_delay = std::time::Duration::from_millis(50);
        })
        .await;
        let conn = client.connect(server.peer_id(), &[addr]).await.unwrap();
        assert_eq!(conn.path(), PathKind::Tcp);
        assert_eq!(conn.peer_id(), server.peer_id());
        assert_eq!(echo(&conn, "/t/1", b"over tcp").await, b"over tcp");
        accept.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_reason_reaches_the_peer() {
    guard(async {
        let server = endpoint(Listen::loopback_v4()).await;
        let client = endpoint(Listen::loopback_v4()).await;
        let conn = client
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .unwrap();
        let accepted = server.accept().await.unwrap();
        conn.close(7, b"going away");
        let why = accepted.closed().await;
        assert!(why.contains("going away"), "{why}");
        let (code, _) = accepted.closed_with_code().await;
        assert_eq!(code, Some(7), "the peer's code, typed");
        assert_eq!(conn.closed_with_code().await.0, None, "closed here");
        let tcp = client
            .connect_tcp(server.peer_id(), server.tcp_local_addr().unwrap())
            .await
            .unwrap();
        let accepted = server.accept().await.unwrap();
        assert_eq!(accepted.path(), PathKind::Tcp);
        tcp.close(9, b"bye over tcp");
        let why = accepted.closed().await;
        assert_eq!(why, "closed by peer: code 9: bye over tcp");
        assert_eq!(
            accepted.closed_with_code().await,
            (Some(9), "closed by peer: code 9: bye over tcp".to_owned())
        );
        assert_eq!(tcp.closed_with_code().await.0, None);
        // The closing side reports a local close; the reserved id cannot be opened by hand.
        assert_eq!(tcp.closed().await, "closed locally");
        assert!(matches!(
            accepted
                .open_uni(p2p_foundation_transport::CLOSE_PROTOCOL)
                .await,
            Err(TransportError::InvalidProtocol(_))
        ));
        assert!(accepted.accept_bi().await.is_err());
    })
    .await;
}

/// `SendStream::reset` takes effect at once, while the stream handle is still held: the
/// peer's read ends promptly instead of waiting for the handle to be dropped.
async fn reset_reaches_the_peer_while_the_stream_is_held(path: PathKind) {
    let server = endpoint(Listen::loopback_v4()).await;
    let client = endpoint(Listen::loopback_v4()).await;
    let conn = connect_by(&client, &server, path).await;
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let resetter = tokio::spawn(async move {
        let accepted = server.accept().await.unwrap();
        let mut s = accepted.accept_bi().await.unwrap();
        let mut first = [0u8; 5];
        s.recv.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"hello");
        s.send.write_all(b"partial").await.unwrap();
        s.send.reset();
        // Both halves and the connection stay alive until the peer has seen the reset.
        let _ = held.await;
        drop((s, accepted, server));
    });
    let (mut send, mut recv) = conn.open_bi("/test/reset/1").await.unwrap();
    send.write_all(b"hello").await.unwrap();
    send.flush().await.unwrap();
    let mut buf = vec![0u8; 64];
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match recv.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the peer's reset must end our read while its stream handle is held");
    // Whatever arrived before the reset is a prefix of what was written.
    assert!(b"partial".starts_with(&got), "{got:?}");
    match path {
        // QUIC tells a reset from a finish.
        PathKind::Quic => assert!(end.is_err(), "a reset is not a clean end: {got:?}"),
        // yamux shows a reset as the end of the stream, but it resets both ways: writing
        // to the stream now fails, which a stream the peer only finished would accept.
        _ => {
            let _ = end;
            assert!(send.write_all(b"more").await.is_err());
        }
    }
    let _ = release.send(());
    resetter.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_reaches_the_peer_while_the_stream_is_held_quic() {
    guard(reset_reaches_the_peer_while_the_stream_is_held(
        PathKind::Quic,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_reaches_the_peer_while_the_stream_is_held_tcp() {
    guard(reset_reaches_the_peer_while_the_stream_is_held(
        PathKind::Tcp,
    ))
    .await;
}
