/// Errors of the simulator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// [`Simulator::run_until_idle`](crate::Simulator::run_until_idle) processed its event
    /// limit and the queue is still not empty: some node keeps re-arming a timer or keeps
    /// sending. Run for a bounded virtual time with `run_until` / `run_for` instead, or
    /// raise the limit.
    #[error(
        "event limit of {limit} reached with {pending} events still queued: a node keeps re-arming a \
         timer or sending; use run_until/run_for, or raise the limit"
    )]
    EventLimit {
        /// The limit that was reached.
        limit: u64,
        /// Queue entries still pending.
        pending: usize,
    },
}
