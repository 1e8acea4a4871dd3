//! 10,000 simulated nodes, no churn: every lookup returns exactly the true k closest (checked
//! by brute force), every stored value is found, lookups take few hops.

mod common;

use std::time::{Duration, Instant};

use common::{Net, true_closest};
use p2p_foundation_dht::{Config, QueryResult, Record};
use p2p_foundation_identity::{Key, Signed};
use p2p_foundation_sim::NodeId;

const NODES: usize = 10_000;
const LOOKUPS: usize = 10_000;
const VALUES: usize = 1_000;
const SEED: u64 = 4;

#[test]
fn ten_thousand_nodes_exact_lookups_and_values() {
    let wall = Instant::now();
    // Joins do a self-lookup only (no bucket refreshes): cheaper to simulate, and the harder
    // case for routing, as far buckets fill only from traffic.
    let config = Config::default().with_refresh_on_bootstrap(false);
    let k = config.k;
    let mut net = Net::new(SEED, config);
    net.grow(NODES, Duration::from_millis(20), Duration::from_secs(30));
    eprintln!(
        "built {NODES} nodes in {:?} wall, {} messages; mean table {:.1}",
        wall.elapsed(),
        net.sim.stats().sent,
        net.sim
            .nodes()
            .iter()
            .map(|n| n.core.routing_table_len())
            .sum::<usize>() as f64
            / NODES as f64
    );

    // 10,000 random lookups from random nodes, in batches of 1,000 started together.
    let keys = net.online_keys();
    let sent_before = net.sim.stats().sent;
    let t = Instant::now();
    let mut exact = 0;
    let mut hops = Vec::new();
    let mut requests = 0u64;
    for _ in 0..LOOKUPS / 1000 {
        let mut batch = Vec::new();
        for _ in 0..1000 {
            let from = NodeId(net.random_below(NODES) as u32);
            let target = net.random_key();
            let q = net.command(from, |dht, now, _| dht.find_node(now, target));
            batch.push((from, q, target));
        }
        let wanted: Vec<_> = batch.iter().map(|(n, q, _)| (*n, *q)).collect();
        let done = net.wait_for(&wanted, Duration::from_secs(120));
        assert_eq!(done.len(), wanted.len(), "every lookup finishes");
        for (from, q, target) in batch {
            let (QueryResult::FindNode { closest }, stats) = &done[&(from, q)] else {
                panic!("wrong result kind");
            };
            let got: Vec<NodeId> = closest.iter().map(|c| common::node_of(c.addr())).collect();
            if got == true_closest(&keys, &target, k, from) {
                exact += 1;
            }
            hops.push(stats.hops);
            requests += u64::from(stats.requests);
        }
    }
    hops.sort_unstable();
    let p50 = hops[hops.len() / 2];
    let histogram: Vec<usize> = (0..=8)
        .map(|h| hops.iter().filter(|x| **x == h).count())
        .collect();
    eprintln!("hops histogram (0..=8): {histogram:?}");
    eprintln!(
        "{LOOKUPS} lookups in {:?} wall: {exact} exact, hops p50 {p50} p99 {}, {:.1} requests per lookup ({} messages)",
        t.elapsed(),
        hops[hops.len() * 99 / 100],
        requests as f64 / LOOKUPS as f64,
        net.sim.stats().sent - sent_before,
    );
    assert_eq!(
        exact, LOOKUPS,
        "every lookup returns exactly the true k closest"
    );
    assert!(p50 <= 4, "lookup hops p50 {p50}");

    // 1,000 values stored from random nodes, then fetched from other random nodes.
    let t = Instant::now();
    let mut puts = Vec::new();
    let mut names = Vec::new();
    for v in 0..VALUES {
        let publisher = net.random_below(NODES);
        let keypair = common::keypair(SEED, publisher as u64);
        let key = Key::for_record(format!("value/{v}").as_bytes());
        let expires = net.sim.system_time() + Duration::from_secs(3600);
        let record =
            Signed::sign(&keypair, Record::new(key, format!("v{v}")), 1, expires).expect("sign");
        let id = NodeId(publisher as u32);
        let q = net.command(id, |dht, now, _| dht.put_record(now, record).expect("put"));
        puts.push((id, q));
        names.push(key);
    }
    let done = net.wait_for(&puts, Duration::from_secs(120));
    assert_eq!(done.len(), VALUES);
    let stored: Vec<usize> = done
        .values()
        .map(|(r, _)| match r {
            QueryResult::PutRecord { stored } => *stored,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(stored.iter().all(|s| *s == k), "every put reaches k nodes");
    let mut gets = Vec::new();
    for (v, key) in names.iter().enumerate() {
        let from = NodeId(net.random_below(NODES) as u32);
        let key = *key;
        let q = net.command(from, |dht, now, _| dht.get_record(now, key));
        gets.push((from, q, v));
    }
    let wanted: Vec<_> = gets.iter().map(|(n, q, _)| (*n, *q)).collect();
    let done = net.wait_for(&wanted, Duration::from_secs(120));
    let mut found = 0;
    for (from, q, v) in gets {
        if let Some((QueryResult::GetRecord { records }, _)) = done.get(&(from, q)) {
            if records.first().map(|r| r.payload().value.clone())
                == Some(format!("v{v}").into_bytes())
            {
                found += 1;
            }
        }
    }
    eprintln!("{VALUES} values: {found} found, in {:?} wall", t.elapsed());
    assert_eq!(found, VALUES, "every stored value is found");
}
