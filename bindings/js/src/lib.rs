//! The Node.js binding of the p2p-foundation node (napi-rs), loaded by `index.js` as the
//! `p2p-foundation` package.
//!
//! Every method that touches the network returns a Promise: the Rust future runs on
//! napi's tokio runtime, which is the node's runtime (the node is built on it and spawns
//! its tasks there). A tool handler registered from JavaScript is the other direction: the
//! node's MCP server calls the JavaScript function through a threadsafe function on the
//! JavaScript thread and awaits the Promise it returns. Nothing here re-implements
//! networking: each method is one call of [`p2p_foundation::P2PNode`].
//!
//! `unsafe_code` is denied, not forbidden: the `#[napi]` expansions are FFI glue that
//! contains `unsafe` and allows it for itself; this file writes none.
#![deny(unsafe_code)]

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use napi::bindgen_prelude::{
    AsyncGenerator, Buffer, CallbackContext, Either, FromNapiValue, PromiseRaw, Unknown,
};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsValue, Status};
use napi_derive::napi;
use p2p_foundation::mcp_crate::rmcp::ErrorData;
use p2p_foundation::mcp_crate::rmcp::model::CallToolResult;
use p2p_foundation::mcp_crate::{Candidate, Query, Routed, Tool, tool_result};
use p2p_foundation::{P2PNode, PeerEvent, PeerId};
use serde_json::Value;
use tokio::sync::oneshot;

