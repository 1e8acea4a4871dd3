//! Handshake-level defences: what each side does when the other's TLS is wrong (raw rustls
//! and quinn peers presenting what a real node never would), 0-RTT replays, and dial errors
//! that describe the dial they belong to.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use p2p_foundation_transport::{ALPN, Endpoint, Keypair, Listen, PeerId, TransportError};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// DER of an Ed25519 SubjectPublicKeyInfo up to the 32 key bytes (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A fresh Ed25519 key pair and the same key as a rustls signing key.
fn ed25519_key() -> (rcgen::KeyPair, Arc<dyn SigningKey>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let der = PrivatePkcs8KeyDer::from(key.serialize_der());
    let signer = provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(der))
        .unwrap();
    (key, signer)
}

fn self_signed(key: &rcgen::KeyPair) -> CertificateDer<'static> {
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(key)
        .unwrap()
        .der()
        .clone()
}

/// A genuine identity: a certificate of a fresh Ed25519 key, and that key.
fn genuine() -> (PeerId, Arc<CertifiedKey>) {
    let (key, signer) = ed25519_key();
    let peer = PeerId::from_slice(key.public_key_raw()).unwrap();
    (
        peer,
        Arc::new(CertifiedKey::new(vec![self_signed(&key)], signer)),
    )
}

/// Another node's certificate without its key: a certificate carrying `victim`'s identity
/// key (the forger's own, with the victim's key bytes written over the forger's; receivers
/// look at nothing but the key), presented with the forger's key to sign the handshake.
fn forged(victim: PeerId) -> Arc<CertifiedKey> {
    let (key, signer) = ed25519_key();
    let mut der = self_signed(&key).to_vec();
    let at = der
        .windows(ED25519_SPKI_PREFIX.len())
        .position(|w| w == ED25519_SPKI_PREFIX)
        .unwrap()
        + ED25519_SPKI_PREFIX.len();
    der[at..at + 32].copy_from_slice(victim.as_bytes());
    Arc::new(CertifiedKey::new(vec![CertificateDer::from(der)], signer))
}

/// A certificate for a P-256 key. The listener asks for Ed25519 signatures only, so rustls
/// would not even offer it; it goes with an Ed25519 signing key, and the listener must
/// refuse the certificate itself.
fn not_ed25519() -> Arc<CertifiedKey> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let (_, signer) = ed25519_key();
    Arc::new(CertifiedKey::new(vec![self_signed(&key)], signer))
}

/// Presents a fixed certificate (or none), whatever was asked for.
#[derive(Debug)]
struct Presents(Option<Arc<CertifiedKey>>);

impl ResolvesClientCert for Presents {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.is_some()
    }
}

impl ResolvesServerCert for Presents {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.clone()
    }
}

/// A raw client's view of servers: any certificate, but a valid Ed25519 handshake
/// signature by its key (so the raw client itself is no easier to fool than a node).
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn raw_client_config(presents: Option<Arc<CertifiedKey>>) -> Arc<rustls::ClientConfig> {
    let p = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(p)))
        .with_client_cert_resolver(Arc::new(Presents(presents)));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Arc::new(cfg)
}

fn raw_server_config(presents: Arc<CertifiedKey>) -> Arc<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Presents(Some(presents))));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Arc::new(cfg)
}

fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

/// A raw QUIC client's handshake with `addr`: the connection, or how it ended.
async fn raw_quic_dial(
    presents: Option<Arc<CertifiedKey>>,
    addr: SocketAddr,
) -> (
    quinn::Endpoint,
    Result<quinn::Connection, quinn::ConnectionError>,
) {
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(raw_client_config(presents)).unwrap();
    let cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let conn = ep.connect_with(cfg, addr, "peer").unwrap().await;
    (ep, conn)
}

