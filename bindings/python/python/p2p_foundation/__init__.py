"""The whole p2p-foundation node from Python: QUIC transport, Kademlia DHT, gossip and
MCP tools any peer can discover and call.

Every network call is a coroutine running on the node's tokio runtime; errors are
``P2PError`` (``ToolError`` for a tool's error result) carrying the Rust error's message.
"""

from ._native import (
    CallResult,
    Event,
    Events,
    Message,
    Node,
    P2PError,
    Subscription,
    ToolError,
    ToolInfo,
)

__all__ = [
    "CallResult",
    "Event",
    "Events",
    "Message",
    "Node",
    "P2PError",
    "Subscription",
    "ToolError",
    "ToolInfo",
]

import atexit as _atexit

from . import _native

# Stop the node runtime before the interpreter finalizes (see src/runtime.rs).
_atexit.register(_native.stop_runtime)
