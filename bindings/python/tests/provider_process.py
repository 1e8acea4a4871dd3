"""A provider node in its own process, driven by the test over stdin/stdout.

It starts a node on loopback, registers a tool and a tool that raises, stores a DHT value
and subscribes to "news", then prints ``addr <peer id>@<ip:port>``. Each gossip message it
receives is printed as ``got <data>``. On ``quit`` (or end of input) it shuts down, binds
its own port again to prove it was released, and prints ``released <port>``.
"""

import asyncio
import socket
import sys

from p2p_foundation import Node

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


async def reverse(args):
    return args["text"][::-1]


async def fail(args):
    raise RuntimeError("this tool always fails")


def say(line):
    print(line, flush=True)


async def main():
    node = await Node.start(listen="127.0.0.1:0", mdns=False)
    await node.register_tool("reverse", SCHEMA, reverse)
    await node.register_tool("fail", None, fail)
    sub = await node.subscribe("news")

    async def relay():
        async for message in sub:
            say(f"got {message.data.decode()} from {message.author}")

    relaying = asyncio.ensure_future(relay())
    say(f"addr {node.addr}")
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line.startswith("put "):
            _, key, value = line.split(" ", 2)
            say(f"stored {await node.dht_put(key, value)}")
        elif line in ("quit", ""):
            break
    port = node.port
    await node.shutdown()
    relaying.cancel()
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", port))
    say(f"released {port}")


asyncio.run(asyncio.wait_for(main(), 120))
