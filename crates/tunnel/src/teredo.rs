//! Teredo qualification (RFC 4380 section 5.2.1, with the RFC 5991 changes) as a sans-IO client.
//!
//! The client sends a Router Solicitation, wrapped in UDP with an authentication indicator
//! carrying a nonce, to the server's primary address on port 3544; the server answers with a
//! Router Advertisement preceded by the echoed nonce and an origin indication (the client's
//! mapped address and port as the server saw them). A second solicitation goes to the secondary
//! address (primary + 1); if it sees a different mapping the NAT is symmetric and qualification
//! fails, as Teredo cannot work through it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::{TeredoAddr, TunnelError};

/// The Teredo server UDP port.
pub const TEREDO_PORT: u16 = 3544;
/// Delay before a Router Solicitation is retransmitted (RFC 4380 section 5.2.1: 4 seconds).
pub const RS_RETRANSMIT: Duration = Duration::from_secs(4);
/// Solicitations sent to each server address before giving up (RFC 4380: 3).
pub const RS_ATTEMPTS: u32 = 3;
/// The link-local source of a non-cone Router Solicitation (RFC 4380 section 5.2.1).
pub const RS_SOURCE: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xffff, 0xffff, 0xffff);
/// All-routers multicast, the Router Solicitation destination.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// Bits of the Teredo flags that RFC 5991 section 4 fills at random (the "A" bits).
pub const RANDOM_FLAG_BITS: u16 = 0x3cff;

/// The origin indication a server prepends (RFC 4380 section 5.1.1): the client's mapped
/// address and port, de-obfuscated here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginIndication {
    /// Mapped UDP port.
    pub port: u16,
    /// Mapped IPv4 address.
    pub addr: Ipv4Addr,
}

/// A decoded Teredo UDP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeredoPacket<'a> {
    /// Nonce of the authentication indicator, if present.
    pub nonce: Option<[u8; 8]>,
    /// Origin indication, if present.
    pub origin: Option<OriginIndication>,
    /// The IPv6 packet that follows.
    pub ipv6: &'a [u8],
}

impl<'a> TeredoPacket<'a> {
    /// Decodes `auth? origin? ipv6` (RFC 4380 section 5.1.1).
    pub fn decode(buf: &'a [u8]) -> Result<Self, TunnelError> {
        let mut rest = buf;
        let mut nonce = None;
        let mut origin = None;
        if rest.len() >= 2 && rest[0] == 0 && rest[1] == 1 {
            if rest.len() < 4 {
                return Err(TunnelError::Truncated {
                    need: 4,
                    got: rest.len(),
                });
            }
            let need = 4 + usize::from(rest[2]) + usize::from(rest[3]) + 9;
            if rest.len() < need {
                return Err(TunnelError::Truncated {
                    need,
                    got: rest.len(),
                });
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&rest[need - 9..need - 1]);
            nonce = Some(n);
            rest = &rest[need..];
        }
        if rest.len() >= 2 && rest[0] == 0 && rest[1] == 0 {
            if rest.len() < 8 {
                return Err(TunnelError::Truncated {
                    need: 8,
                    got: rest.len(),
                });
            }
            origin = Some(OriginIndication {
                port: u16::from_be_bytes([rest[2], rest[3]]) ^ 0xffff,
                addr: Ipv4Addr::new(!rest[4], !rest[5], !rest[6], !rest[7]),
            });
            rest = &rest[8..];
        }
        if rest.len() < 40 || rest[0] >> 4 != 6 {
            return Err(TunnelError::Malformed {
                field: "Teredo payload",
                detail: format!("expected an IPv6 packet, got {} bytes", rest.len()),
            });
        }
        Ok(Self {
            nonce,
            origin,
            ipv6: rest,
        })
    }
}

fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for pair in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(body.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(body);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Encodes an authenticated (empty id and value) Router Solicitation payload.
pub fn encode_rs(nonce: [u8; 8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 1, 0, 0]);
    out.extend_from_slice(&nonce);
    out.push(0);
    let mut rs = [0u8; 8];
    rs[0] = 133;
    let c = icmpv6_checksum(RS_SOURCE, ALL_ROUTERS, &rs);
    rs[2..4].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 58, 255]);
    out.extend_from_slice(&RS_SOURCE.octets());
    out.extend_from_slice(&ALL_ROUTERS.octets());
    out.extend_from_slice(&rs);
}

/// The /64 Teredo prefix of a Router Advertisement's prefix information option, checking the
/// ICMPv6 checksum. `None` when the packet is not a valid RA with such an option.
pub fn ra_prefix(ipv6: &[u8]) -> Option<Ipv6Addr> {
    if ipv6.len() < 40 || ipv6[6] != 58 {
        return None;
    }
    let plen = usize::from(u16::from_be_bytes([ipv6[4], ipv6[5]]));
    let body = ipv6.get(40..40 + plen)?;
    if body.len() < 16 || body[0] != 134 {
        return None;
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&ipv6[8..24]);
    let src = Ipv6Addr::from(a);
    a.copy_from_slice(&ipv6[24..40]);
    let dst = Ipv6Addr::from(a);
    if icmpv6_checksum(src, dst, body) != 0 {
        return None;
    }
    let mut opts = &body[16..];
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == 3 && len == 32 && opts[2] == 64 {
            a.copy_from_slice(&opts[16..32]);
            let p = Ipv6Addr::from(a);
            if TeredoAddr::from_ipv6(p).is_ok() {
                return Some(p);
            }
        }
        opts = &opts[len..];
    }
    None
}

