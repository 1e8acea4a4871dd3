//! What a node knows of its own NAT: reflexive addresses observed by peers (and STUN
//! servers), and the mapping behaviour they imply (RFC 4787 §4.1, RFC 5780 §4.3). Pure: time
//! is a parameter.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use p2p_foundation_identity::PeerId;
use p2p_foundation_nat::MappingBehaviour;
use p2p_foundation_nat::behaviour::classify;

/// Who reported an [`Observation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observer {
    /// A peer of the network, answering STUN on its QUIC port.
    Peer(PeerId),
    /// A configured STUN server ([`NatConfig::stun_servers`](crate::NatConfig::stun_servers)).
    StunServer,
}

/// One observer's view of this node's QUIC socket: the evidence behind a [`NatStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Who answered.
    pub observer: Observer,
    /// Where the observer was asked.
    pub observer_addr: SocketAddr,
    /// The address the observer saw this node's QUIC socket send from.
    pub mapped: SocketAddr,
    /// How long ago it answered.
    pub age: Duration,
}

/// This node's NAT as its peers see it, from [`P2PNode::nat_status`](crate::P2PNode::nat_status).
///
/// ```no_run
/// # async fn demo(node: p2p_foundation::P2PNode) {
/// let status = node.nat_status();
/// match (status.reflexive, status.mapping) {
///     (Some(addr), Some(mapping)) => println!("reachable as {addr}, mapping {mapping:?}"),
///     _ => println!("not enough observations yet ({})", status.observations.len()),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatStatus {
    /// The QUIC socket's local address.
    pub local: SocketAddr,
    /// The most recently observed reflexive (public) address of the QUIC socket.
    pub reflexive: Option<SocketAddr>,
    /// Every distinct reflexive address among the current observations, most recent first
    /// (more than one means the mapping depends on the destination).
    pub reflexive_all: Vec<SocketAddr>,
    /// The mapping behaviour, once observers on at least two IP addresses answered (or a
    /// difference proves it endpoint-dependent).
    pub mapping: Option<MappingBehaviour>,
    /// `Some(false)` when the reflexive address is the local one (no NAT), `Some(true)`
    /// when it differs, `None` when that cannot be told (no observation yet, or the socket
    /// is bound to an unspecified address and the port was kept).
    pub behind_nat: Option<bool>,
    /// The observations behind the above, most recent first.
    pub observations: Vec<Observation>,
}

#[derive(Debug, Clone, Copy)]
struct Stored {
    observer: Observer,
    observer_addr: SocketAddr,
    mapped: SocketAddr,
    at: Instant,
}

/// Recent observations, bounded; one per observer address.
#[derive(Debug)]
pub(crate) struct Observations {
    entries: VecDeque<Stored>,
    capacity: usize,
    ttl: Duration,
}

impl Observations {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(2),
            ttl,
        }
    }

    /// Records `mapped` as seen by `observer` at `observer_addr`; returns whether the
    /// derived reflexive address or mapping changed.
    pub(crate) fn record(
        &mut self,
        observer: Observer,
        observer_addr: SocketAddr,
        mapped: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> bool {
        let before = self.status(local, now);
        self.entries.retain(|e| e.observer_addr != observer_addr);
        if self.entries.len() >= self.capacity {
            self.entries.pop_back();
        }
        self.entries.push_front(Stored {
            observer,
            observer_addr,
            mapped: canonical(mapped),
            at: now,
        });
        let after = self.status(local, now);
        before.reflexive != after.reflexive || before.mapping != after.mapping
    }

    /// Forgets every observation (the node is on another network: they describe the old one).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Observer addresses with a fresh observation.
    pub(crate) fn fresh_observers(&self, now: Instant) -> Vec<SocketAddr> {
        self.fresh(now).map(|e| e.observer_addr).collect()
    }

    fn fresh(&self, now: Instant) -> impl Iterator<Item = &Stored> {
        self.entries
            .iter()
            .filter(move |e| now.saturating_duration_since(e.at) < self.ttl)
    }

    /// The status from the fresh observations. Observers reached over a local-scope
    /// address (same LAN, loopback, link-local, the shared CGN range) see the socket before
    /// any NAT: once an observer on a global address has answered, only global observers
    /// decide the reflexive address and the mapping (all are still listed as evidence).
    pub(crate) fn status(&self, local: SocketAddr, now: Instant) -> NatStatus {
        let local = canonical(local);
        let all: Vec<&Stored> = self.fresh(now).collect();
        let global: Vec<&Stored> = all
            .iter()
            .copied()
            .filter(|e| is_global(e.observer_addr.ip()))
            .collect();
        let fresh = if global.is_empty() {
            all.clone()
        } else {
            global
        };
        let mut reflexive_all: Vec<SocketAddr> = Vec::new();
        for e in &fresh {
            if !reflexive_all.contains(&e.mapped) {
                reflexive_all.push(e.mapped);
            }
        }
        let reflexive = fresh.first().map(|e| e.mapped);
        NatStatus {
            local,
            reflexive,
            mapping: mapping(&fresh),
            behind_nat: reflexive.and_then(|r| behind_nat(local, r)),
            observations: all
                .iter()
                .map(|e| Observation {
                    observer: e.observer,
                    observer_addr: e.observer_addr,
                    mapped: e.mapped,
                    age: now.saturating_duration_since(e.at),
                })
                .collect(),
            reflexive_all,
        }
    }
}

