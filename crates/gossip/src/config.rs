//! Configuration: mesh degrees, timings, limits and peer-scoring parameters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::GossipError;
use crate::codec::Limits;
use crate::types::{Message, MessageId};

/// The application's verdict on a message ([`Config::validator`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Deliver and forward.
    Accept,
    /// Drop, and penalise the peer that sent it as for an invalid message.
    Reject,
    /// Drop without penalty (for example: stale, but not malicious).
    Ignore,
    /// Decide later (asynchronous validation): the core emits
    /// [`Event::ValidationPending`](crate::Event::ValidationPending), holds the message
    /// (neither delivered nor forwarded) and waits for
    /// [`Gossip::report_validation`](crate::Gossip::report_validation); after
    /// [`Config::validation_timeout`] it ignores the message. Only valid as the hook's answer.
    Pending,
}

/// Computes a message's id ([`Config::message_id`]).
pub type MessageIdFn = Arc<dyn Fn(&Message) -> MessageId + Send + Sync>;
/// The application validation hook ([`Config::validator`]).
pub type ValidatorFn = Arc<dyn Fn(&Message) -> Acceptance + Send + Sync>;

/// Per-topic peer-score parameters (GossipSub v1.1 P1–P4).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicScoreParams {
    /// Weight of this topic's contribution to the score.
    pub topic_weight: f64,
    /// P1 weight: per `time_in_mesh_quantum` spent in our mesh (positive).
    pub time_in_mesh_weight: f64,
    /// P1 quantum.
    pub time_in_mesh_quantum: Duration,
    /// P1 cap (in quanta).
    pub time_in_mesh_cap: f64,
    /// P2 weight: per first delivery of a valid message (positive).
    pub first_message_deliveries_weight: f64,
    /// P2 decay per decay interval.
    pub first_message_deliveries_decay: f64,
    /// P2 cap.
    pub first_message_deliveries_cap: f64,
    /// P3 weight (negative): times the square of the mesh delivery deficit.
    pub mesh_message_deliveries_weight: f64,
    /// P3 decay per decay interval.
    pub mesh_message_deliveries_decay: f64,
    /// P3 threshold: deliveries (decayed counter) a mesh peer should reach; the deficit is
    /// `threshold - deliveries`.
    pub mesh_message_deliveries_threshold: f64,
    /// P3 activation by traffic: a mesh peer is judged only once the topic has carried at
    /// least `threshold / fraction` messages (decayed counter) since it joined our mesh, so an
    /// idle topic never penalises honest peers. Honest mesh peers deliver (first, or within
    /// the window) about half of a topic's messages; 0.2 leaves a wide margin.
    pub mesh_message_deliveries_fraction: f64,
    /// P3 cap.
    pub mesh_message_deliveries_cap: f64,
    /// P3: a duplicate from a mesh peer counts as a delivery if it arrives within this window
    /// of the first copy.
    pub mesh_message_deliveries_window: Duration,
    /// P3: time in the mesh before the deficit counts (see also the fraction).
    pub mesh_message_deliveries_activation: Duration,
    /// P3b weight (negative): sticky penalty for a deficit at prune time.
    pub mesh_failure_penalty_weight: f64,
    /// P3b decay per decay interval.
    pub mesh_failure_penalty_decay: f64,
    /// P4 weight (negative): times the square of the invalid-message counter.
    pub invalid_message_deliveries_weight: f64,
    /// P4 decay per decay interval.
    pub invalid_message_deliveries_decay: f64,
}

impl Default for TopicScoreParams {
    fn default() -> Self {
        Self {
            topic_weight: 1.0,
            time_in_mesh_weight: 0.01,
            time_in_mesh_quantum: Duration::from_secs(1),
            time_in_mesh_cap: 600.0,
            first_message_deliveries_weight: 1.0,
            first_message_deliveries_decay: 0.9,
            first_message_deliveries_cap: 20.0,
            mesh_message_deliveries_weight: -4.0,
            mesh_message_deliveries_decay: 0.99,
            mesh_message_deliveries_threshold: 5.0,
            mesh_message_deliveries_fraction: 0.2,
            mesh_message_deliveries_cap: 100.0,
            mesh_message_deliveries_window: Duration::from_millis(400),
            mesh_message_deliveries_activation: Duration::from_secs(5),
            mesh_failure_penalty_weight: -4.0,
            // Slow: a peer that dropped everything while in our mesh stays below the graylist
            // threshold for minutes (-100 decays to -80 in about 220 s).
            mesh_failure_penalty_decay: 0.999,
            invalid_message_deliveries_weight: -100.0,
            invalid_message_deliveries_decay: 0.99,
        }
    }
}

