//! A node's MCP gateway, for ordinary MCP clients and the interop tests.
//!
//! ```text
//! cargo run -p p2p-foundation-mcp --bin p2pf-mcp-gateway -- --stdio
//! cargo run -p p2p-foundation-mcp --bin p2pf-mcp-gateway -- --http 127.0.0.1:8080 --network
//! ```
//!
//! It serves the node's own tools (a demo set, plus the fixtures the official
//! conformance suite calls by name). With `--network` it also starts two
//! more nodes in-process, reachable over loopback TCP peer streams, which
//! publish a `generate_text` service; the gateway lists their tools
//! namespaced by provider (`<peer>.generate_text`, `any.generate_text`) and
//! routes calls to them over the peer streams.
//!
//! In HTTP mode it prints `MCP_GATEWAY_URL=<url>` on stdout once listening.

#![allow(deprecated)] // sampling and logging are deprecated by SEP-2577 in 2026-07-28; served for 2025-11-25 clients.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use p2p_foundation_identity::Keypair;
use p2p_foundation_mcp::{
    Discovery, Gateway, HttpConfig, InputNeeded, InputRound, McpServer, MemoryRegistry,
    NetworkTools, Outcome, Prompt, Query, Resource, ResourceTemplate, Router, ServicePublisher,
    StreamLimits, Tool, complete_from,
    rmcp::model::{
        ContentBlock, CreateMessageRequestParams, ElicitationAction, GetPromptResult,
        PromptMessage, ResourceContents, Role, SamplingMessage,
    },
    tcp, tool_result,
};
use serde_json::{Value, json};

const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV_EMPTY: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=";

fn demo_tools(server: &McpServer) -> Result<(), Box<dyn std::error::Error>> {
    server.register_tool(
        Tool::new("echo")
            .with_description("Returns its arguments as structured content")
            .handler(
                |call| async move { Ok(tool_result::structured(Value::Object(call.arguments))) },
            ),
    )?;
    server.register_tool(
        Tool::new("add")
            .with_description("Adds two integers")
            .with_tags(["math"])
            .with_schema(json!({
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"]
            }))
            .with_output_schema(json!({
                "type": "object",
                "properties": {"sum": {"type": "integer"}},
                "required": ["sum"]
            }))
            .handler(|call| async move {
                let a = call.arguments["a"].as_i64().unwrap_or(0);
                let b = call.arguments["b"].as_i64().unwrap_or(0);
                Ok(tool_result::structured(json!({"sum": a + b})))
            }),
    )?;
    server.register_tool(
        Tool::new("fail")
            .with_description("Always fails at the tool level (isError)")
            .handler(|_call| async move { Ok(tool_result::error("the tool failed on purpose")) }),
    )?;
    server.register_tool(
        Tool::new("count")
            .with_description("Counts to n, reporting progress after each step")
            .with_schema(json!({
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 100}},
                "required": ["n"]
            }))
            .handler(|call| async move {
                let n = call.arguments["n"].as_u64().unwrap_or(1);
                for i in 1..=n {
                    call.progress
                        .report(i as f64, Some(n as f64), Some(format!("step {i}")))
                        .await;
                }
                Ok(tool_result::text(format!("counted to {n}")))
            }),
    )?;
    server.register_resource(
        Resource::text("p2pf://readme", "readme", "hello from a p2p node")
            .with_description("A text resource"),
    );
    // A resource that changes: `bump` increments it and notifies subscribers.
    let counter = Arc::new(AtomicU64::new(0));
    let c = counter.clone();
    server.register_resource(
        Resource::dynamic("p2pf://counter", "counter", move |_caller| {
            let n = c.load(Ordering::Relaxed);
            async move {
                Ok(vec![ResourceContents::text(
                    n.to_string(),
                    "p2pf://counter",
                )])
            }
        })
        .with_mime_type("text/plain")
        .with_description("A counter; subscribe to hear when `bump` changes it"),
    );
    // The handler holds the server to publish the update (a reference cycle
    // that lives as long as the process, as the server does here).
    let publisher = server.clone();
    server.register_tool(
        Tool::new("bump")
            .with_description("Increments p2pf://counter and notifies its subscribers")
            .handler(move |call| {
                let counter = counter.clone();
                let publisher = publisher.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    let notified = publisher.notify_resource_updated("p2pf://counter").await;
                    call.log.info(format!("counter is now {n}")).await;
                    Ok(tool_result::structured(
                        json!({"counter": n, "notified": notified}),
                    ))
                }
            }),
    )?;
    server.register_prompt(
        Prompt::new("greet", "Greets someone", |args| {
            let who = args
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("stranger")
                .to_owned();
            Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                format!("Say hello to {who}"),
            )]))
        })
        .with_argument("name", "Who to greet", true)
        .with_completion(|req| complete_from(&["alice", "alan", "bob"], &req.value)),
    );
    Ok(())
}

