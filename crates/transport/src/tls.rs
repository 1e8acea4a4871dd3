//! TLS 1.3 bound to Ed25519 identities.
//!
//! Each node presents a self-signed X.509 certificate whose subject public key is its
//! Ed25519 identity key. The verifiers below accept exactly one certificate, require its
//! SubjectPublicKeyInfo to be an Ed25519 key, verify the TLS 1.3 handshake signature with
//! that key (ring), and, when dialing, pin the PeerId that was dialed. Trust comes from
//! the pinned key, not from a CA, so the certificate's own signature and validity dates
//! carry no meaning and are not checked.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use p2p_foundation_identity::{Keypair, PeerId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, ResolvesClientCert, Resumption,
};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ServerSessionMemoryCache;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use crate::error::{Result, TransportError};

/// The ALPN protocol both sides must offer: `p2pf/1`.
pub const ALPN: &[u8] = b"p2pf/1";

/// DER of an Ed25519 SubjectPublicKeyInfo up to the 32 key bytes (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER of an Ed25519 PKCS#8 v1 private key up to the 32 seed bytes (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a peer's certificate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertRejection {
    /// The certificate is not parseable X.509 DER.
    BadEncoding,
    /// The subject key is not an Ed25519 key (or not a valid one).
    NotEd25519,
    /// More than one certificate was sent.
    UnexpectedChain,
}

impl fmt::Display for CertRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadEncoding => "certificate is not valid X.509 DER",
            Self::NotEd25519 => "certificate key is not an Ed25519 identity key",
            Self::UnexpectedChain => "expected exactly one self-signed certificate",
        })
    }
}

impl std::error::Error for CertRejection {}

/// The dialed PeerId and the one the remote proved differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerMismatch {
    pub(crate) expected: PeerId,
    pub(crate) actual: PeerId,
}

impl fmt::Display for PeerMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected peer {} but certificate is for {}",
            self.expected, self.actual
        )
    }
}

impl std::error::Error for PeerMismatch {}

fn reject(reason: CertRejection) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(reason))))
}

/// Extracts the PeerId from a certificate: its SubjectPublicKeyInfo must be exactly an
/// Ed25519 key that is a valid curve point.
pub(crate) fn peer_id_from_cert(cert: &CertificateDer<'_>) -> Result<PeerId, rustls::Error> {
    let parsed =
        webpki::EndEntityCert::try_from(cert).map_err(|_| reject(CertRejection::BadEncoding))?;
    let spki = parsed.subject_public_key_info();
    let spki = spki.as_ref();
    if spki.len() != ED25519_SPKI_PREFIX.len() + 32 || spki[..12] != ED25519_SPKI_PREFIX {
        return Err(reject(CertRejection::NotEd25519));
    }
    PeerId::from_slice(&spki[12..]).map_err(|_| reject(CertRejection::NotEd25519))
}

/// The PeerId of a completed rustls connection's peer (one certificate).
pub(crate) fn peer_id_from_chain(chain: &[CertificateDer<'_>]) -> Option<PeerId> {
    match chain {
        [cert] => peer_id_from_cert(cert).ok(),
        _ => None,
    }
}

/// Verifies the TLS 1.3 handshake signature: Ed25519 only, with ring.
fn verify_signature(
    algs: &WebPkiSupportedAlgorithms,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ));
    }
    // Re-check the key type: the signature must come from the identity key itself.
    peer_id_from_cert(cert)?;
    verify_tls13_signature(message, cert, dss, algs)
}

fn check_single(intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
    if intermediates.is_empty() {
        Ok(())
    } else {
        Err(reject(CertRejection::UnexpectedChain))
    }
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not supported: p2pf requires TLS 1.3".into())
}

/// The wrong PeerIds that servers proved when dialed as one PeerId, numbered in order, so a
/// dial can tell the ones it met from earlier dials' (see [`DialAttempt`]).
#[derive(Debug, Default)]
pub(crate) struct Sightings {
    /// How many wrong PeerIds were seen so far.
    count: u64,
    /// The last one and its number.
    last: Option<(u64, PeerId)>,
}

