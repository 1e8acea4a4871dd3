//! Newline-delimited JSON-RPC framing over any byte stream.
//!
//! The MCP specification's guidance for custom transports is the stdio framing:
//! one JSON-RPC message per line, UTF-8, `\n`-terminated, no embedded newlines.
//! [`LineDecoder`] is the sans-IO line splitter (limit checked before a byte is
//! buffered), [`parse_line`] classifies a complete line, and [`LineTransport`]
//! drives both over a tokio reader/writer pair and plugs into rmcp's service
//! engine as a [`rmcp::transport::Transport`].
//!
//! Unlike rmcp's own `AsyncRwTransport`, which silently drops unparsable and
//! oversized lines, this transport answers them with the JSON-RPC error the
//! specification prescribes (`-32700` parse error, `-32600` invalid request),
//! so a misbehaving peer learns why, and it bounds how long a write may stall.

use std::{marker::PhantomData, time::Duration};

use rmcp::service::{RxJsonRpcMessage, ServiceRole, TxJsonRpcMessage};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

/// Default limit on one incoming message (one line), in bytes: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Default time a single outgoing message may take to be written before the
/// connection is considered stalled and closed.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// JSON-RPC 2.0 "Parse error": the line is not valid JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC 2.0 "Invalid Request": valid JSON that is not a valid request,
/// or a message over the size limit.
pub const INVALID_REQUEST: i32 = -32600;

/// One step of the line decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its `\n` (and without a trailing `\r`).
    Line(Vec<u8>),
    /// A line longer than the limit ended (or is being skipped); its bytes were
    /// never buffered. `seen` is how many bytes of it had arrived when it was
    /// rejected.
    Oversized {
        /// Bytes of the oversized line observed before rejection.
        seen: usize,
    },
}

/// Sans-IO splitter of a byte stream into bounded lines.
///
/// Feed it bytes with [`LineDecoder::feed`]; it consumes up to and including
/// the first newline and reports a [`Frame`] when one completes. A line longer
/// than `max_line` is rejected as soon as the limit is crossed (nothing beyond
/// the limit is ever buffered) and the rest of it is skipped up to its newline.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    max_line: usize,
    discarding: bool,
}

impl LineDecoder {
    /// A decoder accepting lines of at most `max_line` bytes (excluding the newline).
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_line,
            discarding: false,
        }
    }

    /// The configured limit.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes of an incomplete line currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Consume bytes from `input`: returns how many were consumed and the
    /// frame completed by them, if any. Call again with the unconsumed rest.
    /// Consumes at least one byte whenever `input` is not empty.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        let newline = input.iter().position(|b| *b == b'\n');
        let take = newline.map_or(input.len(), |i| i + 1);
        let content = newline.map_or(input.len(), |i| i);
        if self.discarding {
            if newline.is_some() {
                self.discarding = false;
            }
            return (take, None);
        }
        if self.buf.len().saturating_add(content) > self.max_line {
            let seen = self.buf.len().saturating_add(content);
            self.buf = Vec::new();
            self.discarding = newline.is_none();
            return (take, Some(Frame::Oversized { seen }));
        }
        self.buf.extend_from_slice(&input[..content]);
        if newline.is_none() {
            return (take, None);
        }
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        (take, Some(Frame::Line(line)))
    }
}

/// Why a complete line is not a message the engine can take.
#[derive(Debug, Clone, PartialEq)]
pub enum LineError {
    /// Not valid JSON (`-32700`).
    Parse(String),
    /// Valid JSON but not a valid JSON-RPC message (`-32600`); `id` is the
    /// request id if one could be recovered.
    InvalidRequest {
        /// Request id to answer, if the message carried one.
        id: Option<Value>,
        /// What is wrong with it.
        reason: String,
    },
}

impl LineError {
    /// The JSON-RPC error response line (with its `\n`) answering this error.
    pub fn response_line(&self) -> Vec<u8> {
        let (id, code, message) = match self {
            LineError::Parse(reason) => {
                (Value::Null, PARSE_ERROR, format!("Parse error: {reason}"))
            }
            LineError::InvalidRequest { id, reason } => (
                id.clone().unwrap_or(Value::Null),
                INVALID_REQUEST,
                format!("Invalid Request: {reason}"),
            ),
        };
        error_line(id, code, &message)
    }
}

