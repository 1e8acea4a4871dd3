//! The node-local MCP server: user-registered tools, resources and prompts,
//! served through rmcp's engine to any transport, with per-tool access
//! control, per-peer rate limits, argument validation, progress and cancellation,
//! logging, argument completion and resource subscriptions.
#![allow(deprecated)] // rmcp marks logging (SEP-2577) and resources/subscribe deprecated.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime},
};

use p2p_foundation_identity::PeerId;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams,
        CompleteResult, CompletionInfo, ContentBlock as Content, ErrorCode, GetPromptRequestParams,
        GetPromptResponse, GetPromptResult, Implementation, InputRequiredResult, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
        PaginatedRequestParams, ProgressNotificationParam, ProgressToken, PromptArgument,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Reference,
        ResourceContents, ServerCapabilities, ServerConfig, SetLevelRequestMethod,
        SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter,
        UnsubscribeRequestParams,
    },
    service::{Peer, RequestContext, SubscriptionContext, SubscriptionSink},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    McpError,
    access::{self, CAPABILITY_META_KEY, Caller, Policy, RateLimit, RateLimiter},
    context::{ClientLink, Logger},
    mrtr::{self, InputRound, Outcome, StateSealer},
    schema,
};

/// A JSON object (tool arguments, schemas).
pub type JsonObject = serde_json::Map<String, Value>;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

type ToolFn =
    Arc<dyn Fn(ToolCall) -> BoxFuture<Result<Outcome<CallToolResult>, ErrorData>> + Send + Sync>;
type ResourceFn =
    Arc<dyn Fn(Caller) -> BoxFuture<Result<Vec<ResourceContents>, ErrorData>> + Send + Sync>;
type TemplateFn = Arc<
    dyn Fn(
            String,
            BTreeMap<String, String>,
            Caller,
        ) -> BoxFuture<Result<Vec<ResourceContents>, ErrorData>>
        + Send
        + Sync,
>;
type PromptFn = Arc<
    dyn Fn(JsonObject, &InputRound) -> Result<Outcome<GetPromptResult>, ErrorData> + Send + Sync,
>;
type CompleteFn = Arc<dyn Fn(&CompletionRequest) -> Vec<String> + Send + Sync>;

/// One `completion/complete` request for an argument of a prompt or of a
/// resource template, as a completion provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRequest {
    /// The argument (prompt argument or template variable) being completed.
    pub argument: String,
    /// What the user typed so far.
    pub value: String,
    /// Arguments the user already filled in (`context.arguments`).
    pub context: BTreeMap<String, String>,
}

/// The `values` that start with `partial` (case-insensitively), in their order:
/// the usual completion provider over a fixed list.
pub fn complete_from<S: AsRef<str>>(values: &[S], partial: &str) -> Vec<String> {
    let partial = partial.to_lowercase();
    values
        .iter()
        .map(AsRef::as_ref)
        .filter(|v| v.to_lowercase().starts_with(&partial))
        .map(str::to_owned)
        .collect()
}

fn completion_result(values: Vec<String>) -> CompleteResult {
    let total = values.len();
    let mut values = values;
    values.truncate(CompletionInfo::MAX_VALUES);
    let mut info = CompletionInfo::default();
    info.has_more = Some(total > values.len());
    info.total = Some(u32::try_from(total).unwrap_or(u32::MAX));
    info.values = values;
    CompleteResult::new(info)
}

/// Reports progress of one tool call to its caller (a no-op when the caller
/// did not ask for progress). Crosses peers: the notification travels back
/// over the same stream as the call.
#[derive(Clone, Default)]
pub struct Progress {
    target: Option<(Peer<RoleServer>, ProgressToken)>,
    forward: Option<tokio::sync::mpsc::Sender<ProgressUpdate>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// One progress update.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// Work done so far (increases monotonically).
    pub progress: f64,
    /// Total work, if known.
    pub total: Option<f64>,
    /// Human-readable status.
    pub message: Option<String>,
}

impl Progress {
    /// A reporter that sends nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// A reporter feeding a channel (used by in-process callers and the router).
    pub fn channel(tx: tokio::sync::mpsc::Sender<ProgressUpdate>) -> Self {
        Self {
            target: None,
            forward: Some(tx),
        }
    }

    pub(crate) fn to_peer(peer: Peer<RoleServer>, token: ProgressToken) -> Self {
        Self {
            target: Some((peer, token)),
            forward: None,
        }
    }

    /// Whether anyone listens.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some() || self.forward.is_some()
    }

    /// Send one progress update (best effort: a closed caller is ignored).
    pub async fn report(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        if let Some((peer, token)) = &self.target {
            let mut p = ProgressNotificationParam::new(token.clone(), progress);
            p.total = total;
            p.message = message.clone();
            if let Err(e) = peer.notify_progress(p).await {
                tracing::debug!(error = %e, "progress notification not delivered");
            }
        }
        if let Some(tx) = &self.forward {
            let _ = tx
                .send(ProgressUpdate {
                    progress,
                    total,
                    message,
                })
                .await;
        }
    }
}

/// Everything a tool handler gets for one call.
#[derive(Debug)]
pub struct ToolCall {
    /// Who is calling (the authenticated peer, or the local user).
    pub caller: Caller,
    /// The tool's arguments, already validated against its input schema.
    pub arguments: JsonObject,
    /// Progress reporter for this call.
    pub progress: Progress,
    /// Cancelled when the caller cancels the call (or disconnects).
    pub cancel: CancellationToken,
    /// Log messages to the caller (`notifications/message`), at the level it asked for.
    pub log: Logger,
    /// Requests back to the calling client (sampling, elicitation).
    pub client: ClientLink,
    /// Responses to the input this tool asked for in earlier rounds (see
    /// [`crate::mrtr`]); empty on the first round.
    pub input: InputRound,
    /// The transport stream the response travels on (SSE polling).
    pub stream: StreamControl,
}

