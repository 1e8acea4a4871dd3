//! 10,000-node simulations with p2p-foundation-sim: virtual time, 50–150 ms links, 1% loss,
//! every node dialling 8 random others (16 connections on average).
//!
//! The tests publish fewer messages than the benchmark (`cargo xtask bench gossip` runs the
//! full 1,000-message scenarios); nodes, links, loss, churn and attacker shares are the same.
mod common;

use std::time::Duration;

use common::*;

const NODES: usize = 10_000;

#[test]
fn sim10k_steady_state_delivers_everything() {
    let sc = Scenario::base(NODES, 100);
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
        per_second: 5.0,
        ..Scenario::base(NODES, 50)
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
        per_second: 5.0,
        ..Scenario::base(NODES, 50)
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

#[test]
fn sim10k_partition_heals_through_gossip() {
    let sc = Scenario::base(NODES, 0);
    let (o, heartbeats) = run_partition(&sc, Duration::from_secs(10), 10);
    eprintln!(
        "{} ; last delivery {heartbeats:.2} heartbeats after the heal",
        summary("partition", &o)
    );
    assert_eq!(
        o.delivered, o.expected,
        "every message reaches the other side"
    );
    assert!(heartbeats <= 4.0, "repair took {heartbeats:.2} heartbeats");
}
