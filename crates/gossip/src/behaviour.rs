//! The sans-IO GossipSub v1.1 state machine.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_foundation_identity::{Keypair, PeerId};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::GossipError;
use crate::cache::{CacheEntry, Credits, MessageCache, SeenCache, SignatureCache};
use crate::codec::{self, Limits};
use crate::config::{Acceptance, Config};
use crate::hash::{FastMap, FastSet, KeyedState};
use crate::score::{Scoring, secs_u32};
use crate::types::{Ack, AckRequest, Message, MessageId, PxPeer, Rpc, Topic};

/// Something that happened outside the core: the caller feeds it in with
/// [`Gossip::handle_input`].
#[derive(Debug, Clone)]
pub enum Input {
    /// A connection to `peer` opened. `outbound`: we dialled it (counts towards the outbound
    /// mesh quota). `ip`: its address, for the IP-colocation score.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// Its IP address, if known.
        ip: Option<IpAddr>,
        /// Whether we dialled it.
        outbound: bool,
    },
    /// The connection to `peer` closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A decoded frame arrived from `from`.
    Rpc {
        /// The sender.
        from: PeerId,
        /// The frame.
        rpc: Rpc,
    },
    /// A frame from `from` could not be decoded (the driver reports framing errors, such as an
    /// oversized length prefix, this way). Counted and scored.
    BadFrame {
        /// The sender.
        from: PeerId,
        /// What was wrong.
        error: Arc<GossipError>,
    },
    /// The time given by the last [`Output::Timeout`] has come.
    Timeout,
}

/// What the core asks its caller to do, from [`Gossip::poll_output`].
#[derive(Debug, Clone)]
pub enum Output {
    /// Send `rpc` to `to`.
    Send {
        /// The destination.
        to: PeerId,
        /// The frame.
        rpc: Rpc,
    },
    /// Tell the application.
    Event(Event),
    /// Nothing more to do now: call `handle_input(at, Input::Timeout)` at `at` (or earlier with
    /// any other input).
    Timeout(Instant),
}

/// Events for the application.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new, valid message on a subscribed topic.
    Message {
        /// Its id.
        id: MessageId,
        /// The message (topic, author, data).
        message: Arc<Message>,
        /// The peer that delivered it first.
        from: PeerId,
        /// Hops it travelled from its author (1 = straight from the author).
        hops: u8,
    },
    /// A peer subscribed to a topic.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: Topic,
    },
    /// A peer unsubscribed from a topic (or disconnected while subscribed).
    Unsubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: Topic,
    },
    /// A publication that asked for acknowledgements got all it asked for.
    DeliveryConfirmed {
        /// The message.
        id: MessageId,
        /// Who acknowledged (signatures verified).
        ackers: Vec<PeerId>,
    },
    /// A peer we trust (score at least [`crate::Thresholds::accept_px`]) pruned us from its
    /// mesh for `topic` and offered other peers on the topic (peer exchange). The core does
    /// not dial: the application (or the facade) connects to some of them, by address or
    /// through the DHT.
    PeerExchange {
        /// The topic.
        topic: Topic,
        /// The peer that pruned us.
        from: PeerId,
        /// Offered peers we are not connected to.
        peers: Vec<PxPeer>,
    },
    /// The validation hook answered [`Acceptance::Pending`]: the message is held, neither
    /// delivered nor forwarded, until [`Gossip::report_validation`] gives the verdict (or
    /// [`Config::validation_timeout`] passes, which ignores it).
    ValidationPending {
        /// Its id (the key for [`Gossip::report_validation`]).
        id: MessageId,
        /// The message (signature already verified).
        message: Arc<Message>,
        /// The peer that delivered it first.
        from: PeerId,
    },
    /// A publication's acknowledgement deadline passed first.
    DeliveryTimedOut {
        /// The message.
        id: MessageId,
        /// Who acknowledged in time.
        ackers: Vec<PeerId>,
        /// Named subscribers that did not (empty for [`AckRequest::Count`]).
        missing: Vec<PeerId>,
    },
}

/// How to publish ([`Gossip::publish_with`]).
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Acknowledgements to ask for.
    pub ack: AckRequest,
    /// How long to wait for them (ignored when `ack` is [`AckRequest::None`]); default 10 s.
    pub ack_deadline: Option<Duration>,
}

/// Counters of everything dropped, refused or repaired. Never reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[repr(C)] // the counters of the common path first (one cache line)
pub struct Metrics {
    /// Messages delivered to the application.
    pub delivered: u64,
    /// Messages published here.
    pub published: u64,
    /// Copies of already-seen messages received.
    pub duplicates: u64,
    /// Frames sent.
    pub sent: u64,
    /// Messages with a bad signature.
    pub invalid_signature: u64,
    /// Messages the validator rejected.
    pub rejected: u64,
    /// Messages the validator ignored.
    pub ignored: u64,
    /// Frames that did not decode.
    pub malformed_frames: u64,
    /// Frames larger than the limit.
    pub oversized_frames: u64,
    /// Frames dropped by the per-peer rate limit.
    pub rate_limited: u64,
    /// Frames ignored because the sender is graylisted.
    pub graylisted: u64,
    /// IHAVE/IWANT frames ignored because the sender's score is below the gossip threshold.
    pub below_gossip_threshold: u64,
    /// Messages, IHAVEs and GRAFTs for topics we are not subscribed to, and subscriptions
    /// beyond the per-peer or total topic caps.
    pub unknown_topic: u64,
    /// IWANT ids not in the message cache.
    pub iwant_unknown: u64,
    /// IHAVE frames beyond the per-heartbeat cap or ids beyond the per-heartbeat budget.
    pub ihave_dropped: u64,
    /// Messages sent in answer to IWANT.
    pub iwant_served: u64,
    /// Messages obtained through IWANT.
    pub repaired: u64,
    /// IWANT promises not kept.
    pub broken_promises: u64,
    /// Acknowledgements dropped (unknown message, over quota, bad signature).
    pub acks_dropped: u64,
    /// Connections refused beyond `max_peers`.
    pub peers_refused: u64,
    /// Peers offered in peer exchange with our PRUNEs.
    pub px_sent: u64,
    /// Peers accepted from others' peer exchange (reported in [`Event::PeerExchange`]).
    pub px_accepted: u64,
    /// PRUNEs whose peer exchange was ignored: the sender scored below `accept_px`.
    pub px_refused: u64,
    /// Messages the validation hook deferred ([`Acceptance::Pending`]).
    pub validations_deferred: u64,
    /// Deferred messages ignored because no verdict came within `validation_timeout`.
    pub validation_timeouts: u64,
    /// Messages ignored because `max_pending_validations` were already waiting.
    pub validation_queue_full: u64,
}

