//! The sans-IO node: [`Dht`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use p2p_foundation_identity::{Key, PeerId, Signed, Verified};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::config::Config;
use crate::dist::Dist;
use crate::message::{Contact, Message, Request, RequestId, Response};
use crate::persist::RoutingSnapshot;
use crate::ratelimit::RateLimiter;
use crate::record::{
    AcceptAll, ProviderRecord, Record, RecordStore, StoreLimits, Validator, check_provider,
    check_record,
};
use crate::routing::{Insert, RoutingTable};
use crate::{DhtError, RejectReason};

/// How often housekeeping (expiry, rate-limiter cleanup, refresh and republish checks) runs.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// Identifies a query started on a [`Dht`]; reported back in [`Event::QueryFinished`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// Something that happened to a [`Dht`]: feed it with [`Dht::handle_input`].
#[derive(Debug)]
pub enum Input {
    /// A decoded message from `from`, whose identity the transport authenticated, received
    /// from (or sent to) `addr`.
    Message {
        /// The authenticated sender.
        from: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// The message.
        msg: Message,
    },
    /// A raw frame (length prefix included) from `from`; decoded, counted if malformed.
    Frame {
        /// The authenticated sender.
        from: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// The transport could not deliver request `id` to `to`, or its response.
    RequestFailed {
        /// The peer the request was for.
        to: PeerId,
        /// The request.
        id: RequestId,
    },
    /// The time given by the last [`Output::Timeout`] has come.
    Timeout,
}

/// What a [`Dht`] asks its driver to do, from [`Dht::poll_output`].
#[derive(Debug)]
pub enum Output {
    /// Send `msg` to `to` at `addr`. A request expects a response with the same id, fed back
    /// as [`Input::Message`]; if the transport fails, feed [`Input::RequestFailed`].
    Send {
        /// The recipient.
        to: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// The message.
        msg: Message,
    },
    /// Something the application may want to know.
    Event(Event),
    /// Nothing more to do now: call [`Dht::handle_input`] with [`Input::Timeout`] at this
    /// instant (or earlier, when other input arrives). Always the last output of a batch.
    Timeout(Instant),
}

/// Events for the application.
#[derive(Debug, Clone)]
pub enum Event {
    /// A query started by [`Dht::find_node`], [`Dht::get_record`], [`Dht::put_record`],
    /// [`Dht::get_providers`], [`Dht::add_provider`] or [`Dht::bootstrap`] ended.
    QueryFinished {
        /// The query.
        id: QueryId,
        /// Its outcome.
        result: QueryResult,
        /// What it cost.
        stats: QueryStats,
    },
}

/// The outcome of a query.
#[derive(Debug, Clone)]
pub enum QueryResult {
    /// Result of [`Dht::find_node`]: the k closest nodes that answered, closest first.
    FindNode {
        /// The contacts.
        closest: Vec<Contact>,
    },
    /// Result of [`Dht::get_record`]: valid records found (highest sequence first), empty if none.
    GetRecord {
        /// The records; every one passed the signature, expiry, key and validator checks.
        records: Vec<Verified<Record>>,
    },
    /// Result of [`Dht::get_providers`]: valid provider records found, one per provider.
    GetProviders {
        /// The provider records; every one passed the same checks.
        providers: Vec<Verified<ProviderRecord>>,
    },
    /// Result of [`Dht::put_record`]: how many of the k closest nodes accepted the record.
    PutRecord {
        /// Nodes that stored it.
        stored: usize,
    },
    /// Result of [`Dht::add_provider`]: how many of the k closest nodes accepted the record.
    AddProvider {
        /// Nodes that stored it.
        stored: usize,
    },
    /// Result of [`Dht::bootstrap`]: self-lookup and bucket refreshes are done.
    Bootstrap {
        /// Entries in the routing table now.
        routing_table_len: usize,
    },
}

/// What a query cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryStats {
    /// Requests sent (lookup and store phases).
    pub requests: u32,
    /// Responses received.
    pub responses: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// Sequential request rounds needed to learn of the farthest-down result: contacts from
    /// the routing table are at hop 1, contacts learned from a hop-`h` node at hop `h + 1`;
    /// this is the largest hop among the final k closest.
    pub hops: u32,
}

/// Counters of what a node did and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests sent.
    pub requests_sent: u64,
    /// Requests received (before rate limiting).
    pub requests_received: u64,
    /// Responses received and matched to a request.
    pub responses_received: u64,
    /// Frames that did not decode.
    pub malformed: u64,
    /// Frames over the size limit.
    pub oversized: u64,
    /// Responses with an id no request of ours has (or has any more).
    pub unknown_responses: u64,
    /// Responses with a known id from another peer than the one asked.
    pub unexpected_peer: u64,
    /// Responses of the wrong type for their request.
    pub mismatched_responses: u64,
    /// Inbound requests dropped by the per-peer rate limit.
    pub rate_limited: u64,
    /// Requests that timed out or that the transport failed.
    pub request_failures: u64,
    /// Records and provider records refused (bad signature, expired, wrong key, …).
    pub records_rejected: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Waiting,
    InFlight,
    Ok,
    Failed,
    /// Queried by another disjoint path: this path neither queries nor counts it.
    Claimed,
}

