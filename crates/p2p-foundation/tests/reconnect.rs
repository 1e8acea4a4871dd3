//! Reconnection (PRD R1): a peer restarts with the same identity on a new port; the node
//! that kept it sees `Disconnected`, then `Reconnected` at the new address, and the DHT
//! routing table and the gossip mesh work with the new instance.

use std::net::SocketAddr;
use std::time::Duration;

use p2p_foundation::{Keypair, P2PNode, PeerEvent, PeerId};

/// Hang guard only: every wait below is on an event; this bounds a broken run.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn quick_transport() -> p2p_foundation::transport::Config {
    let mut c = p2p_foundation::transport::Config::default();
    // A dial to the old, dead port fails in 2 s rather than the default 10.
    c.handshake_timeout = Duration::from_secs(2);
    c
}

async fn node(keypair: Keypair, seed: Option<(PeerId, SocketAddr)>) -> P2PNode {
    let mut b = P2PNode::builder()
        .keypair(keypair)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .transport_config(quick_transport());
    if let Some(seed) = seed {
        b = b.bootstrap(vec![seed]);
    }
    b.build().await.expect("node builds")
}

fn contact(n: &P2PNode) -> (PeerId, SocketAddr) {
    (n.peer_id(), n.local_addr().expect("addr"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reconnected_at_its_new_port_and_gossip_and_the_dht_heal() {
    tokio::time::timeout(HANG_GUARD, async {
        let seed = node(Keypair::generate(), None).await;
        let p_key = Keypair::generate();
        let p = node(p_key.clone(), Some(contact(&seed))).await;
        let (p_id, old_addr) = contact(&p);
        let b = node(Keypair::generate(), Some(contact(&seed))).await;
        b.connect(p_id, &[old_addr]).await.expect("b keeps p");
        let mut events = b.peer_events();
        let mut news = b.subscribe("heal").await.expect("subscribe");

        p.shutdown().await;
        loop {
            if let PeerEvent::Disconnected { peer, .. } = events.recv().await.expect("event") {
                if peer == p_id {
                    break;
                }
            }
        }
        // Same identity, new port, back through the seed.
        let p2 = node(p_key, Some(contact(&seed))).await;
        let new_addr = p2.local_addr().expect("addr");
        assert_ne!(new_addr.port(), old_addr.port());
        let (addr, after) = loop {
            match events.recv().await.expect("event") {
                PeerEvent::Reconnected { peer, addr, after } if peer == p_id => {
                    break (addr, after);
                }
                _ => {}
            }
        };
        assert_eq!(addr, new_addr, "reconnected at the new port");
        assert!(b.connected_peers().contains(&p_id));
        println!("reconnect.restart_to_reconnected_ms {}", after.as_millis());

        // Gossip heals: the new instance's message reaches b's old subscription.
        p2.wait_for_topic_peers("heal", 1).await.expect("mesh");
        p2.publish("heal", b"back again".to_vec())
            .await
            .expect("publish");
        let msg = news.recv().await.expect("message");
        assert_eq!(msg.data(), b"back again");
        assert_eq!(msg.author(), p_id);

        // The DHT heals: b's routing table has p at its new address.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let table = b.dht().node().routing_snapshot().await.expect("dht");
            if table
                .contacts
                .iter()
                .any(|c| c.peer() == p_id && c.addr() == new_addr)
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "b's routing table never learned p's new address: {:?}",
                table.contacts
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for n in [b, p2, seed] {
            n.shutdown().await;
        }
    })
    .await
    .expect("hang guard");
}
