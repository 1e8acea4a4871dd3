//! `cargo xtask bench dht`: the DHT in simulation (10,000 nodes) and on loopback (200 nodes).
//!
//! - `sim10k.lookup_hops_p50` / `p99`, `sim10k.requests_per_lookup`, `sim10k.exact_pct`:
//!   random lookups on a 10,000-node network without churn, checked by brute force.
//! - `sim10k.values_found_pct`, `sim10k.churn_value_found_pct`: values found before and
//!   after 25 % of the nodes left and as many joined.
//! - `sim10k.collude_success_pct`: lookups near 20 colluding nodes that answer only with each
//!   other, with 4 disjoint paths, beside the same lookups with plain Kademlia (1 path).
//! - `sim10k.build_wall_s`, `sim10k.scenario_wall_s`, `sim10k.rss_per_node_bytes`.
//! - `sim10k_refresh.*`: a network built with the default configuration (joins refresh
//!   every bucket that is not full), for comparison with the self-lookup-only joins above.
//! - `loopback200.lookup_ms_p50` / `p99`, `loopback200.get_ms_p50`: real UDP sockets on
//!   127.0.0.1 through the tokio driver.
#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{Net, fast_distance, true_closest};
use p2p_foundation_benchkit::{Better, Suite, percentile, rss_bytes};
use p2p_foundation_dht::{Config, Contact, DhtNode, QueryResult, Record, UdpTransport};
use p2p_foundation_identity::{Key, Keypair, Signed};
use p2p_foundation_sim::NodeId;

fn main() {
    let mut suite = Suite::new("dht");
    simulation(&mut suite);
    default_join(&mut suite);
    loopback(&mut suite);
    suite.finish();
}

fn values(net: &mut Net, seed: u64, prefix: &str, count: usize) -> Vec<Key> {
    let mut puts = Vec::new();
    let mut keys = Vec::new();
    for v in 0..count {
        let publisher = net.random_online(None).expect("online");
        let kp = common::keypair(seed, u64::from(publisher.0));
        let key = Key::for_record(format!("{prefix}/{v}").as_bytes());
        let expires = net.sim.system_time() + Duration::from_secs(24 * 3600);
        let record =
            Signed::sign(&kp, Record::new(key, format!("v{v}")), 1, expires).expect("sign");
        puts.push((
            publisher,
            net.command(publisher, |d, now, _| {
                d.put_record(now, record).expect("put")
            }),
        ));
        keys.push(key);
    }
    net.wait_for(&puts, Duration::from_secs(600));
    keys
}

fn found_pct(net: &mut Net, keys: &[Key]) -> f64 {
    let mut gets = Vec::new();
    for (v, key) in keys.iter().enumerate() {
        let from = net.random_online(None).expect("online");
        let key = *key;
        gets.push((
            from,
            net.command(from, |d, now, _| d.get_record(now, key)),
            v,
        ));
    }
    let wanted: Vec<_> = gets.iter().map(|(n, q, _)| (*n, *q)).collect();
    let done = net.wait_for(&wanted, Duration::from_secs(600));
    let ok = gets
        .iter()
        .filter(|(n, q, v)| match done.get(&(*n, *q)) {
            Some((QueryResult::GetRecord { records }, _)) => records
                .first()
                .is_some_and(|r| r.payload().value == format!("v{v}").into_bytes()),
            _ => false,
        })
        .count();
    100.0 * ok as f64 / keys.len() as f64
}

