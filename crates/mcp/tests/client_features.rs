//! Logging, argument completion, resource subscriptions and server-to-client
//! requests (sampling, elicitation), through rmcp's own client over a peer
//! stream, in both protocol eras.
#![allow(deprecated)] // logging, sampling and resources/subscribe are SEP-2577-deprecated.

mod common;

use common::{HANG_GUARD, obj};
use p2p_foundation_identity::Keypair;
use p2p_foundation_mcp::{
    CallContext, Caller, ClientLink, InputNeeded, LogMessage, Logger, McpServer, Outcome, Prompt,
    Resource, ResourceTemplate, StreamLimits, Tool, complete_from,
    framing::LineTransport,
    rmcp::{
        self, ClientHandler, ErrorData, RoleClient,
        model::{
            ArgumentInfo, CallToolRequest, CallToolRequestParams, ClientCapabilities, ClientConfig,
            ClientRequest, CompleteRequestParams, CreateMessageRequestParams, CreateMessageResult,
            ElicitRequestParams, ElicitResult, ElicitationAction, Implementation, LoggingLevel,
            LoggingMessageNotificationParam, ProtocolVersion, Reference, RequestMetaObject,
            ResourceUpdatedNotificationParam, SamplingMessage, ServerResult, SetLevelRequestParams,
            SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
        },
        service::{NotificationContext, PeerRequestOptions, RequestContext, RunningService},
    },
    serve_stream, tool_result,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A client that records logs and resource updates, and answers sampling and
/// elicitation when it declares them.
#[derive(Clone)]
struct TestClient {
    logs: mpsc::UnboundedSender<LoggingMessageNotificationParam>,
    updates: mpsc::UnboundedSender<String>,
    capabilities: ClientCapabilities,
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            self.capabilities.clone(),
            Implementation::new("test-client", "0"),
        )
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.logs.send(params);
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.updates.send(params.uri);
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let asked = serde_json::to_value(&params.messages[0]).expect("json");
        let text = asked["content"]["text"].as_str().unwrap_or_default();
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(format!("you asked: {text}")),
            "test-model".into(),
        ))
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, ErrorData> {
        Ok(rmcp::model::ListRootsResult::new(vec![
            rmcp::model::Root::new("file:///test-root"),
        ]))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams {
            requested_schema, ..
        } = request
        else {
            return Err(ErrorData::invalid_params("expected a form", None));
        };
        let schema = serde_json::to_value(&requested_schema).expect("json");
        // Accept with every default the schema declares.
        let mut content = serde_json::Map::new();
        for (k, v) in schema["properties"].as_object().into_iter().flatten() {
            if let Some(d) = v.get("default") {
                content.insert(k.clone(), d.clone());
            }
        }
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(Value::Object(content)))
    }
}

struct Connected {
    client: RunningService<RoleClient, TestClient>,
    logs: mpsc::UnboundedReceiver<LoggingMessageNotificationParam>,
    updates: mpsc::UnboundedReceiver<String>,
}

async fn connect(server: &McpServer, capabilities: Value, stateless: bool) -> Connected {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (ar, aw) = tokio::io::split(a);
    let server = server.clone();
    let caller = Caller::Peer(Keypair::generate().peer_id());
    tokio::spawn(async move {
        let _ = serve_stream(&server, caller, ar, aw, StreamLimits::default()).await;
    });
    let (br, bw) = tokio::io::split(b);
    let (logs_tx, logs) = mpsc::unbounded_channel();
    let (updates_tx, updates) = mpsc::unbounded_channel();
    let handler = TestClient {
        logs: logs_tx,
        updates: updates_tx,
        capabilities: serde_json::from_value(capabilities).expect("capabilities"),
    };
    let transport = LineTransport::<RoleClient, _, _>::new(br, bw, StreamLimits::default());
    let lifecycle = if stateless {
        rmcp::ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        }
    } else {
        rmcp::ClientLifecycleMode::Initialize
    };
    let client = tokio::spawn(rmcp::serve_client_with_lifecycle(
        handler, transport, lifecycle,
    ))
    .await
    .expect("task")
    .expect("handshake");
    Connected {
        client,
        logs,
        updates,
    }
}

