//! Same seed, same network, same lookups, same trace.

mod common;

use std::time::Duration;

use common::Net;
use p2p_foundation_dht::{Config, QueryResult};
use p2p_foundation_identity::PeerId;

fn run(seed: u64) -> (u64, Vec<Vec<PeerId>>, u64) {
    let mut net = Net::new(seed, Config::default());
    net.grow(500, Duration::from_millis(20), Duration::from_secs(5));
    let mut batch = Vec::new();
    for _ in 0..200 {
        let from = net.random_online(None).expect("online");
        let target = net.random_key();
        batch.push((
            from,
            net.command(from, |dht, now, _| dht.find_node(now, target)),
        ));
    }
    let done = net.wait_for(&batch, Duration::from_secs(60));
    let results = batch
        .iter()
        .map(|key| match &done[key].0 {
            QueryResult::FindNode { closest } => closest.iter().map(|c| c.peer()).collect(),
            other => panic!("{other:?}"),
        })
        .collect();
    (net.sim.trace_hash(), results, net.sim.stats().sent)
}

#[test]
fn same_seed_same_trace() {
    let a = run(7);
    let b = run(7);
    assert_eq!(a.0, b.0, "trace hash");
    assert_eq!(a.1, b.1, "lookup results");
    assert_eq!(a.2, b.2, "message count");
    let c = run(8);
    assert_ne!(a.0, c.0, "another seed gives another trace");
}