fn simulation(suite: &mut Suite) {
    let nodes: usize = suite.scale(10_000, 500);
    let lookups: usize = suite.scale(10_000, 200);
    let value_count: usize = suite.scale(1_000, 50);
    let seed = 4;
    let k = 20;
    let scenario = Instant::now();
    let rss_before = rss_bytes().unwrap_or(0);
    let mut net = Net::new(seed, Config::default().with_refresh_on_bootstrap(false));
    net.grow(nodes, Duration::from_millis(20), Duration::from_secs(30));
    let build = scenario.elapsed().as_secs_f64();
    let rss_after = rss_bytes().unwrap_or(0);
    suite.record("sim10k.build_wall_s", build, "s", Better::Lower);
    suite.record(
        "sim10k.rss_per_node_bytes",
        rss_after.saturating_sub(rss_before) as f64 / nodes as f64,
        "B",
        Better::Lower,
    );

    let keys = net.online_keys();
    let mut hops = Vec::new();
    let mut requests = 0u64;
    let mut exact = 0usize;
    let mut remaining = lookups;
    while remaining > 0 {
        let n = remaining.min(1000);
        remaining -= n;
        let mut batch = Vec::new();
        for _ in 0..n {
            let from = NodeId(net.random_below(nodes) as u32);
            let target = net.random_key();
            batch.push((
                from,
                net.command(from, |d, now, _| d.find_node(now, target)),
                target,
            ));
        }
        let wanted: Vec<_> = batch.iter().map(|(a, b, _)| (*a, *b)).collect();
        let done = net.wait_for(&wanted, Duration::from_secs(300));
        for (from, q, target) in batch {
            if let Some((QueryResult::FindNode { closest }, stats)) = done.get(&(from, q)) {
                let got: Vec<NodeId> = closest.iter().map(|c| common::node_of(c.addr())).collect();
                if got == true_closest(&keys, &target, k, from) {
                    exact += 1;
                }
                hops.push(f64::from(stats.hops));
                requests += u64::from(stats.requests);
            }
        }
    }
    suite.record(
        "sim10k.exact_pct",
        100.0 * exact as f64 / lookups as f64,
        "%",
        Better::Higher,
    );
    suite.record(
        "sim10k.lookup_hops_p50",
        percentile(&mut hops, 50.0),
        "hops",
        Better::Lower,
    );
    suite.record(
        "sim10k.lookup_hops_p99",
        percentile(&mut hops, 99.0),
        "hops",
        Better::Lower,
    );
    suite.record(
        "sim10k.requests_per_lookup",
        requests as f64 / lookups as f64,
        "requests",
        Better::Lower,
    );

    let keys = values(&mut net, seed, "value", value_count);
    suite.record(
        "sim10k.values_found_pct",
        found_pct(&mut net, &keys),
        "%",
        Better::Higher,
    );
    for _ in 0..100 {
        for _ in 0..nodes / 400 {
            let id = net.random_online(None).expect("online");
            net.sim.remove_node(id);
        }
        for _ in 0..nodes / 400 {
            net.join_one();
        }
        net.sim.run_for(Duration::from_secs(6));
    }
    suite.record(
        "sim10k.churn_value_found_pct",
        found_pct(&mut net, &keys),
        "%",
        Better::Higher,
    );
    suite.record(
        "sim10k.scenario_wall_s",
        scenario.elapsed().as_secs_f64(),
        "s",
        Better::Lower,
    );
    suite.record(
        "sim10k.messages",
        net.sim.stats().sent as f64,
        "messages",
        Better::Lower,
    );

    // Colluders: a fresh network with 20 ground keys around a centre.
    let mut net = Net::new(20, Config::default().with_refresh_on_bootstrap(false));
    net.grow(nodes, Duration::from_millis(20), Duration::from_secs(10));
    let honest = net.online_keys();
    let centre = net.random_key();
    let mut pool: Vec<(u64, Key)> = (0..suite.scale(20_000u64, 2_000))
        .map(|i| {
            (
                1_000_000 + i,
                common::keypair(20, 1_000_000 + i).peer_id().kad_key(),
            )
        })
        .collect();
    pool.sort_by_key(|(_, k)| fast_distance(k, &centre));
    pool.truncate(20);
    let first = net.sim.node_count() as u32;
    let contacts: Vec<Contact> = pool
        .iter()
        .enumerate()
        .map(|(i, (index, _))| {
            Contact::new(
                common::keypair(20, *index).peer_id(),
                common::addr_of(NodeId(first + i as u32)),
            )
        })
        .collect();
    let shared = Rc::new(contacts);
    for (index, _) in &pool {
        let id = net.add(*index, Some(shared.clone()));
        let via = net.random_online(Some(id)).expect("online");
        net.bootstrap(id, via);
        net.sim.run_for(Duration::from_millis(200));
    }
    net.sim.run_for(Duration::from_secs(30));
    let pct = |d: usize, net: &mut Net| {
        let n = suite.scale(1_000, 100);
        let mut batch = Vec::new();
        for _ in 0..n {
            let from = net.random_online(None).expect("online");
            let mut bytes = *net.random_key().as_bytes();
            bytes[0] = centre.as_bytes()[0];
            bytes[1] = (centre.as_bytes()[1] & 0xc0) | (bytes[1] & 0x3f);
            let target = Key::from_bytes(bytes);
            batch.push((
                from,
                net.command(from, |dht, now, _| {
                    dht.set_disjoint_paths(d);
                    dht.find_node(now, target)
                }),
                target,
            ));
        }
        let wanted: Vec<_> = batch.iter().map(|(a, b, _)| (*a, *b)).collect();
        let done = net.wait_for(&wanted, Duration::from_secs(300));
        let ok = batch
            .iter()
            .filter(|(from, q, target)| {
                let best = honest
                    .iter()
                    .filter(|(_, id)| id != from)
                    .min_by_key(|(k, _)| fast_distance(k, target))
                    .map(|(_, id)| *id);
                matches!(done.get(&(*from, *q)), Some((QueryResult::FindNode { closest }, _))
                    if closest.iter().any(|c| Some(common::node_of(c.addr())) == best))
            })
            .count();
        100.0 * ok as f64 / n as f64
    };
    let plain = pct(1, &mut net);
    let disjoint = pct(4, &mut net);
    suite.record_vs(
        "sim10k.collude_success_pct",
        disjoint,
        "%",
        Better::Higher,
        "plain_kademlia_d1.collude_success_pct",
        plain,
    );
}

