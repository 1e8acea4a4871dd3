//! Per-source token buckets with a bounded table, and quota counters, shared by the
//! crate's servers.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Instant;

/// Bits of an IPv6 address that name one source for rate limits and quotas.
const IPV6_SOURCE_PREFIX: u32 = 64;

/// The key rate limits and quotas count `addr` under: its IPv4 address (a v4-mapped one
/// counts as the IPv4 address it maps), or its IPv6 /64. One host or site is routinely
/// handed a whole /64, so counting IPv6 addresses one by one would give a single sender
/// 2^64 budgets.
pub(crate) fn source(addr: SocketAddr) -> IpAddr {
    match crate::canonical_addr(addr).ip() {
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - IPV6_SOURCE_PREFIX);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// Token buckets keyed by `K` (a [`source`], a peer id): `per_sec` tokens a second up to
/// `burst`. At most `max_keys` buckets are held; when the table is full, buckets that have
/// refilled completely (indistinguishable from a fresh one) are forgotten, and if none has,
/// a new key is refused until one does. Memory is bounded by `max_keys`.
#[derive(Debug)]
pub(crate) struct KeyedBuckets<K> {
    per_sec: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Eq + Hash + Copy> KeyedBuckets<K> {
    pub(crate) fn new(per_sec: u32, burst: u32, max_keys: usize) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    fn level(&self, tokens: f64, at: Instant, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(at).as_secs_f64();
        (tokens + dt * self.per_sec).min(self.burst)
    }

    /// Takes one token for `key` at `now`; false when its bucket is empty (or the table is
    /// full of sources that are all still spending).
    pub(crate) fn allow(&mut self, key: K, now: Instant) -> bool {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_keys {
            let (per_sec, burst) = (self.per_sec, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                let dt = now.saturating_duration_since(*at).as_secs_f64();
                (*tokens + dt * per_sec) < burst
            });
            if self.buckets.len() >= self.max_keys {
                return false;
            }
        }
        let burst = self.burst;
        let (tokens, at) = self.buckets.get(&key).copied().unwrap_or((burst, now));
        let level = self.level(tokens, at, now);
        let allowed = level >= 1.0;
        let left = if allowed { level - 1.0 } else { level };
        self.buckets.insert(key, (left, now));
        allowed
    }

    /// Buckets held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// How many entries each key (a [`source`], a peer id) holds, for quotas; a key whose count
/// falls to zero is forgotten, so the map never outgrows the table it counts.
#[derive(Debug)]
pub(crate) struct Counts<K>(HashMap<K, usize>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: Eq + Hash + Copy> Counts<K> {
    pub(crate) fn get(&self, key: K) -> usize {
        self.0.get(&key).copied().unwrap_or(0)
    }

    pub(crate) fn add(&mut self, key: K) {
        *self.0.entry(key).or_insert(0) += 1;
    }

    pub(crate) fn release(&mut self, key: K) {
        if let Some(n) = self.0.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64s() {
        let at = |s: &str| source(s.parse().expect("addr"));
        assert_eq!(at("198.51.100.7:1"), at("198.51.100.7:2"));
        assert_eq!(at("[::ffff:198.51.100.7]:3"), at("198.51.100.7:1"));
        assert_ne!(at("198.51.100.7:1"), at("198.51.100.8:1"));
        assert_eq!(
            at("[2001:db8:0:1::1]:1"),
            at("[2001:db8:0:1:ffff:ffff:ffff:ffff]:2")
        );
        assert_ne!(at("[2001:db8:0:1::1]:1"), at("[2001:db8:0:2::1]:1"));
    }

    #[test]
    fn burst_then_rate_per_key() {
        let now = Instant::now();
        let mut b = KeyedBuckets::new(20, 40, 16);
        assert_eq!((0..100).filter(|_| b.allow(1u8, now)).count(), 40);
        // Another key has its own bucket.
        assert!(b.allow(2u8, now));
        // Half a second refills ten tokens.
        let later = now + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| b.allow(1u8, later)).count(), 10);
    }

    #[test]
    fn table_is_bounded_and_idle_keys_are_forgotten() {
        let now = Instant::now();
        let mut b = KeyedBuckets::new(10, 2, 4);
        for k in 0..4u32 {
            assert!(b.allow(k, now));
        }
        // Full of sources still spending: a fifth is refused.
        assert!(!b.allow(99, now));
        assert_eq!(b.len(), 4);
        // Once they have refilled, they make room.
        let later = now + Duration::from_secs(1);
        assert!(b.allow(99, later));
        assert!(b.len() <= 4);
    }
}