/// Closes one request's SSE response stream (the HTTP gateway implements it).
pub(crate) trait SseStreams: Send + Sync + 'static {
    /// Close the stream carrying `request` of `session`, with a `retry` hint.
    fn close<'a>(
        &'a self,
        session: &'a str,
        request: &'a rmcp::model::RequestId,
        retry: std::time::Duration,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
    /// Wait (at most `limit`) until the client resumed the closed stream.
    fn reconnected<'a>(
        &'a self,
        session: &'a str,
        request: &'a rmcp::model::RequestId,
        limit: std::time::Duration,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
}

/// Control over the transport stream a call's response travels on.
///
/// On a 2025-11-25 Streamable HTTP session a long-running tool can release
/// the client's HTTP connection (SEP-1699 polling): the server sends an SSE
/// `retry` hint and ends the response stream; the client reconnects with
/// `Last-Event-ID` and receives everything sent meanwhile, the result
/// included. Elsewhere (stdio, peer streams, stateless requests) there is no
/// such stream and closing is a no-op.
#[derive(Clone, Default)]
pub struct StreamControl {
    target: Option<(Arc<dyn SseStreams>, String, rmcp::model::RequestId)>,
}

impl std::fmt::Debug for StreamControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamControl")
            .field("closable", &self.can_close())
            .finish()
    }
}

impl StreamControl {
    /// Whether the call's response travels on a stream that can be closed.
    pub fn can_close(&self) -> bool {
        self.target.is_some()
    }

    /// End the response stream now, telling the client to reconnect after
    /// `retry`. Returns whether a stream was closed.
    pub async fn close_sse_stream(&self, retry: std::time::Duration) -> bool {
        match &self.target {
            Some((streams, session, request)) => streams.close(session, request, retry).await,
            None => false,
        }
    }

    /// After [`StreamControl::close_sse_stream`]: wait, at most `limit`,
    /// until the client has reconnected with `Last-Event-ID`. Send the
    /// result only then: rmcp 3.11 keeps a finished request's events for
    /// replay only while its stream is attached, so a result sent before the
    /// client is back would be lost to it. Returns whether it reconnected.
    pub async fn reconnected(&self, limit: std::time::Duration) -> bool {
        match &self.target {
            Some((streams, session, request)) => streams.reconnected(session, request, limit).await,
            None => false,
        }
    }
}

/// The caller-side channels of one call, for [`McpServer::call_with`].
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// Progress reporter.
    pub progress: Progress,
    /// Log listener.
    pub log: Logger,
    /// Link back to the calling client.
    pub client: ClientLink,
    /// Cancellation of the call.
    pub cancel: CancellationToken,
    /// The response stream, where it can be closed.
    pub stream: StreamControl,
}

/// A tool: its MCP definition (name, JSON Schema input and output), version,
/// capability tags, access policy and handler.
///
/// ```
/// use p2p_foundation_mcp::{Tool, tool_result};
/// let tool = Tool::new("generate_text")
///     .with_description("Generate text from a prompt")
///     .with_schema(serde_json::json!({
///         "type": "object",
///         "properties": {"prompt": {"type": "string"}},
///         "required": ["prompt"]
///     }))
///     .with_tags(["text-generation"])
///     .handler(|call| async move {
///         let prompt = call.arguments["prompt"].as_str().unwrap_or_default().to_owned();
///         Ok(tool_result::text(format!("echo: {prompt}")))
///     });
/// assert_eq!(tool.name(), "generate_text");
/// ```
#[derive(Clone)]
pub struct Tool {
    def: rmcp::model::Tool,
    input_schema: Value,
    output_schema: Option<Value>,
    version: String,
    tags: Vec<String>,
    policy: Policy,
    handler: Option<ToolFn>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.def.name)
            .field("version", &self.version)
            .field("tags", &self.tags)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn object_schema(schema: &Value) -> Arc<JsonObject> {
    Arc::new(schema.as_object().cloned().unwrap_or_default())
}

impl Tool {
    /// A tool named `name` taking an empty object, version "1.0.0", public.
    pub fn new(name: impl Into<String>) -> Self {
        let input_schema = serde_json::json!({"type": "object"});
        let mut def = rmcp::model::Tool::default();
        def.name = name.into().into();
        def.input_schema = object_schema(&input_schema);
        Self {
            def,
            input_schema,
            output_schema: None,
            version: "1.0.0".into(),
            tags: Vec::new(),
            policy: Policy::Public,
            handler: None,
        }
    }