/// The fixtures the official conformance suite (`@modelcontextprotocol/conformance`)
/// calls by name, built with the crate's ordinary public API.
fn conformance_fixtures(server: &McpServer) -> Result<(), Box<dyn std::error::Error>> {
    let fixed = |name: &str, content: Vec<ContentBlock>| {
        Tool::new(name)
            .with_description(format!("Conformance fixture {name}"))
            .handler(move |_call| {
                let content = content.clone();
                async move {
                    Ok(p2p_foundation_mcp::rmcp::model::CallToolResult::success(
                        content,
                    ))
                }
            })
    };
    server.register_tool(fixed(
        "test_simple_text",
        vec![ContentBlock::text(
            "This is a simple text response for testing.",
        )],
    ))?;
    server.register_tool(fixed(
        "test_image_content",
        vec![ContentBlock::image(PNG_1X1, "image/png")],
    ))?;
    server.register_tool(fixed(
        "test_audio_content",
        vec![ContentBlock::audio(WAV_EMPTY, "audio/wav")],
    ))?;
    let embedded = ResourceContents::text(
        "This is an embedded resource content.",
        "test://embedded-resource",
    )
    .with_mime_type("text/plain");
    server.register_tool(fixed(
        "test_embedded_resource",
        vec![ContentBlock::resource(embedded.clone())],
    ))?;
    server.register_tool(fixed(
        "test_multiple_content_types",
        vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(PNG_1X1, "image/png"),
            ContentBlock::resource(
                ResourceContents::text(
                    r#"{"test":"data","value":123}"#,
                    "test://mixed-content-resource",
                )
                .with_mime_type("application/json"),
            ),
        ],
    ))?;
    server.register_tool(
        Tool::new("test_error_handling")
            .with_description("Returns isError")
            .handler(|_call| async move {
                Ok(tool_result::error(
                    "This tool intentionally returns an error for testing",
                ))
            }),
    )?;
    server.register_tool(
        Tool::new("test_tool_with_progress")
            .with_description("Reports progress")
            .handler(|call| async move {
                for (i, p) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    call.progress.report(p, Some(100.0), None).await;
                }
                Ok(tool_result::text("Progress test completed"))
            }),
    )?;
    // SEP-2243: `region` is mirrored into an `Mcp-Param-Region` HTTP header,
    // which the Streamable HTTP server checks against the body.
    server.register_tool(
        Tool::new("test_custom_headers")
            .with_description("Echoes a region that travels as an Mcp-Param header too")
            .with_schema(json!({
                "type": "object",
                "properties": {
                    "region": {"type": "string", "description": "Routing region", "x-mcp-header": "Region"},
                    "query": {"type": "string", "description": "Not mirrored"}
                },
                "required": ["region"]
            }))
            .handler(|call| async move {
                let region = call.arguments["region"].as_str().unwrap_or_default().to_owned();
                Ok(tool_result::text(format!("region: {region}")))
            }),
    )?;
    // SEP-1699 polling: ends its SSE response stream mid-call; the client
    // reconnects with Last-Event-ID and receives the result from the session.
    server.register_tool(
        Tool::new("test_reconnection")
            .with_description(
                "Closes its SSE response stream mid-call; the result follows on reconnection",
            )
            .handler(|call| async move {
                let closed = call
                    .stream
                    .close_sse_stream(Duration::from_millis(500))
                    .await
                    && call.stream.reconnected(Duration::from_secs(30)).await;
                Ok(tool_result::text(if closed {
                    "Reconnection test completed: the result outlived its stream"
                } else {
                    "Reconnection test completed: no SSE stream to close, or no reconnection"
                }))
            }),
    )?;
    // Logs three `info` messages ~50 ms apart (tools-call-with-logging); the
    // library sends them only at the level the client asked for.
    server.register_tool(
        Tool::new("test_tool_with_logging")
            .with_description("Sends log messages during execution")
            .handler(|call| async move {
                call.log.info("Tool execution started").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                call.log.info("Tool processing data").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                call.log.info("Tool execution completed").await;
                Ok(tool_result::text("Logging test completed"))
            }),
    )?;
    // The 2026-07-28 diagnostic: it always tries to log; a request without
    // `_meta["io.modelcontextprotocol/logLevel"]` must see no message.
    server.register_tool(
        Tool::new("test_logging_tool")
            .with_description("Logs at every level; the caller's log level decides what is sent")
            .handler(|call| async move {
                call.log.debug("debug message from test_logging_tool").await;
                call.log.info("info message from test_logging_tool").await;
                call.log.error("error message from test_logging_tool").await;
                Ok(tool_result::text("Logging tool completed"))
            }),
    )?;
    // Server-to-client requests through the call context (2025-11-25).
    server.register_tool(
        Tool::new("test_sampling")
            .with_description("Asks the client's LLM to answer a prompt (sampling/createMessage)")
            .with_schema(json!({
                "type": "object",
                "properties": {"prompt": {"type": "string"}},
                "required": ["prompt"]
            }))
            .handler(|call| async move {
                let prompt = call.arguments["prompt"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let params =
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
                let answer = call.client.create_message(params).await?;
                let text = serde_json::to_value(&answer.message)
                    .ok()
                    .and_then(|m| m["content"]["text"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                Ok(tool_result::text(format!("LLM response: {text}")))
            }),
    )?;
    let elicit_tool =
        |name: &str, description: &str, message: Option<&'static str>, schema: Value| {
            Tool::new(name)
                .with_description(description)
                .with_schema(if message.is_some() {
                    json!({"type": "object"})
                } else {
                    json!({
                        "type": "object",
                        "properties": {"message": {"type": "string"}},
                        "required": ["message"]
                    })
                })
                .handler(move |call| {
                    let schema = schema.clone();
                    async move {
                        let message = message.map(str::to_owned).unwrap_or_else(|| {
                            call.arguments["message"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned()
                        });
                        let r = call.client.elicit(message, schema).await?;
                        let action = serde_json::to_value(r.action).unwrap_or_default();
                        let content = r.content.clone().unwrap_or_default();
                        Ok(tool_result::text(format!(
                            "Elicitation completed: action={}, content={content}",
                            action.as_str().unwrap_or_default()
                        )))
                    }
                })
        };
    server.register_tool(elicit_tool(
        "test_elicitation",
        "Asks the user for a username and email (elicitation/create)",
        None,
        json!({
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"}
            },
            "required": ["username", "email"]
        }),
    ))?;
    server.register_tool(elicit_tool(
        "test_elicitation_sep1034_defaults",
        "Elicitation with a default for every primitive type (SEP-1034)",
        Some("Please review and update the form fields with defaults"),
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {"type": "string", "description": "User status",
                    "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "description": "Verification status", "default": true}
            },
            "required": []
        }),
    ))?;
    server.register_tool(elicit_tool(
        "test_elicitation_sep1330_enums",
        "Elicitation with the five enum forms (SEP-1330)",
        Some("Please select options from the enum fields"),
        json!({
            "type": "object",
            "properties": {
                "untitledSingle": {"type": "string", "description": "Untitled single-select",
                    "enum": ["option1", "option2", "option3"]},
                "titledSingle": {"type": "string", "description": "Titled single-select",
                    "oneOf": [{"const": "value1", "title": "First Option"},
                              {"const": "value2", "title": "Second Option"},
                              {"const": "value3", "title": "Third Option"}]},
                "legacyEnum": {"type": "string", "description": "Legacy titled enum",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"]},
                "untitledMulti": {"type": "array", "description": "Untitled multi-select",
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                "titledMulti": {"type": "array", "description": "Titled multi-select",
                    "items": {"anyOf": [{"const": "value1", "title": "First Choice"},
                                        {"const": "value2", "title": "Second Choice"},
                                        {"const": "value3", "title": "Third Choice"}]}}
            },
            "required": []
        }),
    ))?;
    server.register_tool(
        Tool::new("json_schema_2020_12_tool")
            .with_description("Tool with JSON Schema 2020-12 features")
            .with_schema(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {
                    "name": {"type": "string"},
                    "address": {"$ref": "#/$defs/address"},
                    "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                    "phone": {"type": "string"},
                    "email": {"type": "string"}
                },
                "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
                "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
                "then": {"required": ["phone"]},
                "else": {"required": ["email"]},
                "additionalProperties": false
            }))
            .handler(|_call| async move { Ok(tool_result::text("ok")) }),
    )?;
    server.register_resource(
        Resource::text(
            "test://static-text",
            "static-text",
            "This is the content of the static text resource.",
        )
        .with_description("A static text resource for testing"),
    );
    server.register_resource(
        Resource::dynamic(
            "test://static-binary",
            "static-binary",
            |_caller| async move {
                Ok(vec![
                    ResourceContents::blob(PNG_1X1, "test://static-binary")
                        .with_mime_type("image/png"),
                ])
            },
        )
        .with_mime_type("image/png")
        .with_description("A static binary resource (PNG) for testing"),
    );
    server.register_resource_template(
        ResourceTemplate::new(
            "test://template/{id}/data",
            "template-data",
            |uri, vars, _caller| async move {
                let id = vars.get("id").cloned().unwrap_or_default();
                let body =
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                Ok(vec![
                    ResourceContents::text(body.to_string(), uri)
                        .with_mime_type("application/json"),
                ])
            },
        )
        .with_description("A resource template with an id parameter")
        .with_mime_type("application/json")
        .with_completion(|req| complete_from(&["123", "124", "200"], &req.value)),
    );
    server.register_prompt(Prompt::new(
        "test_simple_prompt",
        "A simple prompt without arguments",
        |_args| {
            Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )]))
        },
    ));
    server.register_prompt(
        Prompt::new(
            "test_prompt_with_arguments",
            "A prompt with required arguments",
            |args| {
                let a1 = args
                    .get("arg1")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let a2 = args
                    .get("arg2")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{a1}', arg2='{a2}'"),
                )]))
            },
        )
        .with_argument("arg1", "First test argument", true)
        .with_argument("arg2", "Second test argument", true)
        .with_completion(|req| {
            let words = ["paris", "park", "party", "test", "testing", "tested"];
            complete_from(&words, &req.value)
        }),
    );
    // A resource clients subscribe to (resources-subscribe / -unsubscribe).
    server.register_resource(
        Resource::text(
            "test://watched-resource",
            "watched-resource",
            "A resource whose updates can be subscribed to.",
        )
        .with_description("A resource for subscription tests"),
    );
    server.register_prompt(
        Prompt::new(
            "test_prompt_with_embedded_resource",
            "A prompt with an embedded resource",
            |args| {
                let uri = args
                    .get("resourceUri")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let res = ResourceContents::text("Embedded resource content for testing.", uri)
                    .with_mime_type("text/plain");
                Ok(GetPromptResult::new(vec![
                    PromptMessage::new(Role::User, ContentBlock::resource(res)),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ]))
            },
        )
        .with_argument("resourceUri", "URI of the resource to embed", true),
    );
    server.register_prompt(Prompt::new(
        "test_prompt_with_image",
        "A prompt with an image",
        |_args| {
            Ok(GetPromptResult::new(vec![
                PromptMessage::new(Role::User, ContentBlock::image(PNG_1X1, "image/png")),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ]))
        },
    ));
    Ok(())
}

