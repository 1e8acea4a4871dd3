//! The seen-cache (ids recently delivered, with expiry) and the message cache (recent
//! messages, served to IWANT and advertised in IHAVE). Both are capped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use p2p_foundation_identity::PeerId;

use crate::hash::{FastMap, FastSet, KeyedState};
use crate::types::{Message, MessageId};

/// Ids seen recently, expiring `ttl` after insertion; at most `max` entries (the oldest are
/// evicted first when full).
#[derive(Debug)]
#[repr(C)] // the table first: it is what a lookup touches
pub(crate) struct SeenCache {
    set: FastSet<u64>,
    /// Insertion-ordered buckets: (expiry, ids).
    buckets: VecDeque<(Instant, Vec<u64>)>,
    max: usize,
    pub(crate) evicted: u64,
}

impl SeenCache {
    pub(crate) fn new(max: usize, hasher: KeyedState) -> Self {
        Self {
            set: FastSet::with_hasher(hasher),
            buckets: VecDeque::new(),
            max,
            evicted: 0,
        }
    }

    pub(crate) fn contains(&self, id: &MessageId) -> bool {
        self.set.contains(&id.short())
    }

    /// Inserts; `expires` should be non-decreasing across calls within a bucket's life.
    pub(crate) fn insert(&mut self, id: &MessageId, expires: Instant) -> bool {
        let key = id.short();
        if !self.set.insert(key) {
            return false;
        }
        while self.set.len() > self.max {
            self.evict_one();
        }
        match self.buckets.back_mut() {
            // One bucket per 100 ms of expiry keeps the per-entry overhead at 8 bytes.
            Some((at, ids)) if expires.saturating_duration_since(*at).as_millis() < 100 => {
                ids.push(key)
            }
            _ => self.buckets.push_back((expires, vec![key])),
        }
        true
    }

