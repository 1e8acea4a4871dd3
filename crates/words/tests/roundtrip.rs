//! Socket address ⇄ words: a million random addresses of each family, the scramble's
//! neighbour property, and fixed vectors that pin the format.
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use p2p_foundation_words::{Encoding, WordAddress, WordsError, dictionary, parse_socket_addr};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SAMPLES: usize = 1_000_000;

fn round_trip(addr: SocketAddr) -> WordAddress {
    let words = WordAddress::from(addr);
    let text = words.to_string();
    let parsed: WordAddress = text
        .parse()
        .unwrap_or_else(|e| panic!("{addr} → {text}: {e}"));
    assert_eq!(parsed, words, "{addr} → {text}");
    assert_eq!(parsed.to_socket_addr(), addr, "{addr} → {text}");
    words
}

#[test]
fn a_million_random_ipv4_socket_addresses_round_trip_in_three_words() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for _ in 0..SAMPLES {
        let addr = SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(rng.next_u32()),
            rng.random(),
        ));
        let words = round_trip(addr);
        assert_eq!(words.encoding(), Encoding::Ipv4);
        assert_eq!(words.words().len(), 3);
    }
}

/// A random IPv6 address: a third fully random, the rest drawn from each compact family.
fn random_ipv6(rng: &mut ChaCha8Rng) -> (Ipv6Addr, bool) {
    let r: u128 = rng.random();
    let (a, compact) = match rng.random_range(0..9u8) {
        0 => (r & 0xffff_ffff, true),
        1 => (0xffff << 32 | r & 0xffff_ffff, true),
        2 => (0xfe80 << 112 | r & u128::from(u64::MAX), true),
        3 => (
            0xfd << 120 | r & ((1 << 120) - 1) & !((1 << 64) - (1 << 20)),
            true,
        ),
        4 => (
            0b001 << 125 | r & ((1 << 125) - 1) & !((1 << 64) - (1 << 15)),
            true,
        ),
        5 => (0xff << 120 | r & (0xff << 112 | ((1 << 68) - 1)), true),
        _ => (r, false),
    };
    (Ipv6Addr::from(a), compact)
}

#[test]
fn a_million_random_ipv6_socket_addresses_round_trip_in_six_or_nine_words() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut six = 0;
    for _ in 0..SAMPLES {
        let (ip, compact) = random_ipv6(&mut rng);
        let addr = SocketAddr::V6(SocketAddrV6::new(ip, rng.random(), 0, 0));
        let words = round_trip(addr);
        if compact {
            assert_eq!(words.encoding(), Encoding::Ipv6Compact, "{addr}");
        }
        if words.encoding() == Encoding::Ipv6Compact {
            six += 1;
        } else {
            assert_eq!(words.encoding(), Encoding::Ipv6Full);
            // A random 128-bit address is almost never in a compact family.
            assert_eq!(words.words().len(), 9);
        }
        // Every address also has a 9-word form, which reads back to the same address.
        let full = WordAddress::ipv6_full(SocketAddrV6::new(ip, addr.port(), 0, 0));
        assert_eq!(full.encoding(), Encoding::Ipv6Full);
        let parsed: WordAddress = full.to_string().parse().expect("9-word form parses");
        assert_eq!(parsed.to_socket_addr(), addr);
    }
    assert!(six > SAMPLES / 2, "only {six} compact");
}

#[test]
fn flow_label_and_scope_id_are_not_encoded() {
    let ip: Ipv6Addr = "fe80::1".parse().unwrap();
    let words = WordAddress::from(SocketAddrV6::new(ip, 9000, 7, 3));
    assert_eq!(
        words.to_socket_addr(),
        SocketAddr::V6(SocketAddrV6::new(ip, 9000, 0, 0))
    );
}

#[test]
fn common_ipv6_forms_take_six_words_and_others_nine() {
    for text in [
        "[::]:0",
        "[::1]:443",
        "[::ffff:192.0.2.1]:80",
        "[fe80::1]:9000",
        "[fe80::1c2d:3eff:fe4f:5a6b]:9000",
        "[fd12:3456:789a:1::1]:9000",
        "[fd00::f:ffff]:1",
        "[2001:db8::9]:9000",
        "[2a01:4f8:c17:a5b::7fff]:443",
        "[ff02::fb]:5353",
        "[ff05::1:3]:547",
    ] {
        let addr: SocketAddr = text.parse().unwrap();
        assert_eq!(round_trip(addr).encoding(), Encoding::Ipv6Compact, "{text}");
    }
    for text in [
        "[2001:db8::dead:beef:1:2]:9000",
        "[2001:db8::8000]:9000",
        "[fd00::10:0]:1",
        "[fe80:0:0:1::1]:9000",
        "[fc00::1]:9000",
        "[ff02:1::1]:9000",
        "[4000::1]:9000",
        "[::1:0:0:1]:9000",
    ] {
        let addr: SocketAddr = text.parse().unwrap();
        assert_eq!(round_trip(addr).encoding(), Encoding::Ipv6Full, "{text}");
    }
}

