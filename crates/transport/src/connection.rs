//! A connection to an authenticated peer, over QUIC or the TCP session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use p2p_foundation_identity::PeerId;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, mpsc};
use tokio::task::AbortHandle;
use tracing::Instrument;

use crate::endpoint::{ConnSlot, Shared};
use crate::error::{Result, TransportError};
use crate::header::{self, StreamKind};
use crate::session::{MuxHandle, MuxStream};
use crate::stream::{RecvInner, RecvStream, SendInner, SendStream, mux_split};

/// Which transport a connection runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// QUIC over UDP.
    Quic,
    /// TLS 1.3 + multiplexer over TCP.
    Tcp,
    /// TLS 1.3 + multiplexer over a caller-supplied byte stream (e.g. a relay).
    Stream,
}

/// An incoming bidirectional stream.
#[derive(Debug)]
pub struct IncomingBi {
    /// The protocol id from the stream header.
    pub protocol: String,
    /// Sending half.
    pub send: SendStream,
    /// Receiving half.
    pub recv: RecvStream,
}

/// An incoming unidirectional stream.
#[derive(Debug)]
pub struct IncomingUni {
    /// The protocol id from the stream header.
    pub protocol: String,
    /// The stream.
    pub recv: RecvStream,
}

pub(crate) enum Inner {
    Quic(quinn::Connection),
    Mux(MuxHandle),
}

pub(crate) struct ConnState {
    pub(crate) inner: Inner,
    peer: PeerId,
    remote: SocketAddr,
    path: PathKind,
    rtt: Duration,
    zero_rtt: bool,
    shared: Arc<Shared>,
    bi: Mutex<mpsc::Receiver<Box<IncomingBi>>>,
    uni: Mutex<mpsc::Receiver<Box<IncomingUni>>>,
    task: AbortHandle,
    remote_close: Arc<RemoteClose>,
}

impl Drop for ConnState {
    fn drop(&mut self) {
        self.task.abort();
        if let Inner::Mux(m) = &self.inner {
            m.close(None);
        }
    }
}

/// An authenticated connection. Cheap to clone; the connection closes when every clone is
/// dropped or [`Connection::close`] is called.
#[derive(Clone)]
pub struct Connection {
    pub(crate) state: Arc<ConnState>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.state.peer)
            .field("remote", &self.remote_address())
            .field("path", &self.state.path)
            .finish()
    }
}

const QUEUE: usize = 64;

/// Reserved protocol id of the stream that carries a TCP-path close code and reason.
pub const CLOSE_PROTOCOL: &str = "/p2pf/close/1";

