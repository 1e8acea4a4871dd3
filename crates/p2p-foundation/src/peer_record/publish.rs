//! Keeping the node's own peer record current in the DHT, and finding another peer's.
//!
//! The publisher recomputes the record (advertised addresses, the reflexive address NAT
//! traversal learnt, the relays holding a reservation) when a connection, the NAT status or
//! a reservation changes, waits [`DEBOUNCE`] for things to settle, and stores it when it
//! differs from the last one stored, or when half of [`PEER_RECORD_TTL`] has passed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use p2p_foundation_dht::{DhtNode, Record};
use p2p_foundation_identity::{Keypair, PeerId, Signed, unix_millis};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;

use super::{PEER_RECORD_TTL, PeerRecord, Reach, peer_record_key};
use crate::net::{Net, PeerEvent, canonical};

/// How long the publisher waits after a change before it stores the record, so a burst
/// of changes (a NAT status settling, reservations being taken) is one publication.
pub(crate) const DEBOUNCE: Duration = Duration::from_secs(2);
/// The shortest time between two publications.
const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// How often the record is recomputed when nothing is reported.
const CHECK_EVERY: Duration = Duration::from_secs(30);
/// First wait after a publication no DHT node accepted; doubles up to [`CHECK_EVERY`].
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Most relay hints taken from one record.
pub(crate) const MAX_RELAY_HINTS: usize = 2;

/// What the node would publish now.
pub(crate) fn own_record(net: &Net, advertise: &[SocketAddr]) -> PeerRecord {
    let mut reach: Vec<Reach> = advertise.iter().map(|a| Reach::Direct(*a)).collect();
    if let (Some(nat), Ok(local)) = (net.nat.get(), net.endpoint.local_addr()) {
        let status = nat.status(local);
        if !local.ip().is_unspecified() {
            reach.push(Reach::Direct(local));
        }
        if status.behind_nat != Some(false) {
            reach.extend(status.reflexive.map(Reach::Reflexive));
        }
    }
    if let Some(relay) = net.relay.get() {
        for peer in relay.held_relays() {
            if let Some(conn) = net.connected(&peer) {
                reach.push(Reach::Relay {
                    relay: peer,
                    addr: canonical(conn.remote_address()),
                });
            }
        }
    }
    PeerRecord::new(reach)
}

/// Starts the publisher of the node's peer record (stops with the node).
pub(crate) fn start(net: &Arc<Net>, keypair: Keypair, advertise: Vec<SocketAddr>) {
    let weak = Arc::downgrade(net);
    let mut events = net.events.subscribe();
    let relay = net.relay.get().cloned();
    let span = tracing::debug_span!("p2pf.peer_record", node = %net.local.short());
    net.spawn(
        async move {
            let mut last: Option<(PeerRecord, Instant)> = None;
            let mut seq = 0u64;
            let mut retry = RETRY_AFTER;
            loop {
                let wait = {
                    let Some(net) = weak.upgrade() else { return };
                    let record = own_record(&net, &advertise);
                    let due = match &last {
                        None => !record.is_empty(),
                        Some((old, at)) => *old != record || at.elapsed() >= PEER_RECORD_TTL / 2,
                    };
                    // A mapping that depends on the destination changes the reflexive address
                    // with every new observer: at most one publication per MIN_INTERVAL.
                    let soonest = last.as_ref().map_or(Duration::ZERO, |(_, at)| {
                        MIN_INTERVAL.saturating_sub(at.elapsed())
                    });
                    if due && !soonest.is_zero() {
                        soonest
                    } else if due {
                        seq = seq.max(unix_millis(SystemTime::now())).saturating_add(1);
                        match publish(&net, &keypair, &record, seq).await {
                            Ok(stored) if stored > 0 => {
                                tracing::debug!(stored, addrs = ?record.addrs(), "peer record published");
                                last = Some((record, Instant::now()));
                                retry = RETRY_AFTER;
                                CHECK_EVERY
                            }
                            outcome => {
                                tracing::debug!(?outcome, "peer record not stored yet");
                                retry = (retry * 2).min(CHECK_EVERY);
                                retry / 2
                            }
                        }
                    } else {
                        let republish = last.as_ref().map_or(CHECK_EVERY, |(_, at)| {
                            (PEER_RECORD_TTL / 2).saturating_sub(at.elapsed())
                        });
                        republish.min(CHECK_EVERY)
                    }
                };
                let held_changed = async {
                    match &relay {
                        Some(r) => r.held_changed.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = held_changed => {}
                    e = events.recv() => match e {
                        Ok(PeerEvent::Connected { .. } | PeerEvent::Disconnected { .. }
                            | PeerEvent::NatChanged { .. }
                            | PeerEvent::LocalAddressesChanged { .. })
                        | Err(RecvError::Lagged(_)) => {}
                        Ok(_) => continue,
                        Err(RecvError::Closed) => return,
                    },
                }
                tokio::time::sleep(DEBOUNCE).await;
                while events.try_recv().is_ok() {}
            }
        }
        .instrument(span),
    );
}

/// Signs and stores `record`; how many DHT nodes accepted it.
async fn publish(
    net: &Arc<Net>,
    keypair: &Keypair,
    record: &PeerRecord,
    seq: u64,
) -> crate::Result<usize> {
    let dht = net.dht().ok_or(crate::Error::Shutdown)?;
    let signed = Signed::sign(
        keypair,
        Record::new(peer_record_key(&net.local), record.encode()),
        seq,
        SystemTime::now() + PEER_RECORD_TTL,
    )?;
    let stored = crate::metrics::timed_dht(
        &Arc::downgrade(net),
        "peer_record_put",
        dht.put_record(signed),
    )
    .await?;
    if stored > 0 {
        net.counters.peer_records_published.fetch_add(1, Relaxed);
        let _ = net.events.send(PeerEvent::PeerRecordPublished {
            record: record.clone(),
            stored,
        });
    }
    Ok(stored)
}

/// `peer`'s newest peer record in the DHT: only records signed by `peer` itself count.
pub(crate) async fn fetch(net: &Arc<Net>, dht: &DhtNode, peer: PeerId) -> Option<PeerRecord> {
    net.counters.peer_record_lookups.fetch_add(1, Relaxed);
    let key = peer_record_key(&peer);
    let found =
        crate::metrics::timed_dht(&Arc::downgrade(net), "peer_record_get", dht.get_record(key))
            .await
            .map_err(|e| tracing::debug!(peer = %peer.short(), error = %e, "no peer record"))
            .ok()?;
    let newest = found
        .iter()
        .filter(|r| r.signer() == peer)
        .max_by_key(|r| r.seq())?;
    match PeerRecord::decode(&newest.payload().value) {
        Ok(record) => {
            net.counters.peer_records_found.fetch_add(1, Relaxed);
            Some(record)
        }
        Err(e) => {
            // The validator already refused such values: only a broken peer gets here.
            tracing::debug!(peer = %peer.short(), error = %e, "bad peer record");
            None
        }
    }
}
