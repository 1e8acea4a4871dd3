use std::fmt;

use sha2::{Digest, Sha256};

/// A 256-bit position in the Kademlia key space.
///
/// Peers sit at [`PeerId::kad_key`](crate::PeerId::kad_key); records sit at
/// [`Key::for_record`] of their name.
///
/// ```
/// use p2p_foundation_identity::Key;
///
/// let a = Key::for_record(b"tool/generate_text");
/// let b = Key::for_record(b"tool/summarise");
/// assert_eq!(a.distance(&b), b.distance(&a));
/// assert_eq!(a.distance(&a).bucket_index(), None);
/// ```
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Key(#[serde(with = "key_bytes")] [u8; 32]);

impl Key {
    /// Wraps 32 bytes as a key, as they are (no hashing).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key of a record named `name`: the SHA-256 of the name.
    pub fn for_record(name: &[u8]) -> Self {
        Self(Sha256::digest(name).into())
    }

    /// The 32 bytes of the key.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The XOR distance between two keys.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut out = [0u8; 32];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        Distance(out)
    }

    /// A key at distance `distance` from this one (XOR is its own inverse), useful to pick a
    /// random key inside a given bucket when refreshing it.
    pub fn at_distance(&self, distance: &Distance) -> Key {
        let Distance(d) = self.distance(&Key(distance.0));
        Key(d)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(")?;
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The XOR distance between two [`Key`]s, ordered as a 256-bit big-endian integer.
///
/// ```
/// use p2p_foundation_identity::{Distance, Key};
///
/// let zero = Key::from_bytes([0; 32]);
/// let mut far = [0; 32];
/// far[0] = 0x80;
/// let d = zero.distance(&Key::from_bytes(far));
/// assert_eq!(d.bucket_index(), Some(255));
/// assert_eq!(d.leading_zeros(), 0);
/// assert!(Distance::ZERO < d);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Distance([u8; 32]);

impl Distance {
    /// The distance between a key and itself.
    pub const ZERO: Distance = Distance([0; 32]);
    /// The largest possible distance.
    pub const MAX: Distance = Distance([0xff; 32]);

    /// Wraps 32 big-endian bytes as a distance.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 big-endian bytes of the distance.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Number of leading zero bits (256 for [`Distance::ZERO`]).
    pub fn leading_zeros(&self) -> u32 {
        let mut zeros = 0;
        for byte in &self.0 {
            if *byte == 0 {
                zeros += 8;
            } else {
                return zeros + byte.leading_zeros();
            }
        }
        zeros
    }

    /// The k-bucket this distance falls in: `255 - leading_zeros`, so bucket `i` holds
    /// distances in `[2^i, 2^(i+1))`. `None` for a zero distance (a key's own position).
    pub fn bucket_index(&self) -> Option<u8> {
        let zeros = self.leading_zeros();
        u8::try_from(255u32.checked_sub(zeros)?).ok()
    }
}

impl fmt::Debug for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Distance(2^{})", 256 - self.leading_zeros())
    }
}

mod key_bytes {
    pub(super) fn serialize<S: serde::Serializer>(
        bytes: &[u8; 32],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<[u8; 32], D::Error> {
        crate::signed::fixed_bytes(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(bytes: [u8; 32]) -> Key {
        Key::from_bytes(bytes)
    }

    #[test]
    fn bucket_index_edges() {
        let zero = key([0; 32]);
        let mut one = [0; 32];
        one[31] = 1;
        assert_eq!(zero.distance(&key(one)).bucket_index(), Some(0));
        assert_eq!(zero.distance(&key([0xff; 32])).bucket_index(), Some(255));
        assert_eq!(Distance::ZERO.leading_zeros(), 256);
        assert_eq!(Distance::MAX.leading_zeros(), 0);
    }

    proptest! {
        #[test]
        fn xor_metric_laws(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), c in any::<[u8; 32]>()) {
            let (a, b, c) = (key(a), key(b), key(c));
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&a), Distance::ZERO);
            prop_assert_eq!(a.at_distance(&a.distance(&b)), b);
            // Unidirectionality: for a fixed a and distance there is one b.
            if a.distance(&b) == a.distance(&c) { prop_assert_eq!(b, c); }
        }

        #[test]
        fn bucket_index_is_highest_set_bit(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let d = key(a).distance(&key(b));
            match d.bucket_index() {
                None => prop_assert_eq!(d, Distance::ZERO),
                Some(i) => {
                    let byte = 31 - usize::from(i) / 8;
                    let bit = i % 8;
                    prop_assert!(d.as_bytes()[byte] & (1 << bit) != 0);
                    prop_assert!(d.as_bytes()[..byte].iter().all(|b| *b == 0));
                }
            }
        }

        #[test]
        fn serde_round_trip(a in any::<[u8; 32]>()) {
            let k = key(a);
            let config = bincode::config::standard();
            let bin = bincode::serde::encode_to_vec(k, config).unwrap();
            let (back, _): (Key, _) = bincode::serde::decode_from_slice(&bin, config).unwrap();
            prop_assert_eq!(back, k);
        }
    }
}