fn name_schema(field: &str) -> Value {
    json!({"type": "object", "properties": {field: {"type": "string"}}, "required": [field]})
}

/// The accepted content of elicitation `key` in this round, if any.
fn accepted(round: &InputRound, key: &str) -> Option<serde_json::Map<String, Value>> {
    let r = round.elicitation(key)?;
    (r.action == ElicitationAction::Accept)
        .then(|| r.content.and_then(|c| c.as_object().cloned()))
        .flatten()
}

fn sampled_text(round: &InputRound, key: &str) -> Option<String> {
    let r = round.sampling(key)?;
    let v = serde_json::to_value(&r.message).ok()?;
    v["content"]["text"].as_str().map(str::to_owned)
}

/// Multi-round (SEP-2322) fixtures: each asks for client input with
/// `InputNeeded` and finishes when a later round carries the answers. On a
/// 2025-11-25 session the server asks the client itself and reruns them.
fn multi_round_fixtures(server: &McpServer) -> Result<(), Box<dyn std::error::Error>> {
    let tool =
        |name: &str, description: &str| Tool::new(name).with_description(description.to_owned());
    server.register_tool(
        tool(
            "test_input_required_result_elicitation",
            "Asks the user's name, then greets them",
        )
        .handler(|call| async move {
            Ok(match accepted(&call.input, "user_name") {
                Some(c) => {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("stranger");
                    tool_result::text(format!("Hello, {name}!")).into()
                }
                None => Outcome::InputRequired(InputNeeded::new().elicit(
                    "user_name",
                    "What is your name?",
                    name_schema("name"),
                )),
            })
        }),
    )?;
    server.register_tool(
        tool(
            "test_input_required_result_sampling",
            "Asks the client's LLM a question",
        )
        .handler(|call| async move {
            Ok(match sampled_text(&call.input, "capital_question") {
                Some(answer) => tool_result::text(format!("LLM said: {answer}")).into(),
                None => Outcome::InputRequired(InputNeeded::new().sample(
                    "capital_question",
                    CreateMessageRequestParams::new(
                        vec![SamplingMessage::user_text("What is the capital of France?")],
                        100,
                    ),
                )),
            })
        }),
    )?;
    server.register_tool(
        tool(
            "test_input_required_result_list_roots",
            "Lists the client's roots",
        )
        .handler(|call| async move {
            Ok(match call.input.roots("client_roots") {
                Some(r) => {
                    let uris: Vec<String> = r.roots.iter().map(|r| r.uri.clone()).collect();
                    tool_result::text(format!("Client roots: {}", uris.join(", "))).into()
                }
                None => Outcome::InputRequired(InputNeeded::new().list_roots("client_roots")),
            })
        }),
    )?;
    let confirm_schema =
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});
    for (name, marker) in [
        (
            "test_input_required_result_request_state",
            "confirm-request",
        ),
        ("test_input_required_result_tampered_state", "tamper-check"),
    ] {
        let schema = confirm_schema.clone();
        server.register_tool(
            tool(
                name,
                "Asks for confirmation, carrying sealed state to the next round",
            )
            .handler(move |call| {
                let schema = schema.clone();
                async move {
                    let state_ok = call.input.state() == Some(&json!({"step": marker}));
                    Ok(match accepted(&call.input, "confirm") {
                        Some(c) if state_ok => tool_result::text(format!(
                            "state-ok: confirmed={}",
                            c.get("ok").and_then(Value::as_bool).unwrap_or(false)
                        ))
                        .into(),
                        _ => Outcome::InputRequired(
                            InputNeeded::new()
                                .elicit("confirm", "Please confirm", schema)
                                .with_state(json!({"step": marker})),
                        ),
                    })
                }
            }),
        )?;
    }
    server.register_tool(
        tool(
            "test_input_required_result_multiple_inputs",
            "Needs a name, a greeting and the roots",
        )
        .handler(|call| async move {
            let name = accepted(&call.input, "user_name");
            let greeting = sampled_text(&call.input, "greeting");
            let roots = call.input.roots("client_roots");
            if let (Some(n), Some(g), Some(r)) = (&name, &greeting, &roots) {
                let who = n.get("name").and_then(Value::as_str).unwrap_or("stranger");
                return Ok(
                    tool_result::text(format!("{g} {who} ({} roots)", r.roots.len())).into(),
                );
            }
            // Ask again for whatever is still missing.
            let mut need = InputNeeded::new().with_state(json!({"step": "multiple"}));
            if name.is_none() {
                need = need.elicit("user_name", "What is your name?", name_schema("name"));
            }
            if greeting.is_none() {
                need = need.sample(
                    "greeting",
                    CreateMessageRequestParams::new(
                        vec![SamplingMessage::user_text("Generate a greeting")],
                        50,
                    ),
                );
            }
            if roots.is_none() {
                need = need.list_roots("client_roots");
            }
            Ok(Outcome::InputRequired(need))
        }),
    )?;
    server.register_tool(
        tool(
            "test_input_required_result_multi_round",
            "Asks two questions in two rounds",
        )
        .handler(|call| async move {
            let state = call.input.state().cloned().unwrap_or_default();
            if state["round"] == 2
                && let Some(c) = accepted(&call.input, "step2")
            {
                let name = state["name"].as_str().unwrap_or("stranger");
                let color = c
                    .get("color")
                    .and_then(Value::as_str)
                    .unwrap_or("no colour");
                return Ok(tool_result::text(format!("{name} likes {color}")).into());
            }
            if state["round"] == 1
                && let Some(c) = accepted(&call.input, "step1")
            {
                let name = c.get("name").cloned().unwrap_or(Value::Null);
                return Ok(Outcome::InputRequired(
                    InputNeeded::new()
                        .elicit(
                            "step2",
                            "Step 2: What is your favorite color?",
                            name_schema("color"),
                        )
                        .with_state(json!({"round": 2, "name": name})),
                ));
            }
            Ok(Outcome::InputRequired(
                InputNeeded::new()
                    .elicit("step1", "Step 1: What is your name?", name_schema("name"))
                    .with_state(json!({"round": 1})),
            ))
        }),
    )?;
    server.register_tool(
        tool(
            "test_input_required_result_capabilities",
            "Asks only for what the client declared it can do",
        )
        .handler(|call| async move {
            if !call.input.is_empty() {
                let keys: Vec<&str> = ["ask_llm", "ask_user", "roots"]
                    .into_iter()
                    .filter(|k| call.input.response(k).is_some())
                    .collect();
                return Ok(tool_result::text(format!("answered: {}", keys.join(", "))).into());
            }
            let mut need = InputNeeded::new();
            if call.client.supports_sampling() {
                need = need.sample(
                    "ask_llm",
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text("Say hi")], 20),
                );
            }
            if call.client.supports_elicitation() {
                need = need.elicit("ask_user", "Your name?", name_schema("name"));
            }
            if call
                .client
                .capabilities()
                .is_some_and(|c| c.roots.is_some())
            {
                need = need.list_roots("roots");
            }
            Ok(if need.requests().is_empty() {
                tool_result::text("the client declared nothing to ask").into()
            } else {
                Outcome::InputRequired(need)
            })
        }),
    )?;
    // Needs sampling: a client that did not declare it gets -32021.
    server.register_tool(
        tool(
            "test_missing_capability",
            "Needs the client's sampling capability",
        )
        .handler(|call| async move {
            Ok(match sampled_text(&call.input, "llm") {
                Some(t) => tool_result::text(format!("LLM said: {t}")).into(),
                None => Outcome::InputRequired(InputNeeded::new().sample(
                    "llm",
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text("Hello?")], 20),
                )),
            })
        }),
    )?;
    // Asks for input mid-call: on 2026-07-28 the answer is an
    // InputRequiredResult, never a request on the response stream.
    server.register_tool(
        tool(
            "test_streaming_elicitation",
            "Reports progress, then asks the user",
        )
        .handler(|call| async move {
            call.progress
                .report(1.0, Some(2.0), Some("asking".into()))
                .await;
            Ok(match accepted(&call.input, "stream_input") {
                Some(c) => tool_result::text(format!("received {}", Value::Object(c))).into(),
                None => Outcome::InputRequired(InputNeeded::new().elicit(
                    "stream_input",
                    "Please provide a value",
                    name_schema("value"),
                )),
            })
        }),
    )?;
    server.register_prompt(Prompt::multi_round(
        "test_input_required_result_prompt",
        "A prompt that asks the user for context first",
        |_args, round| {
            Ok(match accepted(round, "user_context") {
                Some(c) => {
                    let context = c.get("context").and_then(Value::as_str).unwrap_or_default();
                    Outcome::Complete(GetPromptResult::new(vec![PromptMessage::new_text(
                        Role::User,
                        format!("Use this context: {context}"),
                    )]))
                }
                None => Outcome::InputRequired(InputNeeded::new().elicit(
                    "user_context",
                    "What context should the prompt use?",
                    name_schema("context"),
                )),
            })
        },
    ));
    Ok(())
}

