//! The response object as written, and its typed output items.
//!
//! A request's response objects (`response.created`, `response.in_progress`, the final one and
//! the stored one) differ only in status, output and usage: the settings they echo from the
//! request are rendered once per request ([`Echo::new`]) and spliced in. Objects are written
//! member by member with their keys as they are (`Members`), and output items are typed
//! ([`OutputItem`]), so writing a response builds no `Value` tree and escapes only values.

use serde::Serialize;
use serde_json::Value;

use super::input;
use crate::api::openai::{Tool, Usage};
use crate::api::responses::ResponsesRequest;
use crate::config::AssistantConfig;

/// What a request's response objects share: the id, the creation time, the assistant, and the
/// echoed settings.
#[derive(Debug, Clone)]
pub struct Echo {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    /// The echoed settings as object members (`"instructions":…,…,"prompt_cache_key":…`).
    fields: String,
}

/// An output item's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

/// An output item, typed: what the response object, the stream events and the store hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// The assistant's text: one `output_text` part (none while it is opening in a stream).
    Message {
        id: String,
        role: &'static str,
        status: ItemStatus,
        content: Vec<OutputText>,
    },
    /// A tool call the loop ran on an MCP server (`output` or `error` once it ended).
    McpCall {
        id: String,
        server_label: String,
        name: String,
        arguments: String,
        status: ItemStatus,
        output: Option<String>,
        error: Option<String>,
    },
    /// A call of one of the client's function tools: the client runs it.
    FunctionCall {
        id: String,
        status: ItemStatus,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// An `output_text` content part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputText {
    #[serde(rename = "type")]
    kind: &'static str,
    pub text: String,
    annotations: [u8; 0],
    logprobs: [u8; 0],
}

impl OutputText {
    pub fn new(text: String) -> OutputText {
        OutputText {
            kind: "output_text",
            text,
            annotations: [],
            logprobs: [],
        }
    }
}

impl OutputItem {
    /// An assistant message holding `text` (no content part while `text` is `None`).
    pub fn message(id: String, status: ItemStatus, text: Option<String>) -> OutputItem {
        OutputItem::Message {
            id,
            role: "assistant",
            status,
            content: text.map(OutputText::new).into_iter().collect(),
        }
    }

    pub fn id(&self) -> &str {
        match self {
            OutputItem::Message { id, .. }
            | OutputItem::McpCall { id, .. }
            | OutputItem::FunctionCall { id, .. } => id,
        }
    }

    pub fn is_message(&self) -> bool {
        matches!(self, OutputItem::Message { .. })
    }

    /// The item as a `Value` (for translation back into messages and `item_reference`s).
    pub fn to_value(&self) -> Value {
        // Serializing an item cannot fail (string keys only).
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `incomplete_details`.
#[derive(Debug, Serialize)]
struct Incomplete<'a> {
    reason: &'a str,
}

/// A failed response's `error`.
#[derive(Debug, Serialize)]
pub struct Failure<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// The parts of one response object that change over its life.
pub struct State<'a> {
    pub status: &'a str,
    pub output: &'a [OutputItem],
    pub usage: Option<&'a Usage>,
    pub error: Option<Failure<'a>>,
    /// `incomplete_details.reason`.
    pub incomplete: Option<&'a str>,
}

impl<'a> State<'a> {
    /// A response still running: no output, usage or error yet.
    pub fn in_progress() -> State<'a> {
        State {
            status: "in_progress",
            output: &[],
            usage: None,
            error: None,
            incomplete: None,
        }
    }
}

impl Echo {
    /// The shared parts of a request's response objects, its echoed settings rendered once.
    pub fn new(
        id: String,
        created_at: u64,
        model: String,
        r: &ResponsesRequest,
        client_tools: &[Tool],
        assistant: &AssistantConfig,
    ) -> Echo {
        Echo {
            id,
            created_at,
            model,
            fields: echo_fields(r, client_tools, assistant),
        }
    }

    /// The response object in `state`, as JSON text.
    pub fn object(&self, state: &State<'_>) -> String {
        let mut m = Members::with_capacity(self.fields.len() + 512);
        m.put("id", &self.id);
        m.raw("object", "\"response\"");
        m.put("created_at", &self.created_at);
        m.put("status", state.status);
        // Required by the specification, null until the response completes.
        let completed_at = (state.status == "completed").then(crate::clock::unix_now);
        m.put("completed_at", &completed_at);
        m.put("error", &state.error);
        let incomplete_details = state.incomplete.map(|reason| Incomplete { reason });
        m.put("incomplete_details", &incomplete_details);
        m.put("model", &self.model);
        m.put("output", state.output);
        m.splice(&self.fields);
        m.put("usage", &state.usage.map(ResponseUsage::from));
        m.finish()
    }
}