/// A JSON-RPC error response as one line (with its `\n`).
pub fn error_line(id: Value, code: i32, message: &str) -> Vec<u8> {
    let v = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message },
    });
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// Classify one complete line for role `R`: `Ok(Some(message))`,
/// `Ok(None)` for a line to ignore silently (blank, or a notification the
/// engine does not model: JSON-RPC forbids answering notifications), or the
/// error to answer.
pub fn parse_line<R: ServiceRole>(line: &[u8]) -> Result<Option<RxJsonRpcMessage<R>>, LineError> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let line = line.strip_prefix(BOM).unwrap_or(line);
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    match serde_json::from_slice::<RxJsonRpcMessage<R>>(line) {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.is_syntax() || e.is_eof() => Err(LineError::Parse(e.to_string())),
        Err(e) => {
            // Well-formed JSON of the wrong shape: recover the id if there is one.
            let value: Value =
                serde_json::from_slice(line).map_err(|e| LineError::Parse(e.to_string()))?;
            let id = value
                .get("id")
                .filter(|id| id.is_string() || id.is_number())
                .cloned();
            let is_notification =
                value.get("method").is_some_and(Value::is_string) && value.get("id").is_none();
            if is_notification {
                tracing::debug!(error = %e, "ignoring unrecognised notification");
                return Ok(None);
            }
            Err(LineError::InvalidRequest {
                id,
                reason: e.to_string(),
            })
        }
    }
}

/// Limits of one [`LineTransport`].
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Largest incoming message (one line) in bytes, checked before buffering.
    pub max_message_bytes: usize,
    /// Longest a single outgoing message may take to write before the peer is
    /// considered stalled and the connection closed.
    pub write_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// Outgoing messages queued per connection before senders wait (backpressure).
const WRITE_QUEUE: usize = 1024;
/// Most bytes coalesced into one write.
const MAX_BATCH: usize = 256 * 1024;

/// rmcp transport speaking newline-delimited JSON-RPC over a reader/writer pair.
///
/// Outgoing messages go through a bounded queue to a writer task that
/// coalesces whatever is queued into one write (one syscall for many
/// concurrent responses). A batch that cannot be written within the write
/// timeout marks the peer as stalled: writing and reading stop and the
/// session ends. Must be created inside a Tokio runtime.
pub struct LineTransport<R: ServiceRole, Rd, Wr> {
    read: BufReader<Rd>,
    decoder: LineDecoder,
    tx: Option<mpsc::Sender<Vec<u8>>>,
    /// Cancelled when the peer stalls or the writer fails: stops reading too.
    stalled: CancellationToken,
    writer: Option<tokio::task::JoinHandle<()>>,
    _role: PhantomData<fn() -> (R, Wr)>,
}

impl<R: ServiceRole, Rd, Wr> std::fmt::Debug for LineTransport<R, Rd, Wr> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineTransport")
            .field("max_message_bytes", &self.decoder.max_line())
            .field("stalled", &self.stalled.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl<R, Rd, Wr> LineTransport<R, Rd, Wr>
where
    R: ServiceRole,
    Rd: AsyncRead + Unpin + Send + 'static,
    Wr: AsyncWrite + Unpin + Send + 'static,
{
    /// Frame `reader`/`writer` with `limits`.
    pub fn new(reader: Rd, writer: Wr, limits: StreamLimits) -> Self {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let stalled = CancellationToken::new();
        let task = tokio::spawn(write_loop(
            writer,
            rx,
            limits.write_timeout,
            stalled.clone(),
        ));
        Self {
            read: BufReader::with_capacity(64 * 1024, reader),
            decoder: LineDecoder::new(limits.max_message_bytes),
            tx: Some(tx),
            stalled,
            writer: Some(task),
            _role: PhantomData,
        }
    }
}

async fn write_loop<Wr: AsyncWrite + Unpin>(
    mut w: Wr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    timeout: Duration,
    stalled: CancellationToken,
) {
    let mut batch = Vec::with_capacity(16 * 1024);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        let io = async {
            w.write_all(&batch).await?;
            w.flush().await
        };
        match tokio::time::timeout(timeout, io).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "stream write failed");
                stalled.cancel();
                return;
            }
            Err(_) => {
                // A peer that does not read: stop writing and reading, so the
                // connection ends and its resources are released.
                tracing::warn!("closing connection: peer stopped reading");
                stalled.cancel();
                return;
            }
        }
    }
    let _ = w.shutdown().await;
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "transport closed")
}

