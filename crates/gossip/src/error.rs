/// Everything that can go wrong in this crate.
///
/// Each message says what happened and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// A topic name was empty or longer than 256 bytes.
    #[error("topic name of {len} bytes: a topic is 1 to 256 bytes of UTF-8")]
    InvalidTopic {
        /// Its length in bytes.
        len: usize,
    },
    /// A frame's length prefix announced more than the limit; nothing was allocated.
    #[error("frame of {len} bytes exceeds the {max}-byte limit (Config::max_frame_len)")]
    FrameTooLarge {
        /// Announced body length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A message payload exceeded the limit.
    #[error("message of {len} bytes exceeds the {max}-byte limit (Config::max_message_size)")]
    MessageTooLarge {
        /// Payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// An IHAVE or IWANT listed more ids than allowed.
    #[error("{len} message ids in one frame exceed the limit of {max} (Config::max_ihave_len)")]
    TooManyIds {
        /// Number of ids.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A frame carried a wire version this implementation does not speak.
    #[error("unsupported gossip wire version {version}; this node speaks version 1")]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
    },
    /// A frame could not be parsed.
    #[error("malformed gossip frame: {reason}")]
    MalformedFrame {
        /// What was wrong.
        reason: &'static str,
    },
    /// A message's or acknowledgement's signature did not verify.
    #[error("signature by {author} does not match the message (forged or corrupted)")]
    BadSignature {
        /// The claimed signer.
        author: String,
    },
    /// A configuration value is inconsistent.
    #[error("invalid gossip configuration: {reason}")]
    InvalidConfig {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// Publishing found no peer to send to.
    #[error(
        "no peers to publish to on topic {topic}: connect to peers subscribed to it first \
         (or wait for their subscriptions to arrive)"
    )]
    NoPeers {
        /// The topic.
        topic: String,
    },
    /// Too many acknowledgement requests are in flight.
    #[error("{pending} publications already await acknowledgements (limit {max}); wait for them")]
    TooManyPendingAcks {
        /// In flight.
        pending: usize,
        /// Limit (Config::max_pending_acks).
        max: usize,
    },
    /// An I/O error in the driver.
    #[error("gossip transport I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The driver task has stopped.
    #[error("the gossip driver has stopped")]
    DriverStopped,
}
