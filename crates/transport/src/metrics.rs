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

/// Why a received UDP datagram was refused before QUIC parsed it (see the receive filter in
/// `docs/protocols/transport.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JunkReason {
    /// Empty, or ends before its QUIC header does (a short-header packet too small to carry
    /// a packet number and the header-protection sample).
    TooShort,
    /// The QUIC fixed bit (`0x40`) is clear; this endpoint does not grease it (RFC 9287).
    FixedBitClear,
    /// A long header with a version we do not speak. Counted, then passed on so QUIC can
    /// answer with Version Negotiation (RFC 9000 §6) when the datagram is large enough.
    UnsupportedVersion,
    /// An Initial packet in a datagram smaller than 1,200 bytes (RFC 9000 §14.1).
    InitialTooSmall,
    /// A short-header, Handshake or Retry packet whose destination connection id this
    /// endpoint did not issue (its keyed tag does not verify).
    UnknownConnectionId,
    /// A long header with a connection id longer than 20 bytes.
    Malformed,
}

impl JunkReason {
    /// Every reason, in counter order.
    pub const ALL: [JunkReason; 6] = [
        JunkReason::TooShort,
        JunkReason::FixedBitClear,
        JunkReason::UnsupportedVersion,
        JunkReason::InitialTooSmall,
        JunkReason::UnknownConnectionId,
        JunkReason::Malformed,
    ];

    fn index(self) -> usize {
        match self {
            JunkReason::TooShort => 0,
            JunkReason::FixedBitClear => 1,
            JunkReason::UnsupportedVersion => 2,
            JunkReason::InitialTooSmall => 3,
            JunkReason::UnknownConnectionId => 4,
            JunkReason::Malformed => 5,
        }
    }
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
    /// QUIC Initials from an unproven source address over its handshake budget, answered
    /// with a stateless Retry instead of a refusal (the address may be forged; the handshake
    /// goes on, charged to the proven budget, once the source echoes the Retry token).
    pub quic_retries: u64,
    /// Handshakes refused by the per-source rate limit (proven sources over budget).
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
    /// Inbound TCP-path streams reset because the connection already had
    /// `max_streams_per_connection` inbound streams open (over QUIC the peer's stream credit
    /// makes this impossible).
    pub streams_refused_limit: u64,
    /// Datagrams dropped as too short ([`JunkReason::TooShort`]).
    pub junk_too_short: u64,
    /// Datagrams dropped with the fixed bit clear ([`JunkReason::FixedBitClear`]).
    pub junk_fixed_bit_clear: u64,
    /// Datagrams with an unsupported QUIC version ([`JunkReason::UnsupportedVersion`]);
    /// counted, not dropped.
    pub junk_unsupported_version: u64,
    /// Initial packets dropped in undersized datagrams ([`JunkReason::InitialTooSmall`]).
    pub junk_initial_too_small: u64,
    /// Datagrams dropped for a connection id we never issued
    /// ([`JunkReason::UnknownConnectionId`]).
    pub junk_unknown_connection_id: u64,
    /// Datagrams dropped with a malformed long header ([`JunkReason::Malformed`]).
    pub junk_malformed: u64,
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

    /// The count for one junk-datagram reason.
    pub fn junk(&self, reason: JunkReason) -> u64 {
        match reason {
            JunkReason::TooShort => self.junk_too_short,
            JunkReason::FixedBitClear => self.junk_fixed_bit_clear,
            JunkReason::UnsupportedVersion => self.junk_unsupported_version,
            JunkReason::InitialTooSmall => self.junk_initial_too_small,
            JunkReason::UnknownConnectionId => self.junk_unknown_connection_id,
            JunkReason::Malformed => self.junk_malformed,
        }
    }

    /// Datagrams counted for any junk reason.
    pub fn junk_total(&self) -> u64 {
        JunkReason::ALL.iter().map(|r| self.junk(*r)).sum()
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
    pub(crate) retries: AtomicU64,
    failures: [AtomicU64; 6],
    pub(crate) refused_header: AtomicU64,
    pub(crate) refused_0rtt: AtomicU64,
    pub(crate) refused_limit: AtomicU64,
    junk: [AtomicU64; 6],
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

    pub(crate) fn junk(&self, reason: JunkReason) {
        self.junk[reason.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let f = |r| self.failures[index(r)].load(Relaxed);
        let j = |r: JunkReason| self.junk[r.index()].load(Relaxed);
        MetricsSnapshot {
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            quic_connections: self.quic_open.load(Relaxed),
            tcp_connections: self.tcp_open.load(Relaxed),
            quic_connections_total: self.quic_total.load(Relaxed),
            tcp_connections_total: self.tcp_total.load(Relaxed),
            zero_rtt_accepted: self.zero_rtt.load(Relaxed),
            quic_retries: self.retries.load(Relaxed),
            failed_rate_limited: f(FailureReason::RateLimited),
            failed_connection_limit: f(FailureReason::ConnectionLimit),
            failed_timeout: f(FailureReason::Timeout),
            failed_peer_id_mismatch: f(FailureReason::PeerIdMismatch),
            failed_tls: f(FailureReason::Tls),
            failed_transport: f(FailureReason::Transport),
            streams_refused_header: self.refused_header.load(Relaxed),
            streams_refused_0rtt: self.refused_0rtt.load(Relaxed),
            streams_refused_limit: self.refused_limit.load(Relaxed),
            junk_too_short: j(JunkReason::TooShort),
            junk_fixed_bit_clear: j(JunkReason::FixedBitClear),
            junk_unsupported_version: j(JunkReason::UnsupportedVersion),
            junk_initial_too_small: j(JunkReason::InitialTooSmall),
            junk_unknown_connection_id: j(JunkReason::UnknownConnectionId),
            junk_malformed: j(JunkReason::Malformed),
        }
    }
}
