//! The hand-written MCP client (docs/mcp.md).
//!
//! `jsonrpc` (message types and framing), `protocol` (initialize / version negotiation, tools,
//! results), `era` (the stateless 2026-07-28 revision: request envelope, era probe,
//! multi-round-trip results), `headers` (2026-07-28 header values and `x-mcp-header`
//! parameters), `client` (one session: requests multiplexed by id, liveness pings, tool
//! listing and calls), `dispatch` (routing replies to waiting callers, answering server
//! requests), `handshake` (era detection and the opening of a session), `transport/` (stdio,
//! legacy HTTP+SSE and streamable HTTP behind one trait), `server` ([`Supervisor`]: a configured
//! server whose session is started lazily, shared by all requests, bounded per server,
//! restarted when it dies or its HTTP session expires), `limits` (per-server call bound and
//! back-off jitter), `demo` (the built-in demo server behind `aiproxy demo-mcp`).
//!
//! Thread model: callers block on their own request with a deadline; each transport owns the
//! threads that read its connection (see `transport/`); no lock is held across I/O.

mod client;
mod dispatch;
pub mod era;
mod handshake;
pub mod headers;
pub mod jsonrpc;
mod limits;
pub mod protocol;
mod supervisor;
pub mod transport;

use std::fmt;

use serde_json::Value;

pub use era::Era;
pub use supervisor::{ClientOptions, ServerState, ServerStatus, Supervisor};

/// A tool as the server lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    pub name: String,
    pub description: Option<String>,
    /// The MCP `inputSchema` (an object schema); `{"type":"object"}` when absent.
    pub input_schema: Value,
}

/// A `tools/call` result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallResult {
    /// Content blocks as sent: text, image, audio, resource, resource_link.
    pub content: Vec<Value>,
    pub structured_content: Option<Value>,
    pub is_error: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The server could not be started or initialized.
    Start(String),
    /// No reply within the timeout (the request was cancelled with `notifications/cancelled`).
    Timeout,
    /// The session died (child exited, stream closed).
    Closed(String),
    /// The server answered with a JSON-RPC error.
    Rpc { code: i64, message: String },
    /// The server sent something we could not understand.
    Protocol(String),
    /// The caller gave up (client disconnected).
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Start(m) => write!(f, "server failed to start: {m}"),
            Error::Timeout => f.write_str("timed out"),
            Error::Closed(m) => write!(f, "connection closed: {m}"),
            Error::Rpc { code, message } => write!(f, "error {code}: {message}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for Error {}