#[derive(Debug)]
struct PeerState {
    outbound: bool,
    topics: Vec<Topic>,
    tokens: f64,
    last_refill: Instant,
    /// Score, refreshed every heartbeat and after every penalty.
    score: f64,
    ihave_in: usize,
    iwant_asked: usize,
    iwant_unknown: usize,
    /// Where the peer listens, if the application told us (offered in peer exchange).
    addr: Option<SocketAddr>,
}

/// A message waiting for an asynchronous verdict.
#[derive(Debug)]
struct PendingValidation {
    msg: Arc<Message>,
    from: PeerId,
    /// Hops travelled before it reached us.
    hops: u8,
}

#[derive(Debug)]
struct PendingAck {
    request: AckRequest,
    deadline: Instant,
    ackers: Vec<PeerId>,
}

#[derive(Debug, Clone, Copy)]
struct Promise {
    peer: PeerId,
    asked: Instant,
    /// One id per IWANT carries the promise (as in GossipSub): a single lost frame costs an
    /// honest peer one broken promise, not one per id.
    tracked: bool,
}

/// A GossipSub v1.1 node, without I/O. See the crate docs for the loop that drives it.
// `repr(C)`: the fields every frame touches come first and share a few cache lines; a process
// hosting thousands of nodes (a simulation) is bound by memory latency, not arithmetic.
#[repr(C)]
pub struct Gossip {
    peers: FastMap<PeerId, PeerState>,
    mcache: MessageCache,
    seen: SeenCache,
    scoring: Scoring,
    config: Arc<Config>,
    next_heartbeat: Instant,
    mesh: FastMap<Topic, Vec<PeerId>>,
    promises: FastMap<MessageId, Promise>,
    outputs: VecDeque<Output>,
    /// Deferred validations by deadline (deadlines are non-decreasing: one timeout for all).
    validation_deadlines: VecDeque<(Instant, MessageId)>,
    pending_acks: FastMap<MessageId, PendingAck>,
    metrics: Metrics,
    keypair: Keypair,
    local: PeerId,
    limits: Limits,
    rng: SmallRng,
    hasher: KeyedState,
    ticks: u64,
    seq: u64,
    topic_peers: FastMap<Topic, FastSet<PeerId>>,
    fanout: FastMap<Topic, (Vec<PeerId>, Instant)>,
    backoff: FastMap<(Topic, PeerId), Instant>,
    validations: FastMap<MessageId, PendingValidation>,
    sig_cache: Option<Arc<SignatureCache>>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("local", &self.local.short())
            .field("peers", &self.peers.len())
            .field("topics", &self.mesh.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

const DEFAULT_ACK_DEADLINE: Duration = Duration::from_secs(10);

impl Gossip {
    /// A node with identity `keypair`. `seed` seeds every random choice (peer selection,
    /// heartbeat phase, the starting sequence number, table hashing): equal seeds and equal
    /// inputs give equal outputs.
    ///
    /// `now` is the current time: the first heartbeat is scheduled from it (at a random phase
    /// within one interval).
    ///
    /// `config` is a [`Config`] or an `Arc<Config>`: a process hosting many nodes (a
    /// simulation) can share one configuration between them.
    pub fn new(
        keypair: Keypair,
        config: impl Into<Arc<Config>>,
        seed: u64,
        now: Instant,
    ) -> Result<Self, GossipError> {
        let config: Arc<Config> = config.into();
        config.validate()?;
        let mut rng = SmallRng::seed_from_u64(seed);
        let hasher = KeyedState(rng.random());
        // A random starting sequence number: a restarted node never reuses an id that may
        // still sit in its peers' seen-caches.
        let seq = rng.random::<u64>() >> 1;
        let mut gossip = Self {
            local: keypair.peer_id(),
            keypair,
            limits: config.limits(),
            rng,
            hasher,
            next_heartbeat: now,
            ticks: 0,
            seq,
            peers: FastMap::with_hasher(hasher),
            topic_peers: FastMap::with_hasher(hasher),
            mesh: FastMap::with_hasher(hasher),
            fanout: FastMap::with_hasher(hasher),
            backoff: FastMap::with_hasher(hasher),
            seen: SeenCache::new(config.max_seen, hasher),
            mcache: MessageCache::new(config.history_length, config.max_cached_messages, hasher),
            promises: FastMap::with_hasher(hasher),
            pending_acks: FastMap::with_hasher(hasher),
            validations: FastMap::with_hasher(hasher),
            validation_deadlines: VecDeque::new(),
            scoring: Scoring::new(Arc::clone(&config), config.max_retained_scores, hasher),
            sig_cache: None,
            outputs: VecDeque::new(),
            metrics: Metrics::default(),
            config,
        };
        // A random phase, so that nodes started together do not heartbeat in lock step.
        let hb = gossip.config.heartbeat_interval;
        let phase = gossip.rng.random_range(0..hb.as_nanos().max(1) as u64);
        gossip.next_heartbeat = now + Duration::from_nanos(phase);
        Ok(gossip)
    }

    /// Shares a process-wide [`SignatureCache`] (see its docs).
    pub fn with_signature_cache(mut self, cache: Arc<SignatureCache>) -> Self {
        self.sig_cache = Some(cache);
        self
    }

    /// This node's id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn metrics(&self) -> Metrics {
        self.metrics
    }

    /// `peer`'s current score in this node's view (0 for unknown peers).
    pub fn peer_score(&self, peer: &PeerId, now: Instant) -> f64 {
        self.scoring.score(peer, now)
    }

    /// Sets `peer`'s application-specific score (P5 of GossipSub v1.1, weighted by
    /// [`ScoreParams::app_specific_weight`](crate::ScoreParams::app_specific_weight)): the
    /// application's own opinion of the peer, kept until set again. A negative value is
    /// remembered across reconnects like other penalties. Returns false for a peer the core
    /// does not know or a value that is not finite.
    pub fn set_application_score(&mut self, now: Instant, peer: &PeerId, score: f64) -> bool {
        let ok = self.scoring.set_app_score(peer, score);
        if ok {
            self.rescore(peer, now);
        }
        ok
    }

    /// Records where a connected peer listens (its dialable address, which the transport or
    /// the DHT knows; a connection's source port usually is not it). Offered to others in
    /// peer exchange. Returns false if the peer is not connected.
    pub fn set_peer_address(&mut self, peer: &PeerId, addr: SocketAddr) -> bool {
        match self.peers.get_mut(peer) {
            Some(s) => {
                s.addr = Some(addr);
                true
            }
            None => false,
        }
    }

    /// Messages currently awaiting an asynchronous verdict.
    pub fn pending_validations(&self) -> usize {
        self.validations.len()
    }

    /// The verdict on a message the hook deferred ([`Event::ValidationPending`]):
    /// `Accept` delivers ([`Event::Message`]) and forwards it, `Reject` drops it and
    /// penalises the peer that sent it (P4), `Ignore` drops it. Returns false if `id` is not
    /// waiting (unknown, already decided, or timed out) or the verdict is `Pending`.
    pub fn report_validation(&mut self, now: Instant, id: &MessageId, verdict: Acceptance) -> bool {
        if verdict == Acceptance::Pending {
            return false;
        }
        let Some(p) = self.validations.remove(id) else {
            return false;
        };
        self.conclude(now, *id, p.from, p.hops, p.msg, verdict);
        self.on_timers(now);
        true
    }

    /// Our mesh for `topic` (empty if not subscribed).
    pub fn mesh_peers(&self, topic: &Topic) -> &[PeerId] {
        self.mesh.get(topic).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Connected peers we know to be subscribed to `topic`.
    pub fn topic_peers(&self, topic: &Topic) -> Vec<PeerId> {
        self.topic_peers
            .get(topic)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether we are subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &Topic) -> bool {
        self.mesh.contains_key(topic)
    }

    /// Sizes of the bounded caches: (seen ids, cached messages, promises, known peers).
    pub fn cache_sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.seen.len(),
            self.mcache.len(),
            self.promises.len(),
            self.peers.len(),
        )
    }

