//! Per-source-IP handshake rate limiting (a sans-IO token bucket; time is a parameter).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Token buckets keyed by source IP, bounded in size.
#[derive(Debug)]
pub(crate) struct HandshakeLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl HandshakeLimiter {
    /// `rate` tokens per second, `burst` at most, tracking at most `capacity` IPs.
    pub(crate) fn new(rate: f64, burst: u32, capacity: usize) -> Self {
        Self {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `ip` at `now`; false means refuse the handshake.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = canonical(ip);
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.capacity {
            // Forget buckets that have refilled completely: they carry no information.
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if self.buckets.len() >= self.capacity {
                // Still full of active sources: refuse unknown ones rather than grow.
                return false;
            }
        }
        let (tokens, at) = self.buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// v4-mapped IPv6 addresses count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let mut l = HandshakeLimiter::new(2.0, 3, 100);
        let t = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!((0..3).all(|_| l.allow(ip, t)));
        assert!(!l.allow(ip, t));
        let other: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert!(l.allow(other, t));
        assert!(l.allow(ip, t + Duration::from_millis(500)));
        assert!(!l.allow(ip, t + Duration::from_millis(500)));
        // v4-mapped shares the bucket with the IPv4 address.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(!l.allow(mapped, t + Duration::from_millis(500)));
    }

    #[test]
    fn bounded_table() {
        let mut l = HandshakeLimiter::new(1.0, 1, 2);
        let t = Instant::now();
        let ips: Vec<IpAddr> = (1..=3).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        assert!(l.allow(ips[0], t));
        assert!(l.allow(ips[1], t));
        assert!(!l.allow(ips[2], t), "table full of active sources");
        assert!(
            l.allow(ips[2], t + Duration::from_secs(5)),
            "refilled buckets are forgotten"
        );
        assert!(l.buckets.len() <= 2);
    }
}
