//! The NAT lab (see ../shared/design/NAT-LAB.md): real nodes inside network namespaces
//! behind real nftables NATs, on one machine.
//!
//! ```text
//!  lanA 192.168.77.2 ── natA 192.168.77.1 | 203.0.113.1 ──┐
//!                                                         ├── pub br0 203.0.113.9, .10
//!  lanB 192.168.88.2 ── natB 192.168.88.1 | 203.0.113.2 ──┘
//! ```
//!
//! Each node runs on its own thread moved into its namespace, with a current-thread tokio
//! runtime, so every socket it opens (QUIC, TCP, side channel) belongs to that namespace.
//! Every namespace is deleted when the [`Lab`] drops, also when a test fails.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use p2p_foundation::P2PNode;
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use tokio::sync::oneshot;

pub mod link;

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// Whether the lab can run: root with `ip` and `nft`. Without them the test skips loudly,
/// except with `CI=true`, where it fails.
pub fn can_run(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false);
    let tools = ["ip", "nft"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
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

/// The start of a lab benchmark's `main`: its suite and a runtime, or, when the lab cannot
/// run here, the exit code (a full run fails with a message naming what `needs` adds; a
/// smoke run skips).
pub fn bench_start(
    name: &str,
    needs: &str,
) -> Result<(p2p_foundation_benchkit::Suite, tokio::runtime::Runtime), std::process::ExitCode> {
    let suite = p2p_foundation_benchkit::Suite::new(name);
    if !can_run(&format!("bench {name}")) {
        if suite.is_full() {
            eprintln!(
                "bench {name}: the {name} suite needs root, `ip` and `nft` ({needs}): run \
                 `sudo -E cargo xtask bench {name}`"
            );
            return Err(std::process::ExitCode::FAILURE);
        }
        return Err(std::process::ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    Ok((suite, rt))
}

/// Runs a command, panicking with its stderr if it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Loads the nftables `rules` (an `nft -f` script) inside namespace `ns`.
pub fn nft(ns: &str, rules: &str) {
    sh_stdin(&["ip", "netns", "exec", ns, "nft", "-f", "-"], rules);
}

fn sh_stdin(args: &[&str], input: &str) {
    use std::io::Write;
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", args[0]));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("input written");
    let out = child.wait_with_output().expect("exits");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a LAN's router translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// No NAT: the host sits on the public segment itself.
    Public,
    /// `masquerade`: port-preserving, endpoint-independent mapping (address-and-port
    /// dependent filtering, as conntrack does).
    EndpointIndependent,
    /// `masquerade random`: a random port per destination ("symmetric").
    EndpointDependent,
    /// `masquerade`, and every forwarded UDP datagram dropped (TCP only).
    UdpBlocked,
    /// Two `masquerade` routers in a row: the home router's WAN side is 100.64.x.2 (a
    /// carrier-grade NAT's shared space), translated again to the public address.
    DoubleNat,
}

impl NatKind {
    /// Every kind, for the matrix.
    pub const ALL: [NatKind; 5] = [
        NatKind::Public,
        NatKind::EndpointIndependent,
        NatKind::EndpointDependent,
        NatKind::UdpBlocked,
        NatKind::DoubleNat,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            NatKind::Public => "public",
            NatKind::EndpointIndependent => "EIM",
            NatKind::EndpointDependent => "EDM",
            NatKind::UdpBlocked => "no-UDP",
            NatKind::DoubleNat => "EIM+EIM",
        }
    }
}

/// A LAN side of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// 192.168.77.0/24 behind 203.0.113.1.
    A,
    /// 192.168.88.0/24 behind 203.0.113.2.
    B,
}

impl Side {
    fn tag(self) -> &'static str {
        match self {
            Side::A => "A",
            Side::B => "B",
        }
    }

    /// The host's address on its LAN.
    pub fn host_ip(self) -> &'static str {
        match self {
            Side::A => "192.168.77.2",
            Side::B => "192.168.88.2",
        }
    }

    /// The router's public address.
    pub fn public_ip(self) -> &'static str {
        match self {
            Side::A => "203.0.113.1",
            Side::B => "203.0.113.2",
        }
    }
}

/// The public segment's two addresses for servers.
pub const PUBLIC_1: &str = "203.0.113.9";
/// The second public address (another IP, so mapping behaviour can be told).
pub const PUBLIC_2: &str = "203.0.113.10";

/// The roles of the lab's namespaces (`cgn*` carry the outer NAT of a double NAT).
const ROLES: [&str; 7] = ["lanA", "natA", "cgnA", "lanB", "natB", "cgnB", "pub"];

/// The lab's namespaces.
pub struct Lab {
    prefix: String,
}

