//! p2p-foundation side by side with rust-libp2p and iroh (issue 15): `cargo xtask bench
//! peers` (full: the binary gets `--bench`) or the same binary without `--bench` (smoke: tiny
//! counts, nothing written). Every figure is ours beside one peer's, measured in the same
//! run, in interleaved rounds, on loopback. What is measured and every non-default setting on
//! either side: `benches/peers/README.md`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, StreamProtocol, multiaddr::Protocol};
use p2p_foundation_benchkit::io::timed_transfer;
use p2p_foundation_benchkit::{Better, Suite, median_pair, percentile};
use p2p_foundation_transport::{Config, Connection, Endpoint, Keypair, Listen};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{FuturesAsyncReadCompatExt as _, FuturesAsyncWriteCompatExt as _};

/// Stream protocols (ours and libp2p) and ALPNs (iroh) of the two pieces of work.
const ECHO: &str = "/bench/echo/1";
const BULK: &str = "/bench/bulk/1";

// ---------------------------------------------------------------------------------------------
// The work itself, the same bytes for every stack.

/// Sends one byte, ends the stream and reads the echo to its end.
async fn echo_once<W, R>(mut w: W, mut r: R)
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    w.write_all(b"x").await.expect("write");
    w.shutdown().await.expect("finish");
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.expect("read");
    assert_eq!(back, b"x");
}

fn us(t: Duration) -> f64 {
    t.as_secs_f64() * 1e6
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

// ---------------------------------------------------------------------------------------------
// Ours: p2p-foundation-transport, its defaults but for the two settings the README names.

async fn ours(listen_tcp: bool, connect_storm: bool) -> Endpoint {
    let mut c = Config::with_listen(Listen::loopback_v4());
    c.tcp_listener = listen_tcp;
    if connect_storm {
        // The per-address handshake budget (20/s, burst 40) is flood protection: every one of
        // the connect benchmark's connections comes from 127.0.0.1, back to back.
        c.handshakes_per_ip_per_sec = 1e9;
        c.handshake_burst_per_ip = u32::MAX;
    }
    Endpoint::bind(&Keypair::generate(), c).await.expect("bind")
}

async fn bulk_ours(client: &Connection, server: &Connection, total: u64) -> f64 {
    let open = async { client.open_uni(BULK).await.expect("open") };
    let accept = async { server.accept_uni().await.expect("accept").recv };
    timed_transfer(open, accept, total).await
}

/// Accepts connections and echoes every bidirectional stream.
fn serve_ours_echo(server: Endpoint) -> tokio::task::JoinHandle<()> {
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

/// Dial, mutual authentication, one echoed byte on a new stream: the time of all of it.
async fn connect_ours(client: &Endpoint, server: &Endpoint, tcp: bool) -> f64 {
    let t = Instant::now();
    let c = if tcp {
        let addr = server.tcp_local_addr().expect("tcp");
        client.connect_tcp(server.peer_id(), addr).await
    } else {
        let addr = server.local_addr().expect("addr");
        client.connect_quic(server.peer_id(), addr).await
    }
    .expect("connect");
    let (s, r) = c.open_bi(ECHO).await.expect("open");
    echo_once(s, r).await;
    let d = t.elapsed();
    c.close(0, b"");
    us(d)
}

// ---------------------------------------------------------------------------------------------
// rust-libp2p: a Swarm with libp2p-stream, QUIC and TCP + noise + yamux, all at defaults but
// the idle connection timeout.

enum Cmd {
    /// Dial one address of a peer; answered once the connection is established.
    Dial(libp2p::PeerId, Multiaddr, oneshot::Sender<DialResult>),
    /// Close every connection to a peer; answered once they are all closed.
    Disconnect(libp2p::PeerId, oneshot::Sender<()>),
}

type DialResult = Result<(), String>;

/// One libp2p node: its swarm runs on its own task, driven by [`Cmd`]s.
struct Lp2p {
    peer: libp2p::PeerId,
    control: libp2p_stream::Control,
    quic: Multiaddr,
    tcp: Multiaddr,
    cmds: mpsc::UnboundedSender<Cmd>,
}

async fn lp2p_node() -> Lp2p {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp")
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        // Default 10 s: a connection without streams closes after it. The bulk benchmark
        // reuses one connection across rounds, and the other stacks' rounds in between can
        // take longer than that on a loaded machine.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr"))
        .expect("listen quic");
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen tcp");
    let (mut quic, mut tcp) = (None, None);
    while quic.is_none() || tcp.is_none() {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            if address.iter().any(|p| matches!(p, Protocol::QuicV1)) {
                quic = Some(address);
            } else {
                tcp = Some(address);
            }
        }
    }
    let peer = *swarm.local_peer_id();
    let control = swarm.behaviour().new_control();
    let (cmds, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut dials = HashMap::new();
        let mut closing: HashMap<libp2p::PeerId, Vec<oneshot::Sender<()>>> = HashMap::new();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Cmd::Dial(peer, addr, done)) => {
                        let opts = DialOpts::peer_id(peer)
                            .addresses(vec![addr])
                            .condition(PeerCondition::Always)
                            .build();
                        let id = opts.connection_id();
                        match swarm.dial(opts) {
                            Ok(()) => {
                                dials.insert(id, done);
                            }
                            Err(e) => {
                                let _ = done.send(Err(e.to_string()));
                            }
                        }
                    }
                    Some(Cmd::Disconnect(peer, done)) => {
                        if swarm.disconnect_peer_id(peer).is_ok() {
                            closing.entry(peer).or_default().push(done);
                        } else {
                            let _ = done.send(());
                        }
                    }
                },
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::ConnectionEstablished { connection_id, .. } => {
                        if let Some(done) = dials.remove(&connection_id) {
                            let _ = done.send(Ok(()));
                        }
                    }
                    SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                        if let Some(done) = dials.remove(&connection_id) {
                            let _ = done.send(Err(error.to_string()));
                        }
                    }
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                        for done in closing.remove(&peer_id).unwrap_or_default() {
                            let _ = done.send(());
                        }
                    }
                    _ => {}
                },
            }
        }
    });
    Lp2p {
        peer,
        control,
        quic: quic.expect("quic address"),
        tcp: tcp.expect("tcp address"),
        cmds,
    }
}

