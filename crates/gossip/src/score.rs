//! Peer scoring as in GossipSub v1.1: P1 time in mesh, P2 first deliveries, P3/P3b mesh
//! delivery deficit and failure penalty, P4 invalid messages, P6 IP colocation, P7 behaviour
//! penalty.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use p2p_foundation_identity::PeerId;

use std::sync::Arc;

use crate::config::Config;
use crate::hash::{FastMap, KeyedState};
use crate::types::Topic;

#[derive(Debug, Clone)]
struct TopicStats {
    topic: Topic,
    in_mesh: bool,
    mesh_since: Instant,
    first_deliveries: f64,
    mesh_deliveries: f64,
    /// The topic's traffic counter when the peer joined our mesh (decayed with it), so the
    /// traffic seen while it was in the mesh is `traffic - traffic_at_graft`.
    traffic_at_graft: f64,
    mesh_failure_penalty: f64,
    invalid_deliveries: f64,
}

#[derive(Debug, Clone)]
struct PeerStats {
    connected: bool,
    expires_at: Option<Instant>,
    ip: Option<IpAddr>,
    topics: Vec<TopicStats>,
    behaviour_penalty: f64,
    /// P5: the application's opinion, as last set (not decayed).
    app_score: f64,
}

impl PeerStats {
    fn topic(&mut self, topic: &Topic, now: Instant) -> &mut TopicStats {
        let i = match self.topics.iter().position(|t| &t.topic == topic) {
            Some(i) => i,
            None => {
                self.topics.push(TopicStats {
                    topic: topic.clone(),
                    in_mesh: false,
                    mesh_since: now,
                    first_deliveries: 0.0,
                    mesh_deliveries: 0.0,
                    traffic_at_graft: 0.0,
                    mesh_failure_penalty: 0.0,
                    invalid_deliveries: 0.0,
                });
                self.topics.len() - 1
            }
        };
        &mut self.topics[i]
    }
}

/// The scores of every known peer.
#[derive(Debug)]
#[repr(C)] // the peer table first: it is what the per-frame paths touch
pub(crate) struct Scoring {
    peers: FastMap<PeerId, PeerStats>,
    /// Shared with the core (and, in a simulation, with every node): read-only.
    config: Arc<Config>,
    ips: FastMap<IpAddr, u32>,
    /// Per topic: first deliveries of valid messages (decayed like P3).
    traffic: FastMap<Topic, f64>,
    last_decay: Option<Instant>,
    max_retained: usize,
}

/// Most topics whose stats are kept per peer (bounded by our own subscriptions in practice).
const MAX_TOPIC_STATS: usize = 64;

impl Scoring {
    pub(crate) fn new(config: Arc<Config>, max_retained: usize, hasher: KeyedState) -> Self {
        Self {
            config,
            peers: FastMap::with_hasher(hasher),
            ips: FastMap::with_hasher(hasher),
            traffic: FastMap::with_hasher(hasher),
            last_decay: None,
            max_retained,
        }
    }

    pub(crate) fn connect(&mut self, peer: PeerId, ip: Option<IpAddr>) {
        let stats = self.peers.entry(peer).or_insert_with(|| PeerStats {
            connected: false,
            expires_at: None,
            ip: None,
            topics: Vec::new(),
            behaviour_penalty: 0.0,
            app_score: 0.0,
        });
        if stats.connected {
            return;
        }
        stats.connected = true;
        stats.expires_at = None;
        stats.ip = ip;
        if let Some(ip) = ip {
            *self.ips.entry(ip).or_insert(0) += 1;
        }
    }

