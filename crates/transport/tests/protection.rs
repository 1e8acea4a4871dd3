//! Limits and bad input: every refusal is counted and the endpoint keeps serving.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use p2p_foundation_transport::{JunkReason, Listen, PathKind, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn junk(seed: &mut u64, buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
}

/// One junk datagram of the given kind (see `JunkReason`), with pseudo-random contents.
fn junk_datagram(reason: JunkReason, seed: &mut u64, i: usize) -> Vec<u8> {
    let long = |first: u8, version: u32, dcid_len: u8, total: usize, seed: &mut u64| {
        let mut p = vec![0u8; total];
        junk(seed, &mut p);
        p[0] = first;
        p[1..5].copy_from_slice(&version.to_be_bytes());
        p[5] = dcid_len;
        p[6 + usize::from(dcid_len)] = 8;
        p
    };
    match reason {
        // A short header too small for a packet number and the header-protection sample.
        JunkReason::TooShort => {
            let mut p = vec![0u8; 1 + i % 20];
            junk(seed, &mut p);
            p[0] = 0x40 | (p[0] & 0x3f);
            p
        }
        JunkReason::FixedBitClear => {
            let mut p = vec![0u8; 1 + i % 1400];
            junk(seed, &mut p);
            p[0] &= !0x40;
            p
        }
        JunkReason::UnsupportedVersion => long(0xc0, 0x1a2a_3a4a, 8, 1200, seed),
        JunkReason::InitialTooSmall => long(0xc0, 1, 8, 40 + i % 1100, seed),
        // A short header with a connection id we never issued (2^-40 odds of a forgery).
        JunkReason::UnknownConnectionId => {
            let mut p = vec![0u8; 40 + i % 1300];
            junk(seed, &mut p);
            p[0] = 0x40 | (p[0] & 0x3f);
            p
        }
        JunkReason::Malformed => long(0xc0, 1, 21 + (i % 200) as u8, 1300, seed),
        other => panic!("no junk for {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_datagram_flood_does_not_disturb_a_transfer() {
    guard(async {
        let server = endpoint(Listen::loopback_v4()).await;
        let client = endpoint(Listen::loopback_v4()).await;
        let echo_task = spawn_echo(server.clone());
        let target = server.local_addr().unwrap();
        let conn = client.connect_quic(server.peer_id(), target).await.unwrap();
        let before = server.metrics();
        assert_eq!(
            before.junk_total(),
            0,
            "a good handshake is not junk: {before:?}"
        );
        const PER_REASON: usize = 3000;
        let flood = tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            for i in 0..PER_REASON * JunkReason::ALL.len() {
                let reason = JunkReason::ALL[i % JunkReason::ALL.len()];
                let d = junk_datagram(reason, &mut seed, i / JunkReason::ALL.len());
                let _ = sock.send_to(&d, target).await;
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let data: Vec<u8> = (0..4u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let back = echo(&conn, "/t/bulk/1", &data).await;
        assert!(back == data, "transfer corrupted under junk flood");
        flood.await.unwrap();
        // Every reason sent was counted (some datagrams may be lost in the kernel's socket
        // buffer under the flood, never more than were sent), and nothing else was.
        let m = wait_metrics(&server, |m| JunkReason::ALL.iter().all(|r| m.junk(*r) > 0)).await;
        for r in JunkReason::ALL {
            assert!(m.junk(r) <= PER_REASON as u64, "{r:?}: {m:?}");
        }
        // The client saw no junk at all: the server's packets all pass its filter.
        assert_eq!(client.metrics().junk_total(), 0, "{:?}", client.metrics());
        // Still serving new peers after the flood.
        let other = endpoint(Listen::loopback_v4()).await;
        let c2 = other.connect_quic(server.peer_id(), target).await.unwrap();
        assert_eq!(echo(&c2, "/t/1", b"after").await, b"after");
        assert_eq!(other.metrics().junk_total(), 0);
        echo_task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_junk_reason_is_counted_exactly() {
    guard(async {
        let server = endpoint(Listen::loopback_v4()).await;
        let echo_task = spawn_echo(server.clone());
        let target = server.local_addr().unwrap();
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut seed = 42u64;
        for (k, reason) in JunkReason::ALL.into_iter().enumerate() {
            for i in 0..3 {
                let d = junk_datagram(reason, &mut seed, i * 101 + k);
                sock.send_to(&d, target).await.unwrap();
                wait_metrics(&server, |m| m.junk(reason) == i as u64 + 1).await;
            }
        }
        // An unsupported version in a full-size datagram is answered with Version
        // Negotiation (version 0) listing the versions we speak.
        let mut buf = [0u8; 2048];
        let vn = loop {
            let (n, _) = sock.recv_from(&mut buf).await.unwrap();
            if buf[1..5] == [0, 0, 0, 0] {
                break buf[..n].to_vec();
            }
        };
        assert!(vn[0] & 0x80 != 0, "Version Negotiation has a long header");
        let m = server.metrics();
        for r in JunkReason::ALL {
            assert_eq!(m.junk(r), 3, "{r:?}: {m:?}");
        }
        // No handshake was attempted by any of it, and the endpoint still serves.
        assert_eq!(m.quic_connections_total, 0);
        let client = endpoint(Listen::loopback_v4()).await;
        let c = client.connect_quic(server.peer_id(), target).await.unwrap();
        assert_eq!(echo(&c, "/t/1", b"ok").await, b"ok");
        assert_eq!(server.metrics().junk_total(), 18);
        echo_task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_peers_that_never_finish_tls_are_timed_out_and_counted() {
    guard(async {
        let server = endpoint_with(Listen::loopback_v4(), |c| {
            c.handshake_timeout = Duration::from_millis(1500);
        })
        .await;
        let echo_task = spawn_echo(server.clone());
        let tcp_addr = server.tcp_local_addr().unwrap();
        // Three silent connections, and one that sends junk instead of a ClientHello.
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(tokio::net::TcpStream::connect(tcp_addr).await.unwrap());
        }
        let mut junk_conn = tokio::net::TcpStream::connect(tcp_addr).await.unwrap();
        junk_conn
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // A good peer is served meanwhile.
        let client = endpoint(Listen::loopback_v4()).await;
        let conn = client
            .connect_tcp(server.peer_id(), tcp_addr)
            .await
            .unwrap();
        assert_eq!(echo(&conn, "/t/1", b"served").await, b"served");
        let m = wait_metrics(&server, |m| m.failed_timeout >= 3 && m.failed_tls >= 1).await;
        assert_eq!(m.failed_timeout, 3, "{m:?}");
        // The silent sockets were closed by the server.
        for mut s in silent {
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).await.unwrap_or(0), 0);
        }
        assert_eq!(echo(&conn, "/t/1", b"still").await, b"still");
        echo_task.abort();
    })
    .await;
}

/// Forwards only the first datagram from the client to the server and nothing back: a
/// handshake that starts and never completes.
async fn truncating_proxy(server: SocketAddr) -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let mut forwarded = false;
        for _ in 0..1000 {
            let Ok((n, _from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            if !forwarded {
                forwarded = true;
                let _ = sock.send_to(&buf[..n], server).await;
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_quic_handshake_times_out_on_both_sides() {
    guard(async {
        let server = endpoint_with(Listen::loopback_v4(), |c| {
            c.handshake_timeout = Duration::from_millis(1500);
        })
        .await;
        let echo_task = spawn_echo(server.clone());
        let proxy = truncating_proxy(server.local_addr().unwrap()).await;
        let client = endpoint_with(Listen::loopback_v4(), |c| {
            c.handshake_timeout = Duration::from_millis(1500);
        })
        .await;
        let err = client
            .connect_quic(server.peer_id(), proxy)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::HandshakeTimeout { .. }),
            "{err}"
        );
        assert_eq!(client.metrics().failed_timeout, 1);
        wait_metrics(&server, |m| m.failed_timeout >= 1).await;
        let ok = client
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .unwrap();
        assert_eq!(echo(&ok, "/t/1", b"ok").await, b"ok");
        echo_task.abort();
    })
    .await;
}

async fn oversized_header(path: PathKind) {
    let server = endpoint_with(Listen::loopback_v4(), |c| c.max_protocol_len = 16).await;
    let client = endpoint_with(Listen::loopback_v4(), |c| c.max_protocol_len = 255).await;
    let echo_task = spawn_echo(server.clone());
    let conn = connect_by(&client, &server, path).await;
    let long = format!("/{}/1", "x".repeat(200));
    let (mut s, mut r) = conn.open_bi(&long).await.unwrap();
    let _ = s.write_all(b"payload").await;
    let _ = s.finish().await;
    // Refused: reset (QUIC) or closed without a byte (TCP); never echoed.
    if let Ok(v) = r.read_to_end(1024).await {
        assert!(v.is_empty(), "a refused stream must not be echoed");
    }
    let m = wait_metrics(&server, |m| m.streams_refused_header >= 1).await;
    assert_eq!(m.streams_refused_header, 1);
    // The connection itself keeps working.
    assert_eq!(echo(&conn, "/t/1", b"fine").await, b"fine");
    // Locally, ids over our own limit or malformed are refused before sending.
    assert!(matches!(
        conn.open_bi("has space").await,
        Err(TransportError::InvalidProtocol(_))
    ));
    assert!(matches!(
        conn.open_uni("").await,
        Err(TransportError::InvalidProtocol(_))
    ));
    echo_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stream_header_quic() {
    guard(oversized_header(PathKind::Quic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_stream_header_tcp() {
    guard(oversized_header(PathKind::Tcp)).await;
}

/// Each source has a budget for handshakes from a claimed address (QUIC without a token)
/// and one for proven addresses (QUIC after a Retry, TCP): over the first, QUIC is asked
/// for a Retry; over the second, QUIC and TCP are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_rate_limit_per_source_ip() {
    guard(async {
        let server = endpoint_with(Listen::loopback_v4(), |c| {
            c.handshakes_per_ip_per_sec = 0.001;
            c.handshake_burst_per_ip = 2;
        })
        .await;
        let echo_task = spawn_echo(server.clone());
        let client = endpoint(Listen::loopback_v4()).await;
        let (quic, tcp) = (
            server.local_addr().unwrap(),
            server.tcp_local_addr().unwrap(),
        );
        let peer = server.peer_id();
        let mut conns = Vec::new();
        // Claimed budget: two QUIC handshakes, no Retry.
        for _ in 0..2 {
            conns.push(client.connect_quic(peer, quic).await.unwrap());
        }
        assert_eq!(server.metrics().quic_retries, 0);
        // Proven budget: one TCP handshake and one QUIC handshake after a Retry.
        conns.push(client.connect_tcp(peer, tcp).await.unwrap());
        conns.push(client.connect_quic(peer, quic).await.unwrap());
        assert_eq!(server.metrics().quic_retries, 1);
        // Both budgets spent: refused, after a Retry on QUIC.
        assert!(client.connect_quic(peer, quic).await.is_err());
        assert!(client.connect_tcp(peer, tcp).await.is_err());
        let m = server.metrics();
        assert_eq!(m.failed_rate_limited, 2, "{m:?}");
        assert_eq!(m.quic_retries, 2, "{m:?}");
        for (i, c) in conns.iter().enumerate() {
            assert_eq!(echo(c, "/t/1", &[i as u8]).await, [i as u8]);
        }
        echo_task.abort();
    })
    .await;
}

/// Handshakes from a sender that cannot receive at its source address (a spoofer's) use up
/// only that address's unproven budget: its real owner gets a Retry, proves the address and
/// connects, charged to a budget the spoofer cannot spend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_initials_do_not_lock_out_their_source() {
    guard(async {
        const BURST: u32 = 3;
        const SPOOFED: usize = 8;
        let server = endpoint_with(Listen::loopback_v4(), |c| {
            c.handshakes_per_ip_per_sec = 0.001;
            c.handshake_burst_per_ip = BURST;
        })
        .await;
        let task = spawn_echo(server.clone());
        let (proxy, mut initials) = one_way_proxy(server.local_addr().unwrap()).await;

        // The spoofer: real QUIC Initials "from 127.0.0.1" that never see an answer.
        let spoofer = endpoint_with(Listen::loopback_v4(), |c| {
            c.handshake_timeout = Duration::from_secs(50)
        })
        .await;
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..SPOOFED {
            let (spoofer, peer) = (spoofer.clone(), server.peer_id());
            attempts.spawn(async move { spoofer.connect_quic(peer, proxy).await });
        }
        initials.wait_for(|n| *n >= SPOOFED).await.unwrap();
        // Every spoofed Initial is in the server's socket before the owner's first one, and
        // the server takes them in order: the owner finds its unproven budget spent.
        let owner = endpoint(Listen::loopback_v4()).await;
        let conn = owner
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .expect("the address owner must not be locked out by spoofed handshakes");
        assert_eq!(echo(&conn, "/test/echo/1", b"hi").await, b"hi");
        let m = server.metrics();
        assert_eq!(m.failed_rate_limited, 0, "{m:?}");
        assert!(
            m.quic_retries > (SPOOFED - BURST as usize) as u64,
            "the spoofed Initials over budget and the owner's were answered with Retry: {m:?}"
        );
        attempts.abort_all();
        task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit() {
    guard(async {
        let server = endpoint_with(Listen::loopback_v4(), |c| c.max_connections = 1).await;
        let echo_task = spawn_echo(server.clone());
        let client = endpoint(Listen::loopback_v4()).await;
        let a = client
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .unwrap();
        wait_metrics(&server, |m| m.quic_connections == 1).await;
        let err = client
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Quic(_)), "{err}");
        assert!(
            client
                .connect_tcp(server.peer_id(), server.tcp_local_addr().unwrap())
                .await
                .is_err()
        );
        assert_eq!(server.metrics().failed_connection_limit, 2);
        assert_eq!(echo(&a, "/t/1", b"a").await, b"a");
        // Dialing is limited too.
        let small = endpoint_with(Listen::loopback_v4(), |c| c.max_connections = 0).await;
        let err = small
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::ConnectionLimit { limit: 0 }),
            "{err}"
        );
        echo_task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebind_migrates_open_quic_connections() {
    guard(async {
        let server = endpoint(Listen::loopback_v4()).await;
        let client = endpoint(Listen::loopback_v4()).await;
        let conn = client
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .unwrap();
        let accepted = server.accept().await.unwrap();
        let serve = tokio::spawn(echo_conn(accepted.clone()));
        assert_eq!(echo(&conn, "/t/1", b"before").await, b"before");
        let old = client.local_addr().unwrap();
        assert_eq!(accepted.remote_address(), old);
        client.rebind("127.0.0.1:0".parse().unwrap()).unwrap();
        let new = client.local_addr().unwrap();
        assert_ne!(new.port(), old.port());
        assert_eq!(echo(&conn, "/t/1", b"after").await, b"after");
        // The server follows the migration once the new path is validated.
        loop {
            if accepted.remote_address() == new {
                break;
            }
            assert_eq!(echo(&conn, "/t/1", b"poke").await, b"poke");
        }
        serve.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_bulk_stream_does_not_starve_others() {
    guard(async {
        let server = endpoint(Listen::loopback_v4()).await;
        let client = endpoint(Listen::loopback_v4()).await;
        let conn = client
            .connect_tcp(server.peer_id(), server.tcp_local_addr().unwrap())
            .await
            .unwrap();
        let accepted = server.accept().await.unwrap();
        // The first stream's reader does not read at all: its sender fills the stream's
        // window and blocks there, without blocking the session.
        let total: usize = 32 << 20;
        let (mut bulk, _bulk_recv) = conn.open_bi("/t/bulk/1").await.unwrap();
        let (progress_tx, progress_rx) = tokio::sync::watch::channel(0usize);
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            let mut sent = 0;
            while sent < total {
                bulk.write_all(&chunk).await.unwrap();
                sent += chunk.len();
                let _ = progress_tx.send(sent);
            }
            bulk.finish().await.unwrap();
            bulk
        });
        let mut held = accepted.accept_bi().await.unwrap();
        assert_eq!(held.protocol, "/t/bulk/1");
        // Ten small exchanges on other streams complete while the bulk stream is stuck.
        let serve = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                while let Ok(mut s) = accepted.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut s.recv, &mut s.send).await;
                        let _ = s.send.finish().await;
                    });
                }
            }
        });
        for i in 0..10u8 {
            assert_eq!(echo(&conn, "/t/small/1", &[i; 100]).await, vec![i; 100]);
        }
        let stuck_at = *progress_rx.borrow();
        assert!(
            stuck_at < total,
            "the bulk stream cannot have finished: nobody read it"
        );
        // Now drain the bulk stream: everything arrives intact.
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = held.recv.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|b| *b == 7));
            got += n;
        }
        assert_eq!(got, total);
        writer.await.unwrap();
        serve.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_without_keep_alive() {
    guard(async {
        let quiet = |c: &mut p2p_foundation_transport::Config| {
            c.idle_timeout = Duration::from_millis(300);
            c.keep_alive = None;
        };
        let server = endpoint_with(Listen::loopback_v4(), quiet).await;
        let client = endpoint_with(Listen::loopback_v4(), quiet).await;
        let q = client
            .connect_quic(server.peer_id(), server.local_addr().unwrap())
            .await
            .unwrap();
        let q_srv = server.accept().await.unwrap();
        let why = q.closed().await;
        assert!(why.contains("timed out"), "{why}");
        q_srv.closed().await;
        let t = client
            .connect_tcp(server.peer_id(), server.tcp_local_addr().unwrap())
            .await
            .unwrap();
        let t_srv = server.accept().await.unwrap();
        let why = t.closed().await;
        assert!(
            why.contains("idle") || why.contains("closed by peer"),
            "{why}"
        );
        t_srv.closed().await;
        // Closed connections leave the gauges even while handles are still held.
        let m = wait_metrics(&server, |m| {
            m.quic_connections == 0 && m.tcp_connections == 0
        })
        .await;
        drop((q, q_srv, t, t_srv));
        assert_eq!((m.quic_connections_total, m.tcp_connections_total), (1, 1));
    })
    .await;
}

/// Writes `msg` on a held stream and reads the echo back (the echo server copies as it reads).
async fn round_trip(
    send: &mut p2p_foundation_transport::SendStream,
    recv: &mut p2p_foundation_transport::RecvStream,
    msg: &[u8],
) {
    send.write_all(msg).await.unwrap();
    send.flush().await.unwrap();
    let mut back = vec![0u8; msg.len()];
    recv.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

/// Opens streams up to `max_streams_per_connection`; the next open does not complete until
/// an earlier stream is finished, and finishing one lets it through.
async fn stream_limit(path: PathKind) {
    const LIMIT: u32 = 4;
    let limited = |c: &mut p2p_foundation_transport::Config| c.max_streams_per_connection = LIMIT;
    let server = endpoint_with(Listen::loopback_v4(), limited).await;
    let client = endpoint_with(Listen::loopback_v4(), limited).await;
    let echo_task = spawn_echo(server.clone());
    let conn = connect_by(&client, &server, path).await;
    let mut held = Vec::new();
    for i in 0..LIMIT {
        let (mut s, mut r) = conn.open_bi("/t/limit/1").await.unwrap();
        round_trip(&mut s, &mut r, &[i as u8; 10]).await;
        held.push((s, r));
    }
    // One more: it waits for a slot. A round trip on a held stream completes meanwhile.
    let mut next = Box::pin(conn.open_bi("/t/limit/1"));
    {
        let (s, r) = &mut held[1];
        tokio::select! {
            biased;
            r = &mut next => panic!("stream {} opened beyond the limit ({})", LIMIT + 1, r.is_ok()),
            () = round_trip(s, r, b"held streams still work") => {}
        }
    }
    // Finishing the first stream (our FIN, the echo's FIN) frees its slot.
    let (mut s0, mut r0) = held.remove(0);
    let finish_first = async move {
        s0.finish().await.unwrap();
        let rest = r0.read_to_end(1024).await.unwrap();
        drop((s0, r0));
        rest
    };
    tokio::select! {
        biased;
        rest = finish_first => assert!(rest.is_empty()),
        r = &mut next => panic!("opened before any stream finished ({})", r.is_ok()),
    }
    let (mut s, mut r) = next.await.expect("a slot was freed");
    round_trip(&mut s, &mut r, b"the fifth").await;
    held.push((s, r));
    // Full again: the next open waits until another stream is finished.
    let mut again = Box::pin(conn.open_bi("/t/limit/1"));
    {
        let (s, r) = &mut held[0];
        tokio::select! {
            biased;
            r = &mut again => panic!("opened beyond the limit again ({})", r.is_ok()),
            () = round_trip(s, r, b"full again") => {}
        }
    }
    let (mut s1, mut r1) = held.remove(0);
    s1.finish().await.unwrap();
    assert!(r1.read_to_end(1024).await.unwrap().is_empty());
    let (mut s, mut r) = again.await.expect("a slot was freed again");
    round_trip(&mut s, &mut r, b"the sixth").await;
    assert_eq!(server.metrics().streams_refused_limit, 0);
    echo_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_limit_quic() {
    guard(stream_limit(PathKind::Quic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_limit_tcp() {
    guard(stream_limit(PathKind::Tcp)).await;
}

/// Over TCP (yamux has no stream credit) a peer with a higher limit can open more streams
/// than we allow: the excess ones are reset and counted, the connection keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_streams_over_the_peer_limit_are_reset_and_counted() {
    guard(async {
        let server =
            endpoint_with(Listen::loopback_v4(), |c| c.max_streams_per_connection = 2).await;
        let client =
            endpoint_with(Listen::loopback_v4(), |c| c.max_streams_per_connection = 8).await;
        let echo_task = spawn_echo(server.clone());
        let conn = client
            .connect_tcp(server.peer_id(), server.tcp_local_addr().unwrap())
            .await
            .unwrap();
        let mut held = Vec::new();
        for i in 0..2u8 {
            let (mut s, mut r) = conn.open_bi("/t/limit/1").await.unwrap();
            round_trip(&mut s, &mut r, &[i; 10]).await;
            held.push((s, r));
        }
        let (mut s, mut r) = conn.open_bi("/t/limit/1").await.unwrap();
        let _ = s.write_all(b"over the limit").await;
        let _ = s.finish().await;
        // Reset: an error or an empty stream, never an echo.
        if let Ok(v) = r.read_to_end(1024).await {
            assert!(v.is_empty(), "a refused stream must not be echoed");
        }
        let m = wait_metrics(&server, |m| m.streams_refused_limit >= 1).await;
        assert_eq!(m.streams_refused_limit, 1);
        for (i, (s, r)) in held.iter_mut().enumerate() {
            round_trip(s, r, &[i as u8 + 10; 10]).await;
        }
        // Finishing one frees a slot on both sides.
        let (mut s0, mut r0) = held.remove(0);
        s0.finish().await.unwrap();
        assert!(r0.read_to_end(1024).await.unwrap().is_empty());
        let (mut s, mut r) = conn.open_bi("/t/limit/1").await.unwrap();
        round_trip(&mut s, &mut r, b"fits again").await;
        assert_eq!(server.metrics().streams_refused_limit, 1);
        echo_task.abort();
    })
    .await;
}