impl Lab {
    /// Name of a role's namespace.
    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    /// Builds the topology with side A behind `a` and side B behind `b`.
    pub fn new(a: NatKind, b: NatKind) -> Self {
        let prefix = format!(
            "p2pflab-{}-{}-",
            std::process::id(),
            LAB_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab { prefix };
        for role in ROLES {
            sh(&["ip", "netns", "add", &lab.ns(role)]);
            sh(&["ip", "-n", &lab.ns(role), "link", "set", "lo", "up"]);
        }
        let pubns = lab.ns("pub");
        sh(&[
            "ip",
            "netns",
            "exec",
            &pubns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        sh(&["ip", "-n", &pubns, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &pubns, "link", "set", "br0", "up"]);
        for ip in [PUBLIC_1, PUBLIC_2] {
            sh(&[
                "ip",
                "-n",
                &pubns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "br0",
            ]);
        }
        for (side, kind) in [(Side::A, a), (Side::B, b)] {
            lab.wire(side, kind);
        }
        // Resolve every neighbour once, as on a network that has been up for a while: the
        // first datagram through a fresh segment otherwise waits for ARP and a node's first
        // QUIC Initial can be lost to it.
        for side in [Side::A, Side::B] {
            for ip in [PUBLIC_1, PUBLIC_2] {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &lab.lan(side),
                    "ping",
                    "-c1",
                    "-W2",
                    ip,
                ]);
            }
        }
        lab
    }

    fn wire(&self, side: Side, kind: NatKind) {
        let t = side.tag();
        let lan = self.ns(&format!("lan{t}"));
        let router = self.ns(&format!("nat{t}"));
        let pubns = self.ns("pub");
        let lan_net = &side.host_ip()[..side.host_ip().len() - 2];
        sh(&[
            "ip", "link", "add", "name", "l0", "netns", &lan, "type", "veth", "peer", "name", "l1",
            "netns", &router,
        ]);
        sh(&[
            "ip",
            "-n",
            &lan,
            "addr",
            "add",
            &format!("{}/24", side.host_ip()),
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
        let port = format!("p{t}");
        // The namespace whose `w0` faces the public segment: the home router, or the
        // carrier-grade NAT in front of it.
        let edge = if kind == NatKind::DoubleNat {
            let cgn = self.ns(&format!("cgn{t}"));
            let inner = match side {
                Side::A => "100.64.7",
                Side::B => "100.64.8",
            };
            sh(&[
                "ip", "link", "add", "name", "w0", "netns", &router, "type", "veth", "peer",
                "name", "c1", "netns", &cgn,
            ]);
            let router_wan = format!("{inner}.2/24");
            let cgn_lan = format!("{inner}.1/24");
            sh(&["ip", "-n", &router, "addr", "add", &router_wan, "dev", "w0"]);
            sh(&["ip", "-n", &router, "link", "set", "w0", "up"]);
            sh(&["ip", "-n", &cgn, "addr", "add", &cgn_lan, "dev", "c1"]);
            sh(&["ip", "-n", &cgn, "link", "set", "c1", "up"]);
            let via = format!("{inner}.1");
            sh(&["ip", "-n", &router, "route", "add", "default", "via", &via]);
            Self::home_router(&router, "masquerade");
            cgn
        } else {
            router.clone()
        };
        sh(&[
            "ip", "link", "add", "name", "w0", "netns", &edge, "type", "veth", "peer", "name",
            &port, "netns", &pubns,
        ]);
        sh(&[
            "ip",
            "-n",
            &edge,
            "addr",
            "add",
            &format!("{}/24", side.public_ip()),
            "dev",
            "w0",
        ]);
        sh(&["ip", "-n", &edge, "link", "set", "w0", "up"]);
        sh(&["ip", "-n", &pubns, "link", "set", &port, "master", "br0"]);
        sh(&["ip", "-n", &pubns, "link", "set", &port, "up"]);
        // Beyond its segment (a public host's LAN), the edge goes through the public
        // namespace, which routes.
        sh(&[
            "ip", "-n", &edge, "route", "add", "default", "via", PUBLIC_1,
        ]);
        match kind {
            NatKind::Public => {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &router,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ]);
                // A public host: the public segment routes its LAN without translation.
                sh(&[
                    "ip",
                    "-n",
                    &pubns,
                    "route",
                    "add",
                    &format!("{lan_net}.0/24"),
                    "via",
                    side.public_ip(),
                ]);
            }
            NatKind::EndpointIndependent | NatKind::DoubleNat => {
                Self::home_router(&edge, "masquerade")
            }
            NatKind::EndpointDependent => Self::home_router(&edge, "masquerade random"),
            NatKind::UdpBlocked => {
                Self::home_router(&edge, "masquerade");
                let rules = "table inet block {\n chain forward {\n  type filter hook forward priority 0\n  meta l4proto udp drop\n }\n}\n";
                sh_stdin(&["ip", "netns", "exec", &edge, "nft", "-f", "-"], rules);
            }
        }
    }

    /// A home router in `ns`: forwarding on, source NAT (`masq`) out of the WAN port
    /// `w0`; nothing unsolicited reaches the router itself, and an inbound packet with no
    /// conntrack entry is dropped.
    fn home_router(ns: &str, masq: &str) {
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let rules = format!(
            "table ip nat {{\n chain post {{\n  type nat hook postrouting priority 100\n  oifname \"w0\" {masq}\n }}\n}}\n\
             table inet filter {{\n chain input {{\n  type filter hook input priority 0\n  policy drop\n }}\n}}\n"
        );
        sh_stdin(&["ip", "netns", "exec", ns, "nft", "-f", "-"], &rules);
    }

    /// The namespace of a side's host.
    pub fn lan(&self, side: Side) -> String {
        self.ns(&format!("lan{}", side.tag()))
    }

    /// A firewall on a side's router that drops every UDP datagram to and from
    /// `remote_ip` (TCP and UDP to anywhere else pass): punching to that host cannot work.
    pub fn wall_udp(&self, side: Side, remote_ip: &str) {
        self.wall(
            side,
            &format!(
                "ip daddr {remote_ip} meta l4proto udp drop\n  ip saddr {remote_ip} meta l4proto udp drop"
            ),
        );
    }

    /// A firewall on a side's router that drops everything it would forward: the host is
    /// cut off (until [`Lab::unwall`]).
    pub fn wall_everything(&self, side: Side) {
        self.wall(side, "drop");
    }

    fn wall(&self, side: Side, rules: &str) {
        let router = self.ns(&format!("nat{}", side.tag()));
        let table = format!(
            "table inet wall {{\n chain forward {{\n  type filter hook forward priority 0\n  {rules}\n }}\n}}\n"
        );
        sh_stdin(&["ip", "netns", "exec", &router, "nft", "-f", "-"], &table);
    }

    /// Takes down the firewall of [`Lab::wall_udp`].
    pub fn unwall(&self, side: Side) {
        let router = self.ns(&format!("nat{}", side.tag()));
        sh(&[
            "ip", "netns", "exec", &router, "nft", "delete", "table", "inet", "wall",
        ]);
    }

    /// Gives a side's host another address on its LAN (`.host` in the LAN's /24), as a
    /// new DHCP lease or a second network would.
    pub fn add_host_address(&self, side: Side, host: u8) -> String {
        let lan_net = &side.host_ip()[..side.host_ip().len() - 2];
        let ip = format!("{lan_net}.{host}");
        sh(&[
            "ip",
            "-n",
            &self.lan(side),
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "l0",
        ]);
        ip
    }

    /// Flushes the conntrack table of a side's router (every mapping is forgotten).
    pub fn flush_conntrack(&self, side: Side) {
        let router = self.ns(&format!("nat{}", side.tag()));
        sh(&["ip", "netns", "exec", &router, "conntrack", "-F"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for role in ROLES {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .status();
        }
    }
}

/// A thread inside a namespace running a current-thread runtime: everything spawned on it
/// opens its sockets in that namespace.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    /// Starts the thread in namespace `ns`.
    pub fn new(ns: &str) -> Self {
        let path = format!("/var/run/netns/{ns}");
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                .expect("setns into the lab namespace");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            handle_tx.send(rt.handle().clone()).expect("handle sent");
            rt.block_on(async {
                let _ = stopped.await;
            });
        });
        let handle = handle_rx.recv().expect("namespace thread started");
        Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Starts `fut` inside the namespace; its output comes through the handle.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.handle.spawn(fut)
    }

