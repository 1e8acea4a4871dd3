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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::error::TransportError;
use crate::metrics::Metrics;

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
    /// One permit per stream we may have open (`max_streams`); closed with the session.
    outbound: Arc<Semaphore>,
}

/// A multiplexed stream holding one of the connection's stream slots (of its direction:
/// opened by us or by the peer). The slot is freed when the stream is closed both ways (we
/// read its end and finished our side) or when both halves are dropped, whichever is
/// first. Freeing it when our FIN is queued, before the peer can see it, means a peer that
/// opens a new stream after seeing our FIN always finds our slot free.
pub(crate) struct MuxStream {
    inner: yamux::Stream,
    slot: Option<OwnedSemaphorePermit>,
    read_end: bool,
    write_end: bool,
}

impl MuxStream {
    fn new(inner: yamux::Stream, slot: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            slot: Some(slot),
            read_end: false,
            write_end: false,
        }
    }

    fn release_if_done(&mut self) {
        if self.read_end && self.write_end {
            self.slot = None;
        }
    }
}

impl futures::AsyncRead for MuxStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(0))) && !buf.is_empty() {
            this.read_end = true;
            this.release_if_done();
        }
        r
    }
}

impl futures::AsyncWrite for MuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_close(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.write_end = true;
            this.release_if_done();
        }
        r
    }
}

/// How long a closing session keeps reading (and discarding) after its shutdown, waiting
/// for the peer to close too.
const LINGER: Duration = Duration::from_secs(2);

/// Wraps the byte stream to note the time of the last byte in either direction, and to
/// linger on shutdown.
///
/// Lingering: closing a TCP socket with unread bytes in its receive buffer makes the kernel
/// send RST instead of FIN, and an RST makes the peer's kernel discard everything the peer
/// has not read yet, such as our last frames (the close stream with its reason). So after
/// our TLS close_notify and FIN, shutdown keeps reading until the peer closes (EOF or
/// error), for at most [`LINGER`].
pub(crate) struct ActivityIo<T> {
    inner: T,
    epoch: Instant,
    last_ms: Arc<AtomicU64>,
    shut_down: bool,
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
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

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
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
        let this = self.get_mut();
        if !this.shut_down {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.shut_down = true;
        }
        let linger = this
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        let mut scratch = [0u8; 4096];
        // Bounded: at most 64 reads per poll, then yield (woken at once).
        for _ in 0..64 {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match linger.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        if linger.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Writes up to this size are held and joined to the next write (a yamux frame header).
const SMALL_WRITE: usize = 64;

/// Joins small writes to the next one without copying the large one.
///
/// yamux writes each frame's 12-byte header and its body in two writes and flushes after
/// every frame. Written separately, the header would become a TLS record of its own; a
/// `BufWriter` joins them but copies every body once more. Instead the header is held here
/// and handed to TLS together with the body in one vectored write, which rustls seals into
/// full-size records straight from both slices.
pub(crate) struct JoinSmallWrites<T> {
    inner: T,
    held: Vec<u8>,
}

impl<T> JoinSmallWrites<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            held: Vec::with_capacity(SMALL_WRITE),
        }
    }
}

