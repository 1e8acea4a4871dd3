//! Transport benchmarks: `cargo xtask bench transport` (full) or `cargo test --benches`
//! (smoke). Every figure is measured beside its baseline in the same run:
//! our QUIC vs plain quinn + plain rustls, our TCP session vs plain tokio-rustls.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use p2p_foundation_benchkit::io::{drain, mib_per_s, send_bulk, timed_transfer};
use p2p_foundation_benchkit::{Better, Suite, median_pair, percentile, rss_bytes};
use p2p_foundation_transport::{Config, Connection, Endpoint, Keypair, Listen, PeerId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const ECHO: &str = "/bench/echo/1";
const BULK: &str = "/bench/bulk/1";
const CHILD_ENV: &str = "P2PF_TRANSPORT_BENCH_IDLE_CHILD";
const SERVER_CHILD_ENV: &str = "P2PF_TRANSPORT_BENCH_IDLE_SERVER";

fn bench_config() -> Config {
    let mut c = Config::with_listen(Listen::loopback_v4());
    c.handshakes_per_ip_per_sec = 1e9;
    c.handshake_burst_per_ip = u32::MAX;
    c.max_connections = 30_000;
    c.zero_rtt_protocols = vec![ECHO.into()];
    if let Some(f) = std::env::var("P2PF_TCP_FRAME")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.tcp_max_frame = f;
    }
    c
}

async fn ours(listen_tcp: bool) -> Endpoint {
    let mut c = bench_config();
    c.tcp_listener = listen_tcp;
    Endpoint::bind(&Keypair::generate(), c).await.expect("bind")
}

/// Plain rustls configs with a self-signed P-256 certificate trusted through a root store.
struct Plain {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    cert: CertificateDer<'static>,
}

fn plain() -> Plain {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let cert = cert.der().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    server.alpn_protocols = vec![b"bench".to_vec()];
    server.max_early_data_size = u32::MAX;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("root");
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"bench".to_vec()];
    Plain {
        server: Arc::new(server),
        client: Arc::new(client),
        cert,
    }
}

fn quinn_server(p: &Plain) -> quinn::Endpoint {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(p.server.clone()).expect("quic");
    quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(crypto)),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("server")
}

fn quinn_client(client: Arc<rustls::ClientConfig>) -> quinn::Endpoint {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client).expect("quic");
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep
}

/// One plain-quinn connection on loopback, both ends, with the endpoints that carry it
/// (kept alive by the caller for as long as the connection is used).
struct RawQuinnPair {
    client: quinn::Connection,
    server: quinn::Connection,
    _endpoints: (quinn::Endpoint, quinn::Endpoint),
}

async fn raw_quinn_pair() -> RawQuinnPair {
    let p = plain();
    let raw_server = quinn_server(&p);
    let raw_client = quinn_client(p.client.clone());
    let accept = tokio::spawn({
        let raw_server = raw_server.clone();
        async move {
            raw_server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("raw accept")
        }
    });
    let client = raw_client
        .connect(raw_server.local_addr().expect("addr"), "localhost")
        .expect("connect")
        .await
        .expect("raw");
    let server = accept.await.expect("accept");
    RawQuinnPair {
        client,
        server,
        _endpoints: (raw_client, raw_server),
    }
}

async fn bulk_ours(client: &Connection, server: &Connection, total: u64) -> f64 {
    let open = async { client.open_uni(BULK).await.expect("open") };
    let accept = async { server.accept_uni().await.expect("accept").recv };
    timed_transfer(open, accept, total).await
}

async fn bulk_raw_quinn(client: &quinn::Connection, server: &quinn::Connection, total: u64) -> f64 {
    let open = async { client.open_uni().await.expect("open") };
    let accept = async { server.accept_uni().await.expect("accept") };
    timed_transfer(open, accept, total).await
}

