//! Simulator throughput on 10,000 nodes: events (deliveries + timer expiries) per second of
//! wall time for a ping-pong scenario whose nodes re-arm their timer on every message (as
//! sans-IO adapters do) and for a flooding scenario.
//!
//! Full run: `cargo xtask bench sim`; smoke run: `cargo test -p p2p-foundation-sim --benches`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use p2p_foundation_benchkit::{Better, Suite, percentile};
use p2p_foundation_sim::{Context, Latency, NetworkConfig, NodeId, SimNode, Simulator};
use rand::RngExt;

/// Ping-pong: each node keeps `concurrency` pings outstanding to random peers until it
/// has sent `budget` pings; every input re-arms a 1 s idle timer.
struct PingPong {
    n: u32,
    budget: u32,
    timeouts: u32,
}

#[derive(Clone, Copy)]
enum Pp {
    Ping(u64),
    Pong(u64),
}

impl PingPong {
    fn ping(&mut self, ctx: &mut Context<'_, Self>) {
        if self.budget == 0 {
            ctx.cancel_timer();
            return;
        }
        self.budget -= 1;
        let to = NodeId(ctx.rng().random_range(0..self.n));
        ctx.send(to, Pp::Ping(u64::from(self.budget)));
        ctx.set_timer_after(Duration::from_secs(1));
    }
}

impl SimNode for PingPong {
    type Message = Pp;
    type Event = ();

    fn message_size(_msg: &Pp) -> usize {
        64
    }

    fn handle_message(&mut self, ctx: &mut Context<'_, Self>, from: NodeId, msg: Pp) {
        match msg {
            Pp::Ping(x) => ctx.send(from, Pp::Pong(x)),
            Pp::Pong(x) => {
                black_box(x);
                self.ping(ctx);
            }
        }
    }

    fn handle_timer(&mut self, _ctx: &mut Context<'_, Self>) {
        self.timeouts += 1;
    }
}

fn pingpong(n: u32, budget: u32, concurrency: u32, seed: u64) -> (u64, Duration) {
    let config = NetworkConfig::default().with_latency(Latency::PerLink {
        min: Duration::from_millis(10),
        max: Duration::from_millis(150),
        jitter: Duration::from_millis(5),
    });
    let mut sim = Simulator::new(seed, config);
    sim.reserve(n as usize);
    for _ in 0..n {
        sim.add_node(PingPong {
            n,
            budget,
            timeouts: 0,
        });
    }
    let start = Instant::now();
    for id in 0..n {
        sim.with_node(NodeId(id), |node, ctx| {
            for _ in 0..concurrency {
                node.ping(ctx);
            }
        });
    }
    sim.run_until_idle(u64::MAX).unwrap_or_default();
    let elapsed = start.elapsed();
    let s = sim.stats();
    assert_eq!(s.delivered, 2 * u64::from(n) * u64::from(budget));
    black_box(sim.trace_hash());
    (s.delivered + s.timers_fired, elapsed)
}

/// Flooding: each node forwards every new rumour to its fixed random neighbours.
struct Flooder {
    neighbours: Vec<NodeId>,
    seen: Vec<bool>,
}

impl SimNode for Flooder {
    type Message = u32;
    type Event = ();

    fn handle_message(&mut self, ctx: &mut Context<'_, Self>, _from: NodeId, rumour: u32) {
        let seen = &mut self.seen[rumour as usize];
        if !*seen {
            *seen = true;
            for &to in &self.neighbours {
                ctx.send(to, rumour);
            }
        }
    }
}

fn flood(n: u32, degree: usize, rumours: u32, seed: u64) -> (u64, Duration) {
    let config = NetworkConfig::default()
        .with_latency(Latency::Uniform {
            min: Duration::from_millis(10),
            max: Duration::from_millis(100),
        })
        .with_loss(0.01);
    let mut sim = Simulator::new(seed, config);
    for _ in 0..n {
        let neighbours = (0..degree)
            .map(|_| NodeId(sim.rng().random_range(0..n)))
            .collect();
        sim.add_node(Flooder {
            neighbours,
            seen: vec![false; rumours as usize],
        });
    }
    let start = Instant::now();
    for r in 0..rumours {
        let origin = NodeId(sim.rng().random_range(0..n));
        let at = Duration::from_millis(u64::from(r) * 10);
        sim.run_until(at);
        sim.with_node(origin, |node, ctx| node.handle_message(ctx, origin, r));
    }
    sim.run_until_idle(u64::MAX).unwrap_or_default();
    let elapsed = start.elapsed();
    let s = sim.stats();
    black_box(sim.trace_hash());
    (s.events_processed, elapsed)
}