/// Call `name` with an optional per-request log level in `_meta`.
async fn call(
    c: &Connected,
    name: &str,
    args: Value,
    log_level: Option<LoggingLevel>,
) -> Result<rmcp::model::CallToolResult, rmcp::ServiceError> {
    let params = CallToolRequestParams::new(name.to_owned()).with_arguments(obj(args));
    let mut opts = PeerRequestOptions::no_options();
    if let Some(level) = log_level {
        let mut meta = RequestMetaObject::new();
        meta.set_log_level(level);
        opts = opts.with_meta(meta);
    }
    let handle = c
        .client
        .peer()
        .send_request_with_option(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            opts,
        )
        .await?;
    match handle.await_response().await? {
        ServerResult::CallToolResult(r) => Ok(r),
        other => panic!("unexpected {other:?}"),
    }
}

/// A tool that logs `call <n>` at debug, info, warning and error.
fn chatty_server() -> McpServer {
    let server = McpServer::new(Keypair::generate().peer_id());
    server
        .register_tool(
            Tool::new("chatty")
                .with_schema(json!({"type": "object", "properties": {"n": {"type": "integer"}}}))
                .handler(|call| async move {
                    let n = call.arguments["n"].as_i64().unwrap_or(0);
                    call.log.debug(json!({"call": n, "level": "debug"})).await;
                    call.log.info(json!({"call": n, "level": "info"})).await;
                    call.log
                        .warning(json!({"call": n, "level": "warning"}))
                        .await;
                    call.log.error(json!({"call": n, "level": "error"})).await;
                    Ok(tool_result::text("done"))
                }),
        )
        .expect("register");
    server
}

async fn recv_logs(
    rx: &mut mpsc::UnboundedReceiver<LoggingMessageNotificationParam>,
    n: usize,
) -> Vec<LoggingMessageNotificationParam> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = tokio::time::timeout(HANG_GUARD, rx.recv())
            .await
            .expect("hang guard")
            .expect("log channel open");
        got.push(m);
    }
    got
}

