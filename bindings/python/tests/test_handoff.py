"""How results reach the event loop: the node's threads queue them and wake the loop, which
resolves the awaiting futures itself (no Python call from the runtime's threads, so no
extra thread hop and no GIL taken there); many at once, cancelled ones, several loops."""

import asyncio
import json
import threading

import pytest

from conftest import ECHO_SCHEMA, run, shutdown, step
from p2p_foundation import Node


def echo(args):  # a plain function: the provider runs it without its event loop
    return {"echo": args["text"]}


async def pair():
    provider = await step(Node.start(listen="127.0.0.1:0", mdns=False))
    caller = await step(Node.start(listen="127.0.0.1:0", bootstrap=[provider.addr], mdns=False))
    await step(provider.register_tool("echo", ECHO_SCHEMA, echo))
    assert [t.provider for t in await step(caller.discover_tools("echo"))] == [provider.peer_id]
    return provider, caller


def test_results_reach_the_loop_without_call_soon_threadsafe():
    async def main():
        loop = asyncio.get_running_loop()
        threadsafe = 0
        original = loop.call_soon_threadsafe

        def counting(*args, **kwargs):
            nonlocal threadsafe
            threadsafe += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting
        provider, caller = await pair()
        for i in range(20):
            answer = await step(caller.call_peer(provider.peer_id, "echo", {"text": str(i)}))
            assert answer.value == {"echo": str(i)}
        assert await step(caller.dht_get("handoff/absent")) is None
        # A worker thread resolving a future through the loop would have called it.
        assert threadsafe == 0
        await shutdown(caller, provider)

    run(main())


def test_many_concurrent_calls_each_get_their_own_answer():
    async def main():
        provider, caller = await pair()
        texts = [f"t{i}" for i in range(100)]
        answers = await step(
            asyncio.gather(
                *(caller.call_peer(provider.peer_id, "echo", {"text": t}) for t in texts)
            )
        )
        assert [a.value for a in answers] == [{"echo": t} for t in texts]
        await shutdown(caller, provider)

    run(main())


def test_a_cancelled_call_is_stopped_and_the_node_keeps_serving():
    async def main():
        provider, caller = await pair()
        started, release = asyncio.Event(), asyncio.Event()

        async def stuck(args):
            started.set()
            await release.wait()
            return "late"

        await step(provider.register_tool("stuck", ECHO_SCHEMA, stuck))
        call = asyncio.ensure_future(caller.call_peer(provider.peer_id, "stuck", {"text": "x"}))
        await step(started.wait())
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        again = await step(caller.call_peer(provider.peer_id, "echo", {"text": "after"}))
        assert again.value == {"echo": "after"}
        # The cancelled call's Rust task is gone with it: nothing in flight holds the node,
        # so it shuts down while the handler still waits (the call's own deadline is 30 s).
        await step(caller.shutdown(), timeout=10)
        release.set()
        await step(provider.shutdown())

    run(main())


def test_calls_from_two_loops_of_one_thread_and_from_another_thread():
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        provider, caller = first.run_until_complete(pair())

        async def call(text):
            answer = await step(caller.call_peer(provider.peer_id, "echo", {"text": text}))
            return answer.value["echo"]

        assert first.run_until_complete(call("first")) == "first"
        assert second.run_until_complete(call("second")) == "second"
        assert first.run_until_complete(call("first again")) == "first again"
        other = []
        thread = threading.Thread(target=lambda: other.append(run(call("thread"))))
        thread.start()
        thread.join(60)
        assert other == ["thread"]

        first.run_until_complete(shutdown(caller, provider))
    finally:
        first.close()
        second.close()


class Text(str):
    pass


def test_arguments_and_answers_mean_what_the_json_module_means():
    deep = [1]
    for _ in range(40):
        deep = [deep]
    samples = [
        {"a": [1, -2, 2**63, 2**64 - 1, 1.5, -0.0, 1e300, True, False, None], "b": 'é\n"\\'},
        {"tuple": (1, (2, [3])), "empty": [{}, [], "", 0]},
        {"keys": {1: "int", 2.5: "float", None: "none", False: "bool"}},
        {"subclass": Text("s"), Text("key"): 1},
        {"deep": deep},
    ]

    async def main():
        provider, caller = await pair()
        seen = []

        def mirror(args):
            seen.append(args)
            return {"got": args}

        await step(provider.register_tool("mirror", None, mirror))
        await step(caller.discover_tools("mirror"))
        for sample in samples:
            expected = json.loads(json.dumps(sample))
            answer = await step(caller.call_peer(provider.peer_id, "mirror", sample))
            assert seen[-1] == expected
            assert answer.value == {"got": expected}
        # Past 64 bits an integer reads back as a float (the JSON text route's meaning).
        answer = await step(caller.call_peer(provider.peer_id, "mirror", {"big": 2**64}))
        assert answer.value == {"got": {"big": float(2**64)}}
        assert isinstance(answer.value["got"]["big"], float)
        for bad, error in [
            ({"x": float("nan")}, ValueError),
            ({"x": float("inf")}, ValueError),
            ({"x": {1j}}, TypeError),
            ({"x": "\ud800"}, ValueError),
        ]:
            with pytest.raises(error):
                await caller.call_peer(provider.peer_id, "mirror", bad)
        await shutdown(caller, provider)

    run(main())
