use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, RngExt, SeedableRng};

use crate::config::{LinkConfig, Network, mix64};
use crate::queue::{Keyed, RadixQueue};
use crate::stats::{NodeStats, Stats};
use crate::time::duration_nanos;
use crate::{Latency, NetworkConfig, NodeId, SimError, SimNode, SimRng, SimTime};

/// 2026-01-01T00:00:00Z: the wall-clock time at which every simulation starts
/// ([`Context::system_time`]).
const SYSTEM_TIME_BASE_SECS: u64 = 1_767_225_600;

/// Initial trace hash: a constant, not the seed, so that equal hashes mean equal traces
/// whatever the seeds.
const TRACE_INIT: u64 = 0x7369_6d5f_7472_6163; // "sim_trac"

/// "No deadline" / "no queue entry" marker for the timer fields.
const NONE: u64 = u64::MAX;

/// An event a node emitted with [`Context::emit`], as collected by the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted<E> {
    /// Virtual time since the simulation started.
    pub at: Duration,
    /// The node that emitted it.
    pub node: NodeId,
    /// The event.
    pub event: E,
}

/// What a queue entry does when its time comes.
#[derive(Debug)]
enum Kind<M> {
    /// Deliver a message. The message travels inside the queue entry: the radix queue
    /// moves entries sequentially, which is cheaper than a cache miss into a side table.
    Deliver {
        from: u32,
        to: u32,
        /// `SimNode::message_size`, saturated to `u32`.
        size: u32,
        msg: M,
    },
    /// Fire `node`'s timer if its generation is still `generation`.
    Timer { node: u32, generation: u32 },
    /// Apply the control action in this slot of `controls`.
    Control(u32),
}

/// A queue entry, ordered by `(time, seq)` ascending.
#[derive(Debug)]
struct Entry<M> {
    time: u64,
    seq: u64,
    kind: Kind<M>,
}

impl<M> Keyed for Entry<M> {
    #[inline]
    fn time(&self) -> u64 {
        self.time
    }
    #[inline]
    fn seq(&self) -> u64 {
        self.seq
    }
}

/// A scheduled churn or partition change.
#[derive(Debug)]
enum Control {
    Leave(u32),
    Restore(u32),
    Partition(Vec<Vec<NodeId>>),
    Heal,
}

/// Per-node simulator state, kept apart from the node and sized to one cache line so a
/// delivery touches one line of it.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct NodeState {
    online: bool,
    /// Partition group; nodes in different groups cannot reach each other.
    group: u32,
    /// Armed deadline, or `NONE`.
    deadline: u64,
    /// Time of the live queue entry for this node's timer, or `NONE`.
    queued: u64,
    /// Generation of the live queue entry: older entries are stale.
    generation: u32,
    stats: NodeStats,
}

/// Everything but the nodes: what a [`Context`] borrows.
pub(crate) struct Core<N: SimNode> {
    now: u64,
    base_instant: Instant,
    base_system: SystemTime,
    seq: u64,
    queue: RadixQueue<Entry<N::Message>>,
    states: Vec<NodeState>,
    /// Whether any partition is in force (saves the group checks when not).
    partitioned: bool,
    controls: Vec<Option<Control>>,
    net: Network,
    net_rng: SimRng,
    rng: SimRng,
    events: Vec<Emitted<N::Event>>,
    stats: Stats,
    trace: u64,
}

impl<N: SimNode> Core<N> {
    #[inline]
    fn push(&mut self, time: u64, kind: Kind<N::Message>) {
        let seq = self.seq;
        self.seq += 1;
        self.queue.push(Entry { time, seq, kind });
    }

    #[inline]
    fn instant(&self, nanos: u64) -> Instant {
        self.base_instant + Duration::from_nanos(nanos)
    }

    #[inline]
    fn trace(&mut self, a: u64, b: u64, c: u64) {
        let mut h = self.trace;
        h = mix64(h ^ a);
        h = mix64(h ^ b);
        h = mix64(h ^ c);
        self.trace = h;
    }

