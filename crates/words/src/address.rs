use std::fmt;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use crate::dictionary::{self, Lookup};
use crate::scramble::{scramble, unscramble};
use crate::{WordsError, codec};

/// The longest input [`WordAddress::from_str`] examines: nine words of up to ten characters
/// (one typo) with generous separators.
pub const MAX_INPUT_LEN: usize = 256;

/// Longest echo of a typed word in an error message.
const MAX_ECHO_CHARS: usize = 32;

/// Which of the three encodings a word address uses; its word count says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// 3 words: an IPv4 address and port.
    Ipv4,
    /// 6 words: an IPv6 address of a common form (loopback, IPv4-mapped, link-local, unique
    /// local or global with a small interface id, multicast with a small group id) and port.
    Ipv6Compact,
    /// 9 words: any IPv6 address and port.
    Ipv6Full,
}

impl Encoding {
    /// Number of words in this encoding.
    pub const fn word_count(self) -> usize {
        match self {
            Self::Ipv4 => 3,
            Self::Ipv6Compact => 6,
            Self::Ipv6Full => 9,
        }
    }

    /// The encoding with `count` words, if there is one.
    pub const fn from_word_count(count: usize) -> Option<Self> {
        match count {
            3 => Some(Self::Ipv4),
            6 => Some(Self::Ipv6Compact),
            9 => Some(Self::Ipv6Full),
            _ => None,
        }
    }
}

/// A socket address written as 3, 6 or 9 dictionary words, e.g. `ocean.thunder.falcon`.
///
/// Made from a [`SocketAddr`] with [`From`] (the shortest encoding that fits) or parsed from
/// text with [`FromStr`] (any case; `.`, `-`, `_` or whitespace between words; one typo per
/// word corrected when the correction is unique). [`Display`](fmt::Display) writes the words in
/// lowercase joined by `.`. Serde uses the same text.
///
/// IPv6 flow labels and scope ids are not encoded: they mean something only on the host that
/// chose them. [`WordAddress::to_socket_addr`] returns them as 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WordAddress {
    /// Scrambled word values; only the first `len` are used, the rest are 0.
    values: [u16; 9],
    len: u8,
    /// The socket address they encode (flow label and scope id 0).
    addr: SocketAddr,
}

/// A typed word that was not in the dictionary and was corrected to the only word one typo
/// away; see [`WordAddress::parse_with_corrections`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    /// Position of the word in the address, from 1.
    pub position: usize,
    /// The word as typed (lowercased, at most 32 characters).
    pub typed: String,
    /// The dictionary word it was read as.
    pub corrected: &'static str,
}

impl fmt::Display for Correction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "word {} `{}` read as `{}`",
            self.position, self.typed, self.corrected
        )
    }
}

impl WordAddress {
    /// Encodes `addr` in the shortest encoding that fits: 3 words for IPv4, 6 for the common
    /// IPv6 forms, 9 for any other IPv6 address.
    pub fn new(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(v4) => Self::scrambled(&codec::ipv4_values(&v4), addr),
            SocketAddr::V6(v6) => match codec::ipv6_compact_values(&v6) {
                Some(values) => Self::scrambled(&values, without_scope(v6)),
                None => Self::ipv6_full(v6),
            },
        }
    }

    /// Encodes any IPv6 socket address in 9 words, even one with a 6-word form.
    pub fn ipv6_full(addr: SocketAddrV6) -> Self {
        Self::scrambled(&codec::ipv6_full_values(&addr), without_scope(addr))
    }

    fn scrambled(plain: &[u16], addr: SocketAddr) -> Self {
        let mut values = [0u16; 9];
        values[..plain.len()].copy_from_slice(plain);
        scramble(&mut values[..plain.len()]);
        Self {
            values,
            len: plain.len() as u8,
            addr,
        }
    }

    /// The socket address these words encode (IPv6 flow label and scope id 0).
    pub fn to_socket_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Which encoding these words use.
    pub fn encoding(&self) -> Encoding {
        match self.len {
            3 => Encoding::Ipv4,
            6 => Encoding::Ipv6Compact,
            _ => Encoding::Ipv6Full,
        }
    }

    /// The word values (each word's position in the [dictionary](crate::dictionary)).
    pub fn values(&self) -> &[u16] {
        &self.values[..usize::from(self.len)]
    }

    /// The words, in order.
    pub fn words(&self) -> impl ExactSizeIterator<Item = &'static str> + '_ {
        self.values().iter().map(|&v| dictionary::word(v))
    }

    /// The word address with these word values, if they are 3, 6 or 9 values that encode a
    /// socket address (some 6-word values are reserved).
    pub fn from_values(values: &[u16]) -> Result<Self, WordsError> {
        let encoding = Encoding::from_word_count(values.len()).ok_or(WordsError::WordCount {
            found: values.len(),
        })?;
        let mut array = [0u16; 9];
        array[..values.len()].copy_from_slice(values);
        let mut plain = array;
        let plain = &mut plain[..values.len()];
        unscramble(plain);
        let addr = match encoding {
            Encoding::Ipv4 => codec::ipv4_from_values(plain),
            Encoding::Ipv6Compact => codec::ipv6_compact_from_values(plain)?,
            Encoding::Ipv6Full => codec::ipv6_full_from_values(plain),
        };
        Ok(Self {
            values: array,
            len: values.len() as u8,
            addr,
        })
    }

    /// Parses words like [`FromStr`], also returning the typos it corrected, so a user
    /// interface can say what it read (`word 2 "thundr" read as "thunder"`).
    pub fn parse_with_corrections(text: &str) -> Result<(Self, Vec<Correction>), WordsError> {
        if text.len() > MAX_INPUT_LEN {
            return Err(WordsError::TooLong {
                len: text.len(),
                max: MAX_INPUT_LEN,
            });
        }
        let mut values = [0u16; 9];
        let mut count = 0;
        let mut corrections = Vec::new();
        let (words, found) = split_words(text)?;
        if Encoding::from_word_count(found).is_none() {
            return Err(WordsError::WordCount { found });
        }
        for (i, typed) in words[..found].iter().enumerate() {
            let position = i + 1;
            values[i] = match dictionary::lookup(typed) {
                Lookup::Exact(v) => v,
                Lookup::Corrected(v) => {
                    corrections.push(Correction {
                        position,
                        typed: echo(typed),
                        corrected: dictionary::word(v),
                    });
                    v
                }
                Lookup::Ambiguous(candidates) => {
                    return Err(WordsError::AmbiguousWord {
                        position,
                        word: echo(typed),
                        suggestions: candidates.into_iter().map(dictionary::word).collect(),
                    });
                }
                Lookup::Unknown => {
                    return Err(WordsError::UnknownWord {
                        position,
                        word: echo(typed),
                    });
                }
            };
            count += 1;
        }
        Ok((Self::from_values(&values[..count])?, corrections))
    }
}

