//! The node's DS-Lite B4 (RFC 6333): started when DS-Lite is the chosen way to IPv4 and the
//! host has no IPv4 of its own. Its TUN device (the tunnel crate's [`DsLiteTun`]) gets
//! 192.0.0.2/29 and the host's IPv4 default route, so every IPv4 socket on the host, the
//! node's own dual-stack QUIC and TCP sockets included, reaches IPv4 through the AFTR.
//!
//! The B4 runs as a task of the node: shutting the node down stops it, and the device and
//! its route go with it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use p2p_foundation_tunnel::endpoint::{DsLiteConfig, DsLiteTun, EndpointStats};
use p2p_foundation_tunnel::is_dslite_reserved;
use tracing::Instrument;

use super::probe::route_source;
use crate::net::{Net, lock};

/// The B4, once started; the running task holds the device.
#[derive(Default)]
pub(super) struct B4 {
    running: Mutex<Option<(String, Weak<DsLiteTun>)>>,
    /// Opening the device or adding its route failed: DS-Lite is not started again.
    failed: AtomicBool,
}

impl B4 {
    /// The device's name while the B4 runs.
    pub(super) fn device(&self) -> Option<String> {
        let running = lock(&self.running);
        running
            .as_ref()
            .filter(|(_, tun)| tun.strong_count() > 0)
            .map(|(name, _)| name.clone())
    }

    /// The B4's counters while it runs.
    pub(super) fn stats(&self) -> Option<EndpointStats> {
        let running = lock(&self.running);
        running
            .as_ref()
            .and_then(|(_, tun)| tun.upgrade())
            .map(|t| t.stats())
    }

    /// Whether the node runs DS-Lite here: `aftr` is the configured AFTR, `local_v4` the
    /// host's IPv4 source towards the Internet, if it has a route.
    pub(super) fn can_run(
        &self,
        aftr: Option<Ipv6Addr>,
        local_v4: Option<Ipv4Addr>,
        tun_device: bool,
    ) -> Result<(), &'static str> {
        if self.device().is_some() {
            return Ok(());
        }
        match local_v4 {
            // Another B4 on the host (or its router) provides it: used as it is.
            Some(v4) if is_dslite_reserved(v4) => Ok(()),
            Some(_) => Err(
                "the host has IPv4 of its own: a DS-Lite B4 would take over its IPv4 default route",
            ),
            None if aftr.is_none() => Err("no AFTR configured for this node's B4"),
            None if self.failed.load(Ordering::Relaxed) => {
                Err("this node's DS-Lite B4 could not start (see the node's log)")
            }
            None if !tun_device => Err("no TUN device (/dev/net/tun) for the DS-Lite B4"),
            None => Ok(()),
        }
    }

    /// Starts the B4 towards `aftr` unless it runs already: the device, the IPv4 default
    /// route into it, and the task moving packets. Returns whether it runs afterwards.
    pub(super) fn start(&self, net: &Arc<Net>, aftr: Ipv6Addr) -> bool {
        if self.device().is_some() {
            return true;
        }
        match open(aftr) {
            Ok(tun) => {
                let tun = Arc::new(tun);
                let name = tun.name().to_string();
                tracing::info!(device = %name, b4 = %tun.b4_v6(), %aftr, "DS-Lite B4 started: IPv4 goes through the AFTR");
                *lock(&self.running) = Some((name.clone(), Arc::downgrade(&tun)));
                let span = tracing::info_span!("p2pf.dslite", device = %name, %aftr);
                net.spawn(
                    async move {
                        let error = tun.run().await;
                        tracing::warn!(%error, "the DS-Lite B4 stopped");
                    }
                    .instrument(span),
                );
                true
            }
            Err(error) => {
                tracing::warn!(%error, %aftr, "DS-Lite was chosen but the B4 could not start");
                self.failed.store(true, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Opens the B4's device from the host's IPv6 source towards `aftr` and routes IPv4 into it.
fn open(aftr: Ipv6Addr) -> std::io::Result<DsLiteTun> {
    let b4 = match route_source(SocketAddr::new(aftr.into(), 9)) {
        Some(IpAddr::V6(b4)) => b4,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NetworkUnreachable,
                format!("no IPv6 route to the AFTR {aftr}"),
            ));
        }
    };
    let tun = DsLiteTun::open(&DsLiteConfig::new(b4, aftr))?;
    tun.add_default_route()?;
    Ok(tun)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

    #[test]
    fn a_b4_runs_only_on_a_host_without_ipv4_of_its_own() {
        let b4 = B4::default();
        let own = Some(Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(
            b4.can_run(Some(AFTR), own, true),
            Err(
                "the host has IPv4 of its own: a DS-Lite B4 would take over its IPv4 default route"
            )
        );
        assert_eq!(b4.can_run(Some(AFTR), None, true), Ok(()));
        assert_eq!(
            b4.can_run(Some(AFTR), None, false),
            Err("no TUN device (/dev/net/tun) for the DS-Lite B4")
        );
        assert_eq!(
            b4.can_run(None, None, true),
            Err("no AFTR configured for this node's B4")
        );
        // Another B4 (192.0.0.2 from the router or the host): DS-Lite as the host has it.
        let implied = Some(Ipv4Addr::new(192, 0, 0, 2));
        assert_eq!(b4.can_run(None, implied, false), Ok(()));
        b4.failed.store(true, Ordering::Relaxed);
        assert_eq!(
            b4.can_run(Some(AFTR), None, true),
            Err("this node's DS-Lite B4 could not start (see the node's log)")
        );
        assert_eq!(b4.device(), None);
    }
}
