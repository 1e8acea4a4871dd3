//! Behaviour of the simulator: determinism, latency, loss, partitions, churn, timers and
//! counters.

use std::time::Duration;

use p2p_foundation_sim::{
    Context, Latency, LinkConfig, NetworkConfig, NodeId, SimError, SimNode, Simulator,
};
use rand::{Rng, RngExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A configurable test node.
#[derive(Default)]
struct Probe {
    /// (arrival elapsed, from, payload) of every message received.
    received: Vec<(Duration, NodeId, u64)>,
    /// Elapsed times at which the timer fired.
    fired: Vec<Duration>,
    joins: u32,
    /// Answer pings (even payloads) with payload + 1.
    echo: bool,
    /// Timer period to re-arm on every expiry.
    period: Option<Duration>,
}

impl SimNode for Probe {
    type Message = u64;
    type Event = u64;

    fn message_size(_msg: &u64) -> usize {
        8
    }

    fn handle_message(&mut self, ctx: &mut Context<'_, Self>, from: NodeId, msg: u64) {
        self.received.push((ctx.elapsed(), from, msg));
        if self.echo && msg % 2 == 0 {
            ctx.send(from, msg + 1);
        }
        ctx.emit(msg);
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_, Self>) {
        self.fired.push(ctx.elapsed());
        if let Some(p) = self.period {
            ctx.set_timer_after(p);
        }
    }

    fn handle_join(&mut self, _ctx: &mut Context<'_, Self>) {
        self.joins += 1;
    }
}

fn probes(sim: &mut Simulator<Probe>, n: usize) -> Vec<NodeId> {
    (0..n).map(|_| sim.add_node(Probe::default())).collect()
}

/// A gossip-like scenario with random latency, loss, timers and node RNG use: nodes
/// forward each new rumour to 3 random peers and tick a periodic timer.
struct Gossiper {
    n: u32,
    seen: bool,
    ticks: u32,
}

impl SimNode for Gossiper {
    type Message = u32;
    type Event = ();

    fn message_size(_msg: &u32) -> usize {
        4
    }

    fn handle_message(&mut self, ctx: &mut Context<'_, Self>, _from: NodeId, hops: u32) {
        if !self.seen {
            self.seen = true;
            for _ in 0..3 {
                let to = NodeId(ctx.rng().random_range(0..self.n));
                ctx.send(to, hops + 1);
            }
        }
    }

    fn handle_timer(&mut self, ctx: &mut Context<'_, Self>) {
        self.ticks += 1;
        if self.ticks < 5 {
            let jitter = ctx.rng().random_range(0..1_000u64);
            ctx.set_timer_after(ms(100 + jitter));
        }
    }
}

fn gossip_run(seed: u64) -> (u64, p2p_foundation_sim::Stats) {
    let config = NetworkConfig::default()
        .with_latency(Latency::Uniform {
            min: ms(5),
            max: ms(200),
        })
        .with_loss(0.05);
    let mut sim = Simulator::new(seed, config);
    let n = 500;
    for _ in 0..n {
        sim.add_node(Gossiper {
            n,
            seen: false,
            ticks: 0,
        });
    }
    for id in 0..n {
        sim.with_node(NodeId(id), |_, ctx| ctx.set_timer_after(ms(u64::from(id))));
    }
    sim.with_node(NodeId(0), |_, ctx| ctx.send(NodeId(1), 0));
    sim.run_until_idle(1_000_000).unwrap();
    (sim.trace_hash(), sim.stats())
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let (h1, s1) = gossip_run(7);
    let (h2, s2) = gossip_run(7);
    let (h3, _) = gossip_run(8);
    assert_eq!(h1, h2);
    assert_eq!(s1, s2);
    assert_ne!(h1, h3);
    assert!(s1.delivered > 500, "{s1:?}");
    assert!(s1.timers_fired == 500 * 5, "{s1:?}");
}

#[test]
fn constant_latency_is_respected() {
    let mut sim = Simulator::new(
        1,
        NetworkConfig::default().with_latency(Latency::Constant(ms(37))),
    );
    let ids = probes(&mut sim, 3);
    sim.run_until(ms(100));
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], 1));
    sim.run_until(ms(136));
    assert!(sim.node(ids[1]).received.is_empty());
    sim.run_until(ms(137));
    assert_eq!(sim.node(ids[1]).received, vec![(ms(137), ids[0], 1)]);
    assert_eq!(sim.elapsed(), ms(137));
}

