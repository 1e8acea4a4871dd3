//! `cargo xtask bench lab`: NAT traversal by real nodes behind real nftables NATs, in the
//! lab of `tests/lab/mod.rs` (network namespaces; needs root, `ip`, `nft`, `conntrack`).
//!
//! - `lab.matrix_connected_fraction` / `lab.matrix_direct_fraction`: every pair of
//!   [`NatKind::ALL`] (25 cells), A dialled by B. Two public nodes are the seeds: R1 on
//!   `PUBLIC_1` (a relay, `RelayConfig::serve`) and R2 on `PUBLIC_2`, so each side learns
//!   its mapping behaviour and an endpoint-dependent × endpoint-independent pair can go
//!   direct by the birthday technique. A NATed A first holds a reservation at R1. A cell's
//!   time runs from B's start (its join through R1 and R2 included) to the connection; a
//!   cell first relayed and then moved to a direct path within 6 s counts as direct and
//!   shows as `relay>direct` with the time of the move. "Direct" is QUIC or TCP without the
//!   relay. The table is printed.
//! - `lab.punch_ms_p50` / `p99`: EIM × EIM, 20 trials: `PeerEvent::HolePunched::took` of
//!   B's `connect(A, [A's public mapping as R saw it])` (from the dial's start to the
//!   authenticated connection on the punched path), beside `lab.nat_to_public_dial_ms_p50`,
//!   B's plain dial through its NAT to the public R in the same trial. The punch starts
//!   after `NatConfig::punch_after` (default 100 ms) without a direct answer, so that
//!   delay is in the figure.
//! - `lab.edm_eim_direct_fraction`: EDM × EIM, 20 trials, the side that joins second
//!   alternating; two observers R1/R2 and no relay; direct when B's join gets a QUIC
//!   connection to A within 10 s.
//! - `lab.relay_plaintext_leaks`: EDM × EDM (always relayed): how often a marker sent as
//!   MCP tool arguments (in the first call and all through the throughput payload) stands
//!   in the bytes the relay forwarded, as its `forward_tap` saw them. Must be 0.
//! - `lab.upgrade_ms_p50`: EIM × EIM, 5 trials: a relayed connection (the dialer tries the
//!   relay at once and punches only after 300 ms) moved to the punched path: `took` of
//!   `HolePunched` minus `took` of `Relayed` (the configured 300 ms are in it).
//! - `lab.relay_throughput_mib_s` beside `lab.direct_throughput_mib_s`: MCP-level
//!   throughput, not a raw stream's (the node has no raw stream API for applications): 16
//!   sequential calls of a tool whose argument is a 1 MiB string, the answer a few bytes,
//!   over the EDM × EDM relayed connection and over the EIM × EIM punched one (the
//!   upgrade's first trial). JSON encoding and parsing of the argument are included.
//!
//! Not root: a full run (`cargo bench`) fails with a message; a smoke run (`cargo test
//! --benches`) skips loudly, unless `CI=true`.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lab::{Captured, Lab, LabNode, NatKind, PUBLIC_1, PUBLIC_2, Side, sock};
use p2p_foundation::mcp_crate::{Query, RouteOptions, Tool, tool_result};
use p2p_foundation::transport::PathKind;
use p2p_foundation::{NatConfig, NodeBuilder, P2PNode, PeerEvent, PeerId, RelayConfig};
use p2p_foundation_benchkit::{Better, Suite, percentile};
use serde_json::{Value, json};

const MARKER: &str = "PLAINTEXT-MARKER-5b1e04";
const MIB: f64 = 1024.0 * 1024.0;
/// How long a relayed matrix cell may take to move to a direct path.
const UPGRADE_WINDOW: Duration = Duration::from_secs(6);

type Seeds = Vec<(PeerId, SocketAddr)>;