/// Start `n` provider nodes on loopback, publishing `generate_text`.
async fn network(
    registry: Arc<MemoryRegistry>,
    connector: &tcp::TcpConnector,
) -> Result<Vec<tokio::task::JoinHandle<()>>, Box<dyn std::error::Error>> {
    let mut tasks = Vec::new();
    for label in ["alpha", "beta"] {
        let keypair = Keypair::generate();
        let server = McpServer::new(keypair.peer_id());
        server.register_tool(
            Tool::new("generate_text")
                .with_description("Generates text from a prompt")
                .with_tags(["text-generation"])
                .with_schema(json!({"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}))
                .with_output_schema(json!({"type": "object", "properties": {"text": {"type": "string"}, "by": {"type": "string"}}}))
                .handler(move |call| async move {
                    let prompt = call.arguments["prompt"].as_str().unwrap_or_default().to_owned();
                    call.progress.report(1.0, Some(2.0), Some("thinking".into())).await;
                    call.progress.report(2.0, Some(2.0), Some("done".into())).await;
                    Ok(tool_result::structured(json!({"text": format!("{label} says: {prompt}"), "by": label})))
                }),
        )?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        connector.add(keypair.peer_id(), listener.local_addr()?);
        let publisher = Arc::new(ServicePublisher::new(
            keypair,
            server.clone(),
            registry.clone(),
        ));
        publisher
            .register_service("llm", &["generate_text"])
            .await?;
        tasks.push(publisher.spawn_republish("llm".into(), vec!["generate_text".into()]));
        tasks.push(tokio::spawn(async move {
            let _ = tcp::serve_tcp(server, listener, StreamLimits::default()).await;
        }));
    }
    Ok(tasks)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdio = args.iter().any(|a| a == "--stdio");
    let with_network = args.iter().any(|a| a == "--network");
    let bind = args
        .iter()
        .position(|a| a == "--http")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or_else(|| HttpConfig::default().bind);

    let me = Keypair::generate();
    let server = McpServer::new(me.peer_id());
    demo_tools(&server)?;
    conformance_fixtures(&server)?;
    multi_round_fixtures(&server)?;
    let mut gateway = Gateway::new(server);

    let mut _providers = Vec::new();
    if with_network {
        let registry = Arc::new(MemoryRegistry::new());
        let connector = Arc::new(tcp::TcpConnector::new(me.peer_id()));
        _providers = network(registry.clone(), &connector).await?;
        let router = Arc::new(Router::new(
            Discovery::new(registry).excluding(me.peer_id()),
            connector,
        ));
        gateway = gateway.with_network(NetworkTools::new(
            router,
            vec![Query::tag("text-generation")],
        ));
    }

    if stdio {
        gateway.serve_stdio(StreamLimits::default()).await?;
        return Ok(());
    }
    let http = gateway
        .serve_http(HttpConfig {
            bind,
            ..HttpConfig::default()
        })
        .await?;
    println!("MCP_GATEWAY_URL={}", http.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
