//! What every endpoint that runs the tool loop shares (chat completions, the Responses API):
//! the metered backend (which also charges each round's tokens to the caller's key), the headers of a run, and logging and reporting a failed run once.

use std::time::Instant;

use super::routes::cors_response_headers;
use crate::agent::LoopError;
use crate::auth::Caller;
use crate::backend::{self, Backend, TurnRequest, TurnSink};
use crate::error::ApiError;
use crate::metrics::{Metrics, Status, UpstreamError};
use crate::tools::ToolSet;

/// The backend of one request, timing and counting each upstream call for the metrics.
pub(crate) struct Metered<'a> {
    pub(crate) inner: &'a dyn Backend,
    pub(crate) name: &'a str,
    pub(crate) metrics: &'a Metrics,
    /// Charged the tokens each round reports (its key's `tpm`).
    pub(crate) caller: &'a Caller,
}

impl Backend for Metered<'_> {
    fn turn(
        &self,
        req: &TurnRequest<'_>,
        sink: &mut dyn TurnSink,
    ) -> Result<backend::Turn, backend::Error> {
        let started = Instant::now();
        let result = self.inner.turn(req, sink);
        let error = match &result {
            Ok(_) => None,
            // The client left; the upstream did nothing wrong.
            Err(backend::Error::Cancelled) => return result,
            Err(backend::Error::Connect(_)) => Some(UpstreamError::Connect),
            Err(backend::Error::Timeout) => Some(UpstreamError::Timeout),
            Err(backend::Error::Status { status: 429, .. }) => Some(UpstreamError::RateLimited),
            Err(backend::Error::Status { .. }) => Some(UpstreamError::Status),
            Err(backend::Error::Protocol(_)) => Some(UpstreamError::Protocol),
            Err(backend::Error::TooLarge) => Some(UpstreamError::TooLarge),
        };
        self.metrics.upstream(self.name, started.elapsed(), error);
        if let Ok(turn) = &result {
            let tokens = turn.usage.prompt_tokens + turn.usage.completion_tokens;
            self.caller.charge(tokens);
            if let Some(key) = self.caller.name() {
                self.metrics.key_tokens(key, tokens);
            }
        }
        result
    }
}

pub(crate) fn run_headers(
    request_id: &str,
    tools: &ToolSet,
    cors_origin: Option<&str>,
) -> Vec<(String, String)> {
    let mut h = vec![("X-Request-Id".to_string(), request_id.to_string())];
    if let Some(origin) = cors_origin {
        h.extend(
            cors_response_headers(origin)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
    }
    if !tools.degraded.is_empty() {
        let names: Vec<&str> = tools.degraded.iter().map(|(n, _)| n.as_str()).collect();
        h.push(("X-Aiproxy-Degraded".to_string(), names.join(",")));
    }
    h
}

/// How a failed run ended, for the access line and the metrics: the client went away, or the
/// status its error was answered with (`sent`).
pub(crate) fn ended(e: &LoopError, sent: Status) -> Status {
    match e {
        LoopError::Cancelled => Status::ClientGone,
        LoopError::Backend(_) | LoopError::Deadline => sent,
    }
}

pub(crate) fn log_failure(request_id: &str, e: &LoopError, api: &ApiError) {
    match e {
        LoopError::Cancelled => log::info!("{request_id} client disconnected; loop stopped"),
        _ => log::warn!(
            "{request_id} request failed: {} ({})",
            api.message,
            api.status
        ),
    }
}
