//! Pure decoding of OpenAI-compatible answers: the non-stream JSON body ([`parse_completion`]),
//! the chunks of a stream ([`StreamState`]), usage and in-band `{"error":…}` objects. No I/O;
//! fed with the bytes of a body or of a chunk by the transport code, so every upstream quirk is
//! unit-tested here. Answers decode into typed containers that skip what a turn does not read.
//!
//! Quirks tolerated (notes §4–§5): tool-call deltas that repeat `id`/`type`/`function.name` in
//! every chunk (llama-cpp-python) or omit ids, explicit `null`s, the legacy `function_call`
//! field (ignored), usage absent or sent in a final chunk with `choices: []`, `content` given as
//! an array of text parts, and `finish_reason: "stop"` beside tool calls (old Ollama).

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::api::openai::{FinishReason, ToolCall, Usage};
use crate::backend::{Error, Turn, truncate_for_error};

/// Largest text + tool arguments one turn may accumulate from a stream.
pub(super) const MAX_TURN_BYTES: usize = 16 * 1024 * 1024;

/// A non-stream `chat.completion` body as far as a turn reads it: typed containers (every
/// other field is skipped unread), the leaves that servers vary in (`arguments`,
/// `finish_reason`, `usage`, `error`) kept as values and read leniently, `content` as [`Text`].
#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    message: Option<ChoiceMessage<'a>>,
    #[serde(default)]
    finish_reason: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceMessage<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// Decode a non-stream `chat.completion` body.
pub fn parse_completion(body: &[u8]) -> Result<Turn, Error> {
    let c: Completion = serde_json::from_slice(body)
        .map_err(|e| Error::Protocol(format!("invalid JSON ({e}): {}", excerpt(body))))?;
    if let Some(err) = c.error.as_ref().and_then(error_of) {
        return Err(err);
    }
    let Some(choice) = c.choices.and_then(|c| c.into_iter().next()) else {
        return Err(Error::Protocol(format!(
            "no choices in answer: {}",
            excerpt(body)
        )));
    };
    let (content, calls) = match choice.message {
        Some(m) => (
            m.content.map(|t| t.0.into_owned()).unwrap_or_default(),
            m.tool_calls.unwrap_or_default(),
        ),
        None => (String::new(), Vec::new()),
    };
    let mut tool_calls = Vec::new();
    for (i, tc) in calls.iter().enumerate() {
        let func = tc.get("function").unwrap_or(&Value::Null);
        let name = func.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            log::warn!("upstream tool call #{i} has no function name; dropped");
            continue;
        }
        let id = tc
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("call_{i}"), str::to_string);
        let mut args = String::new();
        append_arguments(&mut args, func.get("arguments"));
        tool_calls.push(ToolCall::new(id, name, normalize_args(args)));
    }
    let finish = choice.finish_reason.as_ref().and_then(Value::as_str);
    Ok(Turn {
        content,
        finish_reason: finish_reason(finish.map(FinishReason::parse), !tool_calls.is_empty()),
        tool_calls,
        usage: parse_usage(c.usage.as_ref()),
        provider_state: None,
    })
}

/// OpenAI `usage` → [`Usage`]; absent or `null` fields count as zero.
pub(super) fn parse_usage(v: Option<&Value>) -> Usage {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let Some(u) = v.filter(|u| u.is_object()) else {
        return Usage::default();
    };
    Usage {
        prompt_tokens: n(u.get("prompt_tokens")),
        completion_tokens: n(u.get("completion_tokens")),
        cached_tokens: n(u.pointer("/prompt_tokens_details/cached_tokens")),
        cache_creation_tokens: 0,
        reasoning_tokens: n(u.pointer("/completion_tokens_details/reasoning_tokens")),
    }
}

/// An in-band error object (`{"error":{"message",…}}` or `{"error":"text"}`) as an [`Error`].
/// A numeric HTTP-like `code`/`status` (400–599) becomes [`Error::Status`] so the edge maps it
/// like a real status (429 → rate limit, …); anything else is a protocol failure.
pub(super) fn upstream_error(v: &Value) -> Option<Error> {
    v.get("error").and_then(error_of)
}