    /// Set the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.def.description = Some(description.into().into());
        self
    }

    /// Set the JSON Schema of the input (must be an object schema).
    pub fn with_schema(mut self, schema: Value) -> Self {
        self.def.input_schema = object_schema(&schema);
        self.input_schema = schema;
        self
    }

    /// Set the JSON Schema of the structured output.
    pub fn with_output_schema(mut self, schema: Value) -> Self {
        self.def.output_schema = Some(object_schema(&schema));
        self.output_schema = Some(schema);
        self
    }

    /// Set the tool's version (carried in service records).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Set capability tags (e.g. "text-generation") under which the tool is discoverable.
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Set the access policy.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Set the handler. It returns a [`CallToolResult`], or an
    /// [`InputNeeded`](crate::mrtr::InputNeeded) when it needs the client's
    /// help first (multi-round, see [`crate::mrtr`]).
    pub fn handler<F, Fut, R>(mut self, f: F) -> Self
    where
        F: Fn(ToolCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ErrorData>> + Send + 'static,
        R: Into<Outcome<CallToolResult>> + 'static,
    {
        self.handler = Some(Arc::new(move |call| {
            let fut = f(call);
            Box::pin(async move { fut.await.map(Into::into) })
        }));
        self
    }

    /// A typed tool: input and output schemas derived from the Rust types
    /// (via schemars), arguments deserialized into `I`, the returned `O` sent
    /// as structured content (and as JSON text for older clients). An `Err`
    /// from `f` becomes an `isError` result carrying the message.
    pub fn typed<I, O, F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        I: serde::de::DeserializeOwned + rmcp::schemars::JsonSchema + 'static,
        O: serde::Serialize + rmcp::schemars::JsonSchema + 'static,
        F: Fn(Caller, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, String>> + Send + 'static,
    {
        let input = Value::Object((*rmcp::handler::server::common::schema_for_type::<I>()).clone());
        let output =
            Value::Object((*rmcp::handler::server::common::schema_for_output::<O>()).clone());
        let f = Arc::new(f);
        Tool::new(name)
            .with_schema(input)
            .with_output_schema(output)
            .handler(move |call: ToolCall| {
                let f = f.clone();
                async move {
                    let input: I =
                        serde_json::from_value(Value::Object(call.arguments)).map_err(|e| {
                            ErrorData::invalid_params(format!("invalid arguments: {e}"), None)
                        })?;
                    match f(call.caller, input).await {
                        Ok(out) => {
                            let v = serde_json::to_value(out).map_err(|e| {
                                ErrorData::internal_error(
                                    format!("output not serializable: {e}"),
                                    None,
                                )
                            })?;
                            Ok(tool_result::structured(v))
                        }
                        Err(msg) => Ok(tool_result::error(msg)),
                    }
                }
            })
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The MCP definition as listed by `tools/list`.
    pub fn definition(&self) -> &rmcp::model::Tool {
        &self.def
    }

    /// Input JSON Schema.
    pub fn input_schema(&self) -> &Value {
        &self.input_schema
    }

    /// Output JSON Schema, if declared.
    pub fn output_schema(&self) -> Option<&Value> {
        self.output_schema.as_ref()
    }

    /// Version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Capability tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Access policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// Helpers building [`CallToolResult`]s.
pub mod tool_result {
    use super::*;

    /// A successful text result.
    pub fn text(text: impl Into<String>) -> CallToolResult {
        CallToolResult::success(vec![Content::text(text.into())])
    }

    /// A successful structured result (the value is also sent as JSON text,
    /// as the specification recommends for clients without structured support).
    pub fn structured(value: Value) -> CallToolResult {
        let mut r = CallToolResult::success(vec![Content::text(value.to_string())]);
        r.structured_content = Some(value);
        r
    }

    /// A tool-level failure (`isError: true`): the caller's model sees the message.
    pub fn error(message: impl Into<String>) -> CallToolResult {
        CallToolResult::error(vec![Content::text(message.into())])
    }
}

/// A resource: its listing entry and a reader.
#[derive(Clone)]
pub struct Resource {
    def: rmcp::model::Resource,
    read: ResourceFn,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("uri", &self.def.uri)
            .finish_non_exhaustive()
    }
}

impl Resource {
    /// A fixed text resource.
    pub fn text(uri: impl Into<String>, name: impl Into<String>, text: impl Into<String>) -> Self {
        let uri = uri.into();
        let text = text.into();
        let def = rmcp::model::Resource::new(uri.clone(), name).with_mime_type("text/plain");
        Self::dynamic_def(def, move |_caller| {
            let body = vec![ResourceContents::text(text.clone(), uri.clone())];
            async move { Ok(body) }
        })
    }

    /// A resource produced on each read by `read`.
    pub fn dynamic<F, Fut>(uri: impl Into<String>, name: impl Into<String>, read: F) -> Self
    where
        F: Fn(Caller) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<ResourceContents>, ErrorData>> + Send + 'static,
    {
        Self::dynamic_def(rmcp::model::Resource::new(uri, name), read)
    }

    fn dynamic_def<F, Fut>(def: rmcp::model::Resource, read: F) -> Self
    where
        F: Fn(Caller) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<ResourceContents>, ErrorData>> + Send + 'static,
    {
        Self {
            def,
            read: Arc::new(move |c| Box::pin(read(c))),
        }
    }

    /// Set the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.def = self.def.with_description(description);
        self
    }

    /// Set the MIME type.
    pub fn with_mime_type(mut self, mime: impl Into<String>) -> Self {
        self.def = self.def.with_mime_type(mime);
        self
    }

    /// The resource's URI.
    pub fn uri(&self) -> &str {
        &self.def.uri
    }
}

/// A resource template (RFC 6570 level-1 `{var}` expansions, one path
/// segment per variable) and its reader.
#[derive(Clone)]
pub struct ResourceTemplate {
    def: rmcp::model::ResourceTemplate,
    read: TemplateFn,
    complete: Option<CompleteFn>,
}

impl std::fmt::Debug for ResourceTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceTemplate")
            .field("uri_template", &self.def.uri_template)
            .finish_non_exhaustive()
    }
}

impl ResourceTemplate {
    /// A template such as `test://template/{id}/data` read by `read(uri, variables, caller)`.
    pub fn new<F, Fut>(uri_template: impl Into<String>, name: impl Into<String>, read: F) -> Self
    where
        F: Fn(String, BTreeMap<String, String>, Caller) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<ResourceContents>, ErrorData>> + Send + 'static,
    {
        Self {
            def: rmcp::model::ResourceTemplate::new(uri_template, name),
            read: Arc::new(move |u, v, c| Box::pin(read(u, v, c))),
            complete: None,
        }
    }

    /// Set the completion provider for the template's variables
    /// (`completion/complete` with a `ref/resource` reference).
    pub fn with_completion<F>(mut self, provider: F) -> Self
    where
        F: Fn(&CompletionRequest) -> Vec<String> + Send + Sync + 'static,
    {
        self.complete = Some(Arc::new(provider));
        self
    }

    /// The URI template.
    pub fn uri_template(&self) -> &str {
        &self.def.uri_template
    }

    /// Set the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.def.description = Some(description.into());
        self
    }

    /// Set the MIME type of what it yields.
    pub fn with_mime_type(mut self, mime: impl Into<String>) -> Self {
        self.def.mime_type = Some(mime.into());
        self
    }

    /// Variables of `uri` if it matches this template.
    pub fn matches(&self, uri: &str) -> Option<BTreeMap<String, String>> {
        match_template(&self.def.uri_template, uri)
    }
}

