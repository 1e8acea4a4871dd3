//! `cargo xtask bench node`: what a running node costs and how soon it is useful.
//!
//! - `node.idle_rss_mib`: resident memory of an idle `p2pf node` process joined to one
//!   peer, 3 s after it is ready (PRD P4 asks < 100 MB; an idle iroh endpoint is 32–35 MB,
//!   published, not measured here).
//! - `node.idle_cpu_percent`: CPU time of that process over an idle interval, as a
//!   percentage of one core.
//! - `node.peers1000_rss_mib` / `node.rss_per_peer_kib`: a `p2pf node` hub's resident
//!   memory with 1,000 peers connected (each its own QUIC endpoint in this process, from
//!   200 loopback source addresses), beside the same hub idle (PRD P5; rust-libp2p reports
//!   < 300 KB per connection).
//! - `node.build_to_first_call_ms`: from `build()` of a node that bootstraps through a
//!   provider to the first answer of that provider's MCP tool, beside a call on the warm
//!   node.
//! - `demo.wall_ms`: `p2pf demo` (8 nodes, every step), start to exit.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use p2p_foundation::P2PNode;
use p2p_foundation::mcp_crate::{Tool, tool_result};
use p2p_foundation_benchkit::{Better, Suite, percentile};
use serde_json::{Value, json};

mod common;

use common::{addr_of, start_node};

const MIB: f64 = 1024.0 * 1024.0;

fn rss_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024.0
}

/// User + system CPU time of `pid`, in seconds.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    ticks / hz
}

fn idle(suite: &mut Suite, dir: &std::path::Path) {
    let a = start_node(&dir.join("idle-a"), &[]);
    let b = start_node(&dir.join("idle-b"), &["--bootstrap", &addr_of(&a.ready)]);
    std::thread::sleep(Duration::from_secs(3));
    let pid = b.child.id();
    suite.record("node.idle_rss_mib", rss_of(pid) / MIB, "MiB", Better::Lower);
    let span = suite.scale(Duration::from_secs(20), Duration::from_secs(1));
    let (c0, t0) = (cpu_of(pid), Instant::now());
    std::thread::sleep(span);
    let percent = (cpu_of(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    suite.record(
        "node.idle_cpu_percent",
        percent,
        "% of a core",
        Better::Lower,
    );
}

async fn many_peers(suite: &mut Suite, dir: &std::path::Path) {
    let peers: u32 = suite.scale(1000, 20);
    let hub = start_node(&dir.join("hub"), &[]);
    let (hub_id, hub_addr) = {
        let (id, addr) = addr_of(&hub.ready)
            .split_once('@')
            .map(|(i, a)| (i.to_owned(), a.to_owned()))
            .expect("id@addr");
        let addr: SocketAddr = addr.parse().expect("addr");
        (id.parse::<p2p_foundation::PeerId>().expect("id"), addr)
    };
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = rss_of(hub.child.id());
    let mut clients = Vec::new();
    for chunk in 0..peers.div_ceil(50) {
        let mut batch = tokio::task::JoinSet::new();
        for i in chunk * 50..((chunk + 1) * 50).min(peers) {
            // 200 source addresses, so the hub's per-IP handshake budget is not the limit.
            let ip = [127, 0, 1, (i % 200) as u8 + 2];
            batch.spawn(async move {
                let n = P2PNode::new()
                    .listen(SocketAddr::from((ip, 0)))
                    .build()
                    .await
                    .expect("client");
                n.connect(hub_id, &[hub_addr]).await.expect("connect");
                n
            });
        }
        while let Some(n) = batch.join_next().await {
            clients.push(n.expect("task"));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let connected = clients
        .iter()
        .filter(|c| c.connected_peers().contains(&hub_id))
        .count();
    assert_eq!(connected, peers as usize, "every peer still connected");
    let busy_rss = rss_of(hub.child.id());
    suite.record_vs(
        &format!("node.peers{peers}_rss_mib"),
        busy_rss / MIB,
        "MiB",
        Better::Lower,
        "node.hub_idle_rss_mib",
        idle_rss / MIB,
    );
    suite.record(
        "node.rss_per_peer_kib",
        (busy_rss - idle_rss) / f64::from(peers) / 1024.0,
        "KiB",
        Better::Lower,
    );
    for c in clients {
        c.shutdown().await;
    }
}

async fn first_call(suite: &mut Suite) {
    let trials: usize = suite.scale(20, 2);
    let provider = P2PNode::new()
        .with_mcp_server()
        .listen_on("127.0.0.1:0")
        .build()
        .await
        .expect("provider");
    provider
        .register_mcp_service(
            "bench",
            vec![Tool::new("echo").handler(|call| async move {
                Ok(tool_result::structured(Value::Object(call.arguments)))
            })],
        )
        .await
        .expect("register");
    let seed = format!(
        "{}@{}",
        provider.peer_id(),
        provider.local_addr().expect("addr")
    );
    let (mut first, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..trials {
        let t = Instant::now();
        let node = P2PNode::new()
            .listen_on("127.0.0.1:0")
            .bootstrap_addrs([&seed])
            .build()
            .await
            .expect("node");
        node.call_tool("echo", json!({"n": 1})).await.expect("call");
        first.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        node.call_tool("echo", json!({"n": 2})).await.expect("call");
        warm.push(t.elapsed().as_secs_f64() * 1e3);
        node.shutdown().await;
    }
    suite.record_vs(
        "node.build_to_first_call_ms",
        percentile(&mut first, 50.0),
        "ms",
        Better::Lower,
        "mcp.warm_call_ms",
        percentile(&mut warm, 50.0),
    );
    provider.shutdown().await;
}

fn demo(suite: &mut Suite) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_p2pf"))
        .args(["demo", "--json"])
        .output()
        .expect("demo runs");
    let wall = t.elapsed().as_secs_f64() * 1e3;
    assert!(out.status.success(), "the demo failed");
    suite.record("demo.wall_ms", wall, "ms", Better::Lower);
}

fn main() {
    let mut suite = Suite::new("node");
    let dir = tempfile::tempdir().expect("tempdir");
    idle(&mut suite, dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(many_peers(&mut suite, dir.path()));
    rt.block_on(first_call(&mut suite));
    demo(&mut suite);
    suite.finish();
}