    fn send(&mut self, from: u32, to: u32, msg: N::Message) {
        let size = N::message_size(&msg) as u64;
        self.stats.sent += 1;
        self.stats.bytes_sent += size;
        let nodes = self.states.len();
        let Some(src) = self.states.get_mut(from as usize) else {
            self.stats.dropped_offline += 1;
            return;
        };
        src.stats.sent += 1;
        src.stats.bytes_sent += size;
        if !src.online || to as usize >= nodes {
            self.stats.dropped_offline += 1;
            return;
        }
        let src_group = src.group;
        if self.partitioned && src_group != self.states[to as usize].group {
            self.stats.dropped_partition += 1;
            return;
        }
        let Some(latency) = self.net.transit(from, to, &mut self.net_rng) else {
            self.stats.dropped_loss += 1;
            return;
        };
        self.stats.in_flight += 1;
        let kind = Kind::Deliver {
            from,
            to,
            size: u32::try_from(size).unwrap_or(u32::MAX),
            msg,
        };
        self.push(self.now.saturating_add(latency), kind);
    }

    fn set_timer(&mut self, node: u32, at: u64) {
        let now = self.now;
        let Some(state) = self.states.get_mut(node as usize) else {
            return;
        };
        if !state.online {
            return;
        }
        let at = at.max(now);
        state.deadline = at;
        // An entry at or before `at` already queued will re-queue itself for `at` when it
        // fires; only an earlier deadline needs a new entry.
        if state.queued == NONE || at < state.queued {
            state.generation = state.generation.wrapping_add(1);
            state.queued = at;
            let generation = state.generation;
            self.push(at, Kind::Timer { node, generation });
        }
    }

    fn cancel_timer(&mut self, node: u32) {
        if let Some(state) = self.states.get_mut(node as usize) {
            state.deadline = NONE;
        }
    }

    /// Takes `node` offline: drops its timer; messages to it will be dropped.
    fn go_offline(&mut self, node: u32) -> bool {
        let Some(state) = self.states.get_mut(node as usize) else {
            return false;
        };
        let was = state.online;
        state.online = false;
        state.deadline = NONE;
        state.queued = NONE;
        state.generation = state.generation.wrapping_add(1);
        was
    }

    fn apply_partition(&mut self, groups: &[Vec<NodeId>]) {
        for s in &mut self.states {
            s.group = 0;
        }
        self.partitioned = groups.iter().any(|g| !g.is_empty());
        for (i, group) in groups.iter().enumerate() {
            let g = u32::try_from(i + 1).unwrap_or(u32::MAX);
            for id in group {
                if let Some(s) = self.states.get_mut(id.index()) {
                    s.group = g;
                }
            }
        }
    }

    fn heal(&mut self) {
        self.partitioned = false;
        for s in &mut self.states {
            s.group = 0;
        }
    }
}

/// The handle a node uses, inside a handler or [`Simulator::with_node`], to read the
/// virtual clock, draw randomness, send, arm its timer and emit events.
pub struct Context<'a, N: SimNode> {
    core: &'a mut Core<N>,
    id: u32,
}

