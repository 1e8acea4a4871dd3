//! The committed dictionary: size, uniqueness, charset, order, filter and checksum.
use std::collections::HashSet;

use p2p_foundation_words::dictionary::{self, Lookup};
use sha2::{Digest, Sha256};

/// SHA-256 of `data/words.txt` as committed; `tools/build-dictionary.py` prints it too.
const WORDS_SHA256: &str = "b46bd281274e0903763fdcf74dddf7f762765f7b0bc781116e4cc87b40cfdd7c";

#[test]
fn dictionary_file_has_the_committed_checksum() {
    let digest = Sha256::digest(dictionary::DATA.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, WORDS_SHA256,
        "data/words.txt changed: every word address changes with it. Rebuild it only with \
         tools/build-dictionary.py and bump the dictionary version"
    );
}

#[test]
fn dictionary_has_65536_unique_well_formed_words() {
    let words = dictionary::words();
    assert_eq!(words.len(), 65_536);
    assert_eq!(words.len(), dictionary::SIZE);
    let unique: HashSet<&str> = words.iter().copied().collect();
    assert_eq!(unique.len(), 65_536, "duplicate words");
    for word in words {
        assert!(
            (3..=9).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_lowercase()),
            "`{word}` is not 3 to 9 lowercase ASCII letters"
        );
    }
}

#[test]
fn header_records_the_debian_package_versions() {
    let header: Vec<&str> = dictionary::DATA
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect();
    let joined = header.join("\n");
    for package in ["wamerican-small 2", "wamerican 2", "wamerican-large 2"] {
        assert!(
            joined.contains(package),
            "header lacks `{package}`:\n{joined}"
        );
    }
}

/// Tier sizes from the header line `# Order: tier (wamerican-small A, wamerican B, large only C)`.
fn tier_sizes() -> [usize; 3] {
    let line = dictionary::DATA
        .lines()
        .find(|l| l.starts_with("# Order: tier ("))
        .expect("order line in header");
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    [numbers[0], numbers[1], numbers[2]]
}

#[test]
fn words_are_ordered_by_tier_then_length_then_alphabet() {
    let tiers = tier_sizes();
    assert_eq!(tiers.iter().sum::<usize>(), 65_536);
    let words = dictionary::words();
    let mut start = 0;
    for size in tiers {
        let tier = &words[start..start + size];
        for pair in tier.windows(2) {
            assert!(
                (pair[0].len(), pair[0]) < (pair[1].len(), pair[1]),
                "`{}` before `{}`",
                pair[0],
                pair[1]
            );
        }
        start += size;
    }
    // The easiest words come first.
    assert!(words[..400].iter().all(|w| w.len() == 3));
}

#[test]
fn no_filtered_word_is_in_the_dictionary() {
    let filter = include_str!("../data/offensive.txt");
    let words = dictionary::words();
    let mut entries = 0;
    for entry in filter
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        entries += 1;
        match entry.strip_suffix('*') {
            Some(prefix) => assert!(
                !words.iter().any(|w| w.starts_with(prefix)),
                "a word starting with `{prefix}` is in the dictionary"
            ),
            None => assert!(
                dictionary::value(entry).is_none(),
                "`{entry}` is in the dictionary"
            ),
        }
    }
    assert!(entries > 100, "the filter list looks truncated");
}

#[test]
fn every_word_looks_up_to_its_own_value_in_any_case() {
    for (value, word) in dictionary::words().iter().enumerate() {
        let value = value as u16;
        assert_eq!(dictionary::word(value), *word);
        assert_eq!(dictionary::value(word), Some(value), "`{word}`");
        assert_eq!(dictionary::lookup(word), Lookup::Exact(value));
        assert_eq!(
            dictionary::lookup(&word.to_uppercase()),
            Lookup::Exact(value)
        );
    }
}

#[test]
fn non_words_are_not_found() {
    for text in [
        "",
        "a",
        "ab",
        "abcdefghij",
        "ocean1",
        "caf\u{e9}",
        "OCEAN ",
        "zzzzzzzzz",
    ] {
        if text.len() >= 3 && text.bytes().all(|b| b.is_ascii_lowercase()) {
            continue;
        }
        assert_eq!(dictionary::value(text), None, "`{text}`");
    }
}

/// Installed version of a Debian package, if it is installed.
fn installed_version(package: &str) -> Option<String> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()?;
    (out.status.success() && !out.stdout.is_empty())
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `tools/build-dictionary.py --check` rebuilds the list from the installed Debian packages and
/// compares it with the committed file byte for byte. It needs the packages (`ci-setup.sh`
/// installs them); with other versions than the header records it would build another list by
/// design, so it only runs when the versions match.
#[test]
fn dictionary_script_rebuilds_the_committed_file() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let header = dictionary::DATA.lines().nth(1).unwrap_or_default();
    let mut versions = Vec::new();
    for package in ["wamerican-small", "wamerican", "wamerican-large"] {
        match installed_version(package) {
            Some(v) => versions.push(format!("{package} {v}")),
            None if ci => panic!("{package} is not installed: run crates/words/ci-setup.sh"),
            None => {
                eprintln!(
                    "SKIPPED dictionary_script_rebuilds_the_committed_file: {package} is not \
                     installed (run crates/words/ci-setup.sh)"
                );
                return;
            }
        }
    }
    if let Some(other) = versions.iter().find(|v| !header.contains(v.as_str())) {
        eprintln!(
            "SKIPPED dictionary_script_rebuilds_the_committed_file: installed {other} is not the \
             version the dictionary was built from ({header})"
        );
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/build-dictionary.py");
    let out = std::process::Command::new("python3")
        .args([script, "--check"])
        .output()
        .expect("python3 runs (crates/words/ci-setup.sh installs it)");
    assert!(
        out.status.success(),
        "build-dictionary.py --check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