/// Close reason received on the TCP path, and the header reads still in flight (so
/// `closed()` reports the peer's reason even when it arrives with the shutdown).
#[derive(Default)]
pub(crate) struct RemoteClose {
    /// The peer's close code and reason, once its close stream was read.
    reason: std::sync::Mutex<Option<(u32, String)>>,
    pending: std::sync::atomic::AtomicUsize,
    /// The accept loop has taken every stream the session delivered (it ended).
    drained: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl RemoteClose {
    fn done(&self) {
        self.pending.fetch_sub(1, Relaxed);
        self.notify.notify_waiters();
    }

    fn drained(&self) {
        self.drained.store(true, Relaxed);
        self.notify.notify_waiters();
    }

    async fn settled(&self) -> Option<(u32, String)> {
        loop {
            let wait = self.notify.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            // Streams still queued between the session and the accept loop may include the
            // close stream: wait until the loop has taken them all and read their headers.
            if self.drained.load(Relaxed) && self.pending.load(Relaxed) == 0 {
                break;
            }
            wait.await;
        }
        self.reason.lock().ok().and_then(|r| r.clone())
    }
}

/// Error code used by [`Connection`] when the application closes without one.
pub const CLOSE_NORMAL: u32 = 0;
/// Stream error code for a refused stream header.
pub const STREAM_BAD_HEADER: u32 = 0x01;
/// Stream error code for a 0-RTT stream whose protocol is not replay-safe.
pub const STREAM_NOT_REPLAY_SAFE: u32 = 0x02;

impl Connection {
    pub(crate) fn from_quic(
        conn: quinn::Connection,
        peer: PeerId,
        zero_rtt: bool,
        shared: Arc<Shared>,
        slot: ConnSlot,
    ) -> Self {
        QuicStart::new(conn, shared, slot).finish(peer, zero_rtt)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_mux(
        handle: MuxHandle,
        inbound: mpsc::UnboundedReceiver<MuxStream>,
        peer: PeerId,
        remote: SocketAddr,
        path: PathKind,
        rtt: Duration,
        shared: Arc<Shared>,
        slot: ConnSlot,
    ) -> Self {
        let (bi_tx, bi_rx) = mpsc::channel(QUEUE);
        let (uni_tx, uni_rx) = mpsc::channel(QUEUE);
        let span = tracing::debug_span!("mux", peer = %peer.short(), %remote);
        let remote_close = Arc::new(RemoteClose::default());
        let task = tokio::spawn({
            slot.establish(path);
            let loop_ =
                mux_accept_loop(inbound, shared.clone(), bi_tx, uni_tx, remote_close.clone());
            // The loop ends when the session ends; the slot goes with it.
            async move {
                loop_.await;
                drop(slot);
            }
            .instrument(span)
        })
        .abort_handle();
        Self {
            state: Arc::new(ConnState {
                inner: Inner::Mux(handle),
                peer,
                remote,
                path,
                rtt,
                zero_rtt: false,
                shared,
                bi: Mutex::new(bi_rx),
                uni: Mutex::new(uni_rx),
                task,
                remote_close,
            }),
        }
    }

    /// The remote's PeerId, proven in the TLS handshake.
    pub fn peer_id(&self) -> PeerId {
        self.state.peer
    }

    /// The remote's current address (QUIC follows migrations).
    pub fn remote_address(&self) -> SocketAddr {
        match &self.state.inner {
            Inner::Quic(c) => c.remote_address(),
            Inner::Mux(_) => self.state.remote,
        }
    }

    /// The path this connection runs over.
    pub fn path(&self) -> PathKind {
        self.state.path
    }

    /// Round-trip time: QUIC's smoothed estimate, or for TCP the TCP connect time measured
    /// when dialing (the TLS handshake time when accepting).
    pub fn rtt(&self) -> Duration {
        match &self.state.inner {
            Inner::Quic(c) => c.rtt(),
            Inner::Mux(_) => self.state.rtt,
        }
    }

    /// Whether this connection was resumed with 0-RTT accepted by the server (dialer side).
    pub fn used_0rtt(&self) -> bool {
        self.state.zero_rtt
    }

    fn check_protocol(&self, protocol: &str) -> Result<()> {
        if protocol == CLOSE_PROTOCOL {
            return Err(TransportError::InvalidProtocol("reserved for closing"));
        }
        header::validate_protocol(protocol, self.state.shared.config.max_protocol_len)
    }

    /// Opens a bidirectional stream for `protocol` (e.g. `/p2pf/kad/1`); the header is sent
    /// with the first write, or at once if none follows quickly.
    pub async fn open_bi(&self, protocol: &str) -> Result<(SendStream, RecvStream)> {
        self.check_protocol(protocol)?;
        let head = header::encode(StreamKind::Bi, protocol);
        let metrics = self.state.shared.metrics.clone();
        match &self.state.inner {
            Inner::Quic(c) => {
                let (mut s, r) = c.open_bi().await?;
                s.write_all(&head).await?;
                Ok((
                    SendStream {
                        inner: SendInner::Quic(s),
                        metrics: metrics.clone(),
                    },
                    RecvStream {
                        inner: RecvInner::Quic(r),
                        metrics,
                        replayable: false,
                    },
                ))
            }
            Inner::Mux(m) => {
                let stream = m.open().await?;
                let (r, mut w) = mux_split(stream);
                w.write_all(&head).await?;
                Ok((
                    SendStream {
                        inner: SendInner::Mux(w),
                        metrics: metrics.clone(),
                    },
                    RecvStream {
                        inner: RecvInner::Mux(r),
                        metrics,
                        replayable: false,
                    },
                ))
            }
        }
    }

    /// Opens a unidirectional stream for `protocol`.
    pub async fn open_uni(&self, protocol: &str) -> Result<SendStream> {
        self.check_protocol(protocol)?;
        let head = header::encode(StreamKind::Uni, protocol);
        let metrics = self.state.shared.metrics.clone();
        match &self.state.inner {
            Inner::Quic(c) => {
                let mut s = c.open_uni().await?;
                s.write_all(&head).await?;
                Ok(SendStream {
                    inner: SendInner::Quic(s),
                    metrics,
                })
            }
            Inner::Mux(m) => {
                let stream = m.open().await?;
                let (_r, mut w) = mux_split(stream);
                w.write_all(&head).await?;
                Ok(SendStream {
                    inner: SendInner::Mux(w),
                    metrics,
                })
            }
        }
    }

    /// Waits for the remote to open a bidirectional stream (with a valid header).
    pub async fn accept_bi(&self) -> Result<IncomingBi> {
        let mut rx = self.state.bi.lock().await;
        match rx.recv().await {
            Some(s) => Ok(*s),
            None => Err(TransportError::Closed(self.close_reason().await)),
        }
    }

    /// Waits for the remote to open a unidirectional stream (with a valid header).
    pub async fn accept_uni(&self) -> Result<IncomingUni> {
        let mut rx = self.state.uni.lock().await;
        match rx.recv().await {
            Some(s) => Ok(*s),
            None => Err(TransportError::Closed(self.close_reason().await)),
        }
    }

    /// Sends an unreliable datagram (QUIC only).
    pub fn send_datagram(&self, data: Bytes) -> Result<()> {
        match &self.state.inner {
            Inner::Quic(c) => {
                let n = data.len() as u64;
                c.send_datagram(data)?;
                self.state.shared.metrics.bytes_out.fetch_add(n, Relaxed);
                Ok(())
            }
            Inner::Mux(_) => Err(TransportError::Unsupported("datagrams")),
        }
    }

    /// Receives the next datagram (QUIC only).
    pub async fn read_datagram(&self) -> Result<Bytes> {
        match &self.state.inner {
            Inner::Quic(c) => {
                let d = c.read_datagram().await?;
                self.state
                    .shared
                    .metrics
                    .bytes_in
                    .fetch_add(d.len() as u64, Relaxed);
                Ok(d)
            }
            Inner::Mux(_) => Err(TransportError::Unsupported("datagrams")),
        }
    }

    /// The largest datagram the path can carry now; `None` on TCP or if the peer disabled them.
    pub fn max_datagram_size(&self) -> Option<usize> {
        match &self.state.inner {
            Inner::Quic(c) => c.max_datagram_size(),
            Inner::Mux(_) => None,
        }
    }

    /// Closes the connection with an application `code` and `reason` (the reason reaches the
    /// peer over QUIC; over TCP the peer sees a clean multiplexer shutdown).
    pub fn close(&self, code: u32, reason: &[u8]) {
        match &self.state.inner {
            Inner::Quic(c) => c.close(quinn::VarInt::from_u32(code), reason),
            Inner::Mux(m) => {
                let mut msg = header::encode(StreamKind::Uni, CLOSE_PROTOCOL);
                msg.extend_from_slice(&code.to_be_bytes());
                let reason = &reason[..reason.len().min(255)];
                msg.push(reason.len() as u8);
                msg.extend_from_slice(reason);
                m.close(Some(msg));
            }
        }
    }

    /// Waits until the connection is closed and returns why.
    pub async fn closed(&self) -> String {
        self.closed_with_code().await.1
    }

    /// Waits until the connection is closed; returns the application close code if the
    /// peer closed it with [`Connection::close`] (`None` when it was closed here, timed
    /// out or was lost), and why, as [`Connection::closed`] says it.
    ///
    /// ```no_run
    /// # async fn demo(conn: p2p_foundation_transport::Connection) {
    /// if let (Some(code), why) = conn.closed_with_code().await {
    ///     println!("the peer closed with code {code}: {why}");
    /// }
    /// # }
    /// ```
    pub async fn closed_with_code(&self) -> (Option<u32>, String) {
        match &self.state.inner {
            Inner::Quic(c) => {
                let e = c.closed().await;
                let code = match &e {
                    quinn::ConnectionError::ApplicationClosed(a) => {
                        u32::try_from(a.error_code.into_inner()).ok()
                    }
                    _ => None,
                };
                (code, e.to_string())
            }
            Inner::Mux(m) => {
                let local = m.closed().await;
                match self.state.remote_close.settled().await {
                    Some((code, reason)) => {
                        (Some(code), format!("closed by peer: code {code}: {reason}"))
                    }
                    None => (None, local),
                }
            }
        }
    }

    async fn close_reason(&self) -> String {
        match &self.state.inner {
            Inner::Quic(c) => c
                .close_reason()
                .map_or_else(|| "connection closed".into(), |e| e.to_string()),
            Inner::Mux(m) => m
                .closed
                .borrow()
                .clone()
                .unwrap_or_else(|| "connection closed".into()),
        }
    }
}

/// A QUIC connection whose stream accept loop already runs (so streams arriving in 0-RTT,
/// before the handshake completes, are seen as such) but whose peer is not yet proven.
pub(crate) struct QuicStart {
    conn: quinn::Connection,
    shared: Arc<Shared>,
    bi: mpsc::Receiver<Box<IncomingBi>>,
    uni: mpsc::Receiver<Box<IncomingUni>>,
    task: AbortHandle,
    slot: Arc<ConnSlot>,
}

impl QuicStart {
    pub(crate) fn new(conn: quinn::Connection, shared: Arc<Shared>, slot: ConnSlot) -> Self {
        let slot = Arc::new(slot);
        let (bi_tx, bi) = mpsc::channel(QUEUE);
        let (uni_tx, uni) = mpsc::channel(QUEUE);
        let span = tracing::debug_span!("quic", remote = %conn.remote_address());
        let task = tokio::spawn(
            {
                let loop_ = quic_accept_loop(conn.clone(), shared.clone(), bi_tx, uni_tx);
                // The loop ends when the connection closes; the slot goes with it.
                let slot = slot.clone();
                async move {
                    loop_.await;
                    drop(slot);
                }
            }
            .instrument(span),
        )
        .abort_handle();
        Self {
            conn,
            shared,
            bi,
            uni,
            task,
            slot,
        }
    }