/// Peer-score parameters (GossipSub v1.1): topic parameters plus P6 (IP colocation) and P7
/// (behaviour penalty).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreParams {
    /// Parameters applied to every topic.
    pub topic: TopicScoreParams,
    /// Cap on the sum of positive topic contributions.
    pub topic_score_cap: f64,
    /// P6 weight (negative): times the square of the number of peers beyond the threshold
    /// sharing one IP address.
    pub ip_colocation_factor_weight: f64,
    /// P6 threshold.
    pub ip_colocation_factor_threshold: f64,
    /// Addresses exempt from P6 (for example loopback in tests, or a known NAT gateway).
    pub ip_colocation_whitelist: Vec<std::net::IpAddr>,
    /// P7 weight (negative): times the square of the penalty beyond the threshold.
    pub behaviour_penalty_weight: f64,
    /// P7 threshold.
    pub behaviour_penalty_threshold: f64,
    /// P7 decay per decay interval.
    pub behaviour_penalty_decay: f64,
    /// P5 weight: times the application-specific score set with
    /// [`Gossip::set_application_score`](crate::Gossip::set_application_score).
    pub app_specific_weight: f64,
    /// How often counters decay.
    pub decay_interval: Duration,
    /// Counters below this become 0.
    pub decay_to_zero: f64,
    /// How long a disconnected peer's score is remembered (so reconnecting does not reset a
    /// penalty).
    pub retain_score: Duration,
}

impl Default for ScoreParams {
    fn default() -> Self {
        Self {
            topic: TopicScoreParams::default(),
            topic_score_cap: 50.0,
            ip_colocation_factor_weight: -10.0,
            ip_colocation_factor_threshold: 4.0,
            ip_colocation_whitelist: Vec::new(),
            behaviour_penalty_weight: -10.0,
            behaviour_penalty_threshold: 4.0,
            behaviour_penalty_decay: 0.95,
            app_specific_weight: 1.0,
            decay_interval: Duration::from_secs(1),
            decay_to_zero: 0.01,
            retain_score: Duration::from_secs(600),
        }
    }
}

/// Score thresholds (GossipSub v1.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Below this, no gossip (IHAVE/IWANT) is exchanged with the peer.
    pub gossip: f64,
    /// Below this, own messages are not flood-published to the peer.
    pub publish: f64,
    /// Below this, every frame from the peer is ignored.
    pub graylist: f64,
    /// Median mesh score below which opportunistic grafting happens.
    pub opportunistic_graft: f64,
    /// Peer exchange carried in a PRUNE is accepted only from peers scoring at least this
    /// (GossipSub v1.1 `acceptPXThreshold`): a peer must have earned it, so that a sybil
    /// cannot steer us towards its friends.
    pub accept_px: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            gossip: -10.0,
            publish: -50.0,
            graylist: -80.0,
            opportunistic_graft: 1.0,
            accept_px: 10.0,
        }
    }
}