#[test]
fn uniform_latency_stays_in_range_and_varies() {
    let config = NetworkConfig::default().with_latency(Latency::Uniform {
        min: ms(10),
        max: ms(20),
    });
    let mut sim = Simulator::new(3, config);
    let ids = probes(&mut sim, 2);
    for i in 0..10_000 {
        sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], i));
    }
    sim.run_until_idle(100_000).unwrap();
    let times: Vec<Duration> = sim.node(ids[1]).received.iter().map(|r| r.0).collect();
    assert_eq!(times.len(), 10_000);
    assert!(times.iter().all(|t| (ms(10)..=ms(20)).contains(t)));
    let mean = times.iter().sum::<Duration>().as_secs_f64() / times.len() as f64;
    assert!((mean - 0.015).abs() < 0.0005, "mean {mean}");
    // Uniform latencies reorder messages on one link.
    let payloads: Vec<u64> = sim.node(ids[1]).received.iter().map(|r| r.2).collect();
    assert!(payloads.windows(2).any(|w| w[0] > w[1]));
}

#[test]
fn per_link_latency_is_fixed_per_pair_and_symmetric() {
    let config = NetworkConfig::default().with_latency(Latency::PerLink {
        min: ms(10),
        max: ms(300),
        jitter: Duration::ZERO,
    });
    let mut sim = Simulator::new(11, config);
    let ids = probes(&mut sim, 20);
    for round in 0..3u64 {
        for &a in &ids {
            for &b in &ids {
                if a != b {
                    sim.with_node(a, |_, ctx| ctx.send(b, round));
                }
            }
        }
        sim.run_for(ms(1_000));
    }
    let mut lat = std::collections::BTreeMap::new();
    for &b in &ids {
        for &(at, from, round) in &sim.node(b).received {
            let l = at - Duration::from_secs(round);
            assert!((ms(10)..=ms(300)).contains(&l));
            let key = (from.min(b), from.max(b));
            assert_eq!(
                *lat.entry(key).or_insert(l),
                l,
                "link {key:?} changed latency"
            );
        }
    }
    assert_eq!(lat.len(), 20 * 19 / 2);
    let distinct: std::collections::BTreeSet<_> = lat.values().collect();
    assert!(
        distinct.len() > 150,
        "latencies barely vary: {}",
        distinct.len()
    );
}

#[test]
fn per_link_jitter_adds_bounded_delay() {
    let config = NetworkConfig::default().with_latency(Latency::PerLink {
        min: ms(50),
        max: ms(50),
        jitter: ms(10),
    });
    let mut sim = Simulator::new(2, config);
    let ids = probes(&mut sim, 2);
    for i in 0..1_000 {
        sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], i));
    }
    sim.run_until_idle(10_000).unwrap();
    let times: Vec<Duration> = sim.node(ids[1]).received.iter().map(|r| r.0).collect();
    assert!(times.iter().all(|t| (ms(50)..=ms(60)).contains(t)));
    assert!(times.iter().any(|t| *t > ms(55)) && times.iter().any(|t| *t < ms(55)));
}

#[test]
fn loss_rate_within_statistical_bounds() {
    let mut sim = Simulator::new(99, NetworkConfig::default().with_loss(0.1));
    let ids = probes(&mut sim, 2);
    let n = 100_000u64;
    for i in 0..n {
        sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], i));
    }
    sim.run_until_idle(2 * n).unwrap();
    let s = sim.stats();
    assert_eq!(s.sent, n);
    assert_eq!(s.delivered + s.dropped_loss, n);
    // Binomial(100000, 0.1): sd ~ 95; allow 5 sd.
    let lost = s.dropped_loss as f64;
    assert!((lost - 10_000.0).abs() < 475.0, "lost {lost}");
    assert_eq!(s.bytes_sent, 8 * n);
    assert_eq!(s.bytes_delivered, 8 * s.delivered);
    assert!(s.is_consistent());
}

