//! Backends: one LLM round ("turn") against an upstream, behind the [`Backend`] trait.
//!
//! The agent loop speaks OpenAI shapes ([`crate::api::openai`]); each backend translates to its
//! upstream and back. A turn runs on the calling worker thread: in streaming mode the backend
//! reads the upstream's SSE line by line and hands each text delta to the [`TurnSink`] as it
//! arrives (if the sink says the client is gone, the backend returns [`Error::Cancelled`] and
//! drops its reader, which closes the upstream connection); in both modes it returns the whole
//! [`Turn`]. Every upstream call has connect, response-head and per-read timeouts, and the
//! whole exchange is bounded by the request's deadline ([`TurnRequest::deadline`]): a stream
//! that stays alive with keep-alive comments or empty deltas ends with [`Error::Timeout`] then.
//!
//! Layers: [`upstream`] is the one HTTP layer of the LLM backends (pooled agent, timeouts, no
//! redirects, no proxy from the environment, error bodies, ureq errors → [`Error`], streams
//! read on the worker with idle ticks and the deadline); [`openai`] (chat completions), [`openai_responses`]
//! (the Responses API) and [`anthropic`] only translate requests and answers; [`mock`] does no HTTP. Nothing here imports from the gateway layer.

pub mod anthropic;
#[cfg(test)]
mod golden;
pub mod mock;
pub mod openai;
pub mod openai_responses;
mod resolve;
pub mod upstream;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::api::openai::{FinishReason, Message, Tool, ToolCall, Usage};
use crate::config::{BackendConfig, BackendKind};

/// One LLM round, in OpenAI terms.
pub struct TurnRequest<'a> {
    /// Upstream model id.
    pub model: &'a str,
    /// The conversation so far (system prompt already applied).
    pub messages: &'a [Message],
    /// Tools offered this round (MCP tools under their exposed names, then client tools).
    pub tools: &'a [Tool],
    /// The client's `tool_choice`, if any (OpenAI shape).
    pub tool_choice: Option<&'a Value>,
    /// The last round: the model must not be able to call tools. OpenAI kind: send no tools;
    /// Anthropic kind: keep the tools and send `tool_choice: none` (history has tool blocks).
    pub final_round: bool,
    /// Merged parameters (assistant defaults, then client values, then nothing we interpret):
    /// temperature, top_p, max_tokens, stop, seed, response_format, … under OpenAI names.
    pub params: &'a Map<String, Value>,
    /// The assistant's `extra_body`, merged last into the upstream payload.
    pub extra_body: &'a Map<String, Value>,
    pub stream: bool,
    /// When the whole request must be answered (`server.request_timeout`). Backends bound every
    /// upstream exchange by it and check it on every stream event and idle tick, so a trickling
    /// upstream (keep-alive comments, empty deltas) cannot hold a worker past it: the round then
    /// fails with [`Error::Timeout`].
    pub deadline: Instant,
}

/// What a backend tells the streaming writer while a turn runs.
pub trait TurnSink {
    /// A text delta, in order. `Err` means the client is gone: stop and return `Cancelled`.
    fn text(&mut self, delta: &str) -> Result<(), Cancelled>;
    /// A text delta that may be held back until [`TurnSink::flush`] (more of the upstream's
    /// answer is already in memory), so that what arrived together leaves together. The
    /// caller flushes before it waits for input and before it returns.
    fn text_held(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.text(delta)
    }
    /// Send what [`TurnSink::text_held`] held.
    fn flush(&mut self) -> Result<(), Cancelled> {
        Ok(())
    }
    /// Called while waiting on a quiet upstream (about once a second is enough); lets the
    /// writer send keep-alives and notice a departed client.
    fn idle(&mut self) -> Result<(), Cancelled> {
        Ok(())
    }
}

/// The client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// A sink that ignores everything (non-streaming turns).
pub struct NoSink;

impl TurnSink for NoSink {
    fn text(&mut self, _delta: &str) -> Result<(), Cancelled> {
        Ok(())
    }
}

/// The result of one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// All text of the round (in stream mode: the concatenated deltas already given to the sink).
    pub content: String,
    /// Tool calls in the model's order, arguments as JSON text (`""` normalized to `"{}"`).
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// Provider blocks to send back with this assistant message on the next round (Anthropic
    /// thinking blocks; the Responses API's output items when they include reasoning); copied
    /// into `Message::provider_state` by the loop.
    pub provider_state: Option<Value>,
}