#[tokio::test]
async fn logging_follows_set_level_on_a_2025_session() {
    let server = chatty_server();
    let mut c = connect(&server, json!({}), false).await;
    // No level asked for: nothing is sent.
    call(&c, "chatty", json!({"n": 1}), None)
        .await
        .expect("call 1");
    c.client
        .peer()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Warning))
        .await
        .expect("setLevel");
    call(&c, "chatty", json!({"n": 2}), None)
        .await
        .expect("call 2");
    let got = recv_logs(&mut c.logs, 2).await;
    let seen: Vec<(i64, String)> = got
        .iter()
        .map(|m| {
            (
                m.data["call"].as_i64().unwrap_or(-1),
                m.data["level"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![(2, "warning".to_owned()), (2, "error".to_owned())],
        "only call 2, only warning and above"
    );
    assert_eq!(got[0].logger.as_deref(), Some("chatty"));
    assert_eq!(got[1].level, LoggingLevel::Error);

    // A per-request level overrides the session's.
    call(&c, "chatty", json!({"n": 3}), Some(LoggingLevel::Debug))
        .await
        .expect("call 3");
    let got = recv_logs(&mut c.logs, 4).await;
    assert!(got.iter().all(|m| m.data["call"] == 3), "{got:?}");
    assert_eq!(got[0].level, LoggingLevel::Debug);
    c.client.cancel().await.expect("close");
}

#[tokio::test]
async fn logging_on_2026_needs_the_request_log_level() {
    let server = chatty_server();
    let mut c = connect(&server, json!({}), true).await;
    // logging/setLevel was removed in 2026-07-28.
    let e = c
        .client
        .peer()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await;
    assert!(
        matches!(&e, Err(rmcp::ServiceError::McpError(d)) if d.code == rmcp::model::ErrorCode::METHOD_NOT_FOUND),
        "{e:?}"
    );
    call(&c, "chatty", json!({"n": 1}), None)
        .await
        .expect("call 1");
    call(&c, "chatty", json!({"n": 2}), Some(LoggingLevel::Info))
        .await
        .expect("call 2");
    let got = recv_logs(&mut c.logs, 3).await;
    assert!(got.iter().all(|m| m.data["call"] == 2), "{got:?}");
    let levels: Vec<_> = got.iter().map(|m| m.level).collect();
    assert_eq!(
        levels,
        vec![
            LoggingLevel::Info,
            LoggingLevel::Warning,
            LoggingLevel::Error
        ]
    );
    c.client.cancel().await.expect("close");
}

#[tokio::test]
async fn in_process_logger_filters_by_level() {
    let server = chatty_server();
    let (tx, mut rx) = mpsc::channel::<LogMessage>(16);
    let ctx = CallContext {
        log: Logger::channel(tx, LoggingLevel::Error),
        ..CallContext::default()
    };
    server
        .call_with(Caller::Local, "chatty", obj(json!({"n": 7})), None, ctx)
        .await
        .expect("call");
    let m = rx.try_recv().expect("the error message");
    assert_eq!(m.level, LoggingLevel::Error);
    assert_eq!(m.logger.as_deref(), Some("chatty"));
    assert!(rx.try_recv().is_err(), "nothing below error");
    assert!(!Logger::none().enabled(LoggingLevel::Emergency));
}

fn completing_server() -> McpServer {
    let server = McpServer::new(Keypair::generate().peer_id());
    server.register_prompt(
        Prompt::new("travel", "Plan a trip", |_args| {
            Ok(rmcp::model::GetPromptResult::new(vec![]))
        })
        .with_argument("city", "Destination", true)
        .with_argument("month", "When", false)
        .with_completion(|req| match req.argument.as_str() {
            "city" => complete_from(&["Paris", "Park City", "Prague", "Lisbon"], &req.value),
            // Context-aware: months depend on the city already chosen.
            "month" if req.context.get("city").map(String::as_str) == Some("Lisbon") => {
                complete_from(&["May", "June"], &req.value)
            }
            "month" => complete_from(&["March", "May"], &req.value),
            _ => Vec::new(),
        }),
    );
    server.register_prompt(Prompt::new("plain", "No completer", |_args| {
        Ok(rmcp::model::GetPromptResult::new(vec![]))
    }));
    server.register_resource_template(
        ResourceTemplate::new(
            "files://{name}",
            "files",
            |_uri, _vars, _caller| async move { Ok(vec![]) },
        )
        .with_completion(|req| (0..250).map(|i| format!("{}{i}", req.value)).collect()),
    );
    server
}

#[tokio::test]
async fn completion_for_prompt_arguments_and_template_variables() {
    let server = completing_server();
    for stateless in [false, true] {
        let c = connect(&server, json!({}), stateless).await;
        let peer = c.client.peer();
        let r = peer
            .complete(CompleteRequestParams::new(
                Reference::for_prompt("travel"),
                ArgumentInfo::new("city", "pa"),
            ))
            .await
            .expect("complete");
        assert_eq!(r.completion.values, vec!["Paris", "Park City"]);
        assert_eq!(r.completion.total, Some(2));
        assert_eq!(r.completion.has_more, Some(false));

        let mut req = CompleteRequestParams::new(
            Reference::for_prompt("travel"),
            ArgumentInfo::new("month", "m"),
        );
        req.context = Some(rmcp::model::CompletionContext::with_arguments(
            [("city".to_owned(), "Lisbon".to_owned())].into(),
        ));
        let r = peer.complete(req).await.expect("complete with context");
        assert_eq!(r.completion.values, vec!["May"]);

        // More than 100 candidates: the first 100, the total, and hasMore.
        let r = peer
            .complete(CompleteRequestParams::new(
                Reference::for_resource("files://{name}"),
                ArgumentInfo::new("name", "f"),
            ))
            .await
            .expect("template");
        assert_eq!(r.completion.values.len(), 100);
        assert_eq!(r.completion.values[0], "f0");
        assert_eq!(r.completion.total, Some(250));
        assert_eq!(r.completion.has_more, Some(true));

        // An argument the prompt does not declare is invalid.
        let r = peer
            .complete(CompleteRequestParams::new(
                Reference::for_prompt("plain"),
                ArgumentInfo::new("x", ""),
            ))
            .await;
        assert!(r.is_err(), "undeclared argument is invalid: {r:?}");

        for (reference, arg) in [
            (Reference::for_prompt("nope"), "city"),
            (Reference::for_prompt("travel"), "nope"),
            (Reference::for_resource("files://{other}"), "name"),
            (Reference::for_resource("files://{name}"), "nope"),
        ] {
            let e = peer
                .complete(CompleteRequestParams::new(
                    reference,
                    ArgumentInfo::new(arg, ""),
                ))
                .await;
            assert!(
                matches!(&e, Err(rmcp::ServiceError::McpError(d)) if d.code == rmcp::model::ErrorCode::INVALID_PARAMS),
                "{e:?}"
            );
        }
        c.client.cancel().await.expect("close");
    }
}

#[tokio::test]
async fn completion_without_a_provider_is_empty() {
    let server = McpServer::new(Keypair::generate().peer_id());
    server.register_prompt(
        Prompt::new("p", "d", |_args| {
            Ok(rmcp::model::GetPromptResult::new(vec![]))
        })
        .with_argument("a", "an argument", false),
    );
    let c = connect(&server, json!({}), false).await;
    let r = c
        .client
        .peer()
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("p"),
            ArgumentInfo::new("a", "x"),
        ))
        .await
        .expect("complete");
    assert!(r.completion.values.is_empty());
    assert_eq!(r.completion.total, Some(0));
    c.client.cancel().await.expect("close");
}

