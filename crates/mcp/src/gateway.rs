//! The gateway: ordinary MCP clients (over Streamable HTTP on loopback, or
//! stdio) see the node's own tools plus the network's tools, namespaced by
//! provider, with calls routed over peer streams.
//!
//! Network tools appear twice:
//! - `<provider>.<tool>` (provider = the 10-character short form of its peer
//!   id): pinned to that provider;
//! - `any.<tool>`: routed to the best provider with failover.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use p2p_foundation_identity::PeerId;
use rmcp::{
    ErrorData,
    model::{CallToolResult, ClientJsonRpcMessage, ErrorCode, RequestId},
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::{
            RestoreOutcome, SessionId, SessionManager,
            session::{
                ServerSseMessage,
                local::{LocalSessionManager, LocalSessionManagerError, SessionTransport},
            },
        },
    },
};
use tokio_util::sync::CancellationToken;

use crate::{
    McpError,
    access::Caller,
    framing::{LineTransport, StreamLimits},
    router::{Query, RouteOptions, Router},
    server::{BoxFuture, ExtraTools, JsonObject, McpServer, Progress, Session, SseStreams},
};

/// Prefix of the routed (failover) form of a network tool.
pub const ANY_PREFIX: &str = "any.";

/// Network tools exposed through a gateway: the providers of the tools and
/// tags in `queries`, reached through `router`.
#[derive(Clone)]
pub struct NetworkTools {
    router: Arc<Router>,
    queries: Vec<Query>,
    names: Arc<RwLock<NameTable>>,
    tokens: Arc<HashMap<PeerId, String>>,
}

/// Exposed name -> (pinned provider, tool name).
type NameTable = HashMap<String, (Option<PeerId>, String)>;

impl std::fmt::Debug for NetworkTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkTools")
            .field("queries", &self.queries)
            .finish_non_exhaustive()
    }
}

impl NetworkTools {
    /// Expose the tools matching `queries` (by tool name or tag).
    pub fn new(router: Arc<Router>, queries: Vec<Query>) -> Self {
        Self {
            router,
            queries,
            names: Arc::new(RwLock::new(HashMap::new())),
            tokens: Arc::new(HashMap::new()),
        }
    }

    /// Present `token` (a capability token the provider's owner issued to this
    /// node, see [`crate::access::issue_token`]) on calls routed to `provider`.
    pub fn with_token(mut self, provider: PeerId, token: &crate::access::CapabilityToken) -> Self {
        Arc::make_mut(&mut self.tokens).insert(provider, crate::access::encode_token(token));
        self
    }

    async fn refresh(&self) -> Vec<rmcp::model::Tool> {
        let mut tools = Vec::new();
        let mut names = HashMap::new();
        for q in &self.queries {
            let candidates = match self.router.discovery().find(q).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "network tool discovery failed");
                    continue;
                }
            };
            for c in candidates {
                let input = c.tool.input_schema_value();
                let input = Arc::new(input.as_object().cloned().unwrap_or_default());
                let describe = |how: &str| {
                    format!(
                        "{} ({how})",
                        c.tool
                            .description
                            .clone()
                            .unwrap_or_else(|| c.tool.name.clone())
                    )
                };
                let any = format!("{ANY_PREFIX}{}", c.tool.name);
                if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(any.clone()) {
                    slot.insert((None, c.tool.name.clone()));
                    let mut def = rmcp::model::Tool::default();
                    def.name = any.into();
                    def.description =
                        Some(describe("routed to the best provider, with failover").into());
                    def.input_schema = input.clone();
                    tools.push(def);
                }
                let pinned = format!("{}.{}", c.provider.short(), c.tool.name);
                if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(pinned.clone())
                {
                    slot.insert((Some(c.provider), c.tool.name.clone()));
                    let mut def = rmcp::model::Tool::default();
                    def.name = pinned.into();
                    def.description = Some(describe(&format!("provider {}", c.provider)).into());
                    def.input_schema = input;
                    if let Some(out) = c
                        .tool
                        .output_schema
                        .as_deref()
                        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    {
                        def.output_schema = out.as_object().cloned().map(Arc::new);
                    }
                    tools.push(def);
                }
            }
        }
        *self.names.write().unwrap_or_else(|p| p.into_inner()) = names;
        tools
    }

    fn lookup(&self, name: &str) -> Option<(Option<PeerId>, String)> {
        self.names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

impl ExtraTools for NetworkTools {
    fn list(&self) -> BoxFuture<Vec<rmcp::model::Tool>> {
        let this = self.clone();
        Box::pin(async move { this.refresh().await })
    }

    fn call(
        &self,
        name: &str,
        arguments: JsonObject,
        progress: Progress,
        cancel: CancellationToken,
    ) -> Option<BoxFuture<Result<CallToolResult, ErrorData>>> {
        let namespaced = name.starts_with(ANY_PREFIX) || name.contains('.');
        if !namespaced {
            return None;
        }
        let this = self.clone();
        let name = name.to_owned();
        Some(Box::pin(async move {
            let target = match this.lookup(&name) {
                Some(t) => t,
                None => {
                    this.refresh().await;
                    this.lookup(&name).ok_or_else(|| {
                        ErrorData::invalid_params(format!("unknown tool '{name}'"), None)
                    })?
                }
            };
            let (only, tool) = target;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::server::ProgressUpdate>(64);
            let forward = async move {
                while let Some(u) = rx.recv().await {
                    progress.report(u.progress, u.total, u.message).await;
                }
            };
            let opts = RouteOptions {
                only,
                capabilities: this.tokens.clone(),
                progress: Some(tx),
                ..RouteOptions::default()
            };
            let call = this.router.call_owned(Query::tool(tool), arguments, opts);
            let routed = tokio::select! {
                r = async { let (r, ()) = tokio::join!(call, forward); r } => r,
                () = cancel.cancelled() => return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "request cancelled", None)),
            };
            match routed {
                Ok(r) => Ok(r.result),
                Err(McpError::Remote { code, message }) => {
                    Err(ErrorData::new(ErrorCode(code), message, None))
                }
                Err(e) => Err(ErrorData::internal_error(
                    format!("routing failed: {e}"),
                    None,
                )),
            }
        }))
    }
}

