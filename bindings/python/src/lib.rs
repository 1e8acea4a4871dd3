//! The Python binding of the p2p-foundation node: `p2p_foundation._native`, imported as
//! `p2p_foundation`.
//!
//! Every method that touches the network returns an asyncio awaitable (through
//! `pyo3-async-runtimes`): the Rust future runs on the binding's tokio runtime, which is
//! the node's runtime (the node is built on it and spawns its tasks there), and resolves
//! the Python future on the calling event loop. A tool handler registered from Python is
//! the other direction: the node's MCP server calls the Python function and runs the
//! coroutine it returns on the event loop that registered it. Nothing here re-implements
//! networking: each method is one call of [`p2p_foundation::P2PNode`].
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use p2p_foundation::mcp_crate::rmcp::ErrorData;
use p2p_foundation::mcp_crate::rmcp::model::CallToolResult;
use p2p_foundation::mcp_crate::{Candidate, Query, Routed, Tool, ToolCall, tool_result};
use p2p_foundation::{P2PNode, PeerEvent, PeerId};
use pyo3::exceptions::{PyStopAsyncIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use pyo3_async_runtimes::TaskLocals;
use serde_json::Value;

use crate::json::{from_json, to_json};
use crate::runtime::future_into_py;

mod json;
mod runtime;

pyo3::create_exception!(
    p2p_foundation,
    P2PError,
    pyo3::exceptions::PyException,
    "An error of the node (its message is the Rust error's)."
);
pyo3::create_exception!(
    p2p_foundation,
    ToolError,
    P2PError,
    "A tool answered with an MCP error result (`isError`): its message is the tool's."
);

/// How long [`Node::shutdown`] waits for calls still in flight on other tasks to finish
/// before it gives up (each facade call has its own deadline, the longest 30 s).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// How long [`Node::shutdown`] waits for the node's socket to be released.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// How many parsed peer ids a [`Node`] keeps for `call_peer`.
const KNOWN_PEERS: usize = 16;

/// A Rust error as a Python [`P2PError`] with the same message.
fn err(e: impl std::fmt::Display) -> PyErr {
    P2PError::new_err(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `bytes` as they are, `str` as UTF-8.
fn payload(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    obj.extract::<Vec<u8>>()
        .map_err(|_| PyValueError::new_err("data must be bytes or str"))
}

fn peer_id(s: &str) -> PyResult<PeerId> {
    s.trim()
        .parse()
        .map_err(|e| err(format!("'{s}' is not a peer id: {e}")))
}

/// The node behind a [`Node`] object, shared by the calls in flight; `None` once shut down.
type Slot = Arc<Mutex<Option<Arc<P2PNode>>>>;

/// A running p2p-foundation node (QUIC transport, Kademlia DHT, gossip, MCP server).
#[pyclass(frozen, module = "p2p_foundation")]
struct Node {
    slot: Slot,
    peer_id: String,
    words: String,
    addr: String,
    /// The peer ids `call_peer` was given last, parsed (newest last).
    known_peers: Mutex<Vec<(String, PeerId)>>,
}

impl Node {
    fn node(&self) -> PyResult<Arc<P2PNode>> {
        lock(&self.slot)
            .clone()
            .ok_or_else(|| err("the node is shut down"))
    }

    /// `text` as a peer id, remembered for the next call: parsing checks that the id is a
    /// valid Ed25519 key (a point decompression, the costliest step of a call's set-up).
    fn peer(&self, text: &str) -> PyResult<PeerId> {
        let mut known = lock(&self.known_peers);
        if let Some((_, id)) = known.iter().find(|(t, _)| t == text) {
            return Ok(*id);
        }
        let id = peer_id(text)?;
        if known.len() == KNOWN_PEERS {
            known.remove(0);
        }
        known.push((text.to_owned(), id));
        Ok(id)
    }
}

#[pymethods]
impl Node {
    /// Starts a node listening on `listen` (a socket address, three words or a multiaddr)
    /// and joins the network through `bootstrap` (`<peer id>@<address>`, a multiaddr with
    /// `/p2p/<peer id>`, or an address alone, numbers or three words). Its MCP server is
    /// on, so tools registered with `register_tool` can be called by peers.
    #[staticmethod]
    #[pyo3(signature = (listen = "[::]:0".to_owned(), bootstrap = Vec::new(), *, mdns = true, identity_file = None))]
    fn start(
        py: Python<'_>,
        listen: String,
        bootstrap: Vec<String>,
        mdns: bool,
        identity_file: Option<std::path::PathBuf>,
    ) -> PyResult<Bound<'_, PyAny>> {
        future_into_py(py, async move {
            let mut builder = P2PNode::builder()
                .with_mcp_server()
                .listen_on(&listen)
                .bootstrap_addrs(&bootstrap)
                .mdns(mdns);
            if let Some(path) = identity_file {
                builder = builder.identity_file(path);
            }
            let node = builder.build().await.map_err(err)?;
            Ok(Node {
                peer_id: node.peer_id().to_string(),
                words: node.word_address().map_err(err)?.to_string(),
                addr: node.peer_addr().map_err(err)?,
                slot: Arc::new(Mutex::new(Some(Arc::new(node)))),
                known_peers: Mutex::new(Vec::new()),
            })
        })
    }

    /// This node's id.
    #[getter]
    fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The listen address as three words (six or nine for IPv6), for people to type.
    #[getter]
    fn words(&self) -> &str {
        &self.words
    }

    /// `<peer id>@<listen address>`, as `bootstrap` and `connect` take it.
    #[getter]
    fn addr(&self) -> &str {
        &self.addr
    }

    /// The listen port (UDP for QUIC, TCP on the same port).
    #[getter]
    fn port(&self) -> PyResult<u16> {
        let (_, addr) = self
            .addr
            .rsplit_once(':')
            .ok_or_else(|| err("no listen address"))?;
        addr.parse().map_err(err)
    }

    /// The ids of the peers connected now.
    fn connected_peers(&self) -> PyResult<Vec<String>> {
        Ok(self
            .node()?
            .connected_peers()
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// Connects to `addr` (`<peer id>@<address>`, or an address alone, whose id is learned
    /// and proven on first contact) and keeps the peer connected; resolves to its id.
    fn connect<'py>(&self, py: Python<'py>, addr: String) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        future_into_py(py, async move {
            let target = p2p_foundation::parse_peer(&addr).map_err(err)?;
            let peer = match target.peer {
                Some(peer) => {
                    node.connect(peer, &[target.addr]).await.map_err(err)?;
                    peer
                }
                None => node.connect_addr(target.addr).await.map_err(err)?,
            };
            Ok(peer.to_string())
        })
    }

    /// Stores `value` (bytes or str) under the name `key` on the DHT, signed by this node;
    /// resolves to how many nodes accepted it.
    fn dht_put<'py>(
        &self,
        py: Python<'py>,
        key: String,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        let value = payload(value)?;
        future_into_py(
            py,
            async move { node.dht_put(&key, value).await.map_err(err) },
        )
    }

    /// The newest value stored under `key` by any node, as bytes (`None` if there is none).
    fn dht_get<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        future_into_py(py, async move {
            let value = node.dht_get(&key).await.map_err(err)?;
            Ok(value.map(Cow::<'static, [u8]>::Owned))
        })
    }

    /// Publishes `data` (bytes or str) on gossip `topic`; resolves to the message id (hex).
    fn publish<'py>(
        &self,
        py: Python<'py>,
        topic: String,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        let data = payload(data)?;
        future_into_py(py, async move {
            let id = node.publish(&topic, data).await.map_err(err)?;
            Ok(id.to_string())
        })
    }

    /// Subscribes to gossip `topic`; resolves to a `Subscription`, an async iterator of
    /// `Message`s.
    fn subscribe<'py>(&self, py: Python<'py>, topic: String) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        future_into_py(py, async move {
            let sub = node.subscribe(&topic).await.map_err(err)?;
            Ok(Subscription {
                topic,
                inner: Arc::new(tokio::sync::Mutex::new(sub)),
            })
        })
    }

    /// Waits until at least `n` connected peers have subscribed to `topic` (so a message
    /// published now reaches them).
    fn wait_for_topic_peers<'py>(
        &self,
        py: Python<'py>,
        topic: String,
        n: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        future_into_py(py, async move {
            node.wait_for_topic_peers(&topic, n).await.map_err(err)
        })
    }

    /// Registers tool `name` (arguments checked against the JSON Schema `schema`, an
    /// object schema or `None` for any object) with `handler`, a function of the argument
    /// dict returning a value or a coroutine, and publishes it on the DHT as service
    /// `service` (default: the tool's name), so any peer can discover and call it.
    ///
    /// The handler runs on the event loop this is awaited on. A `str` it returns is a
    /// text result, a `dict` a structured one, anything else JSON text; an exception it
    /// raises is an MCP error result (`isError`) carrying `Type: message`, and the node
    /// keeps serving.
    #[pyo3(signature = (name, schema, handler, *, description = None, service = None))]
    fn register_tool<'py>(
        &self,
        py: Python<'py>,
        name: String,
        schema: &Bound<'py, PyAny>,
        handler: Py<PyAny>,
        description: Option<String>,
        service: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        if !handler.bind(py).is_callable() {
            return Err(PyValueError::new_err("handler must be callable"));
        }
        let schema = if schema.is_none() {
            serde_json::json!({"type": "object"})
        } else {
            to_json(schema)?
        };
        if !schema.is_object() {
            return Err(PyValueError::new_err("schema must be a JSON Schema object"));
        }
        let locals = Arc::new(runtime::current_locals(py)?);
        let handler = Arc::new(handler);
        let mut tool =
            Tool::new(name.clone())
                .with_schema(schema)
                .handler(move |call: ToolCall| {
                    let (handler, locals) = (Arc::clone(&handler), Arc::clone(&locals));
                    async move {
                        let result = run_handler(&handler, &locals, call)
                            .await
                            .unwrap_or_else(tool_result::error);
                        Ok::<_, ErrorData>(result)
                    }
                });
        if let Some(d) = description {
            tool = tool.with_description(d);
        }
        let service = service.unwrap_or_else(|| name.clone());
        future_into_py(py, async move {
            node.register_mcp_service(&service, vec![tool])
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    /// Providers of tool `tool` (or of tools tagged `tag`), best first, never this node;
    /// resolves to a list of `ToolInfo`.
    #[pyo3(signature = (tool = None, *, tag = None))]
    fn discover_tools<'py>(
        &self,
        py: Python<'py>,
        tool: Option<String>,
        tag: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        let query = match (tool, tag) {
            (Some(t), None) => Query::tool(t),
            (None, Some(t)) => Query::tag(t),
            _ => return Err(PyValueError::new_err("give either tool or tag")),
        };
        future_into_py(py, async move {
            let found = node.discover_tools(&query).await.map_err(err)?;
            Ok(found.into_iter().map(ToolInfo::from).collect::<Vec<_>>())
        })
    }

    /// Calls tool `name` at the best provider in the network (failing over to the next);
    /// `args` is a dict (or `None`). Resolves to a `CallResult`; raises `ToolError` if the
    /// tool answered with an error result.
    #[pyo3(signature = (name, args = None))]
    fn call_tool<'py>(
        &self,
        py: Python<'py>,
        name: String,
        args: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        let args = args.map(to_json).transpose()?.unwrap_or(Value::Null);
        future_into_py(py, async move {
            Ok(Answer(node.call_tool(&name, args).await.map_err(err)?))
        })
    }

    /// Calls tool `name` at peer `peer` only (no failover); as `call_tool` otherwise.
    #[pyo3(signature = (peer, name, args = None))]
    fn call_peer<'py>(
        &self,
        py: Python<'py>,
        peer: &str,
        name: String,
        args: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = self.node()?;
        let peer = self.peer(peer)?;
        let args = args.map(to_json).transpose()?.unwrap_or(Value::Null);
        future_into_py(py, async move {
            Ok(Answer(
                node.call_peer(peer, &name, args).await.map_err(err)?,
            ))
        })
    }

    /// Connection events from now on: an async iterator of `Event`s.
    fn events(&self) -> PyResult<Events> {
        Ok(Events {
            inner: Arc::new(tokio::sync::Mutex::new(self.node()?.events())),
        })
    }

    /// Shuts the node down gracefully (closes every connection, ends every task) and
    /// releases its port. Calls in flight finish first; later calls raise `P2PError`.
    /// Shutting down twice is a no-op.
    fn shutdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let taken = lock(&self.slot).take();
        future_into_py(py, async move {
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
        })
    }

    /// `async with await Node.start(...) as node:` shuts the node down on leaving.
    fn __aenter__<'py>(slf: Py<Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        future_into_py(py, async move { Ok(slf) })
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.shutdown(py)
    }

    fn __repr__(&self) -> String {
        format!("Node({})", self.addr)
    }
}