fn watched_server() -> McpServer {
    let server = McpServer::new(Keypair::generate().peer_id());
    server.register_resource(Resource::text("test://watched", "watched", "v1"));
    server.register_resource_template(ResourceTemplate::new(
        "test://doc/{id}",
        "doc",
        |_uri, _vars, _caller| async move { Ok(vec![]) },
    ));
    server
}

async fn recv_update(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(HANG_GUARD, rx.recv())
        .await
        .expect("hang guard")
        .expect("update channel open")
}

#[tokio::test]
async fn resource_subscriptions_on_a_2025_session() {
    let server = watched_server();
    let mut a = connect(&server, json!({}), false).await;
    let mut b = connect(&server, json!({}), false).await;
    for c in [&a, &b] {
        c.client
            .peer()
            .subscribe(SubscribeRequestParams::new("test://watched"))
            .await
            .expect("subscribe");
    }
    // Subscribing twice on one session is one subscription.
    a.client
        .peer()
        .subscribe(SubscribeRequestParams::new("test://watched"))
        .await
        .expect("subscribe again");
    assert_eq!(server.subscriber_count("test://watched"), 2);
    b.client
        .peer()
        .subscribe(SubscribeRequestParams::new("test://doc/7"))
        .await
        .expect("template URIs can be watched");
    let e = a
        .client
        .peer()
        .subscribe(SubscribeRequestParams::new("test://missing"))
        .await;
    assert!(e.is_err(), "unknown resource: {e:?}");

    assert_eq!(server.notify_resource_updated("test://watched").await, 2);
    assert_eq!(recv_update(&mut a.updates).await, "test://watched");
    assert_eq!(recv_update(&mut b.updates).await, "test://watched");

    a.client
        .peer()
        .unsubscribe(UnsubscribeRequestParams::new("test://watched"))
        .await
        .expect("unsubscribe");
    assert_eq!(server.notify_resource_updated("test://watched").await, 1);
    assert_eq!(server.notify_resource_updated("test://doc/7").await, 1);
    assert_eq!(recv_update(&mut b.updates).await, "test://watched");
    assert_eq!(recv_update(&mut b.updates).await, "test://doc/7");

    // A subscriber whose connection is gone is dropped on the next update.
    b.client.cancel().await.expect("close");
    let mut delivered = server.notify_resource_updated("test://watched").await;
    for _ in 0..100 {
        if delivered == 0 {
            break;
        }
        tokio::task::yield_now().await;
        delivered = server.notify_resource_updated("test://watched").await;
    }
    assert_eq!(delivered, 0);
    assert_eq!(server.subscriber_count("test://watched"), 0);
    assert!(a.updates.try_recv().is_err(), "a unsubscribed");
    a.client.cancel().await.expect("close");
}