/// The settings every response object echoes: the client's value when it sent one of the
/// right type, else the default a model service reports (the specification requires them all).
fn echo_fields(r: &ResponsesRequest, client_tools: &[Tool], assistant: &AssistantConfig) -> String {
    let mut m = Members::with_capacity(640);
    m.put("instructions", &r.instructions);
    match &r.metadata {
        Some(metadata) => m.put("metadata", metadata),
        None => m.raw("metadata", "{}"),
    }
    m.put(
        "parallel_tool_calls",
        &r.parallel_tool_calls.unwrap_or(true),
    );
    m.put(
        "temperature",
        &r.temperature.or(assistant.temperature).unwrap_or(1.0),
    );
    m.put("top_p", &r.top_p.or(assistant.top_p).unwrap_or(1.0));
    match r.tool_choice.as_ref().filter(|v| !v.is_null()) {
        Some(choice) => m.put("tool_choice", choice),
        None => m.raw("tool_choice", "\"auto\""),
    }
    m.put("tools", &input::echo_tools(client_tools));
    m.put("max_output_tokens", &r.max_output_tokens);
    m.put("previous_response_id", &r.previous_response_id);
    match r.reasoning.as_ref().filter(|v| v.is_object()) {
        Some(reasoning) => m.put("reasoning", reasoning),
        None => m.raw("reasoning", "{\"effort\":null,\"summary\":null}"),
    }
    m.put("store", &r.store.unwrap_or(true));
    match r.text.as_ref().filter(|t| t.is_object()) {
        Some(text) if text.get("format").is_some_and(|f| !f.is_null()) => m.put("text", text),
        Some(text) => {
            let mut text = text.clone();
            text["format"] = serde_json::json!({"type": "text"});
            m.put("text", &text);
        }
        None => m.raw("text", "{\"format\":{\"type\":\"text\"}}"),
    }
    m.raw("truncation", "\"disabled\"");
    m.put("user", &r.user);
    m.raw("background", "false");
    m.raw("service_tier", "\"default\"");
    let client = |k: &str, ok: fn(&Value) -> bool| r.rest.get(k).filter(|v| ok(v));
    for (key, ok, default) in [
        (
            "presence_penalty",
            Value::is_number as fn(&Value) -> bool,
            "0.0",
        ),
        ("frequency_penalty", Value::is_number, "0.0"),
        ("top_logprobs", Value::is_u64, "0"),
        ("max_tool_calls", Value::is_u64, "null"),
        ("safety_identifier", Value::is_string, "null"),
        ("prompt_cache_key", Value::is_string, "null"),
    ] {
        match client(key, ok) {
            Some(v) => m.put(key, v),
            None => m.raw(key, default),
        }
    }
    m.into_members()
}

/// Writes a JSON object member by member. Keys are plain ASCII names known at compile time
/// and go out as they are; values are serialized (and escaped) by serde_json.
struct Members {
    out: Vec<u8>,
    empty: bool,
}

