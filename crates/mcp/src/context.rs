//! What a tool can send back to the client that called it, beyond progress:
//! log messages (`notifications/message`) and, on 2025-11-25 sessions,
//! server-to-client requests (`sampling/createMessage`, `elicitation/create`).
//!
//! Both travel over the connection the call arrived on, so they work for the
//! node's own tools served to a gateway client or over a peer stream. Tools
//! reached through the router (network tools) do not relay them yet: the
//! provider's logs and requests stop at the router's client (see
//! `docs/protocols/mcp.md`).
#![allow(deprecated)] // rmcp marks logging, sampling and roots deprecated (SEP-2577).

use rmcp::{
    ErrorData, RoleServer,
    model::{
        ClientCapabilities, ClientResult, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequest, ElicitRequestParams, ElicitResult, ErrorCode, LoggingLevel,
        LoggingMessageNotificationParam, ServerRequest,
    },
    service::{Peer, ServiceError},
};
use serde_json::Value;

/// The severity order of MCP log levels (RFC 5424, `debug` lowest).
pub fn level_rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// One log message, as delivered to an in-process listener.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMessage {
    /// Severity.
    pub level: LoggingLevel,
    /// Logger name, if the tool gave one.
    pub logger: Option<String>,
    /// The payload (a string or any JSON value).
    pub data: Value,
}

/// Sends log messages of one call to its caller, honouring the level the
/// caller asked for: `logging/setLevel` on a 2025-11-25 session, or the
/// request's `_meta["io.modelcontextprotocol/logLevel"]` (2026-07-28, and
/// also honoured on older sessions). A caller that asked for no level gets
/// no messages.
#[derive(Clone, Default)]
pub struct Logger {
    peer: Option<Peer<RoleServer>>,
    min: Option<LoggingLevel>,
    forward: Option<tokio::sync::mpsc::Sender<LogMessage>>,
    name: Option<String>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("level", &self.min)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Logger {
    /// A logger that sends nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// A logger feeding a channel with messages at `min` and above (for
    /// in-process callers and tests).
    pub fn channel(tx: tokio::sync::mpsc::Sender<LogMessage>, min: LoggingLevel) -> Self {
        Self {
            peer: None,
            min: Some(min),
            forward: Some(tx),
            name: None,
        }
    }

    pub(crate) fn to_peer(peer: Peer<RoleServer>, min: Option<LoggingLevel>) -> Self {
        Self {
            peer: Some(peer),
            min,
            forward: None,
            name: None,
        }
    }

    /// The same logger, naming its messages `name` (the `logger` field).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The lowest level the caller wants, or `None` when it wants no logs.
    pub fn level(&self) -> Option<LoggingLevel> {
        self.min
    }

    /// Whether a message at `level` would be sent.
    pub fn enabled(&self, level: LoggingLevel) -> bool {
        (self.peer.is_some() || self.forward.is_some())
            && self.min.is_some_and(|m| level_rank(level) >= level_rank(m))
    }

    /// Send `data` at `level` (best effort: dropped when below the caller's
    /// level or when the caller is gone).
    pub async fn log(&self, level: LoggingLevel, data: impl Into<Value>) {
        if !self.enabled(level) {
            return;
        }
        let data = data.into();
        if let Some(peer) = &self.peer {
            let mut p = LoggingMessageNotificationParam::new(level, data.clone());
            p.logger = self.name.clone();
            if let Err(e) = peer.notify_logging_message(p).await {
                tracing::debug!(error = %e, "log notification not delivered");
            }
        }
        if let Some(tx) = &self.forward {
            let _ = tx
                .send(LogMessage {
                    level,
                    logger: self.name.clone(),
                    data,
                })
                .await;
        }
    }

    /// Log at `debug`.
    pub async fn debug(&self, data: impl Into<Value>) {
        self.log(LoggingLevel::Debug, data).await;
    }

    /// Log at `info`.
    pub async fn info(&self, data: impl Into<Value>) {
        self.log(LoggingLevel::Info, data).await;
    }

    /// Log at `notice`.
    pub async fn notice(&self, data: impl Into<Value>) {
        self.log(LoggingLevel::Notice, data).await;
    }

    /// Log at `warning`.
    pub async fn warning(&self, data: impl Into<Value>) {
        self.log(LoggingLevel::Warning, data).await;
    }

    /// Log at `error`.
    pub async fn error(&self, data: impl Into<Value>) {
        self.log(LoggingLevel::Error, data).await;
    }
}

/// Requests a tool sends back to the client that called it: LLM sampling
/// (`sampling/createMessage`) and user input (`elicitation/create`).
///
/// Only a client that declared the matching capability is asked; otherwise
/// the call fails with `-32021` (missing required client capability), which a
/// handler can return as it is. The 2026-07-28 revision forbids
/// server-to-client requests: there the call fails with `-32600`, and a tool
/// that needs input returns [`crate::InputNeeded`] instead (see
/// [`crate::mrtr`]), which works in both eras.
#[derive(Clone, Default)]
pub struct ClientLink {
    peer: Option<Peer<RoleServer>>,
    capabilities: Option<ClientCapabilities>,
    stateless: bool,
}

impl std::fmt::Debug for ClientLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLink")
            .field("connected", &self.peer.is_some())
            .field("capabilities", &self.capabilities)
            .field("stateless", &self.stateless)
            .finish()
    }
}

