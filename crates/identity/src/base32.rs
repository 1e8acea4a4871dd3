//! RFC 4648 base32, lowercase, without padding; decoding accepts either case.

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Encodes `data` as lowercase base32 without padding.
pub(crate) fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 0x1f) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[((buffer << (5 - bits)) & 0x1f) as usize],
        ));
    }
    out
}

/// Decodes unpadded base32 in either case. Returns `None` on a character outside the
/// alphabet, on an impossible length, or when the unused trailing bits are not zero
/// (so every byte string has exactly one accepted text form, up to case).
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(decoded_len(text));
    decode_into(text, &mut out).then_some(out)
}

/// The most bytes [`decode`] can produce from `text`.
pub(crate) fn decoded_len(text: &str) -> usize {
    text.len() * 5 / 8
}

/// [`decode`] into `out` (which should have room for [`decoded_len`] more bytes, so it is
/// never reallocated): whether `text` decoded. On failure `out` may hold part of the
/// decoding, so a caller decoding a secret passes a buffer it wipes either way.
pub(crate) fn decode_into(text: &str, out: &mut Vec<u8>) -> bool {
    if matches!(text.len() % 8, 1 | 3 | 6) {
        return false;
    }
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    for c in text.bytes() {
        let value = match c {
            b'a'..=b'z' => c - b'a',
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return false,
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
        buffer &= (1 << bits) - 1;
    }
    buffer == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(encode(raw.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), raw.as_bytes());
            assert_eq!(decode(&enc.to_uppercase()).unwrap(), raw.as_bytes());
        }
    }

    #[test]
    fn rejects_bad_text() {
        assert!(decode("m").is_none(), "impossible length");
        assert!(decode("mzxw1").is_none(), "1 is not in the alphabet");
        assert!(decode("mz").is_none(), "non-zero trailing bits");
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(decode(&encode(&data)).unwrap(), data);
        }

        #[test]
        fn decode_never_panics(text in "\\PC{0,80}") {
            let _ = decode(&text);
        }

        /// The key file's secret is decoded into a buffer sized by `decoded_len` and wiped
        /// afterwards: decoding must never move it (a reallocation would leave an unwiped
        /// copy behind), whether or not the text decodes.
        #[test]
        fn decode_into_stays_in_its_buffer(text in "[a-z2-7A-Z01!]{0,80}") {
            let mut out = Vec::with_capacity(decoded_len(&text));
            let (at, capacity) = (out.as_ptr(), out.capacity());
            let ok = decode_into(&text, &mut out);
            prop_assert_eq!((out.as_ptr(), out.capacity()), (at, capacity));
            prop_assert_eq!(ok, decode(&text).is_some());
        }
    }
}
