//! One Anthropic message (from a JSON body or rebuilt from a stream) → one [`Turn`].
//!
//! Text blocks are concatenated into `content`; `tool_use` blocks become tool calls (input object
//! → compact JSON text); `thinking` / `redacted_thinking` blocks are kept verbatim, signatures
//! included, as `Turn::provider_state`, because Claude wants them back on the next request of a
//! tool loop when extended thinking is on. Other block types (server tools, …) are not shown to
//! OpenAI clients. Pure functions.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use serde_json::{Value, json};

use super::types::{RawUsage, error_event, finish_reason};
use crate::api::openai::ToolCall;
use crate::backend::{Error, Turn, truncate_for_error};

/// The parts of an Anthropic message we act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Content blocks as sent (stream: rebuilt from the deltas).
    pub content: Vec<Value>,
    pub stop_reason: Option<String>,
    pub usage: RawUsage,
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

    /// A non-streaming response body, parsed.
    pub fn from_json(v: &Value) -> Result<Reply, Error> {
        if v.get("type").and_then(Value::as_str) == Some("error") {
            return Err(error_event(v));
        }
        let content = match v.get("content") {
            Some(Value::Array(blocks)) => blocks.clone(),
            _ => {
                return Err(Error::Protocol("response has no content array".to_string()));
            }
        };
        Ok(Reply {
            content,
            stop_reason: v
                .get("stop_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            usage: RawUsage::from_value(v.get("usage")),
        })
    }

    /// The server paused a long turn (server tools); the request is to be sent again with this
    /// content appended as the assistant turn.
    pub fn paused(&self) -> bool {
        self.stop_reason.as_deref() == Some("pause_turn")
    }

    pub fn to_turn(&self) -> Turn {
        let mut content = String::new();
        let mut tool_calls = Vec::new();
        let mut thinking = Vec::new();
        for block in &self.content {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(t) = block.get("text").and_then(Value::as_str) {
                        content.push_str(t);
                    }
                }
                Some("tool_use") => {
                    if let Some(call) = tool_call(block, tool_calls.len()) {
                        tool_calls.push(call);
                    }
                }
                Some("thinking") | Some("redacted_thinking") => thinking.push(block.clone()),
                other => log::debug!("anthropic: content block {other:?} not shown to the client"),
            }
        }
        let mut finish = finish_reason(self.stop_reason.as_deref());
        if tool_calls.is_empty() && finish == crate::api::openai::FinishReason::ToolCalls {
            // Nothing to call (e.g. the only tool_use block was cut off): the turn just ended.
            finish = crate::api::openai::FinishReason::Stop;
        }
        Turn {
            content,
            tool_calls,
            finish_reason: finish,
            usage: self.usage.to_usage(),
            provider_state: (!thinking.is_empty()).then_some(Value::Array(thinking)),
        }
    }
}

/// A `tool_use` block → an OpenAI tool call. A block whose input is not an object (a stream cut
/// off mid-arguments, e.g. at `max_tokens`) is dropped rather than run with made-up arguments.
fn tool_call(block: &Value, index: usize) -> Option<ToolCall> {
    let Some(name) = block.get("name").and_then(Value::as_str) else {
        log::warn!("anthropic: tool_use block without a name dropped");
        return None;
    };
    let input = match block.get("input") {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        None => json!({}),
        Some(_) => {
            log::warn!("anthropic: tool_use '{name}' with incomplete input dropped");
            return None;
        }
    };
    let id = match block.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("toolu_{index}"),
    };
    Some(ToolCall::new(id, name, input.to_string()))
}

/// Fold the turn of a continued (`pause_turn`) request into the one so far.
pub fn merge_turns(acc: &mut Turn, next: Turn) {
    acc.content.push_str(&next.content);
    acc.tool_calls.extend(next.tool_calls);
    acc.finish_reason = next.finish_reason;
    acc.usage.add(&next.usage);
    acc.provider_state = match (acc.provider_state.take(), next.provider_state) {
        (Some(Value::Array(mut a)), Some(Value::Array(b))) => {
            a.extend(b);
            Some(Value::Array(a))
        }
        (a, b) => b.or(a),
    };
}
