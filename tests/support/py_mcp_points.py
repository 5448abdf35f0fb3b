"""An MCP server on the Python SDK (`mcp` 2.3.0, dual-era: 2026-07-28 and the legacy
revisions) with the tools the issue-15 regression tests need.

    python py_mcp_points.py stdio
    python py_mcp_points.py sse PORT
    python py_mcp_points.py http PORT [json] [stateless]
    python py_mcp_points.py https PORT CERTFILE KEYFILE   (streamable HTTP over TLS)

Environment: MARK_FILE (where `slow` notes "start TAG", "done TAG" or "cancelled TAG", one per
line), VARIANT (`v2` lists `new_tool` instead of `old_tool`: a server restarted with new tools).
HTTP modes bind 127.0.0.1.
"""

import asyncio
import base64
import os
import sys

import mcp.types as types
from mcp.server.mcpserver import MCPServer

srv = MCPServer("py-points-server", version="1.2.3")
VARIANT = os.environ.get("VARIANT", "v1")


def mark(line: str):
    path = os.environ.get("MARK_FILE")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@srv.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@srv.tool()
def huge(size: int) -> str:
    """Return `size` bytes of text."""
    return "x" * size


@srv.tool()
async def slow(ms: int, tag: str = "") -> str:
    """Sleep for ms milliseconds, noting start, end or cancellation in MARK_FILE."""
    mark("start " + tag)
    try:
        await asyncio.sleep(ms / 1000)
    except asyncio.CancelledError:
        mark("cancelled " + tag)
        raise
    mark("done " + tag)
    return "slept %d ms" % ms


@srv.tool()
def blob(mime: str, text: str) -> list:
    """An embedded blob resource holding `text` (base64) with the given MIME type."""
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return [
        types.EmbeddedResource(
            resource=types.BlobResourceContents(uri="mem://blob", mime_type=mime, blob=data)
        )
    ]


@srv.tool(
    title="Annotated Sum",
    annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True),
    meta={"example.com/owner": "tests"},
)
def annotated(a: int, b: int) -> int:
    """Add two integers (with a title, annotations, _meta and an output schema)."""
    return a + b


if VARIANT == "v2":

    @srv.tool()
    def new_tool() -> str:
        """Only in v2."""
        return "new tool here"

else:

    @srv.tool()
    def old_tool() -> str:
        """Only in v1."""
        return "old tool here"


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
    elif mode == "https":
        import uvicorn

        uvicorn.run(
            srv.streamable_http_app(),
            host="127.0.0.1",
            port=int(sys.argv[2]),
            ssl_certfile=sys.argv[3],
            ssl_keyfile=sys.argv[4],
            log_level="warning",
        )
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