#[test]
fn per_link_overrides_loss_and_latency() {
    let mut sim = Simulator::new(
        5,
        NetworkConfig::default().with_latency(Latency::Constant(ms(50))),
    );
    let ids = probes(&mut sim, 3);
    sim.set_link(ids[0], ids[1], LinkConfig::loss(1.0));
    sim.set_link_one_way(ids[0], ids[2], LinkConfig::latency(ms(5)));
    sim.with_node(ids[0], |_, ctx| {
        ctx.send(ids[1], 1);
        ctx.send(ids[2], 2);
    });
    sim.with_node(ids[1], |_, ctx| ctx.send(ids[0], 3));
    sim.with_node(ids[2], |_, ctx| ctx.send(ids[0], 4));
    sim.run_until_idle(100).unwrap();
    assert!(sim.node(ids[1]).received.is_empty());
    assert_eq!(sim.node(ids[2]).received, vec![(ms(5), ids[0], 2)]);
    // 1 -> 0 lost as well (both directions); 2 -> 0 uses the default latency.
    assert_eq!(sim.node(ids[0]).received, vec![(ms(50), ids[2], 4)]);
    assert_eq!(sim.stats().dropped_loss, 2);
    // Removing the override restores the defaults.
    sim.set_link(ids[0], ids[1], LinkConfig::default());
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], 5));
    sim.run_until_idle(100).unwrap();
    assert_eq!(sim.node(ids[1]).received.len(), 1);
}

#[test]
fn partitions_block_and_heal_restores() {
    let mut sim = Simulator::new(
        4,
        NetworkConfig::default().with_latency(Latency::Constant(ms(10))),
    );
    let ids = probes(&mut sim, 5);
    sim.partition([vec![ids[0], ids[1]], vec![ids[2], ids[3]]]);
    assert!(sim.can_reach(ids[0], ids[1]));
    assert!(!sim.can_reach(ids[0], ids[2]));
    // ids[4] is unlisted: in "the rest", reachable by nobody listed.
    assert!(!sim.can_reach(ids[4], ids[0]));
    for &to in &ids {
        sim.with_node(ids[0], |_, ctx| ctx.send(to, 10));
    }
    sim.with_node(ids[3], |_, ctx| ctx.send(ids[2], 11));
    sim.run_until_idle(100).unwrap();
    assert_eq!(sim.node(ids[0]).received.len(), 1); // to itself
    assert_eq!(sim.node(ids[1]).received.len(), 1);
    assert_eq!(sim.node(ids[2]).received, vec![(ms(10), ids[3], 11)]);
    assert!(sim.node(ids[3]).received.is_empty());
    assert!(sim.node(ids[4]).received.is_empty());
    assert_eq!(sim.stats().dropped_partition, 3);

    sim.heal();
    for &to in &ids {
        sim.with_node(ids[0], |_, ctx| ctx.send(to, 12));
    }
    sim.run_until_idle(100).unwrap();
    for &id in &ids {
        assert_eq!(sim.node(id).received.last().map(|r| r.2), Some(12));
    }
    assert!(sim.stats().is_consistent());
}

#[test]
fn partition_drops_messages_in_flight_and_scheduled_changes_apply() {
    let mut sim = Simulator::new(
        4,
        NetworkConfig::default().with_latency(Latency::Constant(ms(100))),
    );
    let ids = probes(&mut sim, 2);
    sim.schedule_partition(ms(50), [[ids[0]]]);
    sim.schedule_heal(ms(300));
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], 1)); // in flight when the partition starts
    sim.run_until(ms(200));
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], 2)); // sent into the partition
    sim.run_until(ms(400));
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], 3)); // after the heal
    sim.run_until_idle(100).unwrap();
    assert_eq!(sim.node(ids[1]).received, vec![(ms(500), ids[0], 3)]);
    assert_eq!(sim.stats().dropped_partition, 2);
}