    /// Runs `fut` inside the namespace and waits for its output.
    pub async fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        self.handle.spawn(fut).await.expect("lab task panicked")
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A node running inside a namespace.
pub struct LabNode {
    /// The node (call its sync methods from anywhere; async ones through [`LabNode::run`]).
    pub node: Arc<P2PNode>,
    rt: NsRuntime,
}

impl LabNode {
    /// Builds a node in `ns` with `builder` (called inside the namespace).
    pub async fn start(
        ns: &str,
        builder: impl FnOnce() -> p2p_foundation::NodeBuilder + Send + 'static,
    ) -> Self {
        let rt = NsRuntime::new(ns);
        let node = rt
            .run(async move { builder().build().await })
            .await
            .unwrap_or_else(|e| panic!("node in {ns} did not start: {e}"));
        Self {
            node: Arc::new(node),
            rt,
        }
    }

    /// `<peer id>, <listen address>`.
    pub fn contact(&self) -> (p2p_foundation::PeerId, SocketAddr) {
        (self.node.peer_id(), self.node.local_addr().expect("bound"))
    }

    /// Runs `f(node)` inside the node's namespace.
    pub async fn run<T, F>(&self, f: impl FnOnce(Arc<P2PNode>) -> F) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        self.rt.run(f(Arc::clone(&self.node))).await
    }

