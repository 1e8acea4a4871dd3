//! The receive-side datagram filter: every UDP datagram (each GRO segment) is classified
//! before quinn parses it, and junk is dropped with a counted [`JunkReason`].
//!
//! quinn-proto silently discards malformed datagrams; this filter makes those refusals
//! visible in [`MetricsSnapshot`](crate::MetricsSnapshot) and keeps the cheap ones out of
//! quinn's endpoint lock. It never drops anything a legitimate peer sends:
//!
//! - destination connection ids are checked against the endpoint's own keyed-hash
//!   generator (nonce and SipHash tag), which issues every id a peer may address us by;
//! - a short-header datagram that fails the check is still passed on when it comes from an
//!   address that recently sent us a valid one, because it may be a stateless reset (RFC 9000
//!   §10.3), which carries random bytes where the connection id would be;
//! - long headers with an unknown version are counted but passed on, so quinn can answer
//!   with Version Negotiation.
//!
//! The classifier itself, [`classify`], is a pure function of the datagram's bytes.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, ConnectionId, ConnectionIdGenerator, UdpPoller};

use crate::extra::ExtraTable;

use crate::metrics::{JunkReason, Metrics};
use crate::side::SideTap;

/// Length of the connection ids this endpoint issues: a random nonce and a keyed tag.
pub const CID_LEN: usize = 8;
const NONCE_LEN: usize = 3;
const TAG_LEN: usize = CID_LEN - NONCE_LEN;
/// Longest connection id QUIC v1 allows in a long header (RFC 9000 §17.2).
const MAX_CID_LEN: usize = 20;
/// Smallest datagram that may carry an Initial packet (RFC 9000 §14.1).
pub const MIN_INITIAL_DATAGRAM: usize = 1200;
/// Header protection samples 16 bytes starting 4 bytes after the packet number offset
/// (RFC 9001 §5.4.2): a short-header packet is at least the first byte, the connection id
/// and those 20 bytes, or quinn cannot even remove its header protection.
const SHORT_OVERHEAD: usize = 1 + 4 + 16;
/// Batches of pure junk processed in one `poll_recv` before yielding to the runtime.
const MAX_JUNK_BATCHES: usize = 16;

/// What the filter does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to QUIC.
    Pass,
    /// A short-header packet for a connection id we issued: hand it to QUIC, and remember the
    /// source as a live peer (whose stateless resets must get through).
    PassOurs,
    /// Hand it to QUIC, but count it (an unsupported version: QUIC may answer with Version
    /// Negotiation).
    PassCounted(JunkReason),
    /// A short-header packet we cannot route: junk, unless it is a stateless reset from a
    /// live peer's address, which only QUIC can recognise.
    Suspect(JunkReason),
    /// Junk: drop it and count the reason.
    Drop(JunkReason),
}

