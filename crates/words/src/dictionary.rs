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

/// Packs 1 to 10 lowercase ASCII letters (50 bits), or `None`. Injective over all lengths,
/// since no letter packs as 0.
#[inline]
fn pack_any(bytes: impl Iterator<Item = u8>) -> Option<u64> {
    let mut key = 0u64;
    let mut len = 0;
    for b in bytes {
        if !b.is_ascii_lowercase() || len == MAX_TYPED_LEN {
            return None;
        }
        key = key << 5 | u64::from(b - b'a' + 1);
        len += 1;
    }
    (len > 0).then_some(key)
}

/// `word` without its `i`-th byte.
#[inline]
fn without(word: &[u8], i: usize) -> impl Iterator<Item = u8> + '_ {
    word[..i].iter().chain(&word[i + 1..]).copied()
}

/// log2 of the deletion index's bucket count.
const DELETION_BUCKET_BITS: u32 = 18;

/// Deletion-neighbourhood index: for every dictionary word and every way of deleting one of
/// its letters, an entry `packed deletion << 16 | value`, grouped in buckets by a hash of the
/// packed deletion (counting sort, so building it is linear). Two words within one edit
/// (substitution, insertion, deletion, adjacent transposition) always share a deletion or one
/// is a deletion of the other, so a typo's candidates are found in at most 2 × 10 + 1 probes.
struct DeletionIndex {
    /// `starts[b]..starts[b + 1]` are bucket `b`'s entries.
    starts: Vec<u32>,
    entries: Vec<u64>,
}

#[inline]
fn bucket(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - DELETION_BUCKET_BITS)) as usize
}

fn deletion_index() -> &'static DeletionIndex {
    static INDEX: OnceLock<DeletionIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        // Each distinct deletion of each word, once (`book` has three: ook, bok, boo).
        let for_each = |f: &mut dyn FnMut(u64, u16)| {
            for (value, word) in words().iter().enumerate() {
                let bytes = word.as_bytes();
                for i in 0..bytes.len() {
                    if i > 0 && bytes[i] == bytes[i - 1] {
                        continue; // same string as deleting letter i - 1
                    }
                    if let Some(key) = pack_any(without(bytes, i)) {
                        f(key, value as u16);
                    }
                }
            }
        };
        let buckets = 1usize << DELETION_BUCKET_BITS;
        let mut starts = vec![0u32; buckets + 1];
        for_each(&mut |key, _| starts[bucket(key) + 1] += 1);
        for b in 0..buckets {
            starts[b + 1] += starts[b];
        }
        let mut fill = starts.clone();
        let mut entries = vec![0u64; starts[buckets] as usize];
        for_each(&mut |key, value| {
            let slot = &mut fill[bucket(key)];
            entries[*slot as usize] = key << 16 | u64::from(value);
            *slot += 1;
        });
        DeletionIndex { starts, entries }
    })
}

/// Calls `f` with the value of every dictionary word one of whose deletions is `key`.
#[inline]
fn words_with_deletion(key: u64, f: &mut impl FnMut(u16)) {
    let index = deletion_index();
    let b = bucket(key);
    let bucket = &index.entries[index.starts[b] as usize..index.starts[b + 1] as usize];
    for &entry in bucket {
        if entry >> 16 == key {
            f(entry as u16);
        }
    }
}

/// Whether `a` and `b` (distinct) are one substitution, insertion, deletion or adjacent
/// transposition apart.
fn one_edit_apart(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => {
            let mut diffs = (0..short.len()).filter(|&i| short[i] != long[i]);
            match (diffs.next(), diffs.next(), diffs.next()) {
                (Some(_), None, _) => true,
                (Some(i), Some(j), None) => {
                    j == i + 1 && short[i] == long[j] && short[j] == long[i]
                }
                _ => false,
            }
        }
        1 => {
            let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
            short[prefix..] == long[prefix + 1..]
        }
        _ => false,
    }
}

/// Looks `typed` up in any case, correcting a single typo when the correction is unique.
///
/// A typo is one letter substituted, inserted or deleted, or two adjacent letters swapped;
/// any character other than `a`–`z` (after lowercasing) counts as a wrong letter.
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
        // Every character outside a..z becomes `?`, which no dictionary word contains.
        let c = c.to_ascii_lowercase();
        chars[len] = if c.is_ascii_lowercase() {
            c as u8
        } else {
            b'?'
        };
        len += 1;
    }
    let typed = &chars[..len];
    let mut found: Vec<u16> = Vec::new();
    let mut consider = |value: u16| {
        if !found.contains(&value) && one_edit_apart(typed, word(value).as_bytes()) {
            found.push(value);
        }
    };
    // The typed word is a dictionary word with one letter deleted.
    if let Some(key) = pack_any(typed.iter().copied()) {
        words_with_deletion(key, &mut consider);
    }
    for i in 0..len {
        if i > 0 && typed[i] == typed[i - 1] {
            continue;
        }
        // One letter was inserted: deleting it gives the dictionary word.
        if let Some(value) = pack(without(typed, i)).and_then(find) {
            consider(value);
        }
        // One letter was substituted, or two swapped: both share a deletion.
        if let Some(key) = pack_any(without(typed, i)) {
            words_with_deletion(key, &mut consider);
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
