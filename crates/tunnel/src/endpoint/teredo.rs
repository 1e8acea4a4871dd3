//! The Teredo client data path (RFC 4380 sections 5.2.3 to 5.2.7), sans-IO: the host's IPv6
//! packets to other Teredo clients in UDP through a NAT, after qualification
//! ([`TeredoQualifier`](crate::TeredoQualifier)) gave this client its Teredo address.
//!
//! # Sending (host to network)
//!
//! A packet to a Teredo address (`2001:0::/32`) goes straight, in one UDP datagram with no
//! Teredo header, to the mapped address and port that the destination address embeds
//! (de-obfuscated), once that peer is *trusted*. Until then it is queued (at most
//! [`QUEUE_PER_PEER`] packets per peer and [`QUEUE_TOTAL`] in all; more are dropped and
//! counted in [`TeredoStats::queue_dropped`]) and two bubbles go out (RFC 4380 sections
//! 5.2.4 to 5.2.6, and RFC 6081 section 4's "send both" rule): a direct bubble to the peer's
//! mapped address and port (it opens this NAT towards the peer) and an indirect bubble to
//! the peer's Teredo server on UDP 3544, which relays it to the peer with an origin
//! indication, so the peer answers with a direct bubble that passes this NAT. Bubbles are
//! repeated every [`BUBBLE_INTERVAL`] up to [`BUBBLE_ATTEMPTS`] times; then the queue is
//! dropped (counted). A bubble is an IPv6 header alone, next header 59 ("no next header"),
//! payload length 0, from this client's Teredo address to the peer's.
//!
//! A native (non-Teredo) destination needs a Teredo relay, which this slice does not
//! implement: the host gets an ICMPv6 Destination Unreachable (code 3, address
//! unreachable, rate limited) and the packet counts as [`DropReason::NoRoute`].
//!
//! # Receiving (network to host)
//!
//! - From this client's server (its address, port 3544): a Router Advertisement answering
//!   the keepalive solicitation (nonce checked; its origin indication is compared with the
//!   qualified mapping, a change counted in [`TeredoStats::mapping_changed`]), or a relayed
//!   indirect bubble carrying an origin indication, answered with a direct bubble to that
//!   origin, but only if the bubble's source is a Teredo address embedding exactly that
//!   origin and its destination is this client. Anything else from the server is dropped.
//! - From anywhere else: the packet is delivered only if it carries no Teredo header, is
//!   one well-formed IPv6 packet within the MTU, its destination is this client's Teredo
//!   address and its source is a Teredo address whose embedded mapping equals the UDP
//!   source (trust is only given on that match, so a trusted peer passes the same test). Such a packet, or a direct bubble,
//!   makes the peer trusted and flushes its queue. Bubbles are never delivered.
//!
//! Everything else is dropped and counted by [`DropReason`]. The client only ever sends to
//! its server, to a mapped address a Teredo destination chosen by the host embeds, to the
//! server such an address embeds, or to the origin of a relayed bubble whose Teredo source
//! embeds that origin.
//!
//! # Keepalive and peers
//!
//! Every [`KEEPALIVE_INTERVAL`] the client sends a Router Solicitation to its server from
//! the same socket (RFC 4380 section 5.2.7), keeping the NAT mapping alive. The peer table
//! holds at most [`MAX_PEERS`] entries; a peer unheard of for [`TRUST_LIFETIME`] is no
//! longer trusted, and an entry idle for [`PEER_IDLE`] is removed.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::ipv4::is_unicast_v4;
use super::{DropReason, EndpointStats, IcmpLimiter, icmp_allowed};
use crate::overlay::ipv6::{self, Ipv6Packet};
use crate::teredo::splitmix;
use crate::{IPV6_HEADER_LEN, TEREDO_PORT, TeredoAddr, TeredoPacket, encode_rs, ra_prefix};

/// The Teredo MTU (RFC 4380 section 5.2: 1,280 bytes).
pub const TEREDO_MTU: u16 = 1280;
/// Packets queued for one untrusted peer.
pub const QUEUE_PER_PEER: usize = 8;
/// Packets queued for all untrusted peers together.
pub const QUEUE_TOTAL: usize = 64;
/// Peers in the table.
pub const MAX_PEERS: usize = 256;
/// Interval between bubbles to a peer that has not answered (RFC 4380 section 5.2.6: 2 s).
pub const BUBBLE_INTERVAL: Duration = Duration::from_secs(2);
/// Bubbles sent to a peer before its queue is given up (RFC 4380 section 5.2.6: 4).
pub const BUBBLE_ATTEMPTS: u32 = 4;
/// How long a peer stays trusted without a packet from it (RFC 4380 section 5.2.3: 30 s).
pub const TRUST_LIFETIME: Duration = Duration::from_secs(30);
/// How long an idle peer entry stays in the table.
pub const PEER_IDLE: Duration = Duration::from_secs(300);
/// Keepalive Router Solicitation interval (RFC 4380 section 5.2.7: 30 s).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// IPv6 "no next header" (RFC 8200), the next header of a bubble.
pub const NO_NEXT_HEADER: u8 = 59;
/// The largest UDP payload accepted: an authentication header with the largest id and
/// value (4 + 255 + 255 + 9), an origin indication (8) and an IPv6 packet of the MTU.
const MAX_DATAGRAM: usize = 4 + 255 + 255 + 9 + 8 + TEREDO_MTU as usize;

