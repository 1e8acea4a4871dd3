use std::time::{Duration, Instant};

/// A point in virtual time: either an [`Instant`] obtained from the simulation
/// ([`Context::now`](crate::Context::now), [`Simulator::now`](crate::Simulator::now), or
/// derived from them), or a [`Duration`] meaning "this long after the simulation started".
///
/// Sealed: implemented for `Instant` and `Duration` only.
pub trait SimTime: sealed::Sealed {
    /// Nanoseconds since the simulation start, given the simulation's base instant.
    /// Instants before the base map to 0; values beyond ~584 years saturate.
    fn to_sim_nanos(self, base: Instant) -> u64;
}

impl SimTime for Instant {
    #[inline]
    fn to_sim_nanos(self, base: Instant) -> u64 {
        duration_nanos(self.saturating_duration_since(base))
    }
}

impl SimTime for Duration {
    #[inline]
    fn to_sim_nanos(self, _base: Instant) -> u64 {
        duration_nanos(self)
    }
}

#[inline]
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::time::Instant {}
    impl Sealed for std::time::Duration {}
}