/// A gateway: the local server, optionally with network tools.
#[derive(Clone, Debug)]
pub struct Gateway {
    server: McpServer,
    network: Option<Arc<NetworkTools>>,
}

impl Gateway {
    /// A gateway serving only `server`'s own tools.
    pub fn new(server: McpServer) -> Self {
        Self {
            server,
            network: None,
        }
    }

    /// Also expose network tools.
    pub fn with_network(mut self, network: NetworkTools) -> Self {
        self.network = Some(Arc::new(network));
        self
    }

    /// The protocol handler for one local client.
    pub fn session(&self) -> Session {
        let s = self.server.session(Caller::Local);
        match &self.network {
            Some(n) => s.with_extra_tools(n.clone() as Arc<dyn ExtraTools>),
            None => s,
        }
    }

    /// Serve one client on stdin/stdout until it closes them.
    pub async fn serve_stdio(&self, limits: StreamLimits) -> Result<(), McpError> {
        let transport = LineTransport::<rmcp::RoleServer, _, _>::new(
            tokio::io::stdin(),
            tokio::io::stdout(),
            limits,
        );
        let running = rmcp::serve_server(self.session(), transport)
            .await
            .map_err(|e| McpError::Handshake(e.to_string()))?;
        running
            .waiting()
            .await
            .map_err(|e| McpError::Connection(format!("session task failed: {e}")))?;
        Ok(())
    }

    /// Serve Streamable HTTP at `config.bind` (clients use the path `/mcp`;
    /// the endpoint answers on any path).
    pub async fn serve_http(&self, config: HttpConfig) -> Result<HttpGateway, McpError> {
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let mut rmcp_config = StreamableHttpServerConfig::default()
            .with_allowed_origins(config.allowed_origins.clone())
            .enforce_origin_validation()
            .with_cancellation_token(shutdown.child_token());
        if !local_addr.ip().is_loopback() {
            rmcp_config = rmcp_config.disable_allowed_hosts();
        }
        let gateway = self.clone();
        let sessions = Arc::new(TrackedSessions::default());
        let streams = sessions.clone() as Arc<dyn SseStreams>;
        let service = StreamableHttpService::new(
            move || Ok(gateway.session().with_sse_streams(streams.clone())),
            sessions,
            rmcp_config,
        );
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = stop.cancelled() => break,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "gateway accept failed");
                        continue;
                    }
                };
                let service = service.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let svc = hyper_util::service::TowerToHyperService::new(service);
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
                    tokio::select! {
                        r = conn => if let Err(e) = r { tracing::debug!(%peer, error = %e, "gateway connection ended") },
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        Ok(HttpGateway {
            local_addr,
            shutdown,
            task,
        })
    }
}

/// rmcp's local session manager, also remembering which HTTP response stream
/// carries each in-flight request, so a tool can close its own SSE stream
/// (SEP-1699) through [`crate::server::StreamControl`].
#[derive(Default)]
struct TrackedSessions {
    inner: LocalSessionManager,
    /// Session -> MCP request id -> rmcp's HTTP request (stream) id.
    streams: Arc<std::sync::Mutex<HashMap<SessionId, HashMap<RequestId, u64>>>>,
    /// Closed streams whose tool waits for the client to reconnect.
    /// (session, request) -> (its closed stream, woken when the client resumes it).
    resumed: std::sync::Mutex<HashMap<(SessionId, RequestId), ClosedStream>>,
}

