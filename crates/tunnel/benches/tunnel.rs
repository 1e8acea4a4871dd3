//! `cargo xtask bench tunnel`: the 6in4 data-path codec and the address maths.
//!
//! - `sixin4_encode_ns`: wrapping a 1280-byte IPv6 packet (the IPv6 minimum MTU, the usual
//!   6in4 tunnel MTU) into a fresh IPv4 packet, beside `memcpy_1300_ns`, copying the same
//!   1300 bytes into a reused buffer: the floor any encoder that copies pays.
//! - `sixin4_decode_ns`: decoding and checking (IPv4 checksum, lengths, inner IPv6 header) that
//!   packet, beside the same memcpy floor: decoding borrows, so it should cost less than a copy.
//! - `teredo_parse_ns`, `nat64_discover_ns`: address maths, no baseline (no other Rust
//!   implementation in this workspace's dependency tree).
//! - `tun6in4.encap_pps_<size>` / `tun6in4.decap_pps_<size>` and `dslite.encap_pps_<size>` /
//!   `dslite.decap_pps_<size>` at 1,280 and 1,500 bytes: the endpoint cores' whole per-packet
//!   decision (parse, checks, counters, writing the outer packet into a reused buffer),
//!   beside `memcpy_pps_<size>`, copying that many bytes into a reused buffer.
//! - `teredo.qualify_ms_p50` (root and miredo-server only; fails under `CI=true` without
//!   them): Teredo qualification (RFC 4380 section 5.2.1, two Router Solicitation
//!   exchanges) of our client behind an nftables masquerade NAT against miredo-server in
//!   network namespaces, from the first solicitation to qualified, over 10 fresh client
//!   processes after one warm-up (which waits for the server to be up); no baseline (the
//!   miredo client reports no qualification time).
//! - `tun6in4.throughput` (root only; fails under `CI=true` without root): one TCP transfer
//!   over two of our 6in4 TUN endpoints between two network namespaces, beside
//!   `veth_ipv4.throughput`, the same transfer over the plain IPv4 veth path under them.

#[path = "../tests/miredo/mod.rs"]
mod miredo;

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use std::time::Instant;

use p2p_foundation_benchkit::{Better, Suite, percentile};
use p2p_foundation_tunnel::endpoint::{
    DsLiteConfig, DsLiteCore, Inbound, Outbound, SixInFourConfig, SixInFourCore,
};
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

    endpoint_pps(&mut suite);
    lab::throughput(&mut suite);
    teredo_qualify(&mut suite);
    suite.finish();
}

/// `teredo.qualify_ms_p50` against miredo-server (see the module docs).
fn teredo_qualify(suite: &mut Suite) {
    if !miredo::prerequisites() {
        return;
    }
    let (mut lab, _) = miredo::lab("bteredo", true);
    // The first run also waits for miredo-server to be listening.
    miredo::qualify(&mut lab);
    let mut took: Vec<f64> = (0..suite.scale(10, 2))
        .map(|_| {
            let line = miredo::qualify(&mut lab);
            let us: f64 = line
                .split(' ')
                .find_map(|p| p.strip_prefix("took_us="))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no qualification time in {line:?}"));
            us / 1e3
        })
        .collect();
    suite.record(
        "teredo.qualify_ms_p50",
        percentile(&mut took, 50.0),
        "ms",
        Better::Lower,
    );
}

fn ipv6_packet(len: usize, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    p[6] = 59;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p
}

fn ipv4_packet(len: usize, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let mut sum = 0u32;
    for w in p[..20].chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p
}

fn pps(ns: f64) -> f64 {
    1e9 / ns
}

fn endpoint_pps(suite: &mut Suite) {
    let (a4, b4) = (
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(198, 51, 100, 2),
    );
    let (a6, b6): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8:41::1".parse().expect("addr"),
        "2001:db8:41::2".parse().expect("addr"),
    );
    let (b4v6, aftr): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8:64::2".parse().expect("addr"),
        "2001:db8:64::1".parse().expect("addr"),
    );
    for size in [1280usize, 1500] {
        let mtu = 1500u16;
        let mut a = SixInFourCore::new(&SixInFourConfig::configured(a4, b4, a6).with_mtu(mtu))
            .expect("config");
        let mut b = SixInFourCore::new(&SixInFourConfig::configured(b4, a4, b6).with_mtu(mtu))
            .expect("config");
        let inner = ipv6_packet(size, a6, b6);
        let mut out = Vec::with_capacity(2000);
        let now = Instant::now();
        assert!(matches!(
            a.outbound(now, &inner, &mut out),
            Outbound::Send(_)
        ));
        let outer = out.clone();
        assert!(matches!(b.inbound(&outer), Inbound::Deliver(_)));
        let mut copy = vec![0u8; size];
        let (enc, memcpy) = suite.compare_ns(
            || black_box(a.outbound(now, black_box(&inner), &mut out)),
            || {
                copy.copy_from_slice(black_box(&inner));
                black_box(copy[0])
            },
        );
        let base = format!("memcpy_pps_{size}");
        suite.record_vs(
            &format!("tun6in4.encap_pps_{size}"),
            pps(enc),
            "pkt/s",
            Better::Higher,
            &base,
            pps(memcpy),
        );
        let (dec, memcpy) = suite.compare_ns(
            || black_box(matches!(b.inbound(black_box(&outer)), Inbound::Deliver(_))),
            || {
                copy.copy_from_slice(black_box(&inner));
                black_box(copy[0])
            },
        );
        suite.record_vs(
            &format!("tun6in4.decap_pps_{size}"),
            pps(dec),
            "pkt/s",
            Better::Higher,
            &base,
            pps(memcpy),
        );

        let mut d = DsLiteCore::new(&DsLiteConfig::new(b4v6, aftr).with_mtu(mtu)).expect("config");
        let host = ipv4_packet(
            size,
            p2p_foundation_tunnel::DSLITE_B4,
            Ipv4Addr::new(203, 0, 113, 80),
        );
        let reply = ipv4_packet(
            size,
            Ipv4Addr::new(203, 0, 113, 80),
            p2p_foundation_tunnel::DSLITE_B4,
        );
        assert!(matches!(
            d.outbound(now, &host, &mut out),
            Outbound::Send(_)
        ));
        assert!(matches!(d.inbound(aftr, &reply), Inbound::Deliver(_)));
        let (enc, memcpy) = suite.compare_ns(
            || black_box(d.outbound(now, black_box(&host), &mut out)),
            || {
                copy.copy_from_slice(black_box(&host));
                black_box(copy[0])
            },
        );
        suite.record_vs(
            &format!("dslite.encap_pps_{size}"),
            pps(enc),
            "pkt/s",
            Better::Higher,
            &base,
            pps(memcpy),
        );
        let (dec, memcpy) = suite.compare_ns(
            || {
                black_box(matches!(
                    d.inbound(aftr, black_box(&reply)),
                    Inbound::Deliver(_)
                ))
            },
            || {
                copy.copy_from_slice(black_box(&host));
                black_box(copy[0])
            },
        );
        suite.record_vs(
            &format!("dslite.decap_pps_{size}"),
            pps(dec),
            "pkt/s",
            Better::Higher,
            &base,
            pps(memcpy),
        );
    }
}