/// Fixed vectors: these pin the dictionary, the scramble and the layouts (also listed in
/// docs/protocols/words.md). If one changes, every published word address changes.
#[test]
fn test_vectors() {
    for (addr, words) in [
        ("203.0.113.9:9000", "allayed.icepicks.aquilegia"),
        ("127.0.0.1:9000", "foramen.oratorio.railways"),
        (
            "[::1]:443",
            "coulter.peatmoss.blowtubes.whalers.hounding.devices",
        ),
        (
            "[2001:db8::9]:9000",
            "tasseled.howled.wrangler.fellowman.vaporific.eolian",
        ),
        (
            "[2001:db8::dead:beef:1:2]:9000",
            "chadar.icefalls.lapfuls.femora.washed.pastorali.frizzy.lambkin.decennial",
        ),
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        assert_eq!(WordAddress::from(addr).to_string(), words, "{addr}");
        assert_eq!(parse_socket_addr(words).unwrap(), addr);
    }
}

fn shared_positions(a: SocketAddr, b: SocketAddr) -> usize {
    let (a, b) = (WordAddress::from(a), WordAddress::from(b));
    a.values()
        .iter()
        .zip(b.values())
        .filter(|(x, y)| x == y)
        .count()
}

#[test]
fn neighbouring_ipv4_addresses_share_no_word() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let samples = 100_000;
    let (mut port_clean, mut octet_clean) = (0, 0);
    for _ in 0..samples {
        let ip = rng.next_u32();
        let port: u16 = rng.random();
        let a = SocketAddr::from((Ipv4Addr::from(ip), port));
        let next_port = SocketAddr::from((Ipv4Addr::from(ip), port.wrapping_add(1)));
        let next_host = SocketAddr::from((Ipv4Addr::from(ip ^ 1), port));
        port_clean += usize::from(shared_positions(a, next_port) == 0);
        octet_clean += usize::from(shared_positions(a, next_host) == 0);
    }
    eprintln!(
        "no shared word: {port_clean}/{samples} (port ± 1), {octet_clean}/{samples} (last octet ± 1)"
    );
    assert!(port_clean * 100 >= samples * 99, "{port_clean}/{samples}");
    assert!(octet_clean * 100 >= samples * 99, "{octet_clean}/{samples}");
}

#[test]
fn neighbouring_ipv6_addresses_share_no_word() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let samples = 20_000;
    let mut clean = 0;
    for i in 0..samples {
        let (ip, _) = random_ipv6(&mut rng);
        let ip = u128::from(ip);
        let port: u16 = rng.random();
        let a = SocketAddr::from((Ipv6Addr::from(ip), port));
        let b = if i % 2 == 0 {
            SocketAddr::from((Ipv6Addr::from(ip ^ 1), port))
        } else {
            SocketAddr::from((Ipv6Addr::from(ip), port ^ 1))
        };
        clean += usize::from(shared_positions(a, b) == 0);
    }
    assert!(clean * 100 >= samples * 99, "{clean}/{samples}");
}

#[test]
fn reserved_six_word_values_are_rejected() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..10_000 {
        let values: [u16; 6] = std::array::from_fn(|_| rng.random());
        match WordAddress::from_values(&values) {
            Ok(words) => {
                valid += 1;
                assert_eq!(WordAddress::from(words.to_socket_addr()), words);
            }
            Err(WordsError::InvalidEncoding { count: 6, .. }) => {
                invalid += 1;
                let text: Vec<&str> = values.iter().map(|&v| dictionary::word(v)).collect();
                let err = text.join(" ").parse::<WordAddress>().unwrap_err();
                assert!(
                    err.to_string().contains("probably wrong"),
                    "unhelpful message: {err}"
                );
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Tags 3, 4 and 5 accept every body; tags 0, 1 and 2 almost none; 6 to 15 are reserved:
    // about 3/16 of random 6-word values are addresses, so most wrong words are caught.
    assert!(
        invalid > 7_500 && valid > 1_500,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn every_dictionary_word_decodes_in_every_position() {
    let words = dictionary::words();
    for (value, word) in words.iter().enumerate() {
        let next = words[(value + 1) % words.len()];
        let last = words[(value + 2) % words.len()];
        for text in [
            format!("{word}.{next}.{last}"),
            format!("{last}-{word}-{next}"),
            format!("{next} {last} {word}"),
        ] {
            let parsed: WordAddress = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.to_string(), text.replace(['-', ' '], "."));
        }
    }
}

#[test]
fn serde_uses_the_word_text() {
    let addr: SocketAddr = "203.0.113.9:9000".parse().unwrap();
    let words = WordAddress::from(addr);
    let json = serde_json::to_string(&words).unwrap();
    assert_eq!(json, format!("\"{words}\""));
    let back: WordAddress = serde_json::from_str(&json).unwrap();
    assert_eq!(back, words);
    let typo = serde_json::from_str::<WordAddress>("\"ocean thunder\"").unwrap_err();
    assert!(typo.to_string().contains("expected 3 words"), "{typo}");
}

#[test]
fn parse_socket_addr_accepts_numbers_or_words() {
    let addr: SocketAddr = "203.0.113.9:9000".parse().unwrap();
    assert_eq!(parse_socket_addr("203.0.113.9:9000").unwrap(), addr);
    assert_eq!(
        parse_socket_addr(" Allayed Icepicks Aquilegia ").unwrap(),
        addr
    );
    assert!(matches!(
        parse_socket_addr("203.0.113.9"),
        Err(WordsError::WordCount { found: 4 })
    ));
}
