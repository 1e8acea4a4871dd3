//! Network changes: the host's interface addresses, sampled every
//! [`NodeBuilder::network_poll`](crate::NodeBuilder::network_poll). A laptop that moves
//! to another Wi-Fi network, a phone that switches to cellular, a DHCP lease that brings a
//! new address: each shows up as an address added or removed, and the node reacts at once
//! ([`Net::network_changed`]): it asks its observers for its mapping again, tries to move
//! relayed connections to a direct path, and dials lost peers without waiting out their
//! backoff.
//!
//! Sampling (`getifaddrs`, one netlink dump) rather than a netlink subscription: it works
//! the same in every network namespace and on every platform `if-addrs` supports, needs
//! no thread per node, and costs tens of microseconds every two seconds.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use crate::net::Net;

/// The addresses that identify the networks the host is on: every interface address but
/// loopback and IPv6 link-local (those exist on every network and say nothing about which).
fn sample() -> std::io::Result<BTreeSet<(String, IpAddr)>> {
    Ok(if_addrs::get_if_addrs()?
        .into_iter()
        .filter(|i| !i.is_loopback() && !i.is_link_local())
        .map(|i| {
            let ip = i.ip();
            (i.name, ip)
        })
        .collect())
}

/// What changed between two samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AddressChange {
    pub(crate) added: Vec<IpAddr>,
    pub(crate) removed: Vec<IpAddr>,
}

impl AddressChange {
    /// The difference from `old` to `new`, by address (an address moving between
    /// interfaces is a change of neither).
    fn between(old: &BTreeSet<(String, IpAddr)>, new: &BTreeSet<(String, IpAddr)>) -> Self {
        let ips =
            |s: &BTreeSet<(String, IpAddr)>| s.iter().map(|(_, ip)| *ip).collect::<BTreeSet<_>>();
        let (old, new) = (ips(old), ips(new));
        Self {
            added: new.difference(&old).copied().collect(),
            removed: old.difference(&new).copied().collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Samples the interface addresses every `every` on the node's tasks and reports each
/// change to [`Net::network_changed`].
pub(crate) fn start(net: &Arc<Net>, every: Duration) {
    let weak = Arc::downgrade(net);
    let span = tracing::debug_span!("p2pf.netwatch", node = %net.local.short());
    net.spawn(
        async move {
            let mut last = match sample() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list interface addresses; network changes go unnoticed");
                    return;
                }
            };
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = match sample() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot list interface addresses");
                        continue;
                    }
                };
                let change = AddressChange::between(&last, &now);
                last = now;
                if change.is_empty() {
                    continue;
                }
                let Some(net) = weak.upgrade() else { return };
                tracing::info!(added = ?change.added, removed = ?change.removed, "local addresses changed");
                net.network_changed(change);
            }
        }
        .instrument(span),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(&str, &str)]) -> BTreeSet<(String, IpAddr)> {
        items
            .iter()
            .map(|(n, ip)| ((*n).to_owned(), ip.parse().expect("ip")))
            .collect()
    }

    #[test]
    fn a_change_is_an_address_added_or_removed_not_one_moving_between_interfaces() {
        let old = set(&[("eth0", "192.168.1.20"), ("eth0", "2001:db8::20")]);
        let moved = set(&[("wlan0", "192.168.1.20"), ("eth0", "2001:db8::20")]);
        assert!(AddressChange::between(&old, &moved).is_empty());
        let new = set(&[("wlan0", "10.0.0.7"), ("eth0", "2001:db8::20")]);
        let change = AddressChange::between(&old, &new);
        assert_eq!(
            change.added,
            vec!["10.0.0.7".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(
            change.removed,
            vec!["192.168.1.20".parse::<IpAddr>().expect("ip")]
        );
    }

    #[test]
    fn this_host_has_a_sample_without_loopback() {
        let s = sample().expect("getifaddrs works here");
        assert!(s.iter().all(|(_, ip)| !ip.is_loopback()), "{s:?}");
    }
}
