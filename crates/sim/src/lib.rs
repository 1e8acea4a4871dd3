#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod config;
mod error;
mod queue;
mod simulator;
mod stats;
mod time;

pub use config::{Latency, LinkConfig, NetworkConfig};
pub use error::SimError;
pub use simulator::{Context, Emitted, Simulator};
pub use stats::{NodeStats, Stats};
pub use time::SimTime;

/// The random number generator handed to nodes ([`Context::rng`]) and tests
/// ([`Simulator::rng`]): ChaCha8, seeded from the simulation seed.
pub type SimRng = rand_chacha::ChaCha8Rng;

/// A simulated node's identifier: a dense index, `0..node_count`, in the order nodes were
/// added ([`Simulator::add_node`], [`Simulator::schedule_join`]).
///
/// Dense ids let a test adapter map them to protocol identities with a plain `Vec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The id as a `usize` index (for `Vec` lookups).
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl From<NodeId> for usize {
    fn from(id: NodeId) -> usize {
        id.index()
    }
}

/// A node the simulator can drive: usually a thin adapter around a protocol's sans-IO core.
///
/// Every handler receives a [`Context`] through which the node reads the virtual clock,
/// draws randomness, sends messages, arms its single timer and emits events for the test.
/// Handlers are only ever called while the node is online.
pub trait SimNode: Sized {
    /// The message type exchanged between nodes. It travels by value: no `Clone` needed
    /// unless the node itself clones (for example to broadcast).
    type Message;
    /// Application events the node emits with [`Context::emit`]; the simulator collects
    /// them in order for the test ([`Simulator::drain_events`]).
    type Event;

    /// Size of a message in bytes, for the byte counters in [`Stats`] and [`NodeStats`]
    /// and for the trace hash. Defaults to 0 (byte counters stay at 0).
    fn message_size(_msg: &Self::Message) -> usize {
        0
    }

    /// A message from `from` arrived.
    fn handle_message(&mut self, ctx: &mut Context<'_, Self>, from: NodeId, msg: Self::Message);

    /// The node's timer (armed with [`Context::set_timer`]) expired. Defaults to doing
    /// nothing.
    fn handle_timer(&mut self, _ctx: &mut Context<'_, Self>) {}

    /// The node came online after being offline: a scheduled join
    /// ([`Simulator::schedule_join`]), a restore ([`Simulator::restore_node`],
    /// [`Simulator::schedule_restore`]). Not called by [`Simulator::add_node`]. Defaults to
    /// doing nothing; a protocol adapter typically bootstraps or re-arms its timer here.
    fn handle_join(&mut self, _ctx: &mut Context<'_, Self>) {}
}