impl<N: SimNode> Context<'_, N> {
    /// This node's id.
    #[inline]
    pub fn id(&self) -> NodeId {
        NodeId(self.id)
    }

    /// The virtual now as an [`Instant`]: a fixed base instant (taken when the simulator
    /// was created) plus the virtual time elapsed, so sans-IO cores that take
    /// `now: Instant` work unchanged. Only differences between such instants are
    /// meaningful; do not compare them with instants of another simulator.
    #[inline]
    pub fn now(&self) -> Instant {
        self.core.instant(self.core.now)
    }

    /// Virtual time since the simulation started.
    #[inline]
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.core.now)
    }

    /// The virtual wall-clock time: 2026-01-01T00:00:00Z plus [`Context::elapsed`], for
    /// signed-record expiry and similar.
    #[inline]
    pub fn system_time(&self) -> SystemTime {
        self.core.base_system + Duration::from_nanos(self.core.now)
    }

    /// The simulation's seeded random number generator (one stream for all nodes, so the
    /// draws depend on the order of events, which is itself deterministic). Network
    /// latency and loss use a separate stream, so node draws do not perturb them.
    #[inline]
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.core.rng
    }

    /// Sends `msg` to `to`. The network decides, now, whether it is dropped (sender
    /// offline, different partition groups, loss) and its latency; the target must be
    /// online and still reachable at delivery time. Sending to oneself is allowed and
    /// goes through the network like any other message.
    #[inline]
    pub fn send(&mut self, to: NodeId, msg: N::Message) {
        self.core.send(self.id, to.0, msg);
    }

    /// Arms this node's single timer for `at` (an [`Instant`] from [`Context::now`] or
    /// derived from it, or a [`Duration`] since the simulation start), **replacing** any
    /// armed deadline, earlier or later: the latest call wins. A deadline in the past fires
    /// at the current virtual time, after the events already queued for it. Sans-IO
    /// adapters typically call `set_timer(core.poll_timeout())` after every input. Ignored
    /// while the node is offline.
    #[inline]
    pub fn set_timer(&mut self, at: impl SimTime) {
        let at = at.to_sim_nanos(self.core.base_instant);
        self.core.set_timer(self.id, at);
    }

    /// Arms this node's timer for `delay` from now (see [`Context::set_timer`]).
    #[inline]
    pub fn set_timer_after(&mut self, delay: Duration) {
        let at = self.core.now.saturating_add(duration_nanos(delay));
        self.core.set_timer(self.id, at);
    }

    /// Disarms this node's timer.
    #[inline]
    pub fn cancel_timer(&mut self) {
        self.core.cancel_timer(self.id);
    }

    /// The armed deadline of this node's timer, if any.
    pub fn timer(&self) -> Option<Instant> {
        let d = self.core.states.get(self.id as usize)?.deadline;
        (d != NONE).then(|| self.core.instant(d))
    }

    /// Emits an application event for the test ([`Simulator::drain_events`]).
    #[inline]
    pub fn emit(&mut self, event: N::Event) {
        self.core.events.push(Emitted {
            at: Duration::from_nanos(self.core.now),
            node: NodeId(self.id),
            event,
        });
    }
}

/// A deterministic discrete-event network simulator driving nodes of type `N`.
///
/// Events (message deliveries, timer expiries, scheduled churn and partitions) are kept in
/// a monotone radix heap ordered by `(virtual time, insertion sequence)`, so equal-time events run
/// in the order they were scheduled and one seed always gives one trace
/// ([`Simulator::trace_hash`]). See the crate documentation for a walkthrough.
pub struct Simulator<N: SimNode> {
    nodes: Vec<N>,
    core: Core<N>,
}

impl<N: SimNode> std::fmt::Debug for Context<'_, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("id", &NodeId(self.id))
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

impl<N: SimNode> std::fmt::Debug for Simulator<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("nodes", &self.nodes.len())
            .field("elapsed", &self.elapsed())
            .field("pending", &self.core.queue.len())
            .field("stats", &self.core.stats)
            .field("trace_hash", &self.core.trace)
            .finish_non_exhaustive()
    }
}

impl<N: SimNode> Simulator<N> {
    /// A simulator with no nodes, at virtual time 0, whose randomness all derives from
    /// `seed`.
    pub fn new(seed: u64, config: NetworkConfig) -> Self {
        let mut rng = SimRng::seed_from_u64(seed);
        rng.set_stream(1);
        let mut net_rng = SimRng::seed_from_u64(seed);
        net_rng.set_stream(2);
        let link_seed = mix64(seed ^ 0x6c69_6e6b_5f73_6565); // "link_see"
        Self {
            nodes: Vec::new(),
            core: Core {
                now: 0,
                base_instant: Instant::now(),
                base_system: SystemTime::UNIX_EPOCH + Duration::from_secs(SYSTEM_TIME_BASE_SECS),
                seq: 0,
                queue: RadixQueue::new(),
                states: Vec::new(),
                partitioned: false,
                controls: Vec::new(),
                net: Network::new(config, link_seed),
                net_rng,
                rng,
                events: Vec::new(),
                stats: Stats::default(),
                trace: TRACE_INIT,
            },
        }
    }

    /// Reserves room for `additional` more nodes.
    pub fn reserve(&mut self, additional: usize) {
        self.nodes.reserve(additional);
        self.core.states.reserve(additional);
    }

    fn push_node(&mut self, node: N, online: bool) -> NodeId {
        let id = u32::try_from(self.nodes.len()).expect("more than 2^32 simulated nodes");
        self.nodes.push(node);
        self.core.states.push(NodeState {
            online,
            group: 0,
            deadline: NONE,
            queued: NONE,
            generation: 0,
            stats: NodeStats::default(),
        });
        NodeId(id)
    }