/// A raw TLS-over-TCP client's handshake with `addr`.
async fn raw_tcp_dial(
    presents: Option<Arc<CertifiedKey>>,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("peer").unwrap();
    tokio_rustls::TlsConnector::from(raw_client_config(presents))
        .connect(name, tcp)
        .await
}

/// Whether an I/O error is a TLS alert the peer sent.
fn is_alert(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|t| matches!(t, rustls::Error::AlertReceived(_)))
}

/// A node refuses a raw client presenting `presents` on both paths, and the client learns
/// it from a TLS alert: over QUIC the handshake or the connection ends with a crypto error;
/// over TCP (where a TLS 1.3 client finishes before the server has checked it) the first
/// read fails with the alert.
async fn refused_by_the_listener(presents: impl Fn() -> Option<Arc<CertifiedKey>>) {
    let server = endpoint(Listen::loopback_v4()).await;
    let let_in = || async {
        let conn = server.accept().await;
        panic!("the listener let the client in: {conn:?}")
    };

    let (_ep, conn) = raw_quic_dial(presents(), server.local_addr().unwrap()).await;
    let why = match conn {
        Err(e) => e,
        Ok(c) => tokio::select! {
            why = c.closed() => why,
            () = let_in() => unreachable!(),
        },
    };
    assert!(
        match &why {
            quinn::ConnectionError::ConnectionClosed(c) => is_crypto(c.error_code),
            quinn::ConnectionError::TransportError(t) => is_crypto(t.code),
            _ => false,
        },
        "QUIC: the client must get a TLS alert, got: {why}"
    );
    let m = wait_metrics(&server, |m| m.failed_tls >= 1).await;
    assert_eq!((m.failed_tls, m.quic_connections_total), (1, 0), "{m:?}");

    let why = match raw_tcp_dial(presents(), server.tcp_local_addr().unwrap()).await {
        Err(e) => e,
        Ok(mut tls) => tokio::select! {
            read = tls.read_u8() => read.expect_err("TCP: the listener sent data"),
            () = let_in() => unreachable!(),
        },
    };
    assert!(
        is_alert(&why),
        "TCP: the client must get a TLS alert, got: {why}"
    );
    let m = wait_metrics(&server, |m| m.failed_tls >= 2).await;
    assert_eq!((m.failed_tls, m.tcp_connections_total), (2, 0), "{m:?}");
}

/// The harness itself: a raw client with a genuine identity is let in on both paths, as
/// the PeerId of its key. (So the refusals below come from what is presented.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_client_with_a_genuine_identity_is_accepted() {
    guard(async {
        let server = endpoint(Listen::loopback_v4()).await;
        let (peer, identity) = genuine();
        let (_ep, conn) = raw_quic_dial(Some(identity.clone()), server.local_addr().unwrap()).await;
        let _conn = conn.expect("QUIC handshake");
        assert_eq!(server.accept().await.unwrap().peer_id(), peer);
        let _tls = raw_tcp_dial(Some(identity), server.tcp_local_addr().unwrap())
            .await
            .expect("TCP handshake");
        assert_eq!(server.accept().await.unwrap().peer_id(), peer);
        assert_eq!(server.metrics().failed_tls, 0);
    })
    .await;
}