/// Dialer side: verifies the server and pins the expected PeerId.
#[derive(Debug)]
pub(crate) struct PinnedServerVerifier {
    expected: PeerId,
    /// Servers that proved another PeerId (for the error of the dial that met them).
    seen: Arc<Mutex<Sightings>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_single(intermediates)?;
        let actual = peer_id_from_cert(end_entity)?;
        if actual != self.expected {
            if let Ok(mut seen) = self.seen.lock() {
                seen.count += 1;
                seen.last = Some((seen.count, actual));
            }
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PeerMismatch {
                    expected: self.expected,
                    actual,
                })),
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Listener side: requires a client certificate carrying a valid Ed25519 key and verifies
/// the handshake signature; any PeerId may connect (the application learns which).
#[derive(Debug)]
pub(crate) struct Ed25519ClientVerifier {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for Ed25519ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_single(intermediates)?;
        peer_id_from_cert(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes
            .contains(&SignatureScheme::ED25519)
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The node's certificate and the rustls configurations built from it.
pub(crate) struct TlsContext {
    pub(crate) peer_id: PeerId,
    provider: Arc<CryptoProvider>,
    resolver: Arc<dyn ResolvesClientCert>,
    quic_sessions: Arc<dyn ClientSessionStore>,
    tcp_sessions: Arc<dyn ClientSessionStore>,
    /// Client configurations per dialed PeerId: rustls resumes a session only with the very
    /// verifier and certificate resolver that created it, so they are kept per peer.
    clients: Mutex<HashMap<PeerId, Arc<PeerClient>>>,
    cache_peers: usize,
    /// Server config for QUIC (0-RTT enabled as QUIC requires: `u32::MAX`).
    pub(crate) quic_server: Arc<rustls::ServerConfig>,
    /// Server config for TCP (no early data).
    pub(crate) tcp_server: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

/// Builds the self-signed certificate carrying `keypair`'s Ed25519 key.
pub(crate) fn certificate(
    keypair: &Keypair,
) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>)> {
    let mut der = Vec::with_capacity(48);
    der.extend_from_slice(&ED25519_PKCS8_PREFIX);
    der.extend_from_slice(&*keypair.secret_bytes());
    let pkcs8 = PrivatePkcs8KeyDer::from(der);
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| TransportError::TlsConfig(format!("loading the identity key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TransportError::TlsConfig(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, keypair.peer_id().to_string());
    let cert = params
        .self_signed(&key)
        .map_err(|e| TransportError::TlsConfig(format!("signing the certificate: {e}")))?;
    Ok((cert.der().clone(), pkcs8))
}

fn cfg_err(e: impl fmt::Display) -> TransportError {
    TransportError::TlsConfig(e.to_string())
}

impl TlsContext {
    /// Builds the certificate and configurations for `keypair`; `session_cache` is the
    /// number of peers whose session tickets are kept for resumption and 0-RTT.
    pub(crate) fn new(keypair: &Keypair, session_cache: usize) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert, pkcs8) = certificate(keypair)?;
        let peer_id = keypair.peer_id();
        if peer_id_from_cert(&cert).ok() != Some(peer_id) {
            return Err(TransportError::TlsConfig(
                "certificate does not carry the identity key".into(),
            ));
        }
        let signing = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(pkcs8.clone_key()))
            .map_err(cfg_err)?;
        let certified = Arc::new(CertifiedKey::new(vec![cert.clone()], signing));
        let server = |early: bool| -> Result<Arc<rustls::ServerConfig>> {
            let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(cfg_err)?
                .with_client_cert_verifier(Arc::new(Ed25519ClientVerifier {
                    algs: provider.signature_verification_algorithms,
                }))
                .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(pkcs8.clone_key()))
                .map_err(cfg_err)?;
            cfg.alpn_protocols = vec![ALPN.to_vec()];
            cfg.session_storage = ServerSessionMemoryCache::new(session_cache.max(16));
            cfg.max_early_data_size = if early { u32::MAX } else { 0 };
            Ok(Arc::new(cfg))
        };
        Ok(Self {
            peer_id,
            quic_server: server(true)?,
            tcp_server: server(false)?,
            provider,
            resolver: Arc::new(ClientCert(certified)),
            quic_sessions: Arc::new(ClientSessionMemoryCache::new(session_cache.max(16))),
            tcp_sessions: Arc::new(ClientSessionMemoryCache::new(session_cache.max(16))),
            clients: Mutex::new(HashMap::new()),
            cache_peers: session_cache.max(16),
        })
    }

    /// Client configurations that pin `expected` (cached per PeerId so sessions resume).
    pub(crate) fn client(&self, expected: PeerId) -> Result<Arc<PeerClient>> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| TransportError::TlsConfig("client cache poisoned".into()))?;
        if let Some(c) = clients.get(&expected) {
            return Ok(c.clone());
        }
        let seen = Arc::new(Mutex::new(Sightings::default()));
        let verifier: Arc<dyn ServerCertVerifier> = Arc::new(PinnedServerVerifier {
            expected,
            seen: seen.clone(),
            algs: self.provider.signature_verification_algorithms,
        });
        let build = |early: bool,
                     store: &Arc<dyn ClientSessionStore>|
         -> Result<Arc<rustls::ClientConfig>> {
            let mut cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(cfg_err)?
                .dangerous() // a custom verifier: it pins the key, see `PinnedServerVerifier`.
                .with_custom_certificate_verifier(verifier.clone())
                .with_client_cert_resolver(self.resolver.clone());
            cfg.alpn_protocols = vec![ALPN.to_vec()];
            cfg.resumption = Resumption::store(store.clone());
            cfg.enable_early_data = early;
            cfg.enable_sni = false;
            Ok(Arc::new(cfg))
        };
        let client = Arc::new(PeerClient {
            quic: build(true, &self.quic_sessions)?,
            tcp: build(false, &self.tcp_sessions)?,
            seen,
        });
        if clients.len() >= self.cache_peers {
            if let Some(k) = clients.keys().next().copied() {
                clients.remove(&k);
            }
        }
        clients.insert(expected, client.clone());
        Ok(client)
    }
}