    /// Adds an online node and returns its id (the next dense index). It is in partition
    /// group 0 (reachable by everyone unless a partition is in force). `handle_join` is not
    /// called: use [`Simulator::with_node`] to start it.
    pub fn add_node(&mut self, node: N) -> NodeId {
        self.push_node(node, true)
    }

    /// Adds a node that is offline until `at`, when it comes online and its `handle_join`
    /// runs. Its id is allocated now.
    pub fn schedule_join(&mut self, at: impl SimTime, node: N) -> NodeId {
        let id = self.push_node(node, false);
        self.schedule_control(at, Control::Restore(id.0));
        id
    }

    /// Takes a node offline now: it receives nothing (messages arriving while it is
    /// offline are dropped and counted in [`Stats::dropped_offline`]), its handlers are
    /// not called and its armed timer is dropped. Messages it sent before leaving still
    /// arrive. Its state is kept for [`Simulator::restore_node`]. Returns whether it was
    /// online.
    ///
    /// # Panics
    /// If `id` does not exist.
    pub fn remove_node(&mut self, id: NodeId) -> bool {
        self.check(id);
        self.core.go_offline(id.0)
    }

    /// Brings an offline node back now, with the state it had, and runs its `handle_join`.
    /// Returns whether it was offline (if it was online nothing happens).
    ///
    /// # Panics
    /// If `id` does not exist.
    pub fn restore_node(&mut self, id: NodeId) -> bool {
        self.check(id);
        self.restore(id.0)
    }

    fn restore(&mut self, id: u32) -> bool {
        let Some(state) = self.core.states.get_mut(id as usize) else {
            return false;
        };
        if state.online {
            return false;
        }
        state.online = true;
        let mut ctx = Context {
            core: &mut self.core,
            id,
        };
        self.nodes[id as usize].handle_join(&mut ctx);
        true
    }

    /// Schedules [`Simulator::remove_node`] at `at`.
    pub fn schedule_leave(&mut self, at: impl SimTime, id: NodeId) {
        self.check(id);
        self.schedule_control(at, Control::Leave(id.0));
    }

    /// Schedules [`Simulator::restore_node`] at `at`.
    pub fn schedule_restore(&mut self, at: impl SimTime, id: NodeId) {
        self.check(id);
        self.schedule_control(at, Control::Restore(id.0));
    }

    /// Schedules [`Simulator::partition`] at `at`.
    pub fn schedule_partition<I, G>(&mut self, at: impl SimTime, groups: I)
    where
        I: IntoIterator<Item = G>,
        G: IntoIterator<Item = NodeId>,
    {
        let groups = groups
            .into_iter()
            .map(|g| g.into_iter().collect())
            .collect();
        self.schedule_control(at, Control::Partition(groups));
    }

    /// Schedules [`Simulator::heal`] at `at`.
    pub fn schedule_heal(&mut self, at: impl SimTime) {
        self.schedule_control(at, Control::Heal);
    }

    /// Schedules random churn: from `start` until `end`, each of `nodes` alternates an
    /// online session and an offline gap, starting online. Session and gap lengths are
    /// drawn from the simulation RNG, uniformly from `0..=2 * mean_up` and
    /// `0..=2 * mean_down` (so, on average, a node is online
    /// `mean_up / (mean_up + mean_down)` of the time). Leaves happen only before `end`; a
    /// gap that began before `end` still ends with a restore (and `handle_join`), so every
    /// churned node is back online by `end + 2 * mean_down`. Returns the number of leaves
    /// scheduled.
    ///
    /// # Panics
    /// If a node does not exist.
    pub fn schedule_random_churn(
        &mut self,
        nodes: impl IntoIterator<Item = NodeId>,
        start: impl SimTime,
        end: impl SimTime,
        mean_up: Duration,
        mean_down: Duration,
    ) -> usize {
        let start = start
            .to_sim_nanos(self.core.base_instant)
            .max(self.core.now);
        let end = end.to_sim_nanos(self.core.base_instant);
        let up = duration_nanos(mean_up).saturating_mul(2);
        let down = duration_nanos(mean_down).saturating_mul(2);
        let mut leaves = 0;
        for id in nodes {
            self.check(id);
            let mut t = start;
            loop {
                t = t.saturating_add(self.core.rng.random_range(0..=up));
                if t >= end {
                    break;
                }
                self.schedule_control(Duration::from_nanos(t), Control::Leave(id.0));
                leaves += 1;
                t = t.saturating_add(self.core.rng.random_range(0..=down).max(1));
                self.schedule_control(Duration::from_nanos(t), Control::Restore(id.0));
            }
        }
        leaves
    }

