//! The transport seam of the MCP client: how JSON-RPC messages travel to and from one server.
//!
//! A transport owns its connection and its own threads. The client (`client.rs`) hands it an
//! [`Inbound`] at connect time; the transport's threads decode each frame and call
//! [`Inbound::on_message`] (passing an [`Outbound`] so the client can answer server→client
//! requests such as `ping` from that same thread), report a request whose reply can no longer
//! come with [`Inbound::on_request_failed`], and call [`Inbound::on_closed`] once when the
//! connection dies or is closed. Callers send with [`Outbound::send`], bounded by a deadline.
//!
//! Transports: `stdio.rs` (a child process), `sse.rs` (legacy HTTP+SSE, 2024-11-05) and
//! `http.rs` (streamable HTTP, 2025-03-26 on, and the stateless 2026-07-28 revision); `web.rs`
//! holds what the two HTTP transports share.

pub mod exchange;
pub mod http;
mod http_stream;
pub mod process;
pub mod sse;
pub mod stdio;
mod web;

use std::fmt;
use std::time::{Duration, Instant};

use super::jsonrpc::{Id, Message};

pub use web::RemoteSpec;

/// Why a message was not sent. In every case the message was not delivered as a whole, so the
/// peer cannot have acted on it (a partly written stdio line kills the session, because the
/// framing is lost).
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// The connection is closed, broke while writing, or the session expired.
    Closed(String),
    /// The peer did not take the message before the deadline.
    Timeout,
    /// The peer refused this one message (an HTTP error status); the connection stays usable.
    Rejected(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(r) => write!(f, "connection closed: {r}"),
            SendError::Timeout => f.write_str("write timed out"),
            SendError::Rejected(r) => write!(f, "refused: {r}"),
        }
    }
}

/// Sending half: one whole message at a time, safe to call from many threads. A transport may
/// return before a request's reply (or its failure) arrives: both come through [`Inbound`].
pub trait Outbound: Send + Sync {
    fn send(&self, msg: &Message, deadline: Instant) -> Result<(), SendError>;
    /// [`Outbound::send`] with extra HTTP headers for this one message (2026-07-28
    /// `Mcp-Param-*`); transports without headers ignore them.
    fn send_with_headers(
        &self,
        msg: &Message,
        deadline: Instant,
        _headers: &[(String, String)],
    ) -> Result<(), SendError> {
        self.send(msg, deadline)
    }
}

/// How a request that was handed to the transport failed without a JSON-RPC reply.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestFailure {
    /// The server never received it (connection refused, session expired): safe to retry on a
    /// fresh session.
    NotDelivered(String),
    /// The server may have received it, but its reply is lost (stream cut and not resumable).
    Lost(String),
    /// The server answered with something that is not a JSON-RPC reply (an HTTP error status
    /// without a JSON-RPC body).
    Refused(String),
    /// The reply was larger than this many bytes and was discarded unread; the session goes on.
    TooLarge(usize),
}

/// Receiving half, implemented by the client's dispatcher and called from the transport's
/// threads. Implementations must not block for long: they run on the threads that read the
/// connection.
pub trait Inbound: Send + Sync {
    fn on_message(&self, msg: Message, out: &dyn Outbound);
    /// The request `id` will get no reply.
    fn on_request_failed(&self, id: &Id, failure: RequestFailure);
    /// Whether someone still waits for the reply to `id` (a stream read only for that reply
    /// can stop when nobody does).
    fn wants(&self, id: &Id) -> bool;
    /// A message over `limit` bytes was discarded unread; `id` is the request it answered when
    /// its ends showed that. The session goes on.
    fn on_oversized(&self, id: Option<&Id>, limit: usize);
    /// The connection is gone (peer exited, stream ended, protocol error, or we closed it).
    /// Called once.
    fn on_closed(&self, reason: &str);
}

/// How patiently a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    /// After the polite close (stdin closed, HTTP DELETE), how long the peer may take.
    pub polite: Duration,
    /// After SIGTERM, how long before SIGKILL.
    pub term: Duration,
}

impl Grace {
    /// Normal shutdown (lifecycle.mdx "Shutdown"): close stdin → 2 s → SIGTERM → 1 s → SIGKILL.
    pub const NORMAL: Grace = Grace {
        polite: Duration::from_secs(2),
        term: Duration::from_secs(1),
    };
    /// A server that failed to start owes us nothing: short waits.
    pub const QUICK: Grace = Grace {
        polite: Duration::from_millis(100),
        term: Duration::from_millis(500),
    };
}

/// One live connection to an MCP server.
pub trait Transport: Outbound {
    /// Close the connection and release everything it holds (for stdio: the child and its
    /// process group are gone when this returns; for HTTP: the session is deleted and every
    /// connection closed). Idempotent; concurrent callers all wait for the one shutdown.
    fn close(&self, grace: Grace);
    /// False once the connection is known dead, closing, or its session expired.
    fn is_open(&self) -> bool;
    /// The caller of request `id` gave up (cancel or timeout): release what carries its reply
    /// now (streamable HTTP closes the request's connection). `notifications/cancelled` is
    /// sent separately by the client.
    fn cancel_request(&self, _id: &Id) {}
    /// `initialize` agreed on `protocol_version`: streamable HTTP sends it in a header on every
    /// later message, starting with `notifications/initialized`.
    fn negotiated(&self, _protocol_version: &str) {}
    /// The opening is done (legacy: `notifications/initialized` sent; modern: era settled).
    /// Streamable HTTP opens its standalone GET stream now (legacy sessions only) and waits,
    /// until `deadline` at most, for the server to answer it, so that server messages sent from
    /// now on have a stream to arrive on.
    fn session_ready(&self, _protocol_version: &str, _deadline: Instant) {}
    /// Whether the 2026-07-28 revision can run over this transport (legacy HTTP+SSE cannot).
    fn supports_modern(&self) -> bool {
        true
    }
    /// The child's process id, for stdio.
    fn pid(&self) -> Option<u32> {
        None
    }
    /// The last lines the server wrote to stderr (already scrubbed of secrets), for
    /// start-failure messages in the admin status and `check`; never for the model.
    fn stderr_tail(&self) -> Option<String> {
        None
    }
    /// How the child ended, once it has: `exit status 1`, `signal 9` (stdio only).
    fn exit_status(&self) -> Option<String> {
        None
    }
}
