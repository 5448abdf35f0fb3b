//! Per-key policy at the edge: a model request (`POST` of chat completions, completions or
//! the Responses API) is admitted against its key's `rpm`/`tpm` buckets before anything is
//! decoded or sent upstream, or answered 429 with `Retry-After` (whole seconds) and
//! `retry-after-ms` (what the OpenAI SDKs prefer) in the OpenAI error shape. Counted per key
//! name in the metrics. The assistant scope is applied where a model name is resolved
//! (`/v1/models`, chat, responses), answering an out-of-scope name exactly like an unknown one.

use crate::auth::{Caller, Limit, Limited};
use crate::error::ApiError;
use crate::http::Request;
use crate::metrics::Metrics;

/// Whether this request asks a model for an answer (and so counts against `rpm`).
pub(super) fn calls_model(req: &Request) -> bool {
    req.method == "POST"
        && matches!(
            req.path.as_str(),
            "/v1/chat/completions" | "/v1/completions" | "/v1/responses"
        )
}

/// A refused admission, ready to send: the error and its `retry-after-ms` value.
pub(super) struct Refused {
    pub(super) error: ApiError,
    pub(super) retry_after_ms: String,
}

/// Admit a model request of `caller`; `None` when admitted (or not a model request).
pub(super) fn admit(metrics: &Metrics, caller: &Caller, req: &Request) -> Option<Refused> {
    if !calls_model(req) {
        return None;
    }
    let name = caller.name()?;
    match caller.admit() {
        Ok(()) => {
            metrics.key_request(name);
            None
        }
        Err(limited) => {
            metrics.key_limited(name, limited.limit.label());
            Some(refused(name, &limited))
        }
    }
}

fn refused(name: &str, l: &Limited) -> Refused {
    let what = match l.limit {
        Limit::Requests => "requests per minute (rpm)",
        Limit::Tokens => "tokens per minute (tpm)",
    };
    let secs = l.retry_after.as_secs_f64();
    let message = format!(
        "rate limit reached for API key '{name}' on {what}: limit {}. Please try again in {secs:.3}s.",
        l.per_minute
    );
    Refused {
        error: ApiError::rate_limited(message, l.retry_after),
        retry_after_ms: l.retry_after.as_millis().max(1).to_string(),
    }
}
