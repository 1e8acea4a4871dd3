//! `cargo xtask bench words`: word addresses beside the `three-word-networking` crate
//! (crates.io), the scheme the product description comes from, in the same run.
//!
//! - `encode_ns`: IPv4 `SocketAddr` → three-word text (`WordAddress::from(addr).to_string()`
//!   vs `ThreeWordEncoder::encode_socket(addr)?.to_string()`).
//! - `decode_ns`: three-word text → `SocketAddr` (`text.parse::<WordAddress>()` +
//!   `to_socket_addr()` vs `ThreeWordEncoder::decode_string(text)`), each on its own words.
//! - `ipv6_encode_ns` / `ipv6_decode_ns`: the same for IPv6 socket addresses from a mix of
//!   common forms and random addresses, beside `ThreeWordAdaptiveEncoder` (its IPv6 API takes
//!   and returns address text, so the baseline includes formatting and parsing the address).
//! - `ipv4_round_trip_ok` / `ipv6_round_trip_ok`: the fraction of the sample that comes back
//!   exactly, for both.
//! - `typo_decode_ns`: decoding three words one of which has a single typo (correction search);
//!   the baseline crate has no typo correction, so this figure has no baseline.
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use p2p_foundation_benchkit::{Better, Suite};
use p2p_foundation_words::WordAddress;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use three_word_networking::{ThreeWordAdaptiveEncoder, ThreeWordEncoder};

