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
            stop_group(&mut c);
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
        nat_namespace(&nat, "203.0.113.1/24", "10.0.0.1/24", MASQUERADE);
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

/// The Teredo data-path lab: miredo-server in a public namespace (`srv`, 203.0.113.5 and .6
/// on a bridge), and two clients each behind its own NAT namespace (`nat1` 203.0.113.1 in
/// front of `cli1` 10.0.1.2, `nat2` 203.0.113.2 in front of `cli2` 10.0.2.2). Each NAT is an
/// nftables masquerade (endpoint-independent mapping: Linux keeps the source port) with a
/// firewall that drops unsolicited packets from the public side before conntrack confirms
/// them, as a home router does. Without that drop, a peer's direct bubble arriving before
/// the local client has sent anything leaves an unreplied conntrack entry on the very tuple
/// the client's answer needs, and masquerade picks another port for the answer.
pub struct TwoNatLab {
    tag: String,
    children: Vec<Child>,
}

impl TwoNatLab {
    /// The name of namespace `role` (`srv`, `nat1`, `cli1`, `nat2`, `cli2`).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.tag)
    }

    /// Starts `cmd` inside namespace `role` in its own process group, killed with the lab;
    /// its stdout and stderr go to `/tmp/<tag>-<name>.log` unless `stdout` is piped.
    pub fn spawn(&mut self, role: &str, name: &str, cmd: &[&str], piped: bool) -> &mut Child {
        let log = std::fs::File::create(self.log(name)).expect("log created");
        let err = log.try_clone().expect("log handle");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role)])
            .args(cmd)
            .stderr(err)
            .process_group(0);
        if piped {
            c.stdout(Stdio::piped());
        } else {
            c.stdout(log);
        }
        self.children.push(c.spawn().expect("command starts"));
        self.children.last_mut().expect("just pushed")
    }

    /// Where the output of the process `name` goes.
    pub fn log(&self, name: &str) -> String {
        format!("/tmp/{}-{name}.log", self.tag)
    }

    /// A path for a file of this lab.
    pub fn file(&self, name: &str) -> String {
        format!("/tmp/{}-{name}", self.tag)
    }

    /// Every log, for a failure message.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for name in ["server", "miredo", "ours"] {
            let log = std::fs::read_to_string(self.log(name)).unwrap_or_default();
            s.push_str(&format!("--- {name}:\n{log}\n"));
        }
        s
    }
}

impl Drop for TwoNatLab {
    fn drop(&mut self) {
        for c in &mut self.children {
            stop_group(c);
        }
        for role in ["srv", "nat1", "cli1", "nat2", "cli2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .status();
        }
        for name in ["server", "miredo", "ours"] {
            let _ = std::fs::remove_file(self.log(name));
        }
        for f in ["srv.conf", "srv.pid", "cli.conf", "cli.pid"] {
            let _ = std::fs::remove_file(self.file(f));
        }
    }
}

/// The NAT rule: masquerade what leaves by `wan`.
const MASQUERADE: &str = "table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n  oifname \"wan\" masquerade\n }\n}\n";
/// Unsolicited packets from `wan` are dropped before conntrack confirms them.
const FIREWALL: &str = "table ip filter {\n chain input {\n  type filter hook input priority 0;\n  iifname \"wan\" ct state new drop\n }\n chain forward {\n  type filter hook forward priority 0;\n  iifname \"wan\" ct state new drop\n }\n}\n";

/// Addresses, forwarding and nftables `rules` of a NAT namespace whose `wan` and `lan`
/// veths exist.
fn nat_namespace(nat: &str, wan: &str, lan: &str, rules: &str) {
    sh(&["ip", "-n", nat, "addr", "add", wan, "dev", "wan"]);
    sh(&["ip", "-n", nat, "addr", "add", lan, "dev", "lan"]);
    sh(&["ip", "-n", nat, "link", "set", "wan", "up"]);
    sh(&["ip", "-n", nat, "link", "set", "lan", "up"]);
    sh(&[
        "ip",
        "netns",
        "exec",
        nat,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    nft(nat, rules);
}

/// Stops a process started in its own group: SIGTERM to the group (miredo forks helpers;
/// SIGKILL on the parent would orphan them), a bounded wait, then SIGKILL.
fn stop_group(c: &mut Child) {
    let group = format!("-{}", c.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    for _ in 0..100 {
        if c.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = c.wait();
}

fn nft(ns: &str, rules: &str) {
    let mut nft = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
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

/// Builds the two-NAT lab and starts miredo-server in it.
pub fn two_nat_lab(tag: &str) -> TwoNatLab {
    let mut lab = TwoNatLab {
        tag: format!("{tag}-{}", std::process::id()),
        children: Vec::new(),
    };
    for role in ["srv", "nat1", "cli1", "nat2", "cli2"] {
        sh(&["ip", "netns", "add", &lab.ns(role)]);
        sh(&["ip", "-n", &lab.ns(role), "link", "set", "lo", "up"]);
    }
    let srv = lab.ns("srv");
    sh(&["ip", "-n", &srv, "link", "add", "br0", "type", "bridge"]);
    sh(&["ip", "-n", &srv, "link", "set", "br0", "up"]);
    for a in ["203.0.113.5/24", "203.0.113.6/24"] {
        sh(&["ip", "-n", &srv, "addr", "add", a, "dev", "br0"]);
    }
    for i in 1..=2 {
        let (nat, cli) = (lab.ns(&format!("nat{i}")), lab.ns(&format!("cli{i}")));
        let port = format!("p{i}");
        sh(&[
            "ip", "link", "add", "name", "wan", "netns", &nat, "type", "veth", "peer", "name",
            &port, "netns", &srv,
        ]);
        sh(&["ip", "-n", &srv, "link", "set", &port, "master", "br0"]);
        sh(&["ip", "-n", &srv, "link", "set", &port, "up"]);
        sh(&[
            "ip", "link", "add", "name", "vc", "netns", &cli, "type", "veth", "peer", "name",
            "lan", "netns", &nat,
        ]);
        let wan = format!("203.0.113.{i}/24");
        let lan = format!("10.0.{i}.1/24");
        nat_namespace(&nat, &wan, &lan, &format!("{MASQUERADE}{FIREWALL}"));
        let host = format!("10.0.{i}.2/24");
        let gw = format!("10.0.{i}.1");
        sh(&["ip", "-n", &cli, "addr", "add", &host, "dev", "vc"]);
        sh(&["ip", "-n", &cli, "link", "set", "vc", "up"]);
        sh(&["ip", "-n", &cli, "route", "add", "default", "via", &gw]);
    }
    let conf = lab.file("srv.conf");
    std::fs::write(&conf, "ServerBindAddress 203.0.113.5\n").expect("config written");
    let pid = lab.file("srv.pid");
    lab.spawn(
        "srv",
        "server",
        &["miredo-server", "-f", "-c", &conf, "-p", &pid],
        false,
    );
    lab
}