struct Cand {
    dist: Dist,
    contact: Contact,
    state: St,
    depth: u8,
}

#[derive(Default)]
struct Path {
    /// Sorted by distance to the target, no duplicates.
    cands: Vec<Cand>,
    /// `cands[i].dist`, contiguous for fast searching.
    dists: Vec<Dist>,
    in_flight: usize,
}

impl Path {
    fn find(&self, dist: &Dist) -> Result<usize, usize> {
        self.dists.binary_search(dist)
    }

    fn insert(&mut self, at: usize, cand: Cand) {
        self.dists.insert(at, cand.dist);
        self.cands.insert(at, cand);
    }

    fn remove(&mut self, at: usize) {
        self.dists.remove(at);
        self.cands.remove(at);
    }

    fn has_queried(&self, dist: &Dist) -> bool {
        self.find(dist)
            .is_ok_and(|i| matches!(self.cands[i].state, St::InFlight | St::Ok | St::Failed))
    }
}

enum Kind {
    FindNode,
    GetRecord,
    GetProviders,
    PutRecord(Signed<Record>),
    AddProvider(Signed<ProviderRecord>),
    Bootstrap,
    Refresh,
}

struct Query {
    kind: Kind,
    target: Key,
    paths: Vec<Path>,
    stats: QueryStats,
    records: Vec<Verified<Record>>,
    providers: Vec<Verified<ProviderRecord>>,
    /// `Some` once the lookup is over and stores (or child refreshes) are outstanding.
    outstanding: Option<usize>,
    accepted: usize,
    /// Report the end to the application.
    notify: bool,
    parent: Option<QueryId>,
}

#[derive(Clone, Copy)]
enum PendingKind {
    Lookup { query: QueryId, path: u8 },
    Store { query: QueryId },
    EvictPing,
}

struct Pending {
    to: Contact,
    kind: PendingKind,
}

/// A Kademlia node with no I/O: feed it [`Input`]s, carry out its [`Output`]s.
///
/// ```
/// use std::time::{Instant, SystemTime};
/// use p2p_foundation_dht::{Config, Dht, Output};
/// use p2p_foundation_identity::{Key, Keypair};
///
/// let now = Instant::now();
/// let mut dht = Dht::new(Keypair::generate().peer_id(), Config::default(), 7, now, SystemTime::now());
/// dht.find_node(now, Key::for_record(b"anything"));
/// // Nobody known yet: the lookup ends at once, empty.
/// let mut events = 0;
/// loop {
///     match dht.poll_output() {
///         Output::Send { .. } => unreachable!("no contacts to ask"),
///         Output::Event(_) => events += 1,
///         Output::Timeout(_) => break,
///     }
/// }
/// assert_eq!(events, 1);
/// ```
pub struct Dht {
    local: PeerId,
    local_key: Key,
    config: Config,
    rng: ChaCha8Rng,
    base_instant: Instant,
    base_wall: SystemTime,
    table: RoutingTable,
    store: RecordStore,
    validator: Box<dyn Validator>,
    pending: HashMap<RequestId, Pending>,
    timers: BinaryHeap<Reverse<(Instant, RequestId)>>,
    queries: HashMap<QueryId, Query>,
    next_query: u64,
    limiter: RateLimiter,
    outputs: VecDeque<Output>,
    published: HashMap<Key, Verified<Record>>,
    provided: HashMap<Key, Verified<ProviderRecord>>,
    next_maintenance: Instant,
    next_refresh: Instant,
    next_republish: Instant,
    next_replicate: Instant,
    stats: Stats,
}

impl Dht {
    /// A node for `local`, with randomness (request ids, refresh keys) from `seed`, at time
    /// `now`, which is wall-clock time `wall` (used to check signed records' expiry).
    pub fn new(local: PeerId, config: Config, seed: u64, now: Instant, wall: SystemTime) -> Self {
        let local_key = local.kad_key();
        let table = RoutingTable::new(
            local_key,
            config.k,
            config.replacement_cache,
            config.diversity,
        );
        Self {
            local,
            local_key,
            rng: ChaCha8Rng::seed_from_u64(seed),
            base_instant: now,
            base_wall: wall,
            table,
            store: RecordStore::default(),
            validator: Box::new(AcceptAll),
            pending: HashMap::new(),
            timers: BinaryHeap::new(),
            queries: HashMap::new(),
            next_query: 0,
            limiter: RateLimiter::new(config.rate_limit),
            outputs: VecDeque::new(),
            published: HashMap::new(),
            provided: HashMap::new(),
            next_maintenance: now + MAINTENANCE_INTERVAL,
            next_refresh: now + config.refresh_interval,
            next_republish: now + config.republish_interval,
            next_replicate: now + config.replicate_interval,
            stats: Stats::default(),
            config,
        }
    }