/// rustls client configurations pinned to one PeerId.
pub(crate) struct PeerClient {
    /// For QUIC (0-RTT enabled).
    pub(crate) quic: Arc<rustls::ClientConfig>,
    /// For TCP (no early data).
    pub(crate) tcp: Arc<rustls::ClientConfig>,
    /// Wrong PeerIds proved by servers dialed as this peer.
    seen: Arc<Mutex<Sightings>>,
}

impl PeerClient {
    /// Starts a dial with these configurations: its errors consider only the certificates
    /// seen from now on.
    pub(crate) fn attempt(self: Arc<Self>) -> DialAttempt {
        let since = self.seen.lock().map_or(u64::MAX, |s| s.count);
        DialAttempt {
            client: self,
            since,
        }
    }
}

/// One dial through a [`PeerClient`]. The configurations, and so the verifier, are shared
/// by every dial of the peer (rustls resumes a session only with the verifier that made
/// it), so what a dial met is told apart by order: a wrong PeerId seen before the dial
/// started belongs to an earlier dial and is never reported for this one.
pub(crate) struct DialAttempt {
    client: Arc<PeerClient>,
    /// [`Sightings::count`] when the dial started.
    since: u64,
}

impl DialAttempt {
    /// The PeerId a server proved instead of the expected one since this dial started.
    /// Concurrent dials of the same PeerId (several addresses, both paths) share what they
    /// see, which is what their combined error reports.
    pub(crate) fn mismatch(&self) -> Option<PeerId> {
        let seen = self.client.seen.lock().ok()?;
        seen.last
            .filter(|(n, _)| *n > self.since)
            .map(|(_, peer)| peer)
    }
}

impl std::ops::Deref for DialAttempt {
    type Target = PeerClient;

    fn deref(&self) -> &PeerClient {
        &self.client
    }
}

/// The TLS server name used for `peer`: its base32 PeerId. It keys the session-ticket cache
/// (so tickets are cached per PeerId) and is never sent (SNI is off).
pub(crate) fn server_name(peer: &PeerId) -> String {
    peer.to_string()
}

/// Finds our [`PeerMismatch`] inside a rustls error.
#[cfg(test)]
pub(crate) fn mismatch_in(err: &rustls::Error) -> Option<PeerMismatch> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<PeerMismatch>().copied()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn certificate_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let cert = CertificateDer::from(bytes);
            let _ = peer_id_from_cert(&cert);
        }

        #[test]
        fn flipping_a_key_bit_changes_or_breaks_the_identity(at in 0usize..32, bit in 0u8..8) {
            let kp = Keypair::from_secret_bytes([7; 32]);
            let (cert, _) = certificate(&kp).unwrap();
            let mut bytes = cert.as_ref().to_vec();
            let spki = bytes
                .windows(ED25519_SPKI_PREFIX.len())
                .position(|w| w == ED25519_SPKI_PREFIX)
                .unwrap();
            bytes[spki + 12 + at] ^= 1 << bit;
            let got = peer_id_from_cert(&CertificateDer::from(bytes)).ok();
            prop_assert_ne!(got, Some(kp.peer_id()));
        }
    }

    #[test]
    fn certificate_carries_the_identity_key() {
        let kp = Keypair::generate();
        let (cert, _) = certificate(&kp).unwrap();
        assert_eq!(peer_id_from_cert(&cert).unwrap(), kp.peer_id());
        assert_eq!(
            peer_id_from_chain(std::slice::from_ref(&cert)),
            Some(kp.peer_id())
        );
        assert_eq!(peer_id_from_chain(&[cert.clone(), cert]), None);
    }

    #[test]
    fn non_ed25519_certificate_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let err = peer_id_from_cert(cert.der()).unwrap_err();
        assert!(format!("{err:?}").contains("NotEd25519"), "{err:?}");
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(format!("{:?}", peer_id_from_cert(&junk).unwrap_err()).contains("BadEncoding"));
    }

    #[test]
    fn pinned_verifier_reports_mismatch() {
        let a = Keypair::generate();
        let b = Keypair::generate();
        let (cert, _) = certificate(&b).unwrap();
        let seen = Arc::new(Mutex::new(Sightings::default()));
        let v = PinnedServerVerifier {
            expected: a.peer_id(),
            seen: seen.clone(),
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        };
        let name = ServerName::try_from(server_name(&a.peer_id())).unwrap();
        let err = v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        assert_eq!(
            mismatch_in(&err),
            Some(PeerMismatch {
                expected: a.peer_id(),
                actual: b.peer_id()
            })
        );
        assert_eq!(seen.lock().unwrap().last, Some((1, b.peer_id())));
        let ok = PinnedServerVerifier {
            expected: b.peer_id(),
            seen: seen.clone(),
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        };
        assert!(
            ok.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        assert_eq!(
            seen.lock().unwrap().count,
            1,
            "only wrong PeerIds are recorded"
        );
        assert!(
            ok.verify_server_cert(
                &cert,
                std::slice::from_ref(&cert),
                &name,
                &[],
                UnixTime::now()
            )
            .is_err()
        );
    }
}