/// An `error` member's value as an [`Error`] (`None` when it is `null`).
fn error_of(err: &Value) -> Option<Error> {
    if err.is_null() {
        return None;
    }
    let message = match err {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| err.to_string(), str::to_string),
        other => other.to_string(),
    };
    let message = truncate_for_error(&message);
    let status = ["code", "status"]
        .iter()
        .filter_map(|k| err.get(k))
        .find_map(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|s| (400..600).contains(s));
    Some(match status {
        Some(status) => Error::Status {
            status: status as u16,
            message,
            retry_after: None,
        },
        None => Error::Protocol(format!("upstream error: {message}")),
    })
}

/// The start of a body for an error message.
pub(super) fn excerpt(body: &[u8]) -> String {
    let cut = body.get(..body.len().min(400)).unwrap_or(body);
    truncate_for_error(&String::from_utf8_lossy(cut))
}

/// A message `content`, read straight from the JSON text: a string, or an array of parts whose
/// `text`s are joined; any other value (a number, an object, `null`) reads as no text.
/// Borrowed from the input when the string has no escapes.
#[derive(Default)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor(std::marker::PhantomData))
    }
}

struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
    type Value = Text<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("message content")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
        Ok(Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
        Ok(Text(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
        Ok(Text(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut parts: A) -> Result<Text<'a>, A::Error> {
        let mut text = String::new();
        while let Some(part) = parts.next_element::<Value>()? {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                text.push_str(t);
            }
        }
        Ok(Text(Cow::Owned(text)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text<'a>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text::default())
    }
    fn visit_unit<E>(self) -> Result<Text<'a>, E> {
        Ok(Text::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Text<'a>, E> {
        Ok(Text::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Text<'a>, E> {
        Ok(Text::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Text<'a>, E> {
        Ok(Text::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Text<'a>, E> {
        Ok(Text::default())
    }
}

/// Arguments are JSON text; a server that sends an object gets it re-encoded.
fn append_arguments(out: &mut String, v: Option<&Value>) {
    match v {
        Some(Value::String(s)) => out.push_str(s),
        Some(Value::Null) | None => {}
        Some(other) => out.push_str(&other.to_string()),
    }
}

fn normalize_args(args: String) -> String {
    if args.trim().is_empty() {
        "{}".to_string()
    } else {
        args
    }
}

/// The loop keys on `ToolCalls`; a server that reports `stop` beside tool calls means the same.
fn finish_reason(parsed: Option<FinishReason>, has_calls: bool) -> FinishReason {
    match parsed {
        Some(FinishReason::Stop) | None if has_calls => FinishReason::ToolCalls,
        Some(r) => r,
        None => FinishReason::Stop,
    }
}

/// One `chat.completion.chunk` as far as a turn reads it, typed like [`Completion`]: the
/// chunk's `id`, `model`, `logprobs` and every other field are skipped unread.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default, borrow)]
    choices: Option<Vec<ChunkChoice<'a>>>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: Option<Value>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    finish_reason: Option<Value>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    /// A value: servers send `null`, and a non-array is ignored rather than refused.
    #[serde(default)]
    tool_calls: Option<Value>,
}

/// Distinct tool calls one streamed turn may hold.
const MAX_STREAM_CALLS: usize = 4096;

/// One tool call being assembled from stream deltas.
#[derive(Debug, Default)]
struct PartialCall {
    index: u64,
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Accumulates the chunks of one streamed turn.
#[derive(Debug, Default)]
pub struct StreamState {
    content: String,
    /// In order of first appearance; looked up by `index`.
    calls: Vec<PartialCall>,
    /// `index` → position in `calls`.
    slots: HashMap<u64, usize>,
    finish: Option<FinishReason>,
    usage: Usage,
    bytes: usize,
}

impl StreamState {
    /// Feed one chunk's JSON text. Returns the text delta to hand to the sink, if any.
    pub fn feed(&mut self, data: &str) -> Result<Option<&str>, Error> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            Error::Protocol(format!(
                "invalid JSON in stream ({e}): {}",
                excerpt(data.as_bytes())
            ))
        })?;
        if let Some(err) = chunk.error.as_ref().and_then(error_of) {
            return Err(err);
        }
        if let Some(u) = chunk.usage.as_ref().filter(|u| u.is_object()) {
            // Some servers repeat cumulative usage in every chunk: the last one wins.
            self.usage = parse_usage(Some(u));
        }
        let Some(mut choices) = chunk.choices else {
            return Ok(None);
        };
        let first = choices
            .iter()
            .position(|ch| ch.index.as_ref().and_then(Value::as_u64) == Some(0))
            .unwrap_or(0);
        if first >= choices.len() {
            return Ok(None);
        }
        let choice = choices.swap_remove(first);
        if let Some(r) = choice.finish_reason.as_ref().and_then(Value::as_str) {
            self.finish = Some(FinishReason::parse(r));
        }
        let Some(delta) = choice.delta else {
            return Ok(None);
        };
        if let Some(calls) = delta.tool_calls.as_ref().and_then(Value::as_array) {
            for (pos, tc) in calls.iter().enumerate() {
                self.feed_call(pos as u64, tc)?;
            }
        }
        let text = delta.content.unwrap_or_default().0;
        if text.is_empty() {
            return Ok(None);
        }
        self.grow(text.len())?;
        let start = self.content.len();
        self.content.push_str(&text);
        Ok(self.content.get(start..))
    }

    fn feed_call(&mut self, pos: u64, tc: &Value) -> Result<(), Error> {
        let index = tc.get("index").and_then(Value::as_u64).unwrap_or(pos);
        // A map, and a cap: a hostile upstream may stream any number of distinct indices.
        let slot = match self.slots.get(&index) {
            Some(&i) => i,
            None if self.calls.len() >= MAX_STREAM_CALLS => {
                return Err(Error::Protocol(format!(
                    "upstream streamed more than {MAX_STREAM_CALLS} tool calls in one turn"
                )));
            }
            None => {
                self.calls.push(PartialCall {
                    index,
                    ..PartialCall::default()
                });
                self.slots.insert(index, self.calls.len() - 1);
                self.calls.len() - 1
            }
        };
        let func = tc.get("function").unwrap_or(&Value::Null);
        let mut added = 0;
        {
            let Some(call) = self.calls.get_mut(slot) else {
                return Err(Error::Protocol("tool call slot lost".into()));
            };
            if let Some(id) = tc
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                call.id.get_or_insert_with(|| id.to_string());
            }
            if let Some(name) = func.get("name").and_then(Value::as_str) {
                // A repeated full name (llama-cpp-python sends it in every delta) is not a new
                // fragment; a genuinely split name (never seen, but cheap to allow) is appended.
                if !name.is_empty() && call.name != name {
                    call.name.push_str(name);
                    added += name.len();
                }
            }
            let before = call.arguments.len();
            append_arguments(&mut call.arguments, func.get("arguments"));
            added += call.arguments.len() - before;
        }
        self.grow(added)
    }

    fn grow(&mut self, n: usize) -> Result<(), Error> {
        self.bytes += n;
        if self.bytes > MAX_TURN_BYTES {
            return Err(Error::TooLarge);
        }
        Ok(())
    }

    /// A `finish_reason` was seen: the stream may end (even without `[DONE]`).
    pub(super) fn finished(&self) -> bool {
        self.finish.is_some()
    }

    pub fn into_turn(self) -> Turn {
        let mut calls = self.calls;
        calls.sort_by_key(|c| c.index);
        let tool_calls: Vec<ToolCall> = calls
            .into_iter()
            .filter(|c| {
                if c.name.is_empty() {
                    log::warn!(
                        "upstream streamed tool call #{} without a name; dropped",
                        c.index
                    );
                }
                !c.name.is_empty()
            })
            .map(|c| {
                let id = c.id.unwrap_or_else(|| format!("call_{}", c.index));
                ToolCall::new(id, c.name, normalize_args(c.arguments))
            })
            .collect();
        Turn {
            content: self.content,
            finish_reason: finish_reason(self.finish, !tool_calls.is_empty()),
            tool_calls,
            usage: self.usage,
            provider_state: None,
        }
    }
}

#[cfg(test)]
mod tests;
