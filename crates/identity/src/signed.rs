//! The signed envelope: see `docs/PROTOCOLS.md` § "Signed envelope" for the byte layout.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{IdentityError, Keypair, PeerId, Signature};

/// First bytes of every envelope: format name and version. They are signed too, so an
/// envelope signature can never be mistaken for a signature made in another format.
const MAGIC: &[u8; 8] = b"p2pfsig1";
/// Longest domain-separation tag.
pub const MAX_DOMAIN_LEN: usize = 64;
/// Default upper bound on an encoded envelope, checked before anything is allocated.
pub const DEFAULT_MAX_ENVELOPE_LEN: usize = 64 * 1024;
/// Default [`SignedPayload::MAX_LIFETIME`]: 30 days.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Bytes of an envelope that are not domain or payload.
const FIXED_LEN: usize = MAGIC.len() + 1 + 8 + 8 + 32 + 4 + 64;

/// A payload type that can be signed into an envelope.
///
/// `DOMAIN` names what the signature is for (for example `"p2pf/dht/record"`): an envelope
/// signed for one domain is refused when read as another, so a signature made for one
/// purpose can never be replayed for a different one.
///
/// ```
/// use p2p_foundation_identity::SignedPayload;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Presence { addrs: Vec<String> }
///
/// impl SignedPayload for Presence {
///     const DOMAIN: &'static str = "example/presence";
/// }
/// ```
pub trait SignedPayload: Serialize + DeserializeOwned {
    /// The domain-separation tag: 1 to 64 printable ASCII characters.
    const DOMAIN: &'static str;

    /// The furthest into the future an envelope of this type may expire, counted from the
    /// time it is verified. [`Signed::verify`] refuses later expiries with
    /// [`IdentityError::ExpiryTooFar`]: an envelope valid for decades could be replayed for
    /// decades. Payloads meant to live longer than [`DEFAULT_MAX_LIFETIME`] raise this.
    const MAX_LIFETIME: Duration = DEFAULT_MAX_LIFETIME;
}

/// A payload signed by its author, with a sequence number (a higher one replaces a lower
/// one) and an expiry.
///
/// Build one with [`Signed::sign`], send [`Signed::as_bytes`], read it back with
/// [`Signed::decode`]. The payload of a `Signed` is not reachable: only [`Signed::verify`]
/// hands it out, as a [`Verified`], so unchecked data cannot be used by mistake. The
/// header fields ([`Signed::signer`], [`Signed::seq`], the expiry) are readable before
/// verification for routing and bookkeeping, but are only claims until then.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use p2p_foundation_identity::{Keypair, Signed, SignedPayload};
///
/// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Note(String);
/// impl SignedPayload for Note { const DOMAIN: &'static str = "example/note"; }
///
/// let author = Keypair::generate();
/// let now = SystemTime::now();
/// let signed = Signed::sign(&author, Note("hi".into()), 1, now + Duration::from_secs(60))?;
///
/// let received = Signed::<Note>::decode(signed.as_bytes())?;
/// let verified = received.verify(now)?;
/// assert_eq!(verified.payload(), &Note("hi".into()));
/// assert_eq!(verified.signer(), author.peer_id());
/// # Ok::<(), p2p_foundation_identity::IdentityError>(())
/// ```
///
/// An unverified envelope has no payload accessor:
///
/// ```compile_fail
/// # use p2p_foundation_identity::{Signed, SignedPayload};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Note(String);
/// # impl SignedPayload for Note { const DOMAIN: &'static str = "example/note"; }
/// fn use_unchecked(received: &Signed<Note>) -> &Note {
///     received.payload()
/// }
/// ```
///
/// ```compile_fail
/// # use p2p_foundation_identity::{Signed, SignedPayload};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Note(String);
/// # impl SignedPayload for Note { const DOMAIN: &'static str = "example/note"; }
/// fn use_unchecked(received: Signed<Note>) -> Note {
///     received.into_payload()
/// }
/// ```
#[derive(Clone)]
pub struct Signed<T> {
    /// The whole encoding; the signature covers `wire[..wire.len() - 64]`.
    wire: Vec<u8>,
    seq: u64,
    expires_at_ms: u64,
    signer: PeerId,
    key: VerifyingKey,
    payload: T,
}