async fn raw_tls_pair(
    p: &Plain,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(p.server.clone());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        acceptor.accept(tcp).await.expect("tls accept")
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("name");
    let client = tokio_rustls::TlsConnector::from(p.client.clone())
        .connect(name, tcp)
        .await
        .expect("tls");
    (client, server.await.expect("server"))
}

async fn bulk_raw_tls(p: &Plain, total: u64) -> f64 {
    let (c, s) = raw_tls_pair(p).await;
    timed_transfer(async { c }, async { s }, total).await
}

/// Accepts connections and echoes every bidirectional stream.
fn serve_echo(server: Endpoint) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(conn) = server.accept().await {
            tokio::spawn(async move {
                while let Ok(mut s) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut s.recv, &mut s.send).await;
                        let _ = s.send.finish().await;
                    });
                }
            });
        }
    })
}

fn serve_raw_quinn_echo(server: quinn::Endpoint) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut s, mut r)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut r, &mut s).await;
                        let _ = s.finish();
                    });
                }
            });
        }
    })
}

async fn echo_once(conn: &Connection) {
    let (mut s, mut r) = conn.open_bi(ECHO).await.expect("open");
    s.write_all(b"x").await.expect("write");
    s.finish().await.expect("finish");
    assert_eq!(r.read_to_end(16).await.expect("read"), b"x");
}

fn us(t: Duration) -> f64 {
    t.as_secs_f64() * 1e6
}

struct Latency {
    p50: f64,
    p99: f64,
}

fn latency(mut v: Vec<f64>) -> Latency {
    Latency {
        p50: percentile(&mut v, 50.0),
        p99: percentile(&mut v, 99.0),
    }
}

/// A plain tokio-rustls server that echoes one byte per connection, then closes it.
async fn serve_raw_tls_echo(p: &Plain) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(p.server.clone());
    let serve = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut b = [0u8; 1];
                if tls.read_exact(&mut b).await.is_ok() {
                    let _ = tls.write_all(&b).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, serve)
}

/// One plain tokio-rustls connection to `addr` with one byte echoed; returns the time to
/// the end of the handshake and the time of the echo after it.
async fn raw_tls_echo_once(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> (Duration, Duration) {
    let t = Instant::now();
    let sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), sock)
        .await
        .expect("tls");
    let handshake = t.elapsed();
    let t = Instant::now();
    tls.write_all(b"x").await.expect("write");
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).await.expect("read");
    (handshake, t.elapsed())
}