impl Lp2p {
    /// The incoming streams of `protocol`.
    fn accept(&self, protocol: &'static str) -> libp2p_stream::IncomingStreams {
        let mut control = self.control.clone();
        control.accept(proto(protocol)).expect("accept")
    }

    async fn dial(&self, peer: libp2p::PeerId, addr: Multiaddr) {
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Dial(peer, addr, done))
            .expect("swarm task");
        rx.await.expect("swarm task").expect("libp2p dial");
    }

    async fn disconnect(&self, peer: libp2p::PeerId) {
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Disconnect(peer, done))
            .expect("swarm task");
        rx.await.expect("swarm task");
    }
}

fn proto(p: &'static str) -> StreamProtocol {
    StreamProtocol::new(p)
}

async fn bulk_lp2p(
    client: &Lp2p,
    server: libp2p::PeerId,
    incoming: &mut libp2p_stream::IncomingStreams,
    total: u64,
) -> f64 {
    let mut control = client.control.clone();
    let open = async move {
        let s = control.open_stream(server, proto(BULK)).await;
        s.expect("open").compat_write()
    };
    let accept = async { incoming.next().await.expect("incoming stream").1.compat() };
    timed_transfer(open, accept, total).await
}

/// Echoes every stream of the echo protocol.
fn serve_lp2p_echo(server: &Lp2p) -> tokio::task::JoinHandle<()> {
    let mut incoming = server.accept(ECHO);
    tokio::spawn(async move {
        while let Some((_, s)) = incoming.next().await {
            tokio::spawn(async move {
                let (r, mut w) = s.split();
                let _ = futures::io::copy(r, &mut w).await;
                let _ = w.close().await;
            });
        }
    })
}

