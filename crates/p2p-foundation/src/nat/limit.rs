//! Per-source rate limits on what the node sends in answer to unauthenticated datagrams
//! (STUN Binding answers): a token bucket per source IP in a bounded table, plus one
//! bucket for every source together, so the node can neither be used to amplify nor be
//! made to grow its memory. Sans-IO: time is a parameter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets per source IP (IPv6 by /64, v4-mapped as IPv4) and one for all sources.
#[derive(Debug)]
pub(crate) struct AnswerLimiter {
    rate: f64,
    burst: f64,
    total_rate: f64,
    total: Bucket,
    sources: HashMap<IpAddr, Bucket>,
    capacity: usize,
}

impl AnswerLimiter {
    /// `rate` answers per second per source (bursts of `burst`), `total_rate` for all
    /// sources together (bursts of ten times `burst`), at most `capacity` sources tracked.
    pub(crate) fn new(
        rate: f64,
        burst: u32,
        total_rate: f64,
        capacity: usize,
        now: Instant,
    ) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            total_rate,
            total: Bucket {
                tokens: burst * 10.0,
                at: now,
            },
            sources: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether one more answer to `ip` may be sent at `now`.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = source_key(ip);
        if !self.sources.contains_key(&key) && self.sources.len() >= self.capacity {
            let (rate, burst) = (self.rate, self.burst);
            self.sources.retain(|_, b| {
                let refilled = b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate;
                refilled < burst
            });
            if self.sources.len() >= self.capacity {
                // Every tracked source is busy: a flood of sources, refuse newcomers.
                return false;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.sources.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        if !bucket.take(rate, burst, now) {
            return false;
        }
        self.total.take(self.total_rate, burst * 10.0, now)
    }
}

fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_source_burst_then_rate() {
        let t = Instant::now();
        let mut l = AnswerLimiter::new(10.0, 3, 1000.0, 16, t);
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        assert!((0..3).all(|_| l.allow(ip, t)));
        assert!(!l.allow(ip, t));
        assert!(l.allow(ip, t + Duration::from_millis(100)));
        assert!(
            l.allow("198.51.100.8".parse().expect("ip"), t),
            "another source"
        );
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().expect("ip");
        assert!(
            !l.allow(mapped, t + Duration::from_millis(100)),
            "v4-mapped is the same source"
        );
    }

    #[test]
    fn total_cap_and_bounded_table() {
        let t = Instant::now();
        let mut l = AnswerLimiter::new(100.0, 1, 0.0, 4, t);
        let allowed = (0..100u8)
            .filter(|i| l.allow(IpAddr::from([10, 0, 0, *i]), t))
            .count();
        assert!(
            allowed <= 4,
            "{allowed} answered past the table and total caps"
        );
        assert!(l.sources.len() <= 4);
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2::2".parse().expect("ip");
        assert_eq!(source_key(a), source_key(b));
    }
}