/// Waits until `addr` can be bound again (UDP and TCP). [`P2PNode::shutdown`] returns once
/// the node's tasks ended, but QUIC keeps the socket until the closed connections have
/// drained (three probe timeouts, about 0.1 s on loopback) and the endpoint driver ended;
/// the binding promises a free port when `shutdown()` returns, so it waits for that.
async fn wait_released(addr: std::net::SocketAddr) -> PyResult<()> {
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

/// Runs a Python tool handler for one call: the argument dict in, a tool result out, or
/// the exception's `Type: message` as the error text.
async fn run_handler(
    handler: &Py<PyAny>,
    locals: &TaskLocals,
    call: ToolCall,
) -> Result<CallToolResult, String> {
    let args = Value::Object(call.arguments);
    let pending = Python::attach(|py| -> PyResult<Result<_, Py<PyAny>>> {
        let ret = handler.bind(py).call1((from_json(py, &args)?,))?;
        let awaitable: bool = py
            .import("inspect")?
            .call_method1("isawaitable", (&ret,))?
            .extract()?;
        if awaitable {
            Ok(Ok(pyo3_async_runtimes::into_future_with_locals(
                locals, ret,
            )?))
        } else {
            Ok(Err(ret.unbind()))
        }
    })
    .map_err(|e| e.to_string())?;
    let value = match pending {
        Ok(future) => future.await.map_err(|e| e.to_string())?,
        Err(value) => value,
    };
    Python::attach(|py| {
        let value = value.bind(py);
        if let Ok(s) = value.cast::<PyString>() {
            return Ok(tool_result::text(s.to_cow()?));
        }
        let json = to_json(value)?;
        Ok(match json {
            Value::Object(_) => tool_result::structured(json),
            other => tool_result::text(other.to_string()),
        })
    })
    .map_err(|e: PyErr| format!("the tool's result: {e}"))
}

/// A routed call's answer, made a [`CallResult`] (or raised as [`ToolError`]) where the
/// result reaches Python.
struct Answer(Routed);

impl<'py> IntoPyObject<'py> for Answer {
    type Target = CallResult;
    type Output = Bound<'py, CallResult>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        Bound::new(py, call_result(py, self.0)?)
    }
}

