//! aiproxy: an OpenAI-compatible assistant gateway.
//!
//! Request path: `server::http` (our HTTP/1.1 server: a poller thread accepts connections and
//! reads request heads and bodies without blocking; complete requests go to a bounded pool of
//! worker threads) → `server::routes` (auth, routing, OpenAI-shaped errors; the Responses API
//! is translated to and from the same loop in `responses`) → `agent` (the tool
//! loop for one request, on the worker thread) → `backend` (one LLM round against the upstream,
//! streamed line by line) and `tools` → `mcp` (tool calls of one turn run concurrently in scoped
//! threads; each MCP server has one persistent session shared by all requests, with a reader
//! thread dispatching replies by JSON-RPC id). Streams are written as chunked SSE by the worker,
//! flushed per event.
//!
//! Configuration lives in `config` (strict YAML → typed values); the live registry (config +
//! built backends + MCP servers) is an immutable snapshot in `app`, swapped atomically.
//! `metrics` holds the Prometheus counters recorded at the edges (routes, backend calls, tool
//! calls, the HTTP server) and served on `GET /metrics`.

pub mod admin;
pub mod agent;
pub mod api;
pub mod app;
pub mod auth;
pub mod backend;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod error;
pub mod mcp;
pub mod metrics;
pub mod responses;
pub mod sd_notify;
pub mod secret;
pub mod server;
pub mod signals;
pub mod sse_codec;
pub mod tools;
