use std::path::PathBuf;

/// Everything that can go wrong in this crate.
///
/// Each message says what happened and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A peer id was not 52 base32 characters (or 32 bytes) naming a valid Ed25519 key.
    #[error("invalid peer id: {reason}")]
    InvalidPeerId {
        /// Why the text or bytes were refused.
        reason: &'static str,
    },
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    KeyFileIo {
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key file may be read by other users, so its secret may already be known to them.
    #[error(
        "key file {path} has mode {mode:o}, readable by group or others; \
         run `chmod 600 {path}` if the key is still secret, or generate a new one"
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file did not hold a p2p-foundation Ed25519 secret key.
    #[error("key file {path} is not a p2p-foundation key file: {reason}")]
    MalformedKeyFile {
        /// The key file.
        path: PathBuf,
        /// What was wrong with its contents.
        reason: &'static str,
    },
    /// A signature did not verify against the signer's key and the signed bytes.
    #[error("signature by {signer} does not match the signed data (tampered or forged)")]
    BadSignature {
        /// The peer that claims to have signed.
        signer: String,
    },
    /// An envelope was signed for another purpose than the one it was presented for.
    #[error("envelope was signed for domain {found:?}, expected {expected:?}")]
    WrongDomain {
        /// The domain the reader requires.
        expected: &'static str,
        /// The domain the envelope carries.
        found: String,
    },
    /// An envelope's expiry time has passed.
    #[error("envelope expired at {expired_at_ms} ms since the Unix epoch; it is now {now_ms} ms")]
    Expired {
        /// Expiry in milliseconds since the Unix epoch.
        expired_at_ms: u64,
        /// The time it was checked at, in milliseconds since the Unix epoch.
        now_ms: u64,
    },
    /// An envelope claims to stay valid further into the future than its type allows
    /// ([`crate::SignedPayload::MAX_LIFETIME`]); the signer should sign a shorter expiry
    /// and re-sign before it runs out.
    #[error(
        "envelope expires at {expires_at_ms} ms since the Unix epoch, after the latest \
         accepted expiry of {latest_ms} ms; sign it with a shorter lifetime"
    )]
    ExpiryTooFar {
        /// Expiry in milliseconds since the Unix epoch.
        expires_at_ms: u64,
        /// The latest expiry accepted at the time it was checked.
        latest_ms: u64,
    },
    /// An encoded envelope is larger than the reader accepts.
    #[error("envelope of {len} bytes exceeds the {max}-byte limit")]
    EnvelopeTooLarge {
        /// Size of the encoded envelope or of its payload.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// An encoded envelope could not be parsed.
    #[error("malformed envelope: {reason}")]
    MalformedEnvelope {
        /// What was wrong.
        reason: String,
    },
    /// A payload could not be encoded for signing.
    #[error("could not encode payload: {reason}")]
    PayloadEncode {
        /// The encoder's message.
        reason: String,
    },
    /// A domain-separation tag was empty, too long or not printable ASCII.
    #[error("invalid domain tag {domain:?}: it must be 1 to 64 printable ASCII characters")]
    InvalidDomain {
        /// The refused tag.
        domain: String,
    },
}
