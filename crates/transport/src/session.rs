//! The TCP path: a yamux session over TLS 1.3 over any byte stream. The multiplexer gives
//! every stream its own flow-control window, so one bulk stream cannot starve the others.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::error::TransportError;

/// Commands from connection handles to the session driver.
pub(crate) enum Command {
    Open(oneshot::Sender<Result<yamux::Stream, TransportError>>),
    /// Close; with a farewell message (a complete close stream: header, code, reason) that
    /// is sent on its own stream before the session shuts down.
    Close(Option<Vec<u8>>),
}

/// Sending the farewell stream before closing.
enum Farewell {
    Idle,
    Opening(Vec<u8>),
    Writing(yamux::Stream, Vec<u8>, usize),
    Finishing(yamux::Stream),
}

/// Handle to a running session driver.
#[derive(Debug, Clone)]
pub(crate) struct MuxHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) closed: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Open(_) => "Open",
            Self::Close(_) => "Close",
        })
    }
}

/// Wraps the byte stream to note the time of the last byte in either direction.
pub(crate) struct ActivityIo<T> {
    inner: T,
    epoch: Instant,
    last_ms: Arc<AtomicU64>,
}

impl<T> ActivityIo<T> {
    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if r.is_ready() {
            this.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if r.is_ready() {
            this.touch();
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Write buffer between the multiplexer and TLS: one maximal frame plus its header.
const WRITE_BUFFER: usize = 64 * 1024 + 64;

/// Multiplexer settings derived from the endpoint configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MuxSettings {
    pub(crate) max_streams: usize,
    pub(crate) max_frame: usize,
    /// Close after this long without a byte; `None` when keep-alives are on.
    pub(crate) idle_timeout: Option<Duration>,
}

/// Starts a session driver over `io`; inbound streams arrive on the returned receiver.
pub(crate) fn spawn<T>(
    io: T,
    client: bool,
    settings: MuxSettings,
) -> (MuxHandle, mpsc::UnboundedReceiver<yamux::Stream>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let last_ms = Arc::new(AtomicU64::new(0));
    // yamux writes each frame's 12-byte header and its body separately and flushes after
    // every frame: buffering joins them, so a frame becomes whole TLS records in one write.
    let io = ActivityIo {
        inner: tokio::io::BufWriter::with_capacity(WRITE_BUFFER, io),
        epoch: Instant::now(),
        last_ms: last_ms.clone(),
    };
    let mut cfg = yamux::Config::default();
    let streams = settings.max_streams.max(1);
    // Per-stream windows start at 256 KiB; the total is bounded to that times the stream count.
    cfg.set_max_connection_receive_window(None);
    cfg.set_max_num_streams(streams);
    cfg.set_max_connection_receive_window(Some(streams * 256 * 1024));
    cfg.set_split_send_size(settings.max_frame.max(1024));
    let mode = if client {
        yamux::Mode::Client
    } else {
        yamux::Mode::Server
    };
    let conn = yamux::Connection::new(io.compat(), cfg, mode);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (closed_tx, closed_rx) = watch::channel(None);
    tokio::spawn(async move {
        let reason = drive(conn, cmd_rx, in_tx, settings.idle_timeout, last_ms).await;
        tracing::debug!(%reason, "multiplexed session ended");
        let _ = closed_tx.send(Some(reason));
    });
    (
        MuxHandle {
            commands: cmd_tx,
            closed: closed_rx,
        },
        in_rx,
    )
}

async fn drive<T>(
    mut conn: yamux::Connection<T>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    inbound: mpsc::UnboundedSender<yamux::Stream>,
    idle_timeout: Option<Duration>,
    last_ms: Arc<AtomicU64>,
) -> String
where
    T: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let epoch = Instant::now();
    let mut pending: VecDeque<oneshot::Sender<Result<yamux::Stream, TransportError>>> =
        VecDeque::new();
    let mut closing: Option<String> = None;
    let mut farewell = Farewell::Idle;
    let mut idle = idle_timeout.map(|t| Box::pin(tokio::time::sleep(t)));
    poll_fn(|cx| {
        if closing.is_none() && matches!(farewell, Farewell::Idle) {
            loop {
                match commands.poll_recv(cx) {
                    Poll::Ready(Some(Command::Open(tx))) => pending.push_back(tx),
                    Poll::Ready(Some(Command::Close(Some(msg)))) => {
                        farewell = Farewell::Opening(msg);
                        break;
                    }
                    Poll::Ready(Some(Command::Close(None))) => {
                        closing = Some("closed locally".into());
                        break;
                    }
                    Poll::Ready(None) => {
                        closing = Some("all connection handles dropped".into());
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if let (Some(t), Some(sleep), None) = (idle_timeout, idle.as_mut(), closing.as_ref()) {
            if sleep.as_mut().poll(cx).is_ready() {
                let last = Duration::from_millis(last_ms.load(Relaxed));
                let since = epoch.elapsed().saturating_sub(last);
                if since >= t {
                    closing = Some("idle timeout".into());
                } else {
                    sleep.as_mut().reset((Instant::now() + (t - since)).into());
                    let _ = sleep.as_mut().poll(cx);
                }
            }
        }
        // The farewell stream's frames are queued before the session closes, and yamux
        // drains queued frames before its GoAway; any failure just skips the farewell.
        loop {
            match std::mem::replace(&mut farewell, Farewell::Idle) {
                Farewell::Idle => break,
                Farewell::Opening(msg) => match conn.poll_new_outbound(cx) {
                    Poll::Ready(Ok(stream)) => farewell = Farewell::Writing(stream, msg, 0),
                    Poll::Ready(Err(_)) => closing = Some("closed locally".into()),
                    Poll::Pending => {
                        farewell = Farewell::Opening(msg);
                        break;
                    }
                },
                Farewell::Writing(mut stream, msg, off) => {
                    match futures::AsyncWrite::poll_write(Pin::new(&mut stream), cx, &msg[off..]) {
                        Poll::Ready(Ok(n)) if off + n >= msg.len() => {
                            farewell = Farewell::Finishing(stream)
                        }
                        Poll::Ready(Ok(n)) => farewell = Farewell::Writing(stream, msg, off + n),
                        Poll::Ready(Err(_)) => closing = Some("closed locally".into()),
                        Poll::Pending => {
                            farewell = Farewell::Writing(stream, msg, off);
                            break;
                        }
                    }
                }
                Farewell::Finishing(mut stream) => {
                    match futures::AsyncWrite::poll_close(Pin::new(&mut stream), cx) {
                        Poll::Ready(_) => closing = Some("closed locally".into()),
                        Poll::Pending => {
                            farewell = Farewell::Finishing(stream);
                            break;
                        }
                    }
                }
            }
        }
        if let Some(reason) = &closing {
            for tx in pending.drain(..) {
                let _ = tx.send(Err(TransportError::Closed(reason.clone())));
            }
            return match conn.poll_close(cx) {
                Poll::Ready(_) => Poll::Ready(reason.clone()),
                Poll::Pending => Poll::Pending,
            };
        }
        while !pending.is_empty() {
            match conn.poll_new_outbound(cx) {
                Poll::Ready(Ok(stream)) => {
                    if let Some(tx) = pending.pop_front() {
                        let _ = tx.send(Ok(stream));
                    }
                }
                Poll::Ready(Err(e)) => {
                    let reason = e.to_string();
                    for tx in pending.drain(..) {
                        let _ = tx.send(Err(TransportError::Closed(reason.clone())));
                    }
                    return Poll::Ready(reason);
                }
                Poll::Pending => break,
            }
        }
        loop {
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    // Bounded by the multiplexer's stream limit.
                    let _ = inbound.send(stream);
                }
                Poll::Ready(Some(Err(e))) => {
                    let reason = e.to_string();
                    for tx in pending.drain(..) {
                        let _ = tx.send(Err(TransportError::Closed(reason.clone())));
                    }
                    return Poll::Ready(reason);
                }
                Poll::Ready(None) => {
                    for tx in pending.drain(..) {
                        let _ = tx.send(Err(TransportError::Closed("closed by peer".into())));
                    }
                    return Poll::Ready("closed by peer".into());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

impl MuxHandle {
    pub(crate) async fn open(&self) -> Result<yamux::Stream, TransportError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Open(tx))
            .map_err(|_| TransportError::Closed("session ended".into()))?;
        rx.await
            .map_err(|_| TransportError::Closed("session ended".into()))?
    }

    pub(crate) fn close(&self, farewell: Option<Vec<u8>>) {
        let _ = self.commands.send(Command::Close(farewell));
    }

    pub(crate) async fn closed(&self) -> String {
        let mut rx = self.closed.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "session ended".into(),
        }
    }
}
