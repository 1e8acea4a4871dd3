use std::net::SocketAddr;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatError {
    /// The datagram is shorter than what its header or an attribute header announces.
    #[error("STUN message truncated: needed {needed} bytes, had {had}")]
    Truncated {
        /// Bytes required.
        needed: usize,
        /// Bytes present.
        had: usize,
    },
    /// The datagram is not a STUN message (leading bits, magic cookie or length do not fit).
    #[error("not a STUN message: {0}")]
    NotStun(&'static str),
    /// The message is longer than [`crate::stun::MAX_MESSAGE_LEN`].
    #[error("STUN message of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Length of the offending message.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More attributes than [`crate::stun::MAX_ATTRIBUTES`].
    #[error("STUN message carries more than {0} attributes")]
    TooManyAttributes(usize),
    /// A known attribute has a malformed value.
    #[error("malformed STUN attribute 0x{attr_type:04x}: {reason}")]
    BadAttribute {
        /// The attribute type.
        attr_type: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The FINGERPRINT attribute does not match the message's CRC-32.
    #[error("STUN FINGERPRINT mismatch: carried 0x{carried:08x}, computed 0x{computed:08x}")]
    FingerprintMismatch {
        /// Value in the message.
        carried: u32,
        /// Value computed over the message.
        computed: u32,
    },
    /// A value to be encoded does not fit the wire format (for example a SOFTWARE string too long).
    #[error("cannot encode STUN attribute: {0}")]
    Encode(&'static str),
    /// A socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// No answer after every retransmission; the server is unreachable or UDP is blocked.
    #[error(
        "STUN server {server} did not answer after {sends} requests; check it is reachable over UDP"
    )]
    Timeout {
        /// The server asked.
        server: SocketAddr,
        /// Requests sent.
        sends: u32,
    },
    /// The server answered with an error response.
    #[error("STUN server {server} answered error {code}: {reason}")]
    ErrorResponse {
        /// The server.
        server: SocketAddr,
        /// The error code (300..=699).
        code: u16,
        /// The server's reason phrase.
        reason: String,
    },
    /// A success response carries neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS.
    #[error("STUN server {0} answered without a mapped address")]
    NoMappedAddress(SocketAddr),
    /// The server's response contains comprehension-required attributes this crate does not know.
    #[error("STUN response carries unknown comprehension-required attributes {0:04x?}")]
    UnknownAttributes(Vec<u16>),
    /// Hole punching found no working path within its bounds; fall back to a relay.
    #[error("hole punching failed: {reason}")]
    PunchFailed {
        /// What was tried and what was heard.
        reason: String,
    },
    /// The rendezvous did not introduce the peer within the bounded registrations.
    #[error(
        "rendezvous {server} did not introduce the peer after {sends} registrations; is the peer registered under the same session?"
    )]
    RendezvousTimeout {
        /// The rendezvous server.
        server: SocketAddr,
        /// Registrations sent.
        sends: u32,
    },
    /// The relay did not pair us with the other peer within the bounded allocations.
    #[error(
        "relay {relay} did not pair the session after {sends} allocations; has the peer allocated under the same session?"
    )]
    RelayTimeout {
        /// The relay server.
        relay: SocketAddr,
        /// ALLOCATE requests sent.
        sends: u32,
    },
    /// Signing a rendezvous registration or relay allocation failed.
    #[error("cannot sign: {0}")]
    Sign(p2p_foundation_identity::IdentityError),
}
