//! The NAT signalling protocol (`/p2pf/nat/1`): candidates exchanged through a rendezvous
//! peer both sides are connected to, before a coordinated punch. One request and one
//! answer per bidirectional stream, each a JSON object of at most [`MAX_SIGNAL_LEN`] bytes
//! (layout: `docs/protocols/facade.md`).

use std::net::SocketAddr;

use p2p_foundation_identity::PeerId;
use p2p_foundation_nat::punch::MAX_CANDIDATES;
use serde::{Deserialize, Serialize};

/// Protocol id of NAT signalling streams.
pub const NAT_PROTOCOL: &str = "/p2pf/nat/1";
/// Largest signalling message read (anything longer is refused before it is parsed).
pub(crate) const MAX_SIGNAL_LEN: usize = 2048;

/// One signalling message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Signal {
    /// Initiator → rendezvous: introduce me to `target`, with whom I will punch in session
    /// `nonce` from these candidate addresses.
    Introduce {
        target: PeerId,
        nonce: Nonce,
        candidates: Vec<SocketAddr>,
        /// The initiator's NAT mapping, if it knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mapping: Option<Mapping>,
    },
    /// Rendezvous → target: `from` (proven by its connection to the rendezvous) asks to punch.
    /// The rendezvous puts the address it sees `from` at first in `candidates`.
    Introduced {
        from: PeerId,
        nonce: Nonce,
        candidates: Vec<SocketAddr>,
        /// The initiator's NAT mapping, as it said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mapping: Option<Mapping>,
    },
    /// The answer to either: the target's candidates (the rendezvous puts the address it
    /// sees the target at first). The target starts punching when it sends this.
    Candidates {
        candidates: Vec<SocketAddr>,
        /// The target's NAT mapping, if it knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mapping: Option<Mapping>,
    },
    /// Refused, with a reason a person can act on.
    Refused { reason: String },
}

/// How a side's NAT maps, as it observed itself ([`crate::NatStatus::mapping`]): the two
/// sides pick the birthday technique when exactly one of them maps endpoint-dependently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mapping {
    /// One public port for every destination.
    Independent,
    /// A public port per destination ("symmetric").
    Dependent,
}

impl Mapping {
    pub(crate) fn of(behaviour: p2p_foundation_nat::MappingBehaviour) -> Self {
        match behaviour {
            p2p_foundation_nat::MappingBehaviour::EndpointIndependent => Self::Independent,
            _ => Self::Dependent,
        }
    }
}

/// A punch session nonce (16 bytes, hex on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Nonce(pub(crate) [u8; 16]);

impl Serialize for Nonce {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(d)?;
        let bad = || serde::de::Error::custom("nonce: expected 32 hex digits");
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Nonce(out))
    }
}

impl Signal {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising these types cannot fail (no maps with non-string keys, no I/O).
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses one message; candidates past [`MAX_CANDIDATES`] are an error.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_SIGNAL_LEN {
            return Err(format!(
                "signal of {} bytes exceeds {MAX_SIGNAL_LEN}",
                bytes.len()
            ));
        }
        let signal: Signal =
            serde_json::from_slice(bytes).map_err(|e| format!("malformed signal: {e}"))?;
        let candidates = match &signal {
            Signal::Introduce { candidates, .. }
            | Signal::Introduced { candidates, .. }
            | Signal::Candidates { candidates, .. } => candidates.len(),
            Signal::Refused { .. } => 0,
        };
        if candidates > MAX_CANDIDATES {
            return Err(format!(
                "{candidates} candidates exceed the limit of {MAX_CANDIDATES}"
            ));
        }
        Ok(signal)
    }
}

/// Puts `first` in front of `candidates` (once), keeping at most [`MAX_CANDIDATES`]
/// usable ones (no port 0, unspecified, multicast or duplicate addresses).
pub(crate) fn with_first(first: Option<SocketAddr>, candidates: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(MAX_CANDIDATES);
    for addr in first.into_iter().chain(candidates.iter().copied()) {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        let usable = addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast();
        if usable && !out.contains(&addr) && out.len() < MAX_CANDIDATES {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_identity::Keypair;

    #[test]
    fn round_trip() {
        let msgs = [
            Signal::Introduce {
                target: Keypair::generate().peer_id(),
                nonce: Nonce([7; 16]),
                candidates: vec!["203.0.113.1:4000".parse().expect("addr")],
                mapping: Some(Mapping::Dependent),
            },
            Signal::Introduced {
                from: Keypair::generate().peer_id(),
                nonce: Nonce([0xab; 16]),
                candidates: vec!["[2001:db8::1]:4000".parse().expect("addr")],
                mapping: None,
            },
            Signal::Candidates {
                candidates: vec![],
                mapping: Some(Mapping::Independent),
            },
            Signal::Refused {
                reason: "not connected".into(),
            },
        ];
        for m in msgs {
            assert_eq!(Signal::decode(&m.encode()), Ok(m));
        }
        // The mapping is optional on the wire, and its values are spelled out.
        let bare = br#"{"type":"candidates","candidates":[]}"#;
        assert_eq!(
            Signal::decode(bare),
            Ok(Signal::Candidates {
                candidates: vec![],
                mapping: None
            })
        );
        let dependent = Signal::Candidates {
            candidates: vec![],
            mapping: Some(Mapping::Dependent),
        };
        assert!(String::from_utf8_lossy(&dependent.encode()).contains(r#""mapping":"dependent""#));
    }

    #[test]
    fn refuses_oversized_malformed_and_too_many_candidates() {
        assert!(Signal::decode(&vec![b' '; MAX_SIGNAL_LEN + 1]).is_err());
        assert!(Signal::decode(b"{\"type\":\"introduce\"}").is_err());
        assert!(Signal::decode(b"{\"type\":\"candidates\",\"candidates\":[],\"x\":1}").is_err());
        let bad_nonce = format!(
            "{{\"type\":\"introduced\",\"from\":\"{}\",\"nonce\":\"zz\",\"candidates\":[]}}",
            Keypair::generate().peer_id()
        );
        assert!(Signal::decode(bad_nonce.as_bytes()).is_err());
        let many: Vec<SocketAddr> = (1..=9u16)
            .map(|p| SocketAddr::from(([203, 0, 113, 1], p)))
            .collect();
        let m = Signal::Candidates {
            candidates: many,
            mapping: None,
        };
        assert!(Signal::decode(&m.encode()).unwrap_err().contains("exceed"));
    }

    #[test]
    fn with_first_orders_dedups_and_bounds() {
        let first: SocketAddr = "[::ffff:203.0.113.1]:4000".parse().expect("addr");
        let rest: Vec<SocketAddr> = std::iter::once("203.0.113.1:4000".parse().expect("addr"))
            .chain(std::iter::once("0.0.0.0:1".parse().expect("addr")))
            .chain((1..=20u16).map(|p| SocketAddr::from(([192, 168, 1, 2], p))))
            .collect();
        let out = with_first(Some(first), &rest);
        assert_eq!(
            out[0],
            "203.0.113.1:4000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(out.len(), MAX_CANDIDATES);
        assert!(out.iter().all(|a| !a.ip().is_unspecified()));
    }
}