/// Counters of the Teredo client: the endpoint counters (packets and bytes delivered and
/// sent, drops by reason) and the Teredo-specific ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TeredoStats {
    /// Data packets, bytes and drops by reason, as the other endpoints count them.
    pub endpoint: EndpointStats,
    /// Bubbles sent (direct, indirect, and answers to relayed bubbles).
    pub bubbles_sent: u64,
    /// Bubbles received (direct, and relayed by the server).
    pub bubbles_received: u64,
    /// Host packets put in a queue while their peer was not trusted.
    pub queued: u64,
    /// Queued packets dropped: queue full, bubbles unanswered, peer expired or table full.
    pub queue_dropped: u64,
    /// Peers that became trusted.
    pub peers_trusted: u64,
    /// Peer entries removed after being idle.
    pub peers_expired: u64,
    /// Keepalive Router Solicitations sent.
    pub keepalives_sent: u64,
    /// Router Advertisements accepted from the server.
    pub keepalives_answered: u64,
    /// Advertisements whose origin indication differs from the qualified mapping (the NAT
    /// changed it; the Teredo address is stale and qualification must run again).
    pub mapping_changed: u64,
}

#[derive(Debug)]
struct Peer {
    /// Where its packets come from and go to (its mapped address and port).
    mapped: SocketAddrV4,
    trusted: bool,
    last_rx: Option<Instant>,
    last_used: Instant,
    bubbles: u32,
    next_bubble: Option<Instant>,
    queue: Vec<Vec<u8>>,
}

impl Peer {
    fn new(mapped: SocketAddrV4, now: Instant) -> Self {
        Self {
            mapped,
            trusted: false,
            last_rx: None,
            last_used: now,
            bubbles: 0,
            next_bubble: None,
            queue: Vec::new(),
        }
    }
}

/// What to do with a packet from the host; the bytes are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeredoOutbound {
    /// Send the buffer (the IPv6 packet, the whole UDP payload) to this address.
    Send(SocketAddrV4),
    /// The peer is not trusted yet: the packet is queued and bubbles are waiting in
    /// [`TeredoCore::poll_transmit`].
    Queued,
    /// Write the buffer (an ICMPv6 error) back to the TUN device, to the host.
    Reply,
    /// Dropped (counted).
    Drop(DropReason),
}

/// What to do with a datagram from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeredoInbound<'a> {
    /// Write this IPv6 packet to the TUN device.
    Deliver(&'a [u8]),
    /// Consumed by the client (a bubble, a Router Advertisement); see
    /// [`TeredoCore::poll_transmit`] for what it wants sent.
    Handled,
    /// Dropped (counted).
    Drop(DropReason),
}

/// The Teredo client's data path: checks, peer table, queues, bubbles and keepalives. Owns
/// no socket, device or clock.
#[derive(Debug)]
pub struct TeredoCore {
    addr: TeredoAddr,
    local_v6: Ipv6Addr,
    server: SocketAddrV4,
    peers: HashMap<Ipv6Addr, Peer>,
    queued_total: usize,
    transmit: VecDeque<(SocketAddrV4, Vec<u8>)>,
    next_keepalive: Instant,
    nonce: Option<[u8; 8]>,
    rng: u64,
    stats: TeredoStats,
    icmp: IcmpLimiter,
}

/// A bubble from `src` to `dst`: an IPv6 header alone, next header 59, payload length 0,
/// hop limit 255 (RFC 4380 section 2.8).
pub fn encode_bubble(src: Ipv6Addr, dst: Ipv6Addr, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, NO_NEXT_HEADER, 255]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
}

fn is_bubble(p: &Ipv6Packet<'_>) -> bool {
    p.next_header() == NO_NEXT_HEADER && p.len() == IPV6_HEADER_LEN
}

fn mapped_of(a: TeredoAddr) -> SocketAddrV4 {
    SocketAddrV4::new(a.mapped_addr, a.mapped_port)
}

/// Where a Teredo address's holder may be reached: its mapped address must be unicast.
fn teredo_peer(a: Ipv6Addr) -> Option<TeredoAddr> {
    let t = TeredoAddr::from_ipv6(a).ok()?;
    (is_unicast_v4(t.mapped_addr)
        && t.mapped_addr != Ipv4Addr::BROADCAST
        && t.mapped_port != 0
        && is_unicast_v4(t.server))
    .then_some(t)
}

