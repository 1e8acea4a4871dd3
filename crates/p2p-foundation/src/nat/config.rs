//! [`NatConfig`]: how a node learns its NAT and gets through it.

use std::net::SocketAddr;
use std::time::Duration;

use p2p_foundation_nat::{PunchConfig, RetransmitConfig};

/// NAT traversal settings, from [`NodeBuilder::nat_config`](crate::NodeBuilder::nat_config).
///
/// ```
/// use std::time::Duration;
/// use p2p_foundation::NatConfig;
///
/// let mut nat = NatConfig::default();
/// nat.stun_servers.push("203.0.113.1:3478".parse().unwrap());
/// nat.punch_after = Duration::from_millis(50);
/// let builder = p2p_foundation::P2PNode::builder().nat_config(nat);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatConfig {
    /// Answer STUN on the QUIC port, learn the reflexive address from peers and punch
    /// holes (default true). Off: the QUIC socket is left to QUIC alone.
    pub enabled: bool,
    /// Introduce connected peers to each other for a coordinated punch (default true).
    pub rendezvous: bool,
    /// Standard STUN servers asked as well as peers (default none: peers suffice).
    pub stun_servers: Vec<SocketAddr>,
    /// Peers asked at most for an observation of the QUIC socket's mapping (default 4).
    pub max_observers: usize,
    /// How long an observation counts (default 10 minutes); observations are refreshed
    /// at a third of it.
    pub observation_ttl: Duration,
    /// STUN requests to peers: retransmissions (default 250 ms RTO, 4 sends).
    pub stun_retransmit: RetransmitConfig,
    /// STUN answers per second per source IP (default 20, bursts of 40); all sources
    /// together get 50 times that.
    pub stun_answer_rate: f64,
    /// Burst of STUN answers per source IP.
    pub stun_answer_burst: u32,
    /// How long a dial waits for the direct path before it also starts a coordinated punch
    /// through a rendezvous (default 100 ms; the two then race).
    pub punch_after: Duration,
    /// Probe timing of a punch (default 50 ms rounds, 40 rounds, 2 s linger).
    pub punch: PunchConfig,
    /// Punches and introductions in flight at once, beyond which new ones are refused
    /// (default 32).
    pub max_in_flight: usize,
    /// The birthday technique, for an endpoint-dependent ("symmetric") NAT on one side and
    /// an endpoint-independent one on the other: the endpoint-dependent side opens this
    /// many extra sockets beside its QUIC socket and sends from each towards the peer, so
    /// its NAT opens as many mappings (default 256; 0 turns the technique off).
    pub birthday_sockets: usize,
    /// The endpoint-independent side's part: how many random ports of the other NAT's
    /// address it probes (default 1024, each at most twice; at most
    /// [`MAX_SPRAY_PORTS`](p2p_foundation_nat::punch::MAX_SPRAY_PORTS)). With 256 mappings
    /// among 64,512 ports, 1,024 probes hit one with probability 1 − e^(−256·1024/64512) ≈ 98%.
    pub birthday_ports: usize,
    /// Ports probed per punch round (default 64: 1,024 ports in 16 rounds of 50 ms).
    pub birthday_ports_per_round: usize,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rendezvous: true,
            stun_servers: Vec::new(),
            max_observers: 4,
            observation_ttl: Duration::from_secs(600),
            stun_retransmit: RetransmitConfig {
                rto: Duration::from_millis(250),
                max_sends: 4,
                last_wait_multiplier: 4,
            },
            stun_answer_rate: 20.0,
            stun_answer_burst: 40,
            punch_after: Duration::from_millis(100),
            punch: PunchConfig {
                interval: Duration::from_millis(50),
                max_rounds: 40,
                final_wait: Duration::from_millis(500),
                linger: Duration::from_secs(2),
            },
            max_in_flight: 32,
            birthday_sockets: 256,
            birthday_ports: 1024,
            birthday_ports_per_round: 64,
        }
    }
}
