"""A small MCP server on the Python SDK (`mcp` 2.3.0, dual-era: 2026-07-28 and the legacy
revisions), for the client tests. One tool per content kind.

    python py_mcp_server.py stdio
    python py_mcp_server.py sse PORT
    python py_mcp_server.py http PORT [json] [stateless]

HTTP modes bind 127.0.0.1.
"""

import asyncio
import sys

import mcp.types as types
from mcp.server.mcpserver import MCPServer

srv = MCPServer("py-test-server")

# 1x1 transparent PNG and a tiny WAV header: real base64 payloads.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="


@srv.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@srv.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@srv.tool()
def image() -> list:
    """A tiny PNG image."""
    return [types.ImageContent(data=PNG, mime_type="image/png")]


@srv.tool()
def audio() -> list:
    """A tiny WAV clip."""
    return [types.AudioContent(data=WAV, mime_type="audio/wav")]


@srv.tool()
def link() -> list:
    """A link to a resource and an embedded resource."""
    return [
        types.ResourceLink(uri="file:///srv/readme.txt", name="readme", mime_type="text/plain"),
        types.EmbeddedResource(
            resource=types.TextResourceContents(uri="memo://1", mime_type="text/plain", text="memo one")
        ),
    ]


@srv.tool()
def fail(reason: str = "on purpose") -> str:
    """Always raises."""
    raise RuntimeError("tool failed: " + reason)


@srv.tool()
async def slow(ms: int) -> str:
    """Sleep for ms milliseconds."""
    await asyncio.sleep(ms / 1000)
    return "slept %d ms" % ms


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio":
        srv.run()
    elif mode == "sse":
        srv.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    elif mode == "http":
        opts = sys.argv[3:]
        srv.run(
            "streamable-http",
            host="127.0.0.1",
            port=int(sys.argv[2]),
            json_response="json" in opts,
            stateless_http="stateless" in opts,
        )
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
