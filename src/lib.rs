//! aiproxy: an OpenAI-compatible assistant gateway.
//!
//! Layers, each importing only from the layers below it:
//!
//! 1. `http` — our HTTP/1.1 server: a poller thread accepts connections and reads request heads
//!    and bodies without blocking; complete requests go to a bounded pool of worker threads.
//!    Knows nothing of the API. `sys` (every libc call) and `sse_codec`, `clock`, `secret`,
//!    `cancel` are leaves beside it.
//! 2. `gateway` — the API: `routes` (auth, the admin guard, routing, OpenAI-shaped errors, one
//!    access line per request), `chat` (chat completions), `responses` (the Responses API,
//!    translated to and from the same loop), `sse` (chat-completion chunks). `admin` (the admin
//!    API) and `auth` (the `/v1` chain and the admin check) sit beside it.
//! 3. `tools` — the assistant's tool set (naming, filters, results), the agent's
//!    `ToolExecutor` over MCP sessions.
//! 4. `agent` — the tool loop of one request, on the worker thread that owns it, over a
//!    `dyn Backend` and a `dyn ToolExecutor`.
//! 5. `backend` (one LLM round against the upstream, streamed line by line; HTTP in
//!    `backend::upstream`, providers only translate) and `mcp` (the hand-written MCP client:
//!    tool calls of one turn run concurrently in scoped threads; each MCP server has one
//!    persistent session shared by all requests, supervised in `mcp::supervisor`, with a reader
//!    thread dispatching replies by JSON-RPC id).
//! 6. `api` — wire types (OpenAI chat, Responses), used by every layer above `http`; imports
//!    nothing from the crate.
//!
//! Configuration lives in `config` (strict YAML → typed values); the live registry (config +
//! built backends + MCP servers) is an immutable snapshot in `app`, swapped atomically.
//! `metrics` holds the Prometheus counters recorded at the edges (routes, backend calls, tool
//! calls, the HTTP server) and served on `GET /metrics`. `demo` is the offline demo (embedded
//! config and the demo MCP server); `cli` and `sd_notify` start and supervise the process;
//! `watch` follows the config file (`server.watch_config`); `audit` writes the tool audit log
//! (a writer thread behind a bounded queue); `logging` is the process logger (`RUST_LOG`).
//! Streams are written as chunked SSE by the worker, flushed per event.

pub mod admin;
pub mod agent;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod cancel;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod http;
pub mod logging;
pub mod mcp;
pub mod metrics;
pub mod sd_notify;
pub mod secret;
pub mod sse_codec;
#[allow(
    unsafe_code,
    reason = "the one module with libc calls; each unsafe block documents why it is sound"
)]
pub mod sys;
pub mod telemetry;
pub mod tools;
pub mod watch;