/// Classifies one datagram (one GRO segment). `cid_len` is the length of the connection ids
/// this endpoint issues and `ours` says whether a connection id of that length is one of
/// them. Reads only `datagram`'s bytes; never panics.
pub fn classify(datagram: &[u8], cid_len: usize, ours: impl Fn(&[u8]) -> bool) -> Verdict {
    let Some(&first) = datagram.first() else {
        return Verdict::Drop(JunkReason::TooShort);
    };
    // Header forms (RFC 9000 §17): bit 7 long/short, bit 6 the fixed bit.
    if first & 0x40 == 0 {
        return Verdict::Drop(JunkReason::FixedBitClear);
    }
    if first & 0x80 == 0 {
        let Some(dcid) = datagram.get(1..1 + cid_len) else {
            return Verdict::Suspect(JunkReason::TooShort);
        };
        if datagram.len() < cid_len + SHORT_OVERHEAD {
            return Verdict::Suspect(JunkReason::TooShort);
        }
        return if ours(dcid) {
            Verdict::PassOurs
        } else {
            Verdict::Suspect(JunkReason::UnknownConnectionId)
        };
    }
    // Long header: first byte, version (4), DCID length (1), DCID, SCID length (1), SCID.
    let Some(version) = datagram.get(1..5) else {
        return Verdict::Drop(JunkReason::TooShort);
    };
    let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
    let Some(&dcid_len) = datagram.get(5) else {
        return Verdict::Drop(JunkReason::TooShort);
    };
    let dcid_len = usize::from(dcid_len);
    if dcid_len > MAX_CID_LEN {
        return Verdict::Drop(JunkReason::Malformed);
    }
    let Some(dcid) = datagram.get(6..6 + dcid_len) else {
        return Verdict::Drop(JunkReason::TooShort);
    };
    let dcid_ours = dcid_len == cid_len && ours(dcid);
    let Some(&scid_len) = datagram.get(6 + dcid_len) else {
        return Verdict::Drop(JunkReason::TooShort);
    };
    let scid_len = usize::from(scid_len);
    if scid_len > MAX_CID_LEN {
        return Verdict::Drop(JunkReason::Malformed);
    }
    if datagram.len() < 7 + dcid_len + scid_len {
        return Verdict::Drop(JunkReason::TooShort);
    }
    if version == 0 {
        // Version Negotiation: only meaningful to a client; quinn checks it.
        return Verdict::Pass;
    }
    if !quinn_proto::DEFAULT_SUPPORTED_VERSIONS.contains(&version) {
        return Verdict::PassCounted(JunkReason::UnsupportedVersion);
    }
    // Long packet types of QUIC v1 and its drafts: Initial, 0-RTT, Handshake, Retry.
    match (first >> 4) & 0x03 {
        // A client pads every datagram carrying an Initial; a server need not pad an
        // ACK-only Initial, but that one is addressed to a connection id we issued.
        0 if datagram.len() < MIN_INITIAL_DATAGRAM && !dcid_ours => {
            Verdict::Drop(JunkReason::InitialTooSmall)
        }
        // 0-RTT packets carry the client's own random initial DCID: nothing to check.
        0 | 1 => Verdict::Pass,
        // Handshake and Retry packets are always addressed to a connection id we issued.
        _ if dcid_ours || cid_len == 0 => Verdict::Pass,
        _ => Verdict::Drop(JunkReason::UnknownConnectionId),
    }
}

/// The key of this endpoint's connection ids: `nonce ‖ tag(nonce)`, where the tag is a
/// SipHash-1-3 PRF under a random 128-bit key, so ids cannot be forged without the key
/// and reveal nothing that links them to each other.
pub(crate) struct CidKey {
    key: RandomState,
    fallback: AtomicU64,
}

impl fmt::Debug for CidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CidKey(..)")
    }
}

impl CidKey {
    pub(crate) fn new() -> Self {
        Self {
            key: RandomState::new(),
            fallback: AtomicU64::new(0),
        }
    }