    pub(crate) fn conn(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Aborts the accept loop (the handshake failed).
    pub(crate) fn abort(self) {
        self.task.abort();
    }

    pub(crate) fn finish(self, peer: PeerId, zero_rtt: bool) -> Connection {
        self.slot.establish(PathKind::Quic);
        Connection {
            state: Arc::new(ConnState {
                remote: self.conn.remote_address(),
                inner: Inner::Quic(self.conn),
                peer,
                path: PathKind::Quic,
                rtt: Duration::ZERO,
                zero_rtt,
                shared: self.shared,
                bi: Mutex::new(self.bi),
                uni: Mutex::new(self.uni),
                task: self.task,
                remote_close: Arc::new(RemoteClose::default()),
            }),
        }
    }
}

async fn quic_accept_loop(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    bi: mpsc::Sender<Box<IncomingBi>>,
    uni: mpsc::Sender<Box<IncomingUni>>,
) {
    loop {
        tokio::select! {
            r = conn.accept_bi() => match r {
                Ok((s, r)) => {
                    let (shared, bi) = (shared.clone(), bi.clone());
                    tokio::spawn(async move { quic_stream(shared, Some(s), r, StreamKind::Bi, bi, None).await });
                }
                Err(_) => break,
            },
            r = conn.accept_uni() => match r {
                Ok(r) => {
                    let (shared, uni) = (shared.clone(), uni.clone());
                    tokio::spawn(async move { quic_stream(shared, None, r, StreamKind::Uni, bi_dummy(), Some(uni)).await });
                }
                Err(_) => break,
            },
        }
    }
}

fn bi_dummy() -> mpsc::Sender<Box<IncomingBi>> {
    mpsc::channel(1).0
}

async fn quic_stream(
    shared: Arc<Shared>,
    mut send: Option<quinn::SendStream>,
    mut recv: quinn::RecvStream,
    expected: StreamKind,
    bi: mpsc::Sender<Box<IncomingBi>>,
    uni: Option<mpsc::Sender<Box<IncomingUni>>>,
) {
    let cfg = &shared.config;
    let head = tokio::time::timeout(
        cfg.stream_header_timeout,
        header::read(&mut recv, cfg.max_protocol_len),
    )
    .await;
    let refuse = |send: &mut Option<quinn::SendStream>, recv: &mut quinn::RecvStream, code: u32| {
        let _ = recv.stop(quinn::VarInt::from_u32(code));
        if let Some(s) = send {
            let _ = s.reset(quinn::VarInt::from_u32(code));
        }
    };
    let (protocol, flagged) = match head {
        Ok(Ok((kind, protocol))) if kind == expected => (protocol, false),
        Ok(Ok((StreamKind::EarlyBi, protocol))) if expected == StreamKind::Bi => (protocol, true),
        other => {
            tracing::debug!(?other, "refusing stream: bad header");
            shared.metrics.refused_header.fetch_add(1, Relaxed);
            refuse(&mut send, &mut recv, STREAM_BAD_HEADER);
            return;
        }
    };
    let replayable = flagged || recv.is_0rtt();
    if replayable && !cfg.zero_rtt_protocols.contains(&protocol) {
        tracing::debug!(%protocol, "refusing 0-RTT stream: protocol is not replay-safe");
        shared.metrics.refused_0rtt.fetch_add(1, Relaxed);
        refuse(&mut send, &mut recv, STREAM_NOT_REPLAY_SAFE);
        return;
    }
    let metrics = shared.metrics.clone();
    let recv = RecvStream {
        inner: RecvInner::Quic(recv),
        metrics: metrics.clone(),
        replayable,
    };
    match (send, uni) {
        (Some(s), _) => {
            let send = SendStream {
                inner: SendInner::Quic(s),
                metrics,
            };
            let _ = bi
                .send(Box::new(IncomingBi {
                    protocol,
                    send,
                    recv,
                }))
                .await;
        }
        (None, Some(uni)) => {
            let _ = uni.send(Box::new(IncomingUni { protocol, recv })).await;
        }
        (None, None) => {}
    }
}

async fn mux_accept_loop(
    mut inbound: mpsc::UnboundedReceiver<MuxStream>,
    shared: Arc<Shared>,
    bi: mpsc::Sender<Box<IncomingBi>>,
    uni: mpsc::Sender<Box<IncomingUni>>,
    remote_close: Arc<RemoteClose>,
) {
    while let Some(stream) = inbound.recv().await {
        let (shared, bi, uni) = (shared.clone(), bi.clone(), uni.clone());
        let remote_close = remote_close.clone();
        remote_close.pending.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let cfg = &shared.config;
            let (mut r, mut w) = mux_split(stream);
            let head = tokio::time::timeout(
                cfg.stream_header_timeout,
                header::read(&mut r, cfg.max_protocol_len),
            )
            .await;
            let metrics = shared.metrics.clone();
            if let Ok(Ok((StreamKind::Uni, p))) = &head {
                if p == CLOSE_PROTOCOL {
                    let read =
                        tokio::time::timeout(cfg.stream_header_timeout, read_close(&mut r)).await;
                    if let Ok(Some(reason)) = read {
                        if let Ok(mut slot) = remote_close.reason.lock() {
                            *slot = Some(reason);
                        }
                    }
                    remote_close.done();
                    return;
                }
            }
            remote_close.done();
            match head {
                Ok(Ok((StreamKind::Bi, protocol))) => {
                    let send = SendStream {
                        inner: SendInner::Mux(w),
                        metrics: metrics.clone(),
                    };
                    let recv = RecvStream {
                        inner: RecvInner::Mux(r),
                        metrics,
                        replayable: false,
                    };
                    let _ = bi
                        .send(Box::new(IncomingBi {
                            protocol,
                            send,
                            recv,
                        }))
                        .await;
                }
                Ok(Ok((StreamKind::Uni, protocol))) => {
                    // Our direction of a unidirectional stream carries nothing.
                    let _ = w.shutdown().await;
                    let recv = RecvStream {
                        inner: RecvInner::Mux(r),
                        metrics,
                        replayable: false,
                    };
                    let _ = uni.send(Box::new(IncomingUni { protocol, recv })).await;
                }
                other => {
                    tracing::debug!(?other, "refusing stream: bad header");
                    metrics.refused_header.fetch_add(1, Relaxed);
                }
            }
        });
    }
    remote_close.drained();
}

/// Reads a close stream's body: `code: u32`, `len: u8`, `reason: len bytes`.
async fn read_close<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<(u32, String)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await.ok()?;
    let code = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let mut reason = vec![0u8; usize::from(head[4])];
    r.read_exact(&mut reason).await.ok()?;
    Some((code, String::from_utf8_lossy(&reason).into_owned()))
}
