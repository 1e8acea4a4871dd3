//! The side channel: non-QUIC datagrams claimed out of the QUIC socket's receive path, and
//! datagrams sent from the same socket, while QUIC keeps working on it.

mod common;

use std::time::Duration;

use common::{echo, endpoint, endpoint_with, guard, spawn_echo};
use p2p_foundation_transport::{Endpoint, Listen, PathKind, SideChannelConfig, SideChannelStats};
use tokio::net::UdpSocket;

/// A STUN-shaped datagram: first two bits zero, the magic cookie at bytes 4..8.
fn stun_like(tag: u8) -> Vec<u8> {
    let mut d = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    d.extend_from_slice(&[tag; 12]);
    d
}

fn is_stun_like(d: &[u8]) -> bool {
    d.len() >= 20 && d[0] & 0xC0 == 0 && d[4..8] == [0x21, 0x12, 0xA4, 0x42]
}

/// A loopback endpoint whose side channel claims STUN-shaped datagrams, queueing `capacity`.
async fn stun_endpoint(capacity: usize) -> Endpoint {
    endpoint_with(Listen::loopback_v4(), |c| {
        c.side_channel = Some(SideChannelConfig::new(is_stun_like).with_capacity(capacity));
    })
    .await
}

#[tokio::test]
async fn claimed_datagrams_arrive_and_answers_leave_from_the_quic_port_while_quic_works() {
    guard(async {
        let server = stun_endpoint(SideChannelConfig::DEFAULT_CAPACITY).await;
        let side = server.side_channel().expect("configured");
        let quic_addr = server.local_addr().unwrap();
        spawn_echo(server.clone());

        let outsider = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        outsider.send_to(&stun_like(7), quic_addr).await.unwrap();
        let got = side.recv().await.expect("a claimed datagram");
        assert_eq!(got.from, outsider.local_addr().unwrap());
        assert_eq!(&got.data[..], &stun_like(7)[..]);

        // The answer leaves from the QUIC socket itself (same address and port).
        side.send_to(b"answer", got.from).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = outsider.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"answer"[..], quic_addr));

        // QUIC on the same socket is unaffected.
        let client = endpoint(Listen::loopback_v4()).await;
        let conn = client
            .connect_quic(server.peer_id(), quic_addr)
            .await
            .unwrap();
        assert_eq!(conn.path(), PathKind::Quic);
        assert_eq!(echo(&conn, "/echo/1", b"hello").await, b"hello");

        let stats = side.stats();
        assert_eq!((stats.received, stats.dropped, stats.sent), (1, 0, 1));
    })
    .await;
}

#[tokio::test]
async fn unclaimed_non_quic_datagrams_are_junk_and_never_reach_the_side_channel() {
    guard(async {
        let server = stun_endpoint(SideChannelConfig::DEFAULT_CAPACITY).await;
        let side = server.side_channel().expect("configured");
        let outsider = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Fixed bit clear but no magic cookie: not claimed, dropped as junk.
        outsider
            .send_to(&[0x00; 40], server.local_addr().unwrap())
            .await
            .unwrap();
        // Then a claimed one: once it arrives, the first was already judged (same socket, in order).
        outsider
            .send_to(&stun_like(1), server.local_addr().unwrap())
            .await
            .unwrap();
        let got = side.recv().await.expect("the claimed datagram");
        assert_eq!(&got.data[..], &stun_like(1)[..]);
        assert_eq!(side.stats().received, 1);
        assert!(server.metrics().junk_fixed_bit_clear >= 1);
    })
    .await;
}

