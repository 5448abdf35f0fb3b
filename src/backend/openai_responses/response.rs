//! One Responses API response object (a JSON body, or rebuilt from a stream) → one [`Turn`].
//!
//! `message` items give the text (`output_text` parts; a `refusal` part is text too and ends the
//! turn as `content_filter`); `function_call` items give the tool calls (`call_id`, `name`,
//! `arguments`; a call the model did not finish — status `incomplete`, or arguments that are not
//! JSON in an incomplete response — is dropped rather than run with made-up arguments);
//! `reasoning` items make the round's output items (reasoning, messages, calls, verbatim) the
//! turn's `provider_state`, to be sent back in the next round of the loop. Other item types
//! (built-in tools) are not shown. Pure functions.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use serde_json::Value;

use super::types::{error_of, finish_reason, usage};
use crate::api::openai::{FinishReason, ToolCall};
use crate::backend::{Error, Turn, truncate_for_error};

/// The parts of a response object we act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Output items as sent (stream: rebuilt from the events).
    pub output: Vec<Value>,
    pub status: Option<String>,
    pub incomplete_reason: Option<String>,
    pub usage: Option<Value>,
}

impl Reply {
    /// A whole response body (bytes as read).
    pub fn from_body(body: &[u8]) -> Result<Reply, Error> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            let start = body.get(..body.len().min(400)).unwrap_or(body);
            Error::Protocol(format!(
                "response is not JSON ({e}): {}",
                truncate_for_error(&String::from_utf8_lossy(start))
            ))
        })?;
        Reply::from_json(&v)
    }

    /// A response object. A `failed` one (or one carrying an `error`) is an error.
    pub fn from_json(v: &Value) -> Result<Reply, Error> {
        let status = v.get("status").and_then(Value::as_str);
        if status == Some("failed") || v.get("error").is_some_and(|e| e.is_object()) {
            return Err(error_of(
                v.get("error").filter(|e| e.is_object()).unwrap_or(v),
                "response failed",
            ));
        }
        let Some(Value::Array(output)) = v.get("output") else {
            return Err(Error::Protocol("response has no output array".into()));
        };
        Ok(Reply {
            output: output.clone(),
            status: status.map(str::to_string),
            incomplete_reason: v
                .pointer("/incomplete_details/reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            usage: v.get("usage").cloned(),
        })
    }

    /// The text of the `message` items (what a stream's text deltas add up to).
    pub fn text(&self) -> String {
        self.message_parts()
            .filter_map(|p| match kind(p) {
                Some("output_text") => p.get("text").and_then(Value::as_str),
                Some("refusal") => p.get("refusal").and_then(Value::as_str),
                _ => None,
            })
            .collect()
    }

    fn message_parts(&self) -> impl Iterator<Item = &Value> {
        self.output
            .iter()
            .filter(|i| kind(i) == Some("message"))
            .filter_map(|i| i.get("content").and_then(Value::as_array))
            .flatten()
    }

    pub fn to_turn(&self) -> Turn {
        let incomplete = self.status.as_deref() == Some("incomplete");
        let mut tool_calls = Vec::new();
        let mut reasoning = false;
        for item in &self.output {
            match kind(item) {
                Some("function_call") => {
                    if let Some(call) = tool_call(item, tool_calls.len(), incomplete) {
                        tool_calls.push(call);
                    }
                }
                Some("reasoning") => reasoning = true,
                Some("message") => {}
                other => log::debug!("openai-responses: output item {other:?} not shown"),
            }
        }
        let refused = self.message_parts().any(|p| kind(p) == Some("refusal"));
        let mut finish = finish_reason(self.status.as_deref(), self.incomplete_reason.as_deref());
        if refused {
            finish = FinishReason::ContentFilter;
        } else if finish == FinishReason::Stop && !tool_calls.is_empty() {
            finish = FinishReason::ToolCalls;
        }
        Turn {
            content: self.text(),
            tool_calls,
            finish_reason: finish,
            usage: usage(self.usage.as_ref()),
            provider_state: reasoning.then(|| {
                Value::Array(
                    self.output
                        .iter()
                        .filter(|i| {
                            matches!(kind(i), Some("reasoning" | "message" | "function_call"))
                        })
                        .cloned()
                        .collect(),
                )
            }),
        }
    }
}

fn kind(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

/// A `function_call` item → a tool call (`""` arguments → `{}`), or `None` for one the model
/// did not finish.
fn tool_call(item: &Value, index: usize, incomplete: bool) -> Option<ToolCall> {
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        log::warn!("openai-responses: function_call without a name dropped");
        return None;
    };
    let args = item.get("arguments").and_then(Value::as_str).unwrap_or("");
    let args = if args.trim().is_empty() { "{}" } else { args };
    let unfinished = matches!(
        item.get("status").and_then(Value::as_str),
        Some("incomplete" | "in_progress")
    ) || (incomplete && serde_json::from_str::<Value>(args).is_err());
    if unfinished {
        log::warn!("openai-responses: function_call '{name}' cut off, dropped");
        return None;
    }
    let id = item
        .get("call_id")
        .or_else(|| item.get("id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map_or_else(|| format!("call_{index}"), str::to_string);
    Some(ToolCall::new(id, name, args))
}