    /// The next output. Ends with [`Output::Timeout`] when nothing else is pending (the
    /// heartbeat, or an acknowledgement deadline).
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.outputs.pop_front() {
            return o;
        }
        let mut at = self.next_heartbeat;
        for p in self.pending_acks.values() {
            at = at.min(p.deadline);
        }
        if let Some((deadline, _)) = self.validation_deadlines.front() {
            at = at.min(*deadline);
        }
        Output::Timeout(at)
    }

    /// The cached score of a connected peer (0 for others).
    fn score_of(&self, peer: &PeerId) -> f64 {
        self.peers.get(peer).map_or(0.0, |s| s.score)
    }

    fn rescore(&mut self, peer: &PeerId, now: Instant) {
        let score = self.scoring.score(peer, now);
        if let Some(s) = self.peers.get_mut(peer) {
            s.score = score;
        }
    }

    fn send(&mut self, to: PeerId, rpc: Rpc) {
        self.metrics.sent += 1;
        self.outputs.push_back(Output::Send { to, rpc });
    }

    fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::PeerConnected { peer, ip, outbound } => {
                self.on_connected(now, peer, ip, outbound)
            }
            Input::PeerDisconnected { peer } => self.on_disconnected(now, peer),
            Input::Rpc { from, rpc } => self.on_rpc(now, from, rpc),
            Input::BadFrame { from, error } => self.on_bad_frame(now, from, &error),
            Input::Timeout => {}
        }
        self.on_timers(now);
    }

    /// Decodes a whole frame from `from` (length prefix included) and handles it; a frame
    /// that does not decode is dropped, counted and penalised.
    pub fn handle_frame(&mut self, now: Instant, from: PeerId, frame: &[u8]) {
        match codec::decode_frame(frame, &self.limits) {
            Ok(rpc) => self.handle_input(now, Input::Rpc { from, rpc }),
            Err(e) => self.handle_input(
                now,
                Input::BadFrame {
                    from,
                    error: Arc::new(e),
                },
            ),
        }
    }

    fn on_timers(&mut self, now: Instant) {
        let hb = self.next_heartbeat;
        if now >= hb {
            self.heartbeat(now);
            let interval = self.config.heartbeat_interval;
            let mut next = hb + interval;
            if next <= now {
                next = now + interval;
            }
            self.next_heartbeat = next;
        }
        while let Some(&(deadline, id)) = self.validation_deadlines.front() {
            if deadline > now {
                break;
            }
            self.validation_deadlines.pop_front();
            if self.validations.remove(&id).is_some() {
                self.metrics.validation_timeouts += 1;
                self.metrics.ignored += 1;
            }
        }
        if self.pending_acks.values().any(|p| p.deadline <= now) {
            let expired: Vec<MessageId> = self
                .pending_acks
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                if let Some(p) = self.pending_acks.remove(&id) {
                    let missing = match &p.request {
                        AckRequest::Named(names) => names
                            .iter()
                            .filter(|n| !p.ackers.contains(n))
                            .copied()
                            .collect(),
                        _ => Vec::new(),
                    };
                    self.event(Event::DeliveryTimedOut {
                        id,
                        ackers: p.ackers,
                        missing,
                    });
                }
            }
        }
    }

    // ---- user commands -------------------------------------------------------------------

    /// Subscribes to `topic`: tells every peer, and grafts a mesh. Returns false if already
    /// subscribed.
    pub fn subscribe(&mut self, now: Instant, topic: Topic) -> bool {
        if self.mesh.contains_key(&topic) {
            return false;
        }
        let mut mesh: Vec<PeerId> = Vec::new();
        // Fanout peers first (GossipSub: they already know us as a publisher).
        if let Some((fanout, _)) = self.fanout.remove(&topic) {
            for p in fanout {
                if mesh.len() < self.config.mesh_n && self.graftable(&topic, &p, now, 0.0) {
                    mesh.push(p);
                }
            }
        }
        let need = self.config.mesh_n.saturating_sub(mesh.len());
        let extra = self.pick_peers(&topic, need, |g, p| {
            !mesh.contains(p) && g.graftable(&topic, p, now, 0.0)
        });
        mesh.extend(extra);
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for p in peers {
            self.send(p, Rpc::Subscribe(topic.clone()));
        }
        for p in &mesh {
            self.scoring.graft(p, &topic, now);
            self.send(
                *p,
                Rpc::Graft {
                    topic: topic.clone(),
                },
            );
        }
        self.mesh.insert(topic, mesh);
        true
    }

    /// Unsubscribes from `topic`: prunes the mesh (with backoff) and tells every peer. Returns
    /// false if not subscribed.
    pub fn unsubscribe(&mut self, now: Instant, topic: &Topic) -> bool {
        let Some(mesh) = self.mesh.remove(topic) else {
            return false;
        };
        let backoff = self.config.prune_backoff;
        for p in mesh {
            self.scoring.prune(&p, topic, now);
            self.backoff.insert((topic.clone(), p), now + backoff);
            let prune = self.prune_rpc(topic, &p, true);
            self.send(p, prune);
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for p in peers {
            self.send(p, Rpc::Unsubscribe(topic.clone()));
        }
        true
    }

    /// Publishes `data` on `topic` (subscribed or not), signed by this node.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: Topic,
        data: Vec<u8>,
    ) -> Result<MessageId, GossipError> {
        self.publish_with(now, topic, data, PublishOptions::default())
    }

    /// Publishes with options (delivery confirmation). With an [`AckRequest`], the outcome
    /// arrives as [`Event::DeliveryConfirmed`] or [`Event::DeliveryTimedOut`].
    pub fn publish_with(
        &mut self,
        now: Instant,
        topic: Topic,
        data: Vec<u8>,
        options: PublishOptions,
    ) -> Result<MessageId, GossipError> {
        if data.len() > self.config.max_message_size {
            return Err(GossipError::MessageTooLarge {
                len: data.len(),
                max: self.config.max_message_size,
            });
        }
        if let AckRequest::Named(n) = &options.ack {
            if n.len() > crate::types::MAX_NAMED_ACKERS {
                return Err(GossipError::InvalidConfig {
                    reason: "at most 64 named ackers",
                });
            }
        }
        let wants_ack = !matches!(options.ack, AckRequest::None | AckRequest::Count(0));
        if wants_ack && self.pending_acks.len() >= self.config.max_pending_acks {
            return Err(GossipError::TooManyPendingAcks {
                pending: self.pending_acks.len(),
                max: self.config.max_pending_acks,
            });
        }
        let recipients = self.publish_recipients(&topic, now);
        if recipients.is_empty() {
            return Err(GossipError::NoPeers {
                topic: topic.to_string(),
            });
        }
        self.seq = self.seq.wrapping_add(1);
        let msg = Arc::new(Message::sign(
            &self.keypair,
            self.seq,
            topic,
            options.ack.clone(),
            data,
        ));
        let id = self.message_id(&msg);
        self.seen.insert(&id, now + self.config.seen_ttl);
        self.mcache.put(CacheEntry {
            id,
            msg: Arc::clone(&msg),
            first_seen: now,
            from: None,
            hops: 0,
            credited: Credits::default(),
            served: Vec::new(),
            acks_forwarded: 0,
        });
        if wants_ack {
            self.pending_acks.insert(
                id,
                PendingAck {
                    request: options.ack,
                    deadline: now + options.ack_deadline.unwrap_or(DEFAULT_ACK_DEADLINE),
                    ackers: Vec::new(),
                },
            );
        }
        for p in recipients {
            self.send(
                p,
                Rpc::Publish {
                    hops: 0,
                    msg: Arc::clone(&msg),
                },
            );
        }
        self.metrics.published += 1;
        Ok(id)
    }

    fn publish_recipients(&mut self, topic: &Topic, now: Instant) -> Vec<PeerId> {
        let publish_threshold = self.config.thresholds.publish;
        let mut out: Vec<PeerId> = Vec::new();
        if self.config.flood_publish {
            if let Some(set) = self.topic_peers.get(topic) {
                out.extend(
                    set.iter()
                        .filter(|p| self.score_of(p) >= publish_threshold)
                        .copied(),
                );
            }
        }
        if let Some(mesh) = self.mesh.get(topic) {
            for p in mesh {
                if !out.contains(p) {
                    out.push(*p);
                }
            }
        } else {
            // Fanout: publishing without subscribing.
            let mut fan = self
                .fanout
                .remove(topic)
                .map(|(f, _)| f)
                .unwrap_or_default();
            if fan.len() < self.config.mesh_n {
                let need = self.config.mesh_n - fan.len();
                let extra = self.pick_peers(topic, need, |g, p| {
                    !fan.contains(p) && g.score_of(p) >= publish_threshold
                });
                fan.extend(extra);
            }
            for p in &fan {
                if !out.contains(p) {
                    out.push(*p);
                }
            }
            if self.fanout.len() < self.config.max_fanout_topics {
                self.fanout.insert(topic.clone(), (fan, now));
            }
        }
        out
    }

    fn message_id(&self, msg: &Message) -> MessageId {
        match &self.config.message_id {
            Some(f) => f(msg),
            None => msg.default_id(),
        }
    }

    // ---- peers ---------------------------------------------------------------------------

    fn on_connected(&mut self, now: Instant, peer: PeerId, ip: Option<IpAddr>, outbound: bool) {
        if peer == self.local || self.peers.contains_key(&peer) {
            return;
        }
        if self.peers.len() >= self.config.max_peers {
            self.metrics.peers_refused += 1;
            return;
        }
        self.peers.insert(
            peer,
            PeerState {
                outbound,
                topics: Vec::new(),
                tokens: self.config.rate_limit_burst,
                last_refill: now,
                score: 0.0,
                ihave_in: 0,
                iwant_asked: 0,
                iwant_unknown: 0,
                addr: None,
            },
        );
        self.scoring.connect(peer, ip);
        self.rescore(&peer, now);
        let topics: Vec<Topic> = self.mesh.keys().cloned().collect();
        for t in topics {
            self.send(peer, Rpc::Subscribe(t));
        }
    }

    fn on_disconnected(&mut self, now: Instant, peer: PeerId) {
        let Some(state) = self.peers.remove(&peer) else {
            return;
        };
        for t in state.topics {
            if let Some(set) = self.topic_peers.get_mut(&t) {
                set.remove(&peer);
                if set.is_empty() {
                    self.topic_peers.remove(&t);
                }
            }
            self.event(Event::Unsubscribed { peer, topic: t });
        }
        // Every mesh and fanout, not only the peer's announced topics: a peer may GRAFT
        // before its SUBSCRIBE arrives.
        for (t, mesh) in self.mesh.iter_mut() {
            if let Some(i) = mesh.iter().position(|p| *p == peer) {
                mesh.swap_remove(i);
                self.scoring.prune(&peer, t, now);
            }
        }
        for (fan, _) in self.fanout.values_mut() {
            fan.retain(|p| *p != peer);
        }
        self.scoring.disconnect(&peer, now);
    }

    fn on_bad_frame(&mut self, now: Instant, from: PeerId, error: &GossipError) {
        match error {
            GossipError::FrameTooLarge { .. } | GossipError::MessageTooLarge { .. } => {
                self.metrics.oversized_frames += 1
            }
            _ => self.metrics.malformed_frames += 1,
        }
        tracing::debug!(peer = %from.short(), %error, "dropped a bad gossip frame");
        self.scoring.penalise(&from, 1.0);
        self.rescore(&from, now);
    }

    fn on_rpc(&mut self, now: Instant, from: PeerId, rpc: Rpc) {
        let rate = self.config.rate_limit_frames_per_sec;
        let burst = self.config.rate_limit_burst;
        let Some(state) = self.peers.get_mut(&from) else {
            return;
        };
        let elapsed = now
            .saturating_duration_since(state.last_refill)
            .as_secs_f64();
        state.tokens = (state.tokens + elapsed * rate).min(burst);
        state.last_refill = now;
        if state.tokens < 1.0 {
            self.metrics.rate_limited += 1;
            // 100 frames over the limit cost as much as one malformed frame.
            self.scoring.penalise(&from, 0.01);
            self.rescore(&from, now);
            return;
        }
        state.tokens -= 1.0;
        if state.score < self.config.thresholds.graylist {
            self.metrics.graylisted += 1;
            return;
        }
        match rpc {
            Rpc::Subscribe(t) => self.on_subscribe(now, from, t),
            Rpc::Unsubscribe(t) => self.on_unsubscribe(now, from, t),
            Rpc::Publish { hops, msg } => self.on_message(now, from, hops, msg),
            Rpc::IHave { topic, ids } => self.on_ihave(now, from, topic, ids),
            Rpc::IWant { ids } => self.on_iwant(now, from, ids),
            Rpc::Graft { topic } => self.on_graft(now, from, topic),
            Rpc::Prune {
                topic,
                backoff_secs,
                px,
            } => self.on_prune(now, from, topic, backoff_secs, px),
            Rpc::Ack(ack) => self.on_ack(now, from, *ack),
        }
    }

    fn on_subscribe(&mut self, now: Instant, from: PeerId, topic: Topic) {
        let max_per_peer = self.config.max_topics_per_peer;
        let Some(state) = self.peers.get_mut(&from) else {
            return;
        };
        if state.topics.contains(&topic) {
            return;
        }
        if state.topics.len() >= max_per_peer
            || (!self.topic_peers.contains_key(&topic)
                && self.topic_peers.len() >= self.config.max_known_topics)
        {
            self.metrics.unknown_topic += 1;
            self.scoring.penalise(&from, 0.1);
            self.rescore(&from, now);
            return;
        }
        state.topics.push(topic.clone());
        self.topic_peers
            .entry(topic.clone())
            .or_insert_with(|| FastSet::with_hasher(self.hasher))
            .insert(from);
        self.event(Event::Subscribed { peer: from, topic });
    }

    fn on_unsubscribe(&mut self, now: Instant, from: PeerId, topic: Topic) {
        let Some(state) = self.peers.get_mut(&from) else {
            return;
        };
        let Some(i) = state.topics.iter().position(|t| *t == topic) else {
            return;
        };
        state.topics.swap_remove(i);
        if let Some(set) = self.topic_peers.get_mut(&topic) {
            set.remove(&from);
            if set.is_empty() {
                self.topic_peers.remove(&topic);
            }
        }
        if let Some(mesh) = self.mesh.get_mut(&topic) {
            if let Some(i) = mesh.iter().position(|p| *p == from) {
                mesh.swap_remove(i);
                self.scoring.prune(&from, &topic, now);
            }
        }
        if let Some((fan, _)) = self.fanout.get_mut(&topic) {
            fan.retain(|p| *p != from);
        }
        self.event(Event::Unsubscribed { peer: from, topic });
    }

    /// A copy of `id` arrived from `from`: an IWANT promise `from` made for it is kept.
    fn keep_promise(&mut self, id: &MessageId, from: &PeerId) {
        if !self.promises.is_empty() && self.promises.get(id).is_some_and(|p| p.peer == *from) {
            self.promises.remove(id);
        }
    }

    fn verify(&self, msg: &Arc<Message>) -> bool {
        match &self.sig_cache {
            Some(c) => c.verify(msg),
            None => msg.verify().is_ok(),
        }
    }

    fn on_message(&mut self, now: Instant, from: PeerId, hops: u8, msg: Arc<Message>) {
        if msg.data.len() > self.config.max_message_size {
            self.metrics.oversized_frames += 1;
            self.scoring.invalid(&from, &msg.topic, now);
            self.rescore(&from, now);
            return;
        }
        let id = self.message_id(&msg);
        // Duplicates are the common case (about D copies per message): they are settled with
        // as few table lookups as possible. A message in the message cache has been seen; its
        // entry says whether this copy is still within the P3 delivery window.
        let window = self.config.score.topic.mesh_message_deliveries_window;
        if let Some(entry) = self.mcache.get_mut(&id) {
            self.metrics.duplicates += 1;
            if now.saturating_duration_since(entry.first_seen) <= window
                && !entry.credited.contains_or_full(&from)
                // Credited only if `from` is in our mesh for the topic (scoring tracks that).
                && self.scoring.near_first_delivery(&from, &msg.topic)
            {
                entry.credited.insert(&from);
            }
            self.keep_promise(&id, &from);
            return;
        }
        if !self.mesh.contains_key(&msg.topic) {
            self.metrics.unknown_topic += 1;
            return;
        }
        // Our own message coming back after it left both caches (relayed late, for example
        // repaired across a healed partition) is never delivered to ourselves.
        if self.seen.contains(&id) || msg.author == self.local {
            self.metrics.duplicates += 1;
            self.keep_promise(&id, &from);
            return;
        }
        let topic = msg.topic.clone();
        if !self.verify(&msg) {
            self.metrics.invalid_signature += 1;
            self.scoring.invalid(&from, &topic, now);
            self.rescore(&from, now);
            tracing::debug!(peer = %from.short(), "message with a bad signature");
            return;
        }
        let verdict = match &self.config.validator {
            Some(v) => v(&msg),
            None => Acceptance::Accept,
        };
        // Seen from now on, whatever the verdict: duplicates of a deferred message are not
        // validated again.
        self.seen.insert(&id, now + self.config.seen_ttl);
        if self.promises.remove(&id).is_some() {
            self.metrics.repaired += 1;
        }
        if verdict == Acceptance::Pending {
            if self.validations.len() >= self.config.max_pending_validations {
                self.metrics.validation_queue_full += 1;
                self.metrics.ignored += 1;
                return;
            }
            self.metrics.validations_deferred += 1;
            let deadline = now + self.config.validation_timeout;
            self.validation_deadlines.push_back((deadline, id));
            self.validations.insert(
                id,
                PendingValidation {
                    msg: Arc::clone(&msg),
                    from,
                    hops,
                },
            );
            self.event(Event::ValidationPending {
                id,
                message: msg,
                from,
            });
            return;
        }
        self.conclude(now, id, from, hops, msg, verdict);
    }

    /// Acts on a verdict: delivers and forwards an accepted message, scores a rejected one.
    fn conclude(
        &mut self,
        now: Instant,
        id: MessageId,
        from: PeerId,
        hops: u8,
        msg: Arc<Message>,
        verdict: Acceptance,
    ) {
        let topic = msg.topic.clone();
        match verdict {
            Acceptance::Accept => {}
            Acceptance::Reject => {
                self.metrics.rejected += 1;
                self.scoring.invalid(&from, &topic, now);
                self.rescore(&from, now);
                return;
            }
            Acceptance::Ignore | Acceptance::Pending => {
                self.metrics.ignored += 1;
                return;
            }
        }
        let hops = hops.saturating_add(1);
        self.scoring.first_delivery(&from, &topic, now);
        self.mcache.put(CacheEntry {
            id,
            msg: Arc::clone(&msg),
            first_seen: now,
            from: Some(from),
            hops,
            credited: Credits::of(&from),
            served: Vec::new(),
            acks_forwarded: 0,
        });
        if let Some(mesh) = self.mesh.get(&topic) {
            for p in mesh {
                if *p != from && *p != msg.author {
                    self.metrics.sent += 1;
                    self.outputs.push_back(Output::Send {
                        to: *p,
                        rpc: Rpc::Publish {
                            hops,
                            msg: Arc::clone(&msg),
                        },
                    });
                }
            }
        }
        if msg.ack.asks(&self.local) {
            let ack = Ack::sign(&self.keypair, msg.author, id);
            let to = if self.peers.contains_key(&msg.author) {
                msg.author
            } else {
                from
            };
            self.send(to, Rpc::Ack(Box::new(ack)));
        }
        self.metrics.delivered += 1;
        self.event(Event::Message {
            id,
            message: msg,
            from,
            hops,
        });
    }

    fn on_ihave(&mut self, now: Instant, from: PeerId, topic: Topic, ids: Vec<MessageId>) {
        if self.score_of(&from) < self.config.thresholds.gossip {
            self.metrics.below_gossip_threshold += 1;
            return;
        }
        let max_msgs = self.config.max_ihave_messages;
        let max_len = self.config.max_ihave_len;
        let Some(state) = self.peers.get_mut(&from) else {
            return;
        };
        state.ihave_in += 1;
        if state.ihave_in > max_msgs {
            self.metrics.ihave_dropped += 1;
            return;
        }
        if !self.mesh.contains_key(&topic) {
            self.metrics.unknown_topic += 1;
            return;
        }
        let reask = self.config.heartbeat_interval;
        let mut want = Vec::new();
        for id in ids.into_iter().take(max_len) {
            if self.seen.contains(&id) {
                continue;
            }
            if self
                .promises
                .get(&id)
                .is_some_and(|p| now.saturating_duration_since(p.asked) < reask)
            {
                continue;
            }
            if state.iwant_asked >= max_len {
                self.metrics.ihave_dropped += 1;
                break;
            }
            state.iwant_asked += 1;
            want.push(id);
        }
        if want.is_empty() {
            return;
        }
        let tracked = self.rng.random_range(0..want.len());
        for (i, id) in want.iter().enumerate() {
            if self.promises.len() < self.config.max_promises || self.promises.contains_key(id) {
                self.promises.insert(
                    *id,
                    Promise {
                        peer: from,
                        asked: now,
                        tracked: i == tracked,
                    },
                );
            }
        }
        self.send(from, Rpc::IWant { ids: want });
    }

    fn on_iwant(&mut self, now: Instant, from: PeerId, ids: Vec<MessageId>) {
        if self.score_of(&from) < self.config.thresholds.gossip {
            self.metrics.below_gossip_threshold += 1;
            return;
        }
        let max_len = self.config.max_ihave_len;
        let retrans = self.config.gossip_retransmission;
        let key = short_peer(&from);
        let mut unknown = 0usize;
        let mut replies = Vec::new();
        for id in ids.iter().take(max_len) {
            match self.mcache.get_mut(id) {
                Some(entry) => {
                    let count = match entry.served.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, c)) => c,
                        None => {
                            entry.served.push((key, 0));
                            match entry.served.last_mut() {
                                Some((_, c)) => c,
                                None => continue,
                            }
                        }
                    };
                    if u32::from(*count) >= retrans {
                        continue;
                    }
                    *count += 1;
                    replies.push(Rpc::Publish {
                        hops: entry.hops,
                        msg: Arc::clone(&entry.msg),
                    });
                }
                None => unknown += 1,
            }
        }
        self.metrics.iwant_unknown += unknown as u64;
        self.metrics.iwant_served += replies.len() as u64;
        if unknown > 0 {
            let mut flood = false;
            if let Some(state) = self.peers.get_mut(&from) {
                state.iwant_unknown += unknown;
                // Honest peers only ask for what we advertised; a budget of one IHAVE's worth
                // per heartbeat absorbs cache expiry, anything beyond is a flood.
                if state.iwant_unknown > max_len {
                    state.iwant_unknown = 0;
                    flood = true;
                }
            }
            if flood {
                self.scoring.penalise(&from, 1.0);
                self.rescore(&from, now);
            }
        }
        for r in replies {
            self.send(from, r);
        }
    }

    fn on_graft(&mut self, now: Instant, from: PeerId, topic: Topic) {
        let Some(mesh) = self.mesh.get(&topic) else {
            self.metrics.unknown_topic += 1;
            return;
        };
        if mesh.contains(&from) {
            return;
        }
        let backoff = self.config.prune_backoff;
        if let Some(until) = self.backoff.get(&(topic.clone(), from)) {
            if now < *until {
                // Grafting during a backoff is a protocol violation (P7). No PX.
                self.scoring.penalise(&from, 1.0);
                self.rescore(&from, now);
                self.backoff.insert((topic.clone(), from), now + backoff);
                let prune = self.prune_rpc(&topic, &from, false);
                self.send(from, prune);
                return;
            }
        }
        let outbound = self.peers.get(&from).is_some_and(|s| s.outbound);
        let full = mesh.len() >= self.config.mesh_n_high;
        let negative = self.score_of(&from) < 0.0;
        if negative || (full && !outbound) {
            self.backoff.insert((topic.clone(), from), now + backoff);
            // A full mesh offers the peer others to graft instead (PX); a bad score does not.
            let prune = self.prune_rpc(&topic, &from, !negative);
            self.send(from, prune);
            return;
        }
        // A graft means the peer is subscribed, even if its SUBSCRIBE has not arrived yet.
        if let Some(mesh) = self.mesh.get_mut(&topic) {
            mesh.push(from);
        }
        self.scoring.graft(&from, &topic, now);
    }

    fn on_prune(
        &mut self,
        now: Instant,
        from: PeerId,
        topic: Topic,
        backoff_secs: u32,
        px: Vec<PxPeer>,
    ) {
        let Some(mesh) = self.mesh.get_mut(&topic) else {
            return;
        };
        if let Some(i) = mesh.iter().position(|p| *p == from) {
            mesh.swap_remove(i);
            self.scoring.prune(&from, &topic, now);
        }
        let ours = self.config.prune_backoff;
        // Honour the peer's backoff, within reason (at most 1 h).
        let theirs = Duration::from_secs(u64::from(backoff_secs.min(3600)));
        self.backoff
            .insert((topic.clone(), from), now + ours.max(theirs));
        if px.is_empty() {
            return;
        }
        // Peer exchange, only from a peer that earned our trust (GossipSub v1.1).
        if self.score_of(&from) < self.config.thresholds.accept_px {
            self.metrics.px_refused += 1;
            return;
        }
        let local = self.local;
        let peers: Vec<PxPeer> = px
            .into_iter()
            .filter(|p| p.peer != local && p.peer != from && !self.peers.contains_key(&p.peer))
            .take(self.config.max_px_peers)
            .collect();
        self.metrics.px_accepted += peers.len() as u64;
        if !peers.is_empty() {
            self.event(Event::PeerExchange { topic, from, peers });
        }
    }

    /// A PRUNE for `to`, with peer exchange if `with_px`, `to` scores at least 0 and
    /// `prune_peers` > 0: random other peers subscribed to the topic with a non-negative
    /// score, with the address we know for each.
    fn prune_rpc(&mut self, topic: &Topic, to: &PeerId, with_px: bool) -> Rpc {
        let n = if with_px && self.score_of(to) >= 0.0 {
            self.config.prune_peers
        } else {
            0
        };
        let picked = self.pick_peers(topic, n, |g, p| p != to && g.score_of(p) >= 0.0);
        let px: Vec<PxPeer> = picked
            .into_iter()
            .map(|peer| PxPeer {
                peer,
                addr: self.peers.get(&peer).and_then(|s| s.addr),
            })
            .collect();
        self.metrics.px_sent += px.len() as u64;
        Rpc::Prune {
            topic: topic.clone(),
            backoff_secs: secs_u32(self.config.prune_backoff),
            px,
        }
    }

    fn on_ack(&mut self, now: Instant, from: PeerId, ack: Ack) {
        if ack.author == self.local {
            let Some(pending) = self.pending_acks.get_mut(&ack.id) else {
                self.metrics.acks_dropped += 1;
                return;
            };
            let named_ok = match &pending.request {
                AckRequest::Named(n) => n.contains(&ack.acker),
                _ => true,
            };
            if !named_ok || pending.ackers.contains(&ack.acker) {
                self.metrics.acks_dropped += 1;
                return;
            }
            if ack.verify().is_err() {
                self.metrics.acks_dropped += 1;
                self.scoring.penalise(&from, 1.0);
                self.rescore(&from, now);
                return;
            }
            pending.ackers.push(ack.acker);
            let done = match &pending.request {
                AckRequest::Named(n) => pending.ackers.len() >= n.len(),
                AckRequest::Count(c) => pending.ackers.len() >= usize::from(*c),
                AckRequest::None => true,
            };
            if done {
                if let Some(p) = self.pending_acks.remove(&ack.id) {
                    self.event(Event::DeliveryConfirmed {
                        id: ack.id,
                        ackers: p.ackers,
                    });
                }
            }
            return;
        }
        // Relay towards the author, along the path the message came, within the quota the
        // author set. Acks for messages we never relayed are dropped.
        let author_connected = self.peers.contains_key(&ack.author);
        let Some(entry) = self.mcache.get_mut(&ack.id) else {
            self.metrics.acks_dropped += 1;
            return;
        };
        let quota = match &entry.msg.ack {
            AckRequest::None => 0,
            AckRequest::Named(n) => n.len() as u16,
            AckRequest::Count(c) => *c,
        };
        if entry.acks_forwarded >= quota || entry.msg.author != ack.author {
            self.metrics.acks_dropped += 1;
            return;
        }
        entry.acks_forwarded += 1;
        let to = if author_connected {
            Some(ack.author)
        } else {
            entry.from
        };
        if let Some(to) = to {
            if to != from {
                self.send(to, Rpc::Ack(Box::new(ack)));
            }
        }
    }

    // ---- heartbeat -----------------------------------------------------------------------

    fn graftable(&self, topic: &Topic, peer: &PeerId, now: Instant, min_score: f64) -> bool {
        self.peers.contains_key(peer)
            && self
                .backoff
                .get(&(topic.clone(), *peer))
                .is_none_or(|until| now >= *until)
            && self.score_of(peer) >= min_score
    }

    /// Up to `n` random peers subscribed to `topic` that pass `filter`.
    fn pick_peers(
        &mut self,
        topic: &Topic,
        n: usize,
        filter: impl Fn(&Self, &PeerId) -> bool,
    ) -> Vec<PeerId> {
        if n == 0 {
            return Vec::new();
        }
        let Some(set) = self.topic_peers.get(topic) else {
            return Vec::new();
        };
        let mut candidates: Vec<PeerId> = set.iter().filter(|p| filter(self, p)).copied().collect();
        // Sort first so the choice depends only on the seed, not on table layout.
        candidates.sort_unstable();
        candidates.shuffle(&mut self.rng);
        candidates.truncate(n);
        candidates
    }

    fn heartbeat(&mut self, now: Instant) {
        self.ticks += 1;
        self.scoring.refresh(now);
        for (p, s) in self.peers.iter_mut() {
            s.score = self.scoring.score(p, now);
        }

        // Broken promises (P7).
        let followup = self.config.iwant_followup_time;
        let mut broken = Vec::new();
        self.promises.retain(|_, p| {
            if now.saturating_duration_since(p.asked) >= followup {
                if p.tracked {
                    broken.push(p.peer);
                }
                false
            } else {
                true
            }
        });
        for p in broken {
            self.metrics.broken_promises += 1;
            self.scoring.penalise(&p, 1.0);
            self.rescore(&p, now);
        }
        for s in self.peers.values_mut() {
            s.ihave_in = 0;
            s.iwant_asked = 0;
            s.iwant_unknown = 0;
        }

        let topics: Vec<Topic> = {
            let mut t: Vec<Topic> = self.mesh.keys().cloned().collect();
            t.sort_unstable();
            t
        };
        for topic in &topics {
            self.maintain_mesh(topic, now);
        }
        self.maintain_fanout(now);
        self.emit_gossip();

        self.mcache.shift();
        self.seen.expire(now);
        if self.ticks % 10 == 0 {
            self.backoff.retain(|_, until| *until > now);
        }
    }

    fn maintain_mesh(&mut self, topic: &Topic, now: Instant) {
        let cfg = &self.config;
        let (d, d_lo, d_hi, d_score, d_out) = (
            cfg.mesh_n,
            cfg.mesh_n_low,
            cfg.mesh_n_high,
            cfg.mesh_n_score,
            cfg.mesh_outbound_min,
        );
        let backoff = cfg.prune_backoff;
        let Some(mut mesh) = self.mesh.remove(topic) else {
            return;
        };
        // (peer, offer PX): pruned for a bad score (no PX) or from an oversubscribed mesh.
        let mut to_prune: Vec<(PeerId, bool)> = Vec::new();
        let mut to_graft: Vec<PeerId> = Vec::new();

        // 1. Drop peers with a negative score.
        mesh.retain(|p| {
            if self.score_of(p) < 0.0 {
                to_prune.push((*p, false));
                false
            } else {
                true
            }
        });

        // 2. Too few: graft up to D.
        if mesh.len() < d_lo {
            let need = d - mesh.len();
            let picked = self.pick_peers(topic, need, |g, p| {
                !mesh.contains(p) && g.graftable(topic, p, now, 0.0)
            });
            to_graft.extend(picked.iter().copied());
            mesh.extend(picked);
        }

        // 3. Too many: keep the best D_score by score, then random, honouring the outbound
        // quota.
        if mesh.len() > d_hi {
            let mut scored: Vec<(f64, PeerId)> =
                mesh.iter().map(|p| (self.score_of(p), *p)).collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let (best, rest) = scored.split_at(d_score.min(scored.len()));
            let mut rest: Vec<PeerId> = rest.iter().map(|(_, p)| *p).collect();
            rest.shuffle(&mut self.rng);
            let mut keep: Vec<PeerId> = best.iter().map(|(_, p)| *p).collect();
            let is_out = |g: &Self, p: &PeerId| g.peers.get(p).is_some_and(|s| s.outbound);
            // Outbound peers first among the random remainder until the quota is met.
            let mut out_count = keep.iter().filter(|p| is_out(self, p)).count();
            let mut others = Vec::new();
            for p in rest {
                if keep.len() < d && out_count < d_out && is_out(self, &p) {
                    out_count += 1;
                    keep.push(p);
                } else {
                    others.push(p);
                }
            }
            for p in others {
                if keep.len() < d {
                    keep.push(p);
                } else {
                    to_prune.push((p, true));
                }
            }
            mesh = keep;
        }

        // 4. Outbound quota.
        if mesh.len() >= d_lo {
            let out_count = mesh
                .iter()
                .filter(|p| self.peers.get(p).is_some_and(|s| s.outbound))
                .count();
            if out_count < d_out {
                let picked = self.pick_peers(topic, d_out - out_count, |g, p| {
                    !mesh.contains(p)
                        && g.peers.get(p).is_some_and(|s| s.outbound)
                        && g.graftable(topic, p, now, 0.0)
                });
                to_graft.extend(picked.iter().copied());
                mesh.extend(picked);
            }
        }

        // 5. Opportunistic grafting: if the mesh's median score is low, graft peers above it.
        if self.config.opportunistic_graft_ticks > 0
            && self.ticks % self.config.opportunistic_graft_ticks == 0
            && mesh.len() > 1
        {
            let mut scores: Vec<f64> = mesh.iter().map(|p| self.score_of(p)).collect();
            scores.sort_by(f64::total_cmp);
            let median = scores[scores.len() / 2];
            if median < self.config.thresholds.opportunistic_graft {
                let n = self.config.opportunistic_graft_peers;
                let picked = self.pick_peers(topic, n, |g, p| {
                    !mesh.contains(p) && g.graftable(topic, p, now, median + f64::EPSILON)
                });
                to_graft.extend(picked.iter().copied());
                mesh.extend(picked);
            }
        }

        for (p, with_px) in to_prune {
            self.scoring.prune(&p, topic, now);
            self.backoff.insert((topic.clone(), p), now + backoff);
            let prune = self.prune_rpc(topic, &p, with_px);
            self.send(p, prune);
        }
        for p in &to_graft {
            self.scoring.graft(p, topic, now);
            self.send(
                *p,
                Rpc::Graft {
                    topic: topic.clone(),
                },
            );
        }
        self.mesh.insert(topic.clone(), mesh);
    }

    fn maintain_fanout(&mut self, now: Instant) {
        let ttl = self.config.fanout_ttl;
        self.fanout
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < ttl);
        let threshold = self.config.thresholds.publish;
        let mut topics: Vec<Topic> = self.fanout.keys().cloned().collect();
        topics.sort_unstable();
        for topic in topics {
            let Some((mut fan, last)) = self.fanout.remove(&topic) else {
                continue;
            };
            fan.retain(|p| {
                self.peers.get(p).is_some_and(|s| s.topics.contains(&topic))
                    && self.score_of(p) >= threshold
            });
            if fan.len() < self.config.mesh_n {
                let need = self.config.mesh_n - fan.len();
                let extra = self.pick_peers(&topic, need, |g, p| {
                    !fan.contains(p) && g.score_of(p) >= threshold
                });
                fan.extend(extra);
            }
            self.fanout.insert(topic, (fan, last));
        }
    }

    fn emit_gossip(&mut self) {
        let ids = self.mcache.gossip_ids(self.config.history_gossip);
        if ids.is_empty() {
            return;
        }
        let mut by_topic: Vec<(Topic, Vec<MessageId>)> = Vec::new();
        for (t, id) in ids {
            match by_topic.iter_mut().find(|(x, _)| x == t) {
                Some((_, v)) => v.push(id),
                None => by_topic.push((t.clone(), vec![id])),
            }
        }
        let threshold = self.config.thresholds.gossip;
        for (topic, mut ids) in by_topic {
            let exclude: Vec<PeerId> = match (self.mesh.get(&topic), self.fanout.get(&topic)) {
                (Some(m), _) => m.clone(),
                (None, Some((f, _))) => f.clone(),
                (None, None) => continue,
            };
            let eligible = self.topic_peers.get(&topic).map_or(0, |s| s.len());
            let n = self
                .config
                .gossip_lazy
                .max((self.config.gossip_factor * eligible as f64) as usize);
            let targets = self.pick_peers(&topic, n, |g, p| {
                !exclude.contains(p) && g.score_of(p) >= threshold
            });
            if targets.is_empty() {
                continue;
            }
            if ids.len() > self.config.max_ihave_len {
                ids.shuffle(&mut self.rng);
                ids.truncate(self.config.max_ihave_len);
            }
            for p in targets {
                self.send(
                    p,
                    Rpc::IHave {
                        topic: topic.clone(),
                        ids: ids.clone(),
                    },
                );
            }
        }
    }
}

fn short_peer(p: &PeerId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p.as_bytes()[..8]);
    u64::from_le_bytes(b)
}
