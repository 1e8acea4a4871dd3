//! Automatic tunnel selection in the NAT lab (as root; runs in CI, never skips there): two
//! IPv4-only namespaces, B behind an nftables `masquerade` NAT. With
//! `TunnelingConfig::auto()` both nodes measure no native IPv6, choose the P2P overlay and
//! start it by themselves, so the hosts' `ping -6` reaches the other's overlay address.
//! Then B's host gains a global IPv6 address and route: B notices the network change,
//! chooses native IPv6 and gives IPv6 its dialling head start; when the address goes,
//! B is back on the overlay, which stayed up the whole time.

mod lab;

use std::time::{Duration, Instant};

use lab::{Lab, LabNode, NatKind, Side};
use p2p_foundation::tunnel::Mechanism;
use p2p_foundation::{P2PNode, PeerEvent, TunnelStatus, TunnelingConfig};

const HANG_GUARD: Duration = Duration::from_secs(120);
/// The global IPv6 address B's host gains (documentation prefix, inside the namespace).
const B_GLOBAL_V6: &str = "2001:db8:b::2";

fn auto() -> TunnelingConfig {
    // No DNS in the lab's namespaces: skip the NAT64 lookup rather than wait it out.
    TunnelingConfig::auto().nat64_discovery(false)
}

fn chosen(status: &TunnelStatus) -> Option<Mechanism> {
    status.ipv6.as_ref().map(|c| c.mechanism)
}

fn reason(status: &TunnelStatus, m: Mechanism) -> &'static str {
    status
        .rejected
        .iter()
        .find(|r| r.mechanism == m)
        .map_or("not rejected", |r| r.reason)
}

/// The next `TunnelSelected` on `events` within `limit`, with the time it took.
async fn next_selection(
    events: &mut tokio::sync::broadcast::Receiver<PeerEvent>,
    limit: Duration,
) -> (TunnelStatus, Duration) {
    let started = Instant::now();
    tokio::time::timeout(limit, async {
        loop {
            match events.recv().await {
                Ok(PeerEvent::TunnelSelected { status }) => return (status, started.elapsed()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no TunnelSelected within {limit:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_selection_starts_the_overlay_behind_a_nat_and_follows_native_ipv6() {
    if !lab::can_run("auto_selection_starts_the_overlay_behind_a_nat_and_follows_native_ipv6") {
        return;
    }
    tokio::time::timeout(HANG_GUARD, async {
        let lab = Lab::new(NatKind::Public, NatKind::EndpointIndependent);
        let (ns_a, ns_b) = (lab.lan(Side::A), lab.lan(Side::B));
        let a = LabNode::start(&ns_a, || {
            P2PNode::builder()
                .listen(lab::sock(Side::A.host_ip(), 0))
                .tunneling(auto())
        })
        .await;
        let seed = a.contact();
        let b = LabNode::start(&ns_b, move || {
            P2PNode::builder()
                .listen(lab::sock(Side::B.host_ip(), 0))
                .bootstrap(vec![seed])
                .network_poll(Duration::from_millis(100))
                .tunneling(auto())
        })
        .await;
        let on_overlay = |n: &P2PNode| {
            n.tunnel_status()
                .is_some_and(|s| chosen(&s) == Some(Mechanism::Overlay))
                && n.overlay_addr().is_some()
        };
        assert!(lab::wait_for(&a, Duration::from_secs(10), on_overlay).await);
        assert!(lab::wait_for(&b, Duration::from_secs(10), on_overlay).await);
        let status = b.node.tunnel_status().expect("evaluated");
        assert!(!status.connectivity.native_ipv6);
        assert_eq!(
            reason(&status, Mechanism::NativeIpv6),
            "no global IPv6 address or route observed"
        );
        assert_eq!(
            status.ipv6_head_start,
            Duration::ZERO,
            "no IPv6 path: no head start"
        );
        assert_eq!(
            status.rejected.len(),
            7,
            "every other mechanism, with its reason: {status:?}"
        );

        // The overlay the selection started carries the hosts' own packets.
        let (id_a, id_b) = (a.node.peer_id(), b.node.peer_id());
        assert!(
            lab::wait_for(&a, Duration::from_secs(10), |n| n
                .connection_info(&id_b)
                .is_some())
            .await
        );
        let (addr_a, addr_b) = (
            P2PNode::overlay_addr_of(&id_a),
            P2PNode::overlay_addr_of(&id_b),
        );
        let (got, out) = lab::ping6(&ns_a, addr_b);
        assert_eq!(got, 3, "ping A → B over the selected overlay:\n{out}");
        let (got, out) = lab::ping6(&ns_b, addr_a);
        assert_eq!(got, 3, "ping B → A over the selected overlay:\n{out}");

        // B's host gains native IPv6: a default route, then a global address (the address
        // is the change the node notices; with the route already there, one look suffices).
        lab::sh(&[
            "ip", "-n", &ns_b, "-6", "route", "add", "default", "dev", "l0",
        ]);
        let global_v6 = |op: &str| {
            let addr = format!("{B_GLOBAL_V6}/64");
            let mut args = vec!["ip", "-n", &ns_b, "-6", "addr", op, &addr, "dev", "l0"];
            if op == "add" {
                args.push("nodad");
            }
            lab::sh(&args);
        };
        let mut events = b.node.peer_events();
        global_v6("add");
        let (status, took) = next_selection(&mut events, Duration::from_secs(10)).await;
        assert_eq!(chosen(&status), Some(Mechanism::NativeIpv6), "{status:?}");
        assert!(status.connectivity.native_ipv6);
        assert_eq!(
            reason(&status, Mechanism::Overlay),
            "usable, but ranked below the chosen mechanism"
        );
        assert_eq!(
            status.ipv6_head_start,
            TunnelingConfig::auto().ipv6_head_start
        );
        eprintln!("native IPv6 chosen {took:?} after the address appeared");

        // It goes again: back to the overlay, which never stopped.
        global_v6("del");
        let (status, took) = next_selection(&mut events, Duration::from_secs(10)).await;
        assert_eq!(chosen(&status), Some(Mechanism::Overlay), "{status:?}");
        assert_eq!(status.ipv6_head_start, Duration::ZERO);
        assert_eq!(b.node.overlay_addr(), Some(addr_b));
        eprintln!("back on the overlay {took:?} after the address went");
        let (got, out) = lab::ping6(&ns_a, addr_b);
        assert_eq!(got, 3, "the overlay still carries packets:\n{out}");
        b.stop().await;
        a.stop().await;
    })
    .await
    .expect("the tunneling lab test exceeded its hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selection_off_starts_nothing_and_reports_nothing() {
    let node = P2PNode::builder()
        .listen("127.0.0.1:0".parse().expect("address"))
        .build()
        .await
        .expect("node");
    assert_eq!(node.tunnel_status(), None);
    assert_eq!(node.overlay_addr(), None);
    node.shutdown().await;
}