    fn schedule_control(&mut self, at: impl SimTime, control: Control) {
        let at = at.to_sim_nanos(self.core.base_instant).max(self.core.now);
        let slot = u32::try_from(self.core.controls.len()).expect("more than 2^32 controls");
        self.core.controls.push(Some(control));
        self.core.push(at, Kind::Control(slot));
    }

    /// Splits the network now: the nodes of each group can reach each other but no node
    /// of another group. Nodes not listed in any group, and nodes added later, form one
    /// more group together ("the rest"); a node listed twice belongs to the last group
    /// naming it. Replaces any
    /// previous partition. Messages already in flight across the new boundary are dropped
    /// on arrival.
    pub fn partition<I, G>(&mut self, groups: I)
    where
        I: IntoIterator<Item = G>,
        G: IntoIterator<Item = NodeId>,
    {
        let groups: Vec<Vec<NodeId>> = groups
            .into_iter()
            .map(|g| g.into_iter().collect())
            .collect();
        self.core.apply_partition(&groups);
    }

    /// Removes any partition: every node can reach every node again. Messages sent across
    /// the partition while it was in force stay dropped.
    pub fn heal(&mut self) {
        self.core.heal();
    }

    /// Whether a message from `from` to `to` would currently pass the partition (ignores
    /// loss and whether the nodes are online).
    pub fn can_reach(&self, from: NodeId, to: NodeId) -> bool {
        match (
            self.core.states.get(from.index()),
            self.core.states.get(to.index()),
        ) {
            (Some(a), Some(b)) => a.group == b.group,
            _ => false,
        }
    }

    /// Sets the latency model for messages sent from now on.
    pub fn set_latency(&mut self, latency: Latency) {
        self.core.net.set_latency(latency);
    }

    /// Sets the network-wide loss probability for messages sent from now on.
    pub fn set_loss(&mut self, probability: f64) {
        self.core.net.set_loss(probability);
    }

    /// The network's current default configuration.
    pub fn network_config(&self) -> &NetworkConfig {
        self.core.net.config()
    }

    /// Overrides latency and/or loss of the link between `a` and `b`, both directions.
    /// `LinkConfig::default()` removes the override.
    pub fn set_link(&mut self, a: NodeId, b: NodeId, link: LinkConfig) {
        self.core.net.set_link(a.0, b.0, link);
        self.core.net.set_link(b.0, a.0, link);
    }

    /// Overrides latency and/or loss of messages from `from` to `to` only.
    pub fn set_link_one_way(&mut self, from: NodeId, to: NodeId, link: LinkConfig) {
        self.core.net.set_link(from.0, to.0, link);
    }

    #[track_caller]
    fn check(&self, id: NodeId) {
        assert!(
            id.index() < self.nodes.len(),
            "no simulated node {id} (there are {})",
            self.nodes.len()
        );
    }

    /// Number of nodes ever added (online or not); ids are `0..node_count()`.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of nodes currently online.
    pub fn online_count(&self) -> usize {
        self.core.states.iter().filter(|s| s.online).count()
    }

    /// Whether `id` exists and is online.
    pub fn is_online(&self, id: NodeId) -> bool {
        self.core.states.get(id.index()).is_some_and(|s| s.online)
    }