#[test]
fn churn_offline_nodes_receive_nothing_rejoined_nodes_do() {
    let mut sim = Simulator::new(
        6,
        NetworkConfig::default().with_latency(Latency::Constant(ms(10))),
    );
    let ids = probes(&mut sim, 3);
    assert!(sim.remove_node(ids[1]));
    assert!(!sim.remove_node(ids[1]));
    assert!(!sim.is_online(ids[1]));
    assert_eq!(sim.online_count(), 2);
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], 1));
    sim.run_until(ms(50));
    assert!(sim.node(ids[1]).received.is_empty());
    assert_eq!(sim.stats().dropped_offline, 1);

    assert!(sim.restore_node(ids[1]));
    assert_eq!(sim.node(ids[1]).joins, 1);
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], 2));
    sim.run_until(ms(100));
    assert_eq!(sim.node(ids[1]).received, vec![(ms(60), ids[0], 2)]);

    // Scheduled: leave at 200 ms, back at 400 ms. A message arriving at 210 is dropped,
    // one sent at 390 arriving at 400 + is delivered after the restore.
    sim.schedule_leave(ms(200), ids[2]);
    sim.schedule_restore(ms(400), ids[2]);
    sim.run_until(ms(200));
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[2], 3));
    sim.run_until(ms(395));
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[2], 4));
    sim.run_until_idle(100).unwrap();
    assert_eq!(sim.node(ids[2]).received, vec![(ms(405), ids[0], 4)]);
    assert_eq!(sim.node(ids[2]).joins, 1);

    // An offline node's own sends are dropped too.
    sim.remove_node(ids[0]);
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], 5));
    sim.run_until_idle(100).unwrap();
    assert_eq!(sim.node(ids[1]).received.len(), 1);
    let s = sim.stats();
    assert_eq!(s.dropped_offline, 3);
    assert!(s.is_consistent());
}

#[test]
fn scheduled_join_adds_a_node_that_comes_online_later() {
    let mut sim = Simulator::new(
        6,
        NetworkConfig::default().with_latency(Latency::Constant(ms(10))),
    );
    let a = sim.add_node(Probe::default());
    let b = sim.schedule_join(ms(100), Probe::default());
    assert_eq!(b, NodeId(1));
    assert!(!sim.is_online(b));
    sim.with_node(a, |_, ctx| ctx.send(b, 1));
    sim.run_until(ms(100));
    assert!(sim.is_online(b));
    assert_eq!(sim.node(b).joins, 1);
    sim.with_node(a, |_, ctx| ctx.send(b, 2));
    sim.run_until_idle(100).unwrap();
    assert_eq!(sim.node(b).received, vec![(ms(110), a, 2)]);
}

#[test]
fn timers_fire_at_their_virtual_time() {
    let mut sim = Simulator::new(8, NetworkConfig::default());
    let ids = probes(&mut sim, 2);
    sim.node_mut(ids[0]).period = Some(ms(250));
    let start = sim.now();
    sim.with_node(ids[0], |_, ctx| ctx.set_timer(start + ms(100)));
    sim.with_node(ids[1], |_, ctx| {
        ctx.set_timer(ms(500));
        assert_eq!(ctx.timer(), Some(start + ms(500)));
    });
    sim.run_until(ms(1_000));
    assert_eq!(
        sim.node(ids[0]).fired,
        vec![ms(100), ms(350), ms(600), ms(850)]
    );
    assert_eq!(sim.node(ids[1]).fired, vec![ms(500)]);
    assert_eq!(sim.stats().timers_fired, 5);
}

#[test]
fn latest_set_timer_wins_earlier_or_later() {
    let mut sim = Simulator::new(8, NetworkConfig::default());
    let ids = probes(&mut sim, 3);
    // Later replaces earlier.
    sim.with_node(ids[0], |_, ctx| {
        ctx.set_timer(ms(100));
        ctx.set_timer(ms(300));
    });
    // Earlier replaces later.
    sim.with_node(ids[1], |_, ctx| {
        ctx.set_timer(ms(300));
        ctx.set_timer(ms(100));
    });
    // Cancel.
    sim.with_node(ids[2], |_, ctx| {
        ctx.set_timer(ms(100));
        ctx.cancel_timer();
        assert_eq!(ctx.timer(), None);
    });
    sim.run_until(ms(1_000));
    assert_eq!(sim.node(ids[0]).fired, vec![ms(300)]);
    assert_eq!(sim.node(ids[1]).fired, vec![ms(100)]);
    assert!(sim.node(ids[2]).fired.is_empty());
    // A deadline in the past fires at the current time.
    sim.with_node(ids[2], |_, ctx| ctx.set_timer(ms(10)));
    sim.step();
    assert_eq!(sim.node(ids[2]).fired, vec![ms(1_000)]);
}

