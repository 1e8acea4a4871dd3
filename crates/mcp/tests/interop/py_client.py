"""Drive a p2p-foundation-mcp gateway with the official MCP Python SDK.

Usage: py_client.py (--stdio CMD [ARGS...] | --http URL) --era (initialize|discover) [--network]
Exits non-zero, naming the failed check, if anything is wrong.
"""

import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

import mcp.types as types


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


async def exercise(session, era, network):
    if era == "initialize":
        init = await session.initialize()
        check(init.protocol_version == "2025-11-25", f"initialize negotiated 2025-11-25 (got {init.protocol_version})")
    else:
        disc = await session.discover()
        check("2026-07-28" in disc.supported_versions, f"server/discover lists 2026-07-28 ({disc.supported_versions})")

    tools = (await session.list_tools()).tools
    names = {t.name for t in tools}
    for n in ["echo", "add", "fail", "count"]:
        check(n in names, f"tools/list has {n}")
    add = next(t for t in tools if t.name == "add")
    check(add.output_schema is not None and add.output_schema.get("required") == ["sum"], "add declares its output schema")

    r = await session.call_tool("add", {"a": 2, "b": 40})
    check(not r.is_error, "add succeeded")
    check(r.structured_content == {"sum": 42}, f"structured content {r.structured_content}")

    r = await session.call_tool("fail", {})
    check(r.is_error is True, "fail returned isError")
    check(r.content and "on purpose" in r.content[0].text, "isError carries the tool's message")

    updates = []

    async def on_progress(progress, total, message):
        updates.append((progress, total, message))

    r = await session.call_tool("count", {"n": 4}, progress_callback=on_progress)
    check(not r.is_error, "count succeeded")
    check([u[0] for u in updates] == [1, 2, 3, 4], f"progress updates {updates}")

    # Schema violation: a JSON-RPC error (-32602), not a tool result.
    try:
        await session.call_tool("add", {"a": "two", "b": 1})
        check(False, "schema-violating call must fail")
    except Exception as e:  # McpError
        code = getattr(getattr(e, "error", None), "code", None)
        check(code == -32602, f"schema violation -> -32602 (got {code}: {e})")

    res = (await session.list_resources()).resources
    check(any(str(x.uri) == "p2pf://readme" for x in res), "resources/list has p2pf://readme")
    rr = await session.read_resource("p2pf://readme")
    check(rr.contents[0].text == "hello from a p2p node", "resources/read returns the text")

    prompts = (await session.list_prompts()).prompts
    check(any(p.name == "greet" for p in prompts), "prompts/list has greet")
    gp = await session.get_prompt("greet", {"name": "Ada"})
    check("Say hello to Ada" in gp.messages[0].content.text, "prompts/get renders the argument")

    # completion/complete for a prompt argument.
    c = await session.complete(types.PromptReference(type="ref/prompt", name="greet"), {"name": "name", "value": "al"})
    check(c.completion.values == ["alice", "alan"], f"completion/complete values {c.completion.values}")

    # Logging: `bump` logs at info; the counter resource changes.
    before = len(LOGS)
    if era == "initialize":
        await session.set_logging_level("info")
        await session.subscribe_resource("p2pf://counter")
    r = await session.call_tool("bump", {})
    check(not r.is_error, "bump succeeded")
    # On a 2025-11-25 HTTP session the log rides the standalone SSE stream, not
    # the call's, so it may trail the result: wait for it (hang guard only).
    with anyio.fail_after(30):
        while not any("counter is now" in str(m.data) for m in LOGS[before:]):
            await LOGGED.wait()
            LOGGED_RESET()
    check(True, f"notifications/message arrived ({LOGS[before:]})")
    if era == "initialize":
        with anyio.fail_after(30):  # hang guard: wait for the event, no fixed sleep
            await UPDATED.wait()
        check(True, "notifications/resources/updated arrived for p2pf://counter")
        await session.unsubscribe_resource("p2pf://counter")

    # Server-to-client requests (2025-11-25) and multi-round requests (2026-07-28).
    if era == "initialize":
        r = await session.call_tool("test_sampling", {"prompt": "2+2?"})
        check(r.content[0].text == "LLM response: python says 4", f"sampling round trip ({r.content[0].text})")
        r = await session.call_tool("test_elicitation", {"message": "Who are you?"})
        check("Ada" in r.content[0].text, f"elicitation round trip ({r.content[0].text})")
        r = await session.call_tool("test_input_required_result_elicitation", {})
        check(r.content[0].text == "Hello, Ada!", f"multi-round tool served by asking directly ({r.content[0].text})")
    else:
        first = await session.call_tool("test_input_required_result_elicitation", {}, allow_input_required=True)
        check(isinstance(first, types.InputRequiredResult), f"InputRequiredResult ({first})")
        check("user_name" in first.input_requests, "input request user_name")
        done = await session.call_tool(
            "test_input_required_result_elicitation",
            {},
            allow_input_required=True,
            input_responses={"user_name": {"action": "accept", "content": {"name": "Ada"}}},
            request_state=first.request_state,
        )
        check(done.content[0].text == "Hello, Ada!", f"second round completes ({done})")

    if network:
        net = [n for n in names if n.endswith(".generate_text")]
        check("any.generate_text" in net, f"routed network tool listed ({sorted(net)})")
        pinned = [n for n in net if not n.startswith("any.")]
        check(len(pinned) == 2, f"two provider-namespaced tools ({pinned})")
        for name in pinned + ["any.generate_text"]:
            updates.clear()
            r = await session.call_tool(name, {"prompt": "hi"}, progress_callback=on_progress)
            check(not r.is_error, f"{name} succeeded over the peer stream")
            check(r.structured_content["text"].endswith("says: hi"), f"{name} answered {r.structured_content}")
            check([u[0] for u in updates] == [1, 2], f"{name} progress crossed the peer stream ({updates})")
    print("ALL CHECKS PASSED")


LOGS = []
UPDATED = anyio.Event()
LOGGED = anyio.Event()


def LOGGED_RESET():
    global LOGGED
    LOGGED = anyio.Event()


async def on_log(params):
    LOGS.append(params)
    LOGGED.set()


async def on_message(message):
    root = getattr(message, "root", message)
    if getattr(root, "method", None) == "notifications/resources/updated" and str(root.params.uri) == "p2pf://counter":
        UPDATED.set()


async def on_sampling(context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="python says 4"),
        model="python-test",
        stop_reason="endTurn",
    )


async def on_elicitation(context, params):
    return types.ElicitResult(action="accept", content={"username": "Ada", "email": "ada@example.org", "name": "Ada"})


def session_for(streams, era):
    return ClientSession(
        streams[0],
        streams[1],
        sampling_callback=on_sampling,
        elicitation_callback=on_elicitation,
        logging_callback=on_log,
        message_handler=on_message,
        log_level="info" if era == "discover" else None,
    )


async def main():
    args = sys.argv[1:]
    era = args[args.index("--era") + 1]
    network = "--network" in args
    if args[0] == "--stdio":
        end = args.index("--era")
        cmd = [a for a in args[1:end]]
        params = StdioServerParameters(command=cmd[0], args=cmd[1:])
        async with stdio_client(params) as streams:
            async with session_for(streams, era) as session:
                await exercise(session, era, network)
    else:
        url = args[1]
        async with streamable_http_client(url) as streams:
            async with session_for(streams, era) as session:
                await exercise(session, era, network)


anyio.run(main)