/// Proving a key means signing the handshake with it: another node's certificate is
/// worthless without that node's secret key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_another_nodes_certificate_but_not_its_key_is_refused() {
    let victim = Keypair::generate().peer_id();
    guard(refused_by_the_listener(|| Some(forged(victim)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    guard(refused_by_the_listener(|| None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_non_ed25519_certificate_is_refused() {
    guard(refused_by_the_listener(|| Some(not_ed25519()))).await;
}

/// Dialing a PeerId, a node refuses a server that presents that PeerId's certificate
/// without its key, on both paths; the impostor's handshake fails too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_dialed_nodes_certificate_but_not_its_key_is_refused() {
    guard(async {
        let victim = Keypair::generate().peer_id();
        let client = endpoint(Listen::loopback_v4()).await;

        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(raw_server_config(forged(victim)))
                .unwrap();
        let impostor = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(crypto)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = impostor.local_addr().unwrap();
        let side = tokio::spawn(async move {
            let incoming = impostor.accept().await.unwrap();
            incoming.await.map(drop)
        });
        let err = client.connect_quic(victim, addr).await.unwrap_err();
        assert!(
            matches!(err, TransportError::Handshake { .. }),
            "QUIC: {err}"
        );
        assert!(side.await.unwrap().is_err(), "QUIC: the impostor got in");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = raw_server_config(forged(victim));
        let side = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(cfg)
                .accept(tcp)
                .await
                .map(drop)
        });
        let err = client.connect_tcp(victim, addr).await.unwrap_err();
        assert!(
            matches!(err, TransportError::Handshake { .. }),
            "TCP: {err}"
        );
        assert!(side.await.unwrap().is_err(), "TCP: the impostor got in");
        let m = client.metrics();
        assert_eq!((m.failed_tls, m.failed_peer_id_mismatch), (2, 0), "{m:?}");
    })
    .await;
}

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

const PING: &str = "/p2pf/ping/1";
const PUT: &str = "/p2pf/put/1";

/// Answers every bidirectional stream that reaches the application with its protocol.
fn spawn_protocol_echo(server: Endpoint) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(conn) = server.accept().await {
            tokio::spawn(async move {
                while let Ok(mut s) = conn.accept_bi().await {
                    let _ = s.recv.read_to_end(1024).await;
                    let _ = s.send.write_all(s.protocol.as_bytes()).await;
                    let _ = s.send.finish().await;
                    let _ = s.send.stopped().await;
                }
            });
        }
    })
}

/// An attacker who captured a client's first flight (Initial and 0-RTT request) delivers
/// it to a server that has not seen it, from its own address. The server accepts the early
/// data (the ticket is valid and unused) but not the request: its protocol is not on the
/// server's replay-safe list, and the attacker cannot finish the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_0rtt_request_for_a_protocol_not_replay_safe_is_refused() {
    guard(async {
        let server = endpoint_with(Listen::loopback_v4(), |c| {
            c.zero_rtt_protocols = vec![PING.into()];
            c.handshake_timeout = Duration::from_secs(1);
        })
        .await;
        // A client that (wrongly) thinks PUT is replay-safe, so it sends it in 0-RTT.
        let client = endpoint_with(Listen::loopback_v4(), |c| {
            c.zero_rtt_protocols = vec![PING.into(), PUT.into()];
            c.handshake_timeout = Duration::from_secs(30);
        })
        .await;
        let task = spawn_protocol_echo(server.clone());
        let addr = server.local_addr().unwrap();

        // A first connection leaves the client a session ticket.
        let mut warm = client
            .connect_early(server.peer_id(), addr, PING, b"warm")
            .await
            .unwrap();
        assert_eq!(warm.recv.read_to_end(64).await.unwrap(), PING.as_bytes());
        warm.connection.close(0, b"done");

        // The client's next flight goes to the attacker, who sends it on from elsewhere
        // and never relays an answer.
        let (attacker, mut initials) = one_way_proxy(addr).await;
        let dial = tokio::spawn({
            let (client, peer) = (client.clone(), server.peer_id());
            async move { client.connect_early(peer, attacker, PUT, b"state").await }
        });
        initials.wait_for(|n| *n >= 1).await.unwrap();
        // The handshake the replay started can never complete: once it has timed out, the
        // server has handled everything the flight carried.
        let m = wait_metrics(&server, |m| m.failed_timeout >= 1).await;
        assert_eq!(
            m.streams_refused_0rtt, 1,
            "the replayed 0-RTT request was decrypted and refused by policy: {m:?}"
        );
        assert_eq!(
            m.quic_connections_total, 1,
            "only the warm-up connection: {m:?}"
        );
        dial.abort();
        task.abort();
    })
    .await;
}
