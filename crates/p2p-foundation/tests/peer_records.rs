//! Signed peer records on loopback with real QUIC: a node publishes where it can be
//! reached under a key derived from its PeerId, any node finds it by the PeerId alone, and
//! a stranger can neither forge it nor keep the owner out of its key.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use p2p_foundation::dht::Record;
use p2p_foundation::identity::Signed;
use p2p_foundation::peer_record::{PeerRecord, Reach, peer_record_key};
use p2p_foundation::{Keypair, P2PNode, PeerId};

/// Hang guard only: every wait below is on an event or a bounded condition.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn guard<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .expect("hang guard");
}

async fn node(seeds: Vec<(PeerId, SocketAddr)>, publish: bool) -> P2PNode {
    P2PNode::builder()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .bootstrap(seeds)
        .peer_records(publish)
        .build()
        .await
        .expect("node builds")
}

fn contact(n: &P2PNode) -> (PeerId, SocketAddr) {
    (n.peer_id(), n.local_addr().expect("bound"))
}

/// Waits (at most 10 s, woken by peer events) until `node` has stored its peer record.
async fn published(node: &P2PNode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = node.peer_events();
    while node.stats().peer_records_published == 0 {
        assert!(
            Instant::now() < deadline,
            "no peer record published: {:?}",
            node.stats()
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
    }
}

/// A record signed by `signer` under `owner`'s peer-record key.
fn squat(signer: &Keypair, owner: &PeerId, at: SocketAddr) -> Signed<Record> {
    let value = PeerRecord::new([Reach::Direct(at)]).encode();
    Signed::sign(
        signer,
        Record::new(peer_record_key(owner), value),
        u64::MAX / 2,
        SystemTime::now() + Duration::from_secs(600),
    )
    .expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_record_is_found_by_peer_id_and_strangers_cannot_forge_or_squat_it() {
    guard(async {
        let hub = node(vec![], true).await;
        let a = node(vec![contact(&hub)], true).await;
        let quiet = node(vec![contact(&hub)], false).await;
        let c = node(vec![contact(&hub)], true).await;
        published(&a).await;
        let a_addr = a.local_addr().expect("bound");

        // C, which never dialled A, finds A's addresses by its PeerId.
        let record = c
            .peer_record(a.peer_id())
            .await
            .expect("lookup")
            .expect("A's record is in the DHT");
        assert!(record.dial_addrs().contains(&a_addr), "{record:?}");
        assert_eq!(c.stats().peer_records_found, 1);

        // A stranger signs a record under A's key: refused where A's record lives, and
        // ignored by lookups wherever it got stored (only A's signature counts).
        let stranger = Keypair::generate();
        let bogus: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let _ = c
            .dht()
            .put_record(squat(&stranger, &a.peer_id(), bogus))
            .await;
        let record = c
            .peer_record(a.peer_id())
            .await
            .expect("lookup")
            .expect("A's record");
        assert!(record.dial_addrs().contains(&a_addr), "{record:?}");
        assert!(!record.dial_addrs().contains(&bogus), "{record:?}");

        // A node that publishes nothing: a squatter's record under its key is stored (no
        // owner's record to conflict with) but no lookup takes it for the node's own.
        let stored = c
            .dht()
            .put_record(squat(&stranger, &quiet.peer_id(), bogus))
            .await
            .expect("the squatter's record is stored");
        assert!(stored > 0);
        assert_eq!(c.peer_record(quiet.peer_id()).await.expect("lookup"), None);
        assert_eq!(quiet.stats().peer_records_published, 0);

        // Junk under a peer-record key is refused by every node's validator.
        let junk = Signed::sign(
            &stranger,
            Record::new(peer_record_key(&stranger.peer_id()), b"junk".to_vec()),
            1,
            SystemTime::now() + Duration::from_secs(600),
        )
        .expect("sign");
        assert!(c.dht().put_record(junk).await.is_err());

        for n in [a, quiet, c, hub] {
            n.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_takes_its_key_back_from_a_squatter() {
    guard(async {
        let hub = node(vec![], true).await;
        let c = node(vec![contact(&hub)], true).await;
        // The squatter gets there before the owner exists.
        let owner = Keypair::generate();
        let bogus: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let stored = c
            .dht()
            .put_record(squat(&Keypair::generate(), &owner.peer_id(), bogus))
            .await
            .expect("stored");
        assert!(stored > 0);
        // The owner starts and publishes: its record replaces the squatter's.
        let a = P2PNode::builder()
            .keypair(owner)
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .bootstrap(vec![contact(&hub)])
            .build()
            .await
            .expect("owner");
        published(&a).await;
        // With the owner gone, only the nodes that held the squatter's record can answer.
        let (a_id, a_addr) = contact(&a);
        a.shutdown().await;
        let record = c
            .peer_record(a_id)
            .await
            .expect("lookup")
            .expect("the owner's record replaced the squatter's");
        assert_eq!(record.dial_addrs(), vec![a_addr]);
        for n in [c, hub] {
            n.shutdown().await;
        }
    })
    .await;
}
