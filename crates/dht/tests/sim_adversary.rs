//! 20 colluding nodes that answer lookups only with each other, placed (as an attacker
//! grinding keys would) around the region being looked up. With S/Kademlia disjoint paths
//! lookups still find the closest honest node; the figure without them is reported.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::{Net, fast_distance};
use p2p_foundation_dht::{Config, Contact, QueryResult};
use p2p_foundation_identity::Key;
use p2p_foundation_sim::NodeId;

const NODES: usize = 10_000;
const COLLUDERS: usize = 20;
/// Candidate keys the attacker grinds through to place its nodes.
const POOL: u64 = 20_000;
const LOOKUPS: usize = 1_000;
const SEED: u64 = 20;

/// Success rate (percent) of `LOOKUPS` lookups near `centre` with `d` disjoint paths.
fn success_pct(net: &mut Net, centre: &Key, d: usize, honest: &[(Key, NodeId)]) -> f64 {
    let mut batch = Vec::new();
    for _ in 0..LOOKUPS {
        let from = net.random_online(None).expect("online");
        // A key in the colluders' region: the centre's first 10 bits, then random.
        let mut bytes = *net.random_key().as_bytes();
        bytes[0] = centre.as_bytes()[0];
        bytes[1] = (centre.as_bytes()[1] & 0xc0) | (bytes[1] & 0x3f);
        let target = Key::from_bytes(bytes);
        let q = net.command(from, |dht, now, _| {
            dht.set_disjoint_paths(d);
            dht.find_node(now, target)
        });
        batch.push((from, q, target));
    }
    let wanted: Vec<_> = batch.iter().map(|(n, q, _)| (*n, *q)).collect();
    let done = net.wait_for(&wanted, Duration::from_secs(300));
    let mut ok = 0;
    for (from, q, target) in batch {
        let best_honest = honest
            .iter()
            .filter(|(_, id)| *id != from)
            .min_by_key(|(k, _)| fast_distance(k, &target))
            .map(|(_, id)| *id);
        if let Some((QueryResult::FindNode { closest }, _)) = done.get(&(from, q)) {
            if closest
                .iter()
                .any(|c| Some(common::node_of(c.addr())) == best_honest)
            {
                ok += 1;
            }
        }
    }
    100.0 * ok as f64 / LOOKUPS as f64
}

#[test]
fn disjoint_paths_defeat_twenty_colluders() {
    let config = Config::default().with_refresh_on_bootstrap(false);
    let mut net = Net::new(SEED, config);
    net.grow(NODES, Duration::from_millis(20), Duration::from_secs(10));
    let honest = net.online_keys();

    // The attacker grinds POOL keys and keeps the 20 closest to a centre of its choosing.
    let centre = net.random_key();
    let mut pool: Vec<(u64, Key)> = (0..POOL)
        .map(|i| {
            let index = 1_000_000 + i;
            (index, common::keypair(SEED, index).peer_id().kad_key())
        })
        .collect();
    pool.sort_by_key(|(_, k)| fast_distance(k, &centre));
    pool.truncate(COLLUDERS);
    let first = net.sim.node_count() as u32;
    let contacts: Vec<Contact> = pool
        .iter()
        .enumerate()
        .map(|(i, (index, _))| {
            Contact::new(
                common::keypair(SEED, *index).peer_id(),
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
    let honest_near = honest
        .iter()
        .filter(|(k, _)| k.as_bytes()[0] == centre.as_bytes()[0])
        .count();
    eprintln!(
        "{COLLUDERS} colluders among {honest_near} honest nodes sharing the centre's first byte"
    );

    let without = success_pct(&mut net, &centre, 1, &honest);
    let with = success_pct(&mut net, &centre, 4, &honest);
    eprintln!("lookup success with 20 colluders: d=1 {without:.1}%, d=4 {with:.1}%");
    assert!(with >= 99.0, "with disjoint paths only {with}% succeed");
}