/// Baseline: the same flooding scenario in a hand-written event loop over a
/// `std::collections::BinaryHeap` of `(time, seq, from, to, rumour)` with the same latency,
/// loss and RNG, and no counters, churn, partitions or trace hash: what a test would write
/// without a simulator.
fn naive_flood(n: u32, degree: usize, rumours: u32, seed: u64) -> (u64, Duration) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use rand::{Rng, SeedableRng};

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let neighbours: Vec<Vec<u32>> = (0..n)
        .map(|_| (0..degree).map(|_| rng.random_range(0..n)).collect())
        .collect();
    let mut seen = vec![vec![false; rumours as usize]; n as usize];
    let loss_threshold = (0.01 * u64::MAX as f64) as u64;
    let (min, span) = (10_000_000u64, 90_000_001u64);
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32, u32)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut events = 0u64;
    let mut flood_from = |heap: &mut BinaryHeap<_>,
                          rng: &mut rand_chacha::ChaCha8Rng,
                          now: u64,
                          node: u32,
                          rumour: u32| {
        for &to in &neighbours[node as usize] {
            if rng.next_u64() < loss_threshold {
                continue;
            }
            let latency = min + ((u128::from(rng.next_u64()) * u128::from(span)) >> 64) as u64;
            heap.push(Reverse((now + latency, seq, to, rumour)));
            seq += 1;
        }
    };
    let start = Instant::now();
    let mut now = 0u64;
    for r in 0..rumours {
        let origin = rng.random_range(0..n);
        let at = u64::from(r) * 10_000_000;
        while let Some(&Reverse((t, _, to, rumour))) = heap.peek() {
            if t > at {
                break;
            }
            heap.pop();
            now = t;
            events += 1;
            let s = &mut seen[to as usize][rumour as usize];
            if !*s {
                *s = true;
                flood_from(&mut heap, &mut rng, now, to, rumour);
            }
        }
        now = now.max(at);
        seen[origin as usize][r as usize] = true;
        flood_from(&mut heap, &mut rng, now, origin, r);
    }
    while let Some(Reverse((t, _, to, rumour))) = heap.pop() {
        now = t;
        events += 1;
        let s = &mut seen[to as usize][rumour as usize];
        if !*s {
            *s = true;
            flood_from(&mut heap, &mut rng, now, to, rumour);
        }
    }
    let elapsed = start.elapsed();
    black_box(now);
    (events, elapsed)
}

fn rate(samples: &[(u64, Duration)]) -> f64 {
    let mut rates: Vec<f64> = samples
        .iter()
        .map(|(events, t)| *events as f64 / t.as_secs_f64().max(1e-9))
        .collect();
    percentile(&mut rates, 50.0)
}

fn main() {
    let mut suite = Suite::new("sim");
    let n = 10_000;
    let rounds = suite.scale(5, 1);

    let budget = suite.scale(100, 2);
    let samples: Vec<_> = (0..rounds).map(|i| pingpong(n, budget, 4, i)).collect();
    suite.record("events_per_s", rate(&samples), "events/s", Better::Higher);

    let rumours = suite.scale(50, 2);
    // Alternate ours and the baseline so both see the same machine state.
    let (samples, baseline): (Vec<_>, Vec<_>) = (0..rounds)
        .map(|i| (flood(n, 8, rumours, i), naive_flood(n, 8, rumours, i)))
        .unzip();
    suite.record_vs(
        "flood_events_per_s",
        rate(&samples),
        "events/s",
        Better::Higher,
        "naive_binary_heap_flood_events_per_s",
        rate(&baseline),
    );
    suite.finish();
}
