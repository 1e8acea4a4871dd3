//! The routing table: k-buckets with least-recently-seen eviction, a replacement cache per
//! bucket and per-subnet diversity limits.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use p2p_foundation_identity::{Distance, Key, PeerId};

use crate::dist::Dist;

use crate::config::DiversityLimits;
use crate::message::Contact;

/// One routing-table entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) contact: Contact,
    pub(crate) last_seen: Instant,
    pub(crate) failures: u8,
}

#[derive(Default)]
struct Bucket {
    /// Least recently seen first.
    entries: Vec<Entry>,
    /// `Dist::bits` of each entry's key, in the same order: scanning 32 bytes per entry
    /// instead of 128 keeps `closest` and membership checks in cache for 10,000-node runs.
    bits: Vec<Dist>,
    /// Most recently seen last.
    replacements: Vec<Entry>,
    /// The entry being pinged before it may be replaced.
    pinging: Option<PeerId>,
    last_lookup: Option<Instant>,
}

impl Bucket {
    fn position(&self, bits: Dist) -> Option<usize> {
        self.bits.iter().position(|b| *b == bits)
    }

    fn push(&mut self, entry: Entry) {
        self.bits.push(Dist::bits(entry.contact.key()));
        self.entries.push(entry);
    }

    fn remove(&mut self, pos: usize) -> Entry {
        self.bits.remove(pos);
        self.entries.remove(pos)
    }
}

/// What [`RoutingTable::on_heard`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Known already: moved to the most-recently-seen end.
    Updated,
    /// Added.
    Inserted,
    /// Bucket full: the contact waits in the replacement cache; ping this oldest entry, if any.
    Full { ping: Option<Contact> },
    /// Refused: it would break a diversity limit, or it is the local node.
    Refused,
}

pub(crate) struct RoutingTable {
    local: Key,
    k: usize,
    replacement_cache: usize,
    diversity: Option<DiversityLimits>,
    /// `buckets[j]` holds contacts whose distance to `local` has `j` leading zeros (Kademlia
    /// bucket index `255 - j`). Grown on demand: most tables use only the first ~20.
    buckets: Vec<Bucket>,
    len: usize,
    /// Entries per subnet in the whole table, sorted by subnet (only with diversity limits).
    subnet_counts: Vec<(Subnet, u32)>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Subnet {
    V4_24(u32),
    V6_64(u64),
    V6_48(u64),
}

fn subnets(ip: IpAddr, exempt_loopback: bool) -> [Option<Subnet>; 2] {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if exempt_loopback && ip.is_loopback() {
        return [None, None];
    }
    match ip {
        IpAddr::V4(v4) => [Some(Subnet::V4_24(u32::from(v4) >> 8)), None],
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            [
                Some(Subnet::V6_64((bits >> 64) as u64)),
                Some(Subnet::V6_48((bits >> 80) as u64)),
            ]
        }
    }
}