#[tokio::test]
async fn a_flood_beyond_the_queue_is_dropped_and_counted_and_memory_stays_bounded() {
    guard(async {
        let server = stun_endpoint(4).await;
        let side = server.side_channel().expect("configured");
        let outsider = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        const SENT: u64 = 50;
        for i in 0..SENT {
            outsider
                .send_to(&stun_like(i as u8), server.local_addr().unwrap())
                .await
                .unwrap();
        }
        // Every datagram is judged (queued or dropped); nothing is read meanwhile.
        let mut stats = SideChannelStats::default();
        for _ in 0..500 {
            stats = side.stats();
            if stats.received + stats.dropped == SENT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stats.received, 4, "{stats:?}");
        assert_eq!(stats.dropped, SENT - 4, "{stats:?}");
        // The queued ones are the first four, in order.
        for i in 0..4u8 {
            assert_eq!(side.recv().await.expect("queued").data[8], i);
        }
    })
    .await;
}

#[tokio::test]
async fn without_configuration_there_is_no_side_channel() {
    let server = endpoint(Listen::loopback_v4()).await;
    assert!(server.side_channel().is_none());
}

#[tokio::test]
async fn after_a_rebind_the_side_channel_uses_the_new_socket_both_ways() {
    guard(async {
        let server = endpoint_with(Listen::loopback_v4(), |c| {
            c.side_channel = Some(SideChannelConfig::new(is_stun_like));
            c.tcp_listener = false;
        })
        .await;
        let side = server.side_channel().expect("configured");
        let old = server.local_addr().unwrap();
        server.rebind("127.0.0.1:0".parse().unwrap()).unwrap();
        let new = server.local_addr().unwrap();
        assert_ne!(old, new);
        let outsider = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        outsider.send_to(&stun_like(9), new).await.unwrap();
        let got = side.recv().await.expect("claimed on the new socket");
        side.send_to(b"from the new port", got.from).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = outsider.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"from the new port"[..], new));
    })
    .await;
}

#[tokio::test]
async fn a_dual_stack_socket_sends_to_ipv4_destinations() {
    guard(async {
        let server = endpoint_with(Listen::DualStack { port: 0 }, |c| {
            c.side_channel = Some(SideChannelConfig::new(is_stun_like));
        })
        .await;
        let side = server.side_channel().expect("configured");
        let port = server.local_addr().unwrap().port();
        let outsider = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Given as plain IPv4 (as a peer's address usually is), not in v4-mapped form.
        side.send_to(b"to v4", outsider.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = outsider.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"to v4");
        assert_eq!(from.port(), port);
    })
    .await;
}

#[tokio::test]
async fn extra_sockets_take_claimed_datagrams_and_carry_a_routed_peers_quic() {
    guard(async {
        let server = stun_endpoint(SideChannelConfig::DEFAULT_CAPACITY).await;
        let side = server.side_channel().expect("configured");
        let quic_addr = server.local_addr().unwrap();
        spawn_echo(server.clone());
        let extras = side.open_extra_sockets(8).unwrap();
        assert_eq!(extras.addrs().len(), 8);
        assert_eq!(side.stats().extra_sockets, 8);
        assert!(
            extras
                .addrs()
                .iter()
                .all(|a| a.ip() == quic_addr.ip() && *a != quic_addr)
        );

        // A claimed datagram to an idle endpoint's extra socket arrives, tagged with it.
        let outsider = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let third = extras.addrs()[3];
        outsider.send_to(&stun_like(9), third).await.unwrap();
        let got = side.recv().await.expect("a claimed datagram");
        assert_eq!(
            (got.from, got.via),
            (outsider.local_addr().unwrap(), Some(third))
        );
        // And an answer leaves from that socket.
        side.send_via(third, b"from the extra", got.from)
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = outsider.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"from the extra"[..], third));

        // Kept, it carries a peer's QUIC connection both ways: replies follow the peer's
        // packets to the socket they arrive on, with no explicit route.
        let kept = extras.keep(third).expect("one of them");
        assert_eq!(side.stats().extra_sockets, 1);
        let client = endpoint(Listen::loopback_v4()).await;
        let conn = client.connect_quic(server.peer_id(), third).await.unwrap();
        assert_eq!(
            echo(&conn, "/echo/1", b"through the extra").await,
            b"through the extra"
        );
        assert_eq!(conn.remote_address(), third);

        // Dropped: closed, and the route with it.
        drop(kept);
        assert_eq!(side.stats().extra_sockets, 0);
        assert!(side.send_via(third, b"x", got.from).await.is_err());
        assert!(
            side.open_extra_sockets(p2p_foundation_transport::MAX_EXTRA_SOCKETS + 1)
                .is_err()
        );
    })
    .await;
}

