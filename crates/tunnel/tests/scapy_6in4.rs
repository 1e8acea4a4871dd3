//! 6in4 against scapy, an independent implementation: byte-level cross-checks both ways, and a
//! live data path over raw IPv4 protocol-41 sockets between two network namespaces.
//!
//! scapy comes from the venv `ci-setup.sh` creates (`target/tunnel-venv/venv`), or the python
//! named by `TUNNEL_SCAPY_PYTHON`. Without it, or without root for the namespace test, the tests
//! skip loudly unless `CI=true`, where they fail.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use p2p_foundation_tunnel::{SixIn4Packet, encode_6in4};

const HANG_GUARD: Duration = Duration::from_secs(60);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The python with scapy, or `None` (after a loud message) when the test should skip.
fn scapy_python() -> Option<PathBuf> {
    let py = std::env::var_os("TUNNEL_SCAPY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/tunnel-venv/venv/bin/python")
        });
    let probe = Command::new(&py).args(["-c", "import scapy"]).output();
    let why = match &probe {
        Ok(out) if out.status.success() => return Some(py),
        Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
        Err(e) => format!("cannot run it: {e}"),
    };
    assert!(
        !in_ci(),
        "CI=true but scapy is missing at {}: run crates/tunnel/ci-setup.sh\n{why}",
        py.display()
    );
    eprintln!(
        "!!! SKIPPING: scapy not found at {} (run crates/tunnel/ci-setup.sh)",
        py.display()
    );
    None
}

fn python(py: &PathBuf, script: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

const BUILD: &str = r#"
import sys
from scapy.all import IP, IPv6, UDP, Raw, raw
p = IP(src="198.51.100.2", dst="198.51.100.1", ttl=33, id=4242)/IPv6(src="2002:c633:6402::2", dst="2002:c633:6401::1", hlim=9)/UDP(sport=1111, dport=2222)/Raw(b"ping-6in4")
print(raw(p).hex())
print(raw(p[IPv6]).hex())
"#;

#[test]
fn scapy_built_packet_decodes() {
    let Some(py) = scapy_python() else { return };
    let out = python(&py, BUILD, &[]);
    let mut lines = out.lines();
    let outer = unhex(lines.next().expect("outer"));
    let inner = unhex(lines.next().expect("inner"));
    let p = SixIn4Packet::decode(&outer).expect("our decoder accepts scapy's 6in4 packet");
    assert_eq!(p.src, Ipv4Addr::new(198, 51, 100, 2));
    assert_eq!(p.dst, Ipv4Addr::new(198, 51, 100, 1));
    assert_eq!((p.ttl, p.ident), (33, 4242));
    assert_eq!(p.inner, &inner[..]);
    assert_eq!(p.inner_src().to_string(), "2002:c633:6402::2");
    assert_eq!(p.inner_dst().to_string(), "2002:c633:6401::1");
    // Our encoder produces scapy's bytes exactly (scapy also leaves flags and TOS zero).
    let mut ours = Vec::new();
    encode_6in4(p.src, p.dst, p.ttl, p.ident, p.inner, &mut ours).expect("encode");
    assert_eq!(hex(&ours), hex(&outer));
}

const DISSECT: &str = r#"
import sys
from scapy.all import IP, IPv6, UDP, raw
p = IP(bytes.fromhex(sys.argv[1]))
c = p.chksum
q = p.copy(); del q.chksum
ok = IP(raw(q)).chksum == c
print(p.version, p.ihl, p.len, p.id, int(p.flags), p.frag, p.ttl, p.proto, p.src, p.dst, ok, p[IPv6].src, p[IPv6].dst, p[IPv6].plen, p[UDP].sport, p[UDP].dport, p[UDP].load.decode())
"#;

#[test]
fn our_packet_dissects_in_scapy() {
    let Some(py) = scapy_python() else { return };
    let inner = unhex(&python(
        &py,
        r#"from scapy.all import IPv6, UDP, Raw, raw
print(raw(IPv6(src="2001:db8::a", dst="2001:db8::b")/UDP(sport=5, dport=6)/Raw(b"from-rust")).hex())"#,
        &[],
    ));
    let mut out = Vec::new();
    encode_6in4(
        Ipv4Addr::new(192, 0, 2, 7),
        Ipv4Addr::new(192, 0, 2, 9),
        17,
        99,
        &inner,
        &mut out,
    )
    .expect("encode");
    let fields = python(&py, DISSECT, &[&hex(&out)]);
    assert_eq!(
        fields,
        format!(
            "4 5 {} 99 0 0 17 41 192.0.2.7 192.0.2.9 True 2001:db8::a 2001:db8::b {} 5 6 from-rust",
            out.len(),
            inner.len() - 40
        )
    );
}

// ------------------------------------------------------------------ live, two namespaces

const LIVE: &str = r#"
import socket, sys
from scapy.all import IP, IPv6, UDP, Raw, raw
me, peer = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 41)
s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
s.settimeout(20)
p = IP(src=me, dst=peer, ttl=33, id=4242)/IPv6(src="2002:c633:6402::2", dst="2002:c633:6401::1", hlim=9)/UDP(sport=1111, dport=2222)/Raw(b"ping-6in4")
s.sendto(raw(p), (peer, 0))
for _ in range(50):
    r = IP(s.recv(65535))
    if r.src != peer:
        continue
    u = r[UDP]
    c = u.chksum
    q = r.copy(); del q[UDP].chksum
    good = IP(raw(q))[UDP].chksum == c
    print(r.proto, r.src, r.dst, r[IPv6].src, r[IPv6].dst, u.sport, u.dport, u.load.decode(), good)
    break
