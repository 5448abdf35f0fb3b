//! The hand-written MCP client (docs/mcp.md).
//!
//! `jsonrpc` (message types and framing), `protocol` (initialize / version negotiation, tools,
//! results), `era` (the stateless 2026-07-28 revision: request envelope, era probe,
//! multi-round-trip results), `headers` (2026-07-28 header values and `x-mcp-header`
//! parameters), `client` (one session: requests multiplexed by id, liveness pings, tool
//! listing and calls), `dispatch` (routing replies to waiting callers, answering server
//! requests), `handshake` (era detection and the opening of a session), `transport/` (stdio,
//! legacy HTTP+SSE and streamable HTTP behind one trait; `exchange` makes an HTTP call's
//! connection closable from the cancelling thread), `supervisor` ([`Supervisor`]: a
//! configured server whose session is started lazily, shared by all requests, bounded per
//! server, restarted when it dies or its HTTP session expires; its last known tools outlive
//! it), `limits` (per-server call bound and back-off jitter), `options` (client options and
//! the status a server reports), `redact` (the secret values a server's text is scrubbed of),
//! `logctx` (the request id MCP log lines carry).
//!
//! Failures carry details for the log and the admin API ([`Error`]); what the model is told
//! is composed from the error's kind in `tools`, never from server stderr or URLs. One
//! oversized message (over 16 MiB) fails only the call it answers, on every transport.
//!
//! Thread model: callers block on their own request with a deadline; each transport owns the
//! threads that read its connection (see `transport/`); no lock is held across I/O. Every wait
//! of a call is cut in slices of at most 100 ms, and between slices it calls `tick_caller`,
//! so a caller that runs a call on its own thread (the tool loop, on the request's worker)
//! keeps its client's stream alive and watches its deadline meanwhile.

mod client;
mod dispatch;
pub mod era;
mod handshake;
pub mod headers;
pub mod jsonrpc;
mod limits;
pub mod logctx;
mod options;
pub mod protocol;
mod redact;
mod supervisor;
pub mod transport;

use std::fmt;

use serde_json::Value;

pub use era::Era;
pub use options::{ClientOptions, ServerState, ServerStatus};
pub use redact::without_stderr;
pub use supervisor::{Listing, Supervisor};

/// Run the hook the calling thread lent for this call (`sys::scoped::with_hook`), if any;
/// called by every wait of a call between its slices, with no lock held. The tool loop's hook
/// sends the client's keep-alives, notices a departed client and the deadline, and cancels the
/// call (through its `Cancel`, which each wait checks) when one of them ends the request.
pub(crate) fn tick_caller() {
    let _ = crate::sys::scoped::call_hook();
}

/// A tool as the server lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    pub name: String,
    pub description: Option<String>,
    /// The MCP `inputSchema` (an object schema); `{"type":"object"}` when absent.
    pub input_schema: Value,
    /// The schema offered to models as the function's `parameters`
    /// (`protocol::parameters_schema`), built once when listed and shared by every request.
    pub parameters: std::sync::Arc<Value>,
    /// The tool object exactly as the server listed it (for the admin API).
    pub raw: Value,
}

/// A listed tool that is not offered, and why (task-only, invalid annotations, duplicate).
#[derive(Debug, Clone, PartialEq)]
pub struct LeftOut {
    /// The tool object exactly as the server listed it.
    pub raw: Value,
    pub reason: String,
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
    /// The server process ended during the call; the short status (`exit status 1`,
    /// `signal 9`). Its stderr and other details are in the log and the admin status only.
    Stopped(String),
    /// The server's reply was larger than this many bytes; it was discarded unread.
    TooLarge(usize),
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
            Error::Stopped(s) => write!(f, "server stopped ({s})"),
            Error::TooLarge(n) => write!(f, "reply larger than {n} bytes, discarded"),
        }
    }
}

impl std::error::Error for Error {}
