//! The selection loop: measure, decide, start what was chosen, tell the transport and the
//! application; again on every network or NAT change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_foundation_tunnel::{Mechanism, Nat64Prefix, select};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;

use super::choice::{TunnelStatus, decide, runs_here};
use super::dslite::B4;
use super::{TunnelingConfig, probe};
use crate::net::{Net, PeerEvent, lock};

/// Where Linux exposes TUN devices; without it the overlay cannot start.
const TUN_DEVICE: &str = "/dev/net/tun";

/// The node's tunnel selection ([`crate::NodeBuilder::tunneling`]).
pub(crate) struct Tunneling {
    config: TunnelingConfig,
    status: Mutex<Option<TunnelStatus>>,
    /// Opening the overlay's TUN device failed: it is not offered again.
    overlay_failed: AtomicBool,
    /// The DS-Lite B4, started when DS-Lite is chosen on a host without IPv4.
    b4: B4,
}

impl Tunneling {
    /// Starts measuring and selecting in the background (the first choice follows within
    /// the NAT64 lookup's bound, [`TunnelingConfig::nat64_timeout`]).
    pub(crate) fn start(net: &Arc<Net>, config: TunnelingConfig) -> Arc<Self> {
        let this = Arc::new(Self {
            config,
            status: Mutex::new(None),
            overlay_failed: AtomicBool::new(false),
            b4: B4::default(),
        });
        // Subscribed now, so no change after the node is built is missed.
        let mut events = net.events.subscribe();
        let (t, weak) = (Arc::clone(&this), Arc::downgrade(net));
        let span = tracing::debug_span!("p2pf.tunneling", node = %net.local.short());
        net.spawn(
            async move {
                let mut nat64 = probe::nat64_prefix(&t.config).await;
                loop {
                    let Some(net) = weak.upgrade() else { return };
                    t.evaluate(&net, nat64);
                    drop(net);
                    // Until something the measurements depend on changes.
                    loop {
                        match events.recv().await {
                            Ok(PeerEvent::LocalAddressesChanged { .. })
                            | Err(RecvError::Lagged(_)) => {
                                nat64 = probe::nat64_prefix(&t.config).await;
                                break;
                            }
                            Ok(PeerEvent::NatChanged { .. }) => break,
                            Ok(_) => {}
                            Err(RecvError::Closed) => return,
                        }
                    }
                }
            }
            .instrument(span),
        );
        this
    }

    /// The DS-Lite B4's counters while it runs.
    pub(crate) fn dslite_stats(&self) -> Option<p2p_foundation_tunnel::endpoint::EndpointStats> {
        self.b4.stats()
    }

    /// The latest choice, once the first evaluation ran.
    pub(crate) fn status(&self) -> Option<TunnelStatus> {
        lock(&self.status).clone()
    }

    fn overlay_possible(&self, net: &Net) -> bool {
        self.config.overlay.is_some()
            && !self.overlay_failed.load(Ordering::Relaxed)
            && (net.overlay.get().is_some() || std::path::Path::new(TUN_DEVICE).exists())
    }

    fn measure(&self, net: &Arc<Net>, nat64: Option<Nat64Prefix>) -> TunnelStatus {
        let nat = net.nat.get().zip(net.endpoint.local_addr().ok());
        let nat = nat.map(|(n, local)| n.status(local));
        let c = probe::connectivity(
            &self.config,
            nat.as_ref(),
            nat64,
            self.overlay_possible(net),
        );
        let local_v4 = probe::local_v4();
        let tun_device = std::path::Path::new(TUN_DEVICE).exists();
        let can_run = |m| match m {
            Mechanism::DsLite => self.b4.can_run(self.config.aftr, local_v4, tun_device),
            other => runs_here(other),
        };
        decide(select(&c), c, &can_run)
    }

    /// One round: measure, decide, start the overlay or the DS-Lite B4 if chosen, set the
    /// transport's IPv6 preference, and report a changed choice.
    fn evaluate(&self, net: &Arc<Net>, nat64: Option<Nat64Prefix>) {
        let mut status = self.measure(net, nat64);
        let overlay_chosen = status
            .ipv6
            .as_ref()
            .is_some_and(|c| c.mechanism == Mechanism::Overlay);
        if let (true, Some(config)) = (overlay_chosen, &self.config.overlay) {
            if let Err(e) = crate::overlay::Overlay::start_late(net, config) {
                tracing::warn!(error = %e, "the overlay was chosen but could not start");
                self.overlay_failed.store(true, Ordering::Relaxed);
                status = self.measure(net, nat64);
            }
        }
        let dslite_chosen = status
            .ipv4_access
            .as_ref()
            .is_some_and(|c| c.mechanism == Mechanism::DsLite);
        // Started only for a configured AFTR on a host without IPv4 (`B4::can_run`); an
        // AFTR implied by a 192.0.0.0/29 address is another B4's, used as it is.
        if let (true, Some(aftr), None) = (dslite_chosen, self.config.aftr, probe::local_v4()) {
            if !self.b4.start(net, aftr) {
                status = self.measure(net, nat64);
            }
        }
        status.ipv4_device = self.b4.device();
        let native = status
            .ipv6
            .as_ref()
            .is_some_and(|c| c.mechanism == Mechanism::NativeIpv6);
        status.ipv6_head_start = if native {
            self.config.ipv6_head_start
        } else {
            Duration::ZERO
        };
        net.endpoint.set_ipv6_head_start(status.ipv6_head_start);
        let changed = {
            let mut last = lock(&self.status);
            let changed = last.as_ref().is_none_or(|l| !l.same_choice(&status));
            *last = Some(status.clone());
            changed
        };
        if changed {
            tracing::info!(
                ipv6 = ?status.ipv6.as_ref().map(|c| c.mechanism),
                ipv4_access = ?status.ipv4_access.as_ref().map(|c| c.mechanism),
                "tunnel selected"
            );
            let _ = net.events.send(PeerEvent::TunnelSelected { status });
        }
    }
}
