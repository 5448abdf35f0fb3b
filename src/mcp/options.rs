//! What a [`super::Supervisor`] is told beyond its configuration ([`ClientOptions`]) and what
//! it reports ([`ServerState`], [`ServerStatus`]). Plain data.

use std::time::Duration;

use super::era::Era;

/// How a server's client behaves beyond its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// Which protocol era to speak ([`Era::Auto`]: detect).
    pub era: Era,
    /// A legacy session silent this long is pinged before its next use; without an answer
    /// within `ping_timeout` it is replaced by a fresh one (a half-open connection or a hung
    /// server would otherwise fail the call itself).
    pub ping_after_idle: Duration,
    pub ping_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            era: Era::Auto,
            ping_after_idle: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Never started.
    Idle,
    Starting,
    Ready,
    /// The last start failed, or the session died; the next use tries again (after back-off).
    Failed,
    Stopped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatus {
    pub state: ServerState,
    pub last_error: Option<String>,
    /// Sessions started to replace an earlier one that had been ready (child died, etc.).
    pub restarts: u64,
    pub tool_count: Option<usize>,
    /// The child's process id while a stdio session is live.
    pub pid: Option<u32>,
    /// The protocol revision negotiated by the live session.
    pub protocol_version: Option<String>,
}