    fn tag(&self, nonce: &[u8]) -> [u8; TAG_LEN] {
        let mut h = self.key.build_hasher();
        h.write(nonce);
        let full = h.finish().to_le_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Whether `cid` is one this key issued.
    pub(crate) fn validate(&self, cid: &[u8]) -> bool {
        cid.len() == CID_LEN && self.tag(&cid[..NONCE_LEN]) == cid[NONCE_LEN..]
    }

    pub(crate) fn generate(&self) -> [u8; CID_LEN] {
        let mut cid = [0u8; CID_LEN];
        if getrandom::fill(&mut cid[..NONCE_LEN]).is_err() {
            // No OS randomness: a keyed hash of a counter is still unpredictable to others.
            let mut h = self.key.build_hasher();
            h.write_u64(self.fallback.fetch_add(1, Relaxed) | 1 << 63);
            cid[..NONCE_LEN].copy_from_slice(&h.finish().to_le_bytes()[..NONCE_LEN]);
        }
        let tag = self.tag(&cid[..NONCE_LEN]);
        cid[NONCE_LEN..].copy_from_slice(&tag);
        cid
    }
}

/// quinn's connection id generator for this endpoint.
pub(crate) struct KeyedCidGenerator(pub(crate) Arc<CidKey>);

impl ConnectionIdGenerator for KeyedCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        ConnectionId::new(&self.0.generate())
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), quinn_proto::InvalidCid> {
        if self.0.validate(cid) {
            Ok(())
        } else {
            Err(quinn_proto::InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Filter state shared by the endpoint's socket (and the socket it is rebound to).
pub(crate) struct Filter {
    key: Arc<CidKey>,
    metrics: Arc<Metrics>,
    /// Sources that recently sent a packet for a connection id we issued: their
    /// unroutable short-header packets may be stateless resets and are passed on.
    peers: Mutex<HashSet<SocketAddr>>,
    peers_cap: usize,
    /// Takes the non-QUIC datagrams the application claims (STUN, NAT probes), if configured.
    side: Option<Arc<SideTap>>,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("peers_cap", &self.peers_cap)
            .finish_non_exhaustive()
    }
}

type PeerGuard<'a> = Option<MutexGuard<'a, HashSet<SocketAddr>>>;

impl Filter {
    /// `peers_cap` bounds the remembered peer addresses; the set is cleared when full
    /// (live peers are re-learned from their next packet).
    pub(crate) fn new(key: Arc<CidKey>, metrics: Arc<Metrics>, peers_cap: usize) -> Self {
        Self {
            key,
            metrics,
            peers: Mutex::new(HashSet::new()),
            peers_cap: peers_cap.max(16),
            side: None,
        }
    }

    /// Hands the datagrams `side`'s matcher claims to the side channel instead of QUIC.
    pub(crate) fn with_side_channel(mut self, side: Arc<SideTap>) -> Self {
        self.side = Some(side);
        self
    }

    /// Whether to keep one datagram from `from`.
    fn keep<'a>(
        &'a self,
        datagram: &[u8],
        from: SocketAddr,
        via: Option<SocketAddr>,
        peers: &mut PeerGuard<'a>,
        learned: &mut Option<SocketAddr>,
    ) -> bool {
        if let Some(side) = &self.side {
            if side.claim(datagram, from, via) {
                return false;
            }
        }
        match classify(datagram, CID_LEN, |cid| self.key.validate(cid)) {
            Verdict::Pass => true,
            Verdict::PassOurs => {
                if *learned != Some(from) {
                    *learned = Some(from);
                    if peers.is_none() {
                        *peers = self.peers.lock().ok();
                    }
                    if let Some(set) = peers.as_deref_mut() {
                        if !set.contains(&from) {
                            if set.len() >= self.peers_cap {
                                set.clear();
                            }
                            set.insert(from);
                        }
                    }
                }
                true
            }
            Verdict::PassCounted(reason) => {
                self.metrics.junk(reason);
                true
            }
            Verdict::Suspect(reason) => {
                if peers.is_none() {
                    *peers = self.peers.lock().ok();
                }
                let known = peers.as_deref().is_some_and(|set| set.contains(&from));
                if !known {
                    self.metrics.junk(reason);
                }
                known
            }
            Verdict::Drop(reason) => {
                self.metrics.junk(reason);
                false
            }
        }
    }

    /// Filters the `n` received entries in place: junk segments are cut out of each buffer,
    /// emptied entries are removed, and the kept ones are moved to the front (buffers are
    /// swapped, not copied). Returns how many entries remain. `via` is the extra socket
    /// they arrived on (`None`: the QUIC socket).
    pub(crate) fn retain(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
        n: usize,
        via: Option<SocketAddr>,
    ) -> usize {
        let n = n.min(bufs.len()).min(meta.len());
        let mut peers: PeerGuard<'_> = None;
        let mut learned = None;
        let mut kept = 0;
        for i in 0..n {
            let m = meta[i];
            let buf: &mut [u8] = &mut bufs[i];
            let len = m.len.min(buf.len());
            let buf = &mut buf[..len];
            let stride = if m.stride == 0 { len } else { m.stride };
            // Each GRO segment is `stride` bytes but the last; cutting one out and sliding
            // the rest down keeps that shape.
            let (mut read, mut write) = (0, 0);
            while read < len {
                let end = len.min(read + stride);
                if self.keep(&buf[read..end], m.addr, via, &mut peers, &mut learned) {
                    if write != read {
                        buf.copy_within(read..end, write);
                    }
                    write += end - read;
                }
                read = end;
            }
            if write == 0 {
                continue;
            }
            meta[i].len = write;
            if kept != i {
                meta.swap(kept, i);
                bufs.swap(kept, i);
            }
            kept += 1;
        }
        kept
    }
}

/// The endpoint's UDP socket: the runtime's socket with [`Filter`] on the receive path,
/// and the side channel's extra sockets (if any) beside it.
#[derive(Debug)]
pub(crate) struct FilteredSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    filter: Arc<Filter>,
    /// Flips on every receive poll: which of the QUIC socket and the extra sockets is
    /// polled first, so neither starves the other.
    extras_first: AtomicBool,
}

