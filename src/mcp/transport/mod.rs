//! The transport seam of the MCP client: how JSON-RPC messages travel to and from one server.
//!
//! A transport owns its connection and its own reader thread(s). The client (`client.rs`) hands
//! it an [`Inbound`] at connect time; the transport's reader thread decodes each frame and calls
//! [`Inbound::on_message`] (passing an [`Outbound`] so the client can answer server→client
//! requests such as `ping` from that same thread), and calls [`Inbound::on_closed`] exactly once
//! when the connection dies or is closed. Callers send with [`Outbound::send`], bounded by a
//! deadline. stdio lives in `stdio.rs`; legacy SSE and streamable HTTP plug in beside it.

pub mod process;
pub mod stdio;

use std::fmt;
use std::time::{Duration, Instant};

use super::jsonrpc::Message;

/// Why a message was not sent. In both cases the message was not delivered as a whole, so the
/// peer cannot have acted on it (a partly written stdio line kills the session, because the
/// framing is lost).
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// The connection is closed or broke while writing.
    Closed(String),
    /// The peer did not take the message before the deadline.
    Timeout,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(r) => write!(f, "connection closed: {r}"),
            SendError::Timeout => f.write_str("write timed out"),
        }
    }
}

/// Sending half: one whole message at a time, safe to call from many threads.
pub trait Outbound: Send + Sync {
    fn send(&self, msg: &Message, deadline: Instant) -> Result<(), SendError>;
}

/// Receiving half, implemented by the client's dispatcher and called from the transport's
/// reader thread. Implementations must not block for long: they run on the only thread that
/// reads the connection.
pub trait Inbound: Send + Sync {
    fn on_message(&self, msg: Message, out: &dyn Outbound);
    /// The connection is gone (peer exited, stream ended, protocol error, or we closed it).
    /// Called once.
    fn on_closed(&self, reason: &str);
}

/// How patiently a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    /// After the polite close (stdin closed), how long the peer may take to exit by itself.
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
    /// process group are gone when this returns). Idempotent; concurrent callers all wait for
    /// the one shutdown.
    fn close(&self, grace: Grace);
    /// False once the connection is known dead or closing.
    fn is_open(&self) -> bool;
    /// The child's process id, for stdio.
    fn pid(&self) -> Option<u32> {
        None
    }
    /// The last lines the server wrote to stderr, for start-failure messages.
    fn stderr_tail(&self) -> Option<String> {
        None
    }
}