/// A stream a tool closed: rmcp's id for it, and who waits for its resumption.
type ClosedStream = (u64, Arc<tokio::sync::Notify>);

/// Forgets a request's stream when its original response stream ends.
struct Forget {
    streams: Arc<std::sync::Mutex<HashMap<SessionId, HashMap<RequestId, u64>>>>,
    session: SessionId,
    request: RequestId,
}

impl Drop for Forget {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = streams.get_mut(&self.session) {
            m.remove(&self.request);
        }
    }
}

impl TrackedSessions {
    fn stream_of(&self, session: &str, request: &RequestId) -> Option<u64> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session)
            .and_then(|m| m.get(request))
            .copied()
    }
}

impl SseStreams for TrackedSessions {
    fn close<'a>(
        &'a self,
        session: &'a str,
        request: &'a RequestId,
        retry: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let Some(id) = self.stream_of(session, request) else {
                return false;
            };
            let handle = self.inner.sessions.read().await.get(session).cloned();
            let Some(handle) = handle else {
                return false;
            };
            // Listen for the reconnection before the client can make it.
            self.resumed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    (session.into(), request.clone()),
                    (id, Arc::new(tokio::sync::Notify::new())),
                );
            handle.close_sse_stream(id, Some(retry)).await.is_ok()
        })
    }

    fn reconnected<'a>(
        &'a self,
        session: &'a str,
        request: &'a RequestId,
        limit: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let key: (SessionId, RequestId) = (session.into(), request.clone());
            let notify = self
                .resumed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .map(|(_, n)| n.clone());
            let Some(notify) = notify else {
                return false;
            };
            let came = tokio::time::timeout(limit, notify.notified()).await.is_ok();
            self.resumed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            came
        })
    }
}

impl SessionManager for TrackedSessions {
    type Error = LocalSessionManagerError;
    type Transport = SessionTransport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<rmcp::model::ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.resumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(s, _), _| s != id);
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl futures::Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error>
    {
        // As LocalSessionManager::create_stream, keeping the stream's id.
        let handle = self
            .inner
            .sessions
            .read()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| LocalSessionManagerError::SessionNotFound(id.clone()))?;
        let receiver = handle.establish_request_wise_channel().await?;
        let http_request_id = receiver.http_request_id;
        let forget = match (&message, http_request_id) {
            (rmcp::model::JsonRpcMessage::Request(r), Some(stream)) => {
                self.streams
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(id.clone())
                    .or_default()
                    .insert(r.id.clone(), stream);
                Some(Forget {
                    streams: self.streams.clone(),
                    session: id.clone(),
                    request: r.id.clone(),
                })
            }
            _ => None,
        };
        handle.push_message(message, http_request_id).await?;
        let mut rx = receiver.inner;
        Ok(futures::stream::poll_fn(move |cx| {
            let _keep = &forget;
            rx.poll_recv(cx)
        }))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl futures::Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error>
    {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl futures::Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error>
    {
        // rmcp's event ids are `<index>/<http request id>` on request streams.
        let stream = last_event_id
            .split_once('/')
            .and_then(|(_, s)| s.parse::<u64>().ok());
        let resumed = self.inner.resume(id, last_event_id).await?;
        if let Some(stream) = stream {
            let waiters: Vec<_> = self
                .resumed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|((s, _), (closed, _))| s == id && *closed == stream)
                .map(|(_, (_, n))| n.clone())
                .collect();
            for n in waiters {
                n.notify_one();
            }
        }
        Ok(resumed)
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.inner.restore_session(id).await
    }

    fn event_store(
        &self,
    ) -> Option<Arc<dyn rmcp::transport::streamable_http_server::session::EventStore>> {
        self.inner.event_store()
    }
}

/// Settings of the HTTP gateway.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where to listen; loopback by default.
    pub bind: SocketAddr,
    /// Browser origins allowed to call (`Origin` header validated; requests
    /// without `Origin`, i.e. non-browser clients, pass).
    pub allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            allowed_origins: vec![
                "http://localhost:*".into(),
                "http://127.0.0.1:*".into(),
                "http://[::1]:*".into(),
            ],
        }
    }
}

/// A running HTTP gateway; stops when dropped or [`HttpGateway::shutdown`].
#[derive(Debug)]
pub struct HttpGateway {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HttpGateway {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The MCP endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.local_addr)
    }

    /// Stop accepting and close connections.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for HttpGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}