/// Match `uri` against a level-1 URI template: each `{name}` takes a
/// non-empty run of characters up to the next literal character (and never `/`).
pub fn match_template(template: &str, uri: &str) -> Option<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    let mut t = template;
    let mut u = uri;
    while !t.is_empty() {
        if let Some(rest) = t.strip_prefix('{') {
            let close = rest.find('}')?;
            let name = &rest[..close];
            t = &rest[close + 1..];
            let stop = t.chars().next().filter(|c| *c != '{');
            let end = u
                .char_indices()
                .find(|&(_, c)| c == '/' || Some(c) == stop)
                .map_or(u.len(), |(i, _)| i);
            if end == 0 {
                return None;
            }
            vars.insert(name.to_owned(), u[..end].to_owned());
            u = &u[end..];
        } else {
            let lit_end = t.find('{').unwrap_or(t.len());
            u = u.strip_prefix(&t[..lit_end])?;
            t = &t[lit_end..];
        }
    }
    u.is_empty().then_some(vars)
}

/// A prompt template: its listing entry and a renderer.
#[derive(Clone)]
pub struct Prompt {
    def: rmcp::model::Prompt,
    render: PromptFn,
    complete: Option<CompleteFn>,
}

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompt")
            .field("name", &self.def.name)
            .finish_non_exhaustive()
    }
}

impl Prompt {
    /// A prompt named `name` rendered by `render` from its arguments.
    pub fn new<F>(name: impl Into<String>, description: impl Into<String>, render: F) -> Self
    where
        F: Fn(JsonObject) -> Result<GetPromptResult, ErrorData> + Send + Sync + 'static,
    {
        Self::multi_round(name, description, move |args, _round| {
            render(args).map(Outcome::Complete)
        })
    }

    /// A prompt whose renderer may first ask the client for input
    /// (multi-round, see [`crate::mrtr`]).
    pub fn multi_round<F>(
        name: impl Into<String>,
        description: impl Into<String>,
        render: F,
    ) -> Self
    where
        F: Fn(JsonObject, &InputRound) -> Result<Outcome<GetPromptResult>, ErrorData>
            + Send
            + Sync
            + 'static,
    {
        Self {
            def: rmcp::model::Prompt::new(name, Some(description), None),
            render: Arc::new(render),
            complete: None,
        }
    }

    /// Set the completion provider for the prompt's arguments
    /// (`completion/complete` with a `ref/prompt` reference). It is asked
    /// only about declared arguments.
    ///
    /// ```
    /// use p2p_foundation_mcp::{Prompt, complete_from};
    /// let p = Prompt::new("travel", "Plan a trip", |_| Err(p2p_foundation_mcp::rmcp::ErrorData::internal_error("unused", None)))
    ///     .with_argument("city", "Destination", true)
    ///     .with_completion(|req| complete_from(&["paris", "park", "prague"], &req.value));
    /// assert_eq!(p.name(), "travel");
    /// ```
    pub fn with_completion<F>(mut self, provider: F) -> Self
    where
        F: Fn(&CompletionRequest) -> Vec<String> + Send + Sync + 'static,
    {
        self.complete = Some(Arc::new(provider));
        self
    }

    /// Declare an argument.
    pub fn with_argument(
        mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        required: bool,
    ) -> Self {
        let arg = PromptArgument::new(name)
            .with_description(description)
            .with_required(required);
        self.def.arguments.get_or_insert_with(Vec::new).push(arg);
        self
    }

    /// The prompt's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }
}

/// Tools served next to the node's own (the gateway's network tools).
pub trait ExtraTools: Send + Sync + 'static {
    /// Their definitions, as listed.
    fn list(&self) -> BoxFuture<Vec<rmcp::model::Tool>>;
    /// Call `name` if it is one of them (`None` otherwise).
    fn call(
        &self,
        name: &str,
        arguments: JsonObject,
        progress: Progress,
        cancel: CancellationToken,
    ) -> Option<BoxFuture<Result<CallToolResult, ErrorData>>>;
}

/// Server-wide settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Implementation name reported to clients.
    pub name: String,
    /// Implementation version reported to clients.
    pub version: String,
    /// Per-peer rate limit on tool calls (`None`: unlimited).
    pub rate_limit: Option<RateLimit>,
    /// Instructions sent to clients.
    pub instructions: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            name: "p2p-foundation-mcp".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            rate_limit: None,
            instructions: None,
        }
    }
}

struct Inner {
    owner: PeerId,
    settings: ServerSettings,
    tools: RwLock<BTreeMap<String, Arc<Tool>>>,
    resources: RwLock<BTreeMap<String, Arc<Resource>>>,
    templates: RwLock<Vec<Arc<ResourceTemplate>>>,
    prompts: RwLock<BTreeMap<String, Arc<Prompt>>>,
    rate: Option<RateLimiter>,
    in_flight: AtomicU64,
    served: AtomicU64,
    /// Resource URI -> who subscribed to its updates.
    subscribers: std::sync::Mutex<BTreeMap<String, Vec<Subscriber>>>,
    next_session: AtomicU64,
    /// Seals multi-round `requestState`.
    sealer: StateSealer,
}

/// One subscription to a resource's updates.
#[derive(Clone)]
enum Subscriber {
    /// `resources/subscribe` on a 2025-11-25 session.
    Session {
        session: u64,
        peer: Peer<RoleServer>,
    },
    /// One `subscriptions/listen` stream (2026-07-28).
    Listen {
        session: u64,
        sink: SubscriptionSink,
    },
}

impl Subscriber {
    fn session(&self) -> u64 {
        match self {
            Subscriber::Session { session, .. } | Subscriber::Listen { session, .. } => *session,
        }
    }
}

/// The node-local MCP server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct McpServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("owner", &self.inner.owner)
            .field("tools", &self.tool_names())
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

struct InFlight<'a>(&'a AtomicU64);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl McpServer {
    /// A server owned by `owner` (the only issuer of capability tokens it accepts).
    pub fn new(owner: PeerId) -> Self {
        Self::with_settings(owner, ServerSettings::default())
    }