/// `tun6in4.throughput` beside `veth_ipv4.throughput`, in two network namespaces.
mod lab {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use p2p_foundation_benchkit::{Better, Suite};
    use p2p_foundation_tunnel::endpoint::{SixInFourConfig, SixInFourTun};
    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

    fn sh(args: &[&str]) {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("command runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn enter(ns: &str) {
        let file = File::open(format!("/var/run/netns/{ns}")).expect("namespace");
        move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).expect("setns");
    }

    struct Netns([String; 2]);

    impl Drop for Netns {
        fn drop(&mut self) {
            for ns in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }

    fn endpoint(ns: &str, config: SixInFourConfig) {
        let ns = ns.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            enter(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let ep = SixInFourTun::open(&config).expect("6in4 endpoint");
                tx.send(()).expect("ready");
                let e = ep.run().await;
                eprintln!("6in4 endpoint stopped: {e}");
            });
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("endpoint up");
    }

    /// Mbit/s of one TCP transfer of `bytes` from `client_ns` to `dst` in `server_ns`,
    /// timed from connect to the server's last byte read.
    fn transfer(server_ns: &str, client_ns: &str, dst: IpAddr, port: u16, bytes: usize) -> f64 {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sns = server_ns.to_string();
        let server = std::thread::spawn(move || {
            enter(&sns);
            let l = TcpListener::bind(SocketAddr::from((dst, port))).expect("bind");
            ready_tx.send(()).expect("ready");
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0;
            loop {
                match s.read(&mut buf).expect("read") {
                    0 => break,
                    n => got += n,
                }
            }
            (got, Instant::now())
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server up");
        let cns = client_ns.to_string();
        let client = std::thread::spawn(move || {
            enter(&cns);
            let start = Instant::now();
            let mut s =
                TcpStream::connect_timeout(&SocketAddr::from((dst, port)), Duration::from_secs(10))
                    .expect("connect");
            let chunk = vec![0x5au8; 1 << 16];
            let mut sent = 0;
            while sent < bytes {
                let n = chunk.len().min(bytes - sent);
                s.write_all(&chunk[..n]).expect("write");
                sent += n;
            }
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            start
        });
        let start = client.join().expect("client");
        let (got, end) = server.join().expect("server");
        assert_eq!(got, bytes, "every byte arrived");
        got as f64 * 8.0 / end.duration_since(start).as_secs_f64() / 1e6
    }

    pub(super) fn throughput(suite: &mut Suite) {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if !root || !std::path::Path::new("/dev/net/tun").exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: tun6in4.throughput needs root and /dev/net/tun"
            );
            eprintln!("!!! tun6in4.throughput not measured: needs root and /dev/net/tun");
            return;
        }
        let tag = format!("b6in4-{}", std::process::id());
        let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
        let _guard = Netns([a.clone(), b.clone()]);
        for ns in [&a, &b] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "link", "add", "name", "va", "netns", &a, "type", "veth", "peer", "name", "vb",
            "netns", &b,
        ]);
        for (ns, dev, v4) in [(&a, "va", "198.51.100.1/24"), (&b, "vb", "198.51.100.2/24")] {
            sh(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        let (a4, b4) = (
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 2),
        );
        let (a6, b6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:41::1".parse().expect("addr"),
            "2001:db8:41::2".parse().expect("addr"),
        );
        endpoint(&a, SixInFourConfig::configured(a4, b4, a6));
        endpoint(&b, SixInFourConfig::configured(b4, a4, b6));
        let bytes = suite.scale(256 << 20, 4 << 20);
        // Warm up both paths (ARP, the TCP stack), then measure each once.
        transfer(&b, &a, b6.into(), 5000, 1 << 20);
        transfer(&b, &a, b4.into(), 5001, 1 << 20);
        let tun = transfer(&b, &a, b6.into(), 5002, bytes);
        let veth = transfer(&b, &a, b4.into(), 5003, bytes);
        suite.record_vs(
            "tun6in4.throughput",
            tun,
            "Mbit/s",
            Better::Higher,
            "veth_ipv4.throughput",
            veth,
        );
    }
}
