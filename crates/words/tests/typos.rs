//! Forgiving parsing: case, separators, single typos, ambiguity, and never panicking.
use std::net::SocketAddr;

use p2p_foundation_words::dictionary::{self, Lookup};
use p2p_foundation_words::{MAX_INPUT_LEN, WordAddress, WordsError};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn addr() -> SocketAddr {
    "203.0.113.9:9000".parse().unwrap()
}

#[test]
fn any_case_and_separator_is_accepted() {
    let words = WordAddress::from(addr());
    let [a, b, c]: [&str; 3] = words.words().collect::<Vec<_>>().try_into().unwrap();
    for text in [
        format!("{a}.{b}.{c}"),
        format!("{a}-{b}-{c}"),
        format!("{a}_{b}_{c}"),
        format!("{a} {b} {c}"),
        format!("  {a}\t{b}\n{c}  "),
        format!("{a}. {b} -{c}."),
        format!("{}.{}.{}", a.to_uppercase(), b, c.to_uppercase()),
        format!("{}{} {} {}", a[..1].to_uppercase(), &a[1..], b, c),
    ] {
        let (parsed, corrections) = WordAddress::parse_with_corrections(&text).unwrap();
        assert_eq!(parsed.to_socket_addr(), addr(), "{text:?}");
        assert!(corrections.is_empty());
    }
}

/// Each kind of single typo, applied to the word at `position` (from 0).
fn typos(word: &str) -> Vec<(&'static str, String)> {
    let w = word.as_bytes();
    let mut out = Vec::new();
    for i in 0..w.len() {
        for c in b'a'..=b'z' {
            if c != w[i] {
                let mut s = w.to_vec();
                s[i] = c;
                out.push(("substitution", String::from_utf8(s).unwrap()));
            }
        }
        let mut s = w.to_vec();
        s.remove(i);
        out.push(("deletion", String::from_utf8(s).unwrap()));
        if i + 1 < w.len() && w[i] != w[i + 1] {
            let mut s = w.to_vec();
            s.swap(i, i + 1);
            out.push(("transposition", String::from_utf8(s).unwrap()));
        }
    }
    for i in 0..=w.len() {
        for c in b'a'..=b'z' {
            let mut s = w.to_vec();
            s.insert(i, c);
            out.push(("insertion", String::from_utf8(s).unwrap()));
        }
    }
    out
}

#[test]
fn a_single_typo_of_each_kind_is_corrected_when_unique() {
    let words = WordAddress::from(addr());
    let original: Vec<&str> = words.words().collect();
    let mut seen = std::collections::BTreeMap::new();
    for position in 0..3 {
        for (kind, typo) in typos(original[position]) {
            if dictionary::value(&typo).is_some() {
                continue;
            }
            let mut typed = original.clone();
            typed[position] = &typo;
            let text = typed.join(".");
            match WordAddress::parse_with_corrections(&text) {
                Ok((parsed, corrections)) => {
                    assert_eq!(parsed.to_socket_addr(), addr(), "{text}");
                    assert_eq!(corrections.len(), 1);
                    assert_eq!(corrections[0].position, position + 1);
                    assert_eq!(corrections[0].typed, typo);
                    assert_eq!(corrections[0].corrected, original[position]);
                    *seen.entry(kind).or_insert(0) += 1;
                }
                Err(WordsError::AmbiguousWord {
                    position: p,
                    word,
                    suggestions,
                }) => {
                    assert_eq!((p, word.as_str()), (position + 1, typo.as_str()));
                    assert!(suggestions.contains(&original[position]), "{suggestions:?}");
                }
                Err(e) => panic!("{text}: {e}"),
            }
        }
    }
    for kind in ["substitution", "insertion", "deletion", "transposition"] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} corrected: {seen:?}"
        );
    }
}

