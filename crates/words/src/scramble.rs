//! A keyed, balanced Feistel network over 48, 96 or 144 bits (3, 6 or 9 words).
//!
//! The value is split into two halves of 8 × n bits (n = word count); each of [`ROUNDS`]
//! rounds maps `(L, R)` to `(R, L ⊕ F(K(n, i), R))`. A Feistel network is a bijection whatever
//! `F` is, so every address has exactly one word form and back; a good `F` makes every
//! output bit depend on every input bit, so neighbouring addresses share no word.
//! `docs/protocols/words.md` specifies `F` and the key schedule `K`.

/// Rounds of the network: 6 rounds of a 64-bit mixer give full diffusion across both halves.
pub(crate) const ROUNDS: u64 = 6;

/// The 64-bit finaliser of MurmurHash3 (`fmix64`): a bijection with full avalanche.
#[inline]
pub(crate) const fn fmix64(mut z: u64) -> u64 {
    z ^= z >> 33;
    z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^= z >> 33;
    z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^= z >> 33;
    z
}

/// Round key `i` of the network for `words` words: `fmix64(φ64 × (16 × words + i + 1))`.
#[inline]
pub(crate) const fn round_key(words: usize, i: u64) -> u64 {
    fmix64(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(16 * words as u64 + i + 1))
}

/// The round function for halves of at most 48 bits (3 and 6 words).
#[inline]
fn round_narrow(key: u64, half: u64, bits: u32) -> u64 {
    fmix64(half ^ key) & ((1 << bits) - 1)
}

/// The round function for 72-bit halves (9 words).
#[inline]
fn round_wide(key: u64, half: u128) -> u128 {
    let top = fmix64((half >> 64) as u64 ^ key.rotate_left(32));
    let low = fmix64(half as u64 ^ key ^ top);
    let high = fmix64(low ^ top);
    ((u128::from(high) << 64) | u128::from(low)) & mask(72)
}

#[inline]
const fn mask(bits: u32) -> u128 {
    (1u128 << bits) - 1
}

/// Splits 3, 6 or 9 words into two halves of 8 × n bits each (most significant bits first).
#[inline]
fn split(words: &[u16]) -> (u128, u128) {
    let half = 8 * words.len() as u32;
    if words.len() <= 6 {
        let value = words
            .iter()
            .fold(0u128, |acc, &w| acc << 16 | u128::from(w));
        return (value >> half, value & mask(half));
    }
    let (mut left, mut right, mut filled) = (0u128, 0u128, 0u32);
    for &w in words {
        let w = u128::from(w);
        if filled + 16 <= half {
            left = left << 16 | w;
            filled += 16;
        } else if filled >= half {
            right = right << 16 | w;
        } else {
            // Only with 9 words: word 5 is split 8 / 8 between the halves.
            let into_left = half - filled;
            left = left << into_left | w >> (16 - into_left);
            right = w & mask(16 - into_left);
            filled = half;
        }
    }
    (left, right)
}

/// The inverse of [`split`].
#[inline]
fn join(left: u128, right: u128, words: &mut [u16]) {
    let n = words.len();
    let half = 8 * n as u32;
    if n <= 6 {
        let value = left << half | right;
        for (i, w) in words.iter_mut().enumerate() {
            *w = (value >> (16 * (n - 1 - i))) as u16;
        }
        return;
    }
    let mut value_bits = 16 * n as u32;
    for w in words.iter_mut() {
        value_bits -= 16;
        // Bits [value_bits, value_bits + 16) of the 16n-bit value left‖right.
        let from_right = if value_bits < half {
            right >> value_bits
        } else {
            0
        };
        let from_left = if value_bits + 16 > half {
            if value_bits >= half {
                left >> (value_bits - half)
            } else {
                left << (half - value_bits)
            }
        } else {
            0
        };
        *w = ((from_left | from_right) & 0xffff) as u16;
    }
}

/// Scrambles 3, 6 or 9 words in place.
pub(crate) fn scramble(words: &mut [u16]) {
    let n = words.len();
    let bits = 8 * n as u32;
    let (left, right) = split(words);
    let (left, right) = if n == 9 {
        let (mut l, mut r) = (left, right);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ round_wide(round_key(n, i), r));
        }
        (l, r)
    } else {
        let (mut l, mut r) = (left as u64, right as u64);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ round_narrow(round_key(n, i), r, bits));
        }
        (u128::from(l), u128::from(r))
    };
    join(left, right, words);
}

/// Undoes [`scramble`] in place.
pub(crate) fn unscramble(words: &mut [u16]) {
    let n = words.len();
    let bits = 8 * n as u32;
    let (left, right) = split(words);
    let (left, right) = if n == 9 {
        let (mut l, mut r) = (left, right);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ round_wide(round_key(n, i), l), l);
        }
        (l, r)
    } else {
        let (mut l, mut r) = (left as u64, right as u64);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ round_narrow(round_key(n, i), l, bits), l);
        }
        (u128::from(l), u128::from(r))
    };
    join(left, right, words);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn split_join_round_trip(words in proptest::collection::vec(any::<u16>(), 3..=9)) {
            prop_assume!(words.len() % 3 == 0);
            let (l, r) = split(&words);
            let half = 8 * words.len() as u32;
            prop_assert!(l < 1u128 << half && r < 1u128 << half);
            let mut back = vec![0u16; words.len()];
            join(l, r, &mut back);
            prop_assert_eq!(back, words);
        }

        #[test]
        fn scramble_is_a_bijection(words in proptest::collection::vec(any::<u16>(), 3..=9)) {
            prop_assume!(words.len() % 3 == 0);
            let mut scrambled = words.clone();
            scramble(&mut scrambled);
            unscramble(&mut scrambled);
            prop_assert_eq!(scrambled, words);
        }
    }

    #[test]
    fn round_keys_match_the_documented_table() {
        assert_eq!(round_key(3, 0), 0x6917_a25e_42ce_cc8e);
        assert_eq!(round_key(6, 5), 0xaf7f_1916_24ad_f118);
        assert_eq!(round_key(9, 3), 0x7348_8f94_7718_4d44);
    }

    #[test]
    fn split_of_nine_words_halves_word_five() {
        let words = [1, 2, 3, 4, 0xabcd, 6, 7, 8, 9];
        let (l, r) = split(&words);
        assert_eq!(l, 0x0000_0100_0200_0300_04ab);
        assert_eq!(r, 0x00cd_0006_0007_0008_0009);
    }
}
