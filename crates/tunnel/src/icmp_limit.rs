//! The token bucket both TUN endpoints (the overlay and the transition tunnels) use for the
//! ICMP errors they send to their host.

use std::time::{Duration, Instant};

/// Most ICMP errors an endpoint sends to its host per second (burst as large), RFC 4443
/// section 2.4 f and RFC 1812 section 4.3.2.8.
pub const ICMP_ERRORS_PER_SEC: u32 = 100;

/// A token bucket of [`ICMP_ERRORS_PER_SEC`] ICMP errors per second, refilled at most
/// every 10 ms.
#[derive(Debug, Clone)]
pub(crate) struct IcmpLimiter {
    tokens: u32,
    refilled: Option<Instant>,
}

impl IcmpLimiter {
    pub(crate) fn new() -> Self {
        Self {
            tokens: ICMP_ERRORS_PER_SEC,
            refilled: None,
        }
    }

    /// Takes a token at `now`; `false` when the bucket is empty.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        let last = *self.refilled.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        if elapsed >= Duration::from_millis(10) {
            let add = (elapsed.as_millis() as u64 * u64::from(ICMP_ERRORS_PER_SEC) / 1000)
                .min(u64::from(ICMP_ERRORS_PER_SEC)) as u32;
            self.tokens = (self.tokens + add).min(ICMP_ERRORS_PER_SEC);
            self.refilled = Some(now);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}
