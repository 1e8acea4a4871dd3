//! Signed peer records: where a node can be reached, published in the DHT under a key
//! derived from its [`PeerId`], so that a dialer that knows only the PeerId finds the
//! node's direct addresses, its reflexive (NAT-mapped) address and the relays holding a
//! reservation for it.
//!
//! A peer record is the value of an ordinary DHT [`Record`] stored under
//! [`peer_record_key`]`(peer)` and signed by `peer` itself (the DHT envelope carries the
//! signature, the sequence number and the expiry, at most [`PEER_RECORD_TTL`] ahead). The
//! node's DHT validator ([`PeerRecordValidator`]) checks the value of every record under such
//! a key and lets the owner replace a record a stranger stored there first. The layout is
//! in `docs/protocols/facade.md`.
//!
//! - this module: the record, its codec and the validator;
//! - `publish`: the task that keeps the node's own record current, and the lookup.
//!
//! ```
//! use p2p_foundation::peer_record::{PeerRecord, Reach};
//! use p2p_foundation_identity::Keypair;
//!
//! let relay = Keypair::generate().peer_id();
//! let record = PeerRecord::new(vec![
//!     Reach::Direct("192.0.2.7:4001".parse().unwrap()),
//!     Reach::Relay { relay, addr: "198.51.100.1:4001".parse().unwrap() },
//! ]);
//! let bytes = record.encode();
//! assert_eq!(PeerRecord::decode(&bytes).unwrap(), record);
//! ```

pub(crate) mod publish;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use p2p_foundation_dht::{Record, Validator};
use p2p_foundation_identity::{Key, PeerId};

/// Version byte of the peer-record layout.
pub const PEER_RECORD_VERSION: u8 = 1;
/// Most addresses in one peer record.
pub const MAX_PEER_RECORD_ADDRS: usize = 16;
/// How long a published peer record stays valid; it is republished at half of it.
pub const PEER_RECORD_TTL: Duration = Duration::from_secs(3600);
/// The largest encoded peer record: 16 relay entries over IPv6.
pub const MAX_PEER_RECORD_BYTES: usize = 2 + MAX_PEER_RECORD_ADDRS * (1 + 1 + 16 + 2 + 32);

const KIND_DIRECT: u8 = 0;
const KIND_REFLEXIVE: u8 = 1;
const KIND_RELAY: u8 = 2;

/// The DHT key of `peer`'s peer record: `SHA-256("p2pf/peer-record/" ‖ peer id)`.
///
/// ```
/// use p2p_foundation::peer_record::peer_record_key;
/// use p2p_foundation_identity::Keypair;
///
/// let (a, b) = (Keypair::generate().peer_id(), Keypair::generate().peer_id());
/// assert_ne!(peer_record_key(&a), peer_record_key(&b));
/// ```
pub fn peer_record_key(peer: &PeerId) -> Key {
    let mut name = b"p2pf/peer-record/".to_vec();
    name.extend_from_slice(peer.as_bytes());
    Key::for_record(&name)
}

/// One way to reach a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reach {
    /// An address the node listens on (or was told to advertise).
    Direct(SocketAddr),
    /// The node's QUIC socket as its NAT maps it, learnt from observers: reachable
    /// directly when the mapping is endpoint-independent and the NAT does not filter,
    /// otherwise a punch target (the relay or a rendezvous coordinates the punch).
    Reflexive(SocketAddr),
    /// A relay holding a reservation for the node, and the address the node reaches it
    /// on. A dialer connects to the relay first; the relay then introduces the punch or
    /// splices the connection.
    Relay {
        /// The relay's peer id (the dialer's handshake with it is pinned to it).
        relay: PeerId,
        /// The relay's address.
        addr: SocketAddr,
    },
}

impl Reach {
    /// The address this entry names (the relay's, for a relay).
    pub fn addr(&self) -> SocketAddr {
        match *self {
            Self::Direct(a) | Self::Reflexive(a) | Self::Relay { addr: a, .. } => a,
        }
    }
}

/// Where a peer can be reached: at most [`MAX_PEER_RECORD_ADDRS`] entries, in the order
/// the peer prefers them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerRecord {
    addrs: Vec<Reach>,
}