/// Why an upstream call failed. `Display` is short, lowercase and free of secrets; upstream
/// bodies are cut to a few hundred bytes and scrubbed ([`upstream_status`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Could not connect / resolve / TLS handshake.
    Connect(String),
    /// No response head, or the body went silent, within the backend timeout.
    Timeout,
    /// The upstream answered with a non-2xx status.
    Status {
        status: u16,
        message: String,
        retry_after: Option<String>,
    },
    /// The upstream's answer could not be understood (invalid JSON, truncated stream, an
    /// `error` event mid-stream, …).
    Protocol(String),
    /// The upstream's answer exceeded our size cap.
    TooLarge,
    /// The client went away mid-turn.
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect(m) => write!(f, "cannot reach upstream: {m}"),
            Error::Timeout => f.write_str("upstream timed out"),
            Error::Status {
                status, message, ..
            } => write!(f, "upstream returned {status}: {message}"),
            Error::Protocol(m) => write!(f, "invalid upstream response: {m}"),
            Error::TooLarge => f.write_str("upstream response too large"),
            Error::Cancelled => f.write_str("client disconnected"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Cancelled> for Error {
    fn from(_: Cancelled) -> Self {
        Error::Cancelled
    }
}

/// Cut an upstream body or message for errors and logs.
pub fn truncate_for_error(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.trim().to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default().trim())
}

/// Time left until `deadline` (at least 1 ms, as ureq's timeouts want something positive), or
/// [`Error::Timeout`] when it has passed.
pub fn remaining(deadline: Instant) -> Result<Duration, Error> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left.max(Duration::from_millis(1))),
        _ => Err(Error::Timeout),
    }
}

/// What the client is told when the upstream refuses our credentials (401/403). The
/// upstream's own text may echo the key (`Incorrect API key provided: Bearer sk-…`), so it is
/// never passed on; it is logged, scrubbed, by [`upstream_status`].
pub const CREDENTIALS_REJECTED: &str = "upstream rejected the gateway's credentials";

/// The [`Error::Status`] for a non-2xx upstream answer whose text is `message`: a 401/403
/// becomes [`CREDENTIALS_REJECTED`] (the upstream text goes to the log at WARN, scrubbed);
/// other messages reach the client scrubbed of `secrets` and key-like strings.
pub fn upstream_status(
    status: u16,
    message: &str,
    retry_after: Option<String>,
    secrets: &[&str],
) -> Error {
    let scrubbed = crate::secret::scrub(message, secrets);
    let message = if matches!(status, 401 | 403) {
        log::warn!("upstream refused the gateway's credentials (HTTP {status}): {scrubbed}");
        CREDENTIALS_REJECTED.to_string()
    } else {
        scrubbed
    };
    Error::Status {
        status,
        message,
        retry_after,
    }
}

/// The values of upstream request headers that may be credentials (everything but the
/// protocol headers we set ourselves), for [`upstream_status`].
pub fn header_secrets(headers: &[(String, crate::secret::Secret)]) -> Vec<&str> {
    const PLAIN: &[&str] = &[
        "content-type",
        "accept",
        "accept-encoding",
        "anthropic-version",
        "anthropic-beta",
    ];
    headers
        .iter()
        .filter(|(n, _)| !PLAIN.iter().any(|p| n.eq_ignore_ascii_case(p)))
        .map(|(_, v)| {
            // `Bearer <key>`: the key itself, so the text keeps its `Bearer ***` shape.
            let v = v.expose();
            v.strip_prefix("Bearer ").unwrap_or(v)
        })
        .collect()
}

/// One LLM upstream.
pub trait Backend: Send + Sync {
    fn turn(&self, req: &TurnRequest<'_>, sink: &mut dyn TurnSink) -> Result<Turn, Error>;
}

/// Build the backend for a config entry. Cheap to call once per config snapshot; HTTP agents
/// (connection pools) live inside the returned value.
pub fn build(cfg: &BackendConfig) -> Arc<dyn Backend> {
    match cfg.kind {
        BackendKind::OpenAi => Arc::new(openai::OpenAiBackend::new(cfg)),
        BackendKind::Mock => Arc::new(mock::MockBackend),
        BackendKind::Anthropic => Arc::new(anthropic::AnthropicBackend::new(cfg)),
        BackendKind::OpenAiResponses => {
            Arc::new(openai_responses::OpenAiResponsesBackend::new(cfg))
        }
    }
}