/// RFC 5780 §4.3 from the fresh observations: a primary, an alternate on another IP and,
/// when some IP was asked at two ports, that IP as the alternate with its second port.
fn mapping(fresh: &[&Stored]) -> Option<MappingBehaviour> {
    let first = fresh.first()?;
    let differ = fresh.iter().any(|e| e.mapped != first.mapped);
    let two_ports = fresh.iter().find_map(|x| {
        fresh
            .iter()
            .find(|y| {
                y.observer_addr.ip() == x.observer_addr.ip()
                    && y.observer_addr.port() != x.observer_addr.port()
            })
            .map(|y| (*x, y.mapped))
    });
    let (alternate, alternate_port) = match two_ports {
        Some((x, third)) => (x, Some(third)),
        None => (*first, None),
    };
    let Some(primary) = fresh
        .iter()
        .find(|e| e.observer_addr.ip() != alternate.observer_addr.ip())
    else {
        // Only one observer IP: a different mapping per port still proves dependence.
        return differ.then_some(MappingBehaviour::AddressAndPortDependent);
    };
    match classify(primary.mapped, alternate.mapped, alternate_port) {
        // Two agreeing observers, but another disagrees: not independent after all.
        MappingBehaviour::EndpointIndependent if differ => {
            Some(MappingBehaviour::EndpointDependent)
        }
        m => Some(m),
    }
}