#[test]
fn removed_nodes_timers_do_not_fire() {
    let mut sim = Simulator::new(8, NetworkConfig::default());
    let ids = probes(&mut sim, 2);
    for &id in &ids {
        sim.node_mut(id).period = Some(ms(100));
        sim.with_node(id, |_, ctx| ctx.set_timer(ms(100)));
    }
    sim.schedule_leave(ms(250), ids[1]);
    sim.run_until(ms(1_000));
    assert_eq!(sim.node(ids[0]).fired.len(), 10);
    assert_eq!(sim.node(ids[1]).fired, vec![ms(100), ms(200)]);
    // Restored: the timer stays dropped until the node re-arms it.
    sim.restore_node(ids[1]);
    sim.run_until(ms(2_000));
    assert_eq!(sim.node(ids[1]).fired.len(), 2);
    // Timers set while offline are ignored.
    sim.remove_node(ids[1]);
    sim.with_node(ids[1], |_, ctx| ctx.set_timer(ms(2_500)));
    sim.restore_node(ids[1]);
    sim.run_until(ms(3_000));
    assert_eq!(sim.node(ids[1]).fired.len(), 2);
}

#[test]
fn counters_add_up_under_loss_partition_and_churn() {
    let config = NetworkConfig::default()
        .with_latency(Latency::Uniform {
            min: ms(1),
            max: ms(50),
        })
        .with_loss(0.2);
    let mut sim = Simulator::new(12, config);
    let ids = probes(&mut sim, 50);
    for &id in &ids {
        sim.node_mut(id).echo = true;
    }
    sim.schedule_partition(ms(100), [ids[..20].to_vec()]);
    sim.schedule_heal(ms(300));
    for (i, &id) in ids.iter().enumerate().skip(40) {
        sim.schedule_leave(ms(50 + i as u64), id);
        sim.schedule_restore(ms(250 + i as u64), id);
    }
    let mut sent_by_test = 0u64;
    for round in 0..40u64 {
        for i in 0..50usize {
            let to = ids[(i * 7 + round as usize) % 50];
            sim.with_node(ids[i], |_, ctx| ctx.send(to, round * 2));
            sent_by_test += 1;
        }
        sim.run_for(ms(10));
        assert!(sim.stats().is_consistent());
    }
    sim.run_until_idle(1_000_000).unwrap();
    let s = sim.stats();
    assert!(s.is_consistent(), "{s:?}");
    assert_eq!(s.in_flight, 0);
    assert!(s.sent > sent_by_test, "echoes were sent");
    assert!(
        s.dropped_loss > 0 && s.dropped_partition > 0 && s.dropped_offline > 0,
        "{s:?}"
    );
    let per_node_sent: u64 = ids.iter().map(|&id| sim.node_stats(id).sent).sum();
    let per_node_received: u64 = ids.iter().map(|&id| sim.node_stats(id).received).sum();
    assert_eq!(per_node_sent, s.sent);
    assert_eq!(per_node_received, s.delivered);
    let handled: usize = ids.iter().map(|&id| sim.node(id).received.len()).sum();
    assert_eq!(handled as u64, s.delivered);
    assert_eq!(s.bytes_delivered, 8 * s.delivered);
}

#[test]
fn events_are_collected_in_order_with_time_and_node() {
    let mut sim = Simulator::new(
        1,
        NetworkConfig::default().with_latency(Latency::Constant(ms(5))),
    );
    let ids = probes(&mut sim, 3);
    sim.with_node(ids[0], |_, ctx| {
        ctx.send(ids[1], 7);
        ctx.send(ids[2], 9);
    });
    sim.run_until_idle(10).unwrap();
    assert_eq!(sim.events().len(), 2);
    let ev: Vec<_> = sim
        .drain_events()
        .map(|e| (e.at, e.node, e.event))
        .collect();
    assert_eq!(ev, vec![(ms(5), ids[1], 7), (ms(5), ids[2], 9)]);
    assert!(sim.events().is_empty());
}

#[test]
fn run_until_idle_reports_the_event_limit() {
    let mut sim = Simulator::new(1, NetworkConfig::default());
    let id = sim.add_node(Probe {
        period: Some(ms(1)),
        ..Probe::default()
    });
    sim.with_node(id, |_, ctx| ctx.set_timer_after(ms(1)));
    let err = sim.run_until_idle(100).unwrap_err();
    assert!(
        matches!(
            err,
            SimError::EventLimit {
                limit: 100,
                pending: 1
            }
        ),
        "{err}"
    );
    assert_eq!(sim.node(id).fired.len(), 100);
}

