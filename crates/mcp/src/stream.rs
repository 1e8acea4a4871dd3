//! MCP over peer streams: serve the node's tools on an accepted stream, and a
//! client for calling a peer's tools over a stream this node opened.
//!
//! Streams are plain tokio `AsyncRead`/`AsyncWrite` halves, so this crate does
//! not depend on the transport crate: whoever accepted (or opened) the stream
//! authenticated the remote and passes its [`PeerId`](p2p_foundation_identity::PeerId)
//! in as [`Caller::Peer`].

use std::{sync::Arc, time::Duration};

use rmcp::{
    ClientHandler, RoleClient, ServiceError,
    model::{
        CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientConfig,
        ClientRequest, Implementation, ProgressNotificationParam, ProtocolVersion, RequestId,
        RequestMetaObject, ServerResult,
    },
    service::{Peer, PeerRequestOptions, RunningService},
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc};

use crate::{
    McpError,
    access::{CAPABILITY_META_KEY, Caller},
    framing::{LineTransport, StreamLimits},
    server::{JsonObject, McpServer, ProgressUpdate},
};

/// A boxed reader half.
pub type BoxRead = Box<dyn AsyncRead + Unpin + Send + 'static>;
/// A boxed writer half.
pub type BoxWrite = Box<dyn AsyncWrite + Unpin + Send + 'static>;

/// Serve `server` to `caller` over one stream until the peer closes it (or
/// stalls past the write timeout). Every request runs in its own task, so a
/// slow tool never blocks the connection; each connection is independent, so
/// a misbehaving peer never blocks another.
pub async fn serve_stream<R, W>(
    server: &McpServer,
    caller: Caller,
    reader: R,
    writer: W,
    limits: StreamLimits,
) -> Result<(), McpError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let transport = LineTransport::<rmcp::RoleServer, R, W>::new(reader, writer, limits);
    let running = rmcp::serve_server(server.session(caller), transport)
        .await
        .map_err(|e| McpError::Handshake(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| McpError::Connection(format!("session task failed: {e}")))?;
    Ok(())
}

/// Which lifecycle the client uses (the server side accepts both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Era {
    /// 2025-11-25: `initialize` handshake, session state on the connection.
    #[default]
    Initialize2025,
    /// 2026-07-28: `server/discover`, no handshake, per-request `_meta`.
    Stateless2026,
}

#[derive(Clone)]
struct ClientSide;

/// Client transport that taps progress notifications as they are read, so
/// they are delivered in stream order, strictly before the response that
/// follows them (rmcp dispatches notifications on spawned tasks, which would
/// let a final progress update race past its call's result).
struct ProgressTap<T> {
    inner: T,
    progress: broadcast::Sender<ProgressNotificationParam>,
}

impl<T> rmcp::transport::Transport<RoleClient> for ProgressTap<T>
where
    T: rmcp::transport::Transport<RoleClient>,
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await?;
        if let rmcp::model::JsonRpcMessage::Notification(n) = &message
            && let rmcp::model::ServerNotification::ProgressNotification(p) = &n.notification
        {
            let _ = self.progress.send(p.params.clone());
        }
        Some(message)
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}

impl ClientHandler for ClientSide {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            Default::default(),
            Implementation::new("p2p-foundation-mcp", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// Options of one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Capability token (hex, see [`crate::access::encode_token`]) to present.
    pub capability: Option<String>,
    /// Where to deliver the provider's progress notifications.
    pub progress: Option<mpsc::Sender<ProgressUpdate>>,
    /// Give up (and cancel the call at the provider) after this long.
    pub timeout: Option<Duration>,
}

/// An MCP client session over one stream.
pub struct McpClient {
    service: RunningService<RoleClient, ClientSide>,
    progress: broadcast::Sender<ProgressNotificationParam>,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("closed", &self.service.is_closed())
            .finish()
    }
}

fn map_service_error(e: ServiceError) -> McpError {
    match e {
        ServiceError::McpError(d) => McpError::Remote {
            code: d.code.0,
            message: d.message.into_owned(),
        },
        ServiceError::Timeout { timeout } => {
            McpError::Connection(format!("no answer within {timeout:?}"))
        }
        other => McpError::Connection(other.to_string()),
    }
}

/// Sends `notifications/cancelled` if the call is abandoned before its answer.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let peer = self.peer.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let p = CancelledNotificationParam::new(
                        Some(id),
                        Some("caller abandoned the call".into()),
                    );
                    let _ = peer.notify_cancelled(p).await;
                });
            }
        }
    }
}

impl McpClient {
    /// Open a client session over `reader`/`writer` (newline-delimited JSON-RPC).
    pub async fn connect<R, W>(
        reader: R,
        writer: W,
        limits: StreamLimits,
        era: Era,
    ) -> Result<Self, McpError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (progress, _) = broadcast::channel(256);
        let side = ClientSide;
        let transport = ProgressTap {
            inner: LineTransport::<RoleClient, R, W>::new(reader, writer, limits),
            progress: progress.clone(),
        };
        let lifecycle = match era {
            Era::Initialize2025 => rmcp::ClientLifecycleMode::Initialize,
            Era::Stateless2026 => rmcp::ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        };
        // Handshake on its own task: rmcp's client setup future is not provably
        // `Send` for every lifetime, which would make any future awaiting it
        // unusable in `Box<dyn Future + Send>` (rust-lang/rust#110338).
        let service = tokio::spawn(rmcp::serve_client_with_lifecycle(
            side, transport, lifecycle,
        ))
        .await
        .map_err(|e| McpError::Handshake(format!("handshake task failed: {e}")))?
        .map_err(|e| McpError::Handshake(e.to_string()))?;
        Ok(Self { service, progress })
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<String> {
        self.service
            .peer_info()
            .map(|i| i.protocol_version.to_string())
    }