impl<R, Rd, Wr> rmcp::transport::Transport<R> for LineTransport<R, Rd, Wr>
where
    R: ServiceRole,
    Rd: AsyncRead + Unpin + Send + 'static,
    Wr: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<R>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let tx = self.tx.clone();
        async move {
            let tx = tx.ok_or_else(closed)?;
            let mut bytes = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            tx.send(bytes).await.map_err(|_| closed())
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<R>> {
        loop {
            // Cancellation safety: `fill_buf` consumes nothing if dropped, and the
            // decoder step plus `consume` run with no await in between.
            let (consumed, frame) = {
                let filled = tokio::select! {
                    biased;
                    () = self.stalled.cancelled() => return None,
                    r = self.read.fill_buf() => r,
                };
                let available = match filled {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "stream read failed");
                        return None;
                    }
                };
                if available.is_empty() {
                    return None;
                }
                self.decoder.feed(available)
            };
            self.read.consume(consumed);
            let reply = match frame {
                None => continue,
                Some(Frame::Oversized { seen }) => {
                    tracing::warn!(
                        seen,
                        limit = self.decoder.max_line(),
                        "rejecting oversized message"
                    );
                    error_line(
                        Value::Null,
                        INVALID_REQUEST,
                        &format!(
                            "Invalid Request: message exceeds the limit of {} bytes",
                            self.decoder.max_line()
                        ),
                    )
                }
                Some(Frame::Line(line)) => match parse_line::<R>(&line) {
                    Ok(Some(message)) => return Some(message),
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::debug!(error = ?e, "rejecting malformed message");
                        e.response_line()
                    }
                },
            };
            let tx = self.tx.clone()?;
            if tx.send(reply).await.is_err() {
                return None;
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Dropping the sender lets the writer flush what is queued and shut down.
        self.tx = None;
        if let Some(task) = self.writer.take() {
            let _ = task.await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_all(d: &mut LineDecoder, mut input: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (n, f) = d.feed(input);
            assert!(n > 0);
            input = &input[n..];
            out.extend(f);
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_cr() {
        let mut d = LineDecoder::new(16);
        let frames = feed_all(&mut d, b"ab\r\ncd\nef");
        assert_eq!(
            frames,
            vec![Frame::Line(b"ab".to_vec()), Frame::Line(b"cd".to_vec())]
        );
        assert_eq!(d.buffered(), 2);
        assert_eq!(feed_all(&mut d, b"\n"), vec![Frame::Line(b"ef".to_vec())]);
    }

    #[test]
    fn rejects_oversized_before_buffering_and_resyncs() {
        let mut d = LineDecoder::new(4);
        let frames = feed_all(&mut d, b"0123");
        assert!(frames.is_empty());
        let frames = feed_all(&mut d, b"45678");
        assert_eq!(frames, vec![Frame::Oversized { seen: 9 }]);
        assert_eq!(d.buffered(), 0);
        // Tail of the oversized line is skipped, the next line is intact.
        let frames = feed_all(&mut d, b"99999999\nok\n");
        assert_eq!(frames, vec![Frame::Line(b"ok".to_vec())]);
    }

    #[test]
    fn parse_errors_have_spec_codes() {
        use rmcp::RoleServer;
        let e = parse_line::<RoleServer>(b"{not json").unwrap_err();
        assert!(matches!(e, LineError::Parse(_)));
        assert!(String::from_utf8_lossy(&e.response_line()).contains("-32700"));
        let e = parse_line::<RoleServer>(br#"{"jsonrpc":"2.0","id":7,"params":{}}"#).unwrap_err();
        match &e {
            LineError::InvalidRequest { id, .. } => assert_eq!(id, &Some(Value::from(7))),
            other => panic!("unexpected {other:?}"),
        }
        assert!(String::from_utf8_lossy(&e.response_line()).contains("-32600"));
        assert!(parse_line::<RoleServer>(b"   ").unwrap().is_none());
        let ok =
            parse_line::<RoleServer>(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(ok.is_some());
    }

    proptest! {
        #[test]
        fn decoder_never_panics_and_respects_limit(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16), limit in 0usize..32) {
            let mut d = LineDecoder::new(limit);
            for c in &chunks {
                for f in feed_all(&mut d, c) {
                    if let Frame::Line(l) = f { prop_assert!(l.len() <= limit); }
                }
                prop_assert!(d.buffered() <= limit);
            }
        }

        #[test]
        fn parse_line_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_line::<rmcp::RoleServer>(&bytes);
            let _ = parse_line::<rmcp::RoleClient>(&bytes);
        }
    }
}