#[test]
fn clock_and_system_time_advance_together() {
    let mut sim = Simulator::new(1, NetworkConfig::default());
    let id = sim.add_node(Probe::default());
    let t0 = sim.now();
    let s0 = sim.system_time();
    assert_eq!(
        s0.duration_since(std::time::UNIX_EPOCH).unwrap(),
        Duration::from_secs(1_767_225_600)
    );
    sim.run_for(Duration::from_secs(90));
    sim.with_node(id, |_, ctx| {
        assert_eq!(ctx.now() - t0, Duration::from_secs(90));
        assert_eq!(
            ctx.system_time().duration_since(s0).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(ctx.elapsed(), Duration::from_secs(90));
        assert_eq!(ctx.id(), id);
    });
}

#[test]
fn node_rng_is_seeded() {
    let draw = |seed| {
        let mut sim = Simulator::<Probe>::new(seed, NetworkConfig::default());
        let a = sim.rng().next_u64();
        let id = sim.add_node(Probe::default());
        let b = sim.with_node(id, |_, ctx| ctx.rng().next_u64());
        let c = sim.fork_rng().next_u64();
        (a, b, c)
    };
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1), draw(2));
}

#[test]
fn constant_latency_keeps_per_link_fifo_order() {
    let mut sim = Simulator::new(
        1,
        NetworkConfig::default().with_latency(Latency::Constant(ms(20))),
    );
    let ids = probes(&mut sim, 2);
    for i in 0..1_000 {
        sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], i));
    }
    sim.run_until_idle(10_000).unwrap();
    let payloads: Vec<u64> = sim.node(ids[1]).received.iter().map(|r| r.2).collect();
    assert_eq!(payloads, (0..1_000).collect::<Vec<_>>());
}

#[test]
fn run_until_done_stops_at_the_event_that_satisfies_the_condition() {
    let mut sim = Simulator::new(1, NetworkConfig::default());
    let ids = probes(&mut sim, 11);
    for i in 1..=10u64 {
        let to = ids[i as usize];
        sim.set_link_one_way(ids[0], to, LinkConfig::latency(ms(i * 10)));
        sim.with_node(ids[0], |_, ctx| ctx.send(to, i));
    }
    assert!(sim.run_until_done(ms(10_000), |sim| sim.events().len() >= 3));
    assert_eq!(sim.events().len(), 3);
    assert_eq!(sim.elapsed(), ms(30));
    // Already true: returns at once.
    assert!(sim.run_until_done(ms(10_000), |sim| !sim.events().is_empty()));
    assert_eq!(sim.elapsed(), ms(30));
    // Never true: runs to the deadline.
    assert!(!sim.run_until_done(ms(5_000), |sim| sim.events().len() > 100));
    assert_eq!(sim.elapsed(), ms(5_000));
    assert_eq!(sim.events().len(), 10);
}

/// Random interleavings of sends, timers, churn, partitions and loss changes: counters
/// always add up, and no node handles anything while it is offline.
#[test]
fn random_scenarios_keep_invariants() {
    for seed in 0..30u64 {
        let config = NetworkConfig::default().with_latency(Latency::Uniform {
            min: ms(1),
            max: ms(80),
        });
        let mut sim = Simulator::new(seed, config);
        let n = 12;
        let ids = probes(&mut sim, n);
        for &id in &ids {
            sim.node_mut(id).echo = true;
            sim.node_mut(id).period = Some(ms(7));
            sim.with_node(id, |_, ctx| ctx.set_timer_after(ms(7)));
        }
        // Per node: intervals (left, back] during which it was offline.
        let mut offline: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); n];
        let mut left_at: Vec<Option<Duration>> = vec![None; n];
        let mut rng = <p2p_foundation_sim::SimRng as rand::SeedableRng>::seed_from_u64(seed);
        for _ in 0..300 {
            let id = ids[rng.random_range(0..n)];
            match rng.random_range(0..10) {
                0 => {
                    if sim.remove_node(id) {
                        left_at[id.index()] = Some(sim.elapsed());
                    }
                }
                1 => {
                    if sim.restore_node(id) {
                        let left = left_at[id.index()].take().unwrap();
                        offline[id.index()].push((left, sim.elapsed()));
                        sim.with_node(id, |_, ctx| ctx.set_timer_after(ms(7)));
                    }
                }
                2 => {
                    let k = rng.random_range(1..n);
                    sim.partition([ids[..k].to_vec()]);
                }
                3 => sim.heal(),
                4 => sim.set_loss(rng.random_range(0.0..0.5)),
                _ => {
                    let to = ids[rng.random_range(0..n)];
                    let payload = rng.random_range(0..1_000u64) * 2;
                    sim.with_node(id, |_, ctx| ctx.send(to, payload));
                }
            }
            sim.run_for(ms(rng.random_range(0..30)));
            assert!(sim.stats().is_consistent(), "{:?}", sim.stats());
        }
        let end = sim.elapsed();
        for (i, left) in left_at.iter().enumerate() {
            if let Some(left) = left {
                offline[i].push((*left, end + ms(1_000_000)));
            }
        }
        for &id in &ids {
            sim.node_mut(id).period = None;
        }
        sim.heal();
        sim.run_until_idle(1_000_000).unwrap();
        let s = sim.stats();
        assert!(s.is_consistent() && s.in_flight == 0, "{s:?}");
        for &id in &ids {
            let node = sim.node(id);
            let was_offline =
                |t: Duration| offline[id.index()].iter().any(|&(a, b)| a < t && t <= b);
            for &(t, _, _) in &node.received {
                assert!(
                    !was_offline(t),
                    "seed {seed}: {id} received at {t:?} while offline"
                );
            }
            for &t in &node.fired {
                assert!(
                    !was_offline(t),
                    "seed {seed}: {id} timer at {t:?} while offline"
                );
            }
            let mut times: Vec<Duration> = node.received.iter().map(|r| r.0).collect();
            let sorted = times.is_sorted();
            times.dedup();
            assert!(sorted, "time went backwards at {id}");
        }
        let received: usize = ids.iter().map(|&id| sim.node(id).received.len()).sum();
        assert_eq!(received as u64, s.delivered);
    }
}

