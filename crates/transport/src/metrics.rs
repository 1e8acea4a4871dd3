//! Counters, read as a plain [`MetricsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why an incoming or outgoing handshake did not produce a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureReason {
    /// Refused before any crypto: the source IP exceeded its handshake rate.
    RateLimited,
    /// Refused before any crypto: the endpoint holds `max_connections`.
    ConnectionLimit,
    /// The handshake did not complete in time (includes TCP peers that never finish TLS).
    Timeout,
    /// The dialed PeerId did not match the key the remote proved.
    PeerIdMismatch,
    /// TLS failed: bad certificate, non-Ed25519 key, bad signature, no common ALPN, junk bytes.
    Tls,
    /// The transport failed during the handshake (reset, closed, unreachable).
    Transport,
}

/// A point-in-time copy of an endpoint's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Application bytes read from streams and datagrams.
    pub bytes_in: u64,
    /// Application bytes written to streams and datagrams.
    pub bytes_out: u64,
    /// QUIC connections currently open.
    pub quic_connections: u64,
    /// TCP connections currently open.
    pub tcp_connections: u64,
    /// QUIC connections established since bind.
    pub quic_connections_total: u64,
    /// TCP connections established since bind.
    pub tcp_connections_total: u64,
    /// Connections that resumed a session with 0-RTT accepted.
    pub zero_rtt_accepted: u64,
    /// Handshakes refused by the per-IP rate limit.
    pub failed_rate_limited: u64,
    /// Handshakes refused by the connection limit.
    pub failed_connection_limit: u64,
    /// Handshakes that timed out.
    pub failed_timeout: u64,
    /// Dials whose remote proved another PeerId.
    pub failed_peer_id_mismatch: u64,
    /// Handshakes that failed in TLS.
    pub failed_tls: u64,
    /// Handshakes that failed in the transport.
    pub failed_transport: u64,
    /// Streams refused because their header was malformed, too long, or late.
    pub streams_refused_header: u64,
    /// 0-RTT streams refused because their protocol is not replay-safe.
    pub streams_refused_0rtt: u64,
}

impl MetricsSnapshot {
    /// The count for one failure reason.
    pub fn failures(&self, reason: FailureReason) -> u64 {
        match reason {
            FailureReason::RateLimited => self.failed_rate_limited,
            FailureReason::ConnectionLimit => self.failed_connection_limit,
            FailureReason::Timeout => self.failed_timeout,
            FailureReason::PeerIdMismatch => self.failed_peer_id_mismatch,
            FailureReason::Tls => self.failed_tls,
            FailureReason::Transport => self.failed_transport,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) quic_open: AtomicU64,
    pub(crate) tcp_open: AtomicU64,
    pub(crate) quic_total: AtomicU64,
    pub(crate) tcp_total: AtomicU64,
    pub(crate) zero_rtt: AtomicU64,
    failures: [AtomicU64; 6],
    pub(crate) refused_header: AtomicU64,
    pub(crate) refused_0rtt: AtomicU64,
}

fn index(reason: FailureReason) -> usize {
    match reason {
        FailureReason::RateLimited => 0,
        FailureReason::ConnectionLimit => 1,
        FailureReason::Timeout => 2,
        FailureReason::PeerIdMismatch => 3,
        FailureReason::Tls => 4,
        FailureReason::Transport => 5,
    }
}

impl Metrics {
    pub(crate) fn fail(&self, reason: FailureReason) {
        self.failures[index(reason)].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let f = |r| self.failures[index(r)].load(Relaxed);
        MetricsSnapshot {
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            quic_connections: self.quic_open.load(Relaxed),
            tcp_connections: self.tcp_open.load(Relaxed),
            quic_connections_total: self.quic_total.load(Relaxed),
            tcp_connections_total: self.tcp_total.load(Relaxed),
            zero_rtt_accepted: self.zero_rtt.load(Relaxed),
            failed_rate_limited: f(FailureReason::RateLimited),
            failed_connection_limit: f(FailureReason::ConnectionLimit),
            failed_timeout: f(FailureReason::Timeout),
            failed_peer_id_mismatch: f(FailureReason::PeerIdMismatch),
            failed_tls: f(FailureReason::Tls),
            failed_transport: f(FailureReason::Transport),
            streams_refused_header: self.refused_header.load(Relaxed),
            streams_refused_0rtt: self.refused_0rtt.load(Relaxed),
        }
    }
}
