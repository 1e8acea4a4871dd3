//! LAN discovery by real nodes in network namespaces joined by a Linux bridge (as root;
//! runs in CI, never skips there). No node is given a bootstrap peer: they find each
//! other over mDNS on the link.
//!
//! ```text
//!  n1 192.168.66.1 ─┐
//!  n2 192.168.66.2 ─┼─ br: br0 (a bridge, multicast flooded)
//!  n3 192.168.66.3 ─┘
//! ```

mod lab;

use std::time::{Duration, Instant};

use lab::LabNode;
use lab::link::Link;
use p2p_foundation::{LanStats, P2PNode, PeerEvent, PeerId};
use tokio::sync::broadcast;

const HANG_GUARD: Duration = Duration::from_secs(90);
/// Longest a discovery may take before the test fails (the figure itself is printed).
const DISCOVERY_LIMIT: Duration = Duration::from_secs(10);

async fn guard(f: impl Future<Output = ()>) {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .expect("LAN test exceeded its hang guard");
}

/// Waits (bounded) for the `Connected` event of `peer` on `events`.
async fn connected_event(
    what: &str,
    events: &mut broadcast::Receiver<PeerEvent>,
    peer: PeerId,
) -> Instant {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(PeerEvent::Connected { peer: p, .. }) if p == peer => return Instant::now(),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("{what}: node stopped"),
            }
        }
    };
    tokio::time::timeout(DISCOVERY_LIMIT, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: no connection within {DISCOVERY_LIMIT:?}"))
}

/// Waits (bounded) until `node` has discovered `n` peers on the link, and checks it found
/// no more.
async fn wait_discovered(node: &LabNode, n: u64) {
    let deadline = Instant::now() + DISCOVERY_LIMIT;
    while node.node.lan_stats().discovered < n {
        assert!(
            Instant::now() < deadline,
            "discovered too few: {:?}",
            node.node.lan_stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = node.node.lan_stats();
    assert_eq!(s.discovered, n, "discovered more than {n}: {s:?}");
}

/// A node in host `i`'s namespace with the defaults (listening on `[::]:0`, mDNS on, no
/// bootstrap peer), or with mDNS off.
async fn node(link: &Link, i: usize, mdns: bool) -> LabNode {
    LabNode::start(&link.ns(i), move || P2PNode::builder().mdns(mdns)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_a_link_find_each_other_with_no_bootstrap() {
    if !lab::can_run("two_nodes_on_a_link_find_each_other_with_no_bootstrap") {
        return;
    }
    guard(async {
        let link = Link::new(2);
        let mut figures = Vec::new();
        for round in 0..3 {
            let a = node(&link, 1, true).await;
            let mut a_events = a.node.peer_events();
            let b = node(&link, 2, true).await;
            // Both built: from here on, discovery and the authenticated handshake.
            let built = Instant::now();
            let mut b_events = b.node.peer_events();
            let (pa, pb) = (a.node.peer_id(), b.node.peer_id());
            let at_a = connected_event("a sees b", &mut a_events, pb).await;
            // b subscribed after its build returned: it may already hold the connection.
            let at_b = if b.node.connected_peers().contains(&pa) {
                Instant::now()
            } else {
                connected_event("b sees a", &mut b_events, pa).await
            };
            let took = at_a.max(at_b).duration_since(built);
            figures.push(took);
            eprintln!("round {round}: connected {took:?} after both were built");

            // Both discover each other (one of them may hear the other only at its second
            // query, a second later), and only one dials: the smaller id at once, the
            // larger after a short wait, finding the connection up.
            for n in [&a, &b] {
                wait_discovered(n, 1).await;
            }
            let (sa, sb) = (a.node.lan_stats(), b.node.lan_stats());
            for (s, who) in [(&sa, "a"), (&sb, "b")] {
                assert!(s.running, "{who}: {s:?}");
                assert_eq!(s.malformed, 0, "{who}: {s:?}");
            }
            assert_eq!(sa.dials + sb.dials, 1, "one dial: a {sa:?}, b {sb:?}");
            // The same counters in the node's metrics.
            let text = a.run(|n| async move { n.metrics().await }).await;
            for line in [
                "p2pf_lan_running 1".to_owned(),
                "p2pf_lan_discovery_total{event=\"discovered\"} 1".to_owned(),
                format!("p2pf_lan_discovery_total{{event=\"dials\"}} {}", sa.dials),
                "p2pf_lan_discovery_total{event=\"malformed\"} 0".to_owned(),
            ] {
                assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
            }
            // The address proven in the handshake is on the link (remembered as the
            // connection is registered, a moment after the event).
            let on_link = || {
                a.node
                    .addresses_of(&pb)
                    .iter()
                    .any(|x| x.ip().to_string() == Link::ip(2))
            };
            let deadline = Instant::now() + Duration::from_secs(2);
            while !on_link() {
                assert!(
                    Instant::now() < deadline,
                    "a knows b at {:?}",
                    a.node.addresses_of(&pb)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            a.stop().await;
            b.stop().await;
        }
        figures.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "lan.discover_ms {:.1} (median of {}; min {:.1}, max {:.1}; from both nodes built to both connected)",
            ms(figures[figures.len() / 2]),
            figures.len(),
            ms(figures[0]),
            ms(figures[figures.len() - 1]),
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_mdns_off_is_not_found_while_others_are() {
    if !lab::can_run("a_node_with_mdns_off_is_not_found_while_others_are") {
        return;
    }
    guard(async {
        let link = Link::new(3);
        // The silent node is up first, so every query the others send reaches it.
        let off = node(&link, 2, false).await;
        let a = node(&link, 1, true).await;
        let mut a_events = a.node.peer_events();
        let c = node(&link, 3, true).await;
        // The positive control: a and c find each other through the same queries that
        // would have found the silent node, had it answered.
        connected_event("a sees c", &mut a_events, c.node.peer_id()).await;
        let deadline = Instant::now() + DISCOVERY_LIMIT;
        while !c.node.connected_peers().contains(&a.node.peer_id()) {
            assert!(Instant::now() < deadline, "c never saw a");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Both have heard the other (announcement or answer): the link carried their
        // queries and answers while the silent node was up on it.
        for n in [&a, &c] {
            wait_discovered(n, 1).await;
        }
        assert_eq!(
            off.node.lan_stats(),
            LanStats::default(),
            "mDNS off: nothing runs"
        );
        assert!(
            off.node.connected_peers().is_empty(),
            "the silent node was found: {:?}",
            off.node.connected_peers()
        );
        assert_eq!(a.node.connected_peers(), vec![c.node.peer_id()]);
        assert_eq!(c.node.connected_peers(), vec![a.node.peer_id()]);
        a.stop().await;
        c.stop().await;
        off.stop().await;
    })
    .await;
}