/// Dial, mutual authentication (libp2p-tls over QUIC, noise over TCP), one echoed byte on a
/// new stream (multistream-select included, as every libp2p stream has it); then closes the
/// connection and waits until it is gone, outside the timed part, so the next dial is a new
/// connection rather than a reuse.
async fn connect_lp2p(client: &Lp2p, server: &Lp2p, tcp: bool) -> f64 {
    let addr = if tcp { &server.tcp } else { &server.quic };
    let mut control = client.control.clone();
    let t = Instant::now();
    client.dial(server.peer, addr.clone()).await;
    let s = control
        .open_stream(server.peer, proto(ECHO))
        .await
        .expect("open");
    let (r, w) = s.split();
    echo_once(w.compat_write(), r.compat()).await;
    let d = t.elapsed();
    client.disconnect(server.peer).await;
    us(d)
}

// ---------------------------------------------------------------------------------------------
// iroh: an Endpoint with the `Minimal` preset (ring, no address lookup), relays disabled, the
// peer's direct loopback address given; everything else at its defaults.

async fn iroh_endpoint(alpn: &str) -> iroh::Endpoint {
    iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .alpns(vec![alpn.as_bytes().to_vec()])
        .bind()
        .await
        .expect("iroh bind")
}

/// The endpoint's id and its IPv4 socket's port on 127.0.0.1 (it binds 0.0.0.0 and [::]).
fn iroh_addr(ep: &iroh::Endpoint) -> iroh::EndpointAddr {
    let port = ep
        .bound_sockets()
        .into_iter()
        .find(SocketAddr::is_ipv4)
        .expect("ipv4 socket")
        .port();
    iroh::EndpointAddr::new(ep.id()).with_ip_addr(loopback(port))
}

async fn bulk_iroh(
    client: &iroh::endpoint::Connection,
    server: &iroh::endpoint::Connection,
    total: u64,
) -> f64 {
    let open = async { client.open_uni().await.expect("open") };
    let accept = async { server.accept_uni().await.expect("accept") };
    timed_transfer(open, accept, total).await
}