#[tokio::test]
async fn subscriptions_per_session_are_bounded() {
    let server = watched_server();
    let c = connect(&server, json!({}), false).await;
    let peer = c.client.peer();
    let max = p2p_foundation_mcp::server::MAX_SUBSCRIPTIONS_PER_SESSION;
    for i in 0..max {
        peer.subscribe(SubscribeRequestParams::new(format!("test://doc/{i}")))
            .await
            .expect("within the limit");
    }
    // Re-subscribing to a watched URI is not a new subscription.
    peer.subscribe(SubscribeRequestParams::new("test://doc/0"))
        .await
        .expect("already watched");
    let e = peer
        .subscribe(SubscribeRequestParams::new("test://watched"))
        .await;
    assert!(e.is_err(), "over the limit: {e:?}");
    peer.unsubscribe(UnsubscribeRequestParams::new("test://doc/0"))
        .await
        .expect("unsubscribe");
    peer.subscribe(SubscribeRequestParams::new("test://watched"))
        .await
        .expect("room again");
    assert_eq!(server.subscriber_count("test://watched"), 1);
    c.client.cancel().await.expect("close");
}

#[tokio::test]
async fn resource_subscriptions_through_listen_on_2026() {
    let server = watched_server();
    let c = connect(&server, json!({}), true).await;
    let mut filter = SubscriptionFilter::default();
    filter.resource_subscriptions = Some(vec!["test://watched".into(), "test://missing".into()]);
    let mut sub = c.client.peer().listen(filter).await.expect("listen");
    assert_eq!(
        sub.acknowledged().resource_subscriptions,
        Some(vec!["test://watched".to_owned()]),
        "unknown resources are not accepted"
    );
    assert_eq!(server.notify_resource_updated("test://watched").await, 1);
    let n = tokio::time::timeout(HANG_GUARD, sub.next())
        .await
        .expect("hang guard")
        .expect("stream")
        .expect("a notification");
    let v = serde_json::to_value(&n).expect("json");
    assert_eq!(v["params"]["uri"], "test://watched", "{v}");
    sub.cancel().await.expect("cancel");
    // The listen stream's subscription ends with it.
    let mut left = server.subscriber_count("test://watched");
    for _ in 0..1000 {
        if left == 0 {
            break;
        }
        tokio::task::yield_now().await;
        left = server.subscriber_count("test://watched");
    }
    assert_eq!(left, 0);
    c.client.cancel().await.expect("close");
}

