//! Coordinated hole punching through a rendezvous peer.
//!
//! The dialer asks peers it is connected to (which may also be connected to the target)
//! to introduce it. A rendezvous forwards the dialer's candidates to the target, with the
//! address it sees the dialer at first; the target answers with its own candidates and
//! starts punching at once; the rendezvous hands them back, with the address it sees the
//! target at first, and the dialer starts punching when they arrive, half a round trip
//! later. Each side's probes open its own NAT's mapping towards the other; the first
//! authenticated ack proves a path, and the dialer completes the QUIC handshake on it
//! while both keep answering the other's probes for [`PunchConfig::linger`].
//!
//! The rendezvous vouches for nothing: probes and acks are signed by each side's key over
//! the session nonce (the nat crate's [`Punch`]), so a lying rendezvous can only make two
//! nodes send a bounded number of probes ([`MAX_CANDIDATES`] per round) to addresses it
//! names, and cannot make either side accept an impostor.
//!
//! [`PunchConfig::linger`]: p2p_foundation_nat::PunchConfig::linger
//! [`MAX_CANDIDATES`]: p2p_foundation_nat::punch::MAX_CANDIDATES

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use p2p_foundation_identity::PeerId;
use p2p_foundation_nat::punch::{Punch, PunchPoll, PunchSession, SprayConfig};
use p2p_foundation_transport::{
    Connection, ExtraSocket, ExtraSockets, PathKind, RecvStream, SendStream,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::signal::{MAX_SIGNAL_LEN, Mapping, NAT_PROTOCOL, Nonce, Signal, with_first};
use super::{NatService, PER_TASK_QUEUE, Waiter, lock};
use crate::error::{Error, Result};
use crate::net::{Net, canonical};

/// Longest a signalling exchange (one request, one answer) may take.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Rendezvous peers asked at once by one dial.
const MAX_RENDEZVOUS: usize = 4;
/// A spraying side waits this long (plus, as the target, two round trips to the
/// rendezvous) so the other side's extra sockets have opened their mappings first.
const SPRAY_DELAY: Duration = Duration::from_millis(25);
/// How long the extra socket of a punched path waits for a connection on it.
const EXTRA_SOCKET_WAIT: Duration = Duration::from_secs(10);

/// This side's part in the birthday technique, for one punch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Birthday {
    /// Neither: both mappings endpoint-independent (a plain punch works), both dependent
    /// (nothing works; the relay will), or one of them unknown.
    None,
    /// This side's NAT maps endpoint-dependently and the peer's does not: open extra
    /// sockets, each a mapping the peer may hit.
    Open,
    /// This side's NAT maps endpoint-independently and the peer's does not: probe random
    /// ports of the peer's NAT, from `after` on.
    Spray {
        /// Delay before the first spray probe.
        after: Duration,
    },
}

impl Birthday {
    pub(crate) fn plan(own: Option<Mapping>, peer: Option<Mapping>, spray_after: Duration) -> Self {
        match (own, peer) {
            (Some(Mapping::Dependent), Some(Mapping::Independent)) => Self::Open,
            (Some(Mapping::Independent), Some(Mapping::Dependent)) => {
                Self::Spray { after: spray_after }
            }
            _ => Self::None,
        }
    }
}