/// The same network built with the default configuration: joins refresh every bucket that
/// is not full (about 15x the join traffic of a self-lookup-only join).
fn default_join(suite: &mut Suite) {
    let nodes: usize = suite.scale(10_000, 300);
    let lookups: usize = suite.scale(2_000, 100);
    let start = Instant::now();
    let mut net = Net::new(5, Config::default());
    net.grow(nodes, Duration::from_millis(20), Duration::from_secs(30));
    suite.record(
        "sim10k_refresh.build_wall_s",
        start.elapsed().as_secs_f64(),
        "s",
        Better::Lower,
    );
    suite.record(
        "sim10k_refresh.join_messages",
        net.sim.stats().sent as f64 / nodes as f64,
        "messages/node",
        Better::Lower,
    );
    let keys = net.online_keys();
    let mut batch = Vec::new();
    for _ in 0..lookups {
        let from = NodeId(net.random_below(nodes) as u32);
        let target = net.random_key();
        batch.push((
            from,
            net.command(from, |d, now, _| d.find_node(now, target)),
            target,
        ));
    }
    let wanted: Vec<_> = batch.iter().map(|(a, b, _)| (*a, *b)).collect();
    let done = net.wait_for(&wanted, Duration::from_secs(300));
    let mut hops = Vec::new();
    let mut requests = 0u64;
    let mut exact = 0;
    for (from, q, target) in batch {
        if let Some((QueryResult::FindNode { closest }, stats)) = done.get(&(from, q)) {
            let got: Vec<NodeId> = closest.iter().map(|c| common::node_of(c.addr())).collect();
            if got == true_closest(&keys, &target, 20, from) {
                exact += 1;
            }
            hops.push(f64::from(stats.hops));
            requests += u64::from(stats.requests);
        }
    }
    suite.record(
        "sim10k_refresh.exact_pct",
        100.0 * exact as f64 / lookups as f64,
        "%",
        Better::Higher,
    );
    suite.record(
        "sim10k_refresh.lookup_hops_p50",
        percentile(&mut hops, 50.0),
        "hops",
        Better::Lower,
    );
    suite.record(
        "sim10k_refresh.requests_per_lookup",
        requests as f64 / lookups as f64,
        "requests",
        Better::Lower,
    );
}

fn loopback(suite: &mut Suite) {
    let n: u32 = suite.scale(200, 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let keypair = |i: u32| {
            let mut s = [9u8; 32];
            s[..4].copy_from_slice(&i.to_be_bytes());
            Keypair::from_secret_bytes(s)
        };
        let mut nodes = Vec::new();
        let mut transports = Vec::new();
        for i in 0..n {
            let kp = keypair(i);
            let peer = kp.peer_id();
            let (t, inbound) = UdpTransport::bind(SocketAddr::from(([127, 0, 0, 1], 0)), kp)
                .await
                .expect("bind");
            let c = Contact::new(peer, t.local_addr());
            nodes.push((
                DhtNode::spawn(
                    peer,
                    Config::default(),
                    u64::from(i),
                    Arc::clone(&t),
                    inbound,
                ),
                c,
            ));
            transports.push(t);
        }
        for i in 1..n as usize {
            let via = nodes[(i * 7919) % i].1;
            nodes[i].0.bootstrap(vec![via]).await.expect("bootstrap");
        }
        let mut lookup_ms = Vec::new();
        for i in 0..suite.scale(500u32, 20) {
            let node = &nodes[(i * 37 % n) as usize].0;
            let t = Instant::now();
            node.find_node(Key::for_record(&i.to_be_bytes()))
                .await
                .expect("lookup");
            lookup_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let expires = SystemTime::now() + Duration::from_secs(600);
        let mut put_ms = Vec::new();
        let mut get_ms = Vec::new();
        for v in 0..suite.scale(100u32, 10) {
            let p = (v * 13 % n) as usize;
            let key = Key::for_record(format!("bench/{v}").as_bytes());
            let record =
                Signed::sign(&keypair(p as u32), Record::new(key, "x"), 1, expires).expect("sign");
            let t = Instant::now();
            nodes[p].0.put_record(record).await.expect("put");
            put_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let found = nodes[(p + 1) % n as usize]
                .0
                .get_record(key)
                .await
                .expect("get");
            get_ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(!found.is_empty());
        }
        suite.record(
            "loopback200.lookup_ms_p50",
            percentile(&mut lookup_ms, 50.0),
            "ms",
            Better::Lower,
        );
        suite.record(
            "loopback200.lookup_ms_p99",
            percentile(&mut lookup_ms, 99.0),
            "ms",
            Better::Lower,
        );
        suite.record(
            "loopback200.put_ms_p50",
            percentile(&mut put_ms, 50.0),
            "ms",
            Better::Lower,
        );
        suite.record(
            "loopback200.get_ms_p50",
            percentile(&mut get_ms, 50.0),
            "ms",
            Better::Lower,
        );
    });
}
