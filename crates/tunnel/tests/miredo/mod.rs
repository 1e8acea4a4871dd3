//! A miredo-server lab for Teredo qualification, shared by `miredo_teredo.rs` and the tunnel
//! benchmark: network namespaces with miredo-server in a public one and the client directly
//! beside it or behind an nftables masquerade NAT, all removed on drop.
//!
//! Needs root and miredo-server (`ci-setup.sh` installs it); [`prerequisites`] says whether
//! they are here (and fails under `CI=true` when not).

#![allow(dead_code, unreachable_pub)]

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("command runs");
    assert!(st.success(), "{args:?} failed");
}

pub struct Lab {
    tag: String,
    server: Option<Child>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.tag)
    }

    /// Where miredo-server's own output (stdout and stderr) goes.
    fn server_log(&self) -> String {
        format!("/tmp/{}.log", self.tag)
    }

    /// What miredo-server said and whether it is still running, for a failure message: a
    /// server that refused to start (a missing `miredo` user, a bad config) names its cause.
    fn server_report(&mut self) -> String {
        let state = match self.server.as_mut().map(Child::try_wait) {
            None => "was not started".to_owned(),
            Some(Ok(None)) => "is still running".to_owned(),
            Some(Ok(Some(status))) => format!("exited early ({status})"),
            Some(Err(e)) => format!("cannot be waited for ({e})"),
        };
        let log = std::fs::read_to_string(self.server_log())
            .unwrap_or_else(|e| format!("<no log at {}: {e}>", self.server_log()));
        format!("miredo-server {state}; its output:\n{log}")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            // miredo-server forks a worker; SIGKILL on the supervisor would orphan it. Ask the
            // whole process group to terminate, wait (bounded), and only then force it.
            let group = format!("-{}", c.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let mut exited = false;
            for _ in 0..100 {
                if c.try_wait().ok().flatten().is_some() {
                    exited = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            if !exited {
                let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                let _ = c.wait();
            }
        }
        for role in ["srv", "cli", "nat"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .status();
        }
        let _ = std::fs::remove_file(format!("/tmp/{}.conf", self.tag));
        let _ = std::fs::remove_file(format!("/tmp/{}.pid", self.tag));
        let _ = std::fs::remove_file(self.server_log());
    }
}

pub fn prerequisites() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let miredo = Command::new("sh")
        .args(["-c", "command -v miredo-server"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // miredo-server drops privileges to the `miredo` system user, which Debian's `miredo`
    // (client) package creates, not `miredo-server`; without it the server exits at start.
    let user = Command::new("getent")
        .args(["passwd", "miredo"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if root && miredo && user {
        return true;
    }
    assert!(
        !in_ci(),
        "CI=true but root={root} miredo-server={miredo} miredo-user={user}: \
         run crates/tunnel/ci-setup.sh as root"
    );
    eprintln!(
        "!!! SKIPPING miredo Teredo test: needs root, miredo-server and the miredo user \
         (root={root}, miredo-server={miredo}, miredo-user={user})"
    );
    false
}

/// Builds the lab, returns it and the client's own IPv4 address as the server will see it.
pub fn lab(tag: &str, behind_nat: bool) -> (Lab, Ipv4Addr) {
    let mut lab = Lab {
        tag: format!("{tag}-{}", std::process::id()),
        server: None,
    };
    let (srv, cli, nat) = (lab.ns("srv"), lab.ns("cli"), lab.ns("nat"));
    for ns in [&srv, &cli] {
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let public_side = if behind_nat {
        sh(&["ip", "netns", "add", &nat]);
        sh(&["ip", "-n", &nat, "link", "set", "lo", "up"]);
        sh(&[
            "ip", "link", "add", "name", "wan", "netns", &nat, "type", "veth", "peer", "name",
            "vs", "netns", &srv,
        ]);
        sh(&[
            "ip", "link", "add", "name", "vc", "netns", &cli, "type", "veth", "peer", "name",
            "lan", "netns", &nat,
        ]);
        sh(&[
            "ip",
            "-n",
            &nat,
            "addr",
            "add",
            "203.0.113.1/24",
            "dev",
            "wan",
        ]);
        sh(&["ip", "-n", &nat, "addr", "add", "10.0.0.1/24", "dev", "lan"]);
        sh(&["ip", "-n", &nat, "link", "set", "wan", "up"]);
        sh(&["ip", "-n", &nat, "link", "set", "lan", "up"]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &nat,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &nat, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft runs");
        use std::io::Write;
        nft.stdin
            .take()
            .expect("stdin")
            .write_all(
                b"table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n  oifname \"wan\" masquerade\n }\n}\n",
            )
            .expect("rules written");
        assert!(
            nft.wait().expect("nft exits").success(),
            "nft rules rejected"
        );
        sh(&["ip", "-n", &cli, "addr", "add", "10.0.0.2/24", "dev", "vc"]);
        sh(&["ip", "-n", &cli, "link", "set", "vc", "up"]);
        sh(&[
            "ip", "-n", &cli, "route", "add", "default", "via", "10.0.0.1",
        ]);
        Ipv4Addr::new(203, 0, 113, 1)
    } else {
        sh(&[
            "ip", "link", "add", "name", "vc", "netns", &cli, "type", "veth", "peer", "name", "vs",
            "netns", &srv,
        ]);
        sh(&[
            "ip",
            "-n",
            &cli,
            "addr",
            "add",
            "203.0.113.20/24",
            "dev",
            "vc",
        ]);
        sh(&["ip", "-n", &cli, "link", "set", "vc", "up"]);
        Ipv4Addr::new(203, 0, 113, 20)
    };
    sh(&[
        "ip",
        "-n",
        &srv,
        "addr",
        "add",
        "203.0.113.5/24",
        "dev",
        "vs",
    ]);
    sh(&[
        "ip",
        "-n",
        &srv,
        "addr",
        "add",
        "203.0.113.6/24",
        "dev",
        "vs",
    ]);
    sh(&["ip", "-n", &srv, "link", "set", "vs", "up"]);
    let conf = format!("/tmp/{}.conf", lab.tag);
    std::fs::write(&conf, "ServerBindAddress 203.0.113.5\n").expect("config written");
    let log = std::fs::File::create(lab.server_log()).expect("server log created");
    let log_for_stderr = log.try_clone().expect("server log handle");
    lab.server = Some(
        Command::new("ip")
            // Each server gets its own PID file: two tests running at once must not share
            // /var/run/miredo-server.pid (the second server would refuse to start).
            .args([
                "netns",
                "exec",
                &srv,
                "miredo-server",
                "-f",
                "-c",
                &conf,
                "-p",
                &format!("/tmp/{}.pid", lab.tag),
            ])
            .stdout(log)
            .stderr(log_for_stderr)
            .process_group(0)
            .spawn()
            .expect("miredo-server starts"),
    );
    (lab, public_side)
}

/// Runs the qualifier in the client namespace. It retransmits every 4 s (3 tries per address),
/// which also covers miredo-server still starting, and exits on its own: no sleeps needed.
pub fn qualify(lab: &mut Lab) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("cli"),
            env!("CARGO_BIN_EXE_p2p-tunnel-teredo-qualify"),
            "203.0.113.5",
        ])
        .output()
        .expect("qualifier runs");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        panic!(
            "qualification failed: {line}\nqualifier stderr:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            lab.server_report()
        );
    }
    line
}