/// A routed call's answer as a [`CallResult`], or [`ToolError`] for an `isError` result.
fn call_result(py: Python<'_>, routed: Routed) -> PyResult<CallResult> {
    let text: String = routed
        .result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    if routed.result.is_error == Some(true) {
        return Err(ToolError::new_err(text));
    }
    let value = match &routed.result.structured_content {
        Some(v) => from_json(py, v)?,
        None => PyString::new(py, &text).unbind().into_any(),
    };
    Ok(CallResult {
        provider: routed.provider.to_string(),
        failovers: routed.failovers,
        text,
        value,
    })
}

/// A tool call's answer.
#[pyclass(frozen, module = "p2p_foundation", get_all)]
struct CallResult {
    /// The provider that answered (peer id).
    provider: String,
    /// Providers tried before it.
    failovers: usize,
    /// The result's text content, joined by newlines.
    text: String,
    /// The structured content (a dict) if the tool sent one, else `text`.
    value: Py<PyAny>,
}

#[pymethods]
impl CallResult {
    fn __repr__(&self) -> String {
        format!(
            "CallResult(provider={:?}, text={:?})",
            self.provider, self.text
        )
    }
}

/// One provider of one tool, as discovery found it.
#[pyclass(frozen, module = "p2p_foundation", get_all)]
struct ToolInfo {
    /// The provider (peer id).
    provider: String,
    /// The service the tool belongs to.
    service: String,
    /// The tool's name.
    name: String,
    /// Its description, if any.
    description: Option<String>,
    /// Its version.
    version: String,
    /// Its capability tags.
    tags: Vec<String>,
    /// Its input JSON Schema, as JSON text.
    input_schema: String,
    /// Calls in flight the provider advertised.
    load: u32,
    /// Rank (lower is better).
    score: f64,
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

#[pymethods]
impl ToolInfo {
    fn __repr__(&self) -> String {
        format!(
            "ToolInfo(name={:?}, provider={:?})",
            self.name, self.provider
        )
    }
}

/// A received gossip message, made a [`Message`] where it reaches Python.
struct Received(p2p_foundation::GossipMessage);

impl<'py> IntoPyObject<'py> for Received {
    type Target = Message;
    type Output = Bound<'py, Message>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let m = self.0;
        Bound::new(
            py,
            Message {
                topic: m.topic().to_string(),
                data: PyBytes::new(py, m.data()).unbind(),
                author: m.author().to_string(),
                source: m.from.to_string(),
                hops: m.hops,
                id: m.id.to_string(),
            },
        )
    }
}