fn asking_server() -> McpServer {
    let server = McpServer::new(Keypair::generate().peer_id());
    server
        .register_tool(Tool::new("ask_llm").handler(|call| async move {
            let params =
                CreateMessageRequestParams::new(vec![SamplingMessage::user_text("2+2?")], 50);
            let r = call.client.create_message(params).await?;
            let v = serde_json::to_value(&r.message).expect("json");
            Ok(tool_result::text(
                v["content"]["text"].as_str().unwrap_or_default(),
            ))
        }))
        .expect("register");
    server
        .register_tool(Tool::new("ask_user").handler(|call| async move {
            let r = call
                .client
                .elicit(
                    "Your details?",
                    json!({"type": "object", "properties": {
                        "name": {"type": "string", "default": "Ada"},
                        "age": {"type": "integer", "default": 36}
                    }}),
                )
                .await?;
            Ok(tool_result::structured(json!({
                "action": r.action,
                "content": r.content,
            })))
        }))
        .expect("register");
    server
}

#[tokio::test]
async fn tools_ask_the_client_for_sampling_and_elicitation() {
    let server = asking_server();
    let c = connect(&server, json!({"sampling": {}, "elicitation": {}}), false).await;
    let r = call(&c, "ask_llm", json!({}), None).await.expect("ask_llm");
    let text = serde_json::to_value(&r.content[0]).expect("json");
    assert_eq!(text["text"], "you asked: 2+2?");
    let r = call(&c, "ask_user", json!({}), None)
        .await
        .expect("ask_user");
    assert_eq!(
        r.structured_content,
        Some(json!({"action": "accept", "content": {"name": "Ada", "age": 36}}))
    );
    c.client.cancel().await.expect("close");
}

#[tokio::test]
async fn undeclared_client_capabilities_are_missing_capability_errors() {
    let server = asking_server();
    for (stateless, caps) in [
        (false, json!({})),
        (true, json!({})),
        (false, json!({"elicitation": {}})),
    ] {
        let c = connect(&server, caps, stateless).await;
        let e = call(&c, "ask_llm", json!({}), None).await;
        let Err(rmcp::ServiceError::McpError(d)) = &e else {
            panic!("expected an error: {e:?}");
        };
        assert_eq!(
            d.code,
            rmcp::model::ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        );
        let data = d.data.clone().unwrap_or_default();
        assert!(
            data["requiredCapabilities"]["sampling"].is_object(),
            "{data}"
        );
        c.client.cancel().await.expect("close");
    }
    // Declared on 2026-07-28: still no server-to-client requests.
    let c = connect(&server, json!({"sampling": {}}), true).await;
    let e = call(&c, "ask_llm", json!({}), None).await;
    assert!(
        matches!(&e, Err(rmcp::ServiceError::McpError(d)) if d.code == rmcp::model::ErrorCode::INVALID_REQUEST),
        "{e:?}"
    );
    c.client.cancel().await.expect("close");
    // In-process calls have no client to ask.
    let e = server
        .call_with(
            Caller::Local,
            "ask_llm",
            obj(json!({})),
            None,
            CallContext {
                client: ClientLink::none(),
                ..CallContext::default()
            },
        )
        .await;
    assert!(e.is_err());
}