fn service_error(what: &str, e: ServiceError) -> ErrorData {
    match e {
        ServiceError::McpError(d) => d,
        other => ErrorData::internal_error(format!("{what} failed: {other}"), None),
    }
}

impl ClientLink {
    /// No client to call back (in-process calls).
    pub fn none() -> Self {
        Self::default()
    }

    pub(crate) fn to_peer(
        peer: Peer<RoleServer>,
        capabilities: Option<ClientCapabilities>,
        stateless: bool,
    ) -> Self {
        Self {
            peer: Some(peer),
            capabilities,
            stateless,
        }
    }

    /// The capabilities the calling client declared (at `initialize`, or in
    /// this request's `_meta` on 2026-07-28).
    pub fn capabilities(&self) -> Option<&ClientCapabilities> {
        self.capabilities.as_ref()
    }

    /// Whether the client declared `sampling`.
    pub fn supports_sampling(&self) -> bool {
        self.capabilities
            .as_ref()
            .is_some_and(|c| c.sampling.is_some())
    }

    /// Whether the client declared `elicitation`.
    pub fn supports_elicitation(&self) -> bool {
        self.capabilities
            .as_ref()
            .is_some_and(|c| c.elicitation.is_some())
    }

    fn peer_for(
        &self,
        declared: bool,
        required: ClientCapabilities,
    ) -> Result<&Peer<RoleServer>, ErrorData> {
        if !declared {
            return Err(ErrorData::missing_required_client_capability(required));
        }
        if self.stateless {
            return Err(ErrorData::new(
                ErrorCode::INVALID_REQUEST,
                "protocol 2026-07-28 has no server-to-client requests: ask through an InputRequiredResult",
                None,
            ));
        }
        self.peer.as_ref().ok_or_else(|| {
            ErrorData::internal_error("this call has no client connection to ask", None)
        })
    }

    /// Ask the client's LLM for a completion.
    pub async fn create_message(
        &self,
        params: CreateMessageRequestParams,
    ) -> Result<CreateMessageResult, ErrorData> {
        let mut required = ClientCapabilities::default();
        required.sampling = Some(Default::default());
        let peer = self.peer_for(self.supports_sampling(), required)?;
        peer.create_message(params)
            .await
            .map_err(|e| service_error("sampling/createMessage", e))
    }

    /// Ask the user for input shaped by `requested_schema` (a flat object
    /// schema of primitive properties, as the specification restricts it).
    pub async fn elicit(
        &self,
        message: impl Into<String>,
        requested_schema: Value,
    ) -> Result<ElicitResult, ErrorData> {
        let mut required = ClientCapabilities::default();
        required.elicitation = Some(Default::default());
        let peer = self.peer_for(self.supports_elicitation(), required)?;
        let params: ElicitRequestParams = serde_json::from_value(serde_json::json!({
            "mode": "form",
            "message": message.into(),
            "requestedSchema": requested_schema,
        }))
        .map_err(|e| ErrorData::invalid_params(format!("invalid elicitation schema: {e}"), None))?;
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match peer.send_request(request).await {
            Ok(ClientResult::ElicitResult(r)) => Ok(r),
            Ok(other) => Err(ErrorData::internal_error(
                format!("unexpected answer to elicitation/create: {other:?}"),
                None,
            )),
            Err(e) => Err(service_error("elicitation/create", e)),
        }
    }
}