/// Flooding on 10,000 nodes over a ring plus 7 random links per node reaches every node, with the same
/// trace for the same seed.
#[test]
fn ten_thousand_node_flood() {
    struct Flood {
        neighbours: Vec<NodeId>,
        seen: bool,
    }
    impl SimNode for Flood {
        type Message = ();
        type Event = ();
        fn handle_message(&mut self, ctx: &mut Context<'_, Self>, _from: NodeId, _msg: ()) {
            if !self.seen {
                self.seen = true;
                ctx.emit(());
                for &to in &self.neighbours {
                    ctx.send(to, ());
                }
            }
        }
    }
    let run = |seed| {
        let config = NetworkConfig::default().with_latency(Latency::PerLink {
            min: ms(10),
            max: ms(200),
            jitter: ms(5),
        });
        let mut sim = Simulator::new(seed, config);
        let n = 10_000u32;
        for _ in 0..n {
            let next = NodeId((sim.node_count() as u32 + 1) % n);
            let mut neighbours = vec![next];
            neighbours.extend((0..7).map(|_| NodeId(sim.rng().random_range(0..n))));
            sim.add_node(Flood {
                neighbours,
                seen: false,
            });
        }
        let origin = NodeId(0);
        sim.with_node(origin, |node, ctx| node.handle_message(ctx, origin, ()));
        sim.run_until_idle(1_000_000).unwrap();
        assert!(sim.nodes().iter().all(|f| f.seen));
        assert_eq!(sim.events().len(), 10_000);
        let s = sim.stats();
        assert_eq!(s.sent, 80_000);
        assert_eq!(s.delivered, 80_000);
        (sim.trace_hash(), sim.elapsed())
    };
    let (h1, t1) = run(3);
    let (h2, t2) = run(3);
    assert_eq!((h1, t1), (h2, t2));
    assert!(
        t1 < Duration::from_secs(5),
        "flood took {t1:?} of virtual time"
    );
}

#[test]
fn zero_latency_arrives_now_after_already_queued_events() {
    let mut sim = Simulator::new(
        1,
        NetworkConfig::default().with_latency(Latency::Constant(ms(10))),
    );
    let ids = probes(&mut sim, 3);
    sim.set_link(ids[0], ids[1], LinkConfig::latency(Duration::ZERO));
    sim.node_mut(ids[1]).echo = true;
    // ids[2] -> ids[0] arrives at 10 ms; ids[0] -> ids[1] sent at 10 ms with zero latency.
    sim.with_node(ids[2], |_, ctx| ctx.send(ids[0], 1));
    sim.run_until(ms(10));
    sim.with_node(ids[2], |_, ctx| ctx.send(ids[0], 3)); // arrives at 20 ms
    sim.with_node(ids[0], |_, ctx| ctx.send(ids[1], 4)); // arrives at 10 ms, echoed at once
    assert_eq!(sim.elapsed(), ms(10));
    sim.run_until(ms(10));
    assert_eq!(sim.node(ids[1]).received, vec![(ms(10), ids[0], 4)]);
    assert_eq!(
        sim.node(ids[0]).received,
        vec![(ms(10), ids[2], 1), (ms(10), ids[1], 5)]
    );
    sim.run_until_idle(10).unwrap();
    assert_eq!(sim.node(ids[0]).received.last(), Some(&(ms(20), ids[2], 3)));
}