impl<T: SignedPayload> Signed<T> {
    /// Signs `payload` as `keypair`, with sequence number `seq`, valid until `expires_at`.
    pub fn sign(
        keypair: &Keypair,
        payload: T,
        seq: u64,
        expires_at: SystemTime,
    ) -> Result<Self, IdentityError> {
        let domain = T::DOMAIN.as_bytes();
        check_domain(T::DOMAIN)?;
        let encoded = bincode::serde::encode_to_vec(&payload, bincode::config::standard())
            .map_err(|e| IdentityError::PayloadEncode {
                reason: e.to_string(),
            })?;
        let total = FIXED_LEN + domain.len() + encoded.len();
        let payload_len =
            u32::try_from(encoded.len()).map_err(|_| IdentityError::EnvelopeTooLarge {
                len: total,
                max: u32::MAX as usize,
            })?;
        let expires_at_ms = unix_millis(expires_at);
        let signer = keypair.peer_id();

        let mut wire = Vec::with_capacity(total);
        wire.extend_from_slice(MAGIC);
        wire.push(domain.len() as u8);
        wire.extend_from_slice(domain);
        wire.extend_from_slice(&seq.to_be_bytes());
        wire.extend_from_slice(&expires_at_ms.to_be_bytes());
        wire.extend_from_slice(signer.as_bytes());
        wire.extend_from_slice(&payload_len.to_be_bytes());
        wire.extend_from_slice(&encoded);
        let signature = keypair.sign(&wire);
        wire.extend_from_slice(signature.as_bytes());

        let key = keypair.verifying_key();
        Ok(Self {
            wire,
            seq,
            expires_at_ms,
            signer,
            key,
            payload,
        })
    }

    /// Parses an envelope of at most [`DEFAULT_MAX_ENVELOPE_LEN`] bytes.
    ///
    /// This checks the structure and the domain only: call [`Signed::verify`] before
    /// trusting anything in it.
    pub fn decode(bytes: &[u8]) -> Result<Self, IdentityError> {
        Self::decode_with_limit(bytes, DEFAULT_MAX_ENVELOPE_LEN)
    }

    /// Parses an envelope of at most `max_len` bytes; the limit is checked before anything
    /// is allocated.
    pub fn decode_with_limit(bytes: &[u8], max_len: usize) -> Result<Self, IdentityError> {
        if bytes.len() > max_len {
            return Err(IdentityError::EnvelopeTooLarge {
                len: bytes.len(),
                max: max_len,
            });
        }
        let mut reader = Reader { rest: bytes };
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(malformed("does not start with the `p2pfsig1` magic"));
        }
        let domain_len = usize::from(reader.take(1)?[0]);
        let domain = reader.take(domain_len)?;
        if domain != T::DOMAIN.as_bytes() {
            return Err(IdentityError::WrongDomain {
                expected: T::DOMAIN,
                found: String::from_utf8_lossy(domain).into_owned(),
            });
        }
        let seq = reader.u64()?;
        let expires_at_ms = reader.u64()?;
        let signer_bytes: [u8; 32] = reader.array()?;
        let payload_len = reader.u32()? as usize;
        let payload_bytes = reader.take(payload_len)?;
        let _signature: [u8; 64] = reader.array()?;
        if !reader.rest.is_empty() {
            return Err(malformed("trailing bytes after the signature"));
        }
        let payload = decode_payload(payload_bytes)?;
        // Decompressing the key is the expensive step: last, and once.
        let key = VerifyingKey::from_bytes(&signer_bytes)
            .map_err(|_| malformed("signer is not a valid Ed25519 public key"))?;
        let signer = PeerId::from_checked_key(key)
            .map_err(|_| malformed("signer is a small-order Ed25519 point"))?;
        Ok(Self {
            wire: bytes.to_vec(),
            seq,
            expires_at_ms,
            signer,
            key,
            payload,
        })
    }

    /// Checks the signature and the expiry at time `now`, and returns the envelope as
    /// [`Verified`], the only way to its payload.
    ///
    /// Distinct errors: [`IdentityError::BadSignature`] for tampered or forged bytes,
    /// [`IdentityError::Expired`] past the expiry, [`IdentityError::ExpiryTooFar`] for an
    /// expiry more than [`SignedPayload::MAX_LIFETIME`] after `now`. (A wrong domain is
    /// refused by [`Signed::decode`] already, with [`IdentityError::WrongDomain`].)
    pub fn verify(self, now: SystemTime) -> Result<Verified<T>, IdentityError> {
        let split = self.wire.len() - 64;
        let (signed, signature) = self.wire.split_at(split);
        let signature = ed25519_dalek::Signature::from_slice(signature).map_err(|_| {
            IdentityError::BadSignature {
                signer: self.signer.to_string(),
            }
        })?;
        self.key
            .verify_strict(signed, &signature)
            .map_err(|_| IdentityError::BadSignature {
                signer: self.signer.to_string(),
            })?;
        let now_ms = unix_millis(now);
        if now_ms >= self.expires_at_ms {
            return Err(IdentityError::Expired {
                expired_at_ms: self.expires_at_ms,
                now_ms,
            });
        }
        let max_lifetime_ms = u64::try_from(T::MAX_LIFETIME.as_millis()).unwrap_or(u64::MAX);
        let latest_ms = now_ms.saturating_add(max_lifetime_ms);
        if self.expires_at_ms > latest_ms {
            return Err(IdentityError::ExpiryTooFar {
                expires_at_ms: self.expires_at_ms,
                latest_ms,
            });
        }
        Ok(Verified { envelope: self })
    }
}

