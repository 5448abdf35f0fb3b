#!/usr/bin/env python3
"""A misbehaving stdio MCP server for the client's tests (python3 stdlib only).

Usage: mcp_faults.py MODE [ARG]

Every mode serves the `echo` tool (text -> same text); modes add their faults:
  crash          tool `crash` exits the process (status 3) in the middle of the call
  hang           tool `hang` is never answered
  garbage        non-JSON lines (and non-UTF-8 bytes, bare values) between all messages
  huge           tool `huge` returns ARG bytes of text (default 5 000 000)
  flood          ARG notifications (default 2000) before and after every reply
  slow-start     sleeps ARG seconds (default 1.5) before answering initialize
  never-init     never answers initialize
  paged          tools/list in pages of 2 via nextCursor (5 tools: echo, t1..t4)
  list-changed   tool `grow` answers, then sends notifications/tools/list_changed and lists `extra`
  env            tool `env` returns the process environment as JSON text
  exit-after-n   exits (status 0) right after answering ARG tool calls (default 2)
  grandchild     starts `sleep 300` as a child; tool `grandchild` returns its pid
  stubborn       ignores SIGTERM and stdin EOF (only SIGKILL stops it)
  bad-version    answers initialize with protocolVersion 1999-01-01
  server-requests  after `initialized`, sends ping and roots/list requests to the client;
                 tool `report` returns the client's answers as JSON text
"""

import json
import os
import signal
import subprocess
import sys
import time

MODE = sys.argv[1] if len(sys.argv) > 1 else "plain"
ARG = sys.argv[2] if len(sys.argv) > 2 else None
OUT = sys.stdout.buffer

state = {"calls": 0, "grown": False, "answers": {}, "grandchild": None}


def write_raw(data: bytes):
    OUT.write(data)
    OUT.flush()


def garbage():
    if MODE == "garbage":
        write_raw(b"this is not json\n{broken\n\n\xff\xfe\x00junk\n42\n[1,2\n   \n")


def flood():
    if MODE == "flood":
        n = int(ARG or 2000)
        chunk = []
        for i in range(n):
            if i % 2:
                m = {"jsonrpc": "2.0", "method": "notifications/message",
                     "params": {"level": "info", "data": "flood %d" % i}}
            else:
                m = {"jsonrpc": "2.0", "method": "notifications/progress",
                     "params": {"progressToken": "none", "progress": i}}
            chunk.append(json.dumps(m, separators=(",", ":")))
        write_raw(("\n".join(chunk) + "\n").encode())


def send(msg):
    garbage()
    flood()
    write_raw((json.dumps(msg, separators=(",", ":")) + "\n").encode())
    garbage()
    flood()


def result(mid, res):
    send({"jsonrpc": "2.0", "id": mid, "result": res})


def error(mid, code, message):
    send({"jsonrpc": "2.0", "id": mid, "error": {"code": code, "message": message}})


def text(t, is_error=False):
    return {"content": [{"type": "text", "text": t}], "isError": is_error}


def tool(name, props=None):
    return {"name": name, "description": "fault tool " + name,
            "inputSchema": {"type": "object", "properties": props or {}}}


def tools():
    base = [tool("echo", {"text": {"type": "string"}})]
    extra = {
        "crash": ["crash"], "hang": ["hang"], "huge": ["huge"], "env": ["env"],
        "list-changed": ["grow"] + (["extra"] if state["grown"] else []),
        "paged": ["t1", "t2", "t3", "t4"], "grandchild": ["grandchild"],
        "server-requests": ["report"],
    }.get(MODE, [])
    return base + [tool(n) for n in extra]


def handle_call(mid, params):
    name = params.get("name")
    args = params.get("arguments") or {}
    state["calls"] += 1
    if name == "echo":
        result(mid, text(str(args.get("text", ""))))
    elif name == "crash" and MODE == "crash":
        sys.stderr.write("fault server: crashing on purpose\n")
        sys.stderr.flush()
        os._exit(3)
    elif name == "hang" and MODE == "hang":
        return  # never answered
    elif name == "huge" and MODE == "huge":
        n = int(ARG or 5_000_000)
        result(mid, text("x" * n))
    elif name == "env" and MODE == "env":
        result(mid, text(json.dumps(dict(os.environ))))
    elif name == "grow" and MODE == "list-changed":
        state["grown"] = True
        result(mid, text("grown"))
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    elif name == "extra" and MODE == "list-changed" and state["grown"]:
        result(mid, text("extra works"))
    elif name == "grandchild" and MODE == "grandchild":
        result(mid, text(str(state["grandchild"].pid)))
    elif name == "report" and MODE == "server-requests":
        result(mid, text(json.dumps(state["answers"])))
    elif name in [t["name"] for t in tools()]:
        result(mid, text("called " + name))
    else:
        result(mid, text("unknown tool " + str(name), True))
    if MODE == "exit-after-n" and state["calls"] >= int(ARG or 2):
        sys.stderr.write("fault server: exiting after %d calls\n" % state["calls"])
        sys.stderr.flush()
        os._exit(0)


def handle(msg):
    method = msg.get("method")
    mid = msg.get("id")
    params = msg.get("params") or {}
    if method is None:
        if mid is not None:  # a response to one of our requests
            state["answers"][str(mid)] = {k: msg[k] for k in ("result", "error") if k in msg}
        return
    if mid is None:  # notification
        if method == "notifications/initialized" and MODE == "server-requests":
            send({"jsonrpc": "2.0", "id": "s-ping", "method": "ping"})
            send({"jsonrpc": "2.0", "id": "s-roots", "method": "roots/list"})
        return
    if method == "initialize":
        if MODE == "never-init":
            return
        if MODE == "slow-start":
            time.sleep(float(ARG or 1.5))
        version = params.get("protocolVersion", "2025-06-18")
        if MODE == "bad-version":
            version = "1999-01-01"
        result(mid, {"protocolVersion": version,
                     "capabilities": {"tools": {"listChanged": MODE == "list-changed"}},
                     "serverInfo": {"name": "mcp-faults-" + MODE, "version": "0"}})
    elif method == "ping":
        result(mid, {})
    elif method == "tools/list":
        all_tools = tools()
        if MODE == "paged":
            start = int(params.get("cursor", "page-0").split("-")[1])
            page = {"tools": all_tools[start:start + 2]}
            if start + 2 < len(all_tools):
                page["nextCursor"] = "page-%d" % (start + 2)
            result(mid, page)
        else:
            result(mid, {"tools": all_tools})
    elif method == "tools/call":
        handle_call(mid, params)
    else:
        error(mid, -32601, "Method not found")


def main():
    if MODE == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if MODE == "grandchild":
        state["grandchild"] = subprocess.Popen(["sleep", "300"])
    sys.stderr.write("fault server starting in mode %s\n" % MODE)
    sys.stderr.flush()
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            break
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict):
            handle(msg)
    if MODE == "stubborn":
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