/// A node in namespace `ns` listening on `ip:port`, joined through `seeds`; `tweak` adds
/// to the builder (relay or NAT settings, an MCP server).
async fn node(
    ns: String,
    ip: &'static str,
    port: u16,
    seeds: Seeds,
    tweak: impl FnOnce(NodeBuilder) -> NodeBuilder + Send + 'static,
) -> LabNode {
    LabNode::start(&ns, move || {
        tweak(P2PNode::builder().listen(sock(ip, port)).bootstrap(seeds))
    })
    .await
}

fn host(lab: &Lab, side: Side) -> (String, &'static str) {
    (lab.lan(side), side.host_ip())
}

/// The `sink` tool: takes `{"text": …}`, answers its length and whether the marker is in
/// it (so the payload crosses one way and the answer is a few bytes).
fn sink_tool() -> Tool {
    Tool::new("sink")
        .with_description("answers the length of its text argument")
        .handler(|call| async move {
            let text = call.arguments.get("text").and_then(Value::as_str);
            let text = text.unwrap_or_default();
            let answer = json!({ "bytes": text.len(), "marker": text.contains(MARKER) });
            Ok(tool_result::structured(answer))
        })
}

/// Registers the sink tool on `n` (built `with_mcp_server`) and publishes it in the DHT.
async fn serve_sink(n: &LabNode) {
    n.node.mcp().register_tool(sink_tool()).expect("sink tool");
    n.run(|n| async move { n.mcp().register_service("sink", &["sink"]).await })
        .await
        .unwrap_or_else(|e| panic!("publish the sink service: {e}"));
}

/// Calls `sink` at `provider` with `text`; the byte count it answered.
async fn sink(caller: &LabNode, provider: PeerId, text: String) -> Result<u64, String> {
    let only = RouteOptions {
        only: Some(provider),
        ..RouteOptions::default()
    };
    let args = json!({ "text": text })
        .as_object()
        .cloned()
        .unwrap_or_default();
    let routed = caller
        .run(move |n| async move { n.mcp().call_with(Query::tool("sink"), args, only).await })
        .await
        .map_err(|e| e.to_string())?;
    let out = routed.result.structured_content.unwrap_or_default();
    out["bytes"]
        .as_u64()
        .ok_or_else(|| format!("bad answer {out}"))
}

/// MiB/s of `calls` sink calls of 1 MiB each (the marker repeated) from `caller` to
/// `provider`.
async fn throughput(caller: &LabNode, provider: PeerId, calls: usize) -> Result<f64, String> {
    let payload = MARKER.repeat((1 << 20) / MARKER.len());
    // A first small call: discovery and the MCP session are not part of the figure.
    sink(caller, provider, MARKER.to_owned()).await?;
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..calls {
        bytes += sink(caller, provider, payload.clone()).await?;
    }
    Ok(bytes as f64 / MIB / start.elapsed().as_secs_f64())
}