impl<T> Signed<T> {
    /// The encoded envelope, ready to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.wire
    }

    /// The author's peer id (a claim until [`Signed::verify`] succeeded).
    pub fn signer(&self) -> PeerId {
        self.signer
    }

    /// The sequence number: for one signer and one subject, a higher number supersedes a lower.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Expiry in milliseconds since the Unix epoch.
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }

    /// Expiry as a [`SystemTime`].
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.expires_at_ms)
    }

    /// The signature.
    pub fn signature(&self) -> Signature {
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(&self.wire[self.wire.len() - 64..]);
        Signature::from_bytes(bytes)
    }
}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("signer", &self.signer.short())
            .field("seq", &self.seq)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("len", &self.wire.len())
            .finish_non_exhaustive()
    }
}

/// A [`Signed`] envelope whose signature and expiry [`Signed::verify`] checked: the only
/// way to its payload.
///
/// It has no `Deserialize` (bytes from elsewhere decode as [`Signed`] and must be verified
/// again); it serializes as the envelope's bytes, and [`Verified::into_envelope`] turns it
/// back into a [`Signed`] for sending. So nothing read from the wire can be taken as
/// checked:
///
/// ```compile_fail
/// # use p2p_foundation_identity::{SignedPayload, Verified};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Note(String);
/// # impl SignedPayload for Note { const DOMAIN: &'static str = "example/note"; }
/// fn trust_the_wire(json: &str) -> serde_json::Result<Verified<Note>> {
///     serde_json::from_str(json)
/// }
/// ```
#[derive(Clone)]
pub struct Verified<T> {
    envelope: Signed<T>,
}

impl<T> PartialEq for Verified<T> {
    fn eq(&self, other: &Self) -> bool {
        self.envelope == other.envelope
    }
}

impl<T> Eq for Verified<T> {}

impl<T> Verified<T> {
    /// The checked payload.
    pub fn payload(&self) -> &T {
        &self.envelope.payload
    }

    /// Takes the checked payload out.
    pub fn into_payload(self) -> T {
        self.envelope.payload
    }

    /// The envelope, for sending.
    pub fn envelope(&self) -> &Signed<T> {
        &self.envelope
    }

    /// Turns back into the envelope, for sending.
    pub fn into_envelope(self) -> Signed<T> {
        self.envelope
    }

    /// The encoded envelope.
    pub fn as_bytes(&self) -> &[u8] {
        self.envelope.as_bytes()
    }

    /// The author, whose signature was checked.
    pub fn signer(&self) -> PeerId {
        self.envelope.signer
    }

    /// The sequence number: for one signer and one subject, a higher number supersedes a lower.
    pub fn seq(&self) -> u64 {
        self.envelope.seq
    }

    /// Expiry in milliseconds since the Unix epoch.
    pub fn expires_at_ms(&self) -> u64 {
        self.envelope.expires_at_ms
    }

    /// Expiry as a [`SystemTime`].
    pub fn expires_at(&self) -> SystemTime {
        self.envelope.expires_at()
    }

    /// The signature.
    pub fn signature(&self) -> Signature {
        self.envelope.signature()
    }
}

impl<T> From<Verified<T>> for Signed<T> {
    fn from(verified: Verified<T>) -> Self {
        verified.envelope
    }
}

