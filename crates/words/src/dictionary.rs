//! The 65,536-word dictionary: a word's position in it is its 16-bit value.
//!
//! The list is `data/words.txt`, built by `tools/build-dictionary.py` from Debian's word lists
//! and embedded in the binary. Lookups use an open-addressing table built once, on first use.

use std::sync::OnceLock;

/// Number of words in the dictionary: every 16-bit value names exactly one word.
pub const SIZE: usize = 65_536;
/// Shortest dictionary word, in letters.
pub const MIN_WORD_LEN: usize = 3;
/// Longest dictionary word, in letters.
pub const MAX_WORD_LEN: usize = 9;

/// The dictionary file as committed: `#` header lines, then one word per line.
pub const DATA: &str = include_str!("../data/words.txt");

const fn word_lines(data: &str) -> usize {
    let bytes = data.as_bytes();
    let mut i = 0;
    let mut lines = 0;
    let mut at_line_start = true;
    while i < bytes.len() {
        if at_line_start && bytes[i] != b'#' {
            lines += 1;
        }
        at_line_start = bytes[i] == b'\n';
        i += 1;
    }
    lines
}

// The word count is checked when the crate compiles, so indexing by any u16 is in bounds.
const _: () = assert!(
    word_lines(DATA) == SIZE,
    "data/words.txt must hold 65536 words"
);

/// log2 of the lookup table's slot count: 2^17 slots for 2^16 words keeps probes short.
const TABLE_BITS: u32 = 17;

struct Dictionary {
    words: Vec<&'static str>,
    /// Open addressing, linear probing. A slot is `packed word | value << 48`, 0 when empty
    /// (a packed word is never 0: letters pack as 1..=26).
    slots: Vec<u64>,
}

fn dictionary() -> &'static Dictionary {
    static DICTIONARY: OnceLock<Dictionary> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let words: Vec<&'static str> = DATA.lines().filter(|l| !l.starts_with('#')).collect();
        let mut slots = vec![0u64; 1 << TABLE_BITS];
        for (value, word) in words.iter().enumerate() {
            // Every committed word packs (tests check the charset); skip rather than panic.
            let Some(key) = pack(word.bytes()) else {
                continue;
            };
            let mut slot = home(key);
            while slots[slot] != 0 {
                slot = (slot + 1) & ((1 << TABLE_BITS) - 1);
            }
            slots[slot] = key | (value as u64) << 48;
        }
        Dictionary { words, slots }
    })
}

/// Packs 3 to 9 lowercase ASCII letters into 45 bits (5 bits a letter, `a` = 1), or `None`.
#[inline]
fn pack(bytes: impl Iterator<Item = u8>) -> Option<u64> {
    let mut key = 0u64;
    let mut len = 0;
    for b in bytes {
        if !b.is_ascii_lowercase() || len == MAX_WORD_LEN {
            return None;
        }
        key = key << 5 | u64::from(b - b'a' + 1);
        len += 1;
    }
    (len >= MIN_WORD_LEN).then_some(key)
}

#[inline]
fn home(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - TABLE_BITS)) as usize
}

#[inline]
fn find(key: u64) -> Option<u16> {
    let slots = &dictionary().slots;
    let mut slot = home(key);
    loop {
        let entry = slots[slot];
        if entry == 0 {
            return None;
        }
        if entry & ((1 << 48) - 1) == key {
            return Some((entry >> 48) as u16);
        }
        slot = (slot + 1) & ((1 << TABLE_BITS) - 1);
    }
}

/// The word whose value is `value`.
#[inline]
pub fn word(value: u16) -> &'static str {
    dictionary().words[usize::from(value)]
}

/// All 65,536 words, in value order.
pub fn words() -> &'static [&'static str] {
    &dictionary().words
}

/// The value of `word`, which must be exactly a dictionary word (lowercase, no typo).
#[inline]
pub fn value(word: &str) -> Option<u16> {
    find(pack(word.bytes())?)
}

/// How a typed word was matched to a dictionary word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The word (after lowercasing) is in the dictionary.
    Exact(u16),
    /// The word is not in the dictionary, but exactly one dictionary word is one edit away
    /// (one letter substituted, inserted or deleted, or two adjacent letters swapped).
    Corrected(u16),
    /// Several dictionary words are one edit away: their values, ascending.
    Ambiguous(Vec<u16>),
    /// No dictionary word is within one edit.
    Unknown,
}

/// Longest typed word for which corrections are searched: longer words are at least two
/// edits away from every dictionary word anyway.
const MAX_TYPED_LEN: usize = MAX_WORD_LEN + 1;

/// Looks `typed` up in any case, correcting a single typo when the correction is unique.
pub fn lookup(typed: &str) -> Lookup {
    if let Some(v) = find_ignoring_case(typed) {
        return Lookup::Exact(v);
    }
    let mut chars = [0u8; MAX_TYPED_LEN];
    let mut len = 0;
    for c in typed.chars() {
        if len == MAX_TYPED_LEN {
            return Lookup::Unknown;
        }
        // A non-ASCII character can only be a typo to delete: any byte outside a..z does.
        chars[len] = if c.is_ascii() {
            c.to_ascii_lowercase() as u8
        } else {
            b'?'
        };
        len += 1;
    }
    let typed = &chars[..len];
    let mut found: Vec<u16> = Vec::new();
    let mut consider = |key: Option<u64>| {
        if let Some(v) = key.and_then(find) {
            if !found.contains(&v) {
                found.push(v);
            }
        }
    };
    for i in 0..len {
        // Deletion of letter i.
        consider(pack(typed[..i].iter().chain(&typed[i + 1..]).copied()));
        // Transposition of letters i and i + 1.
        if i + 1 < len && typed[i] != typed[i + 1] {
            let mut swapped = [0u8; MAX_TYPED_LEN];
            swapped[..len].copy_from_slice(typed);
            swapped.swap(i, i + 1);
            consider(pack(swapped[..len].iter().copied()));
        }
        // Substitution of letter i.
        for c in b'a'..=b'z' {
            if c != typed[i] {
                let sub = [c];
                consider(pack(
                    typed[..i]
                        .iter()
                        .chain(&sub)
                        .chain(&typed[i + 1..])
                        .copied(),
                ));
            }
        }
    }
    // Insertion before position i (i == len: at the end).
    if len < MAX_WORD_LEN {
        for i in 0..=len {
            for c in b'a'..=b'z' {
                let ins = [c];
                consider(pack(
                    typed[..i].iter().chain(&ins).chain(&typed[i..]).copied(),
                ));
            }
        }
    }
    match found.len() {
        0 => Lookup::Unknown,
        1 => Lookup::Corrected(found[0]),
        _ => {
            found.sort_unstable();
            Lookup::Ambiguous(found)
        }
    }
}

#[inline]
fn find_ignoring_case(typed: &str) -> Option<u16> {
    find(pack(typed.bytes().map(|b| b.to_ascii_lowercase()))?)
}