#[test]
fn unknown_targets_and_self_sends() {
    let mut sim = Simulator::new(
        1,
        NetworkConfig::default().with_latency(Latency::Constant(ms(3))),
    );
    let a = sim.add_node(Probe::default());
    sim.with_node(a, |_, ctx| {
        ctx.send(NodeId(7), 1);
        ctx.send(a, 2);
    });
    sim.run_until_idle(10).unwrap();
    assert_eq!(sim.node(a).received, vec![(ms(3), a, 2)]);
    let s = sim.stats();
    assert_eq!((s.sent, s.delivered, s.dropped_offline), (2, 1, 1));
    assert_eq!(sim.node_stats(a).sent, 2);
    assert_eq!(sim.node_stats(a).received, 1);
    assert_eq!(sim.node_stats(a).bytes_received, 8);
}

#[test]
#[should_panic(expected = "no simulated node n3")]
fn accessing_a_missing_node_panics_with_its_id() {
    let mut sim = Simulator::new(1, NetworkConfig::default());
    probes(&mut sim, 3);
    sim.node(NodeId(3));
}

#[test]
fn random_churn_keeps_the_expected_share_online() {
    let mut sim = Simulator::new(21, NetworkConfig::default());
    let ids = probes(&mut sim, 200);
    let leaves = sim.schedule_random_churn(
        ids.iter().copied(),
        Duration::ZERO,
        Duration::from_secs(600),
        Duration::from_secs(20),
        Duration::from_secs(10),
    );
    // ~600 s / 30 s per cycle = ~20 leaves per node.
    assert!((3_000..5_000).contains(&leaves), "{leaves} leaves");
    let mut online = 0usize;
    let mut samples = 0usize;
    for s in (60..600).step_by(5) {
        sim.run_until(Duration::from_secs(s));
        online += sim.online_count();
        samples += 200;
    }
    let share = online as f64 / samples as f64;
    assert!((share - 2.0 / 3.0).abs() < 0.05, "online share {share}");
    // Every gap ends: all back online by end + 2 * mean_down.
    sim.run_until(Duration::from_secs(620));
    assert_eq!(sim.online_count(), 200);
    let joins: u32 = ids.iter().map(|&id| sim.node(id).joins).sum();
    assert_eq!(joins as usize, leaves);
    // Deterministic.
    let mut again = Simulator::<Probe>::new(21, NetworkConfig::default());
    let ids2 = probes(&mut again, 200);
    let leaves2 = again.schedule_random_churn(
        ids2,
        Duration::ZERO,
        Duration::from_secs(600),
        Duration::from_secs(20),
        Duration::from_secs(10),
    );
    assert_eq!(leaves, leaves2);
}

#[test]
fn trace_hash_depends_on_the_trace_not_the_seed() {
    let run = |seed, latency| {
        let config = NetworkConfig::default().with_latency(Latency::Constant(ms(latency)));
        let mut sim = Simulator::new(seed, config);
        let ids = probes(&mut sim, 3);
        sim.node_mut(ids[1]).echo = true;
        sim.with_node(ids[0], |_, ctx| {
            ctx.send(ids[1], 2);
            ctx.set_timer(ms(5));
        });
        sim.run_until_idle(100).unwrap();
        sim.trace_hash()
    };
    // Nothing random in this scenario: the seed does not matter.
    assert_eq!(run(1, 10), run(2, 10));
    // A different trace gives a different hash.
    assert_ne!(run(1, 10), run(1, 11));
    // An empty trace has the constant initial hash.
    assert_eq!(
        Simulator::<Probe>::new(1, NetworkConfig::default()).trace_hash(),
        Simulator::<Probe>::new(2, NetworkConfig::default()).trace_hash()
    );
}
