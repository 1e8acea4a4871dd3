//! Stream halves with one API over QUIC and the TCP multiplexer.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use crate::error::{Result, TransportError};
use crate::metrics::Metrics;
use crate::session::MuxStream;

type MuxIo = Compat<MuxStream>;

/// A multiplexed stream shared by its two halves; `None` once reset.
type MuxCell = Arc<Mutex<Option<MuxIo>>>;

/// The reading half of a multiplexed stream.
pub(crate) struct MuxRead(MuxCell);

/// The writing half of a multiplexed stream; it can reset the whole stream at once.
pub(crate) struct MuxWrite(MuxCell);

/// Splits a multiplexed stream into halves that share it. Unlike `tokio::io::split`, the
/// writing half can drop the stream while the reading half is alive: that is how a yamux
/// stream is reset (yamux sends RST when the last handle of an open stream goes).
pub(crate) fn mux_split(stream: MuxStream) -> (MuxRead, MuxWrite) {
    let cell = Arc::new(Mutex::new(Some(stream.compat())));
    (MuxRead(cell.clone()), MuxWrite(cell))
}

fn lock(cell: &MuxCell) -> MutexGuard<'_, Option<MuxIo>> {
    // A poll that panicked left the stream as consistent as yamux keeps it.
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}

fn reset_locally() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "stream was reset")
}

impl MuxWrite {
    /// Drops the stream now: yamux resets it (RST) if it is still open both ways, or ends
    /// it (FIN) if the peer has already finished; both halves fail from then on.
    fn reset(&self) {
        let stream = lock(&self.0).take();
        drop(stream);
    }
}

impl AsyncRead for MuxRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match lock(&self.0).as_mut() {
            Some(s) => Pin::new(s).poll_read(cx, buf),
            None => Poll::Ready(Err(reset_locally())),
        }
    }
}

impl AsyncWrite for MuxWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match lock(&self.0).as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(reset_locally())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.0).as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// After a reset there is nothing left to end: finishing is harmless, as on QUIC.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.0).as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

pub(crate) enum SendInner {
    Quic(quinn::SendStream),
    Mux(MuxWrite),
}

pub(crate) enum RecvInner {
    Quic(quinn::RecvStream),
    Mux(MuxRead),
}

/// The sending half of a stream. Implements [`tokio::io::AsyncWrite`]; call
/// [`SendStream::finish`] (or `shutdown`) to end it cleanly.
pub struct SendStream {
    pub(crate) inner: SendInner,
    pub(crate) metrics: Arc<Metrics>,
}

/// The receiving half of a stream. Implements [`tokio::io::AsyncRead`].
pub struct RecvStream {
    pub(crate) inner: RecvInner,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) replayable: bool,
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            SendInner::Quic(_) => "SendStream(quic)",
            SendInner::Mux(_) => "SendStream(mux)",
        })
    }
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            RecvInner::Quic(_) => "RecvStream(quic)",
            RecvInner::Mux(_) => "RecvStream(mux)",
        })
    }
}

/// Stream error code sent when a stream is refused or cancelled (see the protocol doc).
pub const STREAM_CANCELLED: u32 = 0x03;

impl SendStream {
    /// Writes all of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        AsyncWriteExt::write_all(self, buf).await?;
        Ok(())
    }

    /// Ends the stream: the reader sees end-of-stream after the data already written.
    pub async fn finish(&mut self) -> Result<()> {
        match &mut self.inner {
            SendInner::Quic(s) => {
                // Finishing twice is harmless.
                let _ = s.finish();
                Ok(())
            }
            SendInner::Mux(s) => Ok(s.shutdown().await?),
        }
    }

    /// Abandons the stream at once, even while this handle is kept: data not yet delivered
    /// may be lost, and the peer's reads end promptly. On QUIC only this direction is reset
    /// (`RESET_STREAM` with [`STREAM_CANCELLED`]). On TCP the whole stream is, as a yamux
    /// reset has no direction: the peer's reads end (yamux shows a reset as the end of the
    /// stream) and its writes fail, and so do reads of this stream's [`RecvStream`].
    pub fn reset(&mut self) {
        match &mut self.inner {
            SendInner::Quic(s) => {
                let _ = s.reset(quinn::VarInt::from_u32(STREAM_CANCELLED));
            }
            SendInner::Mux(s) => s.reset(),
        }
    }

    /// Waits until the peer has received everything (QUIC) or the data is handed to the
    /// connection (TCP), so the connection can be closed without losing it.
    pub async fn stopped(&mut self) -> Result<()> {
        match &mut self.inner {
            SendInner::Quic(s) => {
                let _ = s.stopped().await;
                Ok(())
            }
            SendInner::Mux(s) => Ok(s.flush().await?),
        }
    }
}

impl RecvStream {
    /// Reads to end-of-stream; fails with [`TransportError::TooLong`] past `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > limit {
                return Err(TransportError::TooLong { limit });
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Tells the peer to stop sending (QUIC); on TCP the stream is simply dropped.
    pub fn stop(&mut self) {
        if let RecvInner::Quic(r) = &mut self.inner {
            let _ = r.stop(quinn::VarInt::from_u32(STREAM_CANCELLED));
        }
    }

    /// Whether this stream's data arrived (or was flagged as sent) in QUIC 0-RTT, so an
    /// attacker may have replayed it: only replay-safe protocols ever see `true`.
    pub fn is_replayable(&self) -> bool {
        self.replayable
            || match &self.inner {
                RecvInner::Quic(r) => r.is_0rtt(),
                RecvInner::Mux(_) => false,
            }
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.inner {
            SendInner::Quic(s) => AsyncWrite::poll_write(Pin::new(s), cx, buf),
            SendInner::Mux(s) => Pin::new(s).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = &r {
            this.metrics.bytes_out.fetch_add(*n as u64, Relaxed);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            SendInner::Quic(s) => Pin::new(s).poll_flush(cx),
            SendInner::Mux(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            SendInner::Quic(s) => Pin::new(s).poll_shutdown(cx),
            SendInner::Mux(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = match &mut this.inner {
            RecvInner::Quic(s) => AsyncRead::poll_read(Pin::new(s), cx, buf),
            RecvInner::Mux(s) => Pin::new(s).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = &r {
            let n = buf.filled().len() - before;
            this.metrics.bytes_in.fetch_add(n as u64, Relaxed);
        }
        r
    }
}
