//! `cargo xtask bench mcp`: remote tool calls against in-process calls.
//!
//! The "remote" node is a second `McpServer` on another QUIC endpoint on loopback
//! (`p2p-foundation-transport`, a dev-dependency only: the crate itself runs over any
//! byte stream), one `/p2pf/mcp/1` stream per MCP session, mutually authenticated, the
//! caller's PeerId handed to the server by the transport. The same figures over plain TCP
//! on loopback (`tcp.*`) show what the QUIC stack costs. The baseline is the same echo tool
//! called in-process through `McpServer::call` (validation, policy, handler).
#![allow(missing_docs)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use p2p_foundation_benchkit::{Better, Suite, percentile};
use p2p_foundation_identity::Keypair;
use p2p_foundation_mcp::{
    CallOptions, Caller, Discovery, Era, JsonObject, McpClient, McpServer, MemoryRegistry,
    Progress, Router, ServicePublisher, StreamLimits, Tool, serve_stream, stream::Connector, tcp,
    tool_result,
};
use p2p_foundation_transport::{Config, Endpoint, Listen};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn args() -> JsonObject {
    json!({"message": "hello"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn main() {
    let mut suite = Suite::new("mcp");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let owner = Keypair::generate();
    let server = McpServer::new(owner.peer_id());
    server
        .register_tool(
            Tool::new("echo")
                .with_schema(
                    json!({"type": "object", "properties": {"message": {"type": "string"}}}),
                )
                .handler(|call| async move {
                    Ok(tool_result::structured(Value::Object(call.arguments)))
                }),
        )
        .expect("register");

    // Four sessions (streams) to the same remote node; the first is the one the
    // latency and single-session figures use.
    let (clients, addr): (Vec<Arc<McpClient>>, std::net::SocketAddr) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(tcp::serve_tcp(
            server.clone(),
            listener,
            StreamLimits::default(),
        ));
        let connector = tcp::TcpConnector::new(Keypair::generate().peer_id());
        connector.add(owner.peer_id(), addr);
        let mut clients = Vec::new();
        for _ in 0..4 {
            let (r, w) = connector.connect(owner.peer_id()).await.expect("connect");
            clients.push(Arc::new(
                McpClient::connect(r, w, StreamLimits::default(), Era::Initialize2025)
                    .await
                    .expect("client"),
            ));
        }
        (clients, addr)
    });
    let tcp_clients = clients;
    // The client endpoint and connection live as long as the benchmark (dropping them
    // closes every stream on them).
    let (clients, _quic_endpoint, _quic_conn) = rt.block_on(async {
        let node = Endpoint::bind(&owner, Config::with_listen(Listen::loopback_v4()))
            .await
            .expect("bind quic");
        let node_addr = node.local_addr().expect("quic addr");
        let serving = server.clone();
        tokio::spawn(async move {
            while let Some(conn) = node.accept().await {
                let serving = serving.clone();
                tokio::spawn(async move {
                    while let Ok(stream) = conn.accept_bi().await {
                        let serving = serving.clone();
                        let caller = Caller::Peer(conn.peer_id());
                        tokio::spawn(async move {
                            let limits = StreamLimits::default();
                            let _ =
                                serve_stream(&serving, caller, stream.recv, stream.send, limits)
                                    .await;
                        });
                    }
                });
            }
        });
        let me = Endpoint::bind(
            &Keypair::generate(),
            Config::with_listen(Listen::loopback_v4()),
        )
        .await
        .expect("bind quic client");
        let conn = me
            .connect(owner.peer_id(), &[node_addr])
            .await
            .expect("quic connect");
        let mut clients = Vec::new();
        for _ in 0..4 {
            let (send, recv) = conn.open_bi("/p2pf/mcp/1").await.expect("open stream");
            clients.push(Arc::new(
                McpClient::connect(recv, send, StreamLimits::default(), Era::Initialize2025)
                    .await
                    .expect("quic client"),
            ));
        }
        (clients, me, conn)
    });
    let client = clients[0].clone();
    let tcp_client = tcp_clients[0].clone();

    // Latency: sequential calls, remote and local interleaved in rounds.
    let n = suite.scale(20_000, 200);
    let warm = suite.scale(2_000, 20);
    let (mut remote, mut tcp_remote, mut local) = rt.block_on(async {
        for _ in 0..warm {
            for c in [&client, &tcp_client] {
                c.call("echo", args(), CallOptions::default())
                    .await
                    .expect("warm");
            }
        }
        let mut remote = Vec::with_capacity(n);
        let mut tcp_remote = Vec::with_capacity(n);
        let mut local = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let r = client
                .call("echo", args(), CallOptions::default())
                .await
                .expect("remote call");
            remote.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(r.structured_content.is_some());
            let t = Instant::now();
            let r = tcp_client
                .call("echo", args(), CallOptions::default())
                .await
                .expect("tcp remote call");
            tcp_remote.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(r.structured_content.is_some());
            let t = Instant::now();
            let r = server
                .call(
                    Caller::Local,
                    "echo",
                    args(),
                    None,
                    Progress::none(),
                    CancellationToken::new(),
                )
                .await
                .expect("local call");
            local.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(r.structured_content.is_some());
        }
        (remote, tcp_remote, local)
    });
    let local_p50 = percentile(&mut local, 50.0);
    let remote_p50 = percentile(&mut remote, 50.0);
    let remote_p99 = percentile(&mut remote, 99.0);
    let local_p99 = percentile(&mut local, 99.0);
    suite.record("local.call_us_p50", local_p50, "us", Better::Lower);
    suite.record_vs(
        "remote.call_us_p50",
        remote_p50,
        "us",
        Better::Lower,
        "local.call_us_p50",
        local_p50,
    );
    suite.record_vs(
        "remote.call_us_p99",
        remote_p99,
        "us",
        Better::Lower,
        "local.call_us_p99",
        local_p99,
    );
    suite.record_vs(
        "tcp.remote.call_us_p50",
        percentile(&mut tcp_remote, 50.0),
        "us",
        Better::Lower,
        "remote.call_us_p50",
        remote_p50,
    );

    // Throughput: C concurrent callers sharing one session (as the router does),
    // and 64 callers spread over 4 sessions (streams) to the same node,
    // each making calls until the total is reached; bounded in count and time.
    let total = suite.scale(100_000, 1_000);
    let mut per_s = Vec::new();
    let mut cpu_per_call = Vec::new();
    for (callers, sessions, over_tcp) in [
        (1usize, 1usize, false),
        (64, 1, false),
        (64, 4, false),
        (64, 1, true),
    ] {
        let clients = if over_tcp { &tcp_clients } else { &clients };
        let rate = rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(120);
            let per_caller = total / callers;
            let cpu0 = process_cpu_seconds();
            let t = Instant::now();
            let mut tasks = Vec::new();
            for i in 0..callers {
                let c = clients[i % sessions].clone();
                tasks.push(tokio::spawn(async move {
                    let mut done = 0usize;
                    while done < per_caller && Instant::now() < deadline {
                        c.call("echo", args(), CallOptions::default())
                            .await
                            .expect("call");
                        done += 1;
                    }
                    done
                }));
            }
            let mut done = 0;
            for task in tasks {
                done += task.await.expect("task");
            }
            let elapsed = t.elapsed().as_secs_f64();
            let cpu = process_cpu_seconds()
                .zip(cpu0)
                .map(|(b, a)| (b - a) * 1e6 / done as f64);
            (done as f64 / elapsed, cpu)
        });
        let (rate, cpu) = rate;
        per_s.push(rate);
        cpu_per_call.push(cpu.unwrap_or(f64::NAN));
    }
    suite.record("remote.calls_per_s_1", per_s[0], "calls/s", Better::Higher);
    suite.record_vs(
        "remote.calls_per_s_64",
        per_s[1],
        "calls/s",
        Better::Higher,
        "remote.calls_per_s_1",
        per_s[0],
    );
    suite.record_vs(
        "remote.calls_per_s_64_over_4_streams",
        per_s[2],
        "calls/s",
        Better::Higher,
        "remote.calls_per_s_64",
        per_s[1],
    );
    suite.record_vs(
        "tcp.remote.calls_per_s_64",
        per_s[3],
        "calls/s",
        Better::Higher,
        "remote.calls_per_s_64",
        per_s[1],
    );
    // The full routed path: 64 callers through `Router::call` (discovery in a
    // registry, ranking, a pool of 4 streams to the provider), over the TCP connector
    // (a QUIC `Connector` is the facade's).
    let routed_per_s = rt.block_on(async {
        let registry = Arc::new(MemoryRegistry::new());
        let publisher = ServicePublisher::new(owner.clone(), server.clone(), registry.clone());
        publisher
            .register_service("bench", &["echo"])
            .await
            .expect("publish");
        let connector = tcp::TcpConnector::new(Keypair::generate().peer_id());
        connector.add(owner.peer_id(), addr);
        let router = Arc::new(Router::new(Discovery::new(registry), Arc::new(connector)));
        let callers = 64;
        let per_caller = total / callers;
        let deadline = Instant::now() + Duration::from_secs(120);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let r = router.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = 0usize;
                while done < per_caller && Instant::now() < deadline {
                    r.call("echo", args()).await.expect("routed call");
                    done += 1;
                }
                done
            }));
        }
        let mut done = 0;
        for task in tasks {
            done += task.await.expect("task");
        }
        done as f64 / t.elapsed().as_secs_f64()
    });
    suite.record_vs(
        "tcp.remote.router_calls_per_s_64",
        routed_per_s,
        "calls/s",
        Better::Higher,
        "remote.calls_per_s_64",
        per_s[1],
    );

    // CPU time (both nodes, user + system) per call with 64 callers: the figure
    // that does not depend on what else the shared machine is doing.
    // calls/s on an idle machine is about (cores / this).
    suite.record(
        "remote.cpu_us_per_call_64",
        cpu_per_call[1],
        "us",
        Better::Lower,
    );
    suite.finish();
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`), if available.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks are 100 per second on Linux.
    Some((utime + stime) / 100.0)
}
