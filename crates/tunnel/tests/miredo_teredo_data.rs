//! The Teredo data path against independent implementations, in network namespaces the test
//! creates: our client (`p2p-tunnel-teredo`, a `TeredoTun`) behind one nftables NAT, Debian's
//! `miredo` client behind another, `miredo-server` in a public namespace (the lab is in
//! `miredo/mod.rs`). `ping -6` and a TCP connection between the two Teredo addresses, in both
//! directions.
//!
//! Needs root, miredo, miredo-server and python3 (the TCP ends); skips loudly without them
//! unless `CI=true`, where it fails.

mod miredo;

use std::io::{BufRead, BufReader};
use std::net::Ipv6Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use miredo::{TwoNatLab, prerequisites, two_nat_lab};
use p2p_foundation_tunnel::TeredoAddr;

/// A TCP listener on `[::]:PORT` that accepts one connection, reads to end of stream and
/// answers with the number of bytes it read; and a client sending N bytes to ADDR:PORT and
/// printing the answer.
const TCP: &str = r#"
import socket, sys
if sys.argv[1] == "serve":
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", int(sys.argv[2])))
    s.listen(1)
    print("listening", flush=True)
    s.settimeout(30)
    c, _ = s.accept()
    c.settimeout(30)
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
    c.sendall(str(n).encode())
    c.close()
else:
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=30)
    data = bytes(range(256)) * (int(sys.argv[4]) // 256)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    print(c.recv(100).decode(), flush=True)
"#;

fn have_python() -> bool {
    Command::new("python3")
        .args(["-c", "import socket"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The miredo client's Teredo address, once its interface has one (bounded wait: it
/// qualifies in a few seconds, retrying every 4 s).
fn miredo_addr(lab: &TwoNatLab) -> Ipv6Addr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("ip")
            .args([
                "-n",
                &lab.ns("cli2"),
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                "teredo",
                "scope",
                "global",
            ])
            .output()
            .expect("ip runs");
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(a) = text
            .split_whitespace()
            .find(|w| w.starts_with("2001:"))
            .and_then(|w| w.split('/').next())
            .and_then(|a| a.parse().ok())
        {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "miredo never qualified\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Replies of `ping -6 -c COUNT` from namespace `role` to `to`.
fn ping(lab: &TwoNatLab, role: &str, to: Ipv6Addr, count: u32) -> u32 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(role),
            "ping",
            "-6",
            "-c",
            &count.to_string(),
            "-W",
            "5",
            "-i",
            "0.3",
        ])
        .arg(to.to_string())
        .output()
        .expect("ping runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(',')
        .find_map(|p| p.trim().strip_suffix(" received")?.parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {text}"))
}

/// A TCP connection from `client` to `server_addr` in `server`; the bytes the server read.
fn tcp(
    lab: &mut TwoNatLab,
    server: &str,
    server_addr: Ipv6Addr,
    client: &str,
    port: u16,
    bytes: usize,
) -> usize {
    let port_s = port.to_string();
    let name = format!("tcp-{server}");
    let srv = lab.spawn(
        server,
        &name,
        &["python3", "-c", TCP, "serve", &port_s],
        true,
    );
    let mut line = String::new();
    BufReader::new(srv.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("listener output");
    assert_eq!(line.trim(), "listening");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(client),
            "python3",
            "-c",
            TCP,
            "connect",
        ])
        .arg(server_addr.to_string())
        .args([&port_s, &bytes.to_string()])
        .output()
        .expect("client runs");
    assert!(
        out.status.success(),
        "TCP client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lab.logs()
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a byte count")
}

#[test]
fn ping_and_tcp_both_ways_with_miredo_client_behind_nats() {
    if !prerequisites() {
        return;
    }
    if !have_python() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but python3 is missing"
        );
        eprintln!("!!! SKIPPING Teredo data-path test: needs python3 for the TCP ends");
        return;
    }
    let mut lab = two_nat_lab("tdata");
    let conf = lab.file("cli.conf");
    std::fs::write(&conf, "InterfaceName teredo\nServerAddress 203.0.113.5\n")
        .expect("config written");
    let pid = lab.file("cli.pid");
    lab.spawn(
        "cli2",
        "miredo",
        &["miredo", "-f", "-c", &conf, "-p", &pid],
        false,
    );
    let ours = lab.spawn(
        "cli1",
        "ours",
        &[
            env!("CARGO_BIN_EXE_p2p-tunnel-teredo"),
            "203.0.113.5",
            "teredo0",
        ],
        true,
    );
    let mut line = String::new();
    BufReader::new(ours.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("our client's output");
    let ours: Ipv6Addr = line
        .strip_prefix("up ")
        .and_then(|l| l.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("our client did not come up: {line:?}\n{}", lab.logs()));
    let theirs = miredo_addr(&lab);
    let (o, t) = (
        TeredoAddr::from_ipv6(ours).expect("Teredo"),
        TeredoAddr::from_ipv6(theirs).expect("Teredo"),
    );
    assert_eq!(
        (o.server, t.server),
        (
            "203.0.113.5".parse().unwrap(),
            "203.0.113.5".parse().unwrap()
        )
    );
    assert_eq!(o.mapped_addr.to_string(), "203.0.113.1");
    assert_eq!(t.mapped_addr.to_string(), "203.0.113.2");

    let forward = ping(&lab, "cli1", theirs, 5);
    let backward = ping(&lab, "cli2", ours, 5);
    eprintln!("ping ours->miredo {forward}/5, miredo->ours {backward}/5");
    assert_eq!((forward, backward), (5, 5), "ping replies\n{}", lab.logs());

    let n = 200_000;
    let to_miredo = tcp(&mut lab, "cli2", theirs, "cli1", 7001, n);
    let to_ours = tcp(&mut lab, "cli1", ours, "cli2", 7002, n);
    eprintln!("TCP ours->miredo {to_miredo} bytes, miredo->ours {to_ours} bytes");
    assert_eq!((to_miredo, to_ours), (n / 256 * 256, n / 256 * 256));
}