impl RoutingTable {
    pub(crate) fn new(
        local: Key,
        k: usize,
        replacement_cache: usize,
        diversity: Option<DiversityLimits>,
    ) -> Self {
        Self {
            local,
            k,
            replacement_cache,
            diversity,
            buckets: Vec::new(),
            len: 0,
            subnet_counts: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn index(&self, key: &Key) -> Option<usize> {
        let lz = Dist::between(&self.local, key).leading_zeros() as usize;
        (lz < 256).then_some(lz)
    }

    fn limits(&self, s: Subnet) -> (usize, usize) {
        let Some(d) = self.diversity else {
            return (usize::MAX, usize::MAX);
        };
        match s {
            Subnet::V4_24(_) => (d.ipv4_24_per_bucket, d.ipv4_24_per_table),
            Subnet::V6_64(_) => (d.ipv6_64_per_bucket, d.ipv6_64_per_table),
            Subnet::V6_48(_) => (d.ipv6_48_per_bucket, d.ipv6_48_per_table),
        }
    }

    fn subnets_of(&self, contact: &Contact) -> [Option<Subnet>; 2] {
        match self.diversity {
            Some(d) => subnets(contact.addr().ip(), d.exempt_loopback),
            None => [None, None],
        }
    }

    /// Whether adding a contact at `addr` to bucket `j` stays within the diversity limits.
    fn diverse_enough(&self, j: usize, contact: &Contact) -> bool {
        let Some(d) = self.diversity else {
            return true;
        };
        for subnet in self.subnets_of(contact).into_iter().flatten() {
            let (per_bucket, per_table) = self.limits(subnet);
            let in_table = self
                .subnet_counts
                .binary_search_by_key(&subnet, |(s, _)| *s)
                .map_or(0, |i| self.subnet_counts[i].1 as usize);
            if in_table >= per_table {
                return false;
            }
            if in_table == 0 {
                continue;
            }
            let in_bucket = self.buckets.get(j).map_or(0, |b| {
                b.entries
                    .iter()
                    .filter(|e| {
                        subnets(e.contact.addr().ip(), d.exempt_loopback).contains(&Some(subnet))
                    })
                    .count()
            });
            if in_bucket >= per_bucket {
                return false;
            }
        }
        true
    }

    fn count_subnets(&mut self, contact: &Contact, added: bool) {
        for subnet in self.subnets_of(contact).into_iter().flatten() {
            match self
                .subnet_counts
                .binary_search_by_key(&subnet, |(s, _)| *s)
            {
                Ok(i) => {
                    if added {
                        self.subnet_counts[i].1 += 1;
                    } else {
                        self.subnet_counts[i].1 -= 1;
                        if self.subnet_counts[i].1 == 0 {
                            self.subnet_counts.remove(i);
                        }
                    }
                }
                Err(i) => {
                    if added {
                        self.subnet_counts.insert(i, (subnet, 1));
                    }
                }
            }
        }
    }

    /// Records that `contact` was heard from directly (it sent a request or a response).
    pub(crate) fn on_heard(
        &mut self,
        now: Instant,
        contact: Contact,
        liveness_window: Duration,
    ) -> Insert {
        let Some(j) = self.index(contact.key()) else {
            return Insert::Refused;
        };
        if self.buckets.len() <= j {
            self.buckets.resize_with(j + 1, Bucket::default);
        }
        let bucket = &mut self.buckets[j];
        if let Some(pos) = bucket.position(Dist::bits(contact.key())) {
            let mut entry = bucket.remove(pos);
            let old = entry.contact;
            entry.last_seen = now;
            entry.failures = 0;
            entry.contact = contact;
            bucket.push(entry);
            if old.addr() != contact.addr() {
                self.count_subnets(&old, false);
                self.count_subnets(&contact, true);
            }
            return Insert::Updated;
        }
        let entry = Entry {
            contact,
            last_seen: now,
            failures: 0,
        };
        let full = bucket.entries.len() >= self.k;
        if !self.diverse_enough(j, &contact) {
            return Insert::Refused;
        }
        let bucket = &mut self.buckets[j];
        if !full {
            bucket
                .replacements
                .retain(|e| e.contact.peer() != contact.peer());
            bucket.push(entry);
            self.len += 1;
            self.count_subnets(&contact, true);
            return Insert::Inserted;
        }
        bucket
            .replacements
            .retain(|e| e.contact.peer() != contact.peer());
        if self.replacement_cache > 0 {
            if bucket.replacements.len() >= self.replacement_cache {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(entry);
        }
        let oldest = bucket.entries[0];
        let ping = if bucket.pinging.is_none() && oldest.last_seen + liveness_window <= now {
            bucket.pinging = Some(oldest.contact.peer());
            Some(oldest.contact)
        } else {
            None
        };
        Insert::Full { ping }
    }

    /// The ping of a full bucket's oldest entry ended; on failure the entry is replaced.
    pub(crate) fn ping_done(&mut self, contact: &Contact, alive: bool) {
        let Some(j) = self.index(contact.key()) else {
            return;
        };
        let Some(bucket) = self.buckets.get_mut(j) else {
            return;
        };
        if bucket.pinging == Some(contact.peer()) {
            bucket.pinging = None;
        }
        if !alive {
            self.remove_and_promote(j, contact.peer());
        }
    }

    /// A request to `peer` failed. Returns whether the entry was removed.
    pub(crate) fn on_failed(&mut self, contact: &Contact, max_failures: u8) -> bool {
        let Some(j) = self.index(contact.key()) else {
            return false;
        };
        let Some(bucket) = self.buckets.get_mut(j) else {
            return false;
        };
        bucket
            .replacements
            .retain(|e| e.contact.peer() != contact.peer());
        let Some(entry) = bucket
            .entries
            .iter_mut()
            .find(|e| e.contact.peer() == contact.peer())
        else {
            return false;
        };
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= max_failures || !bucket.replacements.is_empty() {
            self.remove_and_promote(j, contact.peer());
            true
        } else {
            false
        }
    }

    /// `peer` left the network: removes its entry (promoting a replacement) and any
    /// replacement entry of it. Returns whether it was in the table.
    pub(crate) fn remove_peer(&mut self, peer: &PeerId) -> bool {
        let Some(j) = self.index(&peer.kad_key()) else {
            return false;
        };
        let Some(bucket) = self.buckets.get_mut(j) else {
            return false;
        };
        bucket.replacements.retain(|e| e.contact.peer() != *peer);
        let present = bucket.entries.iter().any(|e| e.contact.peer() == *peer);
        if present {
            self.remove_and_promote(j, *peer);
        }
        present
    }

    fn remove_and_promote(&mut self, j: usize, peer: PeerId) {
        let bucket = &mut self.buckets[j];
        let Some(pos) = bucket.entries.iter().position(|e| e.contact.peer() == peer) else {
            return;
        };
        let removed = bucket.remove(pos);
        self.len -= 1;
        self.count_subnets(&removed.contact, false);
        // The most recently seen replacement that still fits the diversity limits.
        while let Some(replacement) = self.buckets[j].replacements.pop() {
            if self.diverse_enough(j, &replacement.contact) {
                self.buckets[j].push(replacement);
                self.len += 1;
                self.count_subnets(&replacement.contact, true);
                break;
            }
        }
    }

    /// Up to `count` contacts closest to `target`, closest first, never `exclude`.
    ///
    /// Walks the buckets in distance order instead of sorting the whole table: with
    /// `t = leading_zeros(local ^ target)`, bucket `t` holds the closest entries, then every
    /// deeper bucket (all at the same distance prefix), then buckets `t - 1`, `t - 2`, … in order.
    pub(crate) fn closest(
        &self,
        target: &Key,
        count: usize,
        exclude: Option<&Key>,
    ) -> Vec<Contact> {
        let mut out: Vec<Contact> = Vec::with_capacity(count.min(self.len));
        if count == 0 {
            return out;
        }
        let target_bits = Dist::bits(target);
        let exclude = exclude.map(Dist::bits);
        let t = Dist::between(&self.local, target).leading_zeros() as usize;
        // (distance, bucket, index in bucket)
        let mut group: Vec<(Dist, u16, u16)> = Vec::new();
        let take = |group: &mut Vec<(Dist, u16, u16)>, out: &mut Vec<Contact>| {
            let want = count - out.len();
            if group.len() > want {
                group.select_nth_unstable_by_key(want - 1, |a| a.0);
                group.truncate(want);
            }
            group.sort_unstable_by_key(|a| a.0);
            out.extend(
                group
                    .drain(..)
                    .map(|(_, b, i)| self.buckets[usize::from(b)].entries[usize::from(i)].contact),
            );
        };
        let gather = |range: std::ops::Range<usize>, group: &mut Vec<(Dist, u16, u16)>| {
            for j in range {
                for (i, bits) in self.buckets[j].bits.iter().enumerate() {
                    if Some(*bits) != exclude {
                        group.push((bits.xor(target_bits), j as u16, i as u16));
                    }
                }
            }
        };
        let n = self.buckets.len();
        if t < n {
            gather(t..t + 1, &mut group);
            take(&mut group, &mut out);
            if out.len() < count {
                gather(t + 1..n, &mut group);
                take(&mut group, &mut out);
            }
        }
        for j in (0..t.min(n)).rev() {
            if out.len() >= count {
                break;
            }
            gather(j..j + 1, &mut group);
            take(&mut group, &mut out);
        }
        out
    }

    /// Whether `peer` is in the table.
    #[cfg(test)]
    pub(crate) fn contains(&self, contact: &Contact) -> bool {
        self.index(contact.key())
            .and_then(|j| self.buckets.get(j))
            .is_some_and(|b| b.entries.iter().any(|e| e.contact.peer() == contact.peer()))
    }

    /// Every entry, bucket by bucket.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// Notes a lookup of `target` (its bucket needs no refresh for a while).
    pub(crate) fn touch(&mut self, now: Instant, target: &Key) {
        if let Some(j) = self.index(target) {
            if let Some(b) = self.buckets.get_mut(j) {
                b.last_lookup = Some(now);
            }
        }
    }

    /// Buckets (as leading-zero counts) with no lookup for `interval`, up to the deepest
    /// non-empty one. With `only_unfilled`, only buckets with fewer than k entries.
    pub(crate) fn stale_buckets(
        &self,
        now: Instant,
        interval: Duration,
        only_unfilled: bool,
    ) -> Vec<usize> {
        let deepest = self.buckets.iter().rposition(|b| !b.entries.is_empty());
        let Some(deepest) = deepest else {
            return Vec::new();
        };
        (0..=deepest)
            .filter(|&j| {
                let b = &self.buckets[j];
                let stale = b.last_lookup.is_none_or(|t| t + interval <= now);
                stale && (!only_unfilled || b.entries.len() < self.k)
            })
            .collect()
    }

    /// A key whose distance to the local key has exactly `j` leading zeros, random below.
    pub(crate) fn random_key_in_bucket(&self, j: usize, random: [u8; 32]) -> Key {
        let mut d = random;
        let j = j.min(255);
        let byte = j / 8;
        let bit = j % 8;
        for b in d.iter_mut().take(byte) {
            *b = 0;
        }
        // Keep bits below `bit` random, clear the ones above, set the one at `bit`.
        let top = 0x80u8 >> bit;
        d[byte] = (d[byte] & (top.wrapping_sub(1))) | top;
        self.local.at_distance(&Distance::from_bytes(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_identity::Keypair;
    use std::net::{Ipv4Addr, SocketAddr};

    fn contact(seed: u32, ip: [u8; 4]) -> Contact {
        let mut s = [0u8; 32];
        s[..4].copy_from_slice(&seed.to_be_bytes());
        let peer = Keypair::from_secret_bytes(s).peer_id();
        Contact::new(peer, SocketAddr::from((Ipv4Addr::from(ip), 4000)))
    }

    /// Three contacts that land in the same bucket (the farthest, 0) of `t`.
    fn three_in_bucket_zero(t: &RoutingTable) -> Vec<Contact> {
        let mut same = Vec::new();
        let mut i = 0;
        while same.len() < 3 {
            let c = contact(i, [10, 0, (i >> 8) as u8, i as u8]);
            if t.index(c.key()) == Some(0) {
                same.push(c);
            }
            i += 1;
        }
        same
    }

    fn local() -> Key {
        Keypair::from_secret_bytes([0xee; 32]).peer_id().kad_key()
    }

    #[test]
    fn a_peer_that_leaves_is_removed_at_once_and_a_replacement_takes_its_place() {
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let mut t = RoutingTable::new(local(), 2, 3, None);
        let same = three_in_bucket_zero(&t);
        t.on_heard(now, same[0], window);
        t.on_heard(now, same[1], window);
        // The bucket is full: the third waits as a replacement.
        assert_eq!(
            t.on_heard(now, same[2], window),
            Insert::Full { ping: None }
        );
        assert!(t.remove_peer(&same[0].peer()));
        assert!(!t.contains(&same[0]));
        assert!(t.contains(&same[2]), "the replacement was promoted");
        assert_eq!(t.len(), 2);
        // Gone already; a replacement entry of a leaving peer goes too.
        assert!(!t.remove_peer(&same[0].peer()));
        assert!(t.remove_peer(&same[1].peer()));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_bucket_pings_oldest_then_replaces_it_on_failure() {
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let mut t = RoutingTable::new(local(), 2, 3, None);
        let same = three_in_bucket_zero(&t);
        assert_eq!(t.on_heard(now, same[0], window), Insert::Inserted);
        assert_eq!(t.on_heard(now, same[1], window), Insert::Inserted);
        // Oldest seen recently: no ping, the newcomer waits.
        assert_eq!(
            t.on_heard(now, same[2], window),
            Insert::Full { ping: None }
        );
        let later = now + window;
        assert_eq!(
            t.on_heard(later, same[2], window),
            Insert::Full {
                ping: Some(same[0])
            }
        );
        // Only one ping per bucket at a time.
        assert_eq!(
            t.on_heard(later, same[2], window),
            Insert::Full { ping: None }
        );
        // The oldest answers: kept, moved to the back.
        t.ping_done(&same[0], true);
        t.on_heard(later, same[0], window);
        assert!(t.contains(&same[0]));
        let again = later + window;
        assert_eq!(
            t.on_heard(again, same[2], window),
            Insert::Full {
                ping: Some(same[1])
            }
        );
        // Now the oldest does not answer: replaced by the newcomer.
        t.ping_done(&same[1], false);
        assert!(!t.contains(&same[1]));
        assert!(t.contains(&same[2]));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn diversity_limits_per_bucket_and_table() {
        let now = Instant::now();
        let limits = DiversityLimits {
            ipv4_24_per_bucket: 1,
            ipv4_24_per_table: 2,
            ..DiversityLimits::default()
        };
        let mut t = RoutingTable::new(local(), 20, 3, Some(limits));
        let mut accepted = 0;
        for i in 0..50 {
            if t.on_heard(now, contact(i, [192, 0, 2, i as u8]), Duration::ZERO) == Insert::Inserted
            {
                accepted += 1;
            }
        }
        assert!(accepted <= 2, "{accepted} from one /24");
        // Other subnets are still welcome.
        assert_eq!(
            t.on_heard(now, contact(1000, [198, 51, 100, 1]), Duration::ZERO),
            Insert::Inserted
        );
        // Loopback is exempt.
        let mut loops = 0;
        for i in 2000..2040 {
            if t.on_heard(now, contact(i, [127, 0, 0, 1]), Duration::ZERO) == Insert::Inserted {
                loops += 1;
            }
        }
        assert!(loops > 2);
    }

    #[test]
    fn closest_is_sorted_and_exact() {
        let now = Instant::now();
        let mut t = RoutingTable::new(local(), 20, 3, None);
        let all: Vec<Contact> = (0..300)
            .map(|i| contact(i, [10, 1, (i >> 8) as u8, i as u8]))
            .collect();
        for c in &all {
            t.on_heard(now, *c, Duration::ZERO);
        }
        let inside: Vec<Contact> = all.iter().copied().filter(|c| t.contains(c)).collect();
        assert_eq!(inside.len(), t.len());
        let target = Key::for_record(b"x");
        let got = t.closest(&target, 20, None);
        let mut want = inside.clone();
        want.sort_by_key(|c| c.key().distance(&target));
        want.truncate(20);
        assert_eq!(got, want);
    }

    #[test]
    fn random_key_lands_in_its_bucket() {
        let t = RoutingTable::new(local(), 20, 3, None);
        for j in [0usize, 1, 7, 8, 9, 100, 255] {
            let k = t.random_key_in_bucket(j, [0xa5; 32]);
            assert_eq!(t.index(&k), Some(j));
        }
    }
}
