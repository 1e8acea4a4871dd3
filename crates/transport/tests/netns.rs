//! As root: two network namespaces joined by a veth pair; once nftables drops UDP in the
//! server's namespace, `connect` falls back to TCP by itself.

mod common;

use std::fs::File;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use p2p_foundation_transport::{Config, Endpoint, Keypair, Listen, PathKind};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (install iproute2 and nftables)"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{cmd} {args:?} failed: {status}");
}

/// A network namespace removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("p2pf-tr-{}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name], None);
        Netns(name)
    }

    fn exec(&self, args: &[&str], stdin: Option<&str>) {
        let mut all = vec!["netns", "exec", &self.0];
        all.extend_from_slice(args);
        run("ip", &all, stdin);
    }

    fn file(&self) -> File {
        File::open(format!("/var/run/netns/{}", self.0)).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

const DROP_UDP: &str = "table inet p2pf_test {
    chain input {
        type filter hook input priority 0; policy accept;
        meta l4proto udp drop
    }
}
";

#[test]
fn connect_falls_back_to_tcp_when_udp_is_dropped() {
    if !is_root() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true: the network-namespace test must run as root"
        );
        eprintln!(
            "SKIPPED connect_falls_back_to_tcp_when_udp_is_dropped: needs root (network namespaces)"
        );
        return;
    }
    let server_ns = Netns::new("s");
    let client_ns = Netns::new("c");
    run(
        "ip",
        &[
            "link",
            "add",
            "p2pfs",
            "netns",
            &server_ns.0,
            "type",
            "veth",
            "peer",
            "name",
            "p2pfc",
            "netns",
            &client_ns.0,
        ],
        None,
    );
    server_ns.exec(&["ip", "addr", "add", "10.99.0.1/24", "dev", "p2pfs"], None);
    client_ns.exec(&["ip", "addr", "add", "10.99.0.2/24", "dev", "p2pfc"], None);
    for (ns, dev) in [(&server_ns, "p2pfs"), (&client_ns, "p2pfc")] {
        ns.exec(&["ip", "link", "set", "lo", "up"], None);
        ns.exec(&["ip", "link", "set", dev, "up"], None);
    }
    let (server_fd, client_fd) = (server_ns.file(), client_ns.file());
    let server_name = server_ns.0.clone();

    // One thread, moved between the namespaces: sockets belong to the namespace of the
    // thread that creates them, and a current-thread runtime keeps every task here.
    let result = std::thread::spawn(move || {
        move_into_link_name_space(server_fd.as_fd(), Some(LinkNameSpaceType::Network)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(common::guard(async move {
            let server = Endpoint::bind(
                &Keypair::generate(),
                Config::with_listen(Listen::Ipv4("10.99.0.1:0".parse().unwrap())),
            )
            .await
            .unwrap();
            let echo_task = common::spawn_echo(server.clone());
            move_into_link_name_space(client_fd.as_fd(), Some(LinkNameSpaceType::Network)).unwrap();
            let client_at = |delay: Duration| async move {
                let mut cfg = Config::with_listen(Listen::Ipv4("10.99.0.2:0".parse().unwrap()));
                cfg.tcp_fallback_delay = delay;
                Endpoint::bind(&Keypair::generate(), cfg).await
            };
            let addr = server.local_addr().unwrap();

            // UDP open: QUIC wins (a long fallback delay keeps a slow machine from racing TCP in).
            let patient = client_at(Duration::from_secs(30)).await.unwrap();
            let quic = patient.connect(server.peer_id(), &[addr]).await.unwrap();
            assert_eq!(quic.path(), PathKind::Quic);
            assert_eq!(
                common::echo(&quic, "/t/1", b"over quic").await,
                b"over quic"
            );
            quic.close(0, b"done");

            // UDP dropped in the server's namespace: the same call ends up on TCP.
            run(
                "ip",
                &["netns", "exec", &server_name, "nft", "-f", "-"],
                Some(DROP_UDP),
            );
            // Default configuration: TCP starts after 250 ms and wins.
            let client = client_at(Config::default().tcp_fallback_delay)
                .await
                .unwrap();
            let tcp = client.connect(server.peer_id(), &[addr]).await.unwrap();
            assert_eq!(tcp.path(), PathKind::Tcp);
            assert_eq!(tcp.peer_id(), server.peer_id());
            assert_eq!(common::echo(&tcp, "/t/1", b"over tcp").await, b"over tcp");
            assert_eq!(client.metrics().tcp_connections_total, 1);
            echo_task.abort();
        }));
    })
    .join();
    drop(client_ns);
    drop(server_ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