/// What the qualifier wants its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QualifyOutput {
    /// Send this UDP payload to this server address.
    Send {
        /// Destination (server address, port 3544).
        to: SocketAddrV4,
        /// UDP payload.
        payload: Vec<u8>,
    },
    /// Call [`TeredoQualifier::handle_timeout`] at this instant.
    Timeout(Instant),
    /// Qualified: the client's Teredo address.
    Qualified(TeredoAddr),
    /// Qualification failed, with the reason.
    Failed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Primary,
    Secondary(OriginIndication),
    Done,
}

/// Sans-IO Teredo qualification. Drive it with [`start`](Self::start),
/// [`handle_datagram`](Self::handle_datagram), [`handle_timeout`](Self::handle_timeout) and
/// [`poll_output`](Self::poll_output).
#[derive(Debug)]
pub struct TeredoQualifier {
    server: Ipv4Addr,
    rng: u64,
    flags: u16,
    phase: Phase,
    nonce: [u8; 8],
    attempts: u32,
    prefix: Option<Ipv6Addr>,
    out: std::collections::VecDeque<QualifyOutput>,
}

pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl TeredoQualifier {
    /// A qualifier for `server` (its primary address; the secondary is the next address).
    /// `seed` seeds the nonces and the random flag bits and must come from a good RNG.
    pub fn new(server: Ipv4Addr, seed: u64) -> Self {
        let mut rng = seed;
        let flags = (splitmix(&mut rng) as u16) & RANDOM_FLAG_BITS;
        Self {
            server,
            rng,
            flags,
            phase: Phase::Idle,
            nonce: [0; 8],
            attempts: 0,
            prefix: None,
            out: Default::default(),
        }
    }

    fn target(&self) -> Ipv4Addr {
        match self.phase {
            Phase::Secondary(_) => Ipv4Addr::from(u32::from(self.server).wrapping_add(1)),
            _ => self.server,
        }
    }

    fn solicit(&mut self, now: Instant) {
        self.attempts += 1;
        self.nonce = splitmix(&mut self.rng).to_be_bytes();
        let mut payload = Vec::with_capacity(61);
        encode_rs(self.nonce, &mut payload);
        self.out.push_back(QualifyOutput::Send {
            to: SocketAddrV4::new(self.target(), TEREDO_PORT),
            payload,
        });
        self.out
            .push_back(QualifyOutput::Timeout(now + RS_RETRANSMIT));
    }

    /// Sends the first Router Solicitation.
    pub fn start(&mut self, now: Instant) {
        if self.phase == Phase::Idle {
            self.phase = Phase::Primary;
            self.solicit(now);
        }
    }

    /// A retransmission timer fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Primary | Phase::Secondary(_)) {
            return;
        }
        if self.attempts >= RS_ATTEMPTS {
            self.phase = Phase::Done;
            self.out
                .push_back(QualifyOutput::Failed(if self.prefix.is_some() {
                    "the secondary server address never answered"
                } else {
                    "the Teredo server never answered (UDP 3544 blocked or server down)"
                }));
            return;
        }
        self.solicit(now);
    }

    /// A UDP datagram arrived from `from`. Anything that is not the awaited advertisement is
    /// ignored.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, data: &[u8]) {
        if !matches!(self.phase, Phase::Primary | Phase::Secondary(_))
            || from != SocketAddrV4::new(self.target(), TEREDO_PORT)
        {
            return;
        }
        let Ok(pkt) = TeredoPacket::decode(data) else {
            return;
        };
        let (Some(nonce), Some(origin)) = (pkt.nonce, pkt.origin) else {
            return;
        };
        if nonce != self.nonce {
            return;
        }
        let Some(prefix) = ra_prefix(pkt.ipv6) else {
            return;
        };
        match self.phase {
            Phase::Primary => {
                self.prefix = Some(prefix);
                self.phase = Phase::Secondary(origin);
                self.attempts = 0;
                self.solicit(now);
            }
            Phase::Secondary(first) => {
                self.phase = Phase::Done;
                if first != origin {
                    self.out.push_back(QualifyOutput::Failed(
                        "the two server addresses saw different mappings: symmetric NAT, Teredo cannot work",
                    ));
                    return;
                }
                let o = prefix.octets();
                self.out.push_back(QualifyOutput::Qualified(TeredoAddr {
                    server: Ipv4Addr::new(o[4], o[5], o[6], o[7]),
                    flags: self.flags,
                    mapped_port: origin.port,
                    mapped_addr: origin.addr,
                }));
            }
            Phase::Idle | Phase::Done => {}
        }
    }

    /// The next action, if any.
    pub fn poll_output(&mut self) -> Option<QualifyOutput> {
        self.out.pop_front()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

    /// A server answer: auth(nonce) + origin + RA with a PIO for 2001:0:SERVER::/64.
    pub(crate) fn answer(nonce: [u8; 8], port: u16, addr: Ipv4Addr, corrupt: bool) -> Vec<u8> {
        let mut v = vec![0, 1, 0, 0];
        v.extend_from_slice(&nonce);
        v.push(0);
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&(port ^ 0xffff).to_be_bytes());
        v.extend(addr.octets().iter().map(|b| !b));
        let mut ra = vec![134, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut pio = vec![3, 4, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let s = SERVER.octets();
        pio.extend_from_slice(&[
            0x20, 0x01, 0, 0, s[0], s[1], s[2], s[3], 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        ra.extend_from_slice(&pio);
        let src: Ipv6Addr = "fe80::8000:f227:bec4:f7fa".parse().unwrap();
        let c = icmpv6_checksum(src, RS_SOURCE, &ra);
        ra[2..4].copy_from_slice(&c.to_be_bytes());
        if corrupt {
            ra[20] ^= 1;
        }
        v.extend_from_slice(&[0x60, 0, 0, 0]);
        v.extend_from_slice(&(ra.len() as u16).to_be_bytes());
        v.extend_from_slice(&[58, 255]);
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&RS_SOURCE.octets());
        v.extend_from_slice(&ra);
        v
    }

    fn send(q: &mut TeredoQualifier) -> (SocketAddrV4, [u8; 8]) {
        match q.poll_output() {
            Some(QualifyOutput::Send { to, payload }) => {
                let p = TeredoPacket::decode(&payload).unwrap();
                assert_eq!(p.origin, None);
                assert_eq!(p.ipv6.len(), 48);
                assert_eq!(p.ipv6[40], 133);
                assert_eq!(icmpv6_checksum(RS_SOURCE, ALL_ROUTERS, &p.ipv6[40..]), 0);
                (to, p.nonce.unwrap())
            }
            other => panic!("expected a send, got {other:?}"),
        }
    }

    #[test]
    fn qualifies_and_detects_symmetric_nat() {
        let now = Instant::now();
        let mapped = Ipv4Addr::new(203, 0, 113, 1);
        for symmetric in [false, true] {
            let mut q = TeredoQualifier::new(SERVER, 7);
            q.start(now);
            let (to, nonce) = send(&mut q);
            assert_eq!(to, SocketAddrV4::new(SERVER, TEREDO_PORT));
            assert!(matches!(q.poll_output(), Some(QualifyOutput::Timeout(_))));
            // Wrong nonce, wrong sender, bad checksum: ignored.
            q.handle_datagram(now, to, &answer([9; 8], 51775, mapped, false));
            q.handle_datagram(
                now,
                SocketAddrV4::new(mapped, 3544),
                &answer(nonce, 51775, mapped, false),
            );
            q.handle_datagram(now, to, &answer(nonce, 51775, mapped, true));
            assert_eq!(q.poll_output(), None);
            q.handle_datagram(now, to, &answer(nonce, 51775, mapped, false));
            let (to2, nonce2) = send(&mut q);
            assert_eq!(
                to2,
                SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 6), TEREDO_PORT)
            );
            assert_ne!(nonce2, nonce);
            assert!(matches!(q.poll_output(), Some(QualifyOutput::Timeout(_))));
            let port2 = if symmetric { 40000 } else { 51775 };
            q.handle_datagram(now, to2, &answer(nonce2, port2, mapped, false));
            match q.poll_output() {
                Some(QualifyOutput::Qualified(t)) => {
                    assert!(!symmetric);
                    assert_eq!(
                        (t.server, t.mapped_addr, t.mapped_port),
                        (SERVER, mapped, 51775)
                    );
                    assert_eq!(t.flags & !RANDOM_FLAG_BITS, 0);
                }
                Some(QualifyOutput::Failed(why)) => {
                    assert!(symmetric);
                    assert!(why.contains("symmetric"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn gives_up_after_three_attempts() {
        let now = Instant::now();
        let mut q = TeredoQualifier::new(SERVER, 1);
        q.start(now);
        let mut sends = 0;
        for i in 0..10u32 {
            while let Some(o) = q.poll_output() {
                match o {
                    QualifyOutput::Send { .. } => sends += 1,
                    QualifyOutput::Timeout(_) => {}
                    QualifyOutput::Failed(why) => {
                        assert_eq!(sends, RS_ATTEMPTS);
                        assert!(why.contains("never answered"));
                        return;
                    }
                    QualifyOutput::Qualified(_) => panic!("no server"),
                }
            }
            q.handle_timeout(now + RS_RETRANSMIT * (i + 1));
        }
        panic!("never gave up");
    }

    proptest! {
        #[test]
        fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(p) = TeredoPacket::decode(&buf) {
                let _ = ra_prefix(p.ipv6);
            }
            let _ = ra_prefix(&buf);
        }
    }
}