    /// The underlying rmcp peer (resources, prompts and everything else).
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.service.is_closed()
    }

    /// All tools the server lists.
    pub async fn list_tools(&self) -> Result<Vec<rmcp::model::Tool>, McpError> {
        self.service
            .peer()
            .list_all_tools()
            .await
            .map_err(map_service_error)
    }

    /// Call `name` with `arguments`. A tool's own failure comes back as
    /// `Ok` with `is_error: Some(true)`; protocol errors (denied, unknown
    /// tool, invalid arguments) as [`McpError::Remote`].
    pub async fn call(
        &self,
        name: &str,
        arguments: JsonObject,
        options: CallOptions,
    ) -> Result<rmcp::model::CallToolResult, McpError> {
        let mut params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        let mut req_opts = PeerRequestOptions::no_options();
        if let Some(cap) = &options.capability {
            let mut meta = RequestMetaObject::new();
            meta.0
                .0
                .insert(CAPABILITY_META_KEY.into(), cap.clone().into());
            params.meta = Some(meta.clone());
            req_opts = req_opts.with_meta(meta);
        }
        let mut progress_rx = options.progress.as_ref().map(|_| self.progress.subscribe());
        let peer = self.service.peer().clone();
        let handle = peer
            .send_request_with_option(
                ClientRequest::CallToolRequest(CallToolRequest::new(params)),
                req_opts,
            )
            .await
            .map_err(map_service_error)?;
        let mut guard = CancelOnDrop {
            peer: peer.clone(),
            id: Some(handle.id.clone()),
        };
        let token = handle.progress_token.clone();
        let response = await_with_progress(
            handle.await_response(),
            progress_rx.as_mut(),
            options.progress.as_ref(),
            &token,
        );
        let result = match options.timeout {
            Some(t) => match tokio::time::timeout(t, response).await {
                Ok(r) => r,
                Err(_) => return Err(McpError::Connection(format!("no answer within {t:?}"))),
            },
            None => response.await,
        };
        guard.id = None;
        // Updates read before the response but not yet forwarded.
        if let (Some(rx), Some(tx)) = (progress_rx.as_mut(), options.progress.as_ref()) {
            while let Ok(p) = rx.try_recv() {
                if p.progress_token == token {
                    let _ = tx
                        .send(ProgressUpdate {
                            progress: p.progress,
                            total: p.total,
                            message: p.message,
                        })
                        .await;
                }
            }
        }
        match result.map_err(map_service_error)? {
            ServerResult::CallToolResult(mut r) => {
                // Absent means "complete" (a 2025-11-25 provider omits it); make it
                // explicit so the result can be relayed to a 2026-07-28 client.
                r.result_type
                    .get_or_insert(rmcp::model::ResultType::COMPLETE);
                Ok(r)
            }
            other => Err(McpError::Connection(format!(
                "unexpected response to tools/call: {other:?}"
            ))),
        }
    }

    /// Close the session.
    pub async fn close(mut self) {
        let _ = self.service.close().await;
    }
}

/// Await `response` while forwarding matching progress updates.
async fn await_with_progress<R>(
    response: impl Future<Output = R>,
    rx: Option<&mut broadcast::Receiver<ProgressNotificationParam>>,
    tx: Option<&mpsc::Sender<ProgressUpdate>>,
    token: &rmcp::model::ProgressToken,
) -> R {
    match (rx, tx) {
        (Some(rx), Some(tx)) => {
            tokio::select! {
                r = response => r,
                () = forward_progress(rx, tx, token) => unreachable_forward(),
            }
        }
        _ => response.await,
    }
}

/// Forward matching updates; never completes (pends once the source closes).
async fn forward_progress(
    rx: &mut broadcast::Receiver<ProgressNotificationParam>,
    tx: &mpsc::Sender<ProgressUpdate>,
    token: &rmcp::model::ProgressToken,
) {
    loop {
        match rx.recv().await {
            Ok(p) if p.progress_token == *token => {
                let _ = tx
                    .send(ProgressUpdate {
                        progress: p.progress,
                        total: p.total,
                        message: p.message,
                    })
                    .await;
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    std::future::pending::<()>().await
}

fn unreachable_forward<R>() -> R {
    unreachable!("forward_progress never completes")
}

/// An outgoing-stream opener: the facade implements it on the QUIC transport
/// (open a bidirectional stream to an authenticated peer); tests and
/// benchmarks use [`crate::tcp::TcpConnector`].
pub trait Connector: Send + Sync + 'static {
    /// Open a stream to `peer`.
    fn connect(
        &self,
        peer: p2p_foundation_identity::PeerId,
    ) -> crate::server::BoxFuture<std::io::Result<(BoxRead, BoxWrite)>>;
}

impl<T: Connector + ?Sized> Connector for Arc<T> {
    fn connect(
        &self,
        peer: p2p_foundation_identity::PeerId,
    ) -> crate::server::BoxFuture<std::io::Result<(BoxRead, BoxWrite)>> {
        (**self).connect(peer)
    }
}