async fn connect_latencies(suite: &mut Suite) {
    let n = suite.scale(1000, 20);
    let server = ours(true).await;
    let serve = serve_echo(server.clone());
    let client = ours(false).await;
    let (peer, addr, tcp_addr) = (
        server.peer_id(),
        server.local_addr().expect("addr"),
        server.tcp_local_addr().expect("tcp"),
    );
    let p = plain();
    let raw_server = quinn_server(&p);
    let raw_addr = raw_server.local_addr().expect("addr");
    let raw_serve = serve_raw_quinn_echo(raw_server.clone());
    let raw_client = quinn_client(p.client.clone());
    let (raw_tcp_addr, raw_tcp_serve) = serve_raw_tls_echo(&p).await;
    let connector = tokio_rustls::TlsConnector::from(p.client.clone());

    let (mut quic, mut raw_q, mut tcp, mut raw_t, mut zero) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut zero_used = 0usize;
    // Warm-up: one of each, so every later connection is a reconnect to a known peer.
    for round in 0..=n {
        let t = Instant::now();
        let c = client.connect_quic(peer, addr).await.expect("quic");
        echo_once(&c).await;
        let d = t.elapsed();
        c.close(0, b"");

        let t = Instant::now();
        let c = raw_client
            .connect(raw_addr, "localhost")
            .expect("connect")
            .await
            .expect("raw quic");
        let (mut s, mut r) = c.open_bi().await.expect("open");
        s.write_all(b"x").await.expect("write");
        s.finish().expect("finish");
        assert_eq!(r.read_to_end(16).await.expect("read"), b"x");
        let d_raw = t.elapsed();
        c.close(0u32.into(), b"");

        let t = Instant::now();
        let mut early = client
            .connect_early(peer, addr, ECHO, b"x")
            .await
            .expect("0rtt");
        assert_eq!(early.recv.read_to_end(16).await.expect("read"), b"x");
        let d_zero = t.elapsed();
        zero_used += usize::from(early.zero_rtt);
        early.connection.close(0, b"");

        let t = Instant::now();
        let c = client.connect_tcp(peer, tcp_addr).await.expect("tcp");
        echo_once(&c).await;
        let d_tcp = t.elapsed();
        c.close(0, b"");

        let (handshake, echo) = raw_tls_echo_once(&connector, raw_tcp_addr).await;
        let d_raw_tcp = handshake + echo;

        if round > 0 {
            quic.push(us(d));
            raw_q.push(us(d_raw));
            zero.push(us(d_zero));
            tcp.push(us(d_tcp));
            raw_t.push(us(d_raw_tcp));
        }
    }
    let (q, rq, z, t, rt) = (
        latency(quic),
        latency(raw_q),
        latency(zero),
        latency(tcp),
        latency(raw_t),
    );
    suite.record_vs(
        "quic.connect_p50_us",
        q.p50,
        "µs",
        Better::Lower,
        "raw_quinn.connect_p50_us",
        rq.p50,
    );
    suite.record_vs(
        "quic.connect_p99_us",
        q.p99,
        "µs",
        Better::Lower,
        "raw_quinn.connect_p99_us",
        rq.p99,
    );
    suite.record_vs(
        "quic.0rtt_connect_p50_us",
        z.p50,
        "µs",
        Better::Lower,
        "quic.connect_p50_us",
        q.p50,
    );
    suite.record_vs(
        "quic.0rtt_connect_p99_us",
        z.p99,
        "µs",
        Better::Lower,
        "quic.connect_p99_us",
        q.p99,
    );
    suite.record(
        "quic.0rtt_used_fraction",
        zero_used as f64 / (n + 1) as f64,
        "ratio",
        Better::Higher,
    );
    suite.record_vs(
        "tcp.connect_p50_us",
        t.p50,
        "µs",
        Better::Lower,
        "raw_tokio_rustls.connect_p50_us",
        rt.p50,
    );
    suite.record_vs(
        "tcp.connect_p99_us",
        t.p99,
        "µs",
        Better::Lower,
        "raw_tokio_rustls.connect_p99_us",
        rt.p99,
    );
    serve.abort();
    raw_serve.abort();
    raw_tcp_serve.abort();
}

async fn bulk(suite: &mut Suite) {
    let total: u64 = suite.scale(1 << 30, 8 << 20);
    let rounds = suite.scale(5, 1);
    let server = ours(true).await;
    let client = ours(false).await;
    let q_client = client
        .connect_quic(server.peer_id(), server.local_addr().expect("addr"))
        .await
        .expect("quic");
    let q_server = server.accept().await.expect("accept");
    let t_client = client
        .connect_tcp(server.peer_id(), server.tcp_local_addr().expect("tcp"))
        .await
        .expect("tcp");
    let t_server = server.accept().await.expect("accept");
    let raw = raw_quinn_pair().await;
    let (rq_client, rq_server) = (&raw.client, &raw.server);
    let p = plain();
    let (mut q, mut rq, mut t, mut rt) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Alternate ours and baseline so both see the same machine state, swapping which goes
    // first every round so a drift in machine load (shared cores) favours neither.
    for round in 0..rounds {
        if round % 2 == 0 {
            rq.push(bulk_raw_quinn(rq_client, rq_server, total).await);
            q.push(bulk_ours(&q_client, &q_server, total).await);
            rt.push(bulk_raw_tls(&p, total).await);
            t.push(bulk_ours(&t_client, &t_server, total).await);
        } else {
            t.push(bulk_ours(&t_client, &t_server, total).await);
            rt.push(bulk_raw_tls(&p, total).await);
            q.push(bulk_ours(&q_client, &q_server, total).await);
            rq.push(bulk_raw_quinn(rq_client, rq_server, total).await);
        }
        eprintln!(
            "bulk round {round}: quic {:.0} / raw_quinn {:.0} MiB/s, tcp {:.0} / raw_tokio_rustls {:.0} MiB/s",
            q[round], rq[round], t[round], rt[round]
        );
    }
    let (q, rq) = median_pair(&q, &rq);
    suite.record_vs(
        "quic.bulk_throughput",
        q,
        "MiB/s",
        Better::Higher,
        "raw_quinn.bulk_throughput",
        rq,
    );
    let (t, rt) = median_pair(&t, &rt);
    suite.record_vs(
        "tcp.bulk_throughput",
        t,
        "MiB/s",
        Better::Higher,
        "raw_tokio_rustls.bulk_throughput",
        rt,
    );
}

