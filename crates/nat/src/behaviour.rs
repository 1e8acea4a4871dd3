//! NAT mapping behaviour discovery (RFC 5780 §4.3 terms, RFC 4787 behaviours).
//!
//! From one local socket, ask several STUN servers for our mapped address and compare: the
//! same mapping towards every destination is endpoint-independent (hole punching works);
//! a mapping that changes with the destination is "symmetric" (a relay is needed).

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::NatError;
use crate::binding::RetransmitConfig;
use crate::udp::stun_binding;

/// How a NAT chooses the external address for a socket (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MappingBehaviour {
    /// One mapping for every destination: hole punching works.
    EndpointIndependent,
    /// A new mapping per destination IP address.
    AddressDependent,
    /// A new mapping per destination IP address and port ("symmetric").
    AddressAndPortDependent,
    /// The mapping changes with the destination IP; no third server was given to tell
    /// address-dependent from address-and-port-dependent.
    EndpointDependent,
}

impl MappingBehaviour {
    /// Whether UDP hole punching can be expected to work from behind this mapping.
    pub fn punchable(self) -> bool {
        self == MappingBehaviour::EndpointIndependent
    }
}

/// The servers to ask (RFC 5780 §4.3 tests I, II and III).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BehaviourServers {
    /// First server.
    pub primary: SocketAddr,
    /// A server on a different IP address from `primary`.
    pub alternate: SocketAddr,
    /// Optional: a server on `alternate`'s IP address but another port.
    pub alternate_port: Option<SocketAddr>,
}

/// What [`discover_behaviour`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatBehaviour {
    /// The socket's local address.
    pub local: SocketAddr,
    /// Mapped address seen by `primary`.
    pub mapped_primary: SocketAddr,
    /// Mapped address seen by `alternate`.
    pub mapped_alternate: SocketAddr,
    /// Mapped address seen by `alternate_port`, if asked.
    pub mapped_alternate_port: Option<SocketAddr>,
    /// `Some(false)` when the mapped address equals the local one (no NAT), `Some(true)`
    /// when it differs, `None` when the socket is bound to an unspecified address.
    pub behind_nat: Option<bool>,
    /// The classified mapping behaviour.
    pub mapping: MappingBehaviour,
}

/// Classifies from the three observations (pure; RFC 5780 §4.3).
pub fn classify(
    primary: SocketAddr,
    alternate: SocketAddr,
    alternate_port: Option<SocketAddr>,
) -> MappingBehaviour {
    if primary == alternate {
        return MappingBehaviour::EndpointIndependent;
    }
    match alternate_port {
        Some(third) if third == alternate => MappingBehaviour::AddressDependent,
        Some(_) => MappingBehaviour::AddressAndPortDependent,
        None => MappingBehaviour::EndpointDependent,
    }
}

/// Runs the RFC 5780 mapping tests from `socket` (the socket whose mapping matters: use the
/// one you will punch or listen with) and reports the behaviour.
pub async fn discover_behaviour(
    socket: &UdpSocket,
    servers: BehaviourServers,
    config: RetransmitConfig,
) -> Result<NatBehaviour, NatError> {
    let local = crate::canonical_addr(socket.local_addr()?);
    let mapped_primary = stun_binding(socket, servers.primary, config).await?.mapped;
    let mapped_alternate = stun_binding(socket, servers.alternate, config)
        .await?
        .mapped;
    let mapped_alternate_port = match servers.alternate_port {
        Some(s) => Some(stun_binding(socket, s, config).await?.mapped),
        None => None,
    };
    let behind_nat = (!local.ip().is_unspecified()).then(|| mapped_primary != local);
    let mapping = classify(mapped_primary, mapped_alternate, mapped_alternate_port);
    tracing::debug!(%local, %mapped_primary, %mapped_alternate, ?mapping, "NAT behaviour");
    Ok(NatBehaviour {
        local,
        mapped_primary,
        mapped_alternate,
        mapped_alternate_port,
        behind_nat,
        mapping,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_rfc5780() {
        let a: SocketAddr = "203.0.113.1:5000".parse().expect("addr");
        let b: SocketAddr = "203.0.113.1:5001".parse().expect("addr");
        let c: SocketAddr = "203.0.113.1:5002".parse().expect("addr");
        assert_eq!(classify(a, a, None), MappingBehaviour::EndpointIndependent);
        assert_eq!(
            classify(a, a, Some(b)),
            MappingBehaviour::EndpointIndependent
        );
        assert_eq!(classify(a, b, Some(b)), MappingBehaviour::AddressDependent);
        assert_eq!(
            classify(a, b, Some(c)),
            MappingBehaviour::AddressAndPortDependent
        );
        assert_eq!(classify(a, b, None), MappingBehaviour::EndpointDependent);
        assert!(MappingBehaviour::EndpointIndependent.punchable());
        assert!(!MappingBehaviour::AddressAndPortDependent.punchable());
    }
}