fn main() {
    let mut suite = Suite::new("words");
    let n = suite.scale(4096, 256);
    let mut rng = ChaCha8Rng::seed_from_u64(9000);
    let v4: Vec<SocketAddrV4> = (0..n)
        .map(|_| SocketAddrV4::new(Ipv4Addr::from(rng.next_u32()), rng.random()))
        .collect();
    let theirs = ThreeWordEncoder::new().expect("three-word-networking dictionary");

    // Warm both dictionaries so neither pays its one-time set-up inside a timed batch.
    let _ = WordAddress::from(SocketAddr::V4(v4[0])).to_string();
    let _ = theirs.encode_socket(v4[0]);

    let ours_text: Vec<String> = v4
        .iter()
        .map(|&a| WordAddress::from(a).to_string())
        .collect();
    let their_text: Vec<String> = v4
        .iter()
        .map(|&a| {
            theirs
                .encode_socket(a)
                .map(|e| e.to_string())
                .unwrap_or_default()
        })
        .collect();
    let ours_ok = v4
        .iter()
        .zip(&ours_text)
        .filter(|(a, t)| {
            t.parse::<WordAddress>().map(|w| w.to_socket_addr()) == Ok(SocketAddr::V4(**a))
        })
        .count();
    let their_ok = v4
        .iter()
        .zip(&their_text)
        .filter(|(a, t)| {
            theirs
                .decode_string(t)
                .is_ok_and(|(ip, port)| SocketAddrV4::new(ip, port) == **a)
        })
        .count();
    suite.record_vs(
        "ipv4_round_trip_ok",
        ours_ok as f64 / n as f64,
        "fraction",
        Better::Higher,
        "three_word_networking.ipv4_round_trip_ok",
        their_ok as f64 / n as f64,
    );

    let (mut i, mut j) = (0, 0);
    let (ours, base) = suite.compare_ns(
        || {
            i = (i + 1) % n;
            WordAddress::from(black_box(SocketAddr::V4(v4[i]))).to_string()
        },
        || {
            j = (j + 1) % n;
            theirs
                .encode_socket(black_box(v4[j]))
                .map(|e| e.to_string())
        },
    );
    suite.record_vs(
        "encode_ns",
        ours,
        "ns",
        Better::Lower,
        "three_word_networking.encode_ns",
        base,
    );

    let (mut i, mut j) = (0, 0);
    let (ours, base) = suite.compare_ns(
        || {
            i = (i + 1) % n;
            black_box(&ours_text[i])
                .parse::<WordAddress>()
                .map(|w| w.to_socket_addr())
        },
        || {
            j = (j + 1) % n;
            theirs
                .decode_string(black_box(&their_text[j]))
                .map(|(ip, port)| SocketAddrV4::new(ip, port))
        },
    );
    suite.record_vs(
        "decode_ns",
        ours,
        "ns",
        Better::Lower,
        "three_word_networking.decode_ns",
        base,
    );

    // One typo (a letter deleted from the middle word) in every address.
    let typo_text: Vec<String> = ours_text
        .iter()
        .map(|t| {
            let words: Vec<&str> = t.split('.').collect();
            let middle = words[1];
            let cut = middle.len() / 2;
            format!(
                "{}.{}{}.{}",
                words[0],
                &middle[..cut],
                &middle[cut + 1..],
                words[2]
            )
        })
        .collect();
    let mut i = 0;
    let typo = suite.time_ns(|| {
        i = (i + 1) % n;
        black_box(&typo_text[i]).parse::<WordAddress>().ok()
    });
    suite.record("typo_decode_ns", typo, "ns", Better::Lower);

    // IPv6: two thirds common forms (6 words), one third arbitrary (9 words).
    let v6: Vec<SocketAddrV6> = (0..n)
        .map(|k| {
            let r: u128 = rng.random();
            let ip = match k % 6 {
                0 => 1,
                1 => 0xfe80 << 112 | r & u128::from(u64::MAX),
                2 => 0x2001_0db8 << 96 | (r & 0xffff_ffff) << 64 | r >> 120,
                3 => 0xfd << 120 | (r >> 8) << 64 | 1,
                _ => r,
            };
            SocketAddrV6::new(Ipv6Addr::from(ip), rng.random(), 0, 0)
        })
        .collect();
    let adaptive = ThreeWordAdaptiveEncoder::new().expect("three-word-networking dictionary");
    let ours6: Vec<String> = v6
        .iter()
        .map(|&a| WordAddress::from(a).to_string())
        .collect();
    let theirs6: Vec<String> = v6
        .iter()
        .map(|a| adaptive.encode(&a.to_string()).unwrap_or_default())
        .collect();
    let ours_ok = v6
        .iter()
        .zip(&ours6)
        .filter(|(a, t)| {
            t.parse::<WordAddress>().map(|w| w.to_socket_addr()) == Ok(SocketAddr::V6(**a))
        })
        .count();
    let their_ok = v6
        .iter()
        .zip(&theirs6)
        .filter(|(a, t)| {
            adaptive
                .decode(t)
                .ok()
                .and_then(|s| s.parse::<SocketAddr>().ok())
                == Some(SocketAddr::V6(**a))
        })
        .count();
    suite.record_vs(
        "ipv6_round_trip_ok",
        ours_ok as f64 / n as f64,
        "fraction",
        Better::Higher,
        "three_word_networking.ipv6_round_trip_ok",
        their_ok as f64 / n as f64,
    );
    let words6: f64 = ours6
        .iter()
        .map(|t| t.split('.').count() as f64)
        .sum::<f64>()
        / n as f64;
    let their_words6: f64 = theirs6
        .iter()
        .map(|t| t.split(['-', ' ', '.']).count() as f64)
        .sum::<f64>()
        / n as f64;
    suite.record_vs(
        "ipv6_mean_words",
        words6,
        "words",
        Better::Lower,
        "three_word_networking.ipv6_mean_words",
        their_words6,
    );

    let (mut i, mut j) = (0, 0);
    let (ours, base) = suite.compare_ns(
        || {
            i = (i + 1) % n;
            WordAddress::from(black_box(v6[i])).to_string()
        },
        || {
            j = (j + 1) % n;
            adaptive.encode(&black_box(v6[j]).to_string())
        },
    );
    suite.record_vs(
        "ipv6_encode_ns",
        ours,
        "ns",
        Better::Lower,
        "three_word_networking.ipv6_encode_ns",
        base,
    );
    let (mut i, mut j) = (0, 0);
    let (ours, base) = suite.compare_ns(
        || {
            i = (i + 1) % n;
            black_box(&ours6[i])
                .parse::<WordAddress>()
                .map(|w| w.to_socket_addr())
        },
        || {
            j = (j + 1) % n;
            adaptive
                .decode(black_box(&theirs6[j]))
                .map(|s| s.parse::<SocketAddr>())
        },
    );
    suite.record_vs(
        "ipv6_decode_ns",
        ours,
        "ns",
        Better::Lower,
        "three_word_networking.ipv6_decode_ns",
        base,
    );

    suite.finish();
}
