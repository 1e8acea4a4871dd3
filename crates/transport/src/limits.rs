//! Per-source handshake rate limiting (sans-IO token buckets; time is a parameter).
//!
//! A source is an IPv4 address, or an IPv6 /64: a single host or site is routinely handed a
//! whole /64, so counting IPv6 addresses one by one would give one attacker 2^64 buckets.
//!
//! A UDP source address is only a claim: anyone can put a victim's address on an Initial.
//! So handshakes are charged to one of two budgets per source ([`SourceLimits`]): claimed
//! (a QUIC Initial without a token) or proven (a QUIC Initial echoing a Retry token, or a
//! TCP connection, whose three-way handshake proved the address). A claimed source over its
//! budget is not refused but sent a stateless Retry; a proven source over its budget is
//! refused. A spoofer can thus spend only the claimed budget of the address it forges, and
//! the address's owner, asked for a Retry, is charged to the proven budget the spoofer
//! cannot touch: one extra round trip, never a lockout.
//!
//! The proven budget is a fresh one rather than the claimed one charged again (that one
//! may be empty because of the spoofer) and rather than no charge at all (a flooder that
//! can receive at its address answers Retries too, and must stay limited). A source can
//! therefore start up to twice the configured rate of handshakes, half of them paying a
//! round trip for the Retry. The two budgets keep separate tables, so spoofed Initials from
//! many forged sources fill only the claimed table, never the proven one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

/// IPv6 addresses sharing this many leading bits count as one source.
const IPV6_PREFIX_BITS: u32 = 64;

/// Whether a handshake's source address is proven to belong to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proof {
    /// A QUIC Initial without a valid token: the address may be forged.
    Claimed,
    /// A QUIC Initial echoing our Retry token, or a TCP connection.
    Validated,
}

/// The two handshake budgets of every source: one for claimed, one for proven addresses.
#[derive(Debug)]
pub(crate) struct SourceLimits {
    claimed: HandshakeLimiter,
    validated: HandshakeLimiter,
}

impl SourceLimits {
    /// Each budget: `rate` per second, `burst` at most, at most `capacity` sources tracked.
    pub(crate) fn new(rate: f64, burst: u32, capacity: usize) -> Self {
        Self {
            claimed: HandshakeLimiter::new(rate, burst, capacity),
            validated: HandshakeLimiter::new(rate, burst, capacity),
        }
    }

    /// Takes one token from `ip`'s `proof` budget at `now`; false means over budget.
    pub(crate) fn allow(&mut self, ip: IpAddr, proof: Proof, now: Instant) -> bool {
        match proof {
            Proof::Claimed => self.claimed.allow(ip, now),
            Proof::Validated => self.validated.allow(ip, now),
        }
    }
}

/// Token buckets keyed by source (IPv4 address or IPv6 /64), bounded in size.
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

    /// Takes one token for `ip`'s source at `now`; false means refuse the handshake.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = source(ip);
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

/// The bucket key: v4-mapped IPv6 addresses count as their IPv4 address, other IPv6
/// addresses as their /64.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_PREFIX_BITS);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
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
    fn ipv6_counts_per_64() {
        let mut l = HandshakeLimiter::new(0.001, 2, 100);
        let t = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.allow(a, t));
        assert!(l.allow(b, t));
        assert!(!l.allow(a, t), "one /64 shares one bucket");
        assert!(!l.allow("2001:db8:1:2::9".parse().unwrap(), t));
        assert!(l.allow(other, t), "the next /64 is another source");
        assert_eq!(l.buckets.len(), 2);
    }

    #[test]
    fn proven_sources_have_a_budget_spoofers_cannot_spend() {
        let mut l = SourceLimits::new(0.001, 2, 2);
        let t = Instant::now();
        let victim: IpAddr = "192.0.2.7".parse().unwrap();
        // A spoofer spends the victim's claimed budget...
        assert!(l.allow(victim, Proof::Claimed, t));
        assert!(l.allow(victim, Proof::Claimed, t));
        assert!(!l.allow(victim, Proof::Claimed, t));
        // ...and fills the claimed table with forged sources.
        for i in 1..=4 {
            let _ = l.allow(IpAddr::from([198, 51, 100, i]), Proof::Claimed, t);
        }
        // The victim, once proven, has its whole budget; then it is limited like anyone.
        assert!(l.allow(victim, Proof::Validated, t));
        assert!(l.allow(victim, Proof::Validated, t));
        assert!(!l.allow(victim, Proof::Validated, t));
        assert!(l.allow("192.0.2.8".parse().unwrap(), Proof::Validated, t));
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