/// A multi-round tool: asks the user's name (round 1, with sealed state),
/// then their colour (round 2), then answers.
fn multi_round_server() -> McpServer {
    let server = McpServer::new(Keypair::generate().peer_id());
    let ask = |key: &str, field: &str| {
        InputNeeded::new().elicit(
            key,
            format!("{field}?"),
            json!({"type": "object", "properties": {field: {"type": "string", "default": format!("my {field}")}}}),
        )
    };
    server
        .register_tool(Tool::new("survey").handler(move |call| async move {
            let state = call.input.state().cloned().unwrap_or_default();
            let answer = |key: &str, field: &str| {
                call.input
                    .elicitation(key)
                    .and_then(|r| r.content)
                    .and_then(|c| c[field].as_str().map(str::to_owned))
            };
            if state["round"] == 2
                && let Some(colour) = answer("colour", "colour")
            {
                let name = state["name"].as_str().unwrap_or_default();
                return Ok(tool_result::text(format!("{name} likes {colour}")).into());
            }
            if state["round"] == 1
                && let Some(name) = answer("name", "name")
            {
                return Ok(Outcome::InputRequired(
                    ask("colour", "colour").with_state(json!({"round": 2, "name": name})),
                ));
            }
            Ok(Outcome::InputRequired(
                ask("name", "name").with_state(json!({"round": 1})),
            ))
        }))
        .expect("register");
    server
        .register_tool(Tool::new("where").handler(|call| async move {
            Ok(match call.input.roots("roots") {
                Some(r) => tool_result::text(r.roots[0].uri.clone()).into(),
                None => Outcome::InputRequired(InputNeeded::new().list_roots("roots")),
            })
        }))
        .expect("register");
    server.register_prompt(Prompt::multi_round(
        "briefing",
        "Asks for a topic first",
        |_args, round| {
            Ok(
                match round
                    .elicitation("topic")
                    .and_then(|r| r.content)
                    .and_then(|c| c["topic"].as_str().map(str::to_owned))
                {
                    Some(t) => Outcome::Complete(rmcp::model::GetPromptResult::new(vec![
                        rmcp::model::PromptMessage::new_text(
                            rmcp::model::Role::User,
                            format!("Brief me on {t}"),
                        ),
                    ])),
                    None => Outcome::InputRequired(InputNeeded::new().elicit(
                        "topic",
                        "Topic?",
                        json!({"type": "object", "properties": {"topic": {"type": "string", "default": "rust"}}}),
                    )),
                },
            )
        },
    ));
    server
}

fn accept(content: Value) -> Value {
    json!({"action": "accept", "content": content})
}

#[tokio::test]
async fn multi_round_tool_on_2026_round_by_round() {
    let server = multi_round_server();
    let c = connect(&server, json!({"elicitation": {}, "roots": {}}), true).await;
    let peer = c.client.peer();
    let once = |params: CallToolRequestParams| async {
        match peer.call_tool_once(params).await.expect("call") {
            rmcp::model::CallToolResponse::InputRequired(r) => Err(r),
            rmcp::model::CallToolResponse::Complete(r) => Ok(r),
            other => panic!("unexpected {other:?}"),
        }
    };
    let r1 = once(CallToolRequestParams::new("survey"))
        .await
        .expect_err("round 1 asks");
    let requests = r1.input_requests.clone().expect("requests");
    assert!(requests.contains_key("name"));
    let state1 = r1.request_state.clone().expect("sealed state");
    assert!(!state1.contains("round"), "state is sealed, not plain JSON");

    // Tampered, or replayed on another tool: rejected.
    let mut tampered = state1.clone();
    tampered.insert(
        2,
        if tampered.as_bytes()[2] == b'0' {
            '1'
        } else {
            '0'
        },
    );
    tampered.remove(3);
    let e = peer
        .call_tool_once(
            CallToolRequestParams::new("survey")
                .with_input_responses([("name".to_owned(), accept(json!({"name": "Ada"})))].into())
                .with_request_state(tampered),
        )
        .await;
    assert!(
        matches!(&e, Err(rmcp::ServiceError::McpError(d)) if d.code == rmcp::model::ErrorCode::INVALID_PARAMS),
        "{e:?}"
    );
    let e = peer
        .call_tool_once(CallToolRequestParams::new("where").with_request_state(state1.clone()))
        .await;
    assert!(e.is_err(), "state bound to its tool: {e:?}");
    // A response that is not a result object: invalid params.
    let e = peer
        .call_tool_once(
            CallToolRequestParams::new("survey")
                .with_input_responses([("name".to_owned(), json!(12345))].into()),
        )
        .await;
    assert!(e.is_err(), "{e:?}");

    let r2 = once(
        CallToolRequestParams::new("survey")
            .with_input_responses([("name".to_owned(), accept(json!({"name": "Ada"})))].into())
            .with_request_state(state1.clone()),
    )
    .await
    .expect_err("round 2 asks again");
    assert!(r2.input_requests.expect("requests").contains_key("colour"));
    let state2 = r2.request_state.expect("state");
    assert_ne!(state2, state1);
    let done = once(
        CallToolRequestParams::new("survey")
            .with_input_responses([("colour".to_owned(), accept(json!({"colour": "teal"})))].into())
            .with_request_state(state2),
    )
    .await
    .expect("round 3 completes");
    let text = serde_json::to_value(&done.content[0]).expect("json");
    assert_eq!(text["text"], "Ada likes teal");

    // rmcp's own client drives the rounds through its handler.
    let r = c
        .client
        .call_tool(CallToolRequestParams::new("survey"))
        .await
        .expect("driven by the client");
    let text = serde_json::to_value(&r.content[0]).expect("json");
    assert_eq!(text["text"], "my name likes my colour");
    c.client.cancel().await.expect("close");
}

