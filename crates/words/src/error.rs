/// Everything that can go wrong when reading a word address.
///
/// Each message names the offending word and says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WordsError {
    /// The input is longer than any word address can be; it was not examined further.
    #[error("input is {len} bytes long, but a word address is at most {max} bytes")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The longest input accepted ([`crate::MAX_INPUT_LEN`]).
        max: usize,
    },
    /// The input did not have 3, 6 or 9 words.
    #[error(
        "expected 3 words (IPv4) or 6 or 9 words (IPv6), found {}; \
         separate words with `.`, `-`, `_` or spaces",
        if *found > 9 { "more than 9".to_owned() } else { found.to_string() }
    )]
    WordCount {
        /// How many words were found (counting stops at 10).
        found: usize,
    },
    /// A word is not in the dictionary and no dictionary word is one typo away from it.
    #[error(
        "word {position} `{word}` is not in the dictionary and no dictionary word is one typo \
         away from it; check its spelling"
    )]
    UnknownWord {
        /// Position of the word in the address, from 1.
        position: usize,
        /// The word as typed (lowercased, at most 32 characters).
        word: String,
    },
    /// A word is not in the dictionary and several dictionary words are one typo away from it.
    #[error(
        "word {position} `{word}` is not in the dictionary; did you mean {}?",
        or_list(suggestions)
    )]
    AmbiguousWord {
        /// Position of the word in the address, from 1.
        position: usize,
        /// The word as typed (lowercased, at most 32 characters).
        word: String,
        /// Every dictionary word one typo away, easiest (lowest value) first.
        suggestions: Vec<&'static str>,
    },
    /// Every word is in the dictionary, but together they encode no socket address: the
    /// IPv6 encodings reserve some values, so a wrong word is often detected this way.
    #[error(
        "these {count} words do not encode a socket address ({reason}); \
         one of the words is probably wrong"
    )]
    InvalidEncoding {
        /// Number of words (6 for the compact IPv6 encoding).
        count: usize,
        /// What was wrong with the decoded value.
        reason: &'static str,
    },
}

fn or_list(words: &[&'static str]) -> String {
    const SHOWN: usize = 8;
    let mut out = String::new();
    for (i, word) in words.iter().take(SHOWN).enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == words.len().min(SHOWN) && words.len() <= SHOWN {
                " or "
            } else {
                ", "
            });
        }
        out.push('`');
        out.push_str(word);
        out.push('`');
    }
    if words.len() > SHOWN {
        out.push_str(&format!(" (or {} more)", words.len() - SHOWN));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestion_lists_read_naturally() {
        assert_eq!(or_list(&["cat"]), "`cat`");
        assert_eq!(or_list(&["cat", "cot"]), "`cat` or `cot`");
        assert_eq!(or_list(&["cat", "cot", "cut"]), "`cat`, `cot` or `cut`");
        let many = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        assert_eq!(
            or_list(&many),
            "`a`, `b`, `c`, `d`, `e`, `f`, `g`, `h` (or 2 more)"
        );
    }
}
