"""An ordinary MCP client (the official Python SDK) against `p2pf node --mcp-http`.

Usage: mcp_http_client.py URL TOOL ARGS_JSON
Lists the gateway's tools, calls TOOL with ARGS_JSON, and prints one JSON line:
{"tools": [...names...], "result": <structured content>, "is_error": bool}.
"""

import json
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main():
    url, tool, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    async with streamable_http_client(url) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            tools = [t.name for t in (await session.list_tools()).tools]
            r = await session.call_tool(tool, args)
            print(json.dumps({
                "tools": tools,
                "result": r.structured_content,
                "is_error": bool(r.is_error),
            }))


anyio.run(main)