impl FilteredSocket {
    pub(crate) fn wrap(
        socket: std::net::UdpSocket,
        filter: Arc<Filter>,
    ) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        use quinn::Runtime as _;
        let v6only = match socket.local_addr()? {
            SocketAddr::V6(_) => Some(socket2::SockRef::from(&socket).only_v6()?),
            SocketAddr::V4(_) => None,
        };
        let inner = quinn::TokioRuntime.wrap_udp_socket(socket)?;
        if let Some(side) = &filter.side {
            side.set_socket(inner.clone(), v6only);
        }
        Ok(Arc::new(Self {
            inner,
            filter,
            extras_first: AtomicBool::new(false),
        }))
    }

    fn extras(&self) -> Option<&ExtraTable> {
        self.filter.side.as_ref().map(|s| &*s.extras)
    }

    /// One receive poll of the QUIC socket and the extra sockets, alternating which goes
    /// first: the entries received and the extra socket they came from.
    fn poll_any(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<(usize, Option<SocketAddr>)>> {
        let Some(extras) = self.extras().filter(|e| e.open_count() > 0) else {
            return self.inner.poll_recv(cx, bufs, meta).map_ok(|n| (n, None));
        };
        let extras_first = !self.extras_first.fetch_xor(true, Relaxed);
        if extras_first {
            if let Poll::Ready((n, via)) = extras.poll_recv(cx, bufs, meta) {
                return Poll::Ready(Ok((n, Some(via))));
            }
        }
        if let Poll::Ready(r) = self.inner.poll_recv(cx, bufs, meta) {
            return Poll::Ready(r.map(|n| (n, None)));
        }
        if !extras_first {
            if let Poll::Ready((n, via)) = extras.poll_recv(cx, bufs, meta) {
                return Poll::Ready(Ok((n, Some(via))));
            }
        }
        Poll::Pending
    }
}

impl AsyncUdpSocket for FilteredSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if let Some(extras) = self.extras() {
            if let Some(socket) = extras.route_for(transmit.destination) {
                return extras.try_send(&socket, transmit);
            }
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        for _ in 0..MAX_JUNK_BATCHES {
            let (n, via) = match self.poll_any(cx, bufs, meta) {
                Poll::Ready(Ok(got)) => got,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Pending: every socket polled registered the waker.
                Poll::Pending => return Poll::Pending,
            };
            let kept = self.filter.retain(bufs, meta, n, via);
            if let Some(extras) = self.extras() {
                for m in &meta[..kept] {
                    extras.learn(m.addr, via);
                }
            }
            if kept > 0 || n == 0 {
                return Poll::Ready(Ok(kept));
            }
        }
        // Nothing but junk for a while: let other tasks run, and be polled again at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V1: u32 = 1;

    fn long(first: u8, version: u32, dcid: &[u8], scid: &[u8], total: usize) -> Vec<u8> {
        let mut p = vec![first];
        p.extend_from_slice(&version.to_be_bytes());
        p.push(dcid.len() as u8);
        p.extend_from_slice(dcid);
        p.push(scid.len() as u8);
        p.extend_from_slice(scid);
        p.resize(total.max(p.len()), 0xab);
        p
    }

    fn short(dcid: &[u8], total: usize) -> Vec<u8> {
        let mut p = vec![0x40 | 0x01];
        p.extend_from_slice(dcid);
        p.resize(total.max(p.len()), 0xcd);
        p
    }

    fn check(key: &CidKey, d: &[u8]) -> Verdict {
        classify(d, CID_LEN, |c| key.validate(c))
    }

    #[test]
    fn issued_ids_validate_and_others_do_not() {
        let key = CidKey::new();
        let other = CidKey::new();
        for _ in 0..100 {
            let cid = key.generate();
            assert!(key.validate(&cid));
            assert!(!other.validate(&cid));
            let mut flipped = cid;
            flipped[CID_LEN - 1] ^= 1;
            assert!(!key.validate(&flipped));
            assert!(!key.validate(&cid[..CID_LEN - 1]));
        }
        let mut generator = KeyedCidGenerator(Arc::new(key));
        let cid = generator.generate_cid();
        assert_eq!(cid.len(), CID_LEN);
        assert!(generator.validate(&cid).is_ok());
        assert!(
            generator
                .validate(&ConnectionId::new(&[0; CID_LEN]))
                .is_err()
        );
    }

