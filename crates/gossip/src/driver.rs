//! A thin tokio driver: one task owns the [`Gossip`] core and real time; per peer, a reader
//! task decodes frames and a writer task writes them.
//!
//! The driver is transport-agnostic: a peer is any reliable, ordered byte stream, given as an
//! [`AsyncRead`] half and an [`AsyncWrite`] half (a QUIC bidirectional stream, a TCP+TLS
//! connection, `tokio::io::duplex` in tests) whose remote identity the transport has already
//! authenticated. [`tcp`] is a small adapter for loopback tests and examples.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use p2p_foundation_identity::{Keypair, PeerId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;
use tracing::Instrument;

use crate::codec::{self, LEN_PREFIX, Limits};
use crate::{
    Acceptance, Config, Event, Gossip, GossipError, Input, MessageId, Metrics, Output,
    PublishOptions, Rpc, Topic,
};

/// Frames queued per peer before the driver drops frames for that (slow) peer.
const PEER_QUEUE: usize = 1024;
/// Decoded frames queued from all readers to the core.
const INBOUND_QUEUE: usize = 4096;

enum Command {
    Subscribe(Topic, oneshot::Sender<bool>),
    Unsubscribe(Topic, oneshot::Sender<bool>),
    Publish(
        Topic,
        Vec<u8>,
        PublishOptions,
        oneshot::Sender<Result<MessageId, GossipError>>,
    ),
    AddPeer {
        peer: PeerId,
        ip: Option<IpAddr>,
        outbound: bool,
        writer: mpsc::Sender<Frame>,
        id: u64,
    },
    MeshPeers(Topic, oneshot::Sender<Vec<PeerId>>),
    ReportValidation(MessageId, Acceptance, oneshot::Sender<bool>),
    ApplicationScore(PeerId, f64, oneshot::Sender<bool>),
    PeerAddress(PeerId, std::net::SocketAddr, oneshot::Sender<bool>),
    Metrics(oneshot::Sender<Metrics>),
    Shutdown,
}

/// An encoded frame, shared by every peer it goes to (a forwarded message is encoded once,
/// not once per mesh peer).
type Frame = Arc<Vec<u8>>;

enum Inbound {
    Frame(PeerId, u64, Result<Rpc, GossipError>),
    Closed(PeerId, u64),
}

/// Counters of the driver itself.
#[derive(Debug, Default)]
struct DriverStats {
    frames_dropped_slow_peer: AtomicU64,
    events_dropped: AtomicU64,
}

/// A handle to a running gossip node. Cheap to clone; the node stops when
/// [`GossipHandle::shutdown`] is called or every handle is dropped.
#[derive(Clone)]
pub struct GossipHandle {
    commands: mpsc::Sender<Command>,
    inbound: mpsc::Sender<Inbound>,
    limits: Limits,
    local: PeerId,
    next_conn: Arc<AtomicU64>,
    stats: Arc<DriverStats>,
}

impl std::fmt::Debug for GossipHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipHandle")
            .field("local", &self.local.short())
            .finish_non_exhaustive()
    }
}

/// Starts a node on the current tokio runtime. Returns its handle and its event stream
/// (bounded: events the application does not take in time are dropped and counted in
/// [`GossipHandle::dropped_events`]).
pub fn spawn(
    keypair: Keypair,
    config: Config,
    seed: u64,
    event_capacity: usize,
) -> Result<(GossipHandle, mpsc::Receiver<Event>), GossipError> {
    let local = keypair.peer_id();
    let limits = config.limits();
    let core = Gossip::new(keypair, config, seed, std::time::Instant::now())?;
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(event_capacity.max(1));
    let stats = Arc::new(DriverStats::default());
    let span = tracing::debug_span!("gossip", node = %local.short());
    tokio::spawn(run(core, cmd_rx, in_rx, ev_tx, Arc::clone(&stats)).instrument(span));
    Ok((
        GossipHandle {
            commands: cmd_tx,
            inbound: in_tx,
            limits,
            local,
            next_conn: Arc::new(AtomicU64::new(1)),
            stats,
        },
        ev_rx,
    ))
}

