//! NAT traversal inside the node: the nat crate's sans-IO cores plugged into the
//! transport's side channel, so STUN, punch probes and QUIC share one UDP socket and the
//! reflexive address learned is the QUIC socket's own mapping.
//!
//! - Every node answers STUN Binding on its QUIC port (rate limited per source).
//! - Every node asks up to [`NatConfig::max_observers`] peers it connects to over QUIC
//!   (and any configured STUN servers) for its mapped address, and derives the mapping
//!   behaviour from their answers ([`NatStatus`]).
//! - A dial that does not complete directly within [`NatConfig::punch_after`] also asks
//!   rendezvous peers (connected to both sides) to exchange candidates, then both sides
//!   punch from their QUIC sockets and the dialer completes the QUIC handshake on the
//!   punched path ([`rendezvous`]).

mod config;
mod limit;
mod rendezvous;
mod signal;
mod status;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use p2p_foundation_identity::Keypair;
use p2p_foundation_nat::binding::{BindingPoll, BindingTransaction, answer_binding_request};
use p2p_foundation_nat::punch::looks_like_punch;
use p2p_foundation_nat::stun::{HEADER_LEN, looks_like_stun};
use p2p_foundation_transport::{PathKind, SideChannel, SideChannelConfig, SideDatagram};
use tokio::sync::mpsc;
use tracing::Instrument;

pub use config::NatConfig;
pub use signal::NAT_PROTOCOL;
pub use status::{NatStatus, Observation, Observer};

use crate::net::{Net, PeerEvent, canonical};
use limit::AnswerLimiter;
pub(crate) use status::Observations;

/// Datagrams queued per STUN transaction or punch before more are dropped.
const PER_TASK_QUEUE: usize = 16;
/// Source addresses whose STUN answers are tracked for rate limiting.
const LIMITER_SOURCES: usize = 4096;

/// The side-channel matcher: STUN (leading zero bits and magic cookie) and punch probes
/// (their magic and exact length). Neither can be a QUIC packet we accept: QUIC's fixed
/// bit is set in every packet (greasing is off), which STUN's leading zero bits clear;
/// a punch datagram's 133 bytes starting `P2PH` followed by a kind byte of 1 or 2 would
/// be a short header whose first four connection-id bytes are `2PH\x01`, which our
/// connection-id generator does not produce except by a 2^-32 chance per packet.
pub(crate) fn side_channel_config() -> SideChannelConfig {
    SideChannelConfig::new(|d: &[u8]| looks_like_stun(d) || looks_like_punch(d)).with_capacity(512)
}

/// Counters of NAT traversal, in [`NatStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    stun_answered: AtomicU64,
    stun_rate_limited: AtomicU64,
    stun_unmatched: AtomicU64,
    observations: AtomicU64,
    observation_failures: AtomicU64,
    punch_unmatched: AtomicU64,
    pub(crate) punches_started: AtomicU64,
    pub(crate) punches_succeeded: AtomicU64,
    pub(crate) punches_failed: AtomicU64,
    pub(crate) introductions_served: AtomicU64,
    pub(crate) introductions_refused: AtomicU64,
    pub(crate) punched_connections: AtomicU64,
    pub(crate) birthday_paths: AtomicU64,
}

/// Counters of the node's NAT traversal, from
/// [`P2PNode::nat_stats`](crate::P2PNode::nat_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatStats {
    /// STUN Binding requests answered on the QUIC port.
    pub stun_answered: u64,
    /// STUN Binding requests not answered because their source exceeded its rate.
    pub stun_rate_limited: u64,
    /// STUN answers that matched no transaction of ours (dropped).
    pub stun_unmatched: u64,
    /// Observations of this node's mapping received.
    pub observations: u64,
    /// Observation requests that got no answer.
    pub observation_failures: u64,
    /// Punch datagrams for no punch in progress (dropped).
    pub punch_unmatched: u64,
    /// Punches started (as dialer or as the dialled side).
    pub punches_started: u64,
    /// Punches that opened a path.
    pub punches_succeeded: u64,
    /// Punches that gave up.
    pub punches_failed: u64,
    /// Introductions this node made as a rendezvous.
    pub introductions_served: u64,
    /// Introductions refused (by this node as rendezvous or as target).
    pub introductions_refused: u64,
    /// Connections dialled on a punched path.
    pub punched_connections: u64,
    /// Punched paths first proven on one of this node's extra sockets (the birthday
    /// technique's endpoint-dependent side).
    pub birthday_paths: u64,
}

/// Where the datagrams of one STUN transaction or punch go (`from` canonical).
type Inbox = mpsc::Sender<SideDatagram>;