impl TeredoCore {
    /// A client with the Teredo address `addr` qualification gave it (its server is the
    /// one the address embeds), at `now`. `seed` seeds the keepalive nonces (from a good
    /// RNG). The first keepalive is due [`KEEPALIVE_INTERVAL`] after `now`.
    pub fn new(addr: TeredoAddr, now: Instant, seed: u64) -> Self {
        Self {
            addr,
            local_v6: addr.to_ipv6(),
            server: SocketAddrV4::new(addr.server, TEREDO_PORT),
            peers: HashMap::new(),
            queued_total: 0,
            transmit: VecDeque::new(),
            next_keepalive: now + KEEPALIVE_INTERVAL,
            nonce: None,
            rng: seed,
            stats: TeredoStats::default(),
            icmp: IcmpLimiter::new(),
        }
    }

    /// This client's Teredo address.
    pub fn local_v6(&self) -> Ipv6Addr {
        self.local_v6
    }

    /// The parts of this client's Teredo address.
    pub fn teredo_addr(&self) -> TeredoAddr {
        self.addr
    }

    /// The server (primary address, port 3544).
    pub fn server(&self) -> SocketAddrV4 {
        self.server
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TeredoStats {
        self.stats
    }

    /// Peers in the table.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether `peer` (a Teredo address) is trusted.
    pub fn is_trusted(&self, peer: Ipv6Addr) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.trusted)
    }

    /// Counts a datagram the socket refused after [`TeredoOutbound::Send`] of `len` bytes.
    pub fn count_send_error(&mut self, len: usize) {
        let s = &mut self.stats.endpoint;
        s.packets_out = s.packets_out.saturating_sub(1);
        s.bytes_out = s.bytes_out.saturating_sub(len as u64);
        s.drop_out(DropReason::SendError);
    }

    /// The next datagram the client wants sent (bubbles, keepalives, flushed queues):
    /// the destination and the UDP payload.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddrV4, Vec<u8>)> {
        self.transmit.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Instant {
        let mut at = self.next_keepalive;
        for p in self.peers.values() {
            if let Some(b) = p.next_bubble {
                at = at.min(b);
            }
            at = at.min(p.last_used + PEER_IDLE);
            if p.trusted
                && let Some(rx) = p.last_rx
            {
                at = at.min(rx + TRUST_LIFETIME);
            }
        }
        at
    }

    fn bubbles(&mut self, peer_v6: Ipv6Addr, peer: TeredoAddr) {
        let mut direct = Vec::with_capacity(IPV6_HEADER_LEN);
        encode_bubble(self.local_v6, peer_v6, &mut direct);
        let indirect = direct.clone();
        self.transmit.push_back((mapped_of(peer), direct));
        self.transmit
            .push_back((SocketAddrV4::new(peer.server, TEREDO_PORT), indirect));
        self.stats.bubbles_sent += 2;
    }

    /// Timers: keepalive solicitations, bubble retransmissions, trust and entry expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_keepalive {
            let nonce = splitmix(&mut self.rng).to_be_bytes();
            self.nonce = Some(nonce);
            let mut rs = Vec::with_capacity(61);
            encode_rs(nonce, &mut rs);
            self.transmit.push_back((self.server, rs));
            self.stats.keepalives_sent += 1;
            self.next_keepalive = now + KEEPALIVE_INTERVAL;
        }
        let mut rebubble = Vec::new();
        let mut dropped = 0usize;
        let before = self.peers.len();
        self.peers.retain(|v6, p| {
            if now >= p.last_used + PEER_IDLE {
                dropped += p.queue.len();
                return false;
            }
            if p.trusted && p.last_rx.is_some_and(|rx| now >= rx + TRUST_LIFETIME) {
                p.trusted = false;
            }
            if let Some(at) = p.next_bubble
                && now >= at
            {
                if p.bubbles >= BUBBLE_ATTEMPTS || p.trusted {
                    dropped += p.queue.len();
                    p.queue.clear();
                    p.next_bubble = None;
                } else {
                    p.bubbles += 1;
                    p.next_bubble = Some(now + BUBBLE_INTERVAL);
                    rebubble.push(*v6);
                }
            }
            true
        });
        self.stats.peers_expired += (before - self.peers.len()) as u64;
        self.queued_total -= dropped;
        self.stats.queue_dropped += dropped as u64;
        for v6 in rebubble {
            if let Some(t) = teredo_peer(v6) {
                self.bubbles(v6, t);
            }
        }
    }

    /// Decides what happens to `packet`, which the host wrote to the TUN device, at `now`.
    /// `out` is cleared and receives the UDP payload ([`TeredoOutbound::Send`]) or an
    /// ICMPv6 error for the host ([`TeredoOutbound::Reply`]).
    pub fn outbound(&mut self, now: Instant, packet: &[u8], out: &mut Vec<u8>) -> TeredoOutbound {
        out.clear();
        let mtu = usize::from(TEREDO_MTU);
        let p = match Ipv6Packet::parse(packet, usize::from(u16::MAX) + IPV6_HEADER_LEN) {
            Ok(p) => p,
            Err(ipv6::Ipv6Error::Truncated { .. }) => {
                return TeredoOutbound::Drop(self.stats.endpoint.drop_out(DropReason::Truncated));
            }
            Err(ipv6::Ipv6Error::Version(_)) => {
                return TeredoOutbound::Drop(
                    self.stats.endpoint.drop_out(DropReason::WrongProtocol),
                );
            }
            Err(_) => {
                return TeredoOutbound::Drop(self.stats.endpoint.drop_out(DropReason::Malformed));
            }
        };
        let dst = p.dst();
        let link_local = dst.segments()[0] & 0xffc0 == 0xfe80;
        if dst.is_multicast() || link_local || dst.is_loopback() || dst.is_unspecified() {
            return TeredoOutbound::Drop(self.stats.endpoint.drop_out(DropReason::NoRoute));
        }
        if p.src() != self.local_v6 {
            return TeredoOutbound::Drop(self.stats.endpoint.drop_out(DropReason::NotLocalSource));
        }
        if p.len() > mtu {
            self.stats.endpoint.drop_out(DropReason::TooBig);
            if !p.is_icmpv6_error() && icmp_allowed(&mut self.icmp, now, &mut self.stats.endpoint) {
                *out = ipv6::packet_too_big(dst, &p, mtu);
                return TeredoOutbound::Reply;
            }
            return TeredoOutbound::Drop(DropReason::TooBig);
        }
        let peer = match teredo_peer(dst) {
            Some(t) if dst != self.local_v6 => t,
            Some(_) => {
                return TeredoOutbound::Drop(self.stats.endpoint.drop_out(DropReason::NoRoute));
            }
            None if TeredoAddr::from_ipv6(dst).is_ok() => {
                // A Teredo address embedding a non-unicast mapping: nobody to send to.
                return TeredoOutbound::Drop(
                    self.stats.endpoint.drop_out(DropReason::BadInnerAddress),
                );
            }
            None => {
                // Native IPv6: needs a Teredo relay, not in this client.
                self.stats.endpoint.drop_out(DropReason::NoRoute);
                if !p.is_icmpv6_error()
                    && icmp_allowed(&mut self.icmp, now, &mut self.stats.endpoint)
                {
                    *out = ipv6::address_unreachable(self.local_v6, &p);
                    return TeredoOutbound::Reply;
                }
                return TeredoOutbound::Drop(DropReason::NoRoute);
            }
        };
        if let Some(e) = self.peers.get_mut(&dst) {
            e.last_used = now;
            if e.trusted {
                out.extend_from_slice(p.bytes());
                self.stats.endpoint.packets_out += 1;
                self.stats.endpoint.bytes_out += p.len() as u64;
                return TeredoOutbound::Send(e.mapped);
            }
        } else {
            if self.peers.len() >= MAX_PEERS {
                self.expire_idle(now);
            }
            if self.peers.len() >= MAX_PEERS {
                self.stats.queue_dropped += 1;
                return TeredoOutbound::Drop(self.stats.endpoint.drop_out(DropReason::NoRoute));
            }
            self.peers.insert(dst, Peer::new(mapped_of(peer), now));
        }
        let Some(e) = self.peers.get_mut(&dst) else {
            return TeredoOutbound::Drop(self.stats.endpoint.drop_out(DropReason::NoRoute));
        };
        let queued = if e.queue.len() < QUEUE_PER_PEER && self.queued_total < QUEUE_TOTAL {
            e.queue.push(p.bytes().to_vec());
            self.queued_total += 1;
            self.stats.queued += 1;
            true
        } else {
            self.stats.queue_dropped += 1;
            self.stats.endpoint.drop_out(DropReason::NoRoute);
            false
        };
        let send = e.next_bubble.is_none();
        if send {
            e.bubbles = 1;
            e.next_bubble = Some(now + BUBBLE_INTERVAL);
            self.bubbles(dst, peer);
        }
        if queued {
            TeredoOutbound::Queued
        } else {
            TeredoOutbound::Drop(DropReason::NoRoute)
        }
    }

    /// Removes entries idle for [`PEER_IDLE`], or, if none, the least recently used one
    /// that is not trusted, to make room.
    fn expire_idle(&mut self, now: Instant) {
        let before = self.peers.len();
        let mut dropped = 0;
        self.peers.retain(|_, p| {
            let keep = now < p.last_used + PEER_IDLE;
            if !keep {
                dropped += p.queue.len();
            }
            keep
        });
        if self.peers.len() == before
            && let Some(victim) = self
                .peers
                .iter()
                .filter(|(_, p)| !p.trusted)
                .min_by_key(|(_, p)| p.last_used)
                .map(|(k, _)| *k)
            && let Some(p) = self.peers.remove(&victim)
        {
            dropped += p.queue.len();
        }
        self.stats.peers_expired += (before - self.peers.len()) as u64;
        self.queued_total -= dropped;
        self.stats.queue_dropped += dropped as u64;
    }

    fn drop_in(&mut self, reason: DropReason) -> TeredoInbound<'static> {
        TeredoInbound::Drop(self.stats.endpoint.drop_in(reason))
    }

    /// Decides what happens to `data`, a UDP payload received from `from` at `now`: see the
    /// [module docs](self) for the rules.
    pub fn inbound<'a>(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        data: &'a [u8],
    ) -> TeredoInbound<'a> {
        if data.len() > MAX_DATAGRAM {
            return self.drop_in(DropReason::TooBig);
        }
        if !is_unicast_v4(*from.ip()) || *from.ip() == Ipv4Addr::BROADCAST || from.port() == 0 {
            return self.drop_in(DropReason::BadOuterSource);
        }
        let pkt = match TeredoPacket::decode(data) {
            Ok(p) => p,
            Err(crate::TunnelError::Truncated { .. }) => {
                return self.drop_in(DropReason::Truncated);
            }
            Err(_) => return self.drop_in(DropReason::Malformed),
        };
        let inner = match Ipv6Packet::parse(pkt.ipv6, usize::from(TEREDO_MTU)) {
            Ok(p) => p,
            Err(ipv6::Ipv6Error::TooBig { .. }) => return self.drop_in(DropReason::TooBig),
            Err(_) => return self.drop_in(DropReason::Malformed),
        };
        if from == self.server {
            return self.server_datagram(pkt, inner);
        }
        if pkt.nonce.is_some() || pkt.origin.is_some() {
            // Only the server speaks with Teredo headers.
            return self.drop_in(DropReason::SpoofedSource);
        }
        if inner.dst() != self.local_v6 {
            return self.drop_in(DropReason::WrongDestination);
        }
        let src = inner.src();
        if src == self.local_v6 {
            return self.drop_in(DropReason::SpoofedSource);
        }
        let matches = teredo_peer(src).is_some_and(|t| mapped_of(t) == from);
        // Trust is only ever given on such a match, so a trusted peer needs no other rule.
        if !matches {
            return self.drop_in(DropReason::SpoofedSource);
        }
        self.trust(now, src, from);
        if is_bubble(&inner) {
            self.stats.bubbles_received += 1;
            return TeredoInbound::Handled;
        }
        self.stats.endpoint.packets_in += 1;
        self.stats.endpoint.bytes_in += inner.len() as u64;
        TeredoInbound::Deliver(inner.bytes())
    }

    /// A packet from `src` arrived straight from `from`: trust it and flush its queue.
    fn trust(&mut self, now: Instant, src: Ipv6Addr, from: SocketAddrV4) {
        if !self.peers.contains_key(&src) {
            if self.peers.len() >= MAX_PEERS {
                self.expire_idle(now);
            }
            if self.peers.len() >= MAX_PEERS {
                return;
            }
            self.peers.insert(src, Peer::new(from, now));
        }
        let Some(p) = self.peers.get_mut(&src) else {
            return;
        };
        if !p.trusted {
            self.stats.peers_trusted += 1;
        }
        p.trusted = true;
        p.mapped = from;
        p.last_rx = Some(now);
        p.last_used = now;
        p.next_bubble = None;
        p.bubbles = 0;
        self.queued_total -= p.queue.len();
        for q in p.queue.drain(..) {
            self.stats.endpoint.packets_out += 1;
            self.stats.endpoint.bytes_out += q.len() as u64;
            self.transmit.push_back((from, q));
        }
    }

    fn server_datagram<'a>(
        &mut self,
        pkt: TeredoPacket<'a>,
        inner: Ipv6Packet<'a>,
    ) -> TeredoInbound<'a> {
        if let Some(nonce) = pkt.nonce {
            if self.nonce != Some(nonce) || ra_prefix(inner.bytes()).is_none() {
                return self.drop_in(DropReason::SpoofedSource);
            }
            self.nonce = None;
            self.stats.keepalives_answered += 1;
            if let Some(o) = pkt.origin
                && (o.addr, o.port) != (self.addr.mapped_addr, self.addr.mapped_port)
            {
                self.stats.mapping_changed += 1;
            }
            return TeredoInbound::Handled;
        }
        let Some(origin) = pkt.origin else {
            // Data through the server (a relay function) is not accepted in this client.
            return self.drop_in(DropReason::SpoofedSource);
        };
        if !is_bubble(&inner) {
            return self.drop_in(DropReason::SpoofedSource);
        }
        if inner.dst() != self.local_v6 {
            return self.drop_in(DropReason::WrongDestination);
        }
        let origin = SocketAddrV4::new(origin.addr, origin.port);
        let src = inner.src();
        match teredo_peer(src) {
            Some(t) if mapped_of(t) == origin && src != self.local_v6 => {}
            _ => return self.drop_in(DropReason::SpoofedSource),
        }
        self.stats.bubbles_received += 1;
        let mut b = Vec::with_capacity(IPV6_HEADER_LEN);
        encode_bubble(self.local_v6, src, &mut b);
        self.transmit.push_back((origin, b));
        self.stats.bubbles_sent += 1;
        TeredoInbound::Handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::ipv6::tests::packet;
    use crate::overlay::ipv6::{ICMPV6_DEST_UNREACHABLE, ICMPV6_PACKET_TOO_BIG};
    use proptest::prelude::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
    const A_MAP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 40001);
    const B_MAP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 2), 40002);
    const SRV: SocketAddrV4 = SocketAddrV4::new(SERVER, TEREDO_PORT);

    fn taddr(m: SocketAddrV4) -> TeredoAddr {
        TeredoAddr {
            server: SERVER,
            flags: 0x1234 & crate::RANDOM_FLAG_BITS,
            mapped_port: m.port(),
            mapped_addr: *m.ip(),
        }
    }

    fn a6() -> Ipv6Addr {
        taddr(A_MAP).to_ipv6()
    }
    fn b6() -> Ipv6Addr {
        taddr(B_MAP).to_ipv6()
    }

    fn core(now: Instant) -> TeredoCore {
        TeredoCore::new(taddr(A_MAP), now, 1)
    }

    fn bubble(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut b = Vec::new();
        encode_bubble(src, dst, &mut b);
        b
    }

    fn with_origin(o: SocketAddrV4, ipv6: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0];
        v.extend_from_slice(&(o.port() ^ 0xffff).to_be_bytes());
        v.extend(o.ip().octets().iter().map(|b| !b));
        v.extend_from_slice(ipv6);
        v
    }

    fn drain(c: &mut TeredoCore) -> Vec<(SocketAddrV4, Vec<u8>)> {
        std::iter::from_fn(|| c.poll_transmit()).collect()
    }

    #[test]
    fn bubble_layout() {
        let b = bubble(a6(), b6());
        assert_eq!(b.len(), 40);
        assert_eq!(&b[..8], &[0x60, 0, 0, 0, 0, 0, 59, 255]);
        assert_eq!(&b[8..24], &a6().octets());
        assert_eq!(&b[24..40], &b6().octets());
    }

    #[test]
    fn untrusted_peer_queues_and_bubbles_then_flushes_on_direct_bubble() {
        let now = Instant::now();
        let mut a = core(now);
        let pkt = packet(a6(), b6(), 17, b"hello");
        let mut out = Vec::new();
        assert_eq!(a.outbound(now, &pkt, &mut out), TeredoOutbound::Queued);
        let tx = drain(&mut a);
        assert_eq!(tx.len(), 2, "a direct and an indirect bubble");
        assert_eq!(tx[0], (B_MAP, bubble(a6(), b6())));
        assert_eq!(tx[1], (SRV, bubble(a6(), b6())));
        // A second packet queues without new bubbles.
        assert_eq!(a.outbound(now, &pkt, &mut out), TeredoOutbound::Queued);
        assert!(drain(&mut a).is_empty());
        assert!(!a.is_trusted(b6()));
        // B's direct bubble from B's mapping: trusted, both packets flushed to it.
        assert_eq!(
            a.inbound(now, B_MAP, &bubble(b6(), a6())),
            TeredoInbound::Handled
        );
        assert!(a.is_trusted(b6()));
        let tx = drain(&mut a);
        assert_eq!(tx, vec![(B_MAP, pkt.clone()), (B_MAP, pkt.clone())]);
        // Now straight through.
        assert_eq!(a.outbound(now, &pkt, &mut out), TeredoOutbound::Send(B_MAP));
        assert_eq!(out, pkt);
        let s = a.stats();
        assert_eq!(
            (s.endpoint.packets_out, s.queued, s.bubbles_sent),
            (3, 2, 2)
        );
        assert_eq!((s.bubbles_received, s.peers_trusted), (1, 1));
    }

    #[test]
    fn queues_are_bounded_and_counted() {
        let now = Instant::now();
        let mut a = core(now);
        let mut out = Vec::new();
        let pkt = packet(a6(), b6(), 17, b"q");
        for _ in 0..QUEUE_PER_PEER {
            assert_eq!(a.outbound(now, &pkt, &mut out), TeredoOutbound::Queued);
        }
        assert!(matches!(
            a.outbound(now, &pkt, &mut out),
            TeredoOutbound::Drop(_)
        ));
        assert_eq!(a.stats().queue_dropped, 1);
        // Total bound across peers.
        for i in 0..QUEUE_TOTAL as u16 {
            let m = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 1000 + i);
            let p = packet(a6(), taddr(m).to_ipv6(), 17, b"q");
            a.outbound(now, &p, &mut out);
        }
        assert_eq!(a.queued_total, QUEUE_TOTAL);
        assert_eq!(a.stats().queued, QUEUE_TOTAL as u64);
        assert_eq!(
            a.stats().queue_dropped,
            1 + QUEUE_PER_PEER as u64,
            "the packets beyond the total"
        );
    }

    #[test]
    fn unanswered_bubbles_repeat_then_the_queue_is_dropped() {
        let now = Instant::now();
        let mut a = core(now);
        let mut out = Vec::new();
        a.outbound(now, &packet(a6(), b6(), 17, b"q"), &mut out);
        drain(&mut a);
        let mut t = now;
        let mut sent = 2;
        for _ in 0..10 {
            t = a.poll_timeout();
            a.handle_timeout(t);
            sent += drain(&mut a)
                .iter()
                .filter(|(_, p)| p.len() == 40 && p[6] == 59)
                .count();
            if a.stats().queue_dropped > 0 {
                break;
            }
        }
        assert_eq!(sent, 2 * BUBBLE_ATTEMPTS as usize);
        assert_eq!(a.stats().queue_dropped, 1);
        assert_eq!(a.queued_total, 0);
        assert!(t < now + KEEPALIVE_INTERVAL);
    }

    #[test]
    fn relayed_bubble_is_answered_at_its_origin_only_if_consistent() {
        let now = Instant::now();
        let mut a = core(now);
        let relayed = with_origin(B_MAP, &bubble(b6(), a6()));
        assert_eq!(a.inbound(now, SRV, &relayed), TeredoInbound::Handled);
        assert_eq!(drain(&mut a), vec![(B_MAP, bubble(a6(), b6()))]);
        // The origin differs from the mapping the source embeds: no answer.
        let other = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 9);
        let lie = with_origin(other, &bubble(b6(), a6()));
        assert_eq!(
            a.inbound(now, SRV, &lie),
            TeredoInbound::Drop(DropReason::SpoofedSource)
        );
        // Not for us.
        let wrong = with_origin(B_MAP, &bubble(b6(), b6()));
        assert_eq!(
            a.inbound(now, SRV, &wrong),
            TeredoInbound::Drop(DropReason::WrongDestination)
        );
        // The same relayed bubble from someone who is not our server.
        assert_eq!(
            a.inbound(now, B_MAP, &relayed),
            TeredoInbound::Drop(DropReason::SpoofedSource)
        );
        // Data (not a bubble) through the server, with or without origin.
        let data = packet(b6(), a6(), 17, b"x");
        assert_eq!(
            a.inbound(now, SRV, &with_origin(B_MAP, &data)),
            TeredoInbound::Drop(DropReason::SpoofedSource)
        );
        assert_eq!(
            a.inbound(now, SRV, &data),
            TeredoInbound::Drop(DropReason::SpoofedSource)
        );
        assert!(drain(&mut a).is_empty());
    }

    #[test]
    fn inbound_checks_source_mapping_and_destination() {
        let now = Instant::now();
        let mut a = core(now);
        let good = packet(b6(), a6(), 17, b"in");
        assert_eq!(a.inbound(now, B_MAP, &good), TeredoInbound::Deliver(&good));
        let elsewhere = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 2), 40003);
        let native = packet("2001:db8::1".parse().unwrap(), a6(), 17, b"n");
        let cases: Vec<(SocketAddrV4, Vec<u8>, DropReason)> = vec![
            // Teredo source whose mapping is not the UDP source.
            (elsewhere, good.clone(), DropReason::SpoofedSource),
            // A native source straight from the network (no relay).
            (B_MAP, native, DropReason::SpoofedSource),
            // Our own address as source.
            (
                B_MAP,
                packet(a6(), a6(), 17, b"x"),
                DropReason::SpoofedSource,
            ),
            // Not for us.
            (
                B_MAP,
                packet(b6(), b6(), 17, b"x"),
                DropReason::WrongDestination,
            ),
            // Teredo headers from a peer.
            (B_MAP, with_origin(B_MAP, &good), DropReason::SpoofedSource),
            // Bad outer sources.
            (
                SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 1),
                good.clone(),
                DropReason::BadOuterSource,
            ),
            (
                SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 2), 0),
                good.clone(),
                DropReason::BadOuterSource,
            ),
            // Damage.
            (B_MAP, good[..30].to_vec(), DropReason::Malformed),
            (B_MAP, vec![0x45; 60], DropReason::Malformed),
            (B_MAP, vec![0, 1, 5], DropReason::Truncated),
            (
                B_MAP,
                packet(b6(), a6(), 17, &[0; 1300]),
                DropReason::TooBig,
            ),
            (B_MAP, vec![0x60; 2000], DropReason::TooBig),
        ];
        for (from, p, reason) in &cases {
            let before = a.stats().endpoint.dropped_in_for(*reason);
            assert_eq!(
                a.inbound(now, *from, p),
                TeredoInbound::Drop(*reason),
                "{reason:?} from {from}"
            );
            assert_eq!(a.stats().endpoint.dropped_in_for(*reason), before + 1);
        }
        assert_eq!(a.stats().endpoint.packets_in, 1);
        assert!(drain(&mut a).is_empty());
    }

    #[test]
    fn host_packets_checked_native_answered_unreachable() {
        let now = Instant::now();
        let mut a = core(now);
        let mut out = Vec::new();
        let native: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let p = packet(a6(), native, 17, b"n");
        assert_eq!(a.outbound(now, &p, &mut out), TeredoOutbound::Reply);
        let r = Ipv6Packet::parse(&out, 1280).unwrap();
        assert_eq!((r.src(), r.dst()), (a6(), a6()));
        assert_eq!(r.payload()[..2], [ICMPV6_DEST_UNREACHABLE, 3]);
        assert_eq!(a.stats().endpoint.dropped_out_for(DropReason::NoRoute), 1);
        let big = packet(a6(), b6(), 17, &[0; 1300]);
        assert_eq!(a.outbound(now, &big, &mut out), TeredoOutbound::Reply);
        let r = Ipv6Packet::parse(&out, 1280).unwrap();
        assert_eq!(r.payload()[0], ICMPV6_PACKET_TOO_BIG);
        assert_eq!(&r.payload()[4..8], &1280u32.to_be_bytes());
        let rs = packet(
            "fe80::1".parse().unwrap(),
            "ff02::2".parse().unwrap(),
            58,
            &[133, 0, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(
            a.outbound(now, &rs, &mut out),
            TeredoOutbound::Drop(DropReason::NoRoute)
        );
        let other = packet(b6(), b6(), 17, b"x");
        assert_eq!(
            a.outbound(now, &other, &mut out),
            TeredoOutbound::Drop(DropReason::NotLocalSource)
        );
        // A Teredo destination embedding a multicast mapping.
        let bad = TeredoAddr {
            mapped_addr: Ipv4Addr::new(224, 0, 0, 1),
            ..taddr(B_MAP)
        };
        assert_eq!(
            a.outbound(now, &packet(a6(), bad.to_ipv6(), 17, b"x"), &mut out),
            TeredoOutbound::Drop(DropReason::BadInnerAddress)
        );
        assert!(drain(&mut a).is_empty(), "no bubbles for refused packets");
    }

    #[test]
    fn keepalive_every_30s_and_answer_checked() {
        let now = Instant::now();
        let mut a = core(now);
        assert_eq!(a.poll_timeout(), now + KEEPALIVE_INTERVAL);
        a.handle_timeout(now + KEEPALIVE_INTERVAL);
        let tx = drain(&mut a);
        assert_eq!(tx.len(), 1);
        assert_eq!(tx[0].0, SRV);
        let rs = TeredoPacket::decode(&tx[0].1).unwrap();
        assert_eq!(rs.ipv6[40], 133);
        assert_eq!(a.poll_timeout(), now + 2 * KEEPALIVE_INTERVAL);
        assert_eq!(a.stats().keepalives_sent, 1);
        // A stale nonce is refused; the right one with a changed mapping is counted.
        let ra = crate::teredo::tests::answer([9; 8], 1, Ipv4Addr::new(203, 0, 113, 1), false);
        assert_eq!(
            a.inbound(now, SRV, &ra),
            TeredoInbound::Drop(DropReason::SpoofedSource)
        );
        let nonce = rs.nonce.unwrap();
        let ra = crate::teredo::tests::answer(nonce, 1, Ipv4Addr::new(203, 0, 113, 1), false);
        assert_eq!(a.inbound(now, SRV, &ra), TeredoInbound::Handled);
        assert_eq!(a.stats().keepalives_answered, 1);
        assert_eq!(a.stats().mapping_changed, 1);
    }

    #[test]
    fn trust_expires_and_peers_are_bounded() {
        let now = Instant::now();
        let mut a = core(now);
        a.inbound(now, B_MAP, &bubble(b6(), a6()));
        assert!(a.is_trusted(b6()));
        a.handle_timeout(now + TRUST_LIFETIME);
        assert!(!a.is_trusted(b6()));
        let mut out = Vec::new();
        assert_eq!(
            a.outbound(
                now + TRUST_LIFETIME,
                &packet(a6(), b6(), 17, b"x"),
                &mut out
            ),
            TeredoOutbound::Queued
        );
        a.handle_timeout(now + TRUST_LIFETIME + PEER_IDLE);
        assert_eq!(a.peer_count(), 0);
        assert_eq!(a.stats().peers_expired, 1);
        assert_eq!(a.queued_total, 0);
        // The table never grows past its bound.
        for i in 0..(MAX_PEERS as u16 + 10) {
            let m = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 1000 + i);
            a.inbound(now, m, &bubble(taddr(m).to_ipv6(), a6()));
        }
        assert_eq!(a.peer_count(), MAX_PEERS);
    }

    proptest! {
        #[test]
        fn never_panics_never_delivers_foreign(
            from_port in any::<u16>(),
            from_ip in any::<u32>(),
            buf in proptest::collection::vec(any::<u8>(), 0..200),
            prefix in 0usize..3,
        ) {
            let now = Instant::now();
            let mut a = core(now);
            let mut data = buf.clone();
            // Sometimes make it look like IPv6 to us.
            if prefix > 0 && data.len() >= 40 {
                data[0] = 0x60;
                let plen = (data.len() - 40) as u16;
                data[4..6].copy_from_slice(&plen.to_be_bytes());
                if prefix == 2 {
                    data[24..40].copy_from_slice(&a6().octets());
                }
            }
            let from = SocketAddrV4::new(Ipv4Addr::from(from_ip), from_port);
            if let TeredoInbound::Deliver(p) = a.inbound(now, from, &data) {
                let p = Ipv6Packet::parse(p, 1280).unwrap();
                prop_assert_eq!(p.dst(), a6());
                let t = TeredoAddr::from_ipv6(p.src()).unwrap();
                prop_assert_eq!(mapped_of(t), from);
            }
            for (to, _) in drain(&mut a).into_iter().filter(|_| from != SRV) {
                // Only ever the server, the sender, or an address the packet embeds
                // consistently with its sender.
                prop_assert!(to == SRV || to == from, "sent to {}", to);
            }
            let mut out = Vec::new();
            let _ = a.outbound(now, &data, &mut out);
        }
    }
}
