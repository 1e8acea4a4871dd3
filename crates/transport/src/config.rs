//! Endpoint configuration.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use crate::side::SideChannelConfig;

/// Where the endpoint listens. The UDP (QUIC) and TCP listeners use the same address and,
/// when the port is 0, the same OS-chosen port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// One IPv6 socket on `[::]:port` that also accepts IPv4 (as v4-mapped addresses).
    DualStack {
        /// Port, 0 for any.
        port: u16,
    },
    /// IPv4 only.
    Ipv4(SocketAddrV4),
    /// IPv6 only (`IPV6_V6ONLY` set).
    Ipv6(SocketAddrV6),
}

impl Listen {
    /// `127.0.0.1`, any port.
    pub fn loopback_v4() -> Self {
        Self::Ipv4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
    }

    /// `[::1]`, any port.
    pub fn loopback_v6() -> Self {
        Self::Ipv6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0))
    }

    /// The socket address to bind and whether it is IPv6-only (`None` for IPv4 sockets).
    pub(crate) fn socket_addr(self) -> (SocketAddr, Option<bool>) {
        match self {
            Self::DualStack { port } => (
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)),
                Some(false),
            ),
            Self::Ipv4(a) => (SocketAddr::V4(a), None),
            Self::Ipv6(a) => (SocketAddr::V6(a), Some(true)),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Self::DualStack { port: 0 }
    }
}

/// Endpoint configuration; `Config::default()` suits most nodes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where to listen (default: dual-stack `[::]:0`).
    pub listen: Listen,
    /// Whether to also listen on TCP (default true). Dialing over TCP works either way.
    pub tcp_listener: bool,
    /// Most connections (incoming + outgoing) held at once (default 10,240).
    pub max_connections: usize,
    /// Most concurrent streams of each direction the remote may open per connection (default
    /// 100). QUIC keeps state for every allowed stream, so this drives per-connection memory.
    pub max_streams_per_connection: u32,
    /// Close a connection after this long without any traffic (default 30 s).
    pub idle_timeout: Duration,
    /// Send keep-alives this often so an idle connection stays open (default 10 s; `None` = off).
    pub keep_alive: Option<Duration>,
    /// Give up on a handshake that has not completed after this long (default 10 s).
    pub handshake_timeout: Duration,
    /// How long a stream may take to deliver its header (default 10 s).
    pub stream_header_timeout: Duration,
    /// Longest protocol id accepted in a stream header, at most 255 (default 128).
    pub max_protocol_len: usize,
    /// Largest datagram accepted; larger ones are dropped by QUIC (default 64 KiB of buffer).
    pub datagram_receive_buffer: usize,
    /// Largest multiplexer frame payload sent over TCP (default 256 KiB minus the 12-byte
    /// frame header, so a full frame fills sixteen TLS records exactly; it is also a stream's
    /// whole receive window). Smaller frames interleave streams more finely but cost
    /// throughput: every frame is an allocation, a copy and a task wake-up on each side.
    pub tcp_max_frame: usize,
    /// Incoming handshakes allowed per source (IPv4 address or IPv6 /64) per second, checked
    /// before any crypto (default 20). Applies twice: to QUIC sources that have not proven
    /// their address (over it they get a Retry) and to proven ones (QUIC after a Retry, TCP;
    /// over it they are refused). See the transport protocol doc.
    pub handshakes_per_ip_per_sec: f64,
    /// Burst of handshakes allowed per source, in each of the two budgets (default 40).
    pub handshake_burst_per_ip: u32,
    /// Happy eyeballs: start TCP this long after QUIC unless QUIC already failed (default 250 ms).
    pub tcp_fallback_delay: Duration,
    /// Happy eyeballs between address families (RFC 8305): a dial to a peer with both IPv6
    /// and IPv4 addresses tries the IPv6 ones first, and the IPv4 ones this long after, or
    /// at once when every IPv6 attempt has failed (default 50 ms; zero dials every address
    /// at once). Changeable at run time with
    /// [`Endpoint::set_ipv6_head_start`](crate::Endpoint::set_ipv6_head_start).
    pub ipv6_head_start: Duration,
    /// Number of peers whose TLS session tickets are cached for resumption/0-RTT (default 1,024).
    pub session_cache_peers: usize,
    /// Protocols that may be sent in 0-RTT: only replay-safe (idempotent) ones. Incoming 0-RTT
    /// streams for any other protocol are refused (default: none).
    pub zero_rtt_protocols: Vec<String>,
    /// Non-QUIC datagrams (STUN, NAT probes) to take out of the QUIC socket's receive path
    /// and hand to [`Endpoint::side_channel`](crate::Endpoint::side_channel) (default: none;
    /// without it such datagrams are counted as junk and dropped).
    pub side_channel: Option<SideChannelConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Listen::default(),
            tcp_listener: true,
            max_connections: 10_240,
            max_streams_per_connection: 100,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            handshake_timeout: Duration::from_secs(10),
            stream_header_timeout: Duration::from_secs(10),
            max_protocol_len: 128,
            datagram_receive_buffer: 64 * 1024,
            tcp_max_frame: 256 * 1024 - 12,
            handshakes_per_ip_per_sec: 20.0,
            handshake_burst_per_ip: 40,
            tcp_fallback_delay: Duration::from_millis(250),
            ipv6_head_start: Duration::from_millis(50),
            session_cache_peers: 1024,
            zero_rtt_protocols: Vec::new(),
            side_channel: None,
        }
    }
}

impl Config {
    /// Default configuration listening on `listen`.
    pub fn with_listen(listen: Listen) -> Self {
        Self {
            listen,
            ..Self::default()
        }
    }
}
