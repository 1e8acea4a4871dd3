//! 10,000-node simulations with p2p-foundation-sim: virtual time, 50–150 ms links, 1% loss,
//! every node dialling 8 random others (16 connections on average).
//!
//! Every scenario publishes 1,000 messages from random publishers at 20 per second, as issue
//! 5 asks; `cargo xtask bench gossip` runs the same scenarios and reports the figures.
mod common;

use std::time::Duration;

use common::*;

const NODES: usize = 10_000;
const MESSAGES: usize = 1_000;

#[test]
fn sim10k_steady_state_delivers_everything() {
    let sc = Scenario::base(NODES, MESSAGES);
    let o = run_steady(&sc);
    eprintln!("{}", summary("steady", &o));
    assert_eq!(o.delivered, o.expected, "100% delivery");
    assert!(
        o.duplicates_per_delivery <= 6.0,
        "duplicates per delivery {}",
        o.duplicates_per_delivery
    );
    assert!(o.hops.iter().all(|h| *h >= 1.0));
}

#[test]
fn sim10k_churn_keeps_delivery_to_stable_nodes() {
    let sc = Scenario {
        churn: 0.10,
        ..Scenario::base(NODES, MESSAGES)
    };
    let o = run_churn(&sc);
    eprintln!("{}", summary("churn", &o));
    assert!(o.ratio() >= 0.999, "delivery {:.5}", o.ratio());
}

#[test]
fn sim10k_attackers_are_graylisted_and_honest_delivery_holds() {
    let sc = Scenario {
        droppers: 0.05,
        spammers: 0.05,
        ..Scenario::base(NODES, MESSAGES)
    };
    let o = run_attack(&sc);
    eprintln!("{}", summary("attack", &o));
    assert!(o.ratio() >= 0.999, "honest delivery {:.5}", o.ratio());
    assert_eq!(o.attackers, 1000);
    assert_eq!(
        o.attackers_graylisted, o.attackers,
        "attackers below the graylist threshold"
    );
    assert_eq!(
        o.attacker_views_graylisted, o.attacker_views,
        "every judged view is below it"
    );
}

/// The network splits in two halves for 15 s in the middle of the publish phase; messages go
/// on being published on both sides throughout. A 20-heartbeat gossip history covers the
/// split, so every message published during it reaches the other side through IHAVE/IWANT
/// within a few heartbeats of the heal.
#[test]
fn sim10k_partition_heals_through_gossip() {
    let sc = Scenario::base(NODES, MESSAGES);
    let p = run_partition(
        &sc,
        partition_config(20),
        Duration::from_secs(15),
        Duration::from_secs(15),
    );
    eprintln!(
        "{} ; {} messages during the split, {}/{} far-side deliveries, last delivery after the heal: p50 {:.2} max {:.2} heartbeats",
        summary("partition", &p.all),
        p.during_split,
        p.cross_delivered,
        p.cross_expected,
        percentile(&p.per_message_heartbeats, 50.0),
        p.heal_heartbeats
    );
    assert!(
        p.during_split >= 250,
        "{} messages during the split",
        p.during_split
    );
    assert_eq!(
        p.cross_delivered, p.cross_expected,
        "every message published during the split reaches the other side"
    );
    assert_eq!(p.all.delivered, p.all.expected, "100% delivery overall");
    assert!(
        p.heal_heartbeats <= 5.0,
        "repair took {:.2} heartbeats",
        p.heal_heartbeats
    );
}
