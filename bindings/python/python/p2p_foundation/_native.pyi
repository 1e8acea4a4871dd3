"""Type stubs of the native module (``p2p_foundation._native``), re-exported by the package."""

from collections.abc import AsyncIterator, Awaitable, Callable
from os import PathLike
from typing import Any, Optional, Union

JSON = Any
ToolHandler = Callable[[dict[str, JSON]], Union[Awaitable[JSON], JSON]]

class P2PError(Exception):
    """An error of the node; its message is the Rust error's."""

class ToolError(P2PError):
    """A tool answered with an MCP error result (``isError``); its message is the tool's."""

class CallResult:
    """A tool call's answer."""

    provider: str
    """The provider that answered (peer id)."""
    failovers: int
    """Providers tried before it."""
    text: str
    """The result's text content, joined by newlines."""
    value: JSON
    """The structured content (a dict) if the tool sent one, else ``text``."""

class ToolInfo:
    """One provider of one tool, as discovery found it."""

    provider: str
    service: str
    name: str
    description: Optional[str]
    version: str
    tags: list[str]
    input_schema: str
    """The input JSON Schema, as JSON text."""
    load: int
    score: float
    """Rank: lower is better."""

class Message:
    """A gossip message."""

    topic: str
    data: bytes
    author: str
    """The peer that signed it."""
    source: str
    """The peer that forwarded it to this node."""
    hops: int
    id: str

class Subscription(AsyncIterator[Message]):
    """The messages of one gossip topic: ``async for message in subscription``."""

    @property
    def topic(self) -> str: ...
    def __aiter__(self) -> "Subscription": ...
    async def __anext__(self) -> Message: ...

class Event:
    """A connection event."""

    kind: str
    """``"connected"``, ``"disconnected"``, ``"reconnected"``, ``"nat_changed"``,
    ``"hole_punched"``, ``"relayed"`` or ``"other"``."""
    peer: Optional[str]
    addr: Optional[str]
    detail: str

class Events(AsyncIterator[Event]):
    """Connection events: ``async for event in node.events()``."""

    def __aiter__(self) -> "Events": ...
    async def __anext__(self) -> Event: ...

class Node:
    """A running node (QUIC transport, Kademlia DHT, gossip, MCP server)."""

    @staticmethod
    async def start(
        listen: str = "[::]:0",
        bootstrap: list[str] = ...,
        *,
        mdns: bool = True,
        identity_file: Optional[Union[str, PathLike[str]]] = None,
    ) -> "Node":
        """Starts a node on ``listen`` (socket address, three words or multiaddr) and joins
        through ``bootstrap`` (``<peer id>@<address>``, ``.../p2p/<peer id>``, or an address
        alone: numbers or three words)."""
    @property
    def peer_id(self) -> str: ...
    @property
    def words(self) -> str:
        """The listen address as three words (six or nine for IPv6)."""
    @property
    def addr(self) -> str:
        """``<peer id>@<listen address>``."""
    @property
    def port(self) -> int: ...
    def connected_peers(self) -> list[str]: ...
    async def connect(self, addr: str) -> str:
        """Connects to ``addr`` and keeps the peer connected; returns its peer id."""
    async def dht_put(self, key: str, value: Union[bytes, str]) -> int:
        """Stores ``value`` under ``key``; returns how many nodes accepted it."""
    async def dht_get(self, key: str) -> Optional[bytes]: ...
    async def publish(self, topic: str, data: Union[bytes, str]) -> str:
        """Publishes on gossip ``topic``; returns the message id."""
    async def subscribe(self, topic: str) -> Subscription: ...
    async def wait_for_topic_peers(self, topic: str, n: int) -> None: ...
    async def register_tool(
        self,
        name: str,
        schema: Optional[dict[str, JSON]],
        handler: ToolHandler,
        *,
        description: Optional[str] = None,
        service: Optional[str] = None,
    ) -> None:
        """Registers tool ``name`` served by ``handler`` and publishes it on the DHT. The
        handler's exceptions become MCP error results; the node keeps serving."""
    async def discover_tools(
        self, tool: Optional[str] = None, *, tag: Optional[str] = None
    ) -> list[ToolInfo]: ...
    async def call_tool(self, name: str, args: Optional[dict[str, JSON]] = None) -> CallResult:
        """Calls ``name`` at the best provider; raises ``ToolError`` on an error result."""
    async def call_peer(
        self, peer: str, name: str, args: Optional[dict[str, JSON]] = None
    ) -> CallResult: ...
    def events(self) -> Events: ...
    async def shutdown(self) -> None:
        """Shuts down gracefully and releases the port."""
    async def __aenter__(self) -> "Node": ...
    async def __aexit__(self, *exc: object) -> None:
        """Shuts the node down."""