/// Keeps the extra socket a punched path runs through open while the connection on that
/// path lives: waits (at most [`EXTRA_SOCKET_WAIT`]) for a connection to `peer` at
/// `remote`, then until it closes.
async fn hold_extra_socket(net: Weak<Net>, peer: PeerId, remote: SocketAddr, socket: ExtraSocket) {
    let deadline = Instant::now() + EXTRA_SOCKET_WAIT;
    let conn = loop {
        let Some(n) = net.upgrade() else { return };
        if let Some(c) = n
            .connected(&peer)
            .filter(|c| canonical(c.remote_address()) == remote)
        {
            break c;
        }
        drop(n);
        if Instant::now() >= deadline {
            tracing::debug!(local = %socket.local_addr(), "no connection on the punched extra socket");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = conn.closed().await;
    tracing::debug!(local = %socket.local_addr(), %reason, "connection on the extra socket closed");
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::Nat(format!("no randomness: {e}")))?;
    Ok(b)
}

/// One request and its answer on a new stream of `conn`.
async fn exchange(conn: &Connection, request: &Signal) -> Result<Signal> {
    let work = async {
        let (mut send, mut recv) = conn.open_bi(NAT_PROTOCOL).await?;
        send.write_all(&request.encode()).await?;
        send.finish().await?;
        let bytes = recv.read_to_end(MAX_SIGNAL_LEN).await?;
        Signal::decode(&bytes).map_err(Error::Nat)
    };
    tokio::time::timeout(SIGNAL_TIMEOUT, work)
        .await
        .map_err(|_| {
            Error::Nat(format!(
                "no signalling answer from {} in {SIGNAL_TIMEOUT:?}",
                conn.peer_id().short()
            ))
        })?
}

async fn answer(send: &mut SendStream, signal: &Signal) {
    if send.write_all(&signal.encode()).await.is_ok() {
        let _ = send.finish().await;
        let _ = tokio::time::timeout(SIGNAL_TIMEOUT, send.stopped()).await;
    }
}

/// The addresses this node offers as its own candidates: its reflexive addresses first,
/// then its local address when it is a specific one.
fn own_candidates(nat: &NatService, net: &Net) -> Vec<SocketAddr> {
    let local = net.endpoint.local_addr().ok();
    let status = local.map(|l| nat.status(l));
    let mut list: Vec<SocketAddr> = status.map(|s| s.reflexive_all).unwrap_or_default();
    list.extend(local.filter(|l| !l.ip().is_unspecified()));
    with_first(None, &list)
}

impl NatService {
    /// This node's NAT mapping behaviour, as far as its observations tell.
    pub(crate) fn own_mapping(&self, net: &Net) -> Option<Mapping> {
        let local = net.endpoint.local_addr().ok()?;
        self.status(local).mapping.map(Mapping::of)
    }

    /// Punches towards `remote` at `candidates` in session `nonce`, playing `birthday`'s
    /// part; resolves to the punched remote address as soon as one is proven. The punch
    /// keeps answering the peer's probes for its linger time afterwards, in the background.
    pub(crate) async fn punch(
        self: &Arc<Self>,
        net: &Arc<Net>,
        remote: PeerId,
        nonce: [u8; 16],
        candidates: Vec<SocketAddr>,
        birthday: Birthday,
    ) -> Result<SocketAddr> {
        let in_flight = lock(&self.punch_waiters).len();
        if in_flight >= self.config.max_in_flight {
            return Err(Error::Nat(format!("{in_flight} punches in flight: busy")));
        }
        let (inbox, mut rx) = mpsc::channel(PER_TASK_QUEUE);
        // Two rendezvous introducing the same session must not take the running punch's
        // datagrams away from it: the second is refused and the first keeps its inbox.
        match lock(&self.punch_waiters).entry(nonce) {
            std::collections::hash_map::Entry::Occupied(_) => {
                return Err(Error::Nat("punch session nonce already in use".into()));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(inbox);
            }
        }
        let local = net.endpoint.local_addr()?;
        let session = PunchSession {
            keypair: self.keypair.clone(),
            remote,
            nonce,
        };
        let mut punch = Punch::new(
            session,
            local,
            &candidates,
            self.config.punch,
            random()?,
            Instant::now(),
        );
        let mut extras: Option<ExtraSockets> = None;
        match (birthday, candidates.first()) {
            (Birthday::Open, Some(_)) if self.config.birthday_sockets > 0 => {
                match self.side.open_extra_sockets(self.config.birthday_sockets) {
                    Ok(opened) => {
                        punch = punch.with_extra_sockets(opened.addrs());
                        extras = Some(opened);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "no extra sockets for the birthday technique")
                    }
                }
            }
            (Birthday::Spray { after }, Some(first)) if self.config.birthday_ports > 0 => {
                punch = punch.with_spray(SprayConfig {
                    ip: first.ip(),
                    ports: self.config.birthday_ports,
                    per_round: self.config.birthday_ports_per_round,
                    start: Instant::now() + after,
                });
            }
            _ => {}
        }
        self.counters.punches_started.fetch_add(1, Relaxed);
        let (found, result) = oneshot::channel();
        let nat = Arc::clone(self);
        let weak = Arc::downgrade(net);
        let span =
            tracing::debug_span!("p2pf.punch", peer = %remote.short(), ?candidates, ?birthday);
        net.spawn(
            async move {
                let _waiter = Waiter {
                    map: &nat.punch_waiters,
                    key: nonce,
                };
                let mut found = Some(found);
                // The peer's address on the punched path, once proven.
                let mut punched: Option<SocketAddr> = None;
                loop {
                    match punch.poll(Instant::now()) {
                        PunchPoll::Transmit { via, to, bytes } => {
                            let sent = match via {
                                Some(via) => nat.side.send_via(via, &bytes, to).await,
                                None => nat.side.send_to(&bytes, to).await,
                            };
                            if let Err(e) = sent {
                                tracing::debug!(%to, ?via, error = %e, "probe not sent");
                            }
                        }
                        PunchPoll::WaitUntil(at) => {
                            tokio::select! {
                                () = tokio::time::sleep_until(at.into()) => {}
                                got = rx.recv() => if let Some(d) = got {
                                    let from = d.from;
                                    let before = punch.stats();
                                    punch.handle_datagram_via(Instant::now(), d.via, from, &d.data);
                                    let after = punch.stats();
                                    // An ack proves both directions. An authentic probe
                                    // proves the peer's NAT has a mapping towards us at
                                    // `from` (a peer-reflexive candidate, as in ICE): a
                                    // QUIC handshake sent there passes it. A replayed
                                    // probe only costs a handshake that fails, pinned as
                                    // it is to the peer's key.
                                    let proven = after.acks_received > before.acks_received
                                        || after.probes_received > before.probes_received;
                                    if proven && let Some(f) = found.take() {
                                        // On an extra socket: it carries the peer's QUIC
                                        // packets, unless the peer's handshake arrives on
                                        // another (the transport follows it). The rest stay
                                        // open until the punch ends.
                                        if let (Some(via), Some(e)) = (d.via, &extras) {
                                            e.route(via, from);
                                            nat.counters.birthday_paths.fetch_add(1, Relaxed);
                                        }
                                        punched = Some(from);
                                        nat.counters.punches_succeeded.fetch_add(1, Relaxed);
                                        tracing::debug!(%from, via = ?d.via, "path punched");
                                        let _ = f.send(Ok(from));
                                    }
                                },
                            }
                        }
                        PunchPoll::Done(r) => {
                            if let (Err(e), Some(f)) = (r, found.take()) {
                                nat.counters.punches_failed.fetch_add(1, Relaxed);
                                let _ = f.send(Err(Error::Nat(e.to_string())));
                            }
                            // The extra socket the path runs through (if any) stays
                            // open while the connection on it lives; the rest close.
                            let kept = punched
                                .zip(extras)
                                .and_then(|(from, e)| Some((from, e.keep_routed(from)?)));
                            if let Some((from, socket)) = kept {
                                hold_extra_socket(weak, remote, from, socket).await;
                            }
                            return;
                        }
                    }
                }
            }
            .instrument(span),
        );
        result.await.map_err(|_| Error::Shutdown)?
    }

    /// Dials `target` on a path punched through a rendezvous peer.
    pub(crate) async fn punch_connect(
        self: &Arc<Self>,
        net: &Arc<Net>,
        target: PeerId,
    ) -> Result<Connection> {
        // The relays `target`'s peer record names hold a connection to it: ask them first.
        let hinted = net.relay_hints(&target);
        let mut rendezvous: Vec<Connection> = net
            .connections()
            .into_iter()
            .filter(|c| c.peer_id() != target && c.path() == PathKind::Quic)
            .collect();
        rendezvous.sort_by_key(|c| !hinted.contains(&c.peer_id()));
        rendezvous.truncate(MAX_RENDEZVOUS);
        if rendezvous.is_empty() {
            return Err(Error::Nat(
                "no connected peer to act as a rendezvous".into(),
            ));
        }
        let nonce = Nonce(random()?);
        let own_mapping = self.own_mapping(net);
        let request = Signal::Introduce {
            target,
            nonce,
            candidates: own_candidates(self, net),
            mapping: own_mapping,
        };
        let mut asks = JoinSet::new();
        for conn in rendezvous {
            let request = request.clone();
            asks.spawn(async move { (conn.peer_id(), exchange(&conn, &request).await) });
        }
        let mut reasons = Vec::new();
        let (candidates, peer_mapping) = loop {
            match asks.join_next().await {
                Some(Ok((
                    _,
                    Ok(Signal::Candidates {
                        candidates,
                        mapping,
                    }),
                ))) => break (candidates, mapping),
                Some(Ok((via, Ok(Signal::Refused { reason })))) => {
                    reasons.push(format!("{}: {reason}", via.short()))
                }
                Some(Ok((via, Ok(other)))) => {
                    reasons.push(format!("{}: unexpected answer {other:?}", via.short()))
                }
                Some(Ok((via, Err(e)))) => reasons.push(format!("{}: {e}", via.short())),
                Some(Err(e)) => reasons.push(e.to_string()),
                None => {
                    return Err(Error::Nat(format!(
                        "no rendezvous could introduce {}: {}",
                        target.short(),
                        reasons.join("; ")
                    )));
                }
            }
        };
        asks.abort_all();
        let birthday = Birthday::plan(own_mapping, peer_mapping, SPRAY_DELAY);
        let remote = self
            .punch(net, target, nonce.0, candidates, birthday)
            .await?;
        let conn = net.endpoint.connect(target, &[remote]).await?;
        self.counters.punched_connections.fetch_add(1, Relaxed);
        Ok(conn)
    }

    /// Serves one inbound `/p2pf/nat/1` stream from the peer behind `conn`.
    pub(crate) async fn serve(
        self: Arc<Self>,
        net: Arc<Net>,
        conn: Connection,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        let request =
            match tokio::time::timeout(SIGNAL_TIMEOUT, recv.read_to_end(MAX_SIGNAL_LEN)).await {
                Ok(Ok(bytes)) => Signal::decode(&bytes),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("request too slow".into()),
            };
        let reply = match request {
            Ok(Signal::Introduce {
                target,
                nonce,
                candidates,
                mapping,
            }) => {
                self.introduce(&net, &conn, target, nonce, &candidates, mapping)
                    .await
            }
            Ok(Signal::Introduced {
                from,
                nonce,
                candidates,
                mapping,
            }) => {
                // Two round trips to the rendezvous: the Candidates answer reaching the
                // initiator, and its extra sockets' first datagrams leaving.
                let spray_after = SPRAY_DELAY + conn.rtt() * 2;
                self.introduced(&net, from, nonce, candidates, mapping, spray_after)
            }
            Ok(other) => Signal::Refused {
                reason: format!("not a request: {other:?}"),
            },
            Err(e) => Signal::Refused { reason: e },
        };
        if matches!(reply, Signal::Refused { .. }) {
            self.counters.introductions_refused.fetch_add(1, Relaxed);
            tracing::debug!(peer = %conn.peer_id().short(), ?reply, "refused a signal");
        }
        answer(&mut send, &reply).await;
    }

    /// As a rendezvous: forwards the dialer's candidates to `target` and its answer back.
    async fn introduce(
        &self,
        net: &Arc<Net>,
        dialer: &Connection,
        target: PeerId,
        nonce: Nonce,
        candidates: &[SocketAddr],
        mapping: Option<Mapping>,
    ) -> Signal {
        let refuse = |reason: String| Signal::Refused { reason };
        if !self.config.rendezvous {
            return refuse("this node does not act as a rendezvous".into());
        }
        if target == net.local || target == dialer.peer_id() {
            return refuse("cannot introduce a peer to itself or to the rendezvous".into());
        }
        // Over TCP too: a target whose UDP is blocked answers by dialling back.
        let Some(to) = net
            .connected(&target)
            .filter(|c| c.path() != PathKind::Stream)
        else {
            return refuse(format!("not connected to {} directly", target.short()));
        };
        let forwarded = Signal::Introduced {
            from: dialer.peer_id(),
            nonce,
            candidates: with_first(Some(canonical(dialer.remote_address())), candidates),
            mapping,
        };
        match exchange(&to, &forwarded).await {
            Ok(Signal::Candidates {
                candidates,
                mapping,
            }) => {
                self.counters.introductions_served.fetch_add(1, Relaxed);
                Signal::Candidates {
                    candidates: with_first(Some(canonical(to.remote_address())), &candidates),
                    mapping,
                }
            }
            Ok(Signal::Refused { reason }) => {
                refuse(format!("{} refused: {reason}", target.short()))
            }
            Ok(other) => refuse(format!("{} answered {other:?}", target.short())),
            Err(e) => refuse(e.to_string()),
        }
    }

    /// As the target: answers with this node's candidates and starts punching (or, when
    /// UDP looks blocked here, dials the dialer back).
    fn introduced(
        self: &Arc<Self>,
        net: &Arc<Net>,
        from: PeerId,
        nonce: Nonce,
        candidates: Vec<SocketAddr>,
        peer_mapping: Option<Mapping>,
        spray_after: Duration,
    ) -> Signal {
        if from == net.local {
            return Signal::Refused {
                reason: "introduced to myself".into(),
            };
        }
        if lock(&self.punch_waiters).len() >= self.config.max_in_flight {
            return Signal::Refused {
                reason: "too many punches in flight".into(),
            };
        }
        let mine = own_candidates(self, net);
        let own_mapping = self.own_mapping(net);
        let birthday = Birthday::plan(own_mapping, peer_mapping, spray_after);
        let nat = Arc::clone(self);
        let net2 = Arc::clone(net);
        if net.udp_looks_blocked() {
            // No punch can work from here: dial the dialer back instead (connection
            // reversal). With UDP blocked the transport falls back to TCP, which reaches a
            // dialer that accepts TCP (a public one); the dialer's race takes the inbound
            // connection.
            net.spawn(async move {
                match net2.connect(from, &candidates).await {
                    Ok(_) => tracing::debug!(peer = %from.short(), "dialled the dialer back"),
                    Err(e) => tracing::debug!(peer = %from.short(), error = %e, "dial back failed"),
                }
            });
        } else {
            net.spawn(async move {
                // The dialer completes the handshake; here the punch only opens our NAT.
                if let Err(e) = nat.punch(&net2, from, nonce.0, candidates, birthday).await {
                    tracing::debug!(peer = %from.short(), error = %e, "punch (as target) failed");
                }
            });
        }
        Signal::Candidates {
            candidates: mine,
            mapping: own_mapping,
        }
    }
}