/// Per-stream throughput (common start to last byte at the receiver) of `streams` concurrent
/// streams; returns min/max.
async fn fairness_ours(client: &Connection, server: &Connection, streams: usize, each: u64) -> f64 {
    let start = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..streams {
        let mut s = client.open_uni(BULK).await.expect("open");
        writers.push(tokio::spawn(async move {
            send_bulk(&mut s, each).await;
            s
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..streams {
        let mut inc = server.accept_uni().await.expect("accept");
        readers.push(tokio::spawn(async move {
            timed_drain(&mut inc.recv, each, start).await
        }));
    }
    let rates = futures::future::join_all(readers)
        .await
        .into_iter()
        .map(|r| r.expect("reader"))
        .collect::<Vec<_>>();
    for w in writers {
        drop(w.await.expect("writer"));
    }
    min_over_max(&rates)
}

async fn fairness_raw(
    client: &quinn::Connection,
    server: &quinn::Connection,
    streams: usize,
    each: u64,
) -> f64 {
    let start = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..streams {
        let mut s = client.open_uni().await.expect("open");
        writers.push(tokio::spawn(async move {
            send_bulk(&mut s, each).await;
            s
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..streams {
        let mut r = server.accept_uni().await.expect("accept");
        readers.push(tokio::spawn(async move {
            timed_drain(&mut r, each, start).await
        }));
    }
    let rates = futures::future::join_all(readers)
        .await
        .into_iter()
        .map(|r| r.expect("reader"))
        .collect::<Vec<_>>();
    for w in writers {
        drop(w.await.expect("writer"));
    }
    min_over_max(&rates)
}

/// Throughput of one of several concurrent streams, from the common start to its last byte:
/// with fair sharing every stream finishes at about the same time.
async fn timed_drain<R: AsyncRead + Unpin>(r: &mut R, each: u64, start: Instant) -> f64 {
    let got = drain(r).await;
    assert_eq!(got, each);
    mib_per_s(got, start.elapsed())
}

fn min_over_max(rates: &[f64]) -> f64 {
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    if max > 0.0 { min / max } else { 0.0 }
}

async fn fairness(suite: &mut Suite) {
    let each: u64 = suite.scale(4 << 20, 64 << 10);
    let server = ours(true).await;
    let client = ours(false).await;
    let c = client
        .connect_quic(server.peer_id(), server.local_addr().expect("addr"))
        .await
        .expect("quic");
    let s = server.accept().await.expect("accept");
    let tc = client
        .connect_tcp(server.peer_id(), server.tcp_local_addr().expect("tcp"))
        .await
        .expect("tcp");
    let ts = server.accept().await.expect("accept");
    let pair = raw_quinn_pair().await;
    let (rc, rs) = (&pair.client, &pair.server);
    let raw = fairness_raw(rc, rs, 64, each).await;
    let ours = fairness_ours(&c, &s, 64, each).await;
    suite.record_vs(
        "quic.streams64_fairness",
        ours,
        "min/max",
        Better::Higher,
        "raw_quinn.streams64_fairness",
        raw,
    );
    // The TCP path shares one TLS stream between all 64, so fairness rests on yamux's
    // per-stream windows alone; shown beside the QUIC figure.
    let tcp = fairness_ours(&tc, &ts, 64, each).await;
    suite.record_vs(
        "tcp.streams64_fairness",
        tcp,
        "min/max",
        Better::Higher,
        "quic.streams64_fairness",
        ours,
    );
}

/// Child process: dials `n` idle connections and holds them until stdin closes.
fn idle_child(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let [mode, addr, id, n] = parts[..] else {
        panic!("bad child spec {spec}")
    };
    let addr: SocketAddr = addr.parse().expect("addr");
    let n: usize = n.parse().expect("n");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let held: usize = if mode == "ours" {
            let peer: PeerId = id.parse().expect("peer");
            let client = ours(false).await;
            let conns: Vec<Connection> = futures::stream::iter(0..n)
                .map(|_| {
                    let client = client.clone();
                    async move { client.connect_quic(peer, addr).await.expect("connect") }
                })
                .buffer_unordered(64)
                .collect()
                .await;
            announce(conns.len());
            wait_for_stdin_close().await;
            conns.len()
        } else {
            let der = std::fs::read(id).expect("cert file");
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(der)).expect("root");
            let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_root_certificates(roots)
            .with_no_client_auth();
            cfg.alpn_protocols = vec![b"bench".to_vec()];
            let client = quinn_client(Arc::new(cfg));
            let conns: Vec<quinn::Connection> = futures::stream::iter(0..n)
                .map(|_| {
                    let client = client.clone();
                    async move {
                        client
                            .connect(addr, "localhost")
                            .expect("connect")
                            .await
                            .expect("raw connect")
                    }
                })
                .buffer_unordered(64)
                .collect()
                .await;
            announce(conns.len());
            wait_for_stdin_close().await;
            conns.len()
        };
        assert_eq!(held, n);
    });
}

/// Holds the caller's connections until the parent closes our stdin.
async fn wait_for_stdin_close() {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await
    .expect("stdin");
}

fn announce(n: usize) {
    println!("HELD {n}");
    let _ = std::io::stdout().flush();
}

/// Runs this executable as a child with `env=spec`; returns once it printed a line
/// starting with `marker` (stored in [`IDLE_RESULT`] when it is an `IDLE` line).
fn spawn_child(env: &str, spec: String, marker: &str) -> std::process::Child {
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .env(env, spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with(marker) => {
                if let Some(rest) = l.strip_prefix("IDLE ") {
                    let v: Vec<f64> = rest
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    if let [per, held] = v[..] {
                        *IDLE_RESULT.lock().expect("lock") = Some((per, held));
                    }
                }
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("child ended early: {other:?}"),
        }
    }
    child
}

async fn wait_until(mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    // Bounded: 120 s at most.
    for _ in 0..12_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 120 s: {}", what());
}

/// Child process: the server side of the idle-connection measurement, alone in a fresh
/// process so allocator state from other measurements cannot skew it. It spawns its own
/// client child, and prints `IDLE <bytes per connection> <connections held>`.
fn idle_server_child(mode: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (per, held_n) = if mode == "ours" {
            let server = ours(false).await;
            let held = Arc::new(std::sync::Mutex::new(Vec::new()));
            let acceptor = tokio::spawn({
                let (server, held) = (server.clone(), held.clone());
                async move {
                    while let Some(c) = server.accept().await {
                        held.lock().expect("lock").push(c);
                    }
                }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = rss_bytes().unwrap_or(0);
            let spec = format!(
                "ours,{},{},{n}",
                server.local_addr().expect("addr"),
                server.peer_id()
            );
            let mut child = spawn_child(CHILD_ENV, spec, "HELD ");
            let what = || {
                format!(
                    "held {} of {n}; metrics {:?}",
                    held.lock().expect("lock").len(),
                    server.metrics()
                )
            };
            wait_until(|| held.lock().expect("lock").len() >= n, what).await;
            let after = rss_bytes().unwrap_or(0);
            let all = server.metrics().quic_connections as usize;
            drop(child.stdin.take());
            let _ = child.wait();
            acceptor.abort();
            (after.saturating_sub(before) as f64 / n as f64, all)
        } else {
            let p = plain();
            let file = std::env::temp_dir()
                .join(format!("p2pf-transport-bench-{}.der", std::process::id()));
            std::fs::write(&file, p.cert.as_ref()).expect("cert file");
            let server = quinn_server(&p);
            let held = Arc::new(std::sync::Mutex::new(Vec::new()));
            let acceptor = tokio::spawn({
                let (server, held) = (server.clone(), held.clone());
                async move {
                    while let Some(inc) = server.accept().await {
                        let held = held.clone();
                        tokio::spawn(async move {
                            if let Ok(c) = inc.await {
                                held.lock().expect("lock").push(c);
                            }
                        });
                    }
                }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = rss_bytes().unwrap_or(0);
            let spec = format!(
                "raw,{},{},{n}",
                server.local_addr().expect("addr"),
                file.display()
            );
            let mut child = spawn_child(CHILD_ENV, spec, "HELD ");
            let what = || format!("held {} of {n}", held.lock().expect("lock").len());
            wait_until(|| held.lock().expect("lock").len() >= n, what).await;
            let after = rss_bytes().unwrap_or(0);
            let all = server.open_connections();
            drop(child.stdin.take());
            let _ = child.wait();
            acceptor.abort();
            let _ = std::fs::remove_file(&file);
            (after.saturating_sub(before) as f64 / n as f64, all)
        };
        println!("IDLE {per} {held_n}");
        let _ = std::io::stdout().flush();
    });
}

/// Runs one idle-connection measurement in a fresh process: (bytes per connection, held).
fn measure_idle(mode: &str, n: usize) -> (f64, f64) {
    let mut child = spawn_child(SERVER_CHILD_ENV, format!("{mode},{n}"), "IDLE ");
    let _ = child.wait();
    IDLE_RESULT
        .lock()
        .expect("lock")
        .take()
        .expect("idle result")
}

static IDLE_RESULT: std::sync::Mutex<Option<(f64, f64)>> = std::sync::Mutex::new(None);

async fn idle(suite: &mut Suite) {
    let n = std::env::var("P2PF_IDLE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(suite.scale(10_000usize, 100));
    let (ours_per, held) = tokio::task::spawn_blocking(move || measure_idle("ours", n))
        .await
        .expect("ours");
    let (raw_per, raw_held) = tokio::task::spawn_blocking(move || measure_idle("raw", n))
        .await
        .expect("raw");
    assert_eq!(raw_held as usize, n);
    suite.record_vs(
        "quic.idle_conn_bytes",
        ours_per,
        "B/conn",
        Better::Lower,
        "raw_quinn.idle_conn_bytes",
        raw_per,
    );
    suite.record("quic.idle_conns_held", held, "conns", Better::Higher);
}

/// `P2PF_TRANSPORT_PROFILE=tcp|raw_tls|quic|raw_quinn` moves one fixed amount
/// (`P2PF_PROFILE_MIB`, default 256) over that path on loopback and exits: a run to put
/// under `perf stat` or callgrind, whose instructions and CPU time per MiB do not depend on
/// how loaded the shared cores are (wall-clock throughput does).
/// `tcp_connect|raw_tls_connect` instead make `P2PF_PROFILE_MIB` connections, each with
/// one echoed byte, as `connect_latencies` does: CPU time per connection.
const PROFILE_ENV: &str = "P2PF_TRANSPORT_PROFILE";

fn profile_transfer(path: &str) {
    let mib: u64 = std::env::var("P2PF_PROFILE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let total = mib << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rate = rt.block_on(async move {
        match path {
            "tcp" | "quic" => {
                let server = ours(path == "tcp").await;
                let client = ours(false).await;
                let c = if path == "tcp" {
                    let addr = server.tcp_local_addr().expect("tcp");
                    client.connect_tcp(server.peer_id(), addr).await
                } else {
                    let addr = server.local_addr().expect("addr");
                    client.connect_quic(server.peer_id(), addr).await
                }
                .expect("connect");
                let s = server.accept().await.expect("accept");
                bulk_ours(&c, &s, total).await
            }
            "raw_tls" => bulk_raw_tls(&plain(), total).await,
            "raw_quinn" => {
                let pair = raw_quinn_pair().await;
                bulk_raw_quinn(&pair.client, &pair.server, total).await
            }
            "tcp_connect" | "raw_tls_connect" => {
                let n = mib as usize;
                let start = Instant::now();
                // Where the time goes: to the end of the handshake, then the first echo.
                let (mut handshakes, mut echoes) = (Vec::new(), Vec::new());
                if path == "tcp_connect" {
                    let server = ours(true).await;
                    let serve = serve_echo(server.clone());
                    let client = ours(false).await;
                    let addr = server.tcp_local_addr().expect("tcp");
                    for _ in 0..n {
                        let t = Instant::now();
                        let c = client.connect_tcp(server.peer_id(), addr).await.expect("tcp");
                        handshakes.push(us(t.elapsed()));
                        let t = Instant::now();
                        echo_once(&c).await;
                        echoes.push(us(t.elapsed()));
                        c.close(0, b"");
                    }
                    serve.abort();
                } else {
                    let p = plain();
                    let (addr, serve) = serve_raw_tls_echo(&p).await;
                    let connector = tokio_rustls::TlsConnector::from(p.client.clone());
                    for _ in 0..n {
                        let (handshake, echo) = raw_tls_echo_once(&connector, addr).await;
                        handshakes.push(us(handshake));
                        echoes.push(us(echo));
                    }
                    serve.abort();
                }
                eprintln!(
                    "{path}: handshake p50 {:.0} µs, first echo p50 {:.0} µs",
                    percentile(&mut handshakes, 50.0),
                    percentile(&mut echoes, 50.0)
                );
                us(start.elapsed()) / n as f64
            }
            other => panic!(
                "{PROFILE_ENV}: unknown path {other} (tcp, raw_tls, quic, raw_quinn, tcp_connect, raw_tls_connect)"
            ),
        }
    });
    if path.ends_with("_connect") {
        eprintln!("{path}: {mib} connections, {rate:.0} µs each (wall clock: indicative only)");
    } else {
        eprintln!("{path}: {mib} MiB at {rate:.0} MiB/s (wall clock: indicative only)");
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        idle_child(&spec);
        return;
    }
    if let Ok(spec) = std::env::var(SERVER_CHILD_ENV) {
        let (mode, n) = spec.split_once(',').expect("spec");
        idle_server_child(mode, n.parse().expect("n"));
        return;
    }
    if let Ok(path) = std::env::var(PROFILE_ENV) {
        profile_transfer(&path);
        return;
    }
    let mut suite = Suite::new("transport");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // P2PF_BENCH_ONLY=idle,connect,fairness,bulk runs a subset while tuning.
    let only = std::env::var("P2PF_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    rt.block_on(async {
        if run("idle") {
            idle(&mut suite).await;
        }
        if run("connect") {
            connect_latencies(&mut suite).await;
        }
        if run("fairness") {
            fairness(&mut suite).await;
        }
        if run("bulk") {
            bulk(&mut suite).await;
        }
    });
    suite.finish();
}
