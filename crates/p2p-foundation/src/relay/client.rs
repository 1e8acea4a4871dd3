//! The holder's and dialer's side: reservations kept at relays while this node looks
//! NATed, dials through a relay, and connections accepted through one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use p2p_foundation_identity::PeerId;
use p2p_foundation_transport::{Connection, PathKind, RecvStream, SendStream};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::wire::{RELAY_PROTOCOL, RelayMessage, read_frame, write_frame};
use super::{CONTROL_TIMEOUT, RelayService, lock, refuse};
use crate::error::{Error, Result};
use crate::net::{Net, PeerEvent};

/// Relays asked at once by one dial.
const MAX_RELAYS_ASKED: usize = 4;
/// Relays asked for a reservation per round.
const MAX_RESERVE_TRIES: usize = 4;
/// How long a relay that refused a reservation is left alone.
const REFUSAL_BACKOFF: Duration = Duration::from_secs(600);
/// How often reservations are checked when nothing happens.
const CHECK_EVERY: Duration = Duration::from_secs(30);

impl RelayService {
    /// Keeps reservations at up to [`RelayConfig::reservations_held`](super::RelayConfig::reservations_held)
    /// relays while the node looks NATed, re-checking on every connection or NAT event.
    pub(crate) fn start(self: &Arc<Self>, net: &Arc<Net>) {
        if !self.config.reserve || self.config.reservations_held == 0 {
            return;
        }
        let service = Arc::clone(self);
        let weak = Arc::downgrade(net);
        let mut events = net.events.subscribe();
        let span = tracing::debug_span!("p2pf.relay.hold", node = %net.local.short());
        net.spawn(
            async move {
                loop {
                    let next = {
                        let Some(net) = weak.upgrade() else { return };
                        service.hold(&net).await
                    };
                    let wait = next.map_or(CHECK_EVERY, |at| {
                        at.saturating_duration_since(Instant::now())
                            .min(CHECK_EVERY)
                    });
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        e = events.recv() => match e {
                            Ok(PeerEvent::Connected { .. } | PeerEvent::Disconnected { .. }
                                | PeerEvent::NatChanged { .. }
                                | PeerEvent::LocalAddressesChanged { .. }) => {}
                            Ok(_) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        },
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Whether this node should hold reservations: NAT traversal says it is behind a NAT
    /// (or saw a reflexive address it cannot tell from its own), or UDP looks blocked (it
    /// has connections, and none of them is QUIC).
    fn looks_natted(net: &Net) -> bool {
        let (Some(nat), Ok(local)) = (net.nat.get(), net.endpoint.local_addr()) else {
            return false;
        };
        let status = nat.status(local);
        if status.reflexive.is_some() {
            return status.behind_nat != Some(false);
        }
        net.udp_looks_blocked()
    }

    /// One round: drops reservations at relays no longer connected, renews those due,
    /// and asks new relays while fewer than wanted are held. Returns the next renewal.
    async fn hold(&self, net: &Arc<Net>) -> Option<Instant> {
        let now = Instant::now();
        self.update_held(|held| held.retain(|relay, _| net.connected(relay).is_some()));
        // Bounded: a refusal is forgotten when its backoff ends.
        lock(&self.refused_by).retain(|_, until| *until > now);
        if !Self::looks_natted(net) {
            self.update_held(HashMap::clear);
            return None;
        }
        let due: Vec<PeerId> = lock(&self.held)
            .iter()
            .filter(|(_, renew)| **renew <= now)
            .map(|(p, _)| *p)
            .collect();
        for relay in due {
            self.reserve_at(net, relay).await;
        }
        let mut tries = 0;
        for relay in self.relay_candidates(net, None) {
            if lock(&self.held).len() >= self.config.reservations_held || tries >= MAX_RESERVE_TRIES
            {
                break;
            }
            if lock(&self.held).contains_key(&relay)
                || lock(&self.refused_by)
                    .get(&relay)
                    .is_some_and(|until| *until > now)
            {
                continue;
            }
            tries += 1;
            self.reserve_at(net, relay).await;
        }
        lock(&self.held).values().min().copied()
    }

    /// Connected peers that may relay: for a dial to `target`, the relays its peer record
    /// names first, then configured relays, then the rest; never `target`. Any direct
    /// connection will do (QUIC, or TCP when UDP is blocked); never a relayed one.
    fn relay_candidates(&self, net: &Net, target: Option<PeerId>) -> Vec<PeerId> {
        let direct: Vec<PeerId> = net
            .connections()
            .iter()
            .filter(|c| c.path() != PathKind::Stream)
            .map(|c| c.peer_id())
            .collect();
        let hinted = target.map(|t| net.relay_hints(&t)).unwrap_or_default();
        let mut list: Vec<PeerId> = Vec::new();
        for p in hinted.into_iter().chain(self.config.relays.iter().copied()) {
            if direct.contains(&p) && !list.contains(&p) {
                list.push(p);
            }
        }
        for p in direct {
            if !list.contains(&p) {
                list.push(p);
            }
        }
        list.retain(|p| Some(*p) != target && *p != net.local);
        list
    }

    /// Asks `relay` for a reservation (or its renewal) and records the answer.
    async fn reserve_at(&self, net: &Net, relay: PeerId) {
        let Some(conn) = net.connected(&relay) else {
            self.update_held(|held| {
                held.remove(&relay);
            });
            return;
        };
        let asked = tokio::time::timeout(CONTROL_TIMEOUT, async {
            let (mut send, mut recv) = conn.open_bi(RELAY_PROTOCOL).await?;
            write_frame(&mut send, &RelayMessage::Reserve {}).await?;
            send.finish().await?;
            read_frame(&mut recv).await
        })
        .await;
        match asked {
            Ok(Ok(RelayMessage::Reserved { ttl_secs })) => {
                let renew = Instant::now() + Duration::from_secs(ttl_secs.max(2) / 2);
                self.update_held(|held| {
                    held.insert(relay, renew);
                });
                tracing::debug!(relay = %relay.short(), ttl_secs, "holding a reservation");
            }
            other => {
                self.update_held(|held| {
                    held.remove(&relay);
                });
                lock(&self.refused_by).insert(relay, Instant::now() + REFUSAL_BACKOFF);
                tracing::debug!(relay = %relay.short(), answer = ?other, "no reservation");
            }
        }
    }

    /// Dials `target` through a relay: asks up to four connected peers at once to splice
    /// a stream to it, and runs the TLS session over the first stream spliced. Returns
    /// the connection and the relay that carries it.
    pub(crate) async fn dial(
        self: &Arc<Self>,
        net: &Arc<Net>,
        target: PeerId,
    ) -> Result<(Connection, PeerId)> {
        let relays: Vec<Connection> = self
            .relay_candidates(net, Some(target))
            .into_iter()
            .filter_map(|p| net.connected(&p))
            .take(MAX_RELAYS_ASKED)
            .collect();
        if relays.is_empty() {
            return Err(Error::Relay("no connected peer to relay through".into()));
        }
        let mut asks = JoinSet::new();
        for conn in relays {
            asks.spawn(async move {
                let ask = tokio::time::timeout(CONTROL_TIMEOUT * 2, async {
                    let (mut send, mut recv) = conn.open_bi(RELAY_PROTOCOL).await?;
                    write_frame(&mut send, &RelayMessage::Connect { target }).await?;
                    let answer = read_frame(&mut recv).await?;
                    Ok::<_, Error>((send, recv, answer))
                })
                .await;
                (conn, ask)
            });
        }
        let mut reasons = Vec::new();
        let (relay, send, recv) = loop {
            match asks.join_next().await {
                Some(Ok((conn, Ok(Ok((send, recv, RelayMessage::Connected {})))))) => {
                    break (conn, send, recv);
                }
                Some(Ok((conn, Ok(Ok((_, _, RelayMessage::Refused { reason })))))) => {
                    reasons.push(format!("{}: {reason}", conn.peer_id().short()))
                }
                Some(Ok((conn, Ok(Ok((_, _, other)))))) => reasons.push(format!(
                    "{}: unexpected answer {other:?}",
                    conn.peer_id().short()
                )),
                Some(Ok((conn, Ok(Err(e))))) => {
                    reasons.push(format!("{}: {e}", conn.peer_id().short()))
                }
                Some(Ok((conn, Err(_)))) => {
                    reasons.push(format!("{}: no answer in time", conn.peer_id().short()))
                }
                Some(Err(e)) => reasons.push(e.to_string()),
                None => {
                    return Err(Error::Relay(format!(
                        "no relay could reach {}: {}",
                        target.short(),
                        reasons.join("; ")
                    )));
                }
            }
        };
        // The other relays' streams are reset as their tasks are dropped.
        asks.abort_all();
        let io = tokio::io::join(recv, send);
        let conn = net
            .endpoint
            .upgrade_outbound(io, target, relay.remote_address())
            .await?;
        self.counters.relayed_dials.fetch_add(1, Relaxed);
        Ok((conn, relay.peer_id()))
    }

    /// As a target: accepts a peer spliced by a relay this node holds a reservation at,
    /// and runs the listener's TLS session over the stream.
    pub(super) async fn incoming(
        &self,
        net: &Arc<Net>,
        relay: &Connection,
        from: PeerId,
        mut send: SendStream,
        recv: RecvStream,
    ) {
        if !lock(&self.held).contains_key(&relay.peer_id()) {
            return refuse(&mut send, "no reservation held at this relay".into()).await;
        }
        if from == net.local {
            return refuse(&mut send, "a circuit from myself".into()).await;
        }
        if write_frame(&mut send, &RelayMessage::Accepted {})
            .await
            .is_err()
        {
            return;
        }
        let io = tokio::io::join(recv, send);
        match net
            .endpoint
            .upgrade_inbound(io, relay.remote_address())
            .await
        {
            // The relay's claim is checked against the key the handshake proved.
            Ok(conn) if conn.peer_id() == from => {
                self.counters.relayed_accepts.fetch_add(1, Relaxed);
                tracing::debug!(from = %from.short(), "accepted a relayed connection");
                net.accept_relayed(conn);
            }
            Ok(conn) => {
                tracing::debug!(
                    claimed = %from.short(),
                    proven = %conn.peer_id().short(),
                    "relay named another peer than the handshake proved"
                );
                conn.close(
                    p2p_foundation_transport::CLOSE_NORMAL,
                    b"relay named another peer",
                );
            }
            Err(e) => tracing::debug!(from = %from.short(), error = %e, "relayed handshake failed"),
        }
    }
}