/// One punch probe as the NAT crate sends it.
fn punch_probe() -> Vec<u8> {
    use p2p_foundation_identity::Keypair;
    use p2p_foundation_nat::punch::{Punch, PunchConfig, PunchPoll, PunchSession};
    let session = PunchSession {
        keypair: Keypair::from_secret_bytes([1; 32]),
        remote: Keypair::from_secret_bytes([2; 32]).peer_id(),
        nonce: [3; 16],
    };
    let (local, peer) = (
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    let now = std::time::Instant::now();
    let mut punch = Punch::new(
        session,
        local,
        &[peer],
        PunchConfig::default(),
        [4; 32],
        now,
    );
    match punch.poll(now) {
        PunchPoll::Transmit { bytes, .. } => bytes,
        other => panic!("expected a probe, got {other:?}"),
    }
}

/// Issue 18: the NAT crate's datagrams on the QUIC port. A STUN Binding request starts
/// with 0x00 (to QUIC: fixed bit clear) and a punch probe with `P` = 0x50 (to QUIC: a short
/// header for an unknown connection id), so the QUIC filter alone counts both as junk and
/// drops them. With the side channel claiming them by the NAT crate's own matchers, both
/// arrive there and none is counted as junk, while QUIC works on the same socket.
#[tokio::test]
async fn the_nat_crates_stun_and_punch_datagrams_reach_the_side_channel_not_the_junk_filter() {
    use p2p_foundation_nat::punch::looks_like_punch;
    use p2p_foundation_nat::stun::{Message, looks_like_stun};
    guard(async {
        let stun = Message::binding_request().unwrap().encode().unwrap();
        let probe = punch_probe();
        assert_eq!((stun[0] & 0x40, probe[0]), (0, 0x50));

        let nat = endpoint_with(Listen::loopback_v4(), |c| {
            c.side_channel = Some(SideChannelConfig::new(|d: &[u8]| {
                looks_like_stun(d) || looks_like_punch(d)
            }));
        })
        .await;
        let plain = endpoint(Listen::loopback_v4()).await;
        let outsider = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for to in [nat.local_addr().unwrap(), plain.local_addr().unwrap()] {
            outsider.send_to(&stun, to).await.unwrap();
            outsider.send_to(&probe, to).await.unwrap();
        }

        // Without a side channel: the junk the filter counts.
        let m = common::wait_metrics(&plain, |m| m.junk_total() >= 2).await;
        assert_eq!(
            (m.junk_fixed_bit_clear, m.junk_unknown_connection_id),
            (1, 1),
            "{m:?}"
        );

        // With it: both claimed, in order, from the outsider, and no junk.
        let side = nat.side_channel().expect("configured");
        for sent in [&stun, &probe] {
            let got = side.recv().await.expect("a claimed datagram");
            assert_eq!(
                (&got.data[..], got.from, got.via),
                (&sent[..], outsider.local_addr().unwrap(), None)
            );
        }
        assert_eq!(nat.metrics().junk_total(), 0, "{:?}", nat.metrics());

        spawn_echo(nat.clone());
        let conn = plain
            .connect_quic(nat.peer_id(), nat.local_addr().unwrap())
            .await
            .unwrap();
        assert_eq!(echo(&conn, "/echo/1", b"still QUIC").await, b"still QUIC");
        assert_eq!(side.stats().received, 2);
    })
    .await;
}