impl Members {
    fn with_capacity(bytes: usize) -> Members {
        let mut out = Vec::with_capacity(bytes);
        out.push(b'{');
        Members { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        debug_assert!(
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'),
            "member keys are written unescaped"
        );
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// `"key":<value>`.
    fn put<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.key(key);
        // Every value here has string keys only, so serializing cannot fail.
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    /// `"key":<json>`, the value already JSON.
    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    /// Members rendered by another [`Members`] ([`Members::into_members`]).
    fn splice(&mut self, members: &str) {
        if members.is_empty() {
            return;
        }
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.extend_from_slice(members.as_bytes());
    }

    /// The object, closed.
    fn finish(mut self) -> String {
        self.out.push(b'}');
        into_string(self.out)
    }

    /// Just the members (`"a":1,"b":2`), to splice into other objects.
    fn into_members(mut self) -> String {
        self.out.remove(0);
        into_string(self.out)
    }
}

fn into_string(bytes: Vec<u8>) -> String {
    // Built from `&str` keys and serde_json's output, both UTF-8.
    String::from_utf8(bytes).unwrap_or_default()
}

/// A response object's `usage`, in the Responses API's names.
#[derive(Debug, Serialize)]
pub struct ResponseUsage {
    input_tokens: u64,
    input_tokens_details: InputDetails,
    output_tokens: u64,
    output_tokens_details: OutputDetails,
    total_tokens: u64,
}

#[derive(Debug, Serialize)]
struct InputDetails {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(Debug, Serialize)]
struct OutputDetails {
    reasoning_tokens: u64,
}

impl From<&Usage> for ResponseUsage {
    fn from(u: &Usage) -> Self {
        ResponseUsage {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputDetails {
                cached_tokens: u.cached_tokens,
                cache_write_tokens: u.cache_creation_tokens,
            },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputDetails {
                reasoning_tokens: u.reasoning_tokens,
            },
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn echo(request: Value) -> Echo {
        let r: ResponsesRequest = serde_json::from_value(request).unwrap();
        let yaml = "backends: {b: {kind: mock}}\nassistants: [{name: a, backend: b}]\n";
        let env = crate::config::MapEnv::default();
        let config = crate::config::parse(yaml, "test", &env).unwrap();
        Echo::new(
            "resp_1".into(),
            7,
            "a".into(),
            &r,
            &[],
            &config.assistants[0],
        )
    }

    #[test]
    fn writes_the_specifications_members_with_defaults() {
        let e = echo(json!({"model": "a", "input": "hi"}));
        let item = OutputItem::message("msg_1".into(), ItemStatus::Completed, Some("é\"".into()));
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            ..Usage::default()
        };
        let state = State {
            status: "incomplete",
            output: std::slice::from_ref(&item),
            usage: Some(&usage),
            error: None,
            incomplete: Some("max_output_tokens"),
        };
        let v: Value = serde_json::from_str(&e.object(&state)).unwrap();
        assert_eq!(v["id"], "resp_1");
        assert_eq!(v["object"], "response");
        assert_eq!(v["created_at"], 7);
        assert_eq!(v["completed_at"], Value::Null);
        assert_eq!(
            v["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(
            v["output"],
            json!([{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "é\"", "annotations": [], "logprobs": []}]}])
        );
        assert_eq!(v["text"], json!({"format": {"type": "text"}}));
        assert_eq!(v["reasoning"], json!({"effort": null, "summary": null}));
        assert_eq!(v["tool_choice"], "auto");
        assert_eq!(v["metadata"], json!({}));
        assert_eq!(v["temperature"], 1.0);
        assert_eq!(v["presence_penalty"], 0.0);
        assert_eq!(v["top_logprobs"], 0);
        assert_eq!(v["usage"]["total_tokens"], 5);
        assert_eq!(v.as_object().unwrap().len(), 32, "{v}");
    }

    #[test]
    fn echoes_the_clients_settings() {
        let e = echo(
            json!({"model": "a", "input": "hi", "instructions": "be brief",
            "metadata": {"k": "v"}, "tool_choice": "none", "text": {"verbosity": "low"},
            "reasoning": {"effort": "low"}, "store": false, "top_logprobs": 2,
            "safety_identifier": 5, "prompt_cache_key": "p", "previous_response_id": "resp_0"}),
        );
        let failed = State {
            status: "failed",
            error: Some(Failure {
                code: "server_error",
                message: "upstream said \"no\"",
            }),
            ..State::in_progress()
        };
        let v: Value = serde_json::from_str(&e.object(&failed)).unwrap();
        assert_eq!(v["instructions"], "be brief");
        assert_eq!(v["metadata"], json!({"k": "v"}));
        assert_eq!(v["tool_choice"], "none");
        assert_eq!(
            v["text"],
            json!({"verbosity": "low", "format": {"type": "text"}})
        );
        assert_eq!(v["reasoning"], json!({"effort": "low"}));
        assert_eq!(v["store"], false);
        assert_eq!(v["top_logprobs"], 2);
        assert_eq!(
            v["safety_identifier"],
            Value::Null,
            "a number is not an identifier"
        );
        assert_eq!(v["prompt_cache_key"], "p");
        assert_eq!(v["previous_response_id"], "resp_0");
        assert_eq!(
            v["error"],
            json!({"code": "server_error", "message": "upstream said \"no\""})
        );
        assert_eq!(v["output"], json!([]));
        assert_eq!(v["usage"], Value::Null);
    }
}
