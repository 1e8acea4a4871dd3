//! The same transfer over any stack's streams (feature `tokio`): every suite that compares
//! throughput moves its bytes with these, so the stacks differ only in what carries them.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const MIB: f64 = 1024.0 * 1024.0;

/// Writes `total` bytes in 1 MiB writes, then ends the stream (`shutdown`).
///
/// # Panics
///
/// When a write or the shutdown fails: a benchmark's transfer must complete.
pub async fn send_bulk<W: AsyncWrite + Unpin>(w: &mut W, total: u64) {
    let chunk = vec![0x5au8; 1 << 20];
    let mut sent = 0u64;
    while sent < total {
        let n = chunk.len().min((total - sent) as usize);
        w.write_all(&chunk[..n]).await.expect("write");
        sent += n as u64;
    }
    w.shutdown().await.expect("finish");
}

/// Reads to the end of the stream in 256 KiB reads; returns the byte count.
///
/// # Panics
///
/// When a read fails.
pub async fn drain<R: AsyncRead + Unpin>(r: &mut R) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = r.read(&mut buf).await.expect("read");
        if n == 0 {
            return got;
        }
        got += n as u64;
    }
}

/// `bytes` moved in `t`, in MiB/s.
pub fn mib_per_s(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / MIB / t.as_secs_f64()
}

/// One timed transfer of `total` bytes, in MiB/s: from opening the sending end (`open`) to
/// the last byte read at the receiving end (`accept`). The sender writes on a task of its
/// own ([`send_bulk`]) while this task reads ([`drain`]); the sending end is dropped only
/// after the count is checked.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (w, r) = tokio::io::duplex(64 * 1024);
/// let rate = p2p_foundation_benchkit::io::timed_transfer(async { w }, async { r }, 4 << 20).await;
/// assert!(rate > 0.0);
/// # }
/// ```
///
/// # Panics
///
/// When the transfer fails or the receiver gets a different number of bytes.
pub async fn timed_transfer<W, R>(
    open: impl Future<Output = W>,
    accept: impl Future<Output = R>,
    total: u64,
) -> f64
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin,
{
    let start = Instant::now();
    let mut w = open.await;
    let writer = tokio::spawn(async move {
        send_bulk(&mut w, total).await;
        w
    });
    let mut r = accept.await;
    let got = drain(&mut r).await;
    let t = start.elapsed();
    assert_eq!(got, total, "bytes received");
    drop(writer.await.expect("writer"));
    mib_per_s(total, t)
}
