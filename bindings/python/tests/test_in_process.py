"""Two nodes in one process: tools registered in Python, discovered and called from the
other node; DHT put/get; gossip; a raising handler; events; shutdown releasing the port."""

import asyncio
import socket

import pytest

from conftest import ECHO_SCHEMA, run, shutdown, step
from p2p_foundation import CallResult, Node, P2PError, ToolError


async def pair():
    provider = await step(Node.start(listen="127.0.0.1:0", mdns=False))
    caller = await step(Node.start(listen="127.0.0.1:0", bootstrap=[provider.addr], mdns=False))
    return provider, caller


def test_a_python_tool_is_discovered_and_called_from_the_other_node():
    async def main():
        provider, caller = await pair()
        seen = []

        async def echo(args):
            seen.append(args)
            await asyncio.sleep(0)  # a real coroutine, suspended once
            return {"echo": args["text"], "n": len(seen)}

        def shout(args):  # a plain function works too
            return args["text"].upper()

        await step(provider.register_tool("echo", ECHO_SCHEMA, echo, description="echoes"))
        await step(provider.register_tool("shout", ECHO_SCHEMA, shout))

        found = await step(caller.discover_tools("echo"))
        assert [(t.name, t.provider, t.description) for t in found] == [
            ("echo", provider.peer_id, "echoes")
        ]
        answer = await step(caller.call_tool("echo", {"text": "hi"}))
        assert isinstance(answer, CallResult)
        assert answer.provider == provider.peer_id
        assert answer.value == {"echo": "hi", "n": 1}
        assert seen == [{"text": "hi"}]
        pinned = await step(caller.call_peer(provider.peer_id, "shout", {"text": "hey"}))
        assert (pinned.value, pinned.text, pinned.provider) == ("HEY", "HEY", provider.peer_id)

        # The schema is enforced by the provider's MCP server: the caller gets its error.
        with pytest.raises(P2PError) as bad:
            await step(caller.call_peer(provider.peer_id, "echo", {"text": 5}))
        assert "text" in str(bad.value)
        with pytest.raises(P2PError, match="no provider"):
            await step(caller.call_tool("nobody-offers-this", {}))
        assert len(seen) == 1
        await shutdown(caller, provider)

    run(main())


def test_a_raising_handler_gives_the_caller_an_mcp_error_and_the_node_keeps_serving():
    async def main():
        provider, caller = await pair()
        calls = 0

        async def flaky(args):
            nonlocal calls
            calls += 1
            if args["text"] == "boom":
                raise ValueError(f"cannot handle {args['text']!r}")
            return f"ok {args['text']}"

        await step(provider.register_tool("flaky", ECHO_SCHEMA, flaky))
        for _ in range(2):
            with pytest.raises(ToolError, match=r"ValueError: cannot handle 'boom'"):
                await step(caller.call_tool("flaky", {"text": "boom"}))
            ok = await step(caller.call_tool("flaky", {"text": "fine"}))
            assert ok.value == "ok fine"
        assert calls == 4
        assert issubclass(ToolError, P2PError)
        await shutdown(caller, provider)

    run(main())


def test_dht_put_on_one_node_is_read_on_the_other():
    async def main():
        provider, caller = await pair()
        assert await step(caller.dht_put("binding/key", b"v1")) >= 1
        assert await step(caller.dht_put("binding/key", "v2")) >= 1
        assert await step(provider.dht_get("binding/key")) == b"v2"
        assert await step(provider.dht_get("binding/absent")) is None
        await shutdown(caller, provider)

    run(main())


def test_gossip_is_delivered_to_the_other_node():
    async def main():
        provider, caller = await pair()
        sub = await step(provider.subscribe("news"))
        assert sub.topic == "news"
        await step(caller.subscribe("news"))
        await step(caller.wait_for_topic_peers("news", 1))
        msg_id = await step(caller.publish("news", b"hello"))
        message = await step(sub.__anext__())
        assert (message.data, message.author, message.topic) == (b"hello", caller.peer_id, "news")
        assert message.id == msg_id
        # `async for` works too.
        await step(caller.publish("news", "second"))

        async def first():
            async for m in sub:
                return m

        assert (await step(first())).data == b"second"
        await shutdown(caller, provider)

    run(main())


def test_events_report_the_peer_that_connected_and_connect_by_three_words():
    async def main():
        provider = await step(Node.start(listen="127.0.0.1:0", mdns=False))
        events = provider.events()
        caller = await step(Node.start(listen="127.0.0.1:0", mdns=False))
        assert await step(caller.connect(provider.words)) == provider.peer_id
        assert provider.peer_id in caller.connected_peers()

        async def connected():
            async for event in events:
                if event.kind == "connected" and event.peer == caller.peer_id:
                    return event

        event = await step(connected())
        assert event.addr.startswith("127.0.0.1:")
        await shutdown(caller, provider)

    run(main())


def test_shutdown_releases_the_port_and_later_calls_raise():
    async def main():
        node = await step(Node.start(listen="127.0.0.1:0", mdns=False))
        port = node.port
        assert node.addr == f"{node.peer_id}@127.0.0.1:{port}"
        # While the node runs its UDP port (QUIC) is taken.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(OSError):
                s.bind(("127.0.0.1", port))
        await step(node.shutdown())
        await step(node.shutdown())  # twice is a no-op
        with pytest.raises(P2PError, match="shut down"):
            await step(node.dht_get("x"))
        # The UDP (QUIC) and TCP (fallback) ports are free again ...
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))
        # ... and a new node binds the same port; `async with` shuts it down on leaving.
        async with await step(Node.start(listen=f"127.0.0.1:{port}", mdns=False)) as again:
            assert again.port == port and again.peer_id != node.peer_id
        with pytest.raises(P2PError, match="shut down"):
            again.connected_peers()

    run(main())


def test_bad_input_raises_with_the_rust_message():
    async def main():
        with pytest.raises(P2PError, match="'nine'"):
            await step(Node.start(listen="/ip4/127.0.0.1/udp/nine/quic-v1"))
        with pytest.raises(P2PError, match="not a peer id"):
            await step(Node.start(listen="127.0.0.1:0", bootstrap=["nobody@127.0.0.1:1"]))
        node = await step(Node.start(listen="127.0.0.1:0", mdns=False))
        with pytest.raises(ValueError, match="schema"):
            await node.register_tool("t", [1], lambda a: a)
        with pytest.raises(ValueError):
            await node.call_tool("t", {"x": float("nan")})
        with pytest.raises(P2PError, match="JSON object"):
            await step(node.call_tool("t", [1, 2]))
        with pytest.raises(P2PError, match="not a peer id"):
            await step(node.call_peer("nobody", "t"))
        await step(node.shutdown())

    run(main())
