//! `cargo xtask bench tunnel`: the 6in4 data-path codec and the address maths.
//!
//! - `sixin4_encode_ns`: wrapping a 1280-byte IPv6 packet (the IPv6 minimum MTU, the usual
//!   6in4 tunnel MTU) into a fresh IPv4 packet, beside `memcpy_1300_ns`, copying the same
//!   1300 bytes into a reused buffer: the floor any encoder that copies pays.
//! - `sixin4_decode_ns`: decoding and checking (IPv4 checksum, lengths, inner IPv6 header) that
//!   packet, beside the same memcpy floor: decoding borrows, so it should cost less than a copy.
//! - `teredo_parse_ns`, `nat64_discover_ns`: address maths, no baseline (no other Rust
//!   implementation in this workspace's dependency tree).
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use p2p_foundation_benchkit::{Better, Suite};
use p2p_foundation_tunnel::{
    Nat64Prefix, SixIn4Packet, TeredoAddr, WKA_170, WKA_171, discover_nat64_prefixes, encode_6in4,
};

fn main() {
    let mut suite = Suite::new("tunnel");
    let mut inner = vec![0u8; 1280];
    inner[0] = 0x60;
    inner[4..6].copy_from_slice(&1240u16.to_be_bytes());
    inner[6] = 59;
    inner[7] = 64;
    for (i, b) in inner[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let (src, dst) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let mut packet = Vec::new();
    encode_6in4(src, dst, 64, 1, &inner, &mut packet).expect("encode");
    let mut out = Vec::with_capacity(packet.len());
    let mut copy = vec![0u8; packet.len()];

    let (enc, memcpy) = suite.compare_ns(
        || {
            out.clear();
            encode_6in4(src, dst, 64, 1, black_box(&inner), &mut out).expect("encode");
            black_box(out.len())
        },
        || {
            copy.copy_from_slice(black_box(&packet));
            black_box(copy[0])
        },
    );
    suite.record_vs(
        "sixin4_encode_ns",
        enc,
        "ns",
        Better::Lower,
        "memcpy_1300_ns",
        memcpy,
    );

    let (dec, memcpy) = suite.compare_ns(
        || {
            black_box(
                SixIn4Packet::decode(black_box(&packet))
                    .expect("decode")
                    .inner
                    .len(),
            )
        },
        || {
            copy.copy_from_slice(black_box(&packet));
            black_box(copy[0])
        },
    );
    suite.record_vs(
        "sixin4_decode_ns",
        dec,
        "ns",
        Better::Lower,
        "memcpy_1300_ns",
        memcpy,
    );

    let teredo: Ipv6Addr = "2001:0:cb00:7105:3455:35c0:34ff:8efe"
        .parse()
        .expect("address");
    let t = suite
        .time_ns(|| black_box(TeredoAddr::from_ipv6(black_box(teredo)).map(|t| t.mapped_port)));
    suite.record("teredo_parse_ns", t, "ns", Better::Lower);

    let pre = Nat64Prefix::new("2001:db8:122::".parse().expect("prefix"), 48).expect("prefix");
    let recs = [pre.embed(WKA_170), pre.embed(WKA_171)];
    let d = suite.time_ns(|| black_box(discover_nat64_prefixes(black_box(&recs)).len()));
    suite.record("nat64_discover_ns", d, "ns", Better::Lower);

    suite.finish();
}