/// Whether an observer at `ip` sits outside every NAT of this host's own network: not
/// private (RFC 1918, fc00::/7), loopback, link-local, unspecified or in the shared CGN
/// range 100.64.0.0/10. Documentation ranges count as global (the NAT lab uses them).
fn is_global(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

fn behind_nat(local: SocketAddr, reflexive: SocketAddr) -> Option<bool> {
    if local.ip().is_unspecified() {
        // Only a changed port proves a translation.
        return (reflexive.port() != local.port()).then_some(true);
    }
    Some(reflexive != local)
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn peer() -> Observer {
        Observer::Peer(p2p_foundation_identity::Keypair::generate().peer_id())
    }

    #[test]
    fn one_observer_tells_the_address_but_not_the_behaviour() {
        let t = Instant::now();
        let mut o = Observations::new(8, Duration::from_secs(60));
        let local = a("192.168.1.2:4000");
        assert!(o.record(
            peer(),
            a("203.0.113.9:9000"),
            a("198.51.100.1:4000"),
            local,
            t
        ));
        let s = o.status(local, t);
        assert_eq!(s.reflexive, Some(a("198.51.100.1:4000")));
        assert_eq!(s.mapping, None);
        assert_eq!(s.behind_nat, Some(true));
    }

    #[test]
    fn two_observer_ips_agreeing_is_endpoint_independent() {
        let t = Instant::now();
        let mut o = Observations::new(8, Duration::from_secs(60));
        let local = a("192.168.1.2:4000");
        let mapped = a("198.51.100.1:4000");
        o.record(peer(), a("203.0.113.9:9000"), mapped, local, t);
        assert!(o.record(peer(), a("203.0.113.10:9000"), mapped, local, t));
        let s = o.status(local, t);
        assert_eq!(s.mapping, Some(MappingBehaviour::EndpointIndependent));
        assert_eq!(s.reflexive_all, vec![mapped]);
        assert_eq!(s.observations.len(), 2);
    }

    #[test]
    fn differing_mappings_are_endpoint_dependent_with_the_evidence() {
        let t = Instant::now();
        let mut o = Observations::new(8, Duration::from_secs(60));
        let local = a("192.168.1.2:4000");
        o.record(
            peer(),
            a("203.0.113.9:9000"),
            a("198.51.100.1:30001"),
            local,
            t,
        );
        o.record(
            peer(),
            a("203.0.113.10:9000"),
            a("198.51.100.1:30002"),
            local,
            t,
        );
        let s = o.status(local, t);
        assert_eq!(s.mapping, Some(MappingBehaviour::EndpointDependent));
        assert_eq!(s.reflexive_all.len(), 2);
        o.record(
            peer(),
            a("203.0.113.10:9001"),
            a("198.51.100.1:30003"),
            local,
            t,
        );
        assert_eq!(
            o.status(local, t).mapping,
            Some(MappingBehaviour::AddressAndPortDependent)
        );
    }

    #[test]
    fn a_lan_observer_does_not_hide_the_nat_that_public_observers_see() {
        let t = Instant::now();
        let mut o = Observations::new(8, Duration::from_secs(60));
        let local = a("192.168.77.2:4000");
        o.record(
            peer(),
            a("203.0.113.9:4000"),
            a("203.0.113.1:40768"),
            local,
            t,
        );
        o.record(
            peer(),
            a("203.0.113.10:4000"),
            a("203.0.113.1:23309"),
            local,
            t,
        );
        // A peer on the same LAN, heard last, sees the local address.
        o.record(peer(), a("192.168.77.3:5000"), local, local, t);
        let s = o.status(local, t);
        assert_eq!(s.behind_nat, Some(true), "{s:#?}");
        assert_eq!(s.reflexive, Some(a("203.0.113.1:23309")));
        assert_eq!(s.mapping, Some(MappingBehaviour::EndpointDependent));
        assert!(!s.reflexive_all.contains(&local));
        assert_eq!(
            s.observations.len(),
            3,
            "every observation is still evidence"
        );
        // With only local-scope observers (a LAN, loopback), they decide.
        let mut lan = Observations::new(8, Duration::from_secs(60));
        lan.record(peer(), a("192.168.77.3:5000"), local, local, t);
        assert_eq!(lan.status(local, t).behind_nat, Some(false));
        for (ip, global) in [
            ("100.64.0.1", false),
            ("100.127.255.1", false),
            ("100.128.0.1", true),
            ("10.1.2.3", false),
            ("169.254.1.1", false),
            ("127.0.0.1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:10.0.0.1", false),
            ("2001:db8::1", true),
            ("198.51.100.7", true),
        ] {
            assert_eq!(is_global(ip.parse().unwrap()), global, "{ip}");
        }
    }

    #[test]
    fn public_socket_is_not_behind_nat_and_old_observations_expire() {
        let t = Instant::now();
        let mut o = Observations::new(8, Duration::from_secs(10));
        let local = a("203.0.113.5:4000");
        o.record(peer(), a("203.0.113.9:9000"), local, local, t);
        assert_eq!(o.status(local, t).behind_nat, Some(false));
        let later = t + Duration::from_secs(11);
        assert_eq!(o.status(local, later).reflexive, None);
        assert!(o.fresh_observers(later).is_empty());
    }

    #[test]
    fn unspecified_local_address_only_a_changed_port_proves_nat() {
        let t = Instant::now();
        let mut o = Observations::new(8, Duration::from_secs(60));
        let local = a("[::]:4000");
        o.record(
            peer(),
            a("203.0.113.9:9000"),
            a("198.51.100.1:4000"),
            local,
            t,
        );
        assert_eq!(o.status(local, t).behind_nat, None);
        o.record(
            peer(),
            a("203.0.113.9:9000"),
            a("198.51.100.1:5000"),
            local,
            t,
        );
        assert_eq!(o.status(local, t).behind_nat, Some(true));
    }

    #[test]
    fn bounded_and_one_entry_per_observer_address() {
        let t = Instant::now();
        let mut o = Observations::new(3, Duration::from_secs(60));
        let local = a("192.168.1.2:4000");
        for i in 0..10u16 {
            o.record(
                peer(),
                a("203.0.113.9:9000"),
                a("198.51.100.1:4000"),
                local,
                t,
            );
            o.record(
                peer(),
                SocketAddr::new(a("203.0.113.10:0").ip(), 9000 + i),
                a("198.51.100.1:4000"),
                local,
                t,
            );
        }
        assert_eq!(o.status(local, t).observations.len(), 3);
    }
}