/// The first `PeerEvent` about `peer` that `pick` keeps, within `limit`.
async fn next_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<PeerEvent>,
    limit: Duration,
    pick: impl Fn(&PeerEvent) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) => {
                if let Some(t) = pick(&e) {
                    return Some(t);
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

/// B's connection to A: the join's own, or `connect` on demand (bounded).
async fn reach(b: &LabNode, a_id: PeerId) -> Option<p2p_foundation::ConnectionInfo> {
    if b.node.connection_info(&a_id).is_none() {
        let dial = b.run(move |n| async move {
            tokio::time::timeout(Duration::from_secs(20), n.connect(a_id, &[])).await
        });
        match dial.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("    B could not reach A: {e}"),
            Err(_) => eprintln!("    B's dial to A timed out"),
        }
    }
    b.node.connection_info(&a_id)
}

struct Cell {
    a: NatKind,
    b: NatKind,
    /// The first path, whether a relayed one moved to a direct path, and the time.
    path: Option<(PathKind, bool)>,
    ms: f64,
}

impl Cell {
    fn label(&self) -> String {
        let path = match self.path {
            None => return "FAILED".into(),
            Some((PathKind::Stream, true)) => "relay>direct",
            Some((PathKind::Stream, false)) => "relayed",
            Some((PathKind::Tcp, _)) => "tcp",
            Some((PathKind::Quic, _)) => "direct",
        };
        format!("{path} {:.0} ms", self.ms)
    }

    fn direct(&self) -> bool {
        matches!(self.path, Some((k, up)) if k != PathKind::Stream || up)
    }
}

async fn matrix_cell(a_kind: NatKind, b_kind: NatKind) -> Cell {
    let lab = Lab::new(a_kind, b_kind);
    let what = format!("{} x {}", a_kind.name(), b_kind.name());
    let (relay, _) = lab::tapped_relay();
    let r1 = node(lab.ns("pub"), PUBLIC_1, 4000, vec![], |b| {
        b.relay_config(relay)
    })
    .await;
    let r2 = node(lab.ns("pub"), PUBLIC_2, 4000, vec![r1.contact()], |b| b).await;
    let seeds = vec![r1.contact(), r2.contact()];
    let (ns, ip) = host(&lab, Side::A);
    let a = node(ns, ip, 0, seeds.clone(), |b| b).await;
    let a_id = a.node.peer_id();
    let limit = Duration::from_secs(10);
    if a_kind != NatKind::Public
        && !lab::wait_for(&a, limit, |n| n.relay_stats().reservations_held > 0).await
    {
        eprintln!("    {what}: A holds no reservation after {limit:?}");
    }
    if a_kind != NatKind::UdpBlocked
        && !lab::wait_for(&a, limit, |n| n.nat_status().mapping.is_some()).await
    {
        eprintln!("    {what}: A does not know its mapping after {limit:?}");
    }
    let start = Instant::now();
    let (ns, ip) = host(&lab, Side::B);
    let b = node(ns, ip, 0, seeds, |b| b).await;
    let info = reach(&b, a_id).await;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let mut cell = Cell {
        a: a_kind,
        b: b_kind,
        path: info.as_ref().map(|i| (i.path, false)),
        ms,
    };
    if let Some(info) = info.filter(|i| i.path == PathKind::Stream) {
        assert_eq!(
            info.remote,
            r1.contact().1,
            "{what}: relayed, but not by R1"
        );
        let moved = lab::wait_for(&b, UPGRADE_WINDOW, |n| {
            n.connection_info(&a_id)
                .is_some_and(|i| i.path != PathKind::Stream)
        })
        .await;
        if moved {
            cell.path = Some((PathKind::Stream, true));
            cell.ms = start.elapsed().as_secs_f64() * 1e3;
        }
    }
    eprintln!("  {what}: {}", cell.label());
    for n in [b, a, r2, r1] {
        n.stop().await;
    }
    cell
}

async fn matrix(suite: &mut Suite) {
    let pairs: Vec<(NatKind, NatKind)> = if suite.is_full() {
        NatKind::ALL
            .iter()
            .flat_map(|&a| NatKind::ALL.map(|b| (a, b)))
            .collect()
    } else {
        vec![(NatKind::EndpointIndependent, NatKind::EndpointIndependent)]
    };
    let mut cells = Vec::new();
    for (a, b) in pairs {
        cells.push(matrix_cell(a, b).await);
    }
    let table = lab::matrix_table(|a, b| {
        cells
            .iter()
            .find(|c| c.a == a && c.b == b)
            .map_or("—".into(), Cell::label)
    });
    println!(
        "\nthe NAT matrix (rows: A's NAT, dialled; columns: B's NAT, dialling; time from B's start):\n{table}\n"
    );
    let n = cells.len() as f64;
    let connected = cells.iter().filter(|c| c.path.is_some()).count() as f64;
    let direct = cells.iter().filter(|c| c.direct()).count() as f64;
    suite.record(
        "lab.matrix_connected_fraction",
        connected / n,
        "of cells",
        Better::Higher,
    );
    suite.record(
        "lab.matrix_direct_fraction",
        direct / n,
        "of cells",
        Better::Higher,
    );
}

async fn punch(suite: &mut Suite) {
    let trials = suite.scale(20, 2);
    let lab = Lab::new(NatKind::EndpointIndependent, NatKind::EndpointIndependent);
    let (mut punched, mut plain) = (Vec::new(), Vec::new());
    for trial in 0..trials {
        // A fresh rendezvous each trial, so no stale peer is in its routing table.
        let r = node(lab.ns("pub"), PUBLIC_1, 4000, vec![], |b| b).await;
        let (ns, ip) = host(&lab, Side::A);
        let a = node(ns, ip, 0, vec![r.contact()], |b| b).await;
        let a_id = a.node.peer_id();
        let (ns, ip) = host(&lab, Side::B);
        let b = node(ns, ip, 0, vec![], |b| b).await;
        let mut events = b.node.peer_events();
        let (r_id, r_addr) = r.contact();
        let t = Instant::now();
        b.run(move |n| async move { n.connect(r_id, &[r_addr]).await })
            .await
            .expect("B reaches R");
        plain.push(t.elapsed().as_secs_f64() * 1e3);
        // A's mapping as R sees it: a direct dial to it alone is dropped by A's NAT.
        let a_public = r.node.connection_info(&a_id).expect("R knows A").remote;
        let dial = b.run(move |n| async move {
            tokio::time::timeout(Duration::from_secs(10), n.connect(a_id, &[a_public])).await
        });
        let dialled = matches!(dial.await, Ok(Ok(())));
        let took = next_event(&mut events, Duration::from_secs(2), |e| match e {
            PeerEvent::HolePunched { peer, took, .. } if *peer == a_id => Some(*took),
            _ => None,
        })
        .await;
        match took.filter(|_| dialled) {
            Some(took) => punched.push(took.as_secs_f64() * 1e3),
            None => eprintln!("  punch trial {trial}: no punched connection (dial ok: {dialled})"),
        }
        for n in [b, a, r] {
            n.stop().await;
        }
    }
    eprintln!("  EIM x EIM: {} of {trials} punched", punched.len());
    let plain50 = percentile(&mut plain, 50.0);
    suite.record_vs(
        "lab.punch_ms_p50",
        percentile(&mut punched, 50.0),
        "ms",
        Better::Lower,
        "lab.nat_to_public_dial_ms_p50",
        plain50,
    );
    suite.record_vs(
        "lab.punch_ms_p99",
        percentile(&mut punched, 99.0),
        "ms",
        Better::Lower,
        "lab.nat_to_public_dial_ms_p99",
        percentile(&mut plain, 99.0),
    );
    suite.record(
        "lab.punch_success_fraction",
        punched.len() as f64 / trials as f64,
        "of trials",
        Better::Higher,
    );
}

async fn edm_eim(suite: &mut Suite) {
    let trials = suite.scale(20, 2);
    let lab = Lab::new(NatKind::EndpointDependent, NatKind::EndpointIndependent);
    let mut direct = 0;
    for trial in 0..trials {
        let r1 = node(lab.ns("pub"), PUBLIC_1, 4000, vec![], |b| b).await;
        let r2 = node(lab.ns("pub"), PUBLIC_2, 4000, vec![r1.contact()], |b| b).await;
        let seeds = vec![r1.contact(), r2.contact()];
        let (first, second) = if trial % 2 == 0 {
            (Side::A, Side::B)
        } else {
            (Side::B, Side::A)
        };
        let (ns, ip) = host(&lab, first);
        let f = node(ns, ip, 0, seeds.clone(), |b| b).await;
        lab::wait_for(&f, Duration::from_secs(10), |n| {
            n.nat_status().mapping.is_some()
        })
        .await;
        let f_id = f.node.peer_id();
        let (ns, ip) = host(&lab, second);
        let s = node(ns, ip, 0, seeds, |b| b).await;
        let reached = lab::wait_for(&s, Duration::from_secs(10), |n| {
            n.connection_info(&f_id)
                .is_some_and(|i| i.path == PathKind::Quic)
        })
        .await;
        direct += usize::from(reached);
        if !reached {
            eprintln!("  EDM x EIM trial {trial} (second: {second:?}): not direct");
        }
        for n in [s, f, r2, r1] {
            n.stop().await;
        }
    }
    eprintln!("  EDM x EIM: {direct} of {trials} direct");
    suite.record(
        "lab.edm_eim_direct_fraction",
        direct as f64 / trials as f64,
        "of trials",
        Better::Higher,
    );
}

/// EDM × EDM through a tapped relay: the leaks figure and the relayed throughput.
async fn relayed(suite: &mut Suite) -> Option<f64> {
    let lab = Lab::new(NatKind::EndpointDependent, NatKind::EndpointDependent);
    let (relay, captured): (RelayConfig, Captured) = lab::tapped_relay();
    let r = node(lab.ns("pub"), PUBLIC_1, 4000, vec![], |b| {
        b.relay_config(relay)
    })
    .await;
    let (ns, ip) = host(&lab, Side::A);
    let a = node(ns, ip, 0, vec![r.contact()], |b| b).await;
    let reserved = lab::wait_for(&a, Duration::from_secs(10), |n| {
        n.relay_stats().reservations_held > 0
    })
    .await;
    assert!(reserved, "EDM x EDM: A holds no reservation");
    let a_id = a.node.peer_id();
    let (ns, ip) = host(&lab, Side::B);
    let b = node(ns, ip, 0, vec![r.contact()], |b| b.with_mcp_server()).await;
    serve_sink(&b).await;
    let b_id = b.node.peer_id();
    let info = reach(&b, a_id).await.expect("EDM x EDM: B reaches A");
    assert_eq!(
        info.path,
        PathKind::Stream,
        "EDM x EDM not relayed: {info:?}"
    );
    let calls = suite.scale(16, 2);
    let mib_s = throughput(&a, b_id, calls).await;
    let path = a.node.connection_info(&b_id).map(|i| i.path);
    let forwarded = captured.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let leaks = lab::occurrences(&forwarded, MARKER.as_bytes());
    eprintln!(
        "  EDM x EDM: relay forwarded {} bytes, path now {path:?}, {mib_s:?}",
        forwarded.len()
    );
    assert!(
        forwarded.len() >= calls << 20,
        "the calls did not cross the relay"
    );
    suite.record(
        "lab.relay_plaintext_leaks",
        leaks as f64,
        "markers seen",
        Better::Lower,
    );
    for n in [b, a, r] {
        n.stop().await;
    }
    mib_s
        .map_err(|e| eprintln!("  relayed throughput failed: {e}"))
        .ok()
}

/// EIM × EIM: relayed, then moved to the punched path; the first trial also measures the
/// direct throughput.
async fn upgrade(suite: &mut Suite) -> Option<f64> {
    let trials = suite.scale(5, 1);
    let lab = Lab::new(NatKind::EndpointIndependent, NatKind::EndpointIndependent);
    let (mut moves, mut direct_mib_s) = (Vec::new(), None);
    for trial in 0..trials {
        let r = node(lab.ns("pub"), PUBLIC_1, 4000, vec![], |b| {
            b.relay_config(lab::tapped_relay().0)
        })
        .await;
        let (ns, ip) = host(&lab, Side::A);
        let a = node(ns, ip, 0, vec![r.contact()], |b| b.with_mcp_server()).await;
        serve_sink(&a).await;
        let reserved = lab::wait_for(&a, Duration::from_secs(10), |n| {
            n.relay_stats().reservations_held > 0
        })
        .await;
        assert!(reserved, "upgrade: A holds no reservation");
        let a_id = a.node.peer_id();
        // B tries the relay at once and the punch only after 300 ms: the relay wins.
        let (ns, ip) = host(&lab, Side::B);
        let b = node(ns, ip, 0, vec![], |b| {
            let mut relay = RelayConfig::default();
            relay.relay_after = Duration::ZERO;
            let mut nat = NatConfig::default();
            nat.punch_after = Duration::from_millis(300);
            b.relay_config(relay).nat_config(nat)
        })
        .await;
        let mut events = b.node.peer_events();
        let (r_id, r_addr) = r.contact();
        b.run(move |n| async move { n.connect(r_id, &[r_addr]).await })
            .await
            .expect("B reaches R");
        let a_public = r.node.connection_info(&a_id).expect("R knows A").remote;
        let dial = b.run(move |n| async move {
            tokio::time::timeout(Duration::from_secs(10), n.connect(a_id, &[a_public])).await
        });
        let dialled = matches!(dial.await, Ok(Ok(())));
        let limit = Duration::from_secs(15);
        let relayed = next_event(&mut events, limit, |e| match e {
            PeerEvent::Relayed { peer, took, .. } if *peer == a_id => Some(*took),
            _ => None,
        })
        .await;
        let punched = next_event(&mut events, limit, |e| match e {
            PeerEvent::HolePunched { peer, took, .. } if *peer == a_id => Some(*took),
            _ => None,
        })
        .await;
        match (dialled, relayed, punched) {
            (true, Some(r), Some(p)) => moves.push((p.saturating_sub(r)).as_secs_f64() * 1e3),
            other => eprintln!("  upgrade trial {trial}: (dialled, relayed, punched) = {other:?}"),
        }
        if trial == 0
            && b.node
                .connection_info(&a_id)
                .is_some_and(|i| i.path == PathKind::Quic)
        {
            let seeds = vec![r.contact()];
            b.run(move |n| async move { n.bootstrap(seeds).await })
                .await
                .expect("B joins the DHT");
            let mib_s = throughput(&b, a_id, suite.scale(16, 2)).await;
            let path = b.node.connection_info(&a_id).map(|i| i.path);
            eprintln!("  EIM x EIM: direct throughput {mib_s:?}, path now {path:?}");
            direct_mib_s = mib_s.ok().filter(|_| path == Some(PathKind::Quic));
        }
        for n in [b, a, r] {
            n.stop().await;
        }
    }
    eprintln!(
        "  upgrade: {} of {trials} relayed connections moved to a direct path",
        moves.len()
    );
    suite.record(
        "lab.upgrade_ms_p50",
        percentile(&mut moves, 50.0),
        "ms",
        Better::Lower,
    );
    direct_mib_s
}

/// Runs one section, bounded by `secs`.
async fn section<T>(name: &str, secs: u64, work: impl Future<Output = T>) -> T {
    eprintln!("{name} …");
    let (limit, start) = (Duration::from_secs(secs), Instant::now());
    let out = tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{name} exceeded {limit:?}"));
    eprintln!("{name}: {:.1} s", start.elapsed().as_secs_f64());
    out
}

async fn run(suite: &mut Suite) {
    section("matrix", 900, matrix(suite)).await;
    section("punch", 300, punch(suite)).await;
    section("EDM x EIM", 400, edm_eim(suite)).await;
    let relay = section("relayed", 120, relayed(suite)).await;
    let direct = section("upgrade", 300, upgrade(suite)).await;
    match (relay, direct) {
        (Some(relay), Some(direct)) => {
            suite.record_vs(
                "lab.relay_throughput_mib_s",
                relay,
                "MiB/s",
                Better::Higher,
                "lab.direct_throughput_mib_s",
                direct,
            );
            suite.record(
                "lab.direct_throughput_mib_s",
                direct,
                "MiB/s",
                Better::Higher,
            );
        }
        other => eprintln!("throughput not recorded: (relayed, direct) = {other:?}"),
    }
}

fn main() -> ExitCode {
    let (mut suite, rt) =
        match lab::bench_start("lab", "it builds network namespaces and nftables NATs") {
            Ok(started) => started,
            Err(code) => return code,
        };
    rt.block_on(run(&mut suite));
    suite.finish();
    ExitCode::SUCCESS
}
