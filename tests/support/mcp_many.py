#!/usr/bin/env python3
"""A stdio MCP server with hostile listings, for tests/hostile_requests.rs (python3 stdlib only).

Usage: mcp_many.py MODE [ARG]
  many N    N tools t0 .. t{N-1} (default 40000), each answering "ok <name>"
  control   one tool whose name and description hold ESC [31m and CR, and whose calls fail
            with an error message that holds them too
  control-fail  answers tools/list with an error whose message holds ESC [31m and CR
"""

import json
import sys

MODE = sys.argv[1] if len(sys.argv) > 1 else "many"
ARG = sys.argv[2] if len(sys.argv) > 2 else None
EVIL = "evil\x1b[31mred\rX"


def tools():
    if MODE == "control":
        return [{"name": EVIL, "description": "desc \x1b[2J\x07 bell\r",
                 "inputSchema": {"type": "object"}}]
    n = int(ARG or 40000)
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    return [{"name": "t%d" % i, "description": "tool %d" % i, "inputSchema": schema}
            for i in range(n)]


def reply(msg_id, result=None, error=None):
    m = {"jsonrpc": "2.0", "id": msg_id}
    if error is not None:
        m["error"] = error
    else:
        m["result"] = result
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, msg_id = msg.get("method"), msg.get("id")
    if msg_id is None:
        continue
    if method == "initialize":
        reply(msg_id, {"protocolVersion": msg["params"].get("protocolVersion", "2025-06-18"),
                       "capabilities": {"tools": {}},
                       "serverInfo": {"name": "many\x1b[31m", "version": "1"}})
    elif method == "tools/list" and MODE == "control-fail":
        reply(msg_id, error={"code": -32000, "message": "listing \x1b[31mbroke\r here"})
    elif method == "tools/list":
        reply(msg_id, {"tools": tools()})
    elif method == "tools/call":
        name = msg["params"]["name"]
        if MODE == "control":
            reply(msg_id, error={"code": -32000, "message": "bad \x1b[31mthing\r"})
        else:
            reply(msg_id, {"content": [{"type": "text", "text": "ok " + name}]})
    elif method == "ping":
        reply(msg_id, {})
    else:
        reply(msg_id, error={"code": -32601, "message": "no such method"})