/// The node's NAT traversal.
pub(crate) struct NatService {
    keypair: Keypair,
    side: SideChannel,
    pub(crate) config: NatConfig,
    observations: Mutex<Observations>,
    observing: Mutex<HashSet<SocketAddr>>,
    stun_waiters: Mutex<HashMap<[u8; 12], Inbox>>,
    punch_waiters: Mutex<HashMap<[u8; 16], Inbox>>,
    limiter: Mutex<AnswerLimiter>,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for NatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatService")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes a waiter when its transaction or punch ends, however it ends.
struct Waiter<'a, K: std::hash::Hash + Eq> {
    map: &'a Mutex<HashMap<K, Inbox>>,
    key: K,
}

impl<K: std::hash::Hash + Eq> Drop for Waiter<'_, K> {
    fn drop(&mut self) {
        lock(self.map).remove(&self.key);
    }
}

/// Hands a datagram to the transaction or punch waiting for `key`, or counts it unmatched.
fn deliver<K: std::hash::Hash + Eq>(
    waiters: &Mutex<HashMap<K, Inbox>>,
    key: &K,
    datagram: SideDatagram,
    unmatched: &AtomicU64,
) {
    let waiter = lock(waiters).get(key).cloned();
    match waiter {
        // A full inbox drops the datagram: the sender retransmits.
        Some(w) => {
            let _ = w.try_send(datagram);
        }
        None => {
            unmatched.fetch_add(1, Relaxed);
        }
    }
}