    fn evict_one(&mut self) {
        while let Some((_, ids)) = self.buckets.front_mut() {
            if let Some(k) = ids.pop() {
                if self.set.remove(&k) {
                    self.evicted += 1;
                    return;
                }
            } else {
                self.buckets.pop_front();
            }
        }
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.buckets.front() {
            if *at > now {
                break;
            }
            if let Some((_, ids)) = self.buckets.pop_front() {
                for k in ids {
                    self.set.remove(&k);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

/// A cached message and what the core tracks about it while it is cached.
#[derive(Debug)]
pub(crate) struct CacheEntry {
    pub(crate) id: MessageId,
    pub(crate) msg: Arc<Message>,
    pub(crate) first_seen: Instant,
    /// The peer it came from first (`None`: published here).
    pub(crate) from: Option<PeerId>,
    pub(crate) hops: u8,
    /// Mesh peers credited with a (near-)first delivery.
    pub(crate) credited: Credits,
    /// IWANT retransmissions per peer.
    pub(crate) served: Vec<(u64, u8)>,
    /// Acknowledgements forwarded towards the author.
    pub(crate) acks_forwarded: u16,
}

/// Mesh peers credited with a (near-)first delivery of one message, inline (no allocation per
/// cached message): the first four key bytes of up to [`Credits::CAP`] peers. Once full,
/// further peers are not credited (a mesh larger than D_hi = 12 only loses credit it would
/// rarely need).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Credits {
    n: u8,
    keys: [u32; Credits::CAP],
}

impl Credits {
    pub(crate) const CAP: usize = 12;

    fn key(peer: &PeerId) -> u32 {
        let b = peer.as_bytes();
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Credits holding `peer`.
    pub(crate) fn of(peer: &PeerId) -> Self {
        let mut c = Self::default();
        c.insert(peer);
        c
    }

    /// Whether `peer` is credited, or no room is left to credit it.
    pub(crate) fn contains_or_full(&self, peer: &PeerId) -> bool {
        let k = Self::key(peer);
        usize::from(self.n) >= Self::CAP || self.keys[..usize::from(self.n)].contains(&k)
    }

    pub(crate) fn insert(&mut self, peer: &PeerId) {
        if usize::from(self.n) < Self::CAP {
            self.keys[usize::from(self.n)] = Self::key(peer);
            self.n += 1;
        }
    }
}

/// Recent messages in `history_length` windows, one window per heartbeat.
#[derive(Debug)]
#[repr(C)] // the table first: it is what a lookup touches
pub(crate) struct MessageCache {
    entries: FastMap<u64, CacheEntry>,
    windows: VecDeque<Vec<u64>>,
    max: usize,
    pub(crate) refused: u64,
}

impl MessageCache {
    pub(crate) fn new(history: usize, max: usize, hasher: KeyedState) -> Self {
        let mut windows = VecDeque::with_capacity(history);
        windows.push_back(Vec::new());
        for _ in 1..history {
            windows.push_back(Vec::new());
        }
        Self {
            entries: FastMap::with_hasher(hasher),
            windows,
            max,
            refused: 0,
        }
    }

    pub(crate) fn put(&mut self, entry: CacheEntry) {
        if self.entries.len() >= self.max {
            self.refused += 1;
            return;
        }
        let key = entry.id.short();
        if self.entries.contains_key(&key) {
            return;
        }
        self.entries.insert(key, entry);
        if let Some(w) = self.windows.front_mut() {
            w.push(key);
        }
    }

    pub(crate) fn get_mut(&mut self, id: &MessageId) -> Option<&mut CacheEntry> {
        self.entries.get_mut(&id.short()).filter(|e| e.id == *id)
    }

    /// Ids of the `windows` most recent windows, grouped by topic.
    pub(crate) fn gossip_ids(&self, windows: usize) -> Vec<(&crate::types::Topic, MessageId)> {
        let mut out = Vec::new();
        for w in self.windows.iter().take(windows) {
            for k in w {
                if let Some(e) = self.entries.get(k) {
                    out.push((&e.msg.topic, e.id));
                }
            }
        }
        out
    }

    /// Starts a new window, dropping the oldest.
    pub(crate) fn shift(&mut self) {
        if let Some(old) = self.windows.pop_back() {
            for k in &old {
                self.entries.remove(k);
            }
            let mut old = old;
            old.clear();
            self.windows.push_front(old);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A process-wide cache of verified message signatures, for processes that host many nodes
/// (simulations, or a host running several identities).
///
/// Each node already verifies a message once: duplicates are dropped by the seen-cache before
/// any signature check (rust-libp2p verifies every duplicate). When many nodes in one process
/// receive the same message, sharing this cache makes that once per *process*. An entry holds
/// the verified message itself and a hit requires the candidate to be equal to it, field by
/// field, so the cache can never vouch for different bytes.
#[derive(Debug)]
pub struct SignatureCache {
    inner: Mutex<SigInner>,
}

#[derive(Debug)]
struct SigInner {
    map: FastMap<[u8; 32], Arc<Message>>,
    order: VecDeque<[u8; 32]>,
    max: usize,
}

impl SignatureCache {
    /// A cache holding at most `max` verified messages (oldest evicted first).
    pub fn new(max: usize) -> Self {
        Self {
            inner: Mutex::new(SigInner {
                map: FastMap::with_hasher(KeyedState(0x5eed_cafe)),
                order: VecDeque::new(),
                max: max.max(1),
            }),
        }
    }

    fn key(msg: &Message) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(&msg.signature.as_bytes()[..32]);
        k
    }

    /// Verifies `msg`, consulting and filling the cache.
    pub fn verify(&self, msg: &Arc<Message>) -> bool {
        let key = Self::key(msg);
        if let Ok(inner) = self.inner.lock() {
            if let Some(known) = inner.map.get(&key) {
                if Arc::ptr_eq(known, msg) || **known == **msg {
                    return true;
                }
            }
        }
        if msg.verify().is_err() {
            return false;
        }
        if let Ok(mut inner) = self.inner.lock() {
            if inner.map.insert(key, Arc::clone(msg)).is_none() {
                inner.order.push_back(key);
                while inner.order.len() > inner.max {
                    if let Some(old) = inner.order.pop_front() {
                        inner.map.remove(&old);
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn seen_cache_expires_and_stays_bounded() {
        let t0 = Instant::now();
        let mut s = SeenCache::new(100, KeyedState(3));
        for i in 0u32..1000 {
            let mut id = [0u8; 20];
            id[..4].copy_from_slice(&i.to_le_bytes());
            s.insert(&MessageId(id), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(s.len(), 100);
        assert_eq!(s.evicted, 900);
        s.expire(t0 + Duration::from_secs(10));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn signature_cache_never_vouches_for_other_bytes() {
        use crate::types::{AckRequest, Topic};
        use p2p_foundation_identity::Keypair;
        let kp = Keypair::from_secret_bytes([1; 32]);
        let m = Arc::new(Message::sign(
            &kp,
            1,
            Topic::new("t").unwrap(),
            AckRequest::None,
            b"a".to_vec(),
        ));
        let c = SignatureCache::new(10);
        assert!(c.verify(&m));
        assert!(c.verify(&Arc::new((*m).clone())));
        let mut forged = (*m).clone();
        forged.data = b"b".to_vec();
        assert!(!c.verify(&Arc::new(forged)));
    }
}
