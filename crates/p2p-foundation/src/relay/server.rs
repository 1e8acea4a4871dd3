//! The relay's side: reservations for NATed peers, and circuits spliced to them.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use p2p_foundation_identity::PeerId;
use p2p_foundation_transport::{Connection, RecvStream, SendStream};

use super::splice::{SpliceEnd, splice};
use super::wire::{RELAY_PROTOCOL, RelayMessage, read_frame, write_frame};
use super::{CONTROL_TIMEOUT, RelayService, lock, refuse, reply_last};
use crate::net::Net;

/// A circuit's place in the limits, given back when it ends.
struct CircuitSlot<'a> {
    service: &'a RelayService,
    peers: [PeerId; 2],
}

impl Drop for CircuitSlot<'_> {
    fn drop(&mut self) {
        let mut circuits = lock(&self.service.circuits);
        circuits.0 = circuits.0.saturating_sub(1);
        for p in self.peers {
            if let Some(n) = circuits.1.get_mut(&p) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    circuits.1.remove(&p);
                }
            }
        }
    }
}

impl RelayService {
    /// Grants or renews `peer`'s reservation, within [`RelayConfig::max_reservations`](super::RelayConfig::max_reservations).
    pub(super) async fn reserve(&self, net: &Net, peer: PeerId, send: &mut SendStream) {
        let granted = self.try_reserve(net, peer);
        let reply = match granted {
            Ok(ttl_secs) => {
                self.counters.reservations_granted.fetch_add(1, Relaxed);
                tracing::debug!(ttl_secs, "reservation granted");
                RelayMessage::Reserved { ttl_secs }
            }
            Err(reason) => {
                self.counters.reservations_refused.fetch_add(1, Relaxed);
                tracing::debug!(%reason, "reservation refused");
                RelayMessage::Refused { reason }
            }
        };
        reply_last(send, &reply).await;
    }

    fn try_reserve(&self, net: &Net, peer: PeerId) -> Result<u64, String> {
        if !self.config.serve {
            return Err("this node does not relay (RelayConfig::serve is off)".into());
        }
        if peer == net.local {
            return Err("cannot reserve at myself".into());
        }
        let now = Instant::now();
        let mut table = lock(&self.reservations);
        if !table.contains_key(&peer) && table.len() >= self.config.max_reservations {
            table.retain(|_, expiry| *expiry > now);
            if table.len() >= self.config.max_reservations {
                return Err(format!(
                    "relay full: {} reservations held, try another relay",
                    table.len()
                ));
            }
        }
        let ttl = self.config.reservation_ttl;
        table.insert(peer, now + ttl);
        Ok(ttl.as_secs().max(1))
    }

    /// Takes a circuit slot for `a` and `b`, or says which limit is in the way.
    fn take_circuit(&self, a: PeerId, b: PeerId) -> Result<CircuitSlot<'_>, String> {
        let mut circuits = lock(&self.circuits);
        if circuits.0 >= self.config.max_circuits {
            return Err(format!(
                "relay busy: {} circuits open, try another relay",
                circuits.0
            ));
        }
        let cap = self.config.max_circuits_per_peer;
        for p in [a, b] {
            let n = circuits.1.get(&p).copied().unwrap_or(0);
            if n >= cap {
                return Err(format!(
                    "{} is already in {n} circuits here (limit {cap})",
                    p.short()
                ));
            }
        }
        circuits.0 += 1;
        for p in [a, b] {
            *circuits.1.entry(p).or_insert(0) += 1;
        }
        Ok(CircuitSlot {
            service: self,
            peers: [a, b],
        })
    }

    /// Splices `dialer`'s stream to `target`, which must hold a live reservation here.
    pub(super) async fn connect(
        &self,
        net: &Arc<Net>,
        dialer: &Connection,
        target: PeerId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        let from = dialer.peer_id();
        let refused = |reason: String| {
            self.counters.circuits_refused.fetch_add(1, Relaxed);
            tracing::debug!(target = %target.short(), %reason, "circuit refused");
            reason
        };
        if !self.config.serve {
            let reason = refused("this node does not relay (RelayConfig::serve is off)".into());
            return refuse(&mut send, reason).await;
        }
        if target == from || target == net.local {
            let reason = refused("cannot relay to yourself or to the relay".into());
            return refuse(&mut send, reason).await;
        }
        let reserved = lock(&self.reservations)
            .get(&target)
            .is_some_and(|expiry| *expiry > Instant::now());
        if !reserved {
            let reason = refused(format!("{} holds no reservation here", target.short()));
            return refuse(&mut send, reason).await;
        }
        let Some(to) = net.connected(&target) else {
            let reason = refused(format!("{} is not connected to this relay", target.short()));
            return refuse(&mut send, reason).await;
        };
        let slot = match self.take_circuit(from, target) {
            Ok(slot) => slot,
            Err(reason) => return refuse(&mut send, refused(reason)).await,
        };
        let opened = tokio::time::timeout(CONTROL_TIMEOUT, async {
            let (mut t_send, mut t_recv) = to.open_bi(RELAY_PROTOCOL).await?;
            write_frame(&mut t_send, &RelayMessage::Incoming { from }).await?;
            let answer = read_frame(&mut t_recv).await?;
            Ok::<_, crate::Error>((t_send, t_recv, answer))
        })
        .await;
        let (mut t_send, mut t_recv) = match opened {
            Ok(Ok((s, r, RelayMessage::Accepted {}))) => (s, r),
            Ok(Ok((_, _, RelayMessage::Refused { reason }))) => {
                let reason = refused(format!("{} declined: {reason}", target.short()));
                return refuse(&mut send, reason).await;
            }
            Ok(Ok((_, _, other))) => {
                let reason = refused(format!("{} answered {other:?}", target.short()));
                return refuse(&mut send, reason).await;
            }
            Ok(Err(e)) => {
                let reason = refused(format!("could not reach {}: {e}", target.short()));
                return refuse(&mut send, reason).await;
            }
            Err(_) => {
                let reason = refused(format!("{} did not answer in time", target.short()));
                return refuse(&mut send, reason).await;
            }
        };
        if write_frame(&mut send, &RelayMessage::Connected {})
            .await
            .is_err()
        {
            t_send.reset();
            return;
        }
        self.counters.circuits_served.fetch_add(1, Relaxed);
        tracing::debug!(target = %target.short(), "circuit spliced");
        let end = splice(
            (&mut send, &mut recv),
            (&mut t_send, &mut t_recv),
            self.config.circuit_bytes,
            self.config.circuit_duration,
            self.config.forward_tap.as_ref(),
            &self.counters.bytes_relayed,
        )
        .await;
        if matches!(end, SpliceEnd::OutOfBytes | SpliceEnd::Expired) {
            self.counters.circuits_cut.fetch_add(1, Relaxed);
        }
        drop(slot);
        tracing::debug!(target = %target.short(), ?end, "circuit ended");
    }
}