impl GossipHandle {
    /// This node's id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| GossipError::DriverStopped)?;
        rx.await.map_err(|_| GossipError::DriverStopped)
    }

    /// Subscribes to `topic`.
    pub async fn subscribe(&self, topic: Topic) -> Result<bool, GossipError> {
        self.ask(|tx| Command::Subscribe(topic, tx)).await
    }

    /// Unsubscribes from `topic`.
    pub async fn unsubscribe(&self, topic: Topic) -> Result<bool, GossipError> {
        self.ask(|tx| Command::Unsubscribe(topic, tx)).await
    }

    /// Publishes `data` on `topic`.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<MessageId, GossipError> {
        self.publish_with(topic, data, PublishOptions::default())
            .await
    }

    /// Publishes with options (delivery confirmation).
    pub async fn publish_with(
        &self,
        topic: Topic,
        data: Vec<u8>,
        options: PublishOptions,
    ) -> Result<MessageId, GossipError> {
        self.ask(|tx| Command::Publish(topic, data, options, tx))
            .await?
    }

    /// Our mesh peers for `topic`.
    pub async fn mesh_peers(&self, topic: Topic) -> Result<Vec<PeerId>, GossipError> {
        self.ask(|tx| Command::MeshPeers(topic, tx)).await
    }

    /// The verdict on a message announced by [`Event::ValidationPending`]
    /// ([`Gossip::report_validation`]). Ok(false) if it is no longer waiting.
    pub async fn report_validation(
        &self,
        id: MessageId,
        verdict: Acceptance,
    ) -> Result<bool, GossipError> {
        self.ask(|tx| Command::ReportValidation(id, verdict, tx))
            .await
    }

    /// Sets a peer's application-specific score, P5 ([`Gossip::set_application_score`]).
    pub async fn set_application_score(
        &self,
        peer: PeerId,
        score: f64,
    ) -> Result<bool, GossipError> {
        self.ask(|tx| Command::ApplicationScore(peer, score, tx))
            .await
    }

    /// Records where a connected peer listens, for peer exchange
    /// ([`Gossip::set_peer_address`]).
    pub async fn set_peer_address(
        &self,
        peer: PeerId,
        addr: std::net::SocketAddr,
    ) -> Result<bool, GossipError> {
        self.ask(|tx| Command::PeerAddress(peer, addr, tx)).await
    }

    /// The core's counters.
    pub async fn metrics(&self) -> Result<Metrics, GossipError> {
        self.ask(Command::Metrics).await
    }

    /// Events dropped because the application did not take them in time.
    pub fn dropped_events(&self) -> u64 {
        self.stats.events_dropped.load(Ordering::Relaxed)
    }

    /// Frames dropped because a peer did not read fast enough.
    pub fn dropped_frames(&self) -> u64 {
        self.stats.frames_dropped_slow_peer.load(Ordering::Relaxed)
    }

    /// Stops the node (its peer tasks end as their streams close).
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    /// Adds a peer over an authenticated stream. `outbound`: we dialled it (counts towards
    /// the outbound mesh quota). The peer is dropped when either half fails or closes.
    pub async fn add_peer<R, W>(
        &self,
        peer: PeerId,
        ip: Option<IpAddr>,
        outbound: bool,
        reader: R,
        writer: W,
    ) -> Result<(), GossipError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (wtx, wrx) = mpsc::channel(PEER_QUEUE);
        let span =
            tracing::debug_span!("gossip-peer", node = %self.local.short(), peer = %peer.short());
        tokio::spawn(write_loop(writer, wrx).instrument(span.clone()));
        tokio::spawn(
            read_loop(reader, peer, id, self.limits, self.inbound.clone()).instrument(span),
        );
        self.commands
            .send(Command::AddPeer {
                peer,
                ip,
                outbound,
                writer: wtx,
                id,
            })
            .await
            .map_err(|_| GossipError::DriverStopped)
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut frames: mpsc::Receiver<Frame>) {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = writer.write_all(&frame).await {
            tracing::debug!(error = %e, "gossip write failed");
            return;
        }
        // Coalesce whatever else is queued before flushing.
        while let Ok(more) = frames.try_recv() {
            if writer.write_all(&more).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    peer: PeerId,
    id: u64,
    limits: Limits,
    inbound: mpsc::Sender<Inbound>,
) {
    let mut buf = Vec::new();
    let mut keys = codec::KeyCache::default();
    loop {
        let mut prefix = [0u8; LEN_PREFIX];
        if reader.read_exact(&mut prefix).await.is_err() {
            break;
        }
        // The length is checked against the limit before anything is allocated.
        let len = match codec::frame_len(prefix, limits.max_frame_len) {
            Ok(len) => len,
            Err(e) => {
                tracing::debug!(error = %e, "closing gossip stream");
                let _ = inbound.send(Inbound::Frame(peer, id, Err(e))).await;
                break;
            }
        };
        buf.resize(len, 0);
        if reader.read_exact(&mut buf).await.is_err() {
            break;
        }
        let rpc = codec::decode_body_cached(&buf, &limits, &mut keys);
        if buf.capacity() > 64 * 1024 {
            buf = Vec::new();
        }
        if inbound.send(Inbound::Frame(peer, id, rpc)).await.is_err() {
            return;
        }
    }
    let _ = inbound.send(Inbound::Closed(peer, id)).await;
}

async fn run(
    mut core: Gossip,
    mut commands: mpsc::Receiver<Command>,
    mut inbound: mpsc::Receiver<Inbound>,
    events: mpsc::Sender<Event>,
    stats: Arc<DriverStats>,
) {
    let base_tokio = TokioInstant::now();
    let base = std::time::Instant::now();
    let mut writers: std::collections::HashMap<PeerId, (u64, mpsc::Sender<Frame>)> =
        std::collections::HashMap::new();
    let mut wake = base;
    loop {
        let deadline = base_tokio + wake.saturating_duration_since(base);
        tokio::select! {
            cmd = commands.recv() => {
                let now = std::time::Instant::now();
                match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(Command::Subscribe(t, tx)) => { let _ = tx.send(core.subscribe(now, t)); }
                    Some(Command::Unsubscribe(t, tx)) => { let _ = tx.send(core.unsubscribe(now, &t)); }
                    Some(Command::Publish(t, data, opts, tx)) => {
                        let _ = tx.send(core.publish_with(now, t, data, opts));
                    }
                    Some(Command::AddPeer { peer, ip, outbound, writer, id }) => {
                        if let Some((_, old)) = writers.insert(peer, (id, writer)) {
                            // A second stream to the same peer replaces the first.
                            drop(old);
                            core.handle_input(now, Input::PeerDisconnected { peer });
                        }
                        core.handle_input(now, Input::PeerConnected { peer, ip, outbound });
                    }
                    Some(Command::MeshPeers(t, tx)) => { let _ = tx.send(core.mesh_peers(&t).to_vec()); }
                    Some(Command::Metrics(tx)) => { let _ = tx.send(core.metrics()); }
                    Some(Command::ReportValidation(id, verdict, tx)) => {
                        let _ = tx.send(core.report_validation(now, &id, verdict));
                    }
                    Some(Command::ApplicationScore(peer, score, tx)) => {
                        let _ = tx.send(core.set_application_score(now, &peer, score));
                    }
                    Some(Command::PeerAddress(peer, addr, tx)) => {
                        let _ = tx.send(core.set_peer_address(&peer, addr));
                    }
                }
            }
            msg = inbound.recv() => {
                let now = std::time::Instant::now();
                match msg {
                    None => break,
                    Some(Inbound::Frame(peer, id, rpc)) => {
                        if writers.get(&peer).is_some_and(|(cur, _)| *cur == id) {
                            match rpc {
                                Ok(rpc) => core.handle_input(now, Input::Rpc { from: peer, rpc }),
                                Err(e) => core.handle_input(now, Input::BadFrame { from: peer, error: Arc::new(e) }),
                            }
                        }
                    }
                    Some(Inbound::Closed(peer, id)) => {
                        if writers.get(&peer).is_some_and(|(cur, _)| *cur == id) {
                            writers.remove(&peer);
                            core.handle_input(now, Input::PeerDisconnected { peer });
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                core.handle_input(std::time::Instant::now(), Input::Timeout);
            }
        }
        // The last PUBLISH encoded in this drain: (message, hops, frame).
        let mut last_publish: Option<(Arc<crate::Message>, u8, Frame)> = None;
        loop {
            match core.poll_output() {
                Output::Send { to, rpc } => {
                    if let Some((_, w)) = writers.get(&to) {
                        let frame = match &rpc {
                            // Consecutive sends of one message with one hop count (forwarding
                            // to the mesh, flood publishing) share one encoding.
                            Rpc::Publish { hops, msg } => match &last_publish {
                                Some((m, h, f)) if Arc::ptr_eq(m, msg) && h == hops => {
                                    Arc::clone(f)
                                }
                                _ => {
                                    let f = Arc::new(codec::encode(&rpc));
                                    last_publish = Some((Arc::clone(msg), *hops, Arc::clone(&f)));
                                    f
                                }
                            },
                            _ => Arc::new(codec::encode(&rpc)),
                        };
                        if w.try_send(frame).is_err() {
                            stats
                                .frames_dropped_slow_peer
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Output::Event(e) => {
                    if events.try_send(e).is_err() {
                        stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::Timeout(at) => {
                    // Never spin: wake at least 1 ms from now.
                    wake = at.max(std::time::Instant::now() + Duration::from_millis(1));
                    break;
                }
            }
        }
    }
    tracing::debug!("gossip driver stopped");
}

/// A TCP adapter with an authenticated hello, for loopback tests and examples (the facade
/// plugs QUIC in instead).
///
/// Hello, each way: peer id (32 bytes) ‖ nonce (32 bytes); then each side sends its
/// Ed25519 signature over `"p2pf/gossip/tcp-hello/v1\0"` ‖ the other side's nonce ‖ its own
/// peer id, so each side proves it holds the key it claims.
pub mod tcp {
    use std::net::SocketAddr;

    use p2p_foundation_identity::{Keypair, PeerId, Signature};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    use crate::GossipError;

    const HELLO_DOMAIN: &[u8] = b"p2pf/gossip/tcp-hello/v1\0";

    fn hello_bytes(nonce: &[u8; 32], signer: &PeerId) -> Vec<u8> {
        let mut v = HELLO_DOMAIN.to_vec();
        v.extend_from_slice(nonce);
        v.extend_from_slice(signer.as_bytes());
        v
    }

    /// Runs the hello on `stream` and returns the authenticated remote peer and the halves.
    pub async fn handshake(
        keypair: &Keypair,
        mut stream: TcpStream,
    ) -> Result<(PeerId, SocketAddr, OwnedReadHalf, OwnedWriteHalf), GossipError> {
        stream.set_nodelay(true)?;
        let remote_addr = stream.peer_addr()?;
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut hello = [0u8; 64];
        hello[..32].copy_from_slice(keypair.peer_id().as_bytes());
        hello[32..].copy_from_slice(&nonce);
        stream.write_all(&hello).await?;
        let mut theirs = [0u8; 64];
        stream.read_exact(&mut theirs).await?;
        let mut their_id = [0u8; 32];
        their_id.copy_from_slice(&theirs[..32]);
        let peer = PeerId::from_bytes(their_id).map_err(|_| GossipError::MalformedFrame {
            reason: "hello carries an invalid peer id",
        })?;
        let mut their_nonce = [0u8; 32];
        their_nonce.copy_from_slice(&theirs[32..]);
        let sig = keypair.sign(&hello_bytes(&their_nonce, &keypair.peer_id()));
        stream.write_all(sig.as_bytes()).await?;
        let mut their_sig = [0u8; 64];
        stream.read_exact(&mut their_sig).await?;
        peer.verify(
            &hello_bytes(&nonce, &peer),
            &Signature::from_bytes(their_sig),
        )
        .map_err(|_| GossipError::BadSignature {
            author: peer.to_string(),
        })?;
        let (r, w) = stream.into_split();
        Ok((peer, remote_addr, r, w))
    }

    /// Dials `addr` and runs the hello.
    pub async fn connect(
        keypair: &Keypair,
        addr: SocketAddr,
    ) -> Result<(PeerId, SocketAddr, OwnedReadHalf, OwnedWriteHalf), GossipError> {
        handshake(keypair, TcpStream::connect(addr).await?).await
    }
}