#[test]
fn specific_corrections() {
    for (typo, word) in [
        ("ocaen", "ocean"),      // transposition
        ("thundxer", "thunder"), // insertion
        ("falcn", "falcon"),     // deletion
        ("falcom", "falcon"),    // substitution
        ("OCAEN", "ocean"),      // any case
        ("oce4n", "ocean"),      // a digit for a letter
        ("océan", "ocean"),      // a non-ASCII letter for an ASCII one
    ] {
        assert!(
            dictionary::value(word).is_some(),
            "{word} not in dictionary"
        );
        match dictionary::lookup(typo) {
            Lookup::Corrected(v) => assert_eq!(dictionary::word(v), word, "{typo}"),
            other => panic!("{typo}: {other:?}"),
        }
    }
}

#[test]
fn ambiguous_typos_name_the_word_and_list_suggestions() {
    // `cst` is one edit from cat, cot, cut, cast, cost, ...
    let words = WordAddress::from(addr()).to_string();
    let text = format!(
        "cst {}",
        words.split('.').skip(1).collect::<Vec<_>>().join(" ")
    );
    let err = text.parse::<WordAddress>().unwrap_err();
    let WordsError::AmbiguousWord {
        position,
        ref word,
        ref suggestions,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!((position, word.as_str()), (1, "cst"));
    for expected in ["cat", "cot", "cut", "cast", "cost"] {
        assert!(suggestions.contains(&expected), "{suggestions:?}");
    }
    let values: Vec<u16> = suggestions
        .iter()
        .map(|w| dictionary::value(w).unwrap())
        .collect();
    assert!(values.windows(2).all(|p| p[0] < p[1]), "easiest first");
    let message = err.to_string();
    assert!(
        message.contains("word 1 `cst`") && message.contains("did you mean"),
        "{message}"
    );
    assert!(message.contains("`cat`"), "{message}");
}

#[test]
fn words_two_typos_away_are_unknown() {
    let err = "qqqqzzzz.ocean.falcon".parse::<WordAddress>().unwrap_err();
    assert_eq!(
        err,
        WordsError::UnknownWord {
            position: 1,
            word: "qqqqzzzz".into()
        }
    );
    assert!(err.to_string().contains("check its spelling"));
}

#[test]
fn wrong_counts_and_long_inputs_are_refused_before_lookup() {
    for (text, found) in [("", 0), ("ocean", 1), ("ocean falcon", 2), ("a b c d", 4)] {
        assert_eq!(
            text.parse::<WordAddress>(),
            Err(WordsError::WordCount { found })
        );
    }
    let ten = ["ocean"; 12].join(".");
    assert_eq!(
        ten.parse::<WordAddress>(),
        Err(WordsError::WordCount { found: 10 })
    );
    assert!(
        ten.parse::<WordAddress>()
            .unwrap_err()
            .to_string()
            .contains("found more than 9")
    );
    let long = "a".repeat(MAX_INPUT_LEN + 1);
    assert!(matches!(
        long.parse::<WordAddress>(),
        Err(WordsError::TooLong { .. })
    ));
}

/// How often a random single typo of a random dictionary word is silently corrected, is
/// ambiguous (reported with suggestions), or is itself another dictionary word (undetectable
/// by any spelling check). The figures are printed and recorded in docs/protocols/words.md.
#[test]
fn typo_correction_statistics() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let words = dictionary::words();
    let samples = 40_000;
    let kinds = ["substitution", "insertion", "deletion", "transposition"];
    // [corrected, ambiguous, another word] per kind.
    let mut counts = [[0u32; 3]; 4];
    for i in 0..samples {
        let value = rng.random::<u16>();
        let word = words[usize::from(value)];
        let kind = i % 4;
        let all: Vec<String> = typos(word)
            .into_iter()
            .filter(|(k, _)| *k == kinds[kind])
            .map(|(_, t)| t)
            .collect();
        if all.is_empty() {
            continue;
        }
        let typo = &all[rng.random_range(0..all.len())];
        let outcome = match dictionary::lookup(typo) {
            Lookup::Corrected(v) => {
                assert_eq!(v, value, "{typo} corrected to another word than {word}");
                0
            }
            Lookup::Ambiguous(candidates) => {
                assert!(candidates.contains(&value), "{typo}: {word} not suggested");
                1
            }
            Lookup::Exact(_) => 2,
            Lookup::Unknown => panic!("{typo} is one edit from {word}"),
        };
        counts[kind][outcome] += 1;
    }
    let mut total = [0u32; 3];
    for (kind, c) in kinds.iter().zip(&counts) {
        let n: u32 = c.iter().sum();
        eprintln!(
            "{kind:>13}: corrected {:.1}%, ambiguous {:.1}%, another word {:.1}% (n = {n})",
            100.0 * f64::from(c[0]) / f64::from(n),
            100.0 * f64::from(c[1]) / f64::from(n),
            100.0 * f64::from(c[2]) / f64::from(n),
        );
        for j in 0..3 {
            total[j] += c[j];
        }
    }
    let n: u32 = total.iter().sum();
    let corrected = f64::from(total[0]) / f64::from(n);
    eprintln!(
        "          all: corrected {:.1}%, ambiguous {:.1}%, another word {:.1}% (n = {n})",
        100.0 * corrected,
        100.0 * f64::from(total[1]) / f64::from(n),
        100.0 * f64::from(total[2]) / f64::from(n),
    );
    assert!(
        corrected > 0.5,
        "only {:.1}% of typos corrected",
        100.0 * corrected
    );
}