    /// Shuts the node down inside its namespace.
    pub async fn stop(self) {
        let Self { node, rt } = self;
        let node =
            Arc::try_unwrap(node).unwrap_or_else(|_| panic!("a clone of the node is still in use"));
        rt.run(async move { node.shutdown().await }).await;
    }
}

/// Two nodes with the P2P overlay on, A in `lab`'s LAN A and B in LAN B joined through A;
/// returns once A holds the connection to B.
pub async fn overlay_pair(lab: &Lab) -> (LabNode, LabNode) {
    let a = LabNode::start(&lab.lan(Side::A), || {
        P2PNode::builder()
            .listen(sock(Side::A.host_ip(), 0))
            .overlay(p2p_foundation::OverlayConfig::default())
    })
    .await;
    let seed = a.contact();
    let b = LabNode::start(&lab.lan(Side::B), move || {
        P2PNode::builder()
            .listen(sock(Side::B.host_ip(), 0))
            .bootstrap(vec![seed])
            .overlay(p2p_foundation::OverlayConfig::default())
    })
    .await;
    let id_b = b.node.peer_id();
    let connected = wait_for(&a, std::time::Duration::from_secs(10), |n| {
        n.connection_info(&id_b).is_some()
    })
    .await;
    assert!(connected, "A never connected to B");
    (a, b)
}

/// `ping -6` from `ns` to `dst`: how many of 3 echo requests were answered.
pub fn ping6(ns: &str, dst: std::net::Ipv6Addr) -> (usize, String) {
    ping(ns, dst.into())
}

/// `ping` (`-4` or `-6` as `dst` is) from `ns` to `dst`: how many of 3 echo requests were
/// answered, and ping's output.
pub fn ping(ns: &str, dst: std::net::IpAddr) -> (usize, String) {
    let family = if dst.is_ipv6() { "-6" } else { "-4" };
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", family, "-n", "-c", "3", "-i", "0.3", "-W", "3",
        ])
        .arg(dst.to_string())
        .output()
        .expect("ping runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let received = text
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(" packets transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0);
    (received, text)
}

/// `ip:port` as a socket address.
pub fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("an IP address"), port)
}

/// Waits until `done(node)` holds, woken by the node's peer events and re-checked every
/// 100 ms, for at most `limit`. Returns whether it held in time.
pub async fn wait_for(
    node: &LabNode,
    limit: std::time::Duration,
    done: impl Fn(&P2PNode) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut events = node.node.peer_events();
    while !done(&node.node) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), events.recv()).await;
    }
    true
}

/// The bytes a relay forwarded, as its [`p2p_foundation::RelayConfig::forward_tap`] saw them.
pub type Captured = Arc<std::sync::Mutex<Vec<u8>>>;

/// A relay configuration (`serve = true`) whose tap keeps every forwarded byte in the
/// returned buffer.
pub fn tapped_relay() -> (p2p_foundation::RelayConfig, Captured) {
    let captured: Captured = Arc::default();
    let sink = Arc::clone(&captured);
    let mut config = p2p_foundation::RelayConfig::default();
    config.serve = true;
    config.forward_tap = Some(Arc::new(move |chunk: &[u8]| {
        let mut all = sink.lock().unwrap_or_else(|p| p.into_inner());
        all.extend_from_slice(chunk);
    }));
    (config, captured)
}

/// How many times `needle` occurs in `haystack` (overlaps counted).
pub fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// A 5×5 table over [`NatKind::ALL`]: rows are side A's NAT, columns side B's, each cell
/// `cell(a, b)` (at most 20 characters wide).
pub fn matrix_table(cell: impl Fn(NatKind, NatKind) -> String) -> String {
    let header: String = NatKind::ALL
        .iter()
        .map(|k| format!("| {:<20}", k.name()))
        .collect();
    let rows = NatKind::ALL.iter().map(|&a| {
        let cells: String = NatKind::ALL
            .iter()
            .map(|&b| format!("| {:<20}", cell(a, b)))
            .collect();
        format!("{:<9}{cells}", a.name())
    });
    std::iter::once(format!("A \\ B    {header}"))
        .chain(rows)
        .collect::<Vec<_>>()
        .join("\n")
}
