use std::fmt;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::kad::Key;
use crate::{IdentityError, base32};

/// Length of a peer id in its text form: 32 bytes as unpadded base32.
const TEXT_LEN: usize = 52;
/// Length of [`PeerId::short`]'s form.
const SHORT_LEN: usize = 10;

/// A node's identity: its 32-byte Ed25519 public key.
///
/// Every `PeerId` names a valid Ed25519 point of large order: the constructors check it. The text form is
/// 52 lowercase base32 characters (RFC 4648 alphabet, no padding); parsing accepts any case.
///
/// ```
/// use p2p_foundation_identity::{Keypair, PeerId};
///
/// let peer = Keypair::from_secret_bytes([1; 32]).peer_id();
/// let upper = peer.to_string().to_uppercase();
/// assert_eq!(upper.parse::<PeerId>().unwrap(), peer);
/// println!("connected to {}", peer.short()); // 10 characters, for logs
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// Builds a peer id from a 32-byte Ed25519 public key, checking that it is a valid point
    /// of large order.
    ///
    /// Small-order points (the identity and the seven other torsion points) decode as valid
    /// keys, but no signature by them passes the strict verification every check here uses:
    /// a peer id naming one could never prove anything, so it is refused up front.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, IdentityError> {
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| IdentityError::InvalidPeerId {
            reason: "not a valid Ed25519 public key",
        })?;
        Self::from_checked_key(key)
    }

    /// Wraps a decoded key from an untrusted source, refusing small-order points.
    pub(crate) fn from_checked_key(key: VerifyingKey) -> Result<Self, IdentityError> {
        if key.is_weak() {
            return Err(IdentityError::InvalidPeerId {
                reason: "a small-order Ed25519 point, which can sign nothing verifiably",
            });
        }
        Ok(Self::from_verifying_key(key))
    }

    /// Builds a peer id from a byte slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdentityError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| IdentityError::InvalidPeerId {
            reason: "a peer id is 32 bytes",
        })?;
        Self::from_bytes(bytes)
    }

    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Self {
        Self(key.to_bytes())
    }

    /// The 32 bytes of the public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The Ed25519 public key this id names. Every constructor checked the point, so this
    /// only fails if that invariant were broken; callers then refuse the signature.
    pub(crate) fn verifying_key(&self) -> Result<VerifyingKey, IdentityError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::BadSignature {
            signer: self.to_string(),
        })
    }

    /// This peer's position in the Kademlia key space: the SHA-256 of its public key.
    ///
    /// ```
    /// # use p2p_foundation_identity::Keypair;
    /// let a = Keypair::from_secret_bytes([1; 32]).peer_id();
    /// let b = Keypair::from_secret_bytes([2; 32]).peer_id();
    /// assert_eq!(a.kad_key().distance(&a.kad_key()).bucket_index(), None);
    /// assert!(a.kad_key().distance(&b.kad_key()).bucket_index().is_some());
    /// ```
    pub fn kad_key(&self) -> Key {
        Key::from_bytes(Sha256::digest(self.0).into())
    }

    /// Checks that `signature` is this peer's signature over `message`.
    ///
    /// Uses strict verification: non-canonical signatures and small-order keys are refused.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), IdentityError> {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.verifying_key()?
            .verify_strict(message, &signature)
            .map_err(|_| IdentityError::BadSignature {
                signer: self.to_string(),
            })
    }

    /// A 10-character prefix of the text form, for logs. Not unique: never use it as a key.
    pub fn short(&self) -> ShortPeerId {
        ShortPeerId(*self)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode(&self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != TEXT_LEN {
            return Err(IdentityError::InvalidPeerId {
                reason: "a peer id is 52 base32 characters",
            });
        }
        let bytes = base32::decode(text).ok_or(IdentityError::InvalidPeerId {
            reason: "a peer id uses only the letters a-z and digits 2-7",
        })?;
        Self::from_slice(&bytes)
    }
}

impl serde::Serialize for PeerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for PeerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            let bytes: [u8; 32] = crate::signed::fixed_bytes(deserializer)?;
            Self::from_bytes(bytes).map_err(serde::de::Error::custom)
        }
    }
}

/// The short, log-friendly form of a [`PeerId`], from [`PeerId::short`].
#[derive(Clone, Copy)]
pub struct ShortPeerId(PeerId);

impl fmt::Display for ShortPeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode(&self.0.0[..7])[..SHORT_LEN])
    }
}