    /// All node ids, in order.
    pub fn node_ids(&self) -> impl ExactSizeIterator<Item = NodeId> + use<N> {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// The node `id`.
    ///
    /// # Panics
    /// If `id` does not exist.
    #[track_caller]
    pub fn node(&self, id: NodeId) -> &N {
        self.check(id);
        &self.nodes[id.index()]
    }

    /// The node `id`, mutably (for inspection or direct changes; to make it send, use
    /// [`Simulator::with_node`]).
    ///
    /// # Panics
    /// If `id` does not exist.
    #[track_caller]
    pub fn node_mut(&mut self, id: NodeId) -> &mut N {
        self.check(id);
        &mut self.nodes[id.index()]
    }

    /// All nodes, indexed by `NodeId::index`.
    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    /// Runs `f` on node `id` with a proper [`Context`] at the current virtual time: the way
    /// a test injects a user command (`core.put(..)`, `core.publish(..)`) and has its
    /// outputs sent. Works on offline nodes too, but their sends are dropped
    /// ([`Stats::dropped_offline`]) and their timers ignored.
    ///
    /// # Panics
    /// If `id` does not exist.
    #[track_caller]
    pub fn with_node<R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut N, &mut Context<'_, N>) -> R,
    ) -> R {
        self.check(id);
        let mut ctx = Context {
            core: &mut self.core,
            id: id.0,
        };
        f(&mut self.nodes[id.index()], &mut ctx)
    }

    /// The virtual now as an [`Instant`] (see [`Context::now`]).
    pub fn now(&self) -> Instant {
        self.core.instant(self.core.now)
    }

