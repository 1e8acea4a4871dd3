use p2p_foundation_identity::IdentityError;

/// Everything that can go wrong in this crate.
///
/// Each message says what happened and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// A frame is larger than the configured limit; it was refused before anything was allocated.
    #[error(
        "frame of {len} bytes exceeds the {max}-byte limit; raise `Config::max_frame_len` on both sides if larger records are intended"
    )]
    FrameTooLarge {
        /// Announced or actual length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A frame could not be decoded.
    #[error("malformed DHT frame: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// A frame carries a protocol version this implementation does not speak.
    #[error("unsupported DHT protocol version {found} (this node speaks version {supported})")]
    UnsupportedVersion {
        /// Version byte found.
        found: u8,
        /// Version this crate implements.
        supported: u8,
    },
    /// A message could not be encoded (for example a record larger than the frame limit).
    #[error("could not encode DHT message: {reason}")]
    Encode {
        /// The encoder's message.
        reason: String,
    },
    /// A record or provider record was refused.
    #[error("record refused: {reason}")]
    RecordRejected {
        /// Why it was refused.
        reason: RejectReason,
    },
    /// A signed envelope could not be created or checked.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The transport could not deliver a request or its response.
    #[error("transport error talking to {peer}: {reason}")]
    Transport {
        /// The remote peer (short form).
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// The request got no answer in time.
    #[error("request to {peer} timed out")]
    Timeout {
        /// The remote peer (short form).
        peer: String,
    },
    /// The DHT node task has stopped (it was shut down or panicked).
    #[error("the DHT node has stopped; create a new one")]
    Stopped,
    /// An I/O error from a socket.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a record was not stored or returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The signature does not verify (tampered or forged).
    #[error("bad signature")]
    BadSignature,
    /// The envelope's expiry has passed.
    #[error("expired")]
    Expired,
    /// The envelope claims to stay valid longer than its type allows (see
    /// `SignedPayload::MAX_LIFETIME`).
    #[error("expiry too far in the future")]
    ExpiryTooFar,
    /// The record names another key than the one it was stored or looked up under.
    #[error("record is for another key")]
    WrongKey,
    /// The encoded record exceeds `Config::max_record_len`.
    #[error("record too large")]
    TooLarge,
    /// The application validator refused it.
    #[error("refused by the application validator")]
    Invalid,
    /// A record with the same or a higher sequence number from the same signer is stored.
    #[error("stale sequence number")]
    Stale,
    /// A live record from another signer holds this key.
    #[error("key held by another signer")]
    Conflict,
    /// The store is full.
    #[error("store full")]
    StoreFull,
}
