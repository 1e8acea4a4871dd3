//! [`RelayConfig`]: whether a node relays for others, and how it keeps reservations at
//! relays when it is behind a NAT.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use p2p_foundation_identity::PeerId;

/// Sees every chunk of bytes a relay forwards between two peers (see
/// [`RelayConfig::forward_tap`]).
pub type ForwardTap = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Relay settings, from [`NodeBuilder::relay_config`](crate::NodeBuilder::relay_config).
///
/// A relay splices two streams: one from the dialer, one to the target, each on the QUIC
/// connection the relay already has to that peer. The two peers then run their own TLS 1.3
/// session (pinned to each other's keys) and multiplexer over the spliced bytes, so the
/// relay forwards ciphertext it cannot read, alter unnoticed or answer for either side.
///
/// ```
/// use std::time::Duration;
/// use p2p_foundation::RelayConfig;
///
/// // A publicly reachable node that relays for others, with a tighter byte budget.
/// let mut relay = RelayConfig::default();
/// relay.serve = true;
/// relay.circuit_bytes = 64 << 20;
/// relay.circuit_duration = Duration::from_secs(600);
/// let builder = p2p_foundation::P2PNode::builder().relay_config(relay);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Relay for other peers (default false: opt in on publicly reachable nodes).
    pub serve: bool,
    /// Hold reservations at relays while this node looks NATed (default true), so peers
    /// that cannot reach it directly or by punching reach it through a relay.
    pub reserve: bool,
    /// Relays to reserve at first (default none: any connected peer that grants one).
    pub relays: Vec<PeerId>,
    /// Reservations held at once (default 2).
    pub reservations_held: usize,
    /// How long a dial gives the direct path and the punch before it also tries the relay
    /// (default 500 ms; they then race, and a punch that wins later takes over).
    pub relay_after: Duration,
    /// Punch attempts made to move a relayed connection to a direct path (default 3, with
    /// backoff 1 s, 2 s, 4 s and up to 25% jitter).
    pub upgrade_attempts: u32,
    /// As a relay: reservations held for others at once (default 256).
    pub max_reservations: usize,
    /// As a relay: how long a reservation lasts unless renewed (default 10 minutes;
    /// holders renew at half of it).
    pub reservation_ttl: Duration,
    /// As a relay: circuits spliced at once (default 512).
    pub max_circuits: usize,
    /// As a relay: circuits one peer takes part in at once, as dialer or target
    /// (default 16).
    pub max_circuits_per_peer: usize,
    /// As a relay: bytes one circuit forwards, both directions together (default 1 GiB);
    /// the circuit is reset when they run out.
    pub circuit_bytes: u64,
    /// As a relay: how long a circuit lives (default 1 hour).
    pub circuit_duration: Duration,
    /// As a relay: sees every chunk of bytes forwarded, as any relay operator could. For
    /// audits and tests: it shows a relay holds nothing but TLS records.
    pub forward_tap: Option<ForwardTap>,
}

impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConfig")
            .field("serve", &self.serve)
            .field("reserve", &self.reserve)
            .field("relays", &self.relays)
            .field("reservations_held", &self.reservations_held)
            .field("relay_after", &self.relay_after)
            .field("upgrade_attempts", &self.upgrade_attempts)
            .field("max_reservations", &self.max_reservations)
            .field("reservation_ttl", &self.reservation_ttl)
            .field("max_circuits", &self.max_circuits)
            .field("max_circuits_per_peer", &self.max_circuits_per_peer)
            .field("circuit_bytes", &self.circuit_bytes)
            .field("circuit_duration", &self.circuit_duration)
            .field("forward_tap", &self.forward_tap.is_some())
            .finish()
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            serve: false,
            reserve: true,
            relays: Vec::new(),
            reservations_held: 2,
            relay_after: Duration::from_millis(500),
            upgrade_attempts: 3,
            max_reservations: 256,
            reservation_ttl: Duration::from_secs(600),
            max_circuits: 512,
            max_circuits_per_peer: 16,
            circuit_bytes: 1 << 30,
            circuit_duration: Duration::from_secs(3600),
            forward_tap: None,
        }
    }
}