/// Splits `text` into at most 9 words at `.`, `-`, `_` and whitespace.
fn split_words<'a>(text: &'a str) -> Result<([&'a str; 9], usize), WordsError> {
    let mut words = [""; 9];
    let mut found = 0;
    let mut push = |word: &'a str| {
        if found == words.len() {
            return Err(WordsError::WordCount { found: 10 });
        }
        words[found] = word;
        found += 1;
        Ok(())
    };
    if text.is_ascii() {
        // Fast path: byte scanning (ASCII whitespace is b' ' and b'\t'..=b'\r').
        let bytes = text.as_bytes();
        let mut start = None;
        for (i, b) in bytes.iter().enumerate() {
            let separator = matches!(b, b'.' | b'-' | b'_' | b' ' | b'\t'..=b'\r');
            match (separator, start) {
                (true, Some(s)) => {
                    push(&text[s..i])?;
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            push(&text[s..])?;
        }
    } else {
        for word in text
            .split(|c: char| matches!(c, '.' | '-' | '_') || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            push(word)?;
        }
    }
    Ok((words, found))
}

fn without_scope(addr: SocketAddrV6) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(*addr.ip(), addr.port(), 0, 0))
}

fn echo(typed: &str) -> String {
    typed
        .chars()
        .take(MAX_ECHO_CHARS)
        .collect::<String>()
        .to_lowercase()
}

impl From<SocketAddr> for WordAddress {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr)
    }
}

impl From<SocketAddrV4> for WordAddress {
    fn from(addr: SocketAddrV4) -> Self {
        Self::new(SocketAddr::V4(addr))
    }
}

impl From<SocketAddrV6> for WordAddress {
    fn from(addr: SocketAddrV6) -> Self {
        Self::new(SocketAddr::V6(addr))
    }
}

impl From<WordAddress> for SocketAddr {
    fn from(words: WordAddress) -> Self {
        words.to_socket_addr()
    }
}

impl fmt::Display for WordAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Assemble the text first so a `String` sink grows once: 9 words of up to 9 letters
        // and 8 dots fit in 89 bytes.
        let mut buf = [0u8; 9 * dictionary::MAX_WORD_LEN + 8];
        let mut len = 0;
        for (i, word) in self.words().enumerate() {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            buf[len..len + word.len()].copy_from_slice(word.as_bytes());
            len += word.len();
        }
        // Dictionary words are ASCII, so this never fails.
        f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for WordAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WordAddress({self} = {})", self.to_socket_addr())
    }
}

impl FromStr for WordAddress {
    type Err = WordsError;

    fn from_str(text: &str) -> Result<Self, WordsError> {
        Self::parse_with_corrections(text).map(|(address, _)| address)
    }
}

impl serde::Serialize for WordAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WordAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WordAddress;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a word address such as `ocean.thunder.falcon`")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<WordAddress, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Reads a socket address written either as numbers (`203.0.113.9:9000`, `[2001:db8::1]:443`)
/// or as words (`ocean.thunder.falcon`): what a command line or configuration file accepts.
///
/// When the text is neither, the error is the word parser's, since numbers are easy to check.
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, WordsError> {
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) => Ok(addr),
        Err(_) => text.parse::<WordAddress>().map(|w| w.to_socket_addr()),
    }
}
