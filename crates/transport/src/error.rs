//! The crate's error type.

use std::io;
use std::net::SocketAddr;

use p2p_foundation_identity::PeerId;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Binding a UDP or TCP socket failed.
    #[error(
        "could not bind {addr}: {source} (is the port in use, or the address not on this host?)"
    )]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The peer at the dialed address proved a different identity than the one dialed.
    #[error(
        "dialed peer {expected} but the remote proved it is {actual}: wrong address or stale address book entry"
    )]
    PeerIdMismatch {
        /// The PeerId we dialed.
        expected: PeerId,
        /// The PeerId the remote's certificate carries.
        actual: PeerId,
    },
    /// The TLS handshake failed (bad certificate, bad signature, no common protocol, ...).
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The handshake did not finish within [`Config::handshake_timeout`](crate::Config::handshake_timeout).
    #[error("handshake with {addr} timed out")]
    HandshakeTimeout {
        /// The remote address.
        addr: SocketAddr,
    },
    /// The endpoint already holds [`Config::max_connections`](crate::Config::max_connections).
    #[error(
        "connection limit of {limit} reached: close connections or raise Config::max_connections"
    )]
    ConnectionLimit {
        /// The configured limit.
        limit: usize,
    },
    /// A QUIC connection failed or was closed.
    #[error("QUIC connection error: {0}")]
    Quic(#[from] quinn::ConnectionError),
    /// Starting a QUIC connection failed before any packet was sent.
    #[error("could not start a QUIC connection: {0}")]
    QuicConnect(#[from] quinn::ConnectError),
    /// Writing to a QUIC stream failed.
    #[error("QUIC stream write failed: {0}")]
    QuicWrite(#[from] quinn::WriteError),
    /// Reading from a QUIC stream failed.
    #[error("QUIC stream read failed: {0}")]
    QuicRead(#[from] quinn::ReadError),
    /// Sending a datagram failed.
    #[error("datagram could not be sent: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
    /// The TCP stream multiplexer failed.
    #[error("multiplexer error: {0}")]
    Mux(#[from] yamux::ConnectionError),
    /// An I/O error on a socket or stream.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The operation needs a feature the connection's path does not have (e.g. datagrams over TCP).
    #[error("{0} is not available on a TCP connection; check Connection::path() first")]
    Unsupported(&'static str),
    /// A protocol id is empty, too long or not printable ASCII.
    #[error("invalid protocol id: {0}")]
    InvalidProtocol(&'static str),
    /// A stream header from the remote was malformed or over the limit.
    #[error("invalid stream header: {0}")]
    InvalidHeader(&'static str),
    /// A message exceeded the caller's size limit.
    #[error("message longer than the limit of {limit} bytes")]
    TooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A protocol not listed in [`Config::zero_rtt_protocols`](crate::Config::zero_rtt_protocols) was
    /// offered for 0-RTT.
    #[error(
        "protocol {0} is not allowed in 0-RTT: only replay-safe protocols listed in Config::zero_rtt_protocols may be"
    )]
    NotReplaySafe(String),
    /// No address to dial was given.
    #[error("no address to dial")]
    NoAddress,
    /// The connection or endpoint is closed.
    #[error("closed: {0}")]
    Closed(String),
    /// Building the TLS configuration or certificate failed.
    #[error("TLS configuration error: {0}")]
    TlsConfig(String),
}

/// Shorthand for `Result<T, TransportError>`.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;
