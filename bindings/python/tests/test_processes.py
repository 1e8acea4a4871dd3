"""Two nodes in separate processes: this test's node calls the tools a provider process
registered in Python, reads its DHT value, and gossips to it; the provider's raising tool
gives an MCP error while it keeps serving; its shutdown releases its port."""

import asyncio
import os
import socket
import sys

import pytest

from conftest import run, step
from p2p_foundation import Node, ToolError

HERE = os.path.dirname(os.path.abspath(__file__))


class Provider:
    """The provider process and its line protocol (see provider_process.py)."""

    def __init__(self, proc):
        self.proc = proc

    @classmethod
    async def start(cls):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            os.path.join(HERE, "provider_process.py"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def expect(self, prefix):
        while True:
            line = (await step(self.proc.stdout.readline())).decode().rstrip("\n")
            if not line:
                raise AssertionError(f"the provider exited while {prefix!r} was expected")
            if line.startswith(prefix):
                return line[len(prefix) :]

    async def send(self, line):
        self.proc.stdin.write(f"{line}\n".encode())
        await step(self.proc.stdin.drain())

    async def finish(self):
        if self.proc.returncode is None:
            self.proc.kill()
        await step(self.proc.wait())


def test_a_node_in_another_process_serves_tools_dht_and_gossip_and_releases_its_port():
    async def main():
        provider = await Provider.start()
        try:
            addr = await provider.expect("addr ")
            provider_id, _, hostport = addr.partition("@")
            caller = await step(Node.start(listen="127.0.0.1:0", bootstrap=[addr], mdns=False))

            found = await step(caller.discover_tools("reverse"))
            assert [t.provider for t in found] == [provider_id]
            answer = await step(caller.call_tool("reverse", {"text": "stressed"}))
            assert (answer.value, answer.provider) == ("desserts", provider_id)
            with pytest.raises(ToolError, match="RuntimeError: this tool always fails"):
                await step(caller.call_peer(provider_id, "fail"))
            again = await step(caller.call_peer(provider_id, "reverse", {"text": "live"}))
            assert again.value == "evil"

            await provider.send("put proc/key from-the-other-process")
            assert int(await provider.expect("stored ")) >= 1
            assert await step(caller.dht_get("proc/key")) == b"from-the-other-process"

            await step(caller.subscribe("news"))
            await step(caller.wait_for_topic_peers("news", 1))
            await step(caller.publish("news", "hello there"))
            assert await provider.expect("got ") == f"hello there from {caller.peer_id}"

            await provider.send("quit")
            port = int(await provider.expect("released "))
            assert hostport == f"127.0.0.1:{port}"
            assert await step(provider.proc.wait()) == 0
            await step(caller.shutdown())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", port))
        finally:
            await provider.finish()

    run(main())