    /// Replaces the application validator (default [`AcceptAll`]).
    pub fn set_validator(&mut self, validator: impl Validator) {
        self.validator = Box::new(validator);
    }

    /// Sets the number of S/Kademlia disjoint paths for queries started from now on.
    pub fn set_disjoint_paths(&mut self, d: usize) {
        self.config.disjoint_paths = d.clamp(1, 16);
    }

    /// This node's peer id.
    pub fn local_peer(&self) -> PeerId {
        self.local
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Entries in the routing table.
    pub fn routing_table_len(&self) -> usize {
        self.table.len()
    }

    /// Every routing-table contact.
    pub fn routing_contacts(&self) -> Vec<Contact> {
        self.table.entries().map(|e| e.contact).collect()
    }

    /// Records held (for others and our own).
    pub fn record_count(&self) -> usize {
        self.store.record_count()
    }

    /// Provider records held.
    pub fn provider_count(&self) -> usize {
        self.store.provider_count()
    }

    /// The live record this node holds for `key`, if any.
    pub fn local_record(&self, now: Instant, key: &Key) -> Option<&Verified<Record>> {
        self.store.get_record(now, key)
    }

    /// Queries in progress.
    pub fn active_queries(&self) -> usize {
        self.queries.len()
    }

    /// The routing table, to save and later pass to [`Dht::restore_routing`].
    pub fn routing_snapshot(&self) -> RoutingSnapshot {
        RoutingSnapshot {
            contacts: self.routing_contacts(),
        }
    }

    /// Adds saved contacts to the routing table (within the usual limits).
    pub fn restore_routing(&mut self, now: Instant, snapshot: &RoutingSnapshot) {
        for c in &snapshot.contacts {
            self.add_contact(now, *c);
        }
    }

    /// Adds a contact believed reachable (a bootstrap node, a saved contact) to the routing
    /// table. It is removed like any other once it stops answering.
    pub fn add_contact(&mut self, now: Instant, contact: Contact) {
        if contact.peer() != self.local {
            // Not heard from yet, but trusted by the caller: added like a contact heard now.
            let _ = self
                .table
                .on_heard(now, contact, self.config.liveness_window);
        }
    }

    /// Removes `peer` from the routing table at once, because it announced that it is
    /// leaving (e.g. it closed its connection on shutdown), instead of waiting for
    /// requests to it to fail. A replacement contact takes its place. Returns whether it
    /// was in the table; it is added again like any other contact if it is heard from.
    pub fn remove_contact(&mut self, peer: &PeerId) -> bool {
        self.table.remove_peer(peer)
    }

    /// Wall-clock time at `now`.
    fn wall(&self, now: Instant) -> SystemTime {
        match now.checked_duration_since(self.base_instant) {
            Some(d) => self.base_wall + d,
            None => self.base_wall - self.base_instant.duration_since(now),
        }
    }

    fn limits(&self) -> StoreLimits {
        StoreLimits {
            max_records: self.config.max_records,
            max_provider_keys: self.config.max_provider_keys,
            max_providers_per_key: self.config.max_providers_per_key,
            max_ttl: self.config.max_record_ttl,
        }
    }

    // ---------------------------------------------------------------- commands

    /// Joins the network through `seeds`: adds them, looks up the local key, then refreshes
    /// every bucket that is not full. Ends with [`QueryResult::Bootstrap`].
    pub fn bootstrap(&mut self, now: Instant, seeds: &[Contact]) -> QueryId {
        for s in seeds {
            self.add_contact(now, *s);
        }
        let target = self.local_key;
        self.start_query(now, Kind::Bootstrap, target, true, None)
    }

    /// Finds the k nodes closest to `target`. Ends with [`QueryResult::FindNode`].
    pub fn find_node(&mut self, now: Instant, target: Key) -> QueryId {
        self.start_query(now, Kind::FindNode, target, true, None)
    }

    /// Looks up the record stored under `key`. Ends with [`QueryResult::GetRecord`].
    pub fn get_record(&mut self, now: Instant, key: Key) -> QueryId {
        self.start_query(now, Kind::GetRecord, key, true, None)
    }

    /// Looks up the providers of `key`. Ends with [`QueryResult::GetProviders`].
    pub fn get_providers(&mut self, now: Instant, key: Key) -> QueryId {
        self.start_query(now, Kind::GetProviders, key, true, None)
    }

    /// Stores `record` on the k nodes closest to its key (and here), and republishes it every
    /// `republish_interval` until it expires. Ends with [`QueryResult::PutRecord`].
    ///
    /// Fails at once if the record would be refused anyway (bad signature, expired, too
    /// large, refused by the validator, stale).
    pub fn put_record(
        &mut self,
        now: Instant,
        record: Signed<Record>,
    ) -> Result<QueryId, DhtError> {
        let wall = self.wall(now);
        let record = check_record(
            record,
            None,
            wall,
            self.config.max_record_len,
            &*self.validator,
        )
        .map_err(|reason| DhtError::RecordRejected { reason })?;
        let key = record.payload().key;
        let limits = self.limits();
        let owner = self.validator.is_owner(record.payload(), &record.signer());
        self.store
            .put_record(now, wall, record.clone(), owner, &limits)
            .map_err(|reason| DhtError::RecordRejected { reason })?;
        self.published.insert(key, record.clone());
        let kind = Kind::PutRecord(record.into_envelope());
        Ok(self.start_query(now, kind, key, true, None))
    }

    /// Announces `record` (normally signed by this node) on the k nodes closest to its key,
    /// and republishes it every `republish_interval` until it expires. Ends with
    /// [`QueryResult::AddProvider`].
    pub fn add_provider(
        &mut self,
        now: Instant,
        record: Signed<ProviderRecord>,
    ) -> Result<QueryId, DhtError> {
        let wall = self.wall(now);
        let record = check_provider(
            record,
            None,
            wall,
            self.config.max_record_len,
            &*self.validator,
        )
        .map_err(|reason| DhtError::RecordRejected { reason })?;
        let key = record.payload().key;
        let limits = self.limits();
        self.store
            .put_provider(now, wall, record.clone(), &limits)
            .map_err(|reason| DhtError::RecordRejected { reason })?;
        self.provided.insert(key, record.clone());
        let kind = Kind::AddProvider(record.into_envelope());
        Ok(self.start_query(now, kind, key, true, None))
    }

    // ---------------------------------------------------------------- input / output

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Message { from, addr, msg } => self.handle_message(now, from, addr, msg),
            Input::Frame { from, addr, bytes } => self.handle_frame(now, from, addr, &bytes),
            Input::RequestFailed { to, id } => self.request_failed(now, to, id),
            Input::Timeout => self.handle_timeout(now),
        }
    }

    /// The next thing to do. Ends every batch with [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        match self.outputs.pop_front() {
            Some(out) => out,
            None => Output::Timeout(self.poll_timeout()),
        }
    }

    /// When [`Input::Timeout`] is next due.
    pub fn poll_timeout(&mut self) -> Instant {
        // Forget timers of requests already answered, so the driver is not woken for them.
        while let Some(Reverse((_, id))) = self.timers.peek() {
            if self.pending.contains_key(id) {
                break;
            }
            self.timers.pop();
        }
        let mut at = self.next_maintenance;
        if let Some(Reverse((t, _))) = self.timers.peek() {
            at = at.min(*t);
        }
        at
    }

    /// Decodes a raw frame and handles it; malformed and oversized frames are dropped and
    /// counted.
    pub fn handle_frame(&mut self, now: Instant, from: PeerId, addr: SocketAddr, bytes: &[u8]) {
        match Message::decode(bytes, self.config.max_frame_len) {
            Ok(msg) => self.handle_message(now, from, addr, msg),
            Err(DhtError::FrameTooLarge { len, max }) => {
                self.stats.oversized += 1;
                tracing::debug!(peer = %from.short(), len, max, "dropped oversized frame");
            }
            Err(e) => {
                self.stats.malformed += 1;
                tracing::debug!(peer = %from.short(), error = %e, "dropped malformed frame");
            }
        }
    }

    /// Handles a message from `from` (authenticated by the transport) at `addr`.
    pub fn handle_message(&mut self, now: Instant, from: PeerId, addr: SocketAddr, msg: Message) {
        if from == self.local {
            return;
        }
        match msg {
            Message::Request { id, body } => {
                self.on_request(now, Contact::new(from, addr), id, body)
            }
            Message::Response { id, body } => self.on_response(now, from, id, body),
        }
    }

    /// The transport failed to deliver request `id` to `to`.
    pub fn request_failed(&mut self, now: Instant, to: PeerId, id: RequestId) {
        if self.pending.get(&id).is_some_and(|p| p.to.peer() == to) {
            if let Some(p) = self.pending.remove(&id) {
                self.on_failure(now, p);
            }
        }
    }

    /// Handles timers: request timeouts and periodic maintenance.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(p) = self.pending.remove(&id) {
                self.on_failure(now, p);
            }
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE_INTERVAL;
            self.maintenance(now);
        }
    }

    fn maintenance(&mut self, now: Instant) {
        self.store.sweep(now);
        self.limiter.forget_idle(now);
        let wall = self.wall(now);
        let wall_ms = p2p_foundation_identity::unix_millis(wall);
        self.published.retain(|_, r| r.expires_at_ms() > wall_ms);
        self.provided.retain(|_, r| r.expires_at_ms() > wall_ms);
        if now >= self.next_refresh {
            self.next_refresh = now + self.config.refresh_interval;
            for j in self
                .table
                .stale_buckets(now, self.config.refresh_interval, false)
            {
                let target = self.random_key_in_bucket(j);
                self.start_query(now, Kind::Refresh, target, false, None);
            }
        }
        if now >= self.next_republish {
            self.next_republish = now + self.config.republish_interval;
            // Sorted, so that the same seed gives the same run (hash maps iterate randomly).
            let mut records: Vec<_> = self.published.values().cloned().collect();
            records.sort_by_key(|r| r.payload().key);
            for r in records {
                let key = r.payload().key;
                self.start_query(now, Kind::PutRecord(r.into_envelope()), key, false, None);
            }
            let mut providers: Vec<_> = self.provided.values().cloned().collect();
            providers.sort_by_key(|r| r.payload().key);
            for r in providers {
                let key = r.payload().key;
                self.start_query(now, Kind::AddProvider(r.into_envelope()), key, false, None);
            }
        }
        if now >= self.next_replicate {
            self.next_replicate = now + self.config.replicate_interval;
            for r in self
                .store
                .due_for_replication(now, self.config.replicate_interval)
            {
                let key = r.payload().key;
                if !self.published.contains_key(&key) {
                    self.start_query(now, Kind::PutRecord(r.into_envelope()), key, false, None);
                }
            }
        }
    }

    fn random_key_in_bucket(&mut self, j: usize) -> Key {
        let mut random = [0u8; 32];
        self.rng.fill_bytes(&mut random);
        self.table.random_key_in_bucket(j, random)
    }

    // ---------------------------------------------------------------- inbound

    fn heard(&mut self, now: Instant, contact: Contact) {
        if let Insert::Full { ping: Some(oldest) } =
            self.table
                .on_heard(now, contact, self.config.liveness_window)
        {
            self.send_request(now, oldest, Request::Ping, PendingKind::EvictPing);
        }
    }

    fn on_request(&mut self, now: Instant, from: Contact, id: RequestId, body: Request) {
        self.stats.requests_received += 1;
        if !self.limiter.allow(now, &from.peer()) {
            self.stats.rate_limited += 1;
            tracing::debug!(peer = %from.peer().short(), "rate limited");
            return;
        }
        self.heard(now, from);
        let k = self.config.k;
        let reply = match body {
            Request::Ping => Response::Pong,
            Request::FindNode { target } => Response::Nodes {
                closer: self.table.closest(&target, k, Some(from.key())),
            },
            Request::FindValue { key } => Response::Value {
                record: self
                    .store
                    .get_record(now, &key)
                    .map(|r| Box::new(r.envelope().clone())),
                closer: self.table.closest(&key, k, Some(from.key())),
            },
            Request::GetProviders { key } => Response::Providers {
                providers: self
                    .store
                    .get_providers(now, &key, self.config.max_providers_per_key),
                closer: self.table.closest(&key, k, Some(from.key())),
            },
            Request::Store { record } => {
                let wall = self.wall(now);
                let limits = self.limits();
                let result = check_record(
                    *record,
                    None,
                    wall,
                    self.config.max_record_len,
                    &*self.validator,
                )
                .and_then(|record| {
                    let owner = self.validator.is_owner(record.payload(), &record.signer());
                    self.store.put_record(now, wall, record, owner, &limits)
                });
                Response::Stored {
                    accepted: self.note_rejection(result, from),
                }
            }
            Request::AddProvider { record } => {
                let wall = self.wall(now);
                let limits = self.limits();
                let result = check_provider(
                    *record,
                    None,
                    wall,
                    self.config.max_record_len,
                    &*self.validator,
                )
                .and_then(|record| self.store.put_provider(now, wall, record, &limits));
                Response::Stored {
                    accepted: self.note_rejection(result, from),
                }
            }
        };
        self.outputs.push_back(Output::Send {
            to: from.peer(),
            addr: from.addr(),
            msg: Message::Response { id, body: reply },
        });
    }

    fn note_rejection(&mut self, result: Result<(), RejectReason>, from: Contact) -> bool {
        match result {
            Ok(()) => true,
            Err(reason) => {
                if !matches!(
                    reason,
                    RejectReason::Stale | RejectReason::Conflict | RejectReason::StoreFull
                ) {
                    self.stats.records_rejected += 1;
                }
                tracing::debug!(peer = %from.peer().short(), %reason, "record refused");
                false
            }
        }
    }

    fn on_response(&mut self, now: Instant, from: PeerId, id: RequestId, body: Response) {
        match self.pending.get(&id) {
            None => {
                self.stats.unknown_responses += 1;
                tracing::debug!(peer = %from.short(), ?id, "dropped response with unknown id");
                return;
            }
            Some(p) if p.to.peer() != from => {
                self.stats.unexpected_peer += 1;
                tracing::debug!(peer = %from.short(), ?id, "dropped response from unexpected peer");
                return;
            }
            Some(_) => {}
        }
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.stats.responses_received += 1;
        match p.kind {
            PendingKind::EvictPing => {
                if matches!(body, Response::Pong) {
                    self.table.ping_done(&p.to, true);
                    self.heard(now, p.to);
                } else {
                    self.stats.mismatched_responses += 1;
                    self.table.ping_done(&p.to, false);
                }
            }
            PendingKind::Store { query } => {
                self.heard(now, p.to);
                let accepted = matches!(body, Response::Stored { accepted: true });
                if !matches!(body, Response::Stored { .. }) {
                    self.stats.mismatched_responses += 1;
                }
                self.store_done(query, accepted, true);
            }
            PendingKind::Lookup { query, path } => {
                self.lookup_response(now, query, path, p.to, body);
            }
        }
    }

    fn on_failure(&mut self, now: Instant, p: Pending) {
        self.stats.request_failures += 1;
        match p.kind {
            PendingKind::EvictPing => self.table.ping_done(&p.to, false),
            PendingKind::Store { query } => {
                self.table.on_failed(&p.to, self.config.max_failures);
                self.store_done(query, false, false);
            }
            PendingKind::Lookup { query, path } => {
                self.table.on_failed(&p.to, self.config.max_failures);
                if let Some(q) = self.queries.get_mut(&query) {
                    q.stats.failures += 1;
                    if let Some(path) = q.paths.get_mut(usize::from(path)) {
                        let dist = Dist::between(p.to.key(), &q.target);
                        if let Ok(i) = path.find(&dist) {
                            if path.cands[i].state == St::InFlight {
                                path.cands[i].state = St::Failed;
                                path.in_flight -= 1;
                            }
                        }
                    }
                    self.step_query(now, query);
                }
            }
        }
    }

    // ---------------------------------------------------------------- queries

    fn start_query(
        &mut self,
        now: Instant,
        kind: Kind,
        target: Key,
        notify: bool,
        parent: Option<QueryId>,
    ) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        self.table.touch(now, &target);
        let d = self.config.disjoint_paths.max(1);
        let seeds = self.table.closest(&target, self.config.k.max(d), None);
        let mut paths: Vec<Path> = (0..d).map(|_| Path::default()).collect();
        for (i, c) in seeds.into_iter().enumerate() {
            // Seeds come sorted: dealing them round-robin keeps every path sorted.
            let path = &mut paths[i % d];
            path.insert(
                path.cands.len(),
                Cand {
                    dist: Dist::between(c.key(), &target),
                    contact: c,
                    state: St::Waiting,
                    depth: 1,
                },
            );
        }
        self.queries.insert(
            id,
            Query {
                kind,
                target,
                paths,
                stats: QueryStats::default(),
                records: Vec::new(),
                providers: Vec::new(),
                outstanding: None,
                accepted: 0,
                notify,
                parent,
            },
        );
        self.step_query(now, id);
        id
    }

    fn lookup_response(
        &mut self,
        now: Instant,
        qid: QueryId,
        path_ix: u8,
        from: Contact,
        body: Response,
    ) {
        let Some(q) = self.queries.get(&qid) else {
            // The query ended already; the node still answered.
            self.heard(now, from);
            return;
        };
        let target = q.target;
        let shape = match q.kind {
            Kind::GetRecord => 1,
            Kind::GetProviders => 2,
            _ => 0,
        };
        let (closer, ok) = match (shape, body) {
            (1, Response::Value { record, closer }) => {
                if let Some(record) = record {
                    let wall = self.wall(now);
                    match check_record(
                        *record,
                        Some(&target),
                        wall,
                        self.config.max_record_len,
                        &*self.validator,
                    ) {
                        Ok(record) => {
                            if let Some(q) = self.queries.get_mut(&qid) {
                                if !q.records.contains(&record) {
                                    q.records.push(record);
                                }
                            }
                        }
                        Err(reason) => {
                            self.stats.records_rejected += 1;
                            tracing::debug!(peer = %from.peer().short(), %reason, "lookup got a bad record");
                        }
                    }
                }
                (closer, true)
            }
            (2, Response::Providers { providers, closer }) => {
                let wall = self.wall(now);
                let mut good = Vec::new();
                for p in providers
                    .into_iter()
                    .take(self.config.max_providers_per_key)
                {
                    match check_provider(
                        p,
                        Some(&target),
                        wall,
                        self.config.max_record_len,
                        &*self.validator,
                    ) {
                        Ok(p) => good.push(p),
                        Err(_) => self.stats.records_rejected += 1,
                    }
                }
                if let Some(q) = self.queries.get_mut(&qid) {
                    for p in good {
                        match q.providers.iter_mut().find(|o| o.signer() == p.signer()) {
                            Some(o) if o.seq() < p.seq() => *o = p,
                            Some(_) => {}
                            None => q.providers.push(p),
                        }
                    }
                }
                (closer, true)
            }
            (0, Response::Nodes { closer }) => (closer, true),
            _ => (Vec::new(), false),
        };
        if ok {
            self.heard(now, from);
        } else {
            self.stats.mismatched_responses += 1;
            self.table.on_failed(&from, self.config.max_failures);
        }
        let k = self.config.k;
        let cap = 4 * k;
        let local = self.local;
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        let Some(path) = q.paths.get_mut(usize::from(path_ix)) else {
            return;
        };
        let dist = Dist::between(from.key(), &target);
        let Ok(i) = path.find(&dist) else {
            return;
        };
        if path.cands[i].state != St::InFlight {
            return;
        }
        path.in_flight -= 1;
        if ok {
            q.stats.responses += 1;
            path.cands[i].state = St::Ok;
        } else {
            q.stats.failures += 1;
            path.cands[i].state = St::Failed;
        }
        let depth = path.cands[i].depth.saturating_add(1);
        for c in closer.into_iter().take(k) {
            if c.peer() == local {
                continue;
            }
            let dist = Dist::between(c.key(), &target);
            if path.dists.len() >= cap && path.dists.last().is_some_and(|last| dist > *last) {
                continue;
            }
            match path.find(&dist) {
                Ok(j) => {
                    if path.cands[j].depth > depth {
                        path.cands[j].depth = depth;
                    }
                }
                Err(j) => {
                    if j >= cap {
                        continue;
                    }
                    path.insert(
                        j,
                        Cand {
                            dist,
                            contact: c,
                            state: St::Waiting,
                            depth,
                        },
                    );
                }
            }
        }
        if path.cands.len() > cap {
            // Drop the farthest candidates nobody is waiting on.
            let mut excess = path.cands.len() - cap;
            let mut idx = path.cands.len();
            while excess > 0 && idx > 0 {
                idx -= 1;
                if path.cands[idx].state != St::InFlight {
                    path.remove(idx);
                    excess -= 1;
                }
            }
        }
        let quorum_reached =
            matches!(q.kind, Kind::GetRecord) && q.records.len() >= self.config.get_quorum.max(1);
        if quorum_reached {
            self.finish_lookup(now, qid);
        } else {
            self.step_query(now, qid);
        }
    }

    /// Sends what each path may send; ends the lookup when every path is done.
    fn step_query(&mut self, now: Instant, qid: QueryId) {
        let k = self.config.k;
        let alpha = self.config.alpha.max(1);
        let mut sends: Vec<(Contact, u8)> = Vec::new();
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if q.outstanding.is_some() {
            return;
        }
        let mut all_done = true;
        for p in 0..q.paths.len() {
            let mut counted = 0;
            let mut busy = false;
            let mut i = 0;
            while i < q.paths[p].cands.len() && counted < k {
                match q.paths[p].cands[i].state {
                    St::Failed | St::Claimed => {}
                    St::Ok => counted += 1,
                    St::InFlight => {
                        counted += 1;
                        busy = true;
                    }
                    St::Waiting => {
                        let dist = q.paths[p].cands[i].dist;
                        let elsewhere = q.paths.len() > 1
                            && q.paths
                                .iter()
                                .enumerate()
                                .any(|(o, other)| o != p && other.has_queried(&dist));
                        if elsewhere {
                            q.paths[p].cands[i].state = St::Claimed;
                        } else if q.paths[p].in_flight < alpha {
                            q.paths[p].cands[i].state = St::InFlight;
                            q.paths[p].in_flight += 1;
                            q.stats.requests += 1;
                            sends.push((q.paths[p].cands[i].contact, p as u8));
                            counted += 1;
                            busy = true;
                        } else {
                            // Still to ask, once a slot frees up.
                            counted += 1;
                            busy = true;
                        }
                    }
                }
                i += 1;
            }
            if busy {
                all_done = false;
            }
        }
        let target = q.target;
        let kind_is_value = matches!(q.kind, Kind::GetRecord);
        let kind_is_providers = matches!(q.kind, Kind::GetProviders);
        for (contact, path) in sends {
            let req = if kind_is_value {
                Request::FindValue { key: target }
            } else if kind_is_providers {
                Request::GetProviders { key: target }
            } else {
                Request::FindNode { target }
            };
            self.send_request(now, contact, req, PendingKind::Lookup { query: qid, path });
        }
        if all_done {
            self.finish_lookup(now, qid);
        }
    }

    fn closest_found(q: &Query, k: usize) -> (Vec<Contact>, u32) {
        let mut found: Vec<&Cand> = q
            .paths
            .iter()
            .flat_map(|p| p.cands.iter())
            .filter(|c| c.state == St::Ok)
            .collect();
        found.sort_by_key(|c| c.dist);
        found.dedup_by(|a, b| a.dist == b.dist);
        found.truncate(k);
        let hops = found.iter().map(|c| u32::from(c.depth)).max().unwrap_or(0);
        (found.into_iter().map(|c| c.contact).collect(), hops)
    }

    fn finish_lookup(&mut self, now: Instant, qid: QueryId) {
        let k = self.config.k;
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if q.outstanding.is_some() {
            return;
        }
        let (closest, hops) = Self::closest_found(q, k);
        q.stats.hops = hops;
        let store_req = match &q.kind {
            Kind::PutRecord(r) => Some(Request::Store {
                record: Box::new(r.clone()),
            }),
            Kind::AddProvider(r) => Some(Request::AddProvider {
                record: Box::new(r.clone()),
            }),
            _ => None,
        };
        if let Some(req) = store_req {
            q.outstanding = Some(closest.len());
            if closest.is_empty() {
                self.complete(qid, Vec::new());
                return;
            }
            for c in closest {
                if let Some(q) = self.queries.get_mut(&qid) {
                    q.stats.requests += 1;
                }
                self.send_request(now, c, req.clone(), PendingKind::Store { query: qid });
            }
            return;
        }
        if matches!(q.kind, Kind::Bootstrap) {
            let stale: Vec<usize> = if self.config.refresh_on_bootstrap {
                self.table
                    .stale_buckets(now, self.config.refresh_interval, true)
            } else {
                Vec::new()
            };
            for j in stale {
                let target = self.random_key_in_bucket(j);
                self.start_query(now, Kind::Refresh, target, false, Some(qid));
            }
            // A refresh that ended at once (nobody to ask) could not report to this query yet
            // (its count was not set): count only those still running.
            let running = self
                .queries
                .values()
                .filter(|c| c.parent == Some(qid))
                .count();
            if let Some(q) = self.queries.get_mut(&qid) {
                q.outstanding = Some(running);
            }
            if running == 0 {
                self.complete(qid, closest);
            }
            return;
        }
        self.complete(qid, closest);
    }

    fn store_done(&mut self, qid: QueryId, accepted: bool, answered: bool) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if answered {
            q.stats.responses += 1;
        } else {
            q.stats.failures += 1;
        }
        if accepted {
            q.accepted += 1;
        }
        if let Some(n) = q.outstanding.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.complete(qid, Vec::new());
            }
        }
    }

    /// Removes a finished query and reports it.
    fn complete(&mut self, qid: QueryId, closest: Vec<Contact>) {
        let Some(mut q) = self.queries.remove(&qid) else {
            return;
        };
        let result = match q.kind {
            Kind::FindNode | Kind::Refresh => QueryResult::FindNode { closest },
            Kind::GetRecord => {
                q.records.sort_by_key(|r| Reverse(r.seq()));
                QueryResult::GetRecord { records: q.records }
            }
            Kind::GetProviders => QueryResult::GetProviders {
                providers: q.providers,
            },
            Kind::PutRecord(_) => QueryResult::PutRecord { stored: q.accepted },
            Kind::AddProvider(_) => QueryResult::AddProvider { stored: q.accepted },
            Kind::Bootstrap => QueryResult::Bootstrap {
                routing_table_len: self.table.len(),
            },
        };
        if q.notify {
            self.outputs.push_back(Output::Event(Event::QueryFinished {
                id: qid,
                result,
                stats: q.stats,
            }));
        }
        if let Some(parent) = q.parent {
            let done =
                self.queries
                    .get_mut(&parent)
                    .is_some_and(|p| match p.outstanding.as_mut() {
                        Some(n) => {
                            *n = n.saturating_sub(1);
                            *n == 0
                        }
                        None => false,
                    });
            if done {
                self.complete(parent, Vec::new());
            }
        }
    }

    fn send_request(&mut self, now: Instant, to: Contact, body: Request, kind: PendingKind) {
        let mut id = RequestId(self.rng.next_u64());
        while self.pending.contains_key(&id) {
            id = RequestId(self.rng.next_u64());
        }
        self.pending.insert(id, Pending { to, kind });
        self.timers
            .push(Reverse((now + self.config.request_timeout, id)));
        self.stats.requests_sent += 1;
        self.outputs.push_back(Output::Send {
            to: to.peer(),
            addr: to.addr(),
            msg: Message::Request { id, body },
        });
    }
}
