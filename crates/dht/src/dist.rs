//! XOR distance on the hot path: two `u128`s, compared as one 256-bit big-endian integer.

use p2p_foundation_identity::Key;

/// The XOR distance between two keys as (high 128 bits, low 128 bits); the derived order
/// is the numeric order of the 256-bit distance.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) struct Dist(u128, u128);

#[inline]
fn halves(key: &Key) -> (u128, u128) {
    let bytes = key.as_bytes();
    let mut hi = [0u8; 16];
    let mut lo = [0u8; 16];
    hi.copy_from_slice(&bytes[..16]);
    lo.copy_from_slice(&bytes[16..]);
    (u128::from_be_bytes(hi), u128::from_be_bytes(lo))
}

impl Dist {
    #[inline]
    pub(crate) fn between(a: &Key, b: &Key) -> Dist {
        let (ah, al) = halves(a);
        let (bh, bl) = halves(b);
        Dist(ah ^ bh, al ^ bl)
    }

    /// A key as the same two-`u128` form (its distance to the zero key).
    #[inline]
    pub(crate) fn bits(key: &Key) -> Dist {
        let (h, l) = halves(key);
        Dist(h, l)
    }

    /// XOR of two keys in [`Dist::bits`] form: their distance.
    #[inline]
    pub(crate) fn xor(self, other: Dist) -> Dist {
        Dist(self.0 ^ other.0, self.1 ^ other.1)
    }

    /// Leading zero bits: 256 for a key's distance to itself.
    #[inline]
    pub(crate) fn leading_zeros(self) -> u32 {
        if self.0 != 0 {
            self.0.leading_zeros()
        } else {
            128 + self.1.leading_zeros()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn agrees_with_identity_distance(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), c in any::<[u8; 32]>()) {
            let (a, b, c) = (Key::from_bytes(a), Key::from_bytes(b), Key::from_bytes(c));
            prop_assert_eq!(Dist::between(&a, &b).leading_zeros(), a.distance(&b).leading_zeros());
            prop_assert_eq!(
                Dist::between(&a, &b).cmp(&Dist::between(&a, &c)),
                a.distance(&b).cmp(&a.distance(&c))
            );
        }
    }
}