impl<T: AsyncWrite + Unpin> JoinSmallWrites<T> {
    /// Writes out the held bytes.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n.min(self.held.len()));
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JoinSmallWrites<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JoinSmallWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() + buf.len() <= SMALL_WRITE {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        // Bounded: each round either writes some held bytes or returns.
        while !this.held.is_empty() {
            let slices = [io::IoSlice::new(&this.held), io::IoSlice::new(buf)];
            let n = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n >= this.held.len() {
                let of_buf = n - this.held.len();
                this.held.clear();
                if of_buf > 0 {
                    return Poll::Ready(Ok(of_buf));
                }
                break;
            }
            this.held.drain(..n);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_release(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Multiplexer settings derived from the endpoint configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MuxSettings {
    pub(crate) max_streams: usize,
    pub(crate) max_frame: usize,
    /// Close after this long without a byte; `None` when keep-alives are on.
    pub(crate) idle_timeout: Option<Duration>,
}

/// yamux has no stream credit: each side only caps its own live stream handles (both
/// directions together) and kills the session when a new inbound stream would exceed that
/// cap. We enforce `max_streams` per direction ourselves (outbound: opening waits for a
/// slot; inbound: excess streams are reset one by one) and give yamux room for both
/// directions plus this slack, so a peer with the same limit never trips yamux's cap.
const YAMUX_SLACK: usize = 16;

/// Starts a session driver over `io`; inbound streams arrive on the returned receiver.
pub(crate) fn spawn<T>(
    io: T,
    client: bool,
    settings: MuxSettings,
    metrics: Arc<Metrics>,
) -> (MuxHandle, mpsc::UnboundedReceiver<MuxStream>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let last_ms = Arc::new(AtomicU64::new(0));
    let io = ActivityIo {
        inner: JoinSmallWrites::new(io),
        epoch: Instant::now(),
        last_ms: last_ms.clone(),
        shut_down: false,
        linger: None,
    };
    let mut cfg = yamux::Config::default();
    let per_direction = settings.max_streams.max(1);
    let streams = per_direction.saturating_mul(2).saturating_add(YAMUX_SLACK);
    // Per-stream windows start at 256 KiB; the total is bounded to that times the stream count.
    cfg.set_max_connection_receive_window(None);
    cfg.set_max_num_streams(streams);
    // No budget beyond 256 KiB per stream, so yamux never auto-tunes a stream's window up:
    // measured, larger windows only buffer more (more memory, colder caches) and lowered
    // bulk throughput on this path.
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
    let outbound = Arc::new(Semaphore::new(per_direction));
    let inbound_slots = Arc::new(Semaphore::new(per_direction));
    tokio::spawn({
        let outbound = outbound.clone();
        async move {
            let inbound = Inbound {
                tx: in_tx,
                slots: inbound_slots,
                metrics,
            };
            let reason = drive(conn, cmd_rx, inbound, settings.idle_timeout, last_ms).await;
            tracing::debug!(%reason, "multiplexed session ended");
            // Openers waiting for a slot learn that the session is gone.
            outbound.close();
            let _ = closed_tx.send(Some(reason));
        }
    });
    (
        MuxHandle {
            commands: cmd_tx,
            closed: closed_rx,
            outbound,
        },
        in_rx,
    )
}

/// Where the driver hands inbound streams, each with one of `slots`.
struct Inbound {
    tx: mpsc::UnboundedSender<MuxStream>,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

async fn drive<T>(
    mut conn: yamux::Connection<T>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    inbound: Inbound,
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
                Poll::Ready(Some(Ok(stream))) => match inbound.slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let _ = inbound.tx.send(MuxStream::new(stream, slot));
                    }
                    Err(_) => {
                        // Over the limit: dropping the stream resets it (yamux RST).
                        inbound.metrics.refused_limit.fetch_add(1, Relaxed);
                        tracing::debug!("refusing inbound stream: stream limit");
                        drop(stream);
                    }
                },
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
    /// Opens a stream, first waiting for one of the connection's `max_streams` outbound
    /// slots (freed when an earlier stream's halves are both dropped).
    pub(crate) async fn open(&self) -> Result<MuxStream, TransportError> {
        let slot = self
            .outbound
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| TransportError::Closed("session ended".into()))?;
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Open(tx))
            .map_err(|_| TransportError::Closed("session ended".into()))?;
        let inner = rx
            .await
            .map_err(|_| TransportError::Closed("session ended".into()))??;
        Ok(MuxStream::new(inner, slot))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Accepts at most `max` bytes per write, vectored or not, and returns Pending every
    /// other call (waking itself), like a socket that is often full.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            if self.calls % 2 == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            if self.calls % 2 == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn joined_writes_arrive_in_order_through_partial_writes() {
        for max in [1, 5, 12, 13, 100, 1 << 20] {
            let mut w = JoinSmallWrites::new(Trickle {
                out: Vec::new(),
                max,
                calls: 0,
            });
            let mut expect = Vec::new();
            for i in 0..50u32 {
                // A 12-byte "header", then a body of varying size (sometimes none).
                let header = [i as u8; 12];
                let body: Vec<u8> = (0..(i * 37) % 300).map(|j| (i + j) as u8).collect();
                w.write_all(&header).await.unwrap();
                expect.extend_from_slice(&header);
                if i % 7 != 0 {
                    w.write_all(&body).await.unwrap();
                    expect.extend_from_slice(&body);
                }
                if i % 5 == 0 {
                    w.flush().await.unwrap();
                }
            }
            w.shutdown().await.unwrap();
            assert_eq!(w.inner.out, expect, "max {max}");
            assert!(w.held.is_empty());
        }
    }
}