/// A gossip message.
#[pyclass(frozen, module = "p2p_foundation", get_all)]
struct Message {
    /// The topic.
    topic: String,
    /// The payload.
    data: Py<PyBytes>,
    /// The peer that signed it.
    author: String,
    /// The peer that forwarded it to this node.
    source: String,
    /// Hops travelled.
    hops: u8,
    /// The message id (hex).
    id: String,
}

#[pymethods]
impl Message {
    fn __repr__(&self) -> String {
        format!("Message(topic={:?}, author={:?})", self.topic, self.author)
    }
}

/// The messages of one gossip topic: `async for message in subscription`.
#[pyclass(frozen, module = "p2p_foundation")]
struct Subscription {
    topic: String,
    inner: Arc<tokio::sync::Mutex<p2p_foundation::Subscription>>,
}

#[pymethods]
impl Subscription {
    /// The topic.
    #[getter]
    fn topic(&self) -> &str {
        &self.topic
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = Arc::clone(&self.inner);
        future_into_py(py, async move {
            match inner.lock().await.recv().await {
                Some(m) => Ok(Received(m)),
                None => Err(PyStopAsyncIteration::new_err("the node shut down")),
            }
        })
    }
}

/// A connection event.
#[pyclass(frozen, module = "p2p_foundation", get_all)]
struct Event {
    /// `"connected"`, `"disconnected"`, `"reconnected"`, `"nat_changed"`,
    /// `"hole_punched"`, `"relayed"` (or `"other"`).
    kind: String,
    /// The peer it concerns, if any.
    peer: Option<String>,
    /// The peer's address, if the event has one.
    addr: Option<String>,
    /// Everything the event says, as text.
    detail: String,
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

#[pymethods]
impl Event {
    fn __repr__(&self) -> String {
        format!("Event(kind={:?}, peer={:?})", self.kind, self.peer)
    }
}

/// A node's connection events: `async for event in node.events()`. A reader more than
/// 1,024 events behind skips the oldest.
#[pyclass(frozen, module = "p2p_foundation")]
struct Events {
    inner: Arc<tokio::sync::Mutex<tokio::sync::broadcast::Receiver<PeerEvent>>>,
}

#[pymethods]
impl Events {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = Arc::clone(&self.inner);
        future_into_py(py, async move {
            let mut rx = inner.lock().await;
            loop {
                match rx.recv().await {
                    Ok(e) => return Ok(Event::from(e)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return Err(PyStopAsyncIteration::new_err("the node shut down"));
                    }
                }
            }
        })
    }
}

/// The module `p2p_foundation._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Node>()?;
    m.add_class::<CallResult>()?;
    m.add_class::<ToolInfo>()?;
    m.add_class::<Message>()?;
    m.add_class::<Subscription>()?;
    m.add_class::<Event>()?;
    m.add_class::<Events>()?;
    m.add_function(wrap_pyfunction!(runtime::stop_runtime, m)?)?;
    m.add("P2PError", py.get_type::<P2PError>())?;
    m.add("ToolError", py.get_type::<ToolError>())?;
    Ok(())
}