    #[test]
    fn too_short() {
        let key = CidKey::new();
        assert_eq!(check(&key, &[]), Verdict::Drop(JunkReason::TooShort));
        // Long headers cut before the version, the DCID, or the SCID.
        assert_eq!(
            check(&key, &[0xc0, 0, 0]),
            Verdict::Drop(JunkReason::TooShort)
        );
        let full = long(0xc0, V1, &[1; 8], &[2; 8], 0);
        for cut in [5, 6, 10, 14, 15, 20, full.len() - 1] {
            assert_eq!(
                check(&key, &full[..cut]),
                Verdict::Drop(JunkReason::TooShort),
                "cut at {cut}"
            );
        }
        // A short header too small for the header-protection sample.
        let ours = key.generate();
        let p = short(&ours, CID_LEN + SHORT_OVERHEAD - 1);
        assert_eq!(check(&key, &p), Verdict::Suspect(JunkReason::TooShort));
        assert_eq!(
            check(&key, &[0x41, 1, 2]),
            Verdict::Suspect(JunkReason::TooShort)
        );
    }

    #[test]
    fn fixed_bit_clear() {
        let key = CidKey::new();
        let ours = key.generate();
        let mut p = short(&ours, 100);
        p[0] &= !0x40;
        assert_eq!(check(&key, &p), Verdict::Drop(JunkReason::FixedBitClear));
        let p = long(0x80, V1, &ours, &[], 1300);
        assert_eq!(check(&key, &p), Verdict::Drop(JunkReason::FixedBitClear));
    }

    #[test]
    fn unsupported_version_is_counted_but_passed() {
        let key = CidKey::new();
        let p = long(0xc0, 0x1a2a_3a4a, &[9; 8], &[3; 8], 1200);
        assert_eq!(
            check(&key, &p),
            Verdict::PassCounted(JunkReason::UnsupportedVersion)
        );
        // Version Negotiation (version 0) goes to quinn uncounted.
        let p = long(0xc0, 0, &[9; 8], &[3; 8], 40);
        assert_eq!(check(&key, &p), Verdict::Pass);
        // Every version quinn speaks is accepted.
        for &v in quinn_proto::DEFAULT_SUPPORTED_VERSIONS {
            let p = long(0xc0, v, &[9; 8], &[3; 8], 1200);
            assert_eq!(check(&key, &p), Verdict::Pass, "{v:#x}");
        }
    }

    #[test]
    fn initial_too_small() {
        let key = CidKey::new();
        let p = long(0xc3, V1, &[7; 8], &[3; 8], MIN_INITIAL_DATAGRAM - 1);
        assert_eq!(check(&key, &p), Verdict::Drop(JunkReason::InitialTooSmall));
        let p = long(0xc3, V1, &[7; 8], &[3; 8], MIN_INITIAL_DATAGRAM);
        assert_eq!(check(&key, &p), Verdict::Pass);
        // A server's unpadded ACK-only Initial to our client: its DCID is one we issued.
        let p = long(0xc3, V1, &key.generate(), &[3; 8], 60);
        assert_eq!(check(&key, &p), Verdict::Pass);
    }

    #[test]
    fn unknown_connection_id() {
        let key = CidKey::new();
        let ours = key.generate();
        assert_eq!(check(&key, &short(&ours, 60)), Verdict::PassOurs);
        assert_eq!(
            check(&key, &short(&[0x55; CID_LEN], 60)),
            Verdict::Suspect(JunkReason::UnknownConnectionId)
        );
        // Handshake (type 2) and Retry (type 3) must be addressed to an id we issued.
        for first in [0xe0, 0xf0] {
            assert_eq!(
                check(&key, &long(first, V1, &ours, &[1; 8], 100)),
                Verdict::Pass
            );
            assert_eq!(
                check(&key, &long(first, V1, &[0x55; CID_LEN], &[1; 8], 100)),
                Verdict::Drop(JunkReason::UnknownConnectionId)
            );
        }
        // 0-RTT carries the client's random initial DCID.
        assert_eq!(
            check(&key, &long(0xd0, V1, &[0x55; 12], &[1; 8], 100)),
            Verdict::Pass
        );
    }

    #[test]
    fn malformed() {
        let key = CidKey::new();
        let p = long(0xc0, V1, &[1; 21], &[], 1300);
        assert_eq!(check(&key, &p), Verdict::Drop(JunkReason::Malformed));
        let p = long(0xc0, 0x1a2a_3a4a, &[1; 8], &[2; 21], 1300);
        assert_eq!(check(&key, &p), Verdict::Drop(JunkReason::Malformed));
    }

    fn meta(addr: SocketAddr, len: usize, stride: usize) -> RecvMeta {
        RecvMeta {
            addr,
            len,
            stride,
            ..RecvMeta::default()
        }
    }

