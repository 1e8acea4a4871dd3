"""Shared helpers: every test runs its coroutine under one overall timeout, and every
wait inside has its own (so a broken run fails with the step that hung)."""

import asyncio

import pytest

# Bounds a broken run; the waits below are on events, not sleeps.
TEST_TIMEOUT = 90.0
STEP_TIMEOUT = 30.0


def run(coro, timeout: float = TEST_TIMEOUT):
    """Runs ``coro`` on a fresh event loop, failing after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def step(awaitable, timeout: float = STEP_TIMEOUT):
    """One awaited step, failing after ``timeout`` seconds."""
    return await asyncio.wait_for(awaitable, timeout)


async def shutdown(*nodes):
    """Shuts ``nodes`` down, one after the other, each a step."""
    for node in nodes:
        await step(node.shutdown())


ECHO_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}


@pytest.fixture
def loopback() -> str:
    """A listen address on loopback, any port."""
    return "127.0.0.1:0"