#[tokio::test]
async fn multi_round_handlers_serve_2025_sessions_by_asking_directly() {
    let server = multi_round_server();
    let c = connect(&server, json!({"elicitation": {}, "roots": {}}), false).await;
    let r = call(&c, "survey", json!({}), None).await.expect("survey");
    let text = serde_json::to_value(&r.content[0]).expect("json");
    assert_eq!(text["text"], "my name likes my colour");
    let r = call(&c, "where", json!({}), None).await.expect("where");
    let text = serde_json::to_value(&r.content[0]).expect("json");
    assert_eq!(text["text"], "file:///test-root");
    let p = c
        .client
        .peer()
        .get_prompt(rmcp::model::GetPromptRequestParams::new("briefing"))
        .await
        .expect("prompt");
    assert!(
        serde_json::to_string(&p.messages)
            .expect("json")
            .contains("Brief me on rust")
    );
    c.client.cancel().await.expect("close");
}

#[tokio::test]
async fn multi_round_prompt_and_capabilities_on_2026() {
    let server = multi_round_server();
    let c = connect(&server, json!({"elicitation": {}}), true).await;
    let peer = c.client.peer();
    match peer
        .get_prompt_once(rmcp::model::GetPromptRequestParams::new("briefing"))
        .await
        .expect("prompt")
    {
        rmcp::model::GetPromptResponse::InputRequired(r) => {
            assert!(r.input_requests.expect("requests").contains_key("topic"));
        }
        other => panic!("expected input required: {other:?}"),
    }
    let p = c
        .client
        .get_prompt(rmcp::model::GetPromptRequestParams::new("briefing"))
        .await
        .expect("driven");
    assert!(
        serde_json::to_string(&p.messages)
            .expect("json")
            .contains("Brief me on rust")
    );
    // `where` needs roots, which this client did not declare.
    let e = peer
        .call_tool_once(CallToolRequestParams::new("where"))
        .await;
    let Err(rmcp::ServiceError::McpError(d)) = &e else {
        panic!("expected -32021: {e:?}");
    };
    assert_eq!(
        d.code,
        rmcp::model::ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
    );
    assert!(d.data.clone().unwrap_or_default()["requiredCapabilities"]["roots"].is_object());
    c.client.cancel().await.expect("close");

    // In process: one round at a time.
    let out = server
        .call_round(
            Caller::Local,
            "where",
            obj(json!({})),
            None,
            CallContext::default(),
            p2p_foundation_mcp::InputRound::first(),
        )
        .await
        .expect("round");
    assert!(matches!(out, Outcome::InputRequired(ref n) if n.requests().contains_key("roots")));
    assert!(
        server
            .call(
                Caller::Local,
                "where",
                obj(json!({})),
                None,
                Default::default(),
                Default::default()
            )
            .await
            .is_err(),
        "an in-process caller cannot answer"
    );
}
