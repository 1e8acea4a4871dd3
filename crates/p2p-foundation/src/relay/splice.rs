//! Splicing two streams at a relay: bytes copied both ways, within a byte budget and a
//! lifetime, each chunk shown to the optional tap.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use p2p_foundation_transport::{RecvStream, SendStream};
use tokio::io::AsyncReadExt;

use super::config::ForwardTap;

/// Chunk size of one copy.
const CHUNK: usize = 16 * 1024;

/// How a circuit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SpliceEnd {
    /// Both sides finished their streams.
    Finished,
    /// A side reset its stream or its connection closed.
    Broken(String),
    /// The byte budget ran out.
    OutOfBytes,
    /// The circuit lived its whole lifetime.
    Expired,
}

struct Budget<'a> {
    left: AtomicU64,
    relayed: &'a AtomicU64,
    tap: Option<&'a ForwardTap>,
}

async fn pump(
    from: &mut RecvStream,
    to: &mut SendStream,
    budget: &Budget<'_>,
) -> Result<(), SpliceEnd> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from
            .read(&mut buf)
            .await
            .map_err(|e| SpliceEnd::Broken(e.to_string()))?;
        if n == 0 {
            // Finished: pass the end on (best effort: the other side may be gone).
            let _ = to.finish().await;
            return Ok(());
        }
        let take = n as u64;
        if budget
            .left
            .fetch_update(Relaxed, Relaxed, |left| left.checked_sub(take))
            .is_err()
        {
            return Err(SpliceEnd::OutOfBytes);
        }
        if let Some(tap) = budget.tap {
            tap(&buf[..n]);
        }
        to.write_all(&buf[..n])
            .await
            .map_err(|e| SpliceEnd::Broken(e.to_string()))?;
        budget.relayed.fetch_add(take, Relaxed);
    }
}

/// Copies `a` to `b` and `b` to `a` until both finish, either breaks, `bytes` run out or
/// `lifetime` passes; on anything but a clean finish both streams are reset. Forwarded
/// payload bytes are added to `relayed`.
pub(crate) async fn splice(
    a: (&mut SendStream, &mut RecvStream),
    b: (&mut SendStream, &mut RecvStream),
    bytes: u64,
    lifetime: Duration,
    tap: Option<&ForwardTap>,
    relayed: &AtomicU64,
) -> SpliceEnd {
    let (a_send, a_recv) = a;
    let (b_send, b_recv) = b;
    let budget = Budget {
        left: AtomicU64::new(bytes),
        relayed,
        tap,
    };
    let both = async {
        let a_to_b = pump(a_recv, b_send, &budget);
        let b_to_a = pump(b_recv, a_send, &budget);
        tokio::pin!(a_to_b, b_to_a);
        // The first failure ends the circuit at once; a clean finish waits for the other.
        let (mut a_done, mut b_done) = (false, false);
        while !(a_done && b_done) {
            tokio::select! {
                r = &mut a_to_b, if !a_done => { r?; a_done = true; }
                r = &mut b_to_a, if !b_done => { r?; b_done = true; }
            }
        }
        Ok::<(), SpliceEnd>(())
    };
    let end = match tokio::time::timeout(lifetime, both).await {
        Ok(Ok(())) => return SpliceEnd::Finished,
        Ok(Err(end)) => end,
        Err(_) => SpliceEnd::Expired,
    };
    a_send.reset();
    b_send.reset();
    a_recv.stop();
    b_recv.stop();
    end
}