    pub(crate) fn disconnect(&mut self, peer: &PeerId, now: Instant) {
        let retain = self.config.score.retain_score;
        let retained = self.peers.values().filter(|s| !s.connected).count();
        let Some(stats) = self.peers.get_mut(peer) else {
            return;
        };
        if !stats.connected {
            return;
        }
        stats.connected = false;
        if let Some(ip) = stats.ip {
            if let Some(n) = self.ips.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.ips.remove(&ip);
                }
            }
        }
        for t in &mut stats.topics {
            t.in_mesh = false;
        }
        // Only a bad score is worth remembering: it stops a misbehaving peer from resetting it
        // by reconnecting. Neutral or good scores are forgotten at once (bounded memory).
        let bad = stats.behaviour_penalty > 0.0
            || stats.app_score < 0.0
            || stats
                .topics
                .iter()
                .any(|t| t.invalid_deliveries > 0.0 || t.mesh_failure_penalty > 0.0);
        if bad && retained < self.max_retained {
            stats.expires_at = Some(now + retain);
        } else {
            self.peers.remove(peer);
        }
    }

    pub(crate) fn graft(&mut self, peer: &PeerId, topic: &Topic, now: Instant) {
        let traffic = self.traffic.get(topic).copied().unwrap_or(0.0);
        if let Some(s) = self.peers.get_mut(peer) {
            if s.topics.len() >= MAX_TOPIC_STATS && !s.topics.iter().any(|t| &t.topic == topic) {
                return;
            }
            let t = s.topic(topic, now);
            t.in_mesh = true;
            t.mesh_since = now;
            t.mesh_deliveries = 0.0;
            t.traffic_at_graft = traffic;
        }
    }

    pub(crate) fn prune(&mut self, peer: &PeerId, topic: &Topic, now: Instant) {
        let p = self.config.score.topic.clone();
        let traffic = self.traffic.get(topic).copied().unwrap_or(0.0);
        if let Some(s) = self.peers.get_mut(peer) {
            if let Some(t) = s.topics.iter_mut().find(|t| &t.topic == topic) {
                if t.in_mesh {
                    let deficit = deficit(&p, t, traffic, now);
                    t.mesh_failure_penalty += deficit * deficit;
                }
                t.in_mesh = false;
            }
        }
    }

    /// A valid message arrived first from `peer`.
    pub(crate) fn first_delivery(&mut self, peer: &PeerId, topic: &Topic, now: Instant) {
        let p = &self.config.score.topic;
        match self.traffic.get_mut(topic) {
            Some(t) => *t += 1.0,
            None => {
                if self.traffic.len() < MAX_TOPIC_STATS * 4 {
                    self.traffic.insert(topic.clone(), 1.0);
                }
            }
        }
        if let Some(s) = self.peers.get_mut(peer) {
            if s.topics.len() >= MAX_TOPIC_STATS && !s.topics.iter().any(|t| &t.topic == topic) {
                return;
            }
            let t = s.topic(topic, now);
            t.first_deliveries = (t.first_deliveries + 1.0).min(p.first_message_deliveries_cap);
            if t.in_mesh {
                t.mesh_deliveries = (t.mesh_deliveries + 1.0).min(p.mesh_message_deliveries_cap);
            }
        }
    }

    /// A duplicate arrived from `peer` within the delivery window: credited (P3) if `peer` is
    /// in our mesh for `topic`. Returns whether it was.
    pub(crate) fn near_first_delivery(&mut self, peer: &PeerId, topic: &Topic) -> bool {
        let cap = self.config.score.topic.mesh_message_deliveries_cap;
        if let Some(s) = self.peers.get_mut(peer) {
            if let Some(t) = s.topics.iter_mut().find(|t| &t.topic == topic && t.in_mesh) {
                t.mesh_deliveries = (t.mesh_deliveries + 1.0).min(cap);
                return true;
            }
        }
        false
    }

    pub(crate) fn invalid(&mut self, peer: &PeerId, topic: &Topic, now: Instant) {
        if let Some(s) = self.peers.get_mut(peer) {
            if s.topics.len() >= MAX_TOPIC_STATS && !s.topics.iter().any(|t| &t.topic == topic) {
                s.behaviour_penalty += 1.0;
                return;
            }
            s.topic(topic, now).invalid_deliveries += 1.0;
        }
    }

    /// Sets P5 for a known peer; false if the peer is unknown.
    pub(crate) fn set_app_score(&mut self, peer: &PeerId, value: f64) -> bool {
        match self.peers.get_mut(peer) {
            Some(s) if value.is_finite() => {
                s.app_score = value;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn penalise(&mut self, peer: &PeerId, amount: f64) {
        if let Some(s) = self.peers.get_mut(peer) {
            s.behaviour_penalty += amount;
        }
    }

    /// The peer's score (0 for unknown peers).
    pub(crate) fn score(&self, peer: &PeerId, now: Instant) -> f64 {
        let Some(s) = self.peers.get(peer) else {
            return 0.0;
        };
        let p = &self.config.score;
        let tp = &p.topic;
        let mut topics = 0.0;
        for t in &s.topics {
            let mut ts = 0.0;
            if t.in_mesh {
                let traffic = self.traffic.get(&t.topic).copied().unwrap_or(0.0);
                let quanta = now.saturating_duration_since(t.mesh_since).as_secs_f64()
                    / tp.time_in_mesh_quantum.as_secs_f64().max(1e-9);
                ts += tp.time_in_mesh_weight * quanta.min(tp.time_in_mesh_cap);
                let d = deficit(tp, t, traffic, now);
                ts += tp.mesh_message_deliveries_weight * d * d;
            }
            ts += tp.first_message_deliveries_weight * t.first_deliveries;
            ts += tp.mesh_failure_penalty_weight * t.mesh_failure_penalty;
            ts +=
                tp.invalid_message_deliveries_weight * t.invalid_deliveries * t.invalid_deliveries;
            topics += tp.topic_weight * ts;
        }
        if topics > p.topic_score_cap {
            topics = p.topic_score_cap;
        }
        let mut score = topics + p.app_specific_weight * s.app_score;
        if let Some(ip) = s.ip.filter(|ip| !p.ip_colocation_whitelist.contains(ip)) {
            let n = f64::from(self.ips.get(&ip).copied().unwrap_or(0));
            if n > p.ip_colocation_factor_threshold {
                let surplus = n - p.ip_colocation_factor_threshold;
                score += p.ip_colocation_factor_weight * surplus * surplus;
            }
        }
        if s.behaviour_penalty > p.behaviour_penalty_threshold {
            let excess = s.behaviour_penalty - p.behaviour_penalty_threshold;
            score += p.behaviour_penalty_weight * excess * excess;
        }
        score
    }

    /// Applies every decay interval elapsed since the last call and forgets expired peers.
    pub(crate) fn refresh(&mut self, now: Instant) {
        let interval = self.config.score.decay_interval;
        let last = *self.last_decay.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        let rounds = (elapsed.as_nanos() / interval.as_nanos().max(1)) as u32;
        if rounds == 0 {
            return;
        }
        self.last_decay = Some(last + interval * rounds);
        let traffic_decay = self
            .config
            .score
            .topic
            .mesh_message_deliveries_decay
            .powi(rounds as i32);
        let z0 = self.config.score.decay_to_zero;
        self.traffic.retain(|_, v| {
            *v *= traffic_decay;
            *v >= z0
        });
        let p = &self.config.score;
        let tp = &p.topic;
        let z = p.decay_to_zero;
        let decay = |v: &mut f64, f: f64| {
            *v *= f.powi(rounds as i32);
            if *v < z {
                *v = 0.0;
            }
        };
        self.peers.retain(|_, s| {
            if let Some(exp) = s.expires_at {
                if now >= exp {
                    return false;
                }
            }
            for t in &mut s.topics {
                decay(&mut t.first_deliveries, tp.first_message_deliveries_decay);
                decay(&mut t.mesh_deliveries, tp.mesh_message_deliveries_decay);
                decay(&mut t.traffic_at_graft, tp.mesh_message_deliveries_decay);
                decay(&mut t.mesh_failure_penalty, tp.mesh_failure_penalty_decay);
                decay(
                    &mut t.invalid_deliveries,
                    tp.invalid_message_deliveries_decay,
                );
            }
            s.topics.retain(|t| {
                t.in_mesh
                    || t.first_deliveries > 0.0
                    || t.mesh_failure_penalty > 0.0
                    || t.invalid_deliveries > 0.0
            });
            decay(&mut s.behaviour_penalty, p.behaviour_penalty_decay);
            s.connected || s.expires_at.is_some()
        });
    }

    #[cfg(test)]
    pub(crate) fn known(&self) -> usize {
        self.peers.len()
    }
}

fn deficit(p: &crate::config::TopicScoreParams, t: &TopicStats, traffic: f64, now: Instant) -> f64 {
    if !t.in_mesh
        || now.saturating_duration_since(t.mesh_since) < p.mesh_message_deliveries_activation
    {
        return 0.0;
    }
    // Judge a mesh peer only once the topic has carried enough traffic since it joined for
    // the threshold to be a small fraction of it: an idle topic never penalises anyone.
    let seen_in_mesh = traffic - t.traffic_at_graft;
    let fraction = p.mesh_message_deliveries_fraction.max(1e-9);
    if seen_in_mesh * fraction < p.mesh_message_deliveries_threshold {
        return 0.0;
    }
    (p.mesh_message_deliveries_threshold - t.mesh_deliveries).max(0.0)
}

/// Whole seconds of a duration, saturating (for PRUNE backoffs).
pub(crate) fn secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScoreParams;
    use p2p_foundation_identity::Keypair;

    fn peer(i: u8) -> PeerId {
        Keypair::from_secret_bytes([i; 32]).peer_id()
    }

    fn scoring() -> Scoring {
        Scoring::new(Arc::new(Config::default()), 100, KeyedState(1))
    }

    #[test]
    fn time_in_mesh_and_first_deliveries_raise_the_score() {
        let mut s = scoring();
        let t0 = Instant::now();
        let topic = Topic::new("t").unwrap();
        let a = peer(1);
        s.connect(a, None);
        s.graft(&a, &topic, t0);
        let later = t0 + Duration::from_secs(10);
        let base = s.score(&a, later);
        assert!(base > 0.0, "{base}");
        s.first_delivery(&a, &topic, later);
        assert!(s.score(&a, later) > base);
    }

    #[test]
    fn invalid_messages_graylist_quickly() {
        let mut s = scoring();
        let t0 = Instant::now();
        let topic = Topic::new("t").unwrap();
        let a = peer(1);
        s.connect(a, None);
        s.invalid(&a, &topic, t0);
        assert!(s.score(&a, t0) <= -80.0);
        // Reconnecting does not reset the penalty.
        s.disconnect(&a, t0);
        s.connect(a, None);
        assert!(s.score(&a, t0) <= -80.0);
    }

    #[test]
    fn a_mesh_peer_that_delivers_nothing_gets_a_deficit_penalty() {
        let mut s = scoring();
        let t0 = Instant::now();
        let topic = Topic::new("t").unwrap();
        let (good, bad) = (peer(1), peer(2));
        for p in [good, bad] {
            s.connect(p, None);
            s.graft(&p, &topic, t0);
        }
        let mut now = t0;
        for _ in 0..100 {
            now += Duration::from_millis(100);
            s.first_delivery(&good, &topic, now);
            s.refresh(now);
        }
        assert!(s.score(&good, now) > 0.0);
        let bad_score = s.score(&bad, now);
        assert!(bad_score < -50.0, "{bad_score}");
        s.prune(&bad, &topic, now);
        assert!(
            s.score(&bad, now) < -50.0,
            "the failure penalty sticks after the prune"
        );
    }

    #[test]
    fn application_score_is_weighted_and_survives_a_reconnect_when_negative() {
        let mut s = Scoring::new(
            Arc::new(Config {
                score: ScoreParams {
                    app_specific_weight: 2.0,
                    ..ScoreParams::default()
                },
                ..Config::default()
            }),
            100,
            KeyedState(1),
        );
        let t0 = Instant::now();
        let a = peer(1);
        assert!(!s.set_app_score(&a, 5.0), "unknown peers are refused");
        s.connect(a, None);
        assert!(s.set_app_score(&a, 5.0));
        assert_eq!(s.score(&a, t0), 10.0);
        assert!(!s.set_app_score(&a, f64::NAN));
        assert!(s.set_app_score(&a, -50.0));
        assert_eq!(s.score(&a, t0), -100.0);
        s.disconnect(&a, t0);
        s.connect(a, None);
        assert_eq!(s.score(&a, t0), -100.0, "a negative P5 is retained");
    }

    #[test]
    fn idle_topics_do_not_penalise() {
        let mut s = scoring();
        let t0 = Instant::now();
        let topic = Topic::new("t").unwrap();
        let a = peer(1);
        s.connect(a, None);
        s.graft(&a, &topic, t0);
        let later = t0 + Duration::from_secs(60);
        s.refresh(later);
        assert!(s.score(&a, later) >= 0.0);
    }

    #[test]
    fn ip_colocation_and_behaviour_penalties() {
        let mut s = scoring();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 1..=6 {
            s.connect(peer(i), Some(ip));
        }
        assert!(
            s.score(&peer(1), t0) < 0.0,
            "six peers on one IP exceed the threshold of 4"
        );
        s.connect(peer(9), None);
        s.penalise(&peer(9), 10.0);
        assert!(s.score(&peer(9), t0) < -80.0);
        s.refresh(t0);
        s.refresh(t0 + Duration::from_secs(200));
        assert_eq!(
            s.score(&peer(9), t0 + Duration::from_secs(200)),
            0.0,
            "penalties decay"
        );
        assert!(s.known() >= 7);
    }
}