/// How long [`Node::shutdown`] waits for calls still in flight on other tasks to finish
/// before it gives up (each facade call has its own deadline, the longest 30 s).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// How long [`Node::shutdown`] waits for the node's socket to be released.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// A Rust error as a JavaScript `Error` with the same message.
fn err(e: impl std::fmt::Display) -> napi::Error {
    napi::Error::from_reason(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A string as UTF-8, a `Buffer` (or `Uint8Array`) as it is.
fn payload(data: Either<String, Buffer>) -> Vec<u8> {
    match data {
        Either::A(s) => s.into_bytes(),
        Either::B(b) => b.to_vec(),
    }
}

fn peer_id(s: &str) -> napi::Result<PeerId> {
    s.trim()
        .parse()
        .map_err(|e| err(format!("'{s}' is not a peer id: {e}")))
}

/// What `Node.start` takes; every field is optional.
#[napi(object)]
pub struct StartOptions {
    /// The listen address: a socket address, three words or a multiaddr (default `[::]:0`).
    pub listen: Option<String>,
    /// Peers to join through: `<peer id>@<address>`, a multiaddr with `/p2p/<peer id>`, or
    /// an address alone (numbers or three words) whose id is learned on first contact.
    pub bootstrap: Option<Vec<String>>,
    /// LAN discovery over mDNS (default on).
    pub mdns: Option<bool>,
    /// A file holding the node's identity (made on first use), for a stable peer id.
    pub identity_file: Option<String>,
}

/// What `registerTool` takes besides the name, schema and handler.
#[napi(object)]
pub struct ToolOptions {
    /// The tool's description, shown to callers.
    pub description: Option<String>,
    /// The service it is published under (default: the tool's name).
    pub service: Option<String>,
}

/// What `discoverTools` looks for: a tool by name or tools by capability tag.
#[napi(object)]
pub struct ToolQuery {
    /// A tool name.
    pub tool: Option<String>,
    /// A capability tag.
    pub tag: Option<String>,
}

/// The node behind a [`Node`] object, shared by the calls in flight; `None` once shut down.
type Slot = Arc<Mutex<Option<Arc<P2PNode>>>>;

/// A tool handler: a JavaScript function of the argument object, called on the JavaScript
/// thread. It keeps the process alive while the node serves it (like a listening server);
/// shutting the node down releases it.
type Handler = ThreadsafeFunction<Value, Unknown<'static>, Value, Status, false>;

/// A running p2p-foundation node (QUIC transport, Kademlia DHT, gossip, MCP server).
#[napi]
pub struct Node {
    slot: Slot,
    peer_id: String,
    words: String,
    addr: String,
}

impl Node {
    fn node(&self) -> napi::Result<Arc<P2PNode>> {
        lock(&self.slot)
            .clone()
            .ok_or_else(|| err("the node is shut down"))
    }
}

#[napi]
impl Node {
    /// Starts a node listening on `listen` and joins the network through `bootstrap`. Its
    /// MCP server is on, so tools registered with `registerTool` can be called by peers.
    #[napi]
    pub async fn start(options: Option<StartOptions>) -> napi::Result<Node> {
        let options = options.unwrap_or(StartOptions {
            listen: None,
            bootstrap: None,
            mdns: None,
            identity_file: None,
        });
        let listen = options.listen.unwrap_or_else(|| "[::]:0".to_owned());
        let mut builder = P2PNode::builder()
            .with_mcp_server()
            .listen_on(&listen)
            .bootstrap_addrs(options.bootstrap.unwrap_or_default())
            .mdns(options.mdns.unwrap_or(true));
        if let Some(path) = options.identity_file {
            builder = builder.identity_file(path);
        }
        let node = builder.build().await.map_err(err)?;
        Ok(Node {
            peer_id: node.peer_id().to_string(),
            words: node.word_address().map_err(err)?.to_string(),
            addr: node.peer_addr().map_err(err)?,
            slot: Arc::new(Mutex::new(Some(Arc::new(node)))),
        })
    }

    /// This node's id.
    #[napi(getter)]
    pub fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    /// The listen address as three words (six or nine for IPv6), for people to type.
    #[napi(getter)]
    pub fn words(&self) -> String {
        self.words.clone()
    }

    /// `<peer id>@<listen address>`, as `bootstrap` and `connect` take it.
    #[napi(getter)]
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The listen port (UDP for QUIC, TCP on the same port).
    #[napi(getter)]
    pub fn port(&self) -> napi::Result<u32> {
        let (_, port) = self
            .addr
            .rsplit_once(':')
            .ok_or_else(|| err("no listen address"))?;
        port.parse().map_err(err)
    }

    /// The ids of the peers connected now.
    #[napi]
    pub fn connected_peers(&self) -> napi::Result<Vec<String>> {
        Ok(self
            .node()?
            .connected_peers()
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// Connects to `addr` (`<peer id>@<address>`, or an address alone, whose id is learned
    /// and proven on first contact) and keeps the peer connected; resolves to its id.
    #[napi]
    pub async fn connect(&self, addr: String) -> napi::Result<String> {
        let node = self.node()?;
        let target = p2p_foundation::parse_peer(&addr).map_err(err)?;
        let peer = match target.peer {
            Some(peer) => {
                node.connect(peer, &[target.addr]).await.map_err(err)?;
                peer
            }
            None => node.connect_addr(target.addr).await.map_err(err)?,
        };
        Ok(peer.to_string())
    }

    /// Stores `value` (a string or a Buffer) under the name `key` on the DHT, signed by
    /// this node; resolves to how many nodes accepted it.
    #[napi]
    pub async fn dht_put(&self, key: String, value: Either<String, Buffer>) -> napi::Result<u32> {
        let node = self.node()?;
        let stored = node.dht_put(&key, payload(value)).await.map_err(err)?;
        Ok(u32::try_from(stored).unwrap_or(u32::MAX))
    }

    /// The newest value stored under `key` by any node, as a Buffer (`null` if none).
    #[napi]
    pub async fn dht_get(&self, key: String) -> napi::Result<Option<Buffer>> {
        let node = self.node()?;
        let value = node.dht_get(&key).await.map_err(err)?;
        Ok(value.map(Buffer::from))
    }

    /// Publishes `data` (a string or a Buffer) on gossip `topic`; resolves to the message
    /// id (hex).
    #[napi]
    pub async fn publish(
        &self,
        topic: String,
        data: Either<String, Buffer>,
    ) -> napi::Result<String> {
        let node = self.node()?;
        let id = node.publish(&topic, payload(data)).await.map_err(err)?;
        Ok(id.to_string())
    }

    /// Subscribes to gossip `topic`; resolves to a `Subscription`, an async iterable of
    /// messages (`for await (const msg of sub)`).
    #[napi]
    pub async fn subscribe(&self, topic: String) -> napi::Result<Subscription> {
        let node = self.node()?;
        let sub = node.subscribe(&topic).await.map_err(err)?;
        Ok(Subscription {
            topic,
            inner: Arc::new(tokio::sync::Mutex::new(sub)),
        })
    }

    /// Waits until at least `n` connected peers have subscribed to `topic` (so a message
    /// published now reaches them).
    #[napi]
    pub async fn wait_for_topic_peers(&self, topic: String, n: u32) -> napi::Result<()> {
        let node = self.node()?;
        node.wait_for_topic_peers(&topic, n as usize)
            .await
            .map_err(err)
    }

    /// Registers tool `name` (arguments checked against the JSON Schema `schema`, an object
    /// schema or `null` for any object) with `handler`, a function of the argument object
    /// returning a value or a Promise (an `async` function), and publishes it on the DHT as
    /// service `options.service` (default: the tool's name), so any peer can discover and
    /// call it.
    ///
    /// A string the handler returns is a text result, an object a structured one, anything
    /// else its JSON text. An error it throws (or a Promise it rejects) is an MCP error
    /// result (`isError`) carrying `String(error)` (`"TypeError: message"`), and the node
    /// keeps serving.
    #[napi(
        ts_args_type = "name: string, schema: object | null, handler: (args: any) => unknown, options?: ToolOptions"
    )]
    pub async fn register_tool(
        &self,
        name: String,
        schema: Option<Value>,
        handler: Handler,
        options: Option<ToolOptions>,
    ) -> napi::Result<()> {
        let node = self.node()?;
        let schema = schema.unwrap_or_else(|| serde_json::json!({"type": "object"}));
        if !schema.is_object() {
            return Err(napi::Error::new(
                Status::InvalidArg,
                "schema must be a JSON Schema object",
            ));
        }
        let handler = Arc::new(handler);
        let (description, service) = options
            .map(|o| (o.description, o.service))
            .unwrap_or_default();
        let mut tool = Tool::new(name.clone())
            .with_schema(schema)
            .handler(move |call| {
                let handler = Arc::clone(&handler);
                async move {
                    let result = run_handler(&handler, Value::Object(call.arguments))
                        .await
                        .unwrap_or_else(tool_result::error);
                    Ok::<_, ErrorData>(result)
                }
            });
        if let Some(d) = description {
            tool = tool.with_description(d);
        }
        let service = service.unwrap_or(name);
        node.register_mcp_service(&service, vec![tool])
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Providers of a tool (`discoverTools("name")`) or of tools tagged `tag`
    /// (`discoverTools({ tag })`), best first, never this node.
    #[napi]
    pub async fn discover_tools(
        &self,
        query: Either<String, ToolQuery>,
    ) -> napi::Result<Vec<ToolInfo>> {
        let node = self.node()?;
        let query = match query {
            Either::A(tool)
            | Either::B(ToolQuery {
                tool: Some(tool),
                tag: None,
            }) => Query::tool(tool),
            Either::B(ToolQuery {
                tool: None,
                tag: Some(tag),
            }) => Query::tag(tag),
            Either::B(_) => {
                return Err(napi::Error::new(
                    Status::InvalidArg,
                    "give either tool or tag",
                ));
            }
        };
        let found = node.discover_tools(&query).await.map_err(err)?;
        Ok(found.into_iter().map(ToolInfo::from).collect())
    }

    /// Calls tool `name` at the best provider in the network (failing over to the next);
    /// `args` is an object (or omitted). Resolves to a `CallResult`; rejects with the tool's
    /// text if the tool answered with an error result.
    #[napi(ts_args_type = "name: string, args?: object")]
    pub async fn call_tool(&self, name: String, args: Option<Value>) -> napi::Result<CallResult> {
        let node = self.node()?;
        call_result(
            node.call_tool(&name, args.unwrap_or(Value::Null))
                .await
                .map_err(err)?,
        )
    }

    /// Calls tool `name` at peer `peer` only (no failover); as `callTool` otherwise.
    #[napi(ts_args_type = "peer: string, name: string, args?: object")]
    pub async fn call_peer(
        &self,
        peer: String,
        name: String,
        args: Option<Value>,
    ) -> napi::Result<CallResult> {
        let node = self.node()?;
        let peer = peer_id(&peer)?;
        call_result(
            node.call_peer(peer, &name, args.unwrap_or(Value::Null))
                .await
                .map_err(err)?,
        )
    }

    /// Connection events from now on: an async iterable of `Event`s.
    #[napi]
    pub fn events(&self) -> napi::Result<Events> {
        Ok(Events {
            inner: Arc::new(tokio::sync::Mutex::new(self.node()?.events())),
        })
    }

    /// Shuts the node down gracefully (closes every connection, ends every task, releases
    /// the tool handlers) and resolves once its port is free. Calls in flight finish first;
    /// later calls reject. Shutting down twice is a no-op.
    #[napi]
    pub async fn shutdown(&self) -> napi::Result<()> {
        let taken = lock(&self.slot).take();
        let Some(mut shared) = taken else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        loop {
            match Arc::try_unwrap(shared) {
                Ok(node) => {
                    let addr = node.local_addr().map_err(err)?;
                    node.shutdown().await;
                    return wait_released(addr).await;
                }
                Err(still_shared) if tokio::time::Instant::now() < deadline => {
                    shared = still_shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    return Err(err(format!(
                        "calls still in flight after {} s; the node stops when they end",
                        SHUTDOWN_WAIT.as_secs()
                    )));
                }
            }
        }
    }

    /// `Node(<peer id>@<address>)`.
    #[napi(js_name = "toString")]
    pub fn describe(&self) -> String {
        format!("Node({})", self.addr)
    }
}

/// Waits until `addr` can be bound again (UDP and TCP). [`P2PNode::shutdown`] returns once
/// the node's tasks ended, but QUIC keeps the socket until the closed connections have
/// drained and the endpoint driver ended; the binding promises a free port when
/// `shutdown()` resolves, so it waits for that.
async fn wait_released(addr: std::net::SocketAddr) -> napi::Result<()> {
    let deadline = tokio::time::Instant::now() + PORT_RELEASE_WAIT;
    loop {
        if std::net::UdpSocket::bind(addr).is_ok() && std::net::TcpListener::bind(addr).is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(err(format!(
                "{addr} is still in use {} s after the node shut down",
                PORT_RELEASE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the JavaScript thread sends back for one handler call: the value it returned or
/// its Promise resolved to, or the text of what it threw or rejected with.
type Settled = Result<Value, String>;

/// Runs a JavaScript tool handler for one call: the argument object in, a tool result out,
/// or `String(error)` as the error text.
async fn run_handler(handler: &Handler, args: Value) -> Result<CallToolResult, String> {
    let (tx, rx) = oneshot::channel::<Settled>();
    let status = handler.call_with_return_value(
        args,
        ThreadsafeFunctionCallMode::NonBlocking,
        move |returned, env| {
            settle(returned, &env, tx);
            Ok(())
        },
    );
    if status != Status::Ok {
        return Err(format!(
            "the JavaScript handler cannot be called ({status})"
        ));
    }
    let value = rx
        .await
        .map_err(|_| "the JavaScript handler was released before it answered".to_owned())??;
    Ok(match value {
        Value::String(s) => tool_result::text(s),
        Value::Object(_) => tool_result::structured(value),
        other => tool_result::text(other.to_string()),
    })
}

/// On the JavaScript thread: sends what the handler returned (awaiting it if it is a
/// Promise) or threw. Exactly one message is sent, whichever way the handler ends.
fn settle(returned: napi::Result<Unknown<'static>>, env: &Env, tx: oneshot::Sender<Settled>) {
    let tx = Rc::new(Cell::new(Some(tx)));
    let send = {
        let tx = Rc::clone(&tx);
        move |settled: Settled| {
            if let Some(tx) = tx.take() {
                // The caller gave up (its deadline passed): nobody is waiting.
                let _ = tx.send(settled);
            }
        }
    };
    let value = match returned {
        Ok(value) => value,
        // A synchronous throw: napi kept the thrown value itself.
        Err(thrown) => {
            return send(Err(describe(
                napi::JsError::from(thrown).into_unknown(*env),
            )));
        }
    };
    if !value.is_promise().unwrap_or(false) {
        return send(json_of(value));
    }
    let wired = PromiseRaw::<Unknown<'_>>::from_unknown(value).and_then(|promise| {
        let on_value = send.clone();
        let on_error = send.clone();
        promise
            .then(move |ctx: CallbackContext<Unknown<'_>>| {
                on_value(json_of(ctx.value));
                Ok(())
            })?
            .catch(move |ctx: CallbackContext<Unknown<'_>>| {
                on_error(Err(describe(ctx.value)));
                Ok(())
            })
            .map(|_| ())
    });
    if let Err(e) = wired {
        send(Err(format!("cannot await the handler's Promise: {e}")));
    }
}

/// A value the handler produced, as JSON (`undefined` becomes `null`).
fn json_of(value: Unknown<'_>) -> Settled {
    Value::from_unknown(value).map_err(|e| format!("the tool's result is not JSON: {e}"))
}

/// `String(thrown)`: `"TypeError: message"` for an `Error`, the text of anything else.
fn describe(thrown: Unknown<'_>) -> String {
    thrown
        .coerce_to_string()
        .and_then(|s| s.into_utf8())
        .and_then(|s| s.as_str().map(str::to_owned))
        .unwrap_or_else(|e| format!("the handler threw a value that has no text ({e})"))
}

/// A routed call's answer as a [`CallResult`], or an `Error` with the tool's text for an
/// `isError` result.
fn call_result(routed: Routed) -> napi::Result<CallResult> {
    let text: String = routed
        .result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    if routed.result.is_error == Some(true) {
        return Err(err(text));
    }
    Ok(CallResult {
        provider: routed.provider.to_string(),
        failovers: u32::try_from(routed.failovers).unwrap_or(u32::MAX),
        value: routed
            .result
            .structured_content
            .unwrap_or_else(|| Value::String(text.clone())),
        text,
    })
}

/// A tool call's answer.
#[napi(object)]
pub struct CallResult {
    /// The provider that answered (peer id).
    pub provider: String,
    /// Providers tried before it.
    pub failovers: u32,
    /// The result's text content, joined by newlines.
    pub text: String,
    /// The structured content (an object) if the tool sent one, else `text`.
    pub value: Value,
}

/// One provider of one tool, as discovery found it.
#[napi(object)]
pub struct ToolInfo {
    /// The provider (peer id).
    pub provider: String,
    /// The service the tool belongs to.
    pub service: String,
    /// The tool's name.
    pub name: String,
    /// Its description, if any.
    pub description: Option<String>,
    /// Its version.
    pub version: String,
    /// Its capability tags.
    pub tags: Vec<String>,
    /// Its input JSON Schema (JSON text, as announced).
    pub input_schema: String,
    /// Calls in flight the provider advertised.
    pub load: u32,
    /// Rank (lower is better).
    pub score: f64,
}

impl From<Candidate> for ToolInfo {
    fn from(c: Candidate) -> Self {
        Self {
            provider: c.provider.to_string(),
            service: c.service,
            name: c.tool.name,
            description: c.tool.description,
            version: c.tool.version,
            tags: c.tool.tags,
            input_schema: c.tool.input_schema,
            load: c.load,
            score: c.score,
        }
    }
}

/// A gossip message.
#[napi(object)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub data: Buffer,
    /// The peer that signed it.
    pub author: String,
    /// The peer that forwarded it to this node.
    pub source: String,
    /// Hops travelled.
    pub hops: u32,
    /// The message id (hex).
    pub id: String,
}

/// The messages of one gossip topic: `for await (const message of subscription)`. The
/// iteration ends when the node shuts down.
#[napi(async_iterator)]
pub struct Subscription {
    topic: String,
    inner: Arc<tokio::sync::Mutex<p2p_foundation::Subscription>>,
}

#[napi]
impl Subscription {
    /// The topic.
    #[napi(getter)]
    pub fn topic(&self) -> String {
        self.topic.clone()
    }
}

#[napi]
impl AsyncGenerator for Subscription {
    type Yield = Message;
    type Next = ();
    type Return = ();

    fn next(
        &mut self,
        _value: Option<()>,
    ) -> impl Future<Output = napi::Result<Option<Message>>> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move {
            let Some(m) = inner.lock().await.recv().await else {
                return Ok(None);
            };
            Ok(Some(Message {
                topic: m.topic().to_string(),
                data: Buffer::from(m.data().to_vec()),
                author: m.author().to_string(),
                source: m.from.to_string(),
                hops: u32::from(m.hops),
                id: m.id.to_string(),
            }))
        }
    }
}

/// A connection event.
#[napi(object)]
pub struct Event {
    /// `"connected"`, `"disconnected"`, `"reconnected"`, `"nat_changed"`,
    /// `"hole_punched"`, `"relayed"` (or `"other"`).
    pub kind: String,
    /// The peer it concerns, if any.
    pub peer: Option<String>,
    /// The peer's address, if the event has one.
    pub addr: Option<String>,
    /// Everything the event says, as text.
    pub detail: String,
}

impl From<PeerEvent> for Event {
    fn from(e: PeerEvent) -> Self {
        let detail = format!("{e:?}");
        let (kind, peer, addr) = match e {
            PeerEvent::Connected { peer, addr, .. } => ("connected", Some(peer), Some(addr)),
            PeerEvent::Disconnected { peer, .. } => ("disconnected", Some(peer), None),
            PeerEvent::Reconnected { peer, addr, .. } => ("reconnected", Some(peer), Some(addr)),
            PeerEvent::NatChanged { reflexive, .. } => ("nat_changed", None, reflexive),
            PeerEvent::HolePunched { peer, addr, .. } => ("hole_punched", Some(peer), Some(addr)),
            PeerEvent::Relayed { peer, .. } => ("relayed", Some(peer), None),
            _ => ("other", None, None),
        };
        Self {
            kind: kind.to_owned(),
            peer: peer.map(|p| p.to_string()),
            addr: addr.map(|a| a.to_string()),
            detail,
        }
    }
}

/// A node's connection events: `for await (const event of node.events())`. A reader more
/// than 1,024 events behind skips the oldest; the iteration ends when the node shuts down.
#[napi(async_iterator)]
pub struct Events {
    inner: Arc<tokio::sync::Mutex<tokio::sync::broadcast::Receiver<PeerEvent>>>,
}

#[napi]
impl AsyncGenerator for Events {
    type Yield = Event;
    type Next = ();
    type Return = ();

    fn next(
        &mut self,
        _value: Option<()>,
    ) -> impl Future<Output = napi::Result<Option<Event>>> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move {
            let mut rx = inner.lock().await;
            loop {
                match rx.recv().await {
                    Ok(e) => return Ok(Some(Event::from(e))),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(None),
                }
            }
        }
    }
}