/// The obvious correction search: try every string one edit from `typed`, look each up.
fn reference_lookup(typed: &str) -> Lookup {
    let lower = typed.to_ascii_lowercase();
    if let Some(v) = dictionary::value(&lower) {
        return Lookup::Exact(v);
    }
    let mut found: Vec<u16> = typos(&lower)
        .into_iter()
        .filter_map(|(_, t)| dictionary::value(&t))
        .collect();
    found.sort_unstable();
    found.dedup();
    match found.len() {
        0 => Lookup::Unknown,
        1 => Lookup::Corrected(found[0]),
        _ => Lookup::Ambiguous(found),
    }
}

#[test]
fn the_deletion_index_finds_exactly_the_words_one_edit_away() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let words = dictionary::words();
    for i in 0..30_000 {
        let typed = if i % 3 == 0 {
            // Random letters (and an occasional digit), 1 to 11 characters.
            let len = rng.random_range(1..=11);
            (0..len)
                .map(|_| {
                    if rng.random_range(0..20) == 0 {
                        '7'
                    } else {
                        char::from(b'a' + rng.random_range(0..26u8))
                    }
                })
                .collect::<String>()
        } else {
            let word = words[usize::from(rng.random::<u16>())];
            let all = typos(word);
            all[rng.random_range(0..all.len())].1.clone()
        };
        assert_eq!(
            dictionary::lookup(&typed),
            reference_lookup(&typed),
            "`{typed}`"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn parsing_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = text.parse::<WordAddress>();
        let _ = dictionary::lookup(&text);
    }

    #[test]
    fn parsing_word_like_text_never_panics(
        text in "([a-zA-Z]{0,11}[ ._\\-]{0,2}){0,11}"
    ) {
        if let Ok(words) = text.parse::<WordAddress>() {
            // Whatever parses prints in canonical form and parses to itself.
            let canonical = words.to_string();
            prop_assert_eq!(canonical.parse::<WordAddress>(), Ok(words));
        }
    }

    #[test]
    fn arbitrary_values_never_panic(values in proptest::collection::vec(any::<u16>(), 0..12)) {
        if let Ok(words) = WordAddress::from_values(&values) {
            prop_assert_eq!(WordAddress::from(words.to_socket_addr()), words);
        }
    }
}