"#;

struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("command runs");
    assert!(st.success(), "{args:?} failed");
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

#[test]
fn live_6in4_between_namespaces() {
    if !is_root() {
        assert!(
            !in_ci(),
            "CI=true: this test needs root (raw sockets, network namespaces)"
        );
        eprintln!("!!! SKIPPING live_6in4_between_namespaces: needs root");
        return;
    }
    let Some(py) = scapy_python() else { return };
    let tag = format!("tun6in4-{}", std::process::id());
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    let _guard = Netns(vec![a.clone(), b.clone()]);
    sh(&["ip", "netns", "add", &a]);
    sh(&["ip", "netns", "add", &b]);
    sh(&[
        "ip", "link", "add", "name", "va", "netns", &a, "type", "veth", "peer", "name", "vb",
        "netns", &b,
    ]);
    for (ns, dev, addr) in [(&a, "va", "198.51.100.1/24"), (&b, "vb", "198.51.100.2/24")] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    let mut reflector = KillOnDrop(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &a,
                env!("CARGO_BIN_EXE_p2p-tunnel-6in4-reflect"),
                "1",
                "50",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("reflector starts"),
    );
    let stdout = reflector.0.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(
        rx.recv_timeout(HANG_GUARD)
            .expect("reflector ready (hang guard)"),
        "ready"
    );

    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &b])
        .arg(&py)
        .args(["-c", LIVE, "198.51.100.2", "198.51.100.1"]);
    let out = cmd.output().expect("scapy peer runs");
    assert!(
        out.status.success(),
        "scapy peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        got,
        "41 198.51.100.1 198.51.100.2 2002:c633:6401::1 2002:c633:6402::2 1111 2222 ping-6in4 True",
        "scapy dissected our reflected 6in4 packet"
    );
    let line = rx
        .recv_timeout(HANG_GUARD)
        .expect("reflector reported the packet (hang guard)");
    assert_eq!(
        line,
        "reflected src=198.51.100.2 dst=198.51.100.1 ttl=33 ident=4242 inner_src=2002:c633:6402::2 inner_dst=2002:c633:6401::1 inner_len=57"
    );
    let status = reflector.0.wait().expect("reflector exits");
    assert!(status.success(), "reflector exit status {status}");
}