impl fmt::Debug for ShortPeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An Ed25519 signature: 64 bytes.
///
/// ```
/// use p2p_foundation_identity::{Keypair, Signature};
///
/// let signature: Signature = Keypair::generate().sign(b"data");
/// assert_eq!(Signature::from_bytes(*signature.as_bytes()), signature);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Wraps 64 signature bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The 64 signature bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", base32::encode(&self.0))
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&base32::encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            let bytes = base32::decode(&text)
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .ok_or_else(|| serde::de::Error::custom("a signature is 64 bytes of base32"))?;
            Ok(Self(bytes))
        } else {
            crate::signed::fixed_bytes(deserializer).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use proptest::prelude::*;

    /// RFC 8032 section 7.1, test 1: known secret, public key, text form and Kademlia key.
    #[test]
    fn known_answer() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let secret: [u8; 32] =
            hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .try_into()
                .unwrap();
        let peer = Keypair::from_secret_bytes(secret).peer_id();
        assert_eq!(
            peer.as_bytes().to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        assert_eq!(
            peer.to_string(),
            "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena"
        );
        assert_eq!(
            peer.kad_key().as_bytes().to_vec(),
            hex("21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9")
        );
    }

    #[test]
    fn refuses_wrong_length_and_alphabet() {
        assert!("abc".parse::<PeerId>().is_err());
        let good = Keypair::from_secret_bytes([3; 32]).peer_id().to_string();
        let bad = format!("{}1", &good[..51]);
        assert!(bad.parse::<PeerId>().is_err());
        assert!(PeerId::from_slice(&[0; 31]).is_err());
    }

    /// Small-order points (the identity, the point of order 2, ...) are valid encodings but
    /// `verify_strict` refuses every signature by them: they must not name a peer.
    #[test]
    fn small_order_points_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        // y = -1 (p - 1, little-endian): the point of order 2.
        let mut order_two = [0xff; 32];
        order_two[0] = 0xec;
        order_two[31] = 0x7f;
        for bytes in [identity, order_two, [0; 32]] {
            assert!(
                matches!(
                    PeerId::from_bytes(bytes),
                    Err(IdentityError::InvalidPeerId { .. })
                ),
                "{bytes:02x?}"
            );
            let text = base32::encode(&bytes);
            assert!(text.parse::<PeerId>().is_err(), "{text}");
            let bin = bincode::serde::encode_to_vec(
                serde_bytes_array(&bytes),
                bincode::config::standard(),
            )
            .unwrap();
            let back: Result<(PeerId, usize), _> =
                bincode::serde::decode_from_slice(&bin, bincode::config::standard());
            assert!(back.is_err(), "serde accepted {bytes:02x?}");
        }
    }

    /// Serializes 32 bytes the way a `PeerId` is in binary formats.
    fn serde_bytes_array(bytes: &[u8; 32]) -> impl serde::Serialize + '_ {
        struct Bytes<'a>(&'a [u8; 32]);
        impl serde::Serialize for Bytes<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(bytes)
    }

    #[test]
    fn short_form_is_a_prefix() {
        let peer = Keypair::from_secret_bytes([4; 32]).peer_id();
        let short = peer.short().to_string();
        assert_eq!(short.len(), SHORT_LEN);
        assert!(peer.to_string().starts_with(&short));
    }

    #[test]
    fn wrong_signer_fails() {
        let a = Keypair::from_secret_bytes([5; 32]);
        let b = Keypair::from_secret_bytes([6; 32]);
        let signature = a.sign(b"m");
        assert!(b.peer_id().verify(b"m", &signature).is_err());
        assert!(a.peer_id().verify(b"n", &signature).is_err());
    }

    proptest! {
        #[test]
        fn text_round_trip(seed in any::<[u8; 32]>(), upper in any::<bool>()) {
            let peer = Keypair::from_secret_bytes(seed).peer_id();
            let mut text = peer.to_string();
            if upper { text = text.to_uppercase(); }
            prop_assert_eq!(text.parse::<PeerId>().unwrap(), peer);
        }

        #[test]
        fn serde_round_trip(seed in any::<[u8; 32]>()) {
            let peer = Keypair::from_secret_bytes(seed).peer_id();
            let json = serde_json::to_string(&peer).unwrap();
            prop_assert_eq!(serde_json::from_str::<PeerId>(&json).unwrap(), peer);
            let config = bincode::config::standard();
            let bin = bincode::serde::encode_to_vec(peer, config).unwrap();
            let (back, _): (PeerId, _) = bincode::serde::decode_from_slice(&bin, config).unwrap();
            prop_assert_eq!(back, peer);
        }

        #[test]
        fn ordering_matches_bytes(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let pa = Keypair::from_secret_bytes(a).peer_id();
            let pb = Keypair::from_secret_bytes(b).peer_id();
            prop_assert_eq!(pa.cmp(&pb), pa.as_bytes().cmp(pb.as_bytes()));
        }
    }
}
