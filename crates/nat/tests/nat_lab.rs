//! Real NATs in network namespaces (see /work/shared/design/NAT-LAB.md): two LANs, each behind
//! its own nftables NAT router, and a public segment with a rendezvous and STUN servers.
//!
//! Needs root, `ip` and `nft`. Without root the tests skip loudly, unless `CI=true`, where
//! they must run.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use p2p_foundation_identity::Keypair;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command as TokioCommand};
use tokio::time::timeout;

const HANG_GUARD: Duration = Duration::from_secs(90);
const BIN: &str = env!("CARGO_BIN_EXE_p2pf-nat");
static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

fn can_run(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tools = ["ip", "nft"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if root && tools {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test} needs root, ip and nft with CI=true (root: {root}, tools: {tools}); see crates/nat/ci-setup.sh"
        );
    }
    eprintln!("SKIPPED {test}: needs root and iproute2 + nftables (root: {root}, tools: {tools})");
    false
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("command runs");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Nat {
    /// `masquerade`: port-preserving, endpoint-independent mapping.
    Masquerade,
    /// `masquerade random`: a random port per destination (symmetric).
    Random,
}

/// The lab's namespaces; all deleted on drop, even when the test fails.
struct Lab {
    prefix: String,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}{}", self.prefix, role)
    }

    fn new(nat: Nat) -> Self {
        let prefix = format!(
            "p2pfnat-{}-{}-",
            std::process::id(),
            LAB_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab { prefix };
        for role in ["lanA", "natA", "lanB", "natB", "pub"] {
            sh(&["ip", "netns", "add", &lab.ns(role)]);
            sh(&["ip", "-n", &lab.ns(role), "link", "set", "lo", "up"]);
        }
        let pubns = lab.ns("pub");
        sh(&["ip", "-n", &pubns, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &pubns, "link", "set", "br0", "up"]);
        sh(&[
            "ip",
            "-n",
            &pubns,
            "addr",
            "add",
            "203.0.113.9/24",
            "dev",
            "br0",
        ]);
        sh(&[
            "ip",
            "-n",
            &pubns,
            "addr",
            "add",
            "203.0.113.10/24",
            "dev",
            "br0",
        ]);
        for (side, lan_net, public_ip) in [
            ("A", "192.168.77", "203.0.113.1"),
            ("B", "192.168.88", "203.0.113.2"),
        ] {
            let lan = lab.ns(&format!("lan{side}"));
            let router = lab.ns(&format!("nat{side}"));
            sh(&[
                "ip", "link", "add", "name", "l0", "netns", &lan, "type", "veth", "peer", "name",
                "l1", "netns", &router,
            ]);
            sh(&[
                "ip",
                "-n",
                &lan,
                "addr",
                "add",
                &format!("{lan_net}.2/24"),
                "dev",
                "l0",
            ]);
            sh(&["ip", "-n", &lan, "link", "set", "l0", "up"]);
            sh(&[
                "ip",
                "-n",
                &lan,
                "route",
                "add",
                "default",
                "via",
                &format!("{lan_net}.1"),
            ]);
            sh(&[
                "ip",
                "-n",
                &router,
                "addr",
                "add",
                &format!("{lan_net}.1/24"),
                "dev",
                "l1",
            ]);
            sh(&["ip", "-n", &router, "link", "set", "l1", "up"]);
            let port = format!("p{side}");
            sh(&[
                "ip", "link", "add", "name", "w0", "netns", &router, "type", "veth", "peer",
                "name", &port, "netns", &pubns,
            ]);
            sh(&[
                "ip",
                "-n",
                &router,
                "addr",
                "add",
                &format!("{public_ip}/24"),
                "dev",
                "w0",
            ]);
            sh(&["ip", "-n", &router, "link", "set", "w0", "up"]);
            sh(&["ip", "-n", &pubns, "link", "set", &port, "master", "br0"]);
            sh(&["ip", "-n", &pubns, "link", "set", &port, "up"]);
            sh(&[
                "ip",
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
            let masq = match nat {
                Nat::Masquerade => "masquerade",
                Nat::Random => "masquerade random",
            };
            // A home router: source NAT out of the WAN port, and nothing unsolicited reaches
            // the router itself (so no conntrack entry is confirmed for an early inbound probe).
            let rules = format!(
                "table ip nat {{\n chain post {{\n  type nat hook postrouting priority 100\n  oifname \"w0\" {masq}\n }}\n}}\n\
                 table inet filter {{\n chain input {{\n  type filter hook input priority 0\n  policy drop\n }}\n}}\n"
            );
            let mut nft = Command::new("ip")
                .args(["netns", "exec", &router, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("nft runs");
            use std::io::Write;
            nft.stdin
                .take()
                .expect("stdin")
                .write_all(rules.as_bytes())
                .expect("rules written");
            assert!(
                nft.wait().expect("nft exits").success(),
                "nft rules rejected"
            );
        }
        lab
    }

    fn spawn(&self, role: &str, args: &[&str]) -> Child {
        TokioCommand::new("ip")
            .args(["netns", "exec", &self.ns(role), BIN])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("helper starts")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for role in ["lanA", "natA", "lanB", "natB", "pub"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .status();
        }
    }
}

/// Waits until a server helper prints `count` "listening" lines.
async fn wait_listening(child: &mut Child, count: usize) {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    for _ in 0..count {
        let line = timeout(HANG_GUARD, lines.next_line())
            .await
            .expect("hang guard")
            .expect("read")
            .expect("server printed a line before exiting");
        assert!(
            line.starts_with("listening "),
            "unexpected server output: {line}"
        );
    }
}

/// Runs a finishing helper; returns (exit code, stdout, stderr).
async fn finish(child: Child) -> (i32, String, String) {
    let out = timeout(HANG_GUARD, child.wait_with_output())
        .await
        .expect("hang guard")
        .expect("helper runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SECRET_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const SECRET_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

async fn punch_pair(lab: &Lab, session: &str) -> ((i32, String, String), (i32, String, String)) {
    let mut rendezvous = lab.spawn("pub", &["rendezvous", "203.0.113.9:4000"]);
    wait_listening(&mut rendezvous, 1).await;
    let id_a = Keypair::from_secret_bytes([0x11; 32]).peer_id().to_string();
    let id_b = Keypair::from_secret_bytes([0x22; 32]).peer_id().to_string();
    let a = lab.spawn(
        "lanA",
        &[
            "punch",
            "192.168.77.2:5555",
            "203.0.113.9:4000",
            session,
            SECRET_A,
            &id_b,
        ],
    );
    let b = lab.spawn(
        "lanB",
        &[
            "punch",
            "192.168.88.2:6666",
            "203.0.113.9:4000",
            session,
            SECRET_B,
            &id_a,
        ],
    );
    let (ra, rb) = tokio::join!(finish(a), finish(b));
    eprintln!("peer A ({}): {}{}", ra.0, ra.1, ra.2);
    eprintln!("peer B ({}): {}{}", rb.0, rb.1, rb.2);
    drop(rendezvous);
    (ra, rb)
}

async fn behaviour(lab: &Lab) -> String {
    let mut stun = lab.spawn(
        "pub",
        &[
            "stun-server",
            "203.0.113.9:3478",
            "203.0.113.10:3478",
            "203.0.113.10:3479",
        ],
    );
    wait_listening(&mut stun, 3).await;
    let probe = lab.spawn(
        "lanA",
        &[
            "behaviour",
            "192.168.77.2:7777",
            "203.0.113.9:3478",
            "203.0.113.10:3478",
            "203.0.113.10:3479",
        ],
    );
    let (code, out, err) = finish(probe).await;
    assert_eq!(code, 0, "behaviour discovery failed: {out} {err}");
    eprintln!("behaviour from lanA: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn punching_succeeds_through_two_masquerade_nats() {
    if !can_run("punching_succeeds_through_two_masquerade_nats") {
        return;
    }
    let lab = Lab::new(Nat::Masquerade);

    let report = behaviour(&lab).await;
    assert!(
        report.starts_with("mapping EndpointIndependent behind_nat Some(true)"),
        "{report}"
    );
    assert!(report.contains("mapped 203.0.113.1:"), "{report}");

    let ((ca, oa, ea), (cb, ob, eb)) = punch_pair(&lab, "000102030405060708090a0b0c0d0e0f").await;
    assert_eq!(ca, 0, "A did not punch: {oa} {ea}");
    assert_eq!(cb, 0, "B did not punch: {ob} {eb}");
    // Each side reports the working 5-tuple: its LAN socket and the other NAT's public mapping.
    assert!(
        oa.contains("punched local 192.168.77.2:5555 remote 203.0.113.2:"),
        "{oa}"
    );
    assert!(
        ob.contains("punched local 192.168.88.2:6666 remote 203.0.113.1:"),
        "{ob}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_nats_fail_punching_cleanly_and_the_relay_carries_traffic() {
    if !can_run("symmetric_nats_fail_punching_cleanly_and_the_relay_carries_traffic") {
        return;
    }
    let lab = Lab::new(Nat::Random);

    let report = behaviour(&lab).await;
    assert!(
        report.starts_with("mapping AddressAndPortDependent behind_nat Some(true)"),
        "{report}"
    );

    let ((ca, oa, ea), (cb, ob, eb)) = punch_pair(&lab, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").await;
    assert_eq!(ca, 2, "A should report PunchFailed: {oa} {ea}");
    assert_eq!(cb, 2, "B should report PunchFailed: {ob} {eb}");
    for out in [&oa, &ob] {
        assert!(
            out.contains("hole punching failed: no authenticated answer"),
            "{out}"
        );
        assert!(out.contains("use a relay"), "{out}");
    }

    // Where punching failed, the relay carries the traffic through both symmetric NATs.
    let id_a = Keypair::from_secret_bytes([0x11; 32]).peer_id().to_string();
    let id_b = Keypair::from_secret_bytes([0x22; 32]).peer_id().to_string();
    let mut relay = lab.spawn("pub", &["relay-server", "203.0.113.9:4100"]);
    wait_listening(&mut relay, 1).await;
    let session = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
    let a = lab.spawn(
        "lanA",
        &[
            "relay-chat",
            "192.168.77.2:5556",
            "203.0.113.9:4100",
            session,
            SECRET_A,
            &id_b,
            "hello from A",
        ],
    );
    let b = lab.spawn(
        "lanB",
        &[
            "relay-chat",
            "192.168.88.2:6667",
            "203.0.113.9:4100",
            session,
            SECRET_B,
            &id_a,
            "hello from B",
        ],
    );
    let ((ca, oa, ea), (cb, ob, eb)) = tokio::join!(finish(a), finish(b));
    eprintln!("relay A ({ca}): {oa}{ea}\nrelay B ({cb}): {ob}{eb}");
    assert_eq!(ca, 0, "A's relay exchange failed: {oa} {ea}");
    assert_eq!(cb, 0, "B's relay exchange failed: {ob} {eb}");
    assert!(oa.contains("relayed received hello from B"), "{oa}");
    assert!(ob.contains("relayed received hello from A"), "{ob}");
}