fn serve_iroh_echo(server: iroh::Endpoint) -> tokio::task::JoinHandle<()> {
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

async fn connect_iroh(client: &iroh::Endpoint, server: &iroh::EndpointAddr) -> f64 {
    let t = Instant::now();
    let c = client
        .connect(server.clone(), ECHO.as_bytes())
        .await
        .expect("iroh connect");
    let (s, r) = c.open_bi().await.expect("open");
    echo_once(s, r).await;
    let d = t.elapsed();
    c.close(0u32.into(), b"");
    us(d)
}

// ---------------------------------------------------------------------------------------------
// The figures.

/// One connection, one new stream per round carrying `total` bytes; rounds interleave the
/// stacks, and the order rotates every round so a drift in machine load favours none.
async fn bulk(suite: &mut Suite) {
    let total: u64 = suite.scale(1 << 30, 8 << 20);
    let rounds = suite.scale(5, 3);

    let server = ours(true, false).await;
    let client = ours(false, false).await;
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

    // Two libp2p servers, one per transport: one IncomingStreams per node and protocol.
    let (lq_server, lt_server, l_client) =
        (lp2p_node().await, lp2p_node().await, lp2p_node().await);
    let mut lq_in = lq_server.accept(BULK);
    let mut lt_in = lt_server.accept(BULK);
    l_client.dial(lq_server.peer, lq_server.quic.clone()).await;
    l_client.dial(lt_server.peer, lt_server.tcp.clone()).await;

    let i_server = iroh_endpoint(BULK).await;
    let i_client = iroh_endpoint(BULK).await;
    let accept = tokio::spawn({
        let i_server = i_server.clone();
        async move {
            i_server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("iroh accept")
        }
    });
    let ic = i_client
        .connect(iroh_addr(&i_server), BULK.as_bytes())
        .await
        .expect("iroh connect");
    let is = accept.await.expect("accept");

    let (mut q, mut lq, mut iq, mut t, mut lt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for k in 0..5 {
            match (round + k) % 5 {
                0 => q.push(bulk_ours(&q_client, &q_server, total).await),
                1 => lq.push(bulk_lp2p(&l_client, lq_server.peer, &mut lq_in, total).await),
                2 => iq.push(bulk_iroh(&ic, &is, total).await),
                3 => t.push(bulk_ours(&t_client, &t_server, total).await),
                _ => lt.push(bulk_lp2p(&l_client, lt_server.peer, &mut lt_in, total).await),
            }
        }
        eprintln!(
            "bulk round {round}: quic ours {:.0} / libp2p {:.0} / iroh {:.0} MiB/s; \
             tcp ours {:.0} / libp2p {:.0} MiB/s",
            q[round], lq[round], iq[round], t[round], lt[round]
        );
    }
    let mut vs = |name: &str, ours: &[f64], peer: &str, theirs: &[f64]| {
        let (o, p) = median_pair(ours, theirs);
        suite.record_vs(name, o, "MiB/s", Better::Higher, peer, p);
    };
    vs(
        "quic.bulk_throughput.vs_libp2p",
        &q,
        "libp2p.quic.bulk_throughput",
        &lq,
    );
    vs(
        "quic.bulk_throughput.vs_iroh",
        &q,
        "iroh.bulk_throughput",
        &iq,
    );
    vs(
        "tcp.bulk_throughput.vs_libp2p",
        &t,
        "libp2p.tcp_noise_yamux.bulk_throughput",
        &lt,
    );
    ic.close(0u32.into(), b"");
    i_client.close().await;
    i_server.close().await;
}

/// `n` connections per stack (after one warm-up each), interleaved one by one with the order
/// rotating; p50 and p99 of each stack's series.
async fn connect(suite: &mut Suite) {
    let n = suite.scale(1000, 20);
    let server = ours(true, true).await;
    let serve = serve_ours_echo(server.clone());
    let client = ours(false, true).await;
    let l_server = lp2p_node().await;
    let l_serve = serve_lp2p_echo(&l_server);
    let l_client = lp2p_node().await;
    let i_server = iroh_endpoint(ECHO).await;
    let i_serve = serve_iroh_echo(i_server.clone());
    let i_client = iroh_endpoint(ECHO).await;
    let i_addr = iroh_addr(&i_server);

    let mut series: [Vec<f64>; 5] = Default::default();
    for round in 0..=n {
        for k in 0..5 {
            let which = (round + k) % 5;
            let d = match which {
                0 => connect_ours(&client, &server, false).await,
                1 => connect_lp2p(&l_client, &l_server, false).await,
                2 => connect_iroh(&i_client, &i_addr).await,
                3 => connect_ours(&client, &server, true).await,
                _ => connect_lp2p(&l_client, &l_server, true).await,
            };
            // Round 0 warms every stack up: later dials reach a peer already seen once.
            if round > 0 {
                series[which].push(d);
            }
        }
    }
    let [mut q, mut lq, mut iq, mut t, mut lt] = series;
    for (p, tag) in [(50.0, "p50"), (99.0, "p99")] {
        let mut vs = |name: &str, ours: &mut [f64], peer: &str, theirs: &mut [f64]| {
            let name = format!(
                "{name}.connect_{tag}_us.vs_{}",
                peer.split('.').next().unwrap_or(peer)
            );
            let (o, b) = (percentile(ours, p), percentile(theirs, p));
            suite.record_vs(
                &name,
                o,
                "µs",
                Better::Lower,
                &format!("{peer}.connect_{tag}_us"),
                b,
            );
        };
        vs("quic", &mut q, "libp2p.quic", &mut lq);
        vs("quic", &mut q, "iroh", &mut iq);
        vs("tcp", &mut t, "libp2p.tcp_noise_yamux", &mut lt);
    }
    serve.abort();
    l_serve.abort();
    i_serve.abort();
    i_client.close().await;
    i_server.close().await;
}

fn main() {
    let mut suite = Suite::new("peers");
    // Two worker threads, the same runtime for every stack: the machines these figures are
    // held against have two cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // P2PF_BENCH_ONLY=bulk,connect runs a subset.
    let only = std::env::var("P2PF_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    rt.block_on(async {
        if run("bulk") {
            bulk(&mut suite).await;
        }
        if run("connect") {
            connect(&mut suite).await;
        }
    });
    suite.finish();
}