impl<T: fmt::Debug> fmt::Debug for Verified<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("signer", &self.envelope.signer.short())
            .field("seq", &self.envelope.seq)
            .field("expires_at_ms", &self.envelope.expires_at_ms)
            .field("payload", &self.envelope.payload)
            .finish()
    }
}

impl<T> Serialize for Verified<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.envelope.serialize(serializer)
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.wire == other.wire
    }
}

impl<T> Eq for Signed<T> {}

impl<T> Serialize for Signed<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.wire)
    }
}

impl<'de, T: SignedPayload> serde::Deserialize<'de> for Signed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(PhantomData<T>);
        impl<'de, T: SignedPayload> serde::de::Visitor<'de> for Visit<T> {
            type Value = Signed<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an encoded signed envelope")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Signed::decode(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    if bytes.len() >= DEFAULT_MAX_ENVELOPE_LEN {
                        return Err(serde::de::Error::custom(IdentityError::EnvelopeTooLarge {
                            len: bytes.len() + 1,
                            max: DEFAULT_MAX_ENVELOPE_LEN,
                        }));
                    }
                    bytes.push(b);
                }
                Signed::decode(&bytes).map_err(serde::de::Error::custom)
            }
        }
        deserializer.deserialize_bytes(Visit(PhantomData))
    }
}

/// Milliseconds since the Unix epoch (0 before it, saturating far in the future).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(p2p_foundation_identity::unix_millis(UNIX_EPOCH + Duration::from_secs(2)), 2000);
/// ```
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Decodes a payload of `bytes.len()` bytes with bincode.
///
/// bincode bounds what a decode may claim (string and byte lengths are claimed before
/// anything is allocated) only through a compile-time limit. The smallest of a few limits
/// that is at least the payload's own length is used: a claim can never exceed 16 times
/// the bytes actually present (or 64 KiB), and a payload the caller's envelope limit
/// admitted is never refused for its size.
fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, IdentityError> {
    use bincode::config::{Configuration, standard};
    fn run<T: DeserializeOwned, const N: usize>(
        bytes: &[u8],
        config: Configuration<
            bincode::config::LittleEndian,
            bincode::config::Varint,
            bincode::config::Limit<N>,
        >,
    ) -> Result<T, IdentityError> {
        let (payload, used) = bincode::serde::decode_from_slice(bytes, config)
            .map_err(|e| malformed(&format!("payload does not decode: {e}")))?;
        if used != bytes.len() {
            return Err(malformed("payload has trailing bytes"));
        }
        Ok(payload)
    }
    const KIB_64: usize = 1 << 16;
    const MIB_1: usize = 1 << 20;
    const MIB_16: usize = 1 << 24;
    const MIB_256: usize = 1 << 28;
    const GIB_4: usize = u32::MAX as usize;
    let len = bytes.len();
    if len <= KIB_64 {
        run(bytes, standard().with_limit::<KIB_64>())
    } else if len <= MIB_1 {
        run(bytes, standard().with_limit::<MIB_1>())
    } else if len <= MIB_16 {
        run(bytes, standard().with_limit::<MIB_16>())
    } else if len <= MIB_256 {
        run(bytes, standard().with_limit::<MIB_256>())
    } else {
        run(bytes, standard().with_limit::<GIB_4>())
    }
}

fn check_domain(domain: &str) -> Result<(), IdentityError> {
    let ok = !domain.is_empty()
        && domain.len() <= MAX_DOMAIN_LEN
        && domain.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidDomain {
            domain: domain.to_owned(),
        })
    }
}

