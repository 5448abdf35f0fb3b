//! What every endpoint that runs the tool loop shares (chat completions, the Responses API):
//! the metered backend (which also charges each round's tokens to the caller's key and records
//! each round as a trace span, `chat {model}`, whose `traceparent` the upstream gets), the
//! headers of a run, and logging and reporting a failed run once.

use std::time::Instant;

use super::routes::cors_response_headers;
use crate::agent::LoopError;
use crate::auth::Caller;
use crate::backend::{self, Backend, TurnRequest, TurnSink};
use crate::error::ApiError;
use crate::metrics::{Metrics, Status, UpstreamError};
use crate::telemetry::{Kind, Span};
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
        let mut span = crate::telemetry::current()
            .map(|c| c.child(&format!("chat {}", req.model), Kind::Client));
        // The upstream request is made on this thread: it names the round's span.
        let _trace = span
            .as_ref()
            .map(|s| crate::telemetry::enter(Some(s.ctx().clone())));
        let result = self.inner.turn(req, sink);
        if let Some(span) = &mut span {
            round_attributes(span, self.name, req, &result);
        }
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

fn round_attributes(
    span: &mut Span,
    backend: &str,
    req: &TurnRequest<'_>,
    result: &Result<backend::Turn, backend::Error>,
) {
    span.set("gen_ai.operation.name", "chat");
    span.set("gen_ai.request.model", req.model);
    span.set("aiproxy.backend", backend);
    span.set("gen_ai.request.stream", req.stream);
    match result {
        Ok(turn) => {
            span.set("gen_ai.usage.input_tokens", turn.usage.prompt_tokens);
            span.set("gen_ai.usage.output_tokens", turn.usage.completion_tokens);
            span.set_list(
                "gen_ai.response.finish_reasons",
                vec![turn.finish_reason.as_str().to_string()],
            );
            span.set("aiproxy.tool_calls", turn.tool_calls.len() as u64);
        }
        Err(e) => span.fail(match e {
            backend::Error::Cancelled => "cancelled",
            backend::Error::Connect(_) => "connect",
            backend::Error::Timeout => "timeout",
            backend::Error::Status { .. } => "http_status",
            backend::Error::Protocol(_) => "protocol",
            backend::Error::TooLarge => "too_large",
        }),
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
    refresh_degraded(&mut h, tools);
    h
}

/// Set `X-Aiproxy-Degraded` in `headers` to every server of the request found down so far
/// ([`ToolSet::degraded_names`]): called again after the run, before an answer whose headers
/// are not sent yet (non-stream), so a server that failed during the request is named too.
pub(crate) fn refresh_degraded(headers: &mut Vec<(String, String)>, tools: &ToolSet) {
    let names = tools.degraded_names();
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(DEGRADED));
    if !names.is_empty() {
        headers.push((DEGRADED.to_string(), names.join(",")));
    }
}

const DEGRADED: &str = "X-Aiproxy-Degraded";

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