    /// A server with explicit settings.
    pub fn with_settings(owner: PeerId, settings: ServerSettings) -> Self {
        let rate = settings.rate_limit.map(RateLimiter::new);
        Self {
            inner: Arc::new(Inner {
                owner,
                settings,
                tools: RwLock::default(),
                resources: RwLock::default(),
                templates: RwLock::default(),
                prompts: RwLock::default(),
                rate,
                in_flight: AtomicU64::new(0),
                served: AtomicU64::new(0),
                subscribers: std::sync::Mutex::default(),
                next_session: AtomicU64::new(1),
                sealer: StateSealer::new(),
            }),
        }
    }

    /// The owner's peer id.
    pub fn owner(&self) -> PeerId {
        self.inner.owner
    }

    /// Register (or replace) a tool.
    pub fn register_tool(&self, tool: Tool) -> Result<(), McpError> {
        if tool.handler.is_none() {
            return Err(McpError::Invalid(format!(
                "tool '{}' has no handler",
                tool.name()
            )));
        }
        let name = tool.name();
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(McpError::Invalid(format!(
                "tool name '{name}' must be 1-128 characters of A-Z a-z 0-9 _ - ."
            )));
        }
        if !tool.input_schema.is_object() {
            return Err(McpError::Invalid(format!(
                "input schema of '{name}' is not a JSON object"
            )));
        }
        write(&self.inner.tools).insert(name.to_owned(), Arc::new(tool));
        Ok(())
    }

    /// Remove a tool.
    pub fn unregister_tool(&self, name: &str) -> bool {
        write(&self.inner.tools).remove(name).is_some()
    }

    /// Register (or replace) a resource.
    pub fn register_resource(&self, resource: Resource) {
        write(&self.inner.resources).insert(resource.uri().to_owned(), Arc::new(resource));
    }

    /// Register a resource template.
    pub fn register_resource_template(&self, template: ResourceTemplate) {
        write(&self.inner.templates).push(Arc::new(template));
    }

    /// Register (or replace) a prompt.
    pub fn register_prompt(&self, prompt: Prompt) {
        write(&self.inner.prompts).insert(prompt.name().to_owned(), Arc::new(prompt));
    }

    /// Names of the registered tools.
    pub fn tool_names(&self) -> Vec<String> {
        read(&self.inner.tools).keys().cloned().collect()
    }

    /// A registered tool.
    pub fn tool(&self, name: &str) -> Option<Arc<Tool>> {
        read(&self.inner.tools).get(name).cloned()
    }

    /// Calls currently executing (the load hint published in service records).
    pub fn in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Tool calls served since start.
    pub fn served(&self) -> u64 {
        self.inner.served.load(Ordering::Relaxed)
    }

    /// A protocol handler for one connection from `caller` (pass it to rmcp's
    /// `serve_server`, or use [`crate::serve_stream`]).
    pub fn session(&self, caller: Caller) -> Session {
        Session {
            server: self.clone(),
            caller,
            extra: None,
            id: self.inner.next_session.fetch_add(1, Ordering::Relaxed),
            log_level: Arc::new(RwLock::new(None)),
            subscriptions: Arc::default(),
            sse: None,
        }
    }

    /// Tell every client subscribed to `uri` that the resource changed
    /// (`notifications/resources/updated`: `resources/subscribe` on 2025-11-25
    /// sessions, `subscriptions/listen` on 2026-07-28). Returns how many
    /// subscribers were notified; subscribers whose connection is gone are
    /// dropped.
    pub async fn notify_resource_updated(&self, uri: &str) -> usize {
        let targets = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uri)
            .cloned()
            .unwrap_or_default();
        let mut delivered = 0;
        let mut gone = Vec::new();
        for t in targets {
            let ok = match &t {
                Subscriber::Session { peer, .. } => peer
                    .notify_resource_updated(rmcp::model::ResourceUpdatedNotificationParam::new(
                        uri,
                    ))
                    .await
                    .is_ok(),
                Subscriber::Listen { sink, .. } => sink.notify_resource_updated(uri).await.is_ok(),
            };
            if ok {
                delivered += 1;
            } else {
                gone.push(t.session());
            }
        }
        if !gone.is_empty() {
            let mut subs = self
                .inner
                .subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(list) = subs.get_mut(uri) {
                list.retain(|s| !gone.contains(&s.session()));
                if list.is_empty() {
                    subs.remove(uri);
                }
            }
        }
        delivered
    }

    /// How many subscriptions to `uri` are registered.
    pub fn subscriber_count(&self, uri: &str) -> usize {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uri)
            .map_or(0, Vec::len)
    }

    fn is_subscribed(&self, uri: &str, session: u64) -> bool {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uri)
            .is_some_and(|l| {
                l.iter()
                    .any(|s| s.session() == session && matches!(s, Subscriber::Session { .. }))
            })
    }

    /// Add `sub`; false if that session already watches `uri`.
    fn subscribe(&self, uri: &str, sub: Subscriber) -> bool {
        let mut subs = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let list = subs.entry(uri.to_owned()).or_default();
        // Sessions whose connection is gone leave here, not only on the next update.
        list.retain(|s| match s {
            Subscriber::Session { peer, .. } => !peer.is_transport_closed(),
            Subscriber::Listen { .. } => true,
        });
        let session = sub.session();
        let is_listen = matches!(sub, Subscriber::Listen { .. });
        // One `resources/subscribe` per session and URI; listen streams are each their own.
        if !is_listen
            && list
                .iter()
                .any(|s| s.session() == session && matches!(s, Subscriber::Session { .. }))
        {
            return false;
        }
        list.push(sub);
        true
    }

    fn unsubscribe(&self, uri: &str, session: u64, listen: bool) -> bool {
        let mut subs = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(list) = subs.get_mut(uri) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| s.session() != session || matches!(s, Subscriber::Listen { .. }) != listen);
        let removed = list.len() != before;
        if list.is_empty() {
            subs.remove(uri);
        }
        removed
    }

    /// Whether `uri` names a registered resource or matches a template.
    pub fn has_resource(&self, uri: &str) -> bool {
        read(&self.inner.resources).contains_key(uri)
            || read(&self.inner.templates)
                .iter()
                .any(|t| t.matches(uri).is_some())
    }

    /// Call a tool in-process, with the same checks as a remote call.
    pub async fn call(
        &self,
        caller: Caller,
        name: &str,
        arguments: JsonObject,
        capability: Option<&str>,
        progress: Progress,
        cancel: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        self.call_with(
            caller,
            name,
            arguments,
            capability,
            CallContext {
                progress,
                log: Logger::none(),
                client: ClientLink::none(),
                cancel,
                stream: StreamControl::default(),
            },
        )
        .await
    }

    /// Call a tool in-process with an explicit [`CallContext`] (progress,
    /// log listener, client link, cancellation). A tool that asks for client
    /// input fails here (an in-process caller cannot answer): use
    /// [`McpServer::call_round`].
    pub async fn call_with(
        &self,
        caller: Caller,
        name: &str,
        arguments: JsonObject,
        capability: Option<&str>,
        ctx: CallContext,
    ) -> Result<CallToolResult, ErrorData> {
        match self
            .call_round(
                caller,
                name,
                arguments,
                capability,
                ctx,
                InputRound::first(),
            )
            .await?
        {
            Outcome::Complete(r) => Ok(r),
            Outcome::InputRequired(_) => Err(ErrorData::invalid_request(
                format!("tool '{name}' needs client input, which this caller cannot give"),
                None,
            )),
        }
    }

    /// One round of a tool call: its result, or the input it needs first.
    pub async fn call_round(
        &self,
        caller: Caller,
        name: &str,
        arguments: JsonObject,
        capability: Option<&str>,
        ctx: CallContext,
        input: InputRound,
    ) -> Result<Outcome<CallToolResult>, ErrorData> {
        let CallContext {
            progress,
            log,
            client,
            cancel,
            stream,
        } = ctx;
        let tool = self
            .tool(name)
            .ok_or_else(|| ErrorData::invalid_params(format!("unknown tool '{name}'"), None))?;
        self.admit(&tool, caller, capability)?;
        let arguments = Value::Object(arguments);
        schema::validate(&tool.input_schema, &arguments).map_err(|e| {
            ErrorData::invalid_params(
                format!("arguments of '{name}' violate its input schema: {e}"),
                None,
            )
        })?;
        let Value::Object(arguments) = arguments else {
            return Err(ErrorData::invalid_params(
                "arguments must be an object",
                None,
            ));
        };
        let Some(handler) = tool.handler.clone() else {
            return Err(ErrorData::internal_error(
                format!("tool '{name}' has no handler"),
                None,
            ));
        };
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        let _guard = InFlight(&self.inner.in_flight);
        let call = ToolCall {
            caller,
            arguments,
            progress,
            cancel: cancel.clone(),
            log: log.named(name),
            client,
            input,
            stream,
        };
        // Biased: a handler that watches `cancel` gets to finish its own way
        // in the same poll; one that ignores it is dropped.
        let result = tokio::select! {
            biased;
            r = handler(call) => r,
            () = cancel.cancelled() => Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "request cancelled", None)),
        };
        self.inner.served.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn admit(
        &self,
        tool: &Tool,
        caller: Caller,
        capability: Option<&str>,
    ) -> Result<(), ErrorData> {
        // Rate limit first, so refused attempts count too (no free probing).
        if let (Some(rate), Caller::Peer(peer)) = (&self.inner.rate, caller)
            && let Err(wait) = rate.check(peer, Instant::now())
        {
            return Err(ErrorData::new(
                ErrorCode(access::RATE_LIMITED),
                format!(
                    "rate limited: peer {peer} exceeded its call rate; retry in {} ms",
                    wait.as_millis().max(1)
                ),
                Some(serde_json::json!({"retryAfterMs": wait.as_millis().max(1) as u64})),
            ));
        }
        access::check(
            &tool.policy,
            tool.name(),
            caller,
            self.inner.owner,
            capability,
            SystemTime::now(),
        )
        .map_err(|reason| ErrorData::new(ErrorCode(access::ACCESS_DENIED), reason, None))
    }

    fn info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .build();
        let mut cfg = ServerConfig::new(caps).with_server_info(Implementation::new(
            self.inner.settings.name.clone(),
            self.inner.settings.version.clone(),
        ));
        if let Some(i) = &self.inner.settings.instructions {
            cfg = cfg.with_instructions(i.clone());
        }
        cfg
    }
}