/// Why bytes are not a peer record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid peer record: {0}")]
pub struct PeerRecordError(&'static str);

impl PeerRecord {
    /// A record of `addrs`: duplicates dropped, unspecified addresses and port 0 dropped,
    /// at most [`MAX_PEER_RECORD_ADDRS`] kept (the first ones).
    pub fn new(addrs: impl IntoIterator<Item = Reach>) -> Self {
        let mut kept: Vec<Reach> = Vec::new();
        for reach in addrs {
            let reach = normalise(reach);
            let a = reach.addr();
            if a.ip().is_unspecified() || a.port() == 0 || kept.contains(&reach) {
                continue;
            }
            if kept.len() == MAX_PEER_RECORD_ADDRS {
                break;
            }
            kept.push(reach);
        }
        Self { addrs: kept }
    }

    /// The entries, in the peer's order.
    pub fn addrs(&self) -> &[Reach] {
        &self.addrs
    }

    /// Whether the record names no way to reach the peer.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The addresses to dial the peer itself at: direct ones first, then reflexive ones.
    pub fn dial_addrs(&self) -> Vec<SocketAddr> {
        let direct = self.addrs.iter().filter_map(|r| match r {
            Reach::Direct(a) => Some(*a),
            _ => None,
        });
        let reflexive = self.addrs.iter().filter_map(|r| match r {
            Reach::Reflexive(a) => Some(*a),
            _ => None,
        });
        direct.chain(reflexive).collect()
    }

    /// The relays holding a reservation for the peer, with their addresses.
    pub fn relays(&self) -> Vec<(PeerId, SocketAddr)> {
        self.addrs
            .iter()
            .filter_map(|r| match *r {
                Reach::Relay { relay, addr } => Some((relay, addr)),
                _ => None,
            })
            .collect()
    }

    /// The wire form: version (1 byte), count (1 byte), then per entry its kind (0 direct,
    /// 1 reflexive, 2 relay), the address family (4 or 6), the IP (4 or 16 bytes), the
    /// port (u16 BE) and, for a relay, the relay's peer id (32 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.addrs.len() * 52);
        out.push(PEER_RECORD_VERSION);
        // At most MAX_PEER_RECORD_ADDRS (16) entries, by construction.
        out.push(self.addrs.len() as u8);
        for reach in &self.addrs {
            let kind = match reach {
                Reach::Direct(_) => KIND_DIRECT,
                Reach::Reflexive(_) => KIND_REFLEXIVE,
                Reach::Relay { .. } => KIND_RELAY,
            };
            out.push(kind);
            let addr = reach.addr();
            match addr.ip() {
                IpAddr::V4(ip) => {
                    out.push(4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&addr.port().to_be_bytes());
            if let Reach::Relay { relay, .. } = reach {
                out.extend_from_slice(relay.as_bytes());
            }
        }
        out
    }

    /// Parses the wire form. Every length is checked before it is used; unknown versions,
    /// kinds and families, unspecified addresses, port 0, duplicates, more than
    /// [`MAX_PEER_RECORD_ADDRS`] entries, truncation and trailing bytes are refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, PeerRecordError> {
        if bytes.len() > MAX_PEER_RECORD_BYTES {
            return Err(PeerRecordError("longer than the largest record"));
        }
        let mut r = Reader(bytes);
        if r.u8()? != PEER_RECORD_VERSION {
            return Err(PeerRecordError("unknown version"));
        }
        let count = usize::from(r.u8()?);
        if count > MAX_PEER_RECORD_ADDRS {
            return Err(PeerRecordError("too many addresses"));
        }
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = r.u8()?;
            let ip = match r.u8()? {
                4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                _ => return Err(PeerRecordError("unknown address family")),
            };
            let port = u16::from_be_bytes(r.array::<2>()?);
            let addr = SocketAddr::new(ip, port);
            if ip.is_unspecified() || port == 0 {
                return Err(PeerRecordError("unspecified address or port 0"));
            }
            let reach = match kind {
                KIND_DIRECT => Reach::Direct(addr),
                KIND_REFLEXIVE => Reach::Reflexive(addr),
                KIND_RELAY => Reach::Relay {
                    relay: PeerId::from_bytes(r.array::<32>()?)
                        .map_err(|_| PeerRecordError("relay peer id is not a valid key"))?,
                    addr,
                },
                _ => return Err(PeerRecordError("unknown entry kind")),
            };
            if normalise(reach) != reach || addrs.contains(&reach) {
                return Err(PeerRecordError("duplicate or v4-mapped address"));
            }
            addrs.push(reach);
        }
        if !r.0.is_empty() {
            return Err(PeerRecordError("trailing bytes"));
        }
        Ok(Self { addrs })
    }
}

/// v4-mapped IPv6 addresses as plain IPv4 (one spelling per address).
fn normalise(reach: Reach) -> Reach {
    let fix = |a: SocketAddr| crate::net::canonical(a);
    match reach {
        Reach::Direct(a) => Reach::Direct(fix(a)),
        Reach::Reflexive(a) => Reach::Reflexive(fix(a)),
        Reach::Relay { relay, addr } => Reach::Relay {
            relay,
            addr: fix(addr),
        },
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, PeerRecordError> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PeerRecordError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(PeerRecordError("truncated"))?;
        self.0 = rest;
        Ok(*head)
    }
}