    /// Virtual time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.core.now)
    }

    /// The virtual wall-clock time (see [`Context::system_time`]).
    pub fn system_time(&self) -> SystemTime {
        self.core.base_system + Duration::from_nanos(self.core.now)
    }

    /// The simulation's seeded RNG, the same stream nodes get from [`Context::rng`]: for
    /// tests that pick random nodes or keys. See also [`Simulator::fork_rng`].
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.core.rng
    }

    /// A new RNG seeded from the simulation RNG (deterministic, independent stream): for a
    /// node core that owns its RNG.
    pub fn fork_rng(&mut self) -> SimRng {
        let mut seed = <SimRng as SeedableRng>::Seed::default();
        self.core.rng.fill_bytes(&mut seed);
        SimRng::from_seed(seed)
    }

    /// The network-wide counters.
    pub fn stats(&self) -> Stats {
        self.core.stats
    }

    /// One node's counters.
    ///
    /// # Panics
    /// If `id` does not exist.
    #[track_caller]
    pub fn node_stats(&self, id: NodeId) -> NodeStats {
        self.check(id);
        self.core.states[id.index()].stats
    }

    /// A running 64-bit hash over every delivered message `(time, from, to, size)` and
    /// every timer expiry `(time, node)`, in order, starting from a constant (not the seed):
    /// two runs of the same scenario with the same seed give the same hash, and two runs
    /// give equal hashes only if their traces are equal (barring 64-bit collisions).
    pub fn trace_hash(&self) -> u64 {
        self.core.trace
    }

    /// Events emitted so far and not yet drained, oldest first.
    pub fn events(&self) -> &[Emitted<N::Event>] {
        &self.core.events
    }

    /// Removes and returns the events emitted so far, oldest first.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Emitted<N::Event>> {
        self.core.events.drain(..)
    }

    /// Number of queue entries pending (messages in flight, armed timers, including stale
    /// timer entries, and scheduled controls).
    pub fn pending(&self) -> usize {
        self.core.queue.len()
    }

    /// Virtual time of the next queued entry, if any.
    pub fn next_event_time(&self) -> Option<Instant> {
        self.core.queue.peek_time().map(|t| self.core.instant(t))
    }

    /// Processes the next queued entry (advancing the clock to its time). Returns `false`
    /// if the queue was empty.
    pub fn step(&mut self) -> bool {
        let Some(entry) = self.core.queue.pop() else {
            return false;
        };
        self.process(entry);
        true
    }

    /// Processes every entry due at or before `deadline` (an [`Instant`] or a [`Duration`]
    /// since the start), then sets the clock to `deadline` (if it is later than now).
    pub fn run_until(&mut self, deadline: impl SimTime) {
        let deadline = deadline.to_sim_nanos(self.core.base_instant);
        while self
            .core
            .queue
            .peek_time()
            .is_some_and(|time| time <= deadline)
        {
            let Some(entry) = self.core.queue.pop() else {
                break;
            };
            self.process(entry);
        }
        self.core.now = self.core.now.max(deadline);
    }

    /// Like [`Simulator::run_until`], but stops right after the event that makes `done`
    /// true (leaving the clock at that event's time) and returns `true`; returns `false`
    /// if `deadline` came first. `done` is checked once before running and after every
    /// event, so keep it cheap: read a counter kept by the nodes, [`Simulator::events`] or
    /// [`Simulator::stats`], not a scan of 10,000 nodes.
    pub fn run_until_done(
        &mut self,
        deadline: impl SimTime,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        let deadline = deadline.to_sim_nanos(self.core.base_instant);
        if done(self) {
            return true;
        }
        while self
            .core
            .queue
            .peek_time()
            .is_some_and(|time| time <= deadline)
        {
            let Some(entry) = self.core.queue.pop() else {
                break;
            };
            self.process(entry);
            if done(self) {
                return true;
            }
        }
        self.core.now = self.core.now.max(deadline);
        false
    }

    /// Runs for `duration` of virtual time from now (see [`Simulator::run_until`]).
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.core.now.saturating_add(duration_nanos(duration));
        self.run_until(Duration::from_nanos(deadline));
    }

    /// Processes entries until the queue is empty, at most `max_events` of them. Returns
    /// the number processed, or [`SimError::EventLimit`] if the queue is still not empty
    /// after `max_events` (nodes that re-arm periodic timers never go idle: use
    /// [`Simulator::run_until`] for them).
    pub fn run_until_idle(&mut self, max_events: u64) -> Result<u64, SimError> {
        let mut n = 0;
        while n < max_events {
            if !self.step() {
                return Ok(n);
            }
            n += 1;
        }
        if self.core.queue.is_empty() {
            Ok(n)
        } else {
            Err(SimError::EventLimit {
                limit: max_events,
                pending: self.core.queue.len(),
            })
        }
    }

    fn process(&mut self, entry: Entry<N::Message>) {
        let core = &mut self.core;
        core.now = core.now.max(entry.time);
        core.stats.events_processed += 1;
        match entry.kind {
            Kind::Deliver {
                from,
                to,
                size,
                msg,
            } => {
                core.stats.in_flight -= 1;
                let size = u64::from(size);
                let partitioned = core.partitioned;
                let src_group = match partitioned {
                    true => core.states.get(from as usize).map_or(u32::MAX, |s| s.group),
                    false => 0,
                };
                let Some(dst) = core.states.get_mut(to as usize) else {
                    core.stats.dropped_offline += 1;
                    return;
                };
                if !dst.online {
                    core.stats.dropped_offline += 1;
                    return;
                }
                if partitioned && src_group != dst.group {
                    core.stats.dropped_partition += 1;
                    return;
                }
                dst.stats.received += 1;
                dst.stats.bytes_received += size;
                core.stats.delivered += 1;
                core.stats.bytes_delivered += size;
                core.trace(entry.time, (u64::from(from) << 32) | u64::from(to), size);
                let mut ctx = Context { core, id: to };
                self.nodes[to as usize].handle_message(&mut ctx, NodeId(from), msg);
            }
            Kind::Timer { node, generation } => {
                let now = core.now;
                let Some(state) = core.states.get_mut(node as usize) else {
                    return;
                };
                if state.generation != generation || !state.online {
                    return;
                }
                state.queued = NONE;
                if state.deadline == NONE {
                    return;
                }
                if state.deadline > now {
                    // Re-armed later since this entry was queued: re-queue for the deadline.
                    let at = state.deadline;
                    state.generation = state.generation.wrapping_add(1);
                    state.queued = at;
                    let generation = state.generation;
                    core.push(at, Kind::Timer { node, generation });
                    return;
                }
                state.deadline = NONE;
                core.stats.timers_fired += 1;
                core.trace(entry.time, u64::from(node) | (1 << 63), 0);
                let mut ctx = Context { core, id: node };
                self.nodes[node as usize].handle_timer(&mut ctx);
            }
            Kind::Control(slot) => {
                let Some(control) = core.controls.get_mut(slot as usize).and_then(Option::take)
                else {
                    return;
                };
                match control {
                    Control::Leave(id) => {
                        core.go_offline(id);
                    }
                    Control::Restore(id) => {
                        self.restore(id);
                    }
                    Control::Partition(groups) => core.apply_partition(&groups),
                    Control::Heal => core.heal(),
                }
            }
        }
    }
}