/// One connection's protocol handler: the server seen by one caller.
#[derive(Clone)]
pub struct Session {
    server: McpServer,
    caller: Caller,
    extra: Option<Arc<dyn ExtraTools>>,
    /// Distinguishes this session's subscriptions.
    id: u64,
    /// Level set by `logging/setLevel` (2025-11-25 sessions).
    log_level: Arc<RwLock<Option<LoggingLevel>>>,
    /// `resources/subscribe` subscriptions held by this session.
    subscriptions: Arc<std::sync::atomic::AtomicUsize>,
    /// The HTTP gateway's response streams, when served over Streamable HTTP.
    sse: Option<Arc<dyn SseStreams>>,
}

/// Most resources one session (or one `subscriptions/listen` stream) may watch.
pub const MAX_SUBSCRIPTIONS_PER_SESSION: usize = 1024;

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Run a multi-round handler (`step`, one call per round) for one request:
    /// on 2026-07-28 one round per request, answering `InputRequiredResult`
    /// with sealed state; on 2025-11-25 asking the client directly and
    /// running further rounds here.
    async fn drive<T, F>(
        &self,
        context: &RequestContext<RoleServer>,
        scope: &str,
        responses: Option<rmcp::model::InputResponses>,
        request_state: Option<String>,
        mut step: F,
    ) -> Result<Outcome<T, InputRequiredResult>, ErrorData>
    where
        F: FnMut(InputRound) -> BoxFuture<Result<Outcome<T>, ErrorData>>,
    {
        let sealer = &self.server.inner.sealer;
        let responses = mrtr::validate_responses(responses)?;
        let state = match request_state {
            Some(token) => Some(sealer.open(scope, &token, SystemTime::now())?),
            None => None,
        };
        let mut round = InputRound::new(responses, state);
        let stateless = is_stateless(context);
        let declared = context.client_capabilities();
        for _ in 0..=mrtr::MAX_ROUNDS {
            let needed = match step(round).await? {
                Outcome::Complete(done) => return Ok(Outcome::Complete(done)),
                Outcome::InputRequired(needed) => needed,
            };
            needed.check_capabilities(declared.as_ref())?;
            let requests = needed.typed_requests()?;
            if stateless {
                let state = needed
                    .state()
                    .map(|s| sealer.seal(scope, s, SystemTime::now()));
                let requests = (!requests.is_empty()).then_some(requests);
                return Ok(Outcome::InputRequired(InputRequiredResult::new(
                    requests, state,
                )));
            }
            // 2025-11-25 has server-to-client requests: ask, then run again.
            let mut answers = BTreeMap::new();
            for (key, request) in requests {
                answers.insert(key, mrtr::ask(&context.peer, request).await?);
            }
            round = InputRound::new(answers, needed.state().cloned());
        }
        Err(ErrorData::internal_error(
            format!(
                "the handler still needed client input after {} rounds",
                mrtr::MAX_ROUNDS
            ),
            None,
        ))
    }

    /// Let tools close their SSE response streams (the HTTP gateway).
    pub(crate) fn with_sse_streams(mut self, streams: Arc<dyn SseStreams>) -> Self {
        self.sse = Some(streams);
        self
    }

    /// Also serve `extra` tools (the gateway's network tools).
    pub fn with_extra_tools(mut self, extra: Arc<dyn ExtraTools>) -> Self {
        self.extra = Some(extra);
        self
    }

    /// Who this session serves.
    pub fn caller(&self) -> Caller {
        self.caller
    }
}