/// The node's DHT validator: a record under [`peer_record_key`]`(signer)` must hold a
/// valid [`PeerRecord`], and its signer owns that key (it replaces a record a stranger
/// stored there first). Records under other keys are the application's and pass.
///
/// A stranger can still store a record under someone else's peer-record key while the
/// owner has none; lookups ignore every record under `peer_record_key(p)` not signed by
/// `p`, and the owner's first publication replaces it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerRecordValidator;

impl Validator for PeerRecordValidator {
    fn validate_record(&self, record: &Record, signer: &PeerId) -> bool {
        record.key != peer_record_key(signer) || PeerRecord::decode(&record.value).is_ok()
    }

    fn is_owner(&self, record: &Record, signer: &PeerId) -> bool {
        record.key == peer_record_key(signer)
    }
}

#[cfg(test)]
mod tests {
    use p2p_foundation_identity::Keypair;

    use super::*;

    fn sample() -> PeerRecord {
        PeerRecord::new([
            Reach::Direct("10.0.0.1:4001".parse().unwrap()),
            Reach::Reflexive("[2001:db8::1]:5000".parse().unwrap()),
            Reach::Relay {
                relay: Keypair::generate().peer_id(),
                addr: "198.51.100.1:443".parse().unwrap(),
            },
        ])
    }

    #[test]
    fn round_trips_and_orders_dial_addresses() {
        let record = sample();
        assert_eq!(PeerRecord::decode(&record.encode()).unwrap(), record);
        assert_eq!(
            record.dial_addrs(),
            vec![
                "10.0.0.1:4001".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:5000".parse().unwrap()
            ]
        );
        assert_eq!(record.relays().len(), 1);
    }

    #[test]
    fn documented_layout() {
        let record = PeerRecord::new([Reach::Direct("192.0.2.7:4001".parse().unwrap())]);
        assert_eq!(
            record.encode(),
            [1, 1, KIND_DIRECT, 4, 192, 0, 2, 7, 0x0f, 0xa1]
        );
    }

    #[test]
    fn new_bounds_and_cleans_its_input() {
        let many = (1..=40u16).map(|p| Reach::Direct(SocketAddr::from(([10, 0, 0, 1], p))));
        let mapped: SocketAddr = "[::ffff:10.0.0.9]:7".parse().unwrap();
        let record = PeerRecord::new(
            [
                Reach::Direct("0.0.0.0:1".parse().unwrap()),
                Reach::Direct("10.0.0.1:0".parse().unwrap()),
                Reach::Direct(mapped),
                Reach::Direct("10.0.0.9:7".parse().unwrap()),
            ]
            .into_iter()
            .chain(many),
        );
        assert_eq!(record.addrs().len(), MAX_PEER_RECORD_ADDRS);
        assert_eq!(
            record.addrs()[0],
            Reach::Direct("10.0.0.9:7".parse().unwrap())
        );
        assert!(PeerRecord::decode(&record.encode()).is_ok());
        let largest = PeerRecord::new((1..=16u16).map(|p| Reach::Relay {
            relay: Keypair::generate().peer_id(),
            addr: SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], p)),
        }));
        assert_eq!(largest.encode().len(), MAX_PEER_RECORD_BYTES);
    }

    #[test]
    fn bad_bytes_are_refused() {
        let good = sample().encode();
        for cut in 0..good.len() {
            assert!(PeerRecord::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        let mut version = good.clone();
        version[0] = 2;
        let mut count = good.clone();
        count[1] = 17;
        let mut kind = good.clone();
        kind[2] = 9;
        let mut family = good.clone();
        family[3] = 5;
        let dup = [1, 2, 0, 4, 10, 0, 0, 1, 0, 1, 0, 4, 10, 0, 0, 1, 0, 1];
        let zero_port = [1, 1, 0, 4, 10, 0, 0, 1, 0, 0];
        let unspecified = [1, 1, 0, 4, 0, 0, 0, 0, 0, 1];
        for bad in [
            &trailing[..],
            &version,
            &count,
            &kind,
            &family,
            &dup,
            &zero_port,
            &unspecified,
            &vec![0u8; MAX_PEER_RECORD_BYTES + 1],
        ] {
            assert!(PeerRecord::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_validator_checks_peer_record_keys_only() {
        let owner = Keypair::generate().peer_id();
        let stranger = Keypair::generate().peer_id();
        let v = PeerRecordValidator;
        let own = Record::new(peer_record_key(&owner), sample().encode());
        assert!(v.validate_record(&own, &owner));
        assert!(v.is_owner(&own, &owner));
        assert!(!v.is_owner(&own, &stranger));
        let junk = Record::new(peer_record_key(&owner), b"junk".to_vec());
        assert!(!v.validate_record(&junk, &owner));
        let app = Record::new(Key::for_record(b"app"), b"anything".to_vec());
        assert!(v.validate_record(&app, &owner));
        assert!(!v.is_owner(&app, &owner));
    }
}