/// Everything configurable. `Config::default()` is GossipSub's defaults: D = 6, D_lo = 4,
/// D_hi = 12, D_lazy = 6, heartbeat 1 s.
#[derive(Clone)]
pub struct Config {
    /// Target mesh degree.
    pub mesh_n: usize,
    /// Graft when the mesh is smaller.
    pub mesh_n_low: usize,
    /// Prune when the mesh is larger.
    pub mesh_n_high: usize,
    /// Peers kept by score when pruning an oversubscribed mesh.
    pub mesh_n_score: usize,
    /// Outbound mesh quota: the mesh keeps at least this many peers we dialled.
    pub mesh_outbound_min: usize,
    /// Peers that get IHAVE gossip per topic per heartbeat (at least).
    pub gossip_lazy: usize,
    /// Fraction of eligible peers that get gossip, if more than `gossip_lazy`.
    pub gossip_factor: f64,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Message-cache windows kept (one per heartbeat) for IWANT.
    pub history_length: usize,
    /// Message-cache windows advertised in IHAVE: the repair horizon. A message published
    /// while two parts of the network could not reach each other is repaired after they
    /// reconnect only if it is at most this many heartbeats old. The cost grows with it: every
    /// IHAVE lists every cached id of that many heartbeats (messages per second × this), and
    /// the message cache holds `history_length` heartbeats of messages. Must not exceed
    /// `history_length`, and `seen_ttl` must be at least twice the history.
    pub history_gossip: usize,
    /// How long a message id is remembered as seen.
    pub seen_ttl: Duration,
    /// Most ids in the seen-cache.
    pub max_seen: usize,
    /// Most messages held in the message cache.
    pub max_cached_messages: usize,
    /// How long fanout state lives after the last publish to a topic.
    pub fanout_ttl: Duration,
    /// Backoff after a PRUNE.
    pub prune_backoff: Duration,
    /// Publish own messages to every subscribed peer above the publish threshold.
    pub flood_publish: bool,
    /// Heartbeats between opportunistic grafting rounds.
    pub opportunistic_graft_ticks: u64,
    /// Peers grafted per opportunistic round.
    pub opportunistic_graft_peers: usize,
    /// Most IHAVE frames accepted from one peer per heartbeat.
    pub max_ihave_messages: usize,
    /// Most ids in one IHAVE (sent or accepted), and most ids requested from one peer per
    /// heartbeat.
    pub max_ihave_len: usize,
    /// How long a peer has to answer our IWANT before a broken promise counts.
    pub iwant_followup_time: Duration,
    /// Most times one message is sent to one peer in answer to IWANT.
    pub gossip_retransmission: u32,
    /// Peers offered in peer exchange with a PRUNE sent for an oversubscribed mesh, a refused
    /// GRAFT or an unsubscription (0: no PX). Never with a PRUNE for a bad score.
    pub prune_peers: usize,
    /// Most peer-exchange entries accepted in one PRUNE.
    pub max_px_peers: usize,
    /// Most messages awaiting an asynchronous verdict ([`Acceptance::Pending`]); beyond, a
    /// message the hook defers is ignored (and counted).
    pub max_pending_validations: usize,
    /// How long a deferred message waits for its verdict before it is ignored.
    pub validation_timeout: Duration,
    /// Largest message payload.
    pub max_message_size: usize,
    /// Largest frame body on the wire.
    pub max_frame_len: usize,
    /// Frames per second accepted from one peer (token bucket refill rate).
    pub rate_limit_frames_per_sec: f64,
    /// Token bucket size (burst).
    pub rate_limit_burst: f64,
    /// Most topics one peer may be subscribed to in our view.
    pub max_topics_per_peer: usize,
    /// Most connected peers tracked.
    pub max_peers: usize,
    /// Most topics tracked across all peers.
    pub max_known_topics: usize,
    /// Most fanout topics.
    pub max_fanout_topics: usize,
    /// Most publications awaiting acknowledgements.
    pub max_pending_acks: usize,
    /// Most outstanding IWANT promises.
    pub max_promises: usize,
    /// Most disconnected peers whose score is retained.
    pub max_retained_scores: usize,
    /// Peer scoring parameters.
    pub score: ScoreParams,
    /// Score thresholds.
    pub thresholds: Thresholds,
    /// How a message id is computed. `None`: [`MessageId::from_author_seq`].
    pub message_id: Option<MessageIdFn>,
    /// Application validation, run once per message id after the signature checks.
    pub validator: Option<ValidatorFn>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("mesh_n", &self.mesh_n)
            .field("mesh_n_low", &self.mesh_n_low)
            .field("mesh_n_high", &self.mesh_n_high)
            .field("gossip_lazy", &self.gossip_lazy)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("max_message_size", &self.max_message_size)
            .field("custom_message_id", &self.message_id.is_some())
            .field("validator", &self.validator.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mesh_n: 6,
            mesh_n_low: 4,
            mesh_n_high: 12,
            mesh_n_score: 4,
            mesh_outbound_min: 2,
            gossip_lazy: 6,
            gossip_factor: 0.25,
            heartbeat_interval: Duration::from_secs(1),
            history_length: 5,
            history_gossip: 3,
            seen_ttl: Duration::from_secs(120),
            max_seen: 200_000,
            max_cached_messages: 20_000,
            fanout_ttl: Duration::from_secs(60),
            prune_backoff: Duration::from_secs(60),
            flood_publish: true,
            opportunistic_graft_ticks: 60,
            opportunistic_graft_peers: 2,
            max_ihave_messages: 10,
            max_ihave_len: 5000,
            iwant_followup_time: Duration::from_secs(3),
            gossip_retransmission: 3,
            prune_peers: 16,
            max_px_peers: 16,
            max_pending_validations: 1024,
            validation_timeout: Duration::from_secs(5),
            max_message_size: 1024 * 1024,
            max_frame_len: 1024 * 1024 + 4096,
            rate_limit_frames_per_sec: 2000.0,
            rate_limit_burst: 4000.0,
            max_topics_per_peer: 128,
            max_peers: 10_000,
            max_known_topics: 10_000,
            max_fanout_topics: 1_000,
            max_pending_acks: 1_000,
            max_promises: 10_000,
            max_retained_scores: 10_000,
            score: ScoreParams::default(),
            thresholds: Thresholds::default(),
            message_id: None,
            validator: None,
        }
    }
}