fn malformed(reason: &str) -> IdentityError {
    IdentityError::MalformedEnvelope {
        reason: reason.to_owned(),
    }
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IdentityError> {
        if self.rest.len() < n {
            return Err(malformed("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], IdentityError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, IdentityError> {
        self.array().map(u64::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, IdentityError> {
        self.array().map(u32::from_be_bytes)
    }
}

/// Deserializes exactly `N` bytes from a binary serde format (as bytes or as a sequence).
pub(crate) fn fixed_bytes<'de, D, const N: usize>(deserializer: D) -> Result<[u8; N], D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visit<const N: usize>;
    impl<'de, const N: usize> serde::de::Visitor<'de> for Visit<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = [0u8; N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
            }
            if seq.next_element::<u8>()?.is_some() {
                return Err(serde::de::Error::invalid_length(N + 1, &self));
            }
            Ok(out)
        }
    }
    deserializer.deserialize_bytes(Visit::<N>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Note {
        text: String,
        n: u32,
    }
    impl SignedPayload for Note {
        const DOMAIN: &'static str = "test/note";
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Other {
        text: String,
        n: u32,
    }
    impl SignedPayload for Other {
        const DOMAIN: &'static str = "test/other";
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn note() -> Note {
        Note {
            text: "hello".into(),
            n: 7,
        }
    }

    #[test]
    fn sign_decode_verify() {
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let signed = Signed::sign(&keypair, note(), 3, at(10_000)).unwrap();
        let back = Signed::<Note>::decode(signed.as_bytes()).unwrap();
        assert_eq!(back, signed);
        let verified = back.clone().verify(at(9_999)).unwrap();
        assert_eq!(verified.payload(), &note());
        assert_eq!(verified.signer(), keypair.peer_id());
        assert_eq!(verified.as_bytes(), signed.as_bytes());
        assert_eq!(verified.into_envelope(), signed);
        assert_eq!(back.seq(), 3);
        assert_eq!(back.signer(), keypair.peer_id());
        assert_eq!(back.expires_at(), at(10_000));
        assert_eq!(signed.signature(), back.signature());
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let signed = Signed::sign(&keypair, note(), 3, at(10_000)).unwrap();
        let wire = signed.as_bytes();
        for byte in 0..wire.len() {
            for bit in 0..8 {
                let mut bad = wire.to_vec();
                bad[byte] ^= 1 << bit;
                // Either the structure no longer parses, or the signature fails: never accepted.
                if let Ok(decoded) = Signed::<Note>::decode(&bad) {
                    let err = decoded.verify(at(0)).unwrap_err();
                    assert!(
                        matches!(err, IdentityError::BadSignature { .. }),
                        "{byte}/{bit}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn tampered_payload_is_bad_signature() {
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let signed = Signed::sign(&keypair, note(), 3, at(10_000)).unwrap();
        let mut bad = signed.as_bytes().to_vec();
        let pos = bad.windows(5).position(|w| w == b"hello").unwrap();
        bad[pos] = b'j';
        // Still well formed (a payload that decodes), so only the signature catches it.
        let decoded = Signed::<Note>::decode(&bad).unwrap();
        assert!(matches!(
            decoded.verify(at(0)),
            Err(IdentityError::BadSignature { .. })
        ));
    }

    #[test]
    fn small_order_signer_is_malformed() {
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let signed = Signed::sign(&keypair, note(), 3, at(10_000)).unwrap();
        let mut bad = signed.as_bytes().to_vec();
        let at_signer = MAGIC.len() + 1 + Note::DOMAIN.len() + 16;
        assert_eq!(
            &bad[at_signer..at_signer + 32],
            keypair.peer_id().as_bytes()
        );
        let mut identity = [0u8; 32];
        identity[0] = 1;
        bad[at_signer..at_signer + 32].copy_from_slice(&identity);
        assert!(matches!(
            Signed::<Note>::decode(&bad),
            Err(IdentityError::MalformedEnvelope { .. })
        ));
    }

    #[test]
    fn wrong_domain_is_rejected() {
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let signed = Signed::sign(&keypair, note(), 3, at(10_000)).unwrap();
        let err = Signed::<Other>::decode(signed.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, IdentityError::WrongDomain { expected: "test/other", found } if found == "test/note"),
            "{err}"
        );
    }

    #[test]
    fn expired_is_rejected() {
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let signed = Signed::sign(&keypair, note(), 3, at(10_000)).unwrap();
        let err = signed.verify(at(10_000)).unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::Expired {
                    expired_at_ms: 10_000,
                    now_ms: 10_000
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn oversized_is_rejected_before_parsing() {
        let big = vec![0u8; DEFAULT_MAX_ENVELOPE_LEN + 1];
        assert!(matches!(
            Signed::<Note>::decode(&big),
            Err(IdentityError::EnvelopeTooLarge { .. })
        ));
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let signed = Signed::sign(&keypair, note(), 3, at(10_000)).unwrap();
        let err = Signed::<Note>::decode_with_limit(signed.as_bytes(), 10).unwrap_err();
        assert!(matches!(
            err,
            IdentityError::EnvelopeTooLarge { max: 10, .. }
        ));
    }

    /// A caller that raises the envelope limit gets payloads up to that limit: the payload
    /// decoder's own bound must not stay at the default 64 KiB.
    #[test]
    fn raised_limit_admits_large_payloads() {
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let big = Note {
            text: "x".repeat(100 * 1024),
            n: 1,
        };
        let signed = Signed::sign(&keypair, big.clone(), 1, at(10_000)).unwrap();
        assert!(matches!(
            Signed::<Note>::decode(signed.as_bytes()),
            Err(IdentityError::EnvelopeTooLarge { .. })
        ));
        let back = Signed::<Note>::decode_with_limit(signed.as_bytes(), 1024 * 1024).unwrap();
        assert_eq!(back.verify(at(9_999)).unwrap().payload(), &big);
    }

    /// An envelope that claims to stay valid for decades is a replay that never ends: the
    /// reader refuses expiries beyond the payload type's horizon.
    #[test]
    fn expiry_beyond_the_horizon_is_refused() {
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let now = at(1_800_000_000_000);
        let far = now + Duration::from_secs(10 * 365 * 24 * 3600);
        let latest_ms = unix_millis(now + DEFAULT_MAX_LIFETIME);
        let signed = Signed::sign(&keypair, note(), 1, far).unwrap();
        let err = signed.verify(now).unwrap_err();
        assert!(
            matches!(err, IdentityError::ExpiryTooFar { latest_ms: l, .. } if l == latest_ms),
            "{err}"
        );
        let forever = Signed::sign(&keypair, note(), 1, at(u64::MAX)).unwrap();
        assert!(matches!(
            forever.verify(now),
            Err(IdentityError::ExpiryTooFar { .. })
        ));
        // Exactly at the horizon is still fine.
        let edge = Signed::sign(&keypair, note(), 1, at(latest_ms)).unwrap();
        assert!(edge.verify(now).is_ok());

        // A type that needs longer lifetimes says so.
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Yearly(u8);
        impl SignedPayload for Yearly {
            const DOMAIN: &'static str = "test/yearly";
            const MAX_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);
        }
        let year = now + Duration::from_secs(365 * 24 * 3600);
        let yearly = Signed::sign(&keypair, Yearly(1), 1, year).unwrap();
        assert!(yearly.verify(now).is_ok());
        let decade = Signed::sign(&keypair, Yearly(1), 1, far).unwrap();
        assert!(decade.verify(now).is_err());
    }

    #[test]
    fn truncations_and_trailing_bytes_are_malformed() {
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let signed = Signed::sign(&keypair, note(), 3, at(10_000)).unwrap();
        let wire = signed.as_bytes();
        for len in 0..wire.len() {
            assert!(
                Signed::<Note>::decode(&wire[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        let mut long = wire.to_vec();
        long.push(0);
        assert!(matches!(
            Signed::<Note>::decode(&long),
            Err(IdentityError::MalformedEnvelope { .. })
        ));
    }

    #[test]
    fn nests_in_serde_formats() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Outer {
            record: Signed<Note>,
        }
        let keypair = Keypair::from_secret_bytes([9; 32]);
        let record = Signed::sign(&keypair, note(), 1, at(10_000)).unwrap();
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(
            Outer {
                record: record.clone(),
            },
            config,
        )
        .unwrap();
        let (outer, _): (Outer, _) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(outer.record, record);
        let json = serde_json::to_string(&Outer {
            record: record.clone(),
        })
        .unwrap();
        let outer: Outer = serde_json::from_str(&json).unwrap();
        assert_eq!(outer.record, record);
    }

    proptest! {
        #[test]
        fn round_trip(seed in any::<[u8; 32]>(), text in ".{0,200}", n in any::<u32>(),
                      seq in any::<u64>(), expiry in 1u64..u64::MAX) {
            let keypair = Keypair::from_secret_bytes(seed);
            let payload = Note { text, n };
            let signed = Signed::sign(&keypair, payload.clone(), seq, at(expiry)).unwrap();
            let back = Signed::<Note>::decode(signed.as_bytes()).unwrap();
            prop_assert_eq!(back.seq(), seq);
            prop_assert_eq!(back.expires_at_ms(), expiry);
            prop_assert_eq!(back.verify(at(expiry - 1)).unwrap().into_payload(), payload);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(s) = Signed::<Note>::decode(&bytes) {
                let _ = s.verify(at(0));
            }
        }
    }
}
