//! The few Responses API shapes read into types: token usage, error objects (HTTP error bodies,
//! `error` events, a failed response's `error`) and the end state of a response. Output items
//! stay `serde_json::Value`s everywhere else, so reasoning items (with their
//! `encrypted_content`) and item types we do not know survive a round trip unchanged. Pure data.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use serde_json::Value;

use crate::api::openai::{FinishReason, Usage};
use crate::backend::{Error, truncate_for_error};

/// The API refuses `max_output_tokens` below this.
pub const MIN_OUTPUT_TOKENS: u64 = 16;

/// What `include` asks for so reasoning items come back with `encrypted_content`, which is what
/// lets them be sent again with `store: false`.
pub const ENCRYPTED_REASONING: &str = "reasoning.encrypted_content";

/// `usage` of a response → [`Usage`]: `input_tokens` → `prompt_tokens` (cached tokens are part of
/// it, as in chat completions), `input_tokens_details.cached_tokens`, `output_tokens` →
/// `completion_tokens`, `output_tokens_details.reasoning_tokens`. Absent fields count as zero.
pub fn usage(v: Option<&Value>) -> Usage {
    let Some(u) = v.filter(|u| u.is_object()) else {
        return Usage::default();
    };
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        prompt_tokens: n("/input_tokens"),
        completion_tokens: n("/output_tokens"),
        cached_tokens: n("/input_tokens_details/cached_tokens"),
        cache_creation_tokens: 0,
        reasoning_tokens: n("/output_tokens_details/reasoning_tokens"),
    }
}

/// A response's `status` (+ `incomplete_details.reason`) → finish reason. `completed` is `stop`
/// (the caller makes it `tool_calls` when calls came back); `incomplete` because of
/// `max_output_tokens` is `length`, because of `content_filter` is `content_filter`.
pub fn finish_reason(status: Option<&str>, incomplete_reason: Option<&str>) -> FinishReason {
    match (status, incomplete_reason) {
        (Some("incomplete"), Some("content_filter")) => FinishReason::ContentFilter,
        (Some("incomplete"), _) => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// The HTTP status for an error `code` / `type`, when it names one (an `error` event inside a 200
/// stream, or a failed response, still gets the right class at the edge).
fn status_for(code: &str) -> Option<u16> {
    Some(match code {
        "rate_limit_exceeded" | "rate_limit_error" | "insufficient_quota" => 429,
        "server_error" | "api_error" | "internal_error" => 500,
        "server_is_overloaded" | "overloaded" | "service_unavailable" => 503,
        "invalid_request_error" | "invalid_prompt" | "context_length_exceeded" => 400,
        c if c.starts_with("invalid_") => 400,
        "authentication_error" | "invalid_api_key" => 401,
        "permission_error" => 403,
        "not_found" | "not_found_error" => 404,
        "timeout" | "request_timeout" => 504,
        _ => return None,
    })
}

/// An error object — `{"code","message",…}`, as in an `error` event, a failed response's
/// `error`, or `{"error":{…}}` around either — as an [`Error`]: a status error when its code or
/// type names a class, a protocol error otherwise. Never a silent stop.
pub fn error_of(v: &Value, what: &str) -> Error {
    let e = match v.get("error") {
        Some(inner) if inner.is_object() => inner,
        _ => v,
    };
    let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
    let message = match field("message") {
        "" => "unknown error",
        m => m,
    };
    let code = [field("code"), field("type")]
        .into_iter()
        .find(|c| status_for(c).is_some())
        .unwrap_or_else(|| {
            if field("code").is_empty() {
                field("type")
            } else {
                field("code")
            }
        });
    let text = if code.is_empty() {
        truncate_for_error(message)
    } else {
        truncate_for_error(&format!("{code}: {message}"))
    };
    match status_for(code) {
        Some(status) => Error::Status {
            status,
            message: text,
            retry_after: None,
        },
        None => Error::Protocol(format!("{what}: {text}")),
    }
}

/// The message of a non-2xx body (`{"error":{"message","type","param","code"}}`), for the
/// upstream layer's error reader.
pub fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    match v.get("error")? {
        Value::String(s) => Some(truncate_for_error(s)),
        e => e
            .get("message")
            .and_then(Value::as_str)
            .map(truncate_for_error),
    }
}

/// The API's refusal of `include: ["reasoning.encrypted_content"]` for a model without
/// reasoning (`400 Encrypted content is not supported with this model.`).
pub fn refuses_encrypted_content(e: &Error) -> bool {
    matches!(e, Error::Status { status: 400, message, .. }
        if message.to_ascii_lowercase().contains("encrypted content is not supported"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_maps_details() {
        let u = usage(Some(
            &json!({"input_tokens": 81, "input_tokens_details": {"cached_tokens": 64},
            "output_tokens": 1035, "output_tokens_details": {"reasoning_tokens": 832}, "total_tokens": 1116}),
        ));
        assert_eq!(
            (
                u.prompt_tokens,
                u.cached_tokens,
                u.completion_tokens,
                u.reasoning_tokens
            ),
            (81, 64, 1035, 832)
        );
        assert_eq!(usage(Some(&json!(null))), Usage::default());
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason(Some("completed"), None), FinishReason::Stop);
        assert_eq!(
            finish_reason(Some("incomplete"), Some("max_output_tokens")),
            FinishReason::Length
        );
        assert_eq!(
            finish_reason(Some("incomplete"), Some("content_filter")),
            FinishReason::ContentFilter
        );
    }

    #[test]
    fn errors_get_a_class() {
        let e = error_of(
            &json!({"type": "error", "code": "rate_limit_exceeded", "message": "slow", "param": null}),
            "error event",
        );
        assert!(matches!(e, Error::Status { status: 429, .. }), "{e:?}");
        let e = error_of(&json!({"code": "brand_new", "message": "x"}), "error event");
        assert_eq!(e, Error::Protocol("error event: brand_new: x".into()));
        assert_eq!(
            error_message(r#"{"error":{"message":"Bad key","type":"invalid_request_error"}}"#),
            Some("Bad key".into())
        );
        assert_eq!(error_message("<html>"), None);
        assert!(refuses_encrypted_content(&Error::Status {
            status: 400,
            message: "Encrypted content is not supported with this model.".into(),
            retry_after: None
        }));
    }
}
