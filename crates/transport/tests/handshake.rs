//! Handshake-level defences: what each side does when the other's TLS is wrong, and dial
//! errors that describe the dial they belong to.

mod common;

use std::time::Duration;

use common::*;
use p2p_foundation_transport::{Keypair, Listen, TransportError};
use tokio::net::{TcpListener, UdpSocket};

/// After a dial met the wrong key, later dials to the same PeerId that fail for another
/// reason report that reason, not the old mismatch; a new wrong key is reported again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_mismatch_is_not_reported_for_a_later_failure() {
    guard(async {
        let impostor = endpoint(Listen::loopback_v4()).await;
        let task = spawn_echo(impostor.clone());
        let client = endpoint_with(Listen::loopback_v4(), |c| {
            c.handshake_timeout = Duration::from_millis(500)
        })
        .await;
        let wanted = Keypair::generate().peer_id();
        let is_mismatch = |err: &TransportError| {
            matches!(err, TransportError::PeerIdMismatch { expected, actual }
                if *expected == wanted && *actual == impostor.peer_id())
        };

        let err = client
            .connect_quic(wanted, impostor.local_addr().unwrap())
            .await
            .unwrap_err();
        assert!(is_mismatch(&err), "{err}");

        // QUIC: nobody answers here (the socket is held open but never read).
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let err = client
            .connect_quic(wanted, silent.local_addr().unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::HandshakeTimeout { .. }),
            "a silent address must time out, got: {err}"
        );

        // TCP: the listener hangs up on every connection before TLS.
        let hang_up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hang_up_addr = hang_up.local_addr().unwrap();
        let hanger = tokio::spawn(async move {
            while let Ok((tcp, _)) = hang_up.accept().await {
                drop(tcp);
            }
        });
        let err = client.connect_tcp(wanted, hang_up_addr).await.unwrap_err();
        assert!(
            !matches!(err, TransportError::PeerIdMismatch { .. }),
            "a hang-up is not a mismatch, got: {err}"
        );

        // The impostor again: a fresh mismatch is reported, on either path.
        let err = client
            .connect_tcp(wanted, impostor.tcp_local_addr().unwrap())
            .await
            .unwrap_err();
        assert!(is_mismatch(&err), "{err}");
        let err = client
            .connect_quic(wanted, impostor.local_addr().unwrap())
            .await
            .unwrap_err();
        assert!(is_mismatch(&err), "{err}");
        let m = client.metrics();
        assert_eq!(m.failed_peer_id_mismatch, 3, "{m:?}");
        assert_eq!(m.failed_timeout, 1, "{m:?}");
        hanger.abort();
        task.abort();
    })
    .await;
}
