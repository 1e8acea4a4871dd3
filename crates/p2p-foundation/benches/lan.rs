//! `cargo xtask bench lan`: LAN discovery by real nodes in network namespaces joined by a
//! Linux bridge (`tests/lab/link.rs`; needs root, `ip` and `nft`, as the lab suite does).
//!
//! - `lan.discover_ms_p50` / `p99`: node A runs in `n1`; node B is built in `n2`, neither
//!   given a bootstrap peer (mDNS on, the default). From B's `build()` returning to both
//!   nodes holding the authenticated connection, over fresh pairs of nodes. The baseline,
//!   `lan.dial_ms_p50`, is the same pair with mDNS off and B dialling A's known address
//!   (what a user with a bootstrap list gets), from the same instant to the same end.
//!   libp2p-mdns (published defaults) sends its first query at start and then every 5 min.
//!
//! Not root: a full run (`cargo bench`) fails with a message; a smoke run (`cargo test
//! --benches`) skips loudly, unless `CI=true`.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use lab::LabNode;
use lab::link::Link;
use p2p_foundation::{P2PNode, PeerEvent, PeerId};
use p2p_foundation_benchkit::{Better, Suite, percentile};
use tokio::sync::broadcast;

/// Longest one round may take before the run fails.
const ROUND_LIMIT: Duration = Duration::from_secs(10);

/// Waits (bounded) until `peer`'s connection is in `node`, watching `events` (subscribed
/// before the connection could have come up).
async fn connected(node: &LabNode, events: &mut broadcast::Receiver<PeerEvent>, peer: PeerId) {
    let wait = async {
        while !node.node.connected_peers().contains(&peer) {
            match events.recv().await {
                Ok(PeerEvent::Connected { peer: p, .. }) if p == peer => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the node stopped"),
            }
        }
    };
    tokio::time::timeout(ROUND_LIMIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no connection to {} within {ROUND_LIMIT:?}", peer.short()));
}

/// One round: A up, then B; milliseconds from B built to both connected. With `mdns`
/// they find each other on the link; without, B dials A's address.
async fn round(link: &Link, mdns: bool) -> f64 {
    let a = LabNode::start(&link.ns(1), move || P2PNode::builder().mdns(mdns)).await;
    let mut a_events = a.node.peer_events();
    let b = LabNode::start(&link.ns(2), move || P2PNode::builder().mdns(mdns)).await;
    let built = Instant::now();
    let mut b_events = b.node.peer_events();
    let (pa, pb) = (a.node.peer_id(), b.node.peer_id());
    if !mdns {
        let port = a.node.local_addr().expect("bound").port();
        let addr = lab::sock(&Link::ip(1), port);
        b.run(move |n| async move { n.connect(pa, &[addr]).await })
            .await
            .expect("B dials A on the link");
    }
    connected(&a, &mut a_events, pb).await;
    connected(&b, &mut b_events, pa).await;
    let ms = built.elapsed().as_secs_f64() * 1e3;
    a.stop().await;
    b.stop().await;
    ms
}

async fn run(suite: &mut Suite) {
    let link = Link::new(2);
    let rounds = suite.scale(20, 2);
    let (mut discover, mut dial) = (Vec::new(), Vec::new());
    // Interleaved, so both see the same machine.
    for i in 0..rounds {
        discover.push(round(&link, true).await);
        dial.push(round(&link, false).await);
        eprintln!(
            "  round {i}: discovered {:.1} ms, dialled {:.1} ms",
            discover[i], dial[i]
        );
    }
    let dial_p50 = percentile(&mut dial, 50.0);
    suite.record_vs(
        "lan.discover_ms_p50",
        percentile(&mut discover, 50.0),
        "ms",
        Better::Lower,
        "lan.dial_ms_p50",
        dial_p50,
    );
    suite.record(
        "lan.discover_ms_p99",
        percentile(&mut discover, 99.0),
        "ms",
        Better::Lower,
    );
    suite.record("lan.dial_ms_p50", dial_p50, "ms", Better::Lower);
}

fn main() -> ExitCode {
    let (mut suite, rt) = match lab::bench_start("lan", "it builds network namespaces on a bridge")
    {
        Ok(started) => started,
        Err(code) => return code,
    };
    rt.block_on(run(&mut suite));
    suite.finish();
    ExitCode::SUCCESS
}
