"""A scripted streamable-HTTP MCP server (stdlib only) for the client's fault tests.

    python3 mcp_http_faults.py PORT [MODE]

MODE: `normal` (default), `no-resume` (every GET is refused with 405, so a cut reply stream
cannot be resumed), `never-init` (`initialize` is never answered), `json` (replies as
`application/json` instead of SSE).

Legacy-only (a modern `server/discover` probe gets 400 like the TypeScript SDK answers), with
sessions: an unknown session id gets 404. Tools:
  echo {text}   text back
  cut           SSE reply stream: a priming event (`id`, `retry: 300`), then the stream is
                closed; a GET with `Last-Event-ID` replays the reply
  cut_no_id     SSE reply stream closed before the reply, without any event id
  stall         SSE reply stream that never delivers the reply (held open 60 s)
  log           every request seen so far (method, JSON-RPC method, the headers that matter)
  comments      SSE reply stream that carries only `: keep-alive` comments (every 100 ms, up
                to 60 s) and never the reply; ends when the client closes it
  active        how many `comments` streams are still open (the client must close them)
"""

import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
MODE = sys.argv[2] if len(sys.argv) > 2 else "normal"
LOCK = threading.Lock()
LOG = []
SESSIONS = set()
PENDING = {}  # priming event id -> reply message
ACTIVE = [0]  # open `comments` streams
HEADERS = ("authorization", "mcp-session-id", "mcp-protocol-version", "last-event-id",
           "accept", "mcp-method", "x-extra", "traceparent")


def tool(name, props=None):
    return {"name": name, "description": name,
            "inputSchema": {"type": "object", "properties": props or {}}}


TOOLS = [tool("echo", {"text": {"type": "string"}}), tool("cut"), tool("cut_no_id"),
         tool("stall"), tool("log"), tool("comments"), tool("active")]


def text(mid, t):
    return {"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": t}]}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self, rpc=None):
        entry = {"http": self.command, "rpc": rpc}
        for h in HEADERS:
            v = self.headers.get(h)
            if v is not None:
                entry[h] = v
        with LOCK:
            LOG.append(entry)

    def send_json(self, status, body, extra=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def open_stream(self, extra=None):
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def event(self, raw):
        self.wfile.write(raw.encode())
        self.wfile.flush()

    def reply(self, msg, extra=None):
        """One reply, as JSON or as a one-event SSE stream, per MODE."""
        if MODE == "json":
            self.send_json(200, msg, extra)
        else:
            self.open_stream(extra)
            self.event("event: message\ndata: %s\n\n" % json.dumps(msg))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        msg = json.loads(body)
        method, mid = msg.get("method"), msg.get("id")
        self.record(method)
        sid = self.headers.get("mcp-session-id")
        if method == "initialize":
            if MODE == "never-init":
                time.sleep(60)
                return
            sid = uuid.uuid4().hex
            with LOCK:
                SESSIONS.add(sid)
            version = msg["params"].get("protocolVersion", "2025-11-25")
            result = {"protocolVersion": version, "capabilities": {"tools": {}},
                      "serverInfo": {"name": "http-faults-" + MODE, "version": "0"}}
            return self.reply({"jsonrpc": "2.0", "id": mid, "result": result},
                              {"Mcp-Session-Id": sid})
        if sid is None:
            return self.send_json(400, {"jsonrpc": "2.0", "id": None, "error": {
                "code": -32000, "message": "Bad Request: Server not initialized"}})
        if sid not in SESSIONS:
            return self.send_json(404, {"jsonrpc": "2.0", "id": None, "error": {
                "code": -32600, "message": "Session not found"}})
        if mid is None or method is None:  # notification or response
            return self.send_json(202, None)
        if method == "tools/list":
            return self.reply({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
        if method != "tools/call":
            return self.send_json(200, {"jsonrpc": "2.0", "id": mid, "error": {
                "code": -32601, "message": "Method not found"}})
        name = msg["params"]["name"]
        args = msg["params"].get("arguments") or {}
        if name == "echo":
            return self.reply(text(mid, args.get("text", "")))
        if name == "log":
            with LOCK:
                snapshot = json.dumps(LOG)
            return self.reply(text(mid, snapshot))
        if name == "cut":
            prime = "p-" + uuid.uuid4().hex[:8]
            with LOCK:
                PENDING[prime] = text(mid, "resumed after the cut")
            self.open_stream()
            self.event("id: %s\nretry: 300\ndata: \n\n" % prime)
            time.sleep(0.05)
            return  # the stream ends here, before the reply
        if name == "cut_no_id":
            self.open_stream()
            self.event("event: message\ndata: %s\n\n" % json.dumps(
                {"jsonrpc": "2.0", "method": "notifications/message",
                 "params": {"level": "info", "data": "about to drop"}}))
            return
        if name == "active":
            with LOCK:
                n = ACTIVE[0]
            return self.reply(text(mid, str(n)))
        if name == "comments":
            self.open_stream()
            with LOCK:
                ACTIVE[0] += 1
            try:
                for _ in range(600):
                    self.event(": keep-alive\n\n")
                    time.sleep(0.1)
            except OSError:
                pass  # the client closed the stream
            finally:
                with LOCK:
                    ACTIVE[0] -= 1
            return
        if name == "stall":
            self.open_stream()
            self.event("id: s-1\ndata: \n\n")
            time.sleep(60)
            return
        return self.reply(text(mid, "unknown tool " + name))

    def do_GET(self):
        self.record()
        last = self.headers.get("last-event-id")
        if MODE == "no-resume" or self.headers.get("mcp-session-id") not in SESSIONS:
            return self.send_json(405, None, {"Allow": "POST, DELETE"})
        with LOCK:
            replay = PENDING.pop(last, None) if last else None
        if replay is None:
            return self.send_json(405, None, {"Allow": "POST, DELETE"})
        self.open_stream()
        self.event("event: message\nid: %s-r\ndata: %s\n\n" % (last, json.dumps(replay)))

    def do_DELETE(self):
        self.record()
        with LOCK:
            SESSIONS.discard(self.headers.get("mcp-session-id"))
        self.send_json(200, None)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    server.serve_forever()