impl NatService {
    pub(crate) fn new(keypair: Keypair, side: SideChannel, config: NatConfig) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            keypair,
            side,
            observations: Mutex::new(Observations::new(
                config.max_observers.max(2) * 2,
                config.observation_ttl,
            )),
            observing: Mutex::new(HashSet::new()),
            stun_waiters: Mutex::new(HashMap::new()),
            punch_waiters: Mutex::new(HashMap::new()),
            limiter: Mutex::new(AnswerLimiter::new(
                config.stun_answer_rate,
                config.stun_answer_burst,
                config.stun_answer_rate * 50.0,
                LIMITER_SOURCES,
                now,
            )),
            counters: Counters::default(),
            config,
        })
    }

    /// Starts the receive loop and the observation refresher on the node's tasks.
    pub(crate) fn start(self: &Arc<Self>, net: &Arc<Net>) {
        let nat = Arc::clone(self);
        let span = tracing::debug_span!("p2pf.nat", node = %net.local.short());
        net.spawn(
            async move {
                while let Some(d) = nat.side.recv().await {
                    nat.on_datagram(d).await;
                }
            }
            .instrument(span.clone()),
        );
        let nat = Arc::clone(self);
        let weak = Arc::downgrade(net);
        let every = (self.config.observation_ttl / 3).max(std::time::Duration::from_secs(1));
        net.spawn(
            async move {
                for server in nat.config.stun_servers.clone() {
                    nat.observe_server(&weak, server);
                }
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(net) = weak.upgrade() else { return };
                    nat.refresh(&net);
                }
            }
            .instrument(span),
        );
    }

    pub(crate) fn stats(&self) -> NatStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Relaxed);
        NatStats {
            stun_answered: l(&c.stun_answered),
            stun_rate_limited: l(&c.stun_rate_limited),
            stun_unmatched: l(&c.stun_unmatched),
            observations: l(&c.observations),
            observation_failures: l(&c.observation_failures),
            punch_unmatched: l(&c.punch_unmatched),
            punches_started: l(&c.punches_started),
            punches_succeeded: l(&c.punches_succeeded),
            punches_failed: l(&c.punches_failed),
            introductions_served: l(&c.introductions_served),
            introductions_refused: l(&c.introductions_refused),
            punched_connections: l(&c.punched_connections),
            birthday_paths: l(&c.birthday_paths),
        }
    }

    pub(crate) fn status(&self, local: SocketAddr) -> NatStatus {
        lock(&self.observations).status(local, Instant::now())
    }

    async fn on_datagram(&self, mut d: SideDatagram) {
        let from = canonical(d.from);
        d.from = from;
        if looks_like_stun(&d.data) {
            // Binding requests are answered on the QUIC socket only: an extra socket's
            // mapping is of no use to anyone but the punch that opened it.
            if let Some(answer) = answer_binding_request(from, &d.data).filter(|_| d.via.is_none())
            {
                if !lock(&self.limiter).allow(from.ip(), Instant::now()) {
                    self.counters.stun_rate_limited.fetch_add(1, Relaxed);
                    return;
                }
                match self.side.send_to(&answer, from).await {
                    Ok(()) => self.counters.stun_answered.fetch_add(1, Relaxed),
                    Err(e) => {
                        tracing::debug!(%from, error = %e, "could not answer STUN");
                        return;
                    }
                };
                return;
            }
            let mut id = [0u8; 12];
            id.copy_from_slice(&d.data[8..HEADER_LEN]);
            deliver(&self.stun_waiters, &id, d, &self.counters.stun_unmatched);
        } else {
            // A punch datagram: routed by its session nonce (bytes 5..21).
            let mut nonce = [0u8; 16];
            nonce.copy_from_slice(&d.data[5..21]);
            deliver(
                &self.punch_waiters,
                &nonce,
                d,
                &self.counters.punch_unmatched,
            );
        }
    }

    /// One STUN Binding transaction to `server` from the QUIC socket: the mapped address.
    async fn binding(&self, server: SocketAddr) -> Result<SocketAddr, String> {
        let server = canonical(server);
        let mut tx = BindingTransaction::new(server, self.config.stun_retransmit, Instant::now())
            .map_err(|e| e.to_string())?;
        let (inbox, mut rx) = mpsc::channel(PER_TASK_QUEUE);
        let key = tx.transaction_id().0;
        lock(&self.stun_waiters).insert(key, inbox);
        let _waiter = Waiter {
            map: &self.stun_waiters,
            key,
        };
        loop {
            match tx.poll(Instant::now()) {
                BindingPoll::Transmit { to, bytes } => {
                    self.side
                        .send_to(&bytes, to)
                        .await
                        .map_err(|e| format!("send to {to}: {e}"))?;
                }
                BindingPoll::WaitUntil(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        got = rx.recv() => if let Some(d) = got {
                            tx.handle_datagram(d.from, &d.data);
                        },
                    }
                }
                BindingPoll::Done(r) => return r.map(|o| o.mapped).map_err(|e| e.to_string()),
            }
        }
    }

    /// Asks `observer` at `addr` for this node's mapping, unless enough observers answered
    /// recently or one is already asking there.
    pub(crate) fn maybe_observe(
        self: &Arc<Self>,
        net: &Arc<Net>,
        observer: Observer,
        addr: SocketAddr,
    ) {
        let addr = canonical(addr);
        let now = Instant::now();
        {
            let fresh = lock(&self.observations).fresh_observers(now);
            if fresh.contains(&addr) || fresh.len() >= self.config.max_observers {
                return;
            }
            if !lock(&self.observing).insert(addr) {
                return;
            }
        }
        let nat = Arc::clone(self);
        let weak = Arc::downgrade(net);
        net.spawn(async move {
            let result = nat.binding(addr).await;
            lock(&nat.observing).remove(&addr);
            let Some(net) = weak.upgrade() else { return };
            let Ok(local) = net.endpoint.local_addr() else { return };
            match result {
                Ok(mapped) => {
                    nat.counters.observations.fetch_add(1, Relaxed);
                    tracing::debug!(observer = %addr, %mapped, "observed");
                    let (changed, moved) = {
                        let mut observations = lock(&nat.observations);
                        let now = Instant::now();
                        let before = observations.status(local, now);
                        let changed = observations.record(observer, addr, mapped, local, now);
                        let after = observations.status(local, now);
                        // A new reflexive IP or mapping is a new network (or a changed NAT);
                        // a new port alone is an endpoint-dependent NAT being itself.
                        let ip = |s: &NatStatus| s.reflexive.map(|a| a.ip());
                        (changed, ip(&before) != ip(&after) || before.mapping != after.mapping)
                    };
                    if moved {
                        net.network_moved();
                    }
                    if changed {
                        let s = nat.status(local);
                        tracing::info!(reflexive = ?s.reflexive, mapping = ?s.mapping, "NAT status changed");
                        let _ = net.events.send(PeerEvent::NatChanged {
                            reflexive: s.reflexive,
                            mapping: s.mapping,
                        });
                    }
                }
                Err(e) => {
                    nat.counters.observation_failures.fetch_add(1, Relaxed);
                    tracing::debug!(observer = %addr, error = %e, "no observation");
                }
            }
        });
    }

    fn observe_server(self: &Arc<Self>, net: &std::sync::Weak<Net>, server: SocketAddr) {
        if let Some(net) = net.upgrade() {
            self.maybe_observe(&net, Observer::StunServer, server);
        }
    }

    /// The host's addresses changed: what the observers saw describes the old network, so
    /// it is forgotten and they are asked again now.
    pub(crate) fn network_changed(self: &Arc<Self>, net: &Arc<Net>) {
        lock(&self.observations).clear();
        self.refresh(net);
    }

    /// Re-asks connected peers (and STUN servers) once observations age out.
    fn refresh(self: &Arc<Self>, net: &Arc<Net>) {
        for server in self.config.stun_servers.clone() {
            self.maybe_observe(net, Observer::StunServer, server);
        }
        for conn in net.connections() {
            if conn.path() == PathKind::Quic {
                self.maybe_observe(net, Observer::Peer(conn.peer_id()), conn.remote_address());
            }
        }
    }
}
