/// Network-wide message counters ([`Simulator::stats`](crate::Simulator::stats)).
///
/// At every moment `sent == delivered + dropped_loss + dropped_partition + dropped_offline
/// + in_flight` ([`Stats::is_consistent`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages handed to [`Context::send`](crate::Context::send).
    pub sent: u64,
    /// Messages delivered to their target's `handle_message`.
    pub delivered: u64,
    /// Messages lost to the loss probability (global or per link).
    pub dropped_loss: u64,
    /// Messages dropped because sender and target were in different partition groups, at
    /// send time or at delivery time.
    pub dropped_partition: u64,
    /// Messages dropped because the target was offline at delivery time (or the sender
    /// was offline when sending, or the target id does not exist).
    pub dropped_offline: u64,
    /// Messages queued and not yet delivered or dropped.
    pub in_flight: u64,
    /// Sum of [`SimNode::message_size`](crate::SimNode::message_size) over sent messages.
    pub bytes_sent: u64,
    /// Sum of [`SimNode::message_size`](crate::SimNode::message_size) over delivered messages.
    pub bytes_delivered: u64,
    /// Timer expiries handed to `handle_timer`.
    pub timers_fired: u64,
    /// Queue entries processed (deliveries, drops at delivery, timer expiries, stale timer
    /// entries, churn and partition changes): the simulator's unit of work.
    pub events_processed: u64,
}

impl Stats {
    /// All dropped messages: loss + partition + offline.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_partition + self.dropped_offline
    }

    /// Whether the counters add up: `sent == delivered + dropped() + in_flight`.
    pub fn is_consistent(&self) -> bool {
        self.sent == self.delivered + self.dropped() + self.in_flight
    }
}

/// One node's message counters ([`Simulator::node_stats`](crate::Simulator::node_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Messages this node sent.
    pub sent: u64,
    /// Messages delivered to this node.
    pub received: u64,
    /// Bytes this node sent.
    pub bytes_sent: u64,
    /// Bytes delivered to this node.
    pub bytes_received: u64,
}
