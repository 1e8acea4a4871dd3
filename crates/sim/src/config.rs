use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use rand::Rng;

use crate::time::duration_nanos;

/// How long a message takes from sender to receiver.
///
/// Every variant is deterministic for a given simulation seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Latency {
    /// Every message takes exactly this long.
    Constant(Duration),
    /// Each message draws its latency independently and uniformly from `min..=max`.
    /// Messages on one link can therefore overtake each other.
    Uniform {
        /// Smallest latency.
        min: Duration,
        /// Largest latency.
        max: Duration,
    },
    /// Each link (unordered node pair) has a fixed base latency drawn once, uniformly from
    /// `min..=max`, plus a per-message jitter drawn uniformly from `0..=jitter`
    /// (`Duration::ZERO` for none). The link latency is a hash of the simulation seed and
    /// the pair, so it needs no memory per link and is the same in both directions.
    PerLink {
        /// Smallest link latency.
        min: Duration,
        /// Largest link latency.
        max: Duration,
        /// Largest extra per-message delay.
        jitter: Duration,
    },
}

impl Default for Latency {
    /// 50 ms constant.
    fn default() -> Self {
        Latency::Constant(Duration::from_millis(50))
    }
}

/// The whole network's default behaviour: latency model and loss probability.
///
/// ```
/// use std::time::Duration;
/// use p2p_foundation_sim::{Latency, NetworkConfig};
///
/// let config = NetworkConfig::default()
///     .with_latency(Latency::Uniform { min: Duration::from_millis(10), max: Duration::from_millis(90) })
///     .with_loss(0.01);
/// assert_eq!(config.loss(), 0.01);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    latency: Latency,
    loss: f64,
}

impl Default for NetworkConfig {
    /// 50 ms constant latency, no loss.
    fn default() -> Self {
        Self {
            latency: Latency::default(),
            loss: 0.0,
        }
    }
}

impl NetworkConfig {
    /// The default configuration: 50 ms constant latency, no loss.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the latency model.
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the probability (clamped to `0.0..=1.0`; NaN counts as 0) that any message is
    /// lost.
    pub fn with_loss(mut self, probability: f64) -> Self {
        self.loss = clamp_probability(probability);
        self
    }

    /// The latency model.
    pub fn latency(&self) -> Latency {
        self.latency
    }

    /// The loss probability.
    pub fn loss(&self) -> f64 {
        self.loss
    }
}

/// Overrides for one direction of one link, set with
/// [`Simulator::set_link`](crate::Simulator::set_link) or
/// [`Simulator::set_link_one_way`](crate::Simulator::set_link_one_way). Fields left `None`
/// use the network's default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkConfig {
    /// Fixed latency of this link, replacing the network's latency model.
    pub latency: Option<Duration>,
    /// Loss probability of this link (clamped to `0.0..=1.0`), replacing the network's.
    pub loss: Option<f64>,
}

impl LinkConfig {
    /// A link with this fixed latency.
    pub fn latency(latency: Duration) -> Self {
        Self {
            latency: Some(latency),
            loss: None,
        }
    }

    /// A link with this loss probability.
    pub fn loss(probability: f64) -> Self {
        Self {
            latency: None,
            loss: Some(probability),
        }
    }
}

pub(crate) fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// Loss as an integer threshold compared with a uniform `u64`: lost iff `draw < threshold`.
/// `None` means never lost, `Some(u64::MAX)` with `always` means always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    Never,
    Threshold(u64),
    Always,
}

impl Loss {
    pub(crate) fn from_probability(p: f64) -> Self {
        let p = clamp_probability(p);
        if p <= 0.0 {
            Loss::Never
        } else if p >= 1.0 {
            Loss::Always
        } else {
            // p * 2^64, strictly below 2^64 because p < 1.
            Loss::Threshold((p * 18_446_744_073_709_551_616.0) as u64)
        }
    }

    #[inline]
    pub(crate) fn is_lost(self, rng: &mut impl Rng) -> bool {
        match self {
            Loss::Never => false,
            Loss::Always => true,
            Loss::Threshold(t) => rng.next_u64() < t,
        }
    }
}

/// A latency model in nanoseconds, ready for the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LatencyNs {
    Constant(u64),
    Uniform { min: u64, span: u64 },
    PerLink { min: u64, span: u64, jitter: u64 },
}

impl LatencyNs {
    fn new(latency: Latency) -> Self {
        let span = |min: Duration, max: Duration| {
            let (lo, hi) = (duration_nanos(min), duration_nanos(max));
            (lo.min(hi), hi.max(lo) - lo.min(hi))
        };
        match latency {
            Latency::Constant(d) => LatencyNs::Constant(duration_nanos(d)),
            Latency::Uniform { min, max } => {
                let (min, span) = span(min, max);
                LatencyNs::Uniform { min, span }
            }
            Latency::PerLink { min, max, jitter } => {
                let (min, span) = span(min, max);
                LatencyNs::PerLink {
                    min,
                    span,
                    jitter: duration_nanos(jitter),
                }
            }
        }
    }
}

