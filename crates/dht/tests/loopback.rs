//! Real sockets through the driver: 200 nodes on 127.0.0.1 over the UDP transport, and a
//! small network over the in-memory transport.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use p2p_foundation_dht::{
    Config, Contact, DhtNode, MemoryNetwork, ProviderRecord, Record, RoutingSnapshot, UdpTransport,
};
use p2p_foundation_identity::{Key, Keypair, Signed};

/// Hang guard only: the test waits on results, never on time.
const GUARD: Duration = Duration::from_secs(300);

fn keypair(i: u32) -> Keypair {
    let mut s = [7u8; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    Keypair::from_secret_bytes(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_udp_nodes_put_and_get() {
    tokio::time::timeout(GUARD, async {
        const N: u32 = 200;
        let mut nodes = Vec::new();
        let mut transports = Vec::new();
        for i in 0..N {
            let kp = keypair(i);
            let peer = kp.peer_id();
            let (transport, inbound) =
                UdpTransport::bind(SocketAddr::from(([127, 0, 0, 1], 0)), kp)
                    .await
                    .unwrap();
            let addr = transport.local_addr();
            let node = DhtNode::spawn(
                peer,
                Config::default(),
                u64::from(i),
                Arc::clone(&transport),
                inbound,
            );
            nodes.push((node, Contact::new(peer, addr)));
            transports.push(transport);
        }
        // Each node joins through a node that joined before it.
        for i in 1..N as usize {
            let via = nodes[(i * 7919) % i].1;
            let table = nodes[i].0.bootstrap(vec![via]).await.unwrap();
            assert!(table >= 1);
        }
        // 50 values put from node i, fetched from another node.
        let expires = SystemTime::now() + Duration::from_secs(600);
        for v in 0..50u32 {
            let publisher = (v * 13 % N) as usize;
            let key = Key::for_record(format!("loop/{v}").as_bytes());
            let record = Signed::sign(
                &keypair(publisher as u32),
                Record::new(key, format!("value {v}")),
                1,
                expires,
            )
            .unwrap();
            let stored = nodes[publisher].0.put_record(record).await.unwrap();
            assert!(stored >= 15, "value {v} stored on {stored} nodes");
        }
        for v in 0..50u32 {
            let reader = ((v * 31 + 100) % N) as usize;
            let key = Key::for_record(format!("loop/{v}").as_bytes());
            let records = nodes[reader].0.get_record(key).await.unwrap();
            assert_eq!(
                records.first().map(|r| r.payload().value.clone()),
                Some(format!("value {v}").into_bytes())
            );
        }
        // Lookups return k nodes.
        for i in 0..20u32 {
            let (closest, stats) = nodes[(i * 9 % N) as usize]
                .0
                .find_node(Key::for_record(&i.to_be_bytes()))
                .await
                .unwrap();
            assert_eq!(closest.len(), 20);
            assert!(stats.requests >= 3);
        }
        // Nothing forged or malformed arrived on the wire.
        for t in &transports {
            let s = t.stats();
            assert_eq!(s.bad_signature + s.malformed + s.misaddressed, 0, "{s:?}");
        }
    })
    .await
    .expect("hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_network_providers_and_snapshot_reload() {
    tokio::time::timeout(GUARD, async {
        let net = MemoryNetwork::new();
        let mut nodes = Vec::new();
        for i in 0..40u32 {
            let peer = keypair(1000 + i).peer_id();
            let (transport, addr, inbound) = net.join(peer);
            nodes.push((
                DhtNode::spawn(peer, Config::default(), u64::from(i), transport, inbound),
                Contact::new(peer, addr),
            ));
        }
        for i in 1..nodes.len() {
            nodes[i].0.bootstrap(vec![nodes[0].1]).await.unwrap();
        }
        let key = Key::for_record(b"tool/summarise");
        let expires = SystemTime::now() + Duration::from_secs(600);
        for i in [3usize, 17, 29] {
            let record = ProviderRecord::new(key, vec![nodes[i].1.addr()]);
            let signed = Signed::sign(&keypair(1000 + i as u32), record, 1, expires).unwrap();
            assert!(nodes[i].0.add_provider(signed).await.unwrap() >= 15);
        }
        let providers = nodes[11].0.get_providers(key).await.unwrap();
        let mut signers: Vec<_> = providers.iter().map(|p| p.signer()).collect();
        signers.sort();
        let mut want: Vec<_> = [3u32, 17, 29]
            .iter()
            .map(|i| keypair(1000 + i).peer_id())
            .collect();
        want.sort();
        assert_eq!(signers, want);

        // Persist a routing table, reload it into a fresh node that has no other seed.
        let snapshot = nodes[5].0.routing_snapshot().await.unwrap();
        let bytes = snapshot.encode().unwrap();
        let reloaded = RoutingSnapshot::decode(&bytes).unwrap();
        assert_eq!(reloaded, snapshot);
        let peer = keypair(5000).peer_id();
        let (transport, _addr, inbound) = net.join(peer);
        let fresh = DhtNode::spawn(peer, Config::default(), 99, transport, inbound);
        let table = fresh.bootstrap(reloaded.contacts).await.unwrap();
        assert!(table >= 20, "{table}");
        assert_eq!(fresh.get_providers(key).await.unwrap().len(), 3);
    })
    .await
    .expect("hang guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_replays_and_forgeries_are_dropped() {
    use p2p_foundation_dht::Message;
    use p2p_foundation_dht::driver::encode_udp_datagram;
    tokio::time::timeout(GUARD, async {
        let b = keypair(9001);
        let (transport, mut inbound) =
            UdpTransport::bind(SocketAddr::from(([127, 0, 0, 1], 0)), b.clone())
                .await
                .unwrap();
        let a = keypair(9002);
        let frame = Message::Request {
            id: p2p_foundation_dht::RequestId(1),
            body: p2p_foundation_dht::Request::Ping,
        }
        .encode(1024)
        .unwrap();
        let datagram = encode_udp_datagram(&a, b.peer_id(), 42, false, frame).unwrap();
        let misaddressed =
            encode_udp_datagram(&a, keypair(9003).peer_id(), 43, false, vec![1]).unwrap();
        let mut forged = datagram.clone();
        let n = forged.len();
        forged[n - 1] ^= 1;
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for d in [&datagram, &datagram, &misaddressed, &forged, &datagram] {
            sock.send_to(d, transport.local_addr()).await.unwrap();
        }
        let first = inbound.recv().await.unwrap();
        assert_eq!(first.from, a.peer_id());
        // Wait (bounded by the guard) until all five datagrams were processed.
        while transport.stats().received < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = transport.stats();
        assert_eq!(
            (s.replayed, s.misaddressed, s.bad_signature),
            (2, 1, 1),
            "{s:?}"
        );
        assert!(inbound.try_recv().is_err(), "only the first copy is served");
    })
    .await
    .expect("hang guard");
}
