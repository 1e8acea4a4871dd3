//! Churn: values stored before a quarter of the network leaves (and as many nodes join) are
//! still found; replication keeps a value alive while all its original holders leave;
//! expired records disappear.

mod common;

use std::time::Duration;

use common::Net;
use p2p_foundation_dht::{Config, QueryResult, Record};
use p2p_foundation_identity::{Key, Signed};
use p2p_foundation_sim::NodeId;

/// Stores `count` values from random nodes; returns their keys (value of key i is `v{i}`).
fn store_values(net: &mut Net, seed: u64, prefix: &str, count: usize, ttl: Duration) -> Vec<Key> {
    let mut puts = Vec::new();
    let mut keys = Vec::new();
    for v in 0..count {
        let publisher = net.random_online(None).expect("online node");
        let keypair = common::keypair(seed, u64::from(publisher.0));
        let key = Key::for_record(format!("{prefix}/{v}").as_bytes());
        let expires = net.sim.system_time() + ttl;
        let record =
            Signed::sign(&keypair, Record::new(key, format!("v{v}")), 1, expires).expect("sign");
        let q = net.command(publisher, |dht, now, _| {
            dht.put_record(now, record).expect("put")
        });
        puts.push((publisher, q));
        keys.push(key);
    }
    let done = net.wait_for(&puts, Duration::from_secs(300));
    assert_eq!(done.len(), count, "every put finishes");
    keys
}

/// Looks every key up from a random online node; returns how many were found with the
/// right value.
fn count_found(net: &mut Net, keys: &[Key]) -> usize {
    let mut gets = Vec::new();
    for (v, key) in keys.iter().enumerate() {
        let from = net.random_online(None).expect("online node");
        let key = *key;
        let q = net.command(from, |dht, now, _| dht.get_record(now, key));
        gets.push((from, q, v));
    }
    let wanted: Vec<_> = gets.iter().map(|(n, q, _)| (*n, *q)).collect();
    let done = net.wait_for(&wanted, Duration::from_secs(600));
    gets.iter()
        .filter(|(from, q, v)| match done.get(&(*from, *q)) {
            Some((QueryResult::GetRecord { records }, _)) => records
                .first()
                .is_some_and(|r| r.payload().value == format!("v{v}").into_bytes()),
            _ => false,
        })
        .count()
}

#[test]
fn ten_thousand_nodes_quarter_churn_keeps_values() {
    const NODES: usize = 10_000;
    const VALUES: usize = 1_000;
    const SEED: u64 = 25;
    let config = Config::default().with_refresh_on_bootstrap(false);
    let mut net = Net::new(SEED, config);
    net.grow(NODES, Duration::from_millis(20), Duration::from_secs(30));
    let keys = store_values(
        &mut net,
        SEED,
        "value",
        VALUES,
        Duration::from_secs(24 * 3600),
    );

    // Over ten minutes, 2,500 nodes leave and 2,500 new ones join, 25 of each every 6 s.
    let mut left = 0;
    for _ in 0..100 {
        for _ in 0..25 {
            let id = net.random_online(None).expect("online node");
            net.sim.remove_node(id);
            left += 1;
        }
        for _ in 0..25 {
            net.join_one();
        }
        net.sim.run_for(Duration::from_secs(6));
    }
    assert_eq!(left, NODES / 4);
    assert_eq!(net.sim.online_count(), NODES);

    let found = count_found(&mut net, &keys);
    let pct = 100.0 * found as f64 / VALUES as f64;
    eprintln!("churn_value_found_pct = {pct:.2} ({found} of {VALUES})");
    assert!(pct >= 99.5, "{pct}% of values found after churn");
}

#[test]
fn replication_outlives_every_original_holder_and_expiry_removes() {
    const SEED: u64 = 26;
    let mut config = Config::default();
    config.replicate_interval = Duration::from_secs(120);
    config.republish_interval = Duration::from_secs(120);
    let mut net = Net::new(SEED, config);
    net.grow(300, Duration::from_millis(50), Duration::from_secs(30));
    let keys = store_values(&mut net, SEED, "long", 1, Duration::from_secs(3 * 3600));
    let key = keys[0];
    let holders = |net: &Net| -> Vec<NodeId> {
        let now = net.sim.now();
        net.sim
            .node_ids()
            .filter(|id| net.sim.is_online(*id))
            .filter(|id| net.sim.node(*id).core.local_record(now, &key).is_some())
            .collect()
    };
    let original = holders(&net);
    assert!(original.len() >= 20, "{} holders", original.len());
    // Every original holder leaves, a few at a time, with new nodes joining and replication
    // running in between.
    for chunk in original.chunks(5) {
        for id in chunk {
            net.sim.remove_node(*id);
        }
        for _ in 0..5 {
            net.join_one();
        }
        net.sim.run_for(Duration::from_secs(150));
    }
    let now_holders = holders(&net);
    assert!(now_holders.iter().all(|h| !original.contains(h)));
    assert!(
        now_holders.len() >= 10,
        "{} holders left",
        now_holders.len()
    );
    assert_eq!(
        count_found(&mut net, &keys),
        1,
        "replicated value still found"
    );

    // A record that expires is dropped everywhere and no longer found.
    let short = store_values(&mut net, SEED, "short", 1, Duration::from_secs(120));
    let k2 = short[0];
    net.sim.run_for(Duration::from_secs(200));
    let now = net.sim.now();
    assert!(
        net.sim
            .node_ids()
            .all(|id| net.sim.node(id).core.local_record(now, &k2).is_none())
    );
    let from = net.random_online(None).expect("online");
    let q = net.command(from, |dht, now, _| dht.get_record(now, k2));
    let done = net.wait_for(&[(from, q)], Duration::from_secs(120));
    let Some((QueryResult::GetRecord { records }, _)) = done.get(&(from, q)) else {
        panic!("lookup did not finish");
    };
    assert!(records.is_empty(), "expired record returned");
}