/// Uniform in `0..=span` from one `u64` draw (multiply-high; bias < 2^-64 * span).
#[inline]
fn uniform_inclusive(x: u64, span: u64) -> u64 {
    if span == u64::MAX {
        return x;
    }
    ((u128::from(x) * (u128::from(span) + 1)) >> 64) as u64
}

/// SplitMix64's finaliser: a fast, well-mixing 64-bit permutation.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hasher for the link-override map keyed by `(from << 32) | to`: only lookups, never
/// iterated, so the order of the map cannot leak into the simulation.
#[derive(Default)]
pub(crate) struct LinkKeyHasher(u64);

impl Hasher for LinkKeyHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// The network as the simulator's hot path sees it.
#[derive(Debug)]
pub(crate) struct Network {
    config: NetworkConfig,
    latency: LatencyNs,
    loss: Loss,
    link_seed: u64,
    links: HashMap<u64, (Option<u64>, Option<Loss>), BuildHasherDefault<LinkKeyHasher>>,
}

impl Network {
    pub(crate) fn new(config: NetworkConfig, link_seed: u64) -> Self {
        Self {
            latency: LatencyNs::new(config.latency),
            loss: Loss::from_probability(config.loss),
            config,
            link_seed,
            links: HashMap::default(),
        }
    }

    pub(crate) fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub(crate) fn set_latency(&mut self, latency: Latency) {
        self.config.latency = latency;
        self.latency = LatencyNs::new(latency);
    }

    pub(crate) fn set_loss(&mut self, probability: f64) {
        self.config.loss = clamp_probability(probability);
        self.loss = Loss::from_probability(probability);
    }

    pub(crate) fn set_link(&mut self, from: u32, to: u32, link: LinkConfig) {
        let key = (u64::from(from) << 32) | u64::from(to);
        if link.latency.is_none() && link.loss.is_none() {
            self.links.remove(&key);
        } else {
            let entry = (
                link.latency.map(duration_nanos),
                link.loss.map(Loss::from_probability),
            );
            self.links.insert(key, entry);
        }
    }

    /// Decides the fate of one message from `from` to `to`: `None` if lost, else its
    /// latency in nanoseconds. Draws from `rng` only when the model is random.
    #[inline]
    pub(crate) fn transit(&self, from: u32, to: u32, rng: &mut impl Rng) -> Option<u64> {
        let (fixed, loss) = if self.links.is_empty() {
            (None, self.loss)
        } else {
            match self.links.get(&((u64::from(from) << 32) | u64::from(to))) {
                Some(&(lat, loss)) => (lat, loss.unwrap_or(self.loss)),
                None => (None, self.loss),
            }
        };
        if loss.is_lost(rng) {
            return None;
        }
        if let Some(latency) = fixed {
            return Some(latency);
        }
        Some(match self.latency {
            LatencyNs::Constant(ns) => ns,
            LatencyNs::Uniform { min, span } => min + uniform_inclusive(rng.next_u64(), span),
            LatencyNs::PerLink { min, span, jitter } => {
                let (lo, hi) = if from <= to { (from, to) } else { (to, from) };
                let h = mix64(self.link_seed ^ mix64((u64::from(lo) << 32) | u64::from(hi)));
                let base = min + uniform_inclusive(h, span);
                if jitter == 0 {
                    base
                } else {
                    base.saturating_add(uniform_inclusive(rng.next_u64(), jitter))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_inclusive_bounds() {
        assert_eq!(uniform_inclusive(0, 10), 0);
        assert_eq!(uniform_inclusive(u64::MAX, 10), 10);
        assert_eq!(uniform_inclusive(u64::MAX, 0), 0);
        assert_eq!(uniform_inclusive(12345, u64::MAX), 12345);
    }

    #[test]
    fn loss_thresholds() {
        assert_eq!(Loss::from_probability(0.0), Loss::Never);
        assert_eq!(Loss::from_probability(-1.0), Loss::Never);
        assert_eq!(Loss::from_probability(f64::NAN), Loss::Never);
        assert_eq!(Loss::from_probability(1.0), Loss::Always);
        assert_eq!(Loss::from_probability(0.5), Loss::Threshold(1 << 63));
    }

    #[test]
    fn swapped_bounds_are_normalised() {
        let l = LatencyNs::new(Latency::Uniform {
            min: Duration::from_millis(9),
            max: Duration::from_millis(3),
        });
        assert_eq!(
            l,
            LatencyNs::Uniform {
                min: 3_000_000,
                span: 6_000_000
            }
        );
    }
}
