//! 0-RTT on reconnect, and the replay-safety policy.

mod common;

use common::*;
use p2p_foundation_transport::{Endpoint, Listen, TransportError};

const PING: &str = "/p2pf/ping/1";

/// Answers every bidirectional stream with `protocol|0rtt|request`.
fn spawn_reporter(server: Endpoint) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(conn) = server.accept().await {
            tokio::spawn(async move {
                while let Ok(mut s) = conn.accept_bi().await {
                    let early = s.recv.is_replayable();
                    let req = s.recv.read_to_end(1024).await.unwrap();
                    let mut reply = format!("{}|{}|", s.protocol, early).into_bytes();
                    reply.extend_from_slice(&req);
                    s.send.write_all(&reply).await.unwrap();
                    s.send.finish().await.unwrap();
                    let _ = s.send.stopped().await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_uses_0rtt() {
    guard(async {
        let server = endpoint_with(Listen::loopback_v4(), |c| {
            c.zero_rtt_protocols = vec![PING.into()]
        })
        .await;
        let client = endpoint_with(Listen::loopback_v4(), |c| {
            c.zero_rtt_protocols = vec![PING.into()]
        })
        .await;
        let task = spawn_reporter(server.clone());
        let addr = server.local_addr().unwrap();

        // First contact: no ticket yet, so a full handshake; the request follows it.
        let mut first = client
            .connect_early(server.peer_id(), addr, PING, b"one")
            .await
            .unwrap();
        assert!(!first.zero_rtt);
        assert!(!first.connection.used_0rtt());
        assert_eq!(
            first.recv.read_to_end(1024).await.unwrap(),
            b"/p2pf/ping/1|false|one"
        );
        first.connection.close(0, b"done");

        // Second contact: the cached ticket for this PeerId lets the request ride in 0-RTT,
        // and the server saw the stream arrive as 0-RTT data.
        let mut second = client
            .connect_early(server.peer_id(), addr, PING, b"two")
            .await
            .unwrap();
        assert!(second.zero_rtt, "0-RTT was not accepted on reconnect");
        assert!(second.connection.used_0rtt());
        assert_eq!(second.connection.peer_id(), server.peer_id());
        assert_eq!(
            second.recv.read_to_end(1024).await.unwrap(),
            b"/p2pf/ping/1|true|two"
        );
        assert_eq!(client.metrics().zero_rtt_accepted, 1);
        // A resumed connection carries ordinary 1-RTT streams too.
        let (mut s, mut r) = second.connection.open_bi("/p2pf/kad/1").await.unwrap();
        s.write_all(b"later").await.unwrap();
        s.finish().await.unwrap();
        assert_eq!(
            r.read_to_end(1024).await.unwrap(),
            b"/p2pf/kad/1|false|later"
        );
        task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_replay_safe_protocols_ride_in_0rtt() {
    guard(async {
        // The client would send /p2pf/put/1 early, but the server does not consider it
        // replay-safe and refuses the stream.
        let server = endpoint_with(Listen::loopback_v4(), |c| {
            c.zero_rtt_protocols = vec![PING.into()]
        })
        .await;
        let client = endpoint_with(Listen::loopback_v4(), |c| {
            c.zero_rtt_protocols = vec![PING.into(), "/p2pf/put/1".into()]
        })
        .await;
        let task = spawn_reporter(server.clone());
        let addr = server.local_addr().unwrap();
        // Refused locally: not in the client's own list.
        let err = client
            .connect_early(server.peer_id(), addr, "/p2pf/kad/1", b"x")
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::NotReplaySafe(_)), "{err}");

        let mut warm = client
            .connect_early(server.peer_id(), addr, PING, b"warm")
            .await
            .unwrap();
        assert_eq!(
            warm.recv.read_to_end(1024).await.unwrap(),
            b"/p2pf/ping/1|false|warm"
        );
        warm.connection.close(0, b"done");

        let mut put = client
            .connect_early(server.peer_id(), addr, "/p2pf/put/1", b"state")
            .await
            .unwrap();
        assert!(put.zero_rtt);
        assert!(
            put.recv.read_to_end(1024).await.is_err(),
            "server must refuse a non-replay-safe 0-RTT stream"
        );
        let m = wait_metrics(&server, |m| m.streams_refused_0rtt >= 1).await;
        assert_eq!(m.streams_refused_0rtt, 1);
        task.abort();
    })
    .await;
}