impl Config {
    /// Checks the invariants GossipSub relies on.
    pub fn validate(&self) -> Result<(), GossipError> {
        let bad = |reason| Err(GossipError::InvalidConfig { reason });
        if !(self.mesh_outbound_min <= self.mesh_n_low
            && self.mesh_n_low <= self.mesh_n
            && self.mesh_n <= self.mesh_n_high)
        {
            return bad("need mesh_outbound_min <= mesh_n_low <= mesh_n <= mesh_n_high");
        }
        if self.mesh_outbound_min * 2 > self.mesh_n {
            return bad("mesh_outbound_min must be at most mesh_n / 2");
        }
        if self.mesh_n_score > self.mesh_n {
            return bad("mesh_n_score must be at most mesh_n");
        }
        if self.history_gossip == 0 || self.history_gossip > self.history_length {
            return bad("need 1 <= history_gossip <= history_length");
        }
        // A node that got a message late (repaired at the end of a peer's history) caches
        // and advertises it for a whole history again: seen-cache entries must outlast two
        // histories, or the message comes back to nodes that already forgot it.
        if self.heartbeat_interval * (2 * self.history_length) as u32 > self.seen_ttl {
            return bad(
                "seen_ttl must be at least two message-cache histories (2 × history_length heartbeats)",
            );
        }
        if self.max_px_peers > crate::types::MAX_PX_PEERS
            || self.prune_peers > crate::types::MAX_PX_PEERS
        {
            return bad("prune_peers and max_px_peers must be at most 64");
        }
        if self.heartbeat_interval.is_zero() || self.score.decay_interval.is_zero() {
            return bad("heartbeat_interval and decay_interval must be positive");
        }
        let t = &self.thresholds;
        if !(t.graylist <= t.publish && t.publish <= t.gossip && t.gossip <= 0.0) {
            return bad("need graylist <= publish <= gossip <= 0");
        }
        if t.accept_px < 0.0 {
            return bad("accept_px must be at least 0");
        }
        if self.max_frame_len < self.max_message_size {
            return bad("max_frame_len must be at least max_message_size");
        }
        if self.rate_limit_frames_per_sec <= 0.0 || self.rate_limit_burst < 1.0 {
            return bad("rate limits must be positive");
        }
        Ok(())
    }

    /// The codec limits this configuration implies.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_len: self.max_frame_len,
            max_message_size: self.max_message_size,
            max_ihave_len: self.max_ihave_len,
            max_px_peers: self.max_px_peers,
        }
    }
}