    #[test]
    fn retain_cuts_junk_segments_and_compacts_entries() {
        let key = Arc::new(CidKey::new());
        let metrics = Arc::new(Metrics::default());
        let filter = Filter::new(key.clone(), metrics.clone(), 64);
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let stranger: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let ours = key.generate();
        let good = |tag: u8, len: usize| {
            let mut p = short(&ours, len);
            p[len - 1] = tag;
            p
        };
        // Entry 0: GRO segments of 100 bytes: junk, good, junk, good (last, 60 bytes).
        let mut b0 = Vec::new();
        b0.extend(short(&[0; CID_LEN], 100));
        b0.extend(good(1, 100));
        b0.extend([0u8; 100]);
        b0.extend(good(2, 60));
        // Entry 1: only junk (too short). Entry 2: one good datagram.
        let b1 = vec![0x41u8; 10];
        let b2 = good(3, 80);
        let mut s0 = b0.clone();
        s0.resize(1000, 0);
        let mut s1 = b1.clone();
        s1.resize(1000, 0);
        let mut s2 = b2.clone();
        s2.resize(1000, 0);
        let mut bufs = [
            IoSliceMut::new(&mut s0),
            IoSliceMut::new(&mut s1),
            IoSliceMut::new(&mut s2),
        ];
        let mut metas = [
            meta(peer, b0.len(), 100),
            meta(stranger, b1.len(), b1.len()),
            meta(peer, b2.len(), b2.len()),
        ];
        let kept = filter.retain(&mut bufs, &mut metas, 3, None);
        assert_eq!(kept, 2);
        assert_eq!(metas[0].len, 160);
        assert_eq!(metas[0].stride, 100);
        assert_eq!(&bufs[0][..100], &good(1, 100)[..]);
        assert_eq!(&bufs[0][100..160], &good(2, 60)[..]);
        assert_eq!(metas[1].len, 80);
        assert_eq!(&bufs[1][..80], &b2[..]);
        let m = metrics.snapshot();
        // Entry 0's unroutable short header came from the peer's address before its first
        // good packet taught us the address, so it is counted as junk too.
        assert_eq!(m.junk_unknown_connection_id, 1);
        assert_eq!(m.junk_fixed_bit_clear, 1);
        assert_eq!(m.junk_too_short, 1);
        assert_eq!(m.junk_total(), 3);
        // Now the peer is known: an unroutable short header from it may be a stateless
        // reset and reaches quinn; the same from a stranger does not.
        let reset = short(&[0x77; CID_LEN], 40);
        for (from, expect) in [(peer, 1), (stranger, 0)] {
            let mut s = reset.clone();
            let mut bufs = [IoSliceMut::new(&mut s)];
            let mut metas = [meta(from, reset.len(), reset.len())];
            assert_eq!(filter.retain(&mut bufs, &mut metas, 1, None), expect);
        }
        assert_eq!(metrics.snapshot().junk_unknown_connection_id, 2);
    }

    proptest! {
        #[test]
        fn classify_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1500),
                                 cid_len in 0usize..=20) {
            let _ = classify(&data, cid_len, |c| c.first() == Some(&0));
        }

        #[test]
        fn retain_never_panics_and_only_shrinks(
            segs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..6),
            stride in 0usize..250,
        ) {
            let key = Arc::new(CidKey::new());
            let filter = Filter::new(key, Arc::new(Metrics::default()), 16);
            let joined: Vec<u8> = segs.concat();
            let mut store: Vec<Vec<u8>> = segs.iter().map(|s| { let mut v = s.clone(); v.resize(256, 0); v }).collect();
            store.push({ let mut v = joined.clone(); v.resize(joined.len().max(1), 0); v });
            let addr: SocketAddr = "[::1]:9".parse().unwrap();
            let mut metas: Vec<RecvMeta> = segs.iter().map(|s| meta(addr, s.len(), stride)).collect();
            metas.push(meta(addr, joined.len(), stride));
            let n = metas.len();
            let mut bufs: Vec<IoSliceMut<'_>> = store.iter_mut().map(|v| IoSliceMut::new(v)).collect();
            let kept = filter.retain(&mut bufs, &mut metas, n + 3, None);
            prop_assert!(kept <= n);
            for m in &metas[..kept] {
                prop_assert!(m.len > 0);
            }
        }
    }
}
