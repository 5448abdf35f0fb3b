//! The few Anthropic Messages API shapes we read into types: token usage, error bodies and stop
//! reasons, plus the protocol constants. Content blocks stay `serde_json::Value`s everywhere else,
//! so thinking signatures, citations and block types we do not know survive a round trip
//! unchanged. Pure data; no I/O.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use serde::Deserialize;
use serde_json::Value;

use crate::api::openai::{FinishReason, Usage};
use crate::backend::{Error, truncate_for_error};

/// The `anthropic-version` header we speak (overridable through `default_headers`).
pub const API_VERSION: &str = "2023-06-01";

/// `max_tokens` is mandatory on the Messages API; used when neither the client nor the assistant
/// sets `max_tokens` / `max_completion_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Usage as Anthropic reports it: in `message_start.message.usage`, then cumulatively in
/// `message_delta.usage` (any field may be missing from either).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct RawUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens_details: Option<OutputTokensDetails>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct OutputTokensDetails {
    #[serde(default)]
    pub thinking_tokens: Option<u64>,
}

impl RawUsage {
    /// Read a `usage` object; anything unreadable counts as "no usage".
    pub fn from_value(v: Option<&Value>) -> RawUsage {
        v.and_then(|u| RawUsage::deserialize(u).ok())
            .unwrap_or_default()
    }

    /// Apply a later report: the counts are cumulative, so present fields replace earlier ones.
    pub fn merge(&mut self, later: &RawUsage) {
        fn take(dst: &mut Option<u64>, src: Option<u64>) {
            if src.is_some() {
                *dst = src;
            }
        }
        take(&mut self.input_tokens, later.input_tokens);
        take(&mut self.output_tokens, later.output_tokens);
        take(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        take(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        if later.output_tokens_details.is_some() {
            self.output_tokens_details = later.output_tokens_details;
        }
    }

    /// OpenAI terms. Anthropic's `input_tokens` excludes cached tokens, so the prompt is
    /// input + cache read + cache creation; cache reads are also `cached_tokens`.
    pub fn to_usage(self) -> Usage {
        let input = self.input_tokens.unwrap_or(0);
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let created = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: input + read + created,
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: read,
            cache_creation_tokens: created,
            reasoning_tokens: self
                .output_tokens_details
                .and_then(|d| d.thinking_tokens)
                .unwrap_or(0),
        }
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`. `pause_turn` is continued by the backend
/// before it gets here; if the continuation budget runs out it ends the turn as `stop`.
pub fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn, null and values added later.
        _ => FinishReason::Stop,
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// `{"type":"error","error":{"type","message"}}` → `(type, message)`.
pub fn parse_error(body: &str) -> Option<(String, String)> {
    let b: ErrorBody = serde_json::from_str(body).ok()?;
    Some((b.error.kind, b.error.message))
}

/// The message of a non-2xx body (`type: message`), for the upstream layer's error reader.
pub fn error_message(body: &str) -> Option<String> {
    parse_error(body).map(|(kind, message)| error_text(&kind, &message))
}

/// The HTTP status Anthropic documents for each error type (used for `error` events that
/// arrive inside a 200 stream, so the edge can still answer with the right class).
pub fn status_for_error_type(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}

/// Short, bounded text for an upstream error: `type: message`.
pub fn error_text(kind: &str, message: &str) -> String {
    if kind.is_empty() {
        truncate_for_error(message)
    } else {
        truncate_for_error(&format!("{kind}: {message}"))
    }
}

/// An `error` event (or an error body inside a 200): a status error when the type is known,
/// otherwise a protocol error; never a silent stop.
pub fn error_event(data: &Value) -> Error {
    let kind = data
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let message = data
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    match status_for_error_type(kind) {
        Some(status) => Error::Status {
            status,
            message: error_text(kind, message),
            retry_after: None,
        },
        None => Error::Protocol(format!("error event: {}", error_text(kind, message))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_counts_cache_tokens_in_the_prompt() {
        let mut u = RawUsage::from_value(Some(&json!({
            "input_tokens": 10, "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000, "output_tokens": 1
        })));
        u.merge(&RawUsage::from_value(Some(&json!({"output_tokens": 42}))));
        let o = u.to_usage();
        assert_eq!(o.prompt_tokens, 1110);
        assert_eq!(o.cached_tokens, 1000);
        assert_eq!(o.cache_creation_tokens, 100);
        assert_eq!(o.completion_tokens, 42);
        assert_eq!(
            RawUsage::from_value(Some(&json!("junk"))),
            RawUsage::default()
        );
    }

    #[test]
    fn stop_reasons_map_to_openai() {
        assert_eq!(finish_reason(Some("end_turn")), FinishReason::Stop);
        assert_eq!(finish_reason(Some("stop_sequence")), FinishReason::Stop);
        assert_eq!(finish_reason(Some("max_tokens")), FinishReason::Length);
        assert_eq!(finish_reason(Some("tool_use")), FinishReason::ToolCalls);
        assert_eq!(finish_reason(Some("refusal")), FinishReason::ContentFilter);
        assert_eq!(finish_reason(None), FinishReason::Stop);
    }

    #[test]
    fn error_events_become_errors() {
        let e = error_event(
            &json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        );
        assert_eq!(
            e,
            Error::Status {
                status: 529,
                message: "overloaded_error: Overloaded".into(),
                retry_after: None
            }
        );
        assert!(matches!(
            error_event(&json!({"type":"error","error":{"type":"brand_new_error","message":"x"}})),
            Error::Protocol(_)
        ));
        assert_eq!(
            parse_error(r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}"#),
            Some(("rate_limit_error".into(), "slow".into()))
        );
        assert_eq!(parse_error("<html>"), None);
    }
}