fn capability_from(
    params: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Option<String> {
    let from = |m: &rmcp::model::RequestMetaObject| {
        m.0.0
            .get(CAPABILITY_META_KEY)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    params
        .meta
        .as_ref()
        .and_then(from)
        .or_else(|| from(&ctx.meta))
}

/// The `Mcp-Session-Id` of the HTTP request that carried this call, if any.
fn http_session_id(context: &RequestContext<RoleServer>) -> Option<String> {
    context
        .extensions
        .get::<hyper::http::request::Parts>()?
        .headers
        .get("mcp-session-id")?
        .to_str()
        .ok()
        .map(str::to_owned)
}

/// The caller, as bound into sealed request state.
fn caller_scope(caller: Caller) -> String {
    match caller {
        Caller::Local => "local".to_owned(),
        Caller::Peer(p) => p.to_string(),
    }
}

/// Whether this request follows the stateless 2026-07-28 revision.
fn is_stateless(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= rmcp::model::ProtocolVersion::V_2026_07_28.as_str())
}

/// The variable names of a level-1 URI template.
fn template_variables(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name))
}

impl ServerHandler for Session {
    fn get_info(&self) -> ServerConfig {
        self.server.info()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools: Vec<rmcp::model::Tool> = read(&self.server.inner.tools)
            .values()
            .map(|t| t.def.clone())
            .collect();
        if let Some(extra) = &self.extra {
            tools.extend(extra.list().await);
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.server.tool(name).map(|t| t.def.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let span = tracing::debug_span!("mcp.call", tool = %request.name, caller = ?self.caller);
        let _e = span.enter();
        let progress = match context.meta.get_progress_token() {
            Some(token) => Progress::to_peer(context.peer.clone(), token),
            None => Progress::none(),
        };
        let stateless = is_stateless(&context);
        let level = context.meta.log_level().or_else(|| {
            if stateless {
                None
            } else {
                *read(&self.log_level)
            }
        });
        let log = Logger::to_peer(context.peer.clone(), level);
        let client = ClientLink::to_peer(
            context.peer.clone(),
            context.client_capabilities(),
            stateless,
        );
        let arguments = request.arguments.clone().unwrap_or_default();
        if self.server.tool(&request.name).is_none()
            && let Some(extra) = &self.extra
            && let Some(fut) = extra.call(
                &request.name,
                arguments.clone(),
                progress.clone(),
                context.ct.clone(),
            )
        {
            return fut.await.map(CallToolResponse::Complete);
        }
        let capability = capability_from(&request, &context);
        let stream = match (&self.sse, http_session_id(&context)) {
            (Some(sse), Some(session)) => StreamControl {
                target: Some((sse.clone(), session, context.id.clone())),
            },
            _ => StreamControl::default(),
        };
        let ctx = CallContext {
            progress,
            log,
            client,
            cancel: context.ct.clone(),
            stream,
        };
        let server = self.server.clone();
        let caller = self.caller;
        let name = request.name.to_string();
        let scope = format!("tools/call\n{name}\n{}", caller_scope(caller));
        let driven = self
            .drive(
                &context,
                &scope,
                request.input_responses.clone(),
                request.request_state.clone(),
                move |round| {
                    let (server, name, arguments, capability, ctx) = (
                        server.clone(),
                        name.clone(),
                        arguments.clone(),
                        capability.clone(),
                        ctx.clone(),
                    );
                    Box::pin(async move {
                        server
                            .call_round(caller, &name, arguments, capability.as_deref(), ctx, round)
                            .await
                    })
                },
            )
            .await?;
        Ok(match driven {
            Outcome::Complete(r) => CallToolResponse::Complete(r),
            Outcome::InputRequired(r) => CallToolResponse::InputRequired(r),
        })
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Removed in 2026-07-28: the level travels in each request's `_meta`.
        if is_stateless(&context) {
            return Err(ErrorData::method_not_found::<SetLevelRequestMethod>());
        }
        *write(&self.log_level) = Some(request.level);
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let req = CompletionRequest {
            argument: request.argument.name.clone(),
            value: request.argument.value.clone(),
            context: request
                .context
                .and_then(|c| c.arguments)
                .map(|a| a.into_iter().collect())
                .unwrap_or_default(),
        };
        let provider = match &request.r#ref {
            Reference::Prompt(p) => {
                let prompt = read(&self.server.inner.prompts).get(&p.name).cloned();
                let Some(prompt) = prompt else {
                    return Err(ErrorData::invalid_params(
                        format!("unknown prompt '{}'", p.name),
                        None,
                    ));
                };
                if !prompt
                    .def
                    .arguments
                    .iter()
                    .flatten()
                    .any(|a| a.name == req.argument)
                {
                    return Err(ErrorData::invalid_params(
                        format!("prompt '{}' has no argument '{}'", p.name, req.argument),
                        None,
                    ));
                }
                prompt.complete.clone()
            }
            Reference::Resource(r) => {
                let template = read(&self.server.inner.templates)
                    .iter()
                    .find(|t| t.def.uri_template == r.uri)
                    .cloned();
                let Some(template) = template else {
                    return Err(ErrorData::invalid_params(
                        format!("unknown resource template '{}'", r.uri),
                        None,
                    ));
                };
                if !template_variables(&r.uri).any(|v| v == req.argument) {
                    return Err(ErrorData::invalid_params(
                        format!("template '{}' has no variable '{}'", r.uri, req.argument),
                        None,
                    ));
                }
                template.complete.clone()
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unsupported completion reference {other:?}"),
                    None,
                ));
            }
        };
        let values = provider.map(|f| f(&req)).unwrap_or_default();
        Ok(completion_result(values))
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if !self.server.has_resource(&request.uri) {
            return Err(ErrorData::resource_not_found(
                format!("resource '{}' not found", request.uri),
                Some(serde_json::json!({"uri": request.uri})),
            ));
        }
        if self.server.is_subscribed(&request.uri, self.id) {
            return Ok(());
        }
        if self.subscriptions.fetch_add(1, Ordering::Relaxed) >= MAX_SUBSCRIPTIONS_PER_SESSION {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
            return Err(ErrorData::invalid_request(
                format!(
                    "this session already watches {MAX_SUBSCRIPTIONS_PER_SESSION} resources: unsubscribe from some first"
                ),
                None,
            ));
        }
        let added = self.server.subscribe(
            &request.uri,
            Subscriber::Session {
                session: self.id,
                peer: context.peer.clone(),
            },
        );
        if !added {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Unsubscribing from something not subscribed is not an error.
        if self.server.unsubscribe(&request.uri, self.id, false) {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::default();
        accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            uris.iter()
                .filter(|u| self.server.has_resource(u))
                .take(MAX_SUBSCRIPTIONS_PER_SESSION)
                .cloned()
                .collect()
        });
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        // Each listen stream is its own subscriber, removed when it ends.
        let session = self
            .server
            .inner
            .next_session
            .fetch_add(1, Ordering::Relaxed);
        for uri in &uris {
            self.server.subscribe(
                uri,
                Subscriber::Listen {
                    session,
                    sink: context.sink().clone(),
                },
            );
        }
        context.cancelled().await;
        for uri in &uris {
            self.server.unsubscribe(uri, session, true);
        }
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let list = read(&self.server.inner.resources)
            .values()
            .map(|r| r.def.clone())
            .collect();
        Ok(ListResourcesResult::with_all_items(list))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let res = read(&self.server.inner.resources)
            .get(&request.uri)
            .cloned();
        if res.is_none() {
            let templates = read(&self.server.inner.templates).clone();
            for t in templates {
                if let Some(vars) = t.matches(&request.uri) {
                    let contents = (t.read)(request.uri.clone(), vars, self.caller).await?;
                    return Ok(ReadResourceResponse::Complete(ReadResourceResult::new(
                        contents,
                    )));
                }
            }
        }
        let Some(res) = res else {
            return Err(ErrorData::resource_not_found(
                format!("resource '{}' not found", request.uri),
                Some(serde_json::json!({"uri": request.uri})),
            ));
        };
        let contents = (res.read)(self.caller).await?;
        Ok(ReadResourceResponse::Complete(ReadResourceResult::new(
            contents,
        )))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let list = read(&self.server.inner.templates)
            .iter()
            .map(|t| t.def.clone())
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(list))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let list = read(&self.server.inner.prompts)
            .values()
            .map(|p| p.def.clone())
            .collect();
        Ok(ListPromptsResult::with_all_items(list))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let prompt = read(&self.server.inner.prompts).get(&request.name).cloned();
        let Some(prompt) = prompt else {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt '{}'", request.name),
                None,
            ));
        };
        let args: JsonObject = request
            .arguments
            .clone()
            .map(|a| a.into_iter().collect())
            .unwrap_or_default();
        for required in prompt
            .def
            .arguments
            .iter()
            .flatten()
            .filter(|a| a.required == Some(true))
        {
            if !args.contains_key(&required.name) {
                return Err(ErrorData::invalid_params(
                    format!(
                        "prompt '{}' requires argument '{}'",
                        request.name, required.name
                    ),
                    None,
                ));
            }
        }
        let scope = format!(
            "prompts/get\n{}\n{}",
            request.name,
            caller_scope(self.caller)
        );
        let driven = self
            .drive(
                &context,
                &scope,
                request.input_responses.clone(),
                request.request_state.clone(),
                move |round| {
                    let r = (prompt.render)(args.clone(), &round);
                    Box::pin(async move { r })
                },
            )
            .await?;
        Ok(match driven {
            Outcome::Complete(r) => GetPromptResponse::Complete(r),
            Outcome::InputRequired(r) => GetPromptResponse::InputRequired(r),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::match_template;

    #[test]
    fn templates_match_segments() {
        let v = match_template("test://template/{id}/data", "test://template/123/data").unwrap();
        assert_eq!(v["id"], "123");
        assert!(match_template("test://template/{id}/data", "test://template//data").is_none());
        assert!(match_template("test://template/{id}/data", "test://template/1/2/data").is_none());
        assert!(match_template("test://template/{id}/data", "test://template/1/datax").is_none());
        let v = match_template("a/{x}.{y}", "a/f.txt").unwrap();
        assert_eq!((v["x"].as_str(), v["y"].as_str()), ("f", "txt"));
    }
}
