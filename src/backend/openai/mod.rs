//! The `openai` backend: any OpenAI-compatible `POST {base_url}/chat/completions` (OpenAI, Groq,
//! vLLM, Ollama, llama.cpp, …).
//!
//! This folder only translates: `build_payload` makes the request body, `parse.rs` decodes
//! answers and stream chunks, `stream.rs` is the stream [`Decoder`](super::upstream::Decoder).
//! Everything HTTP — the pooled agent, timeouts, no redirects, no proxy from the environment,
//! error bodies, stream reading with idle ticks and the deadline — is
//! [`super::upstream`], shared with the other backends. Non-stream answers are capped at
//! 16 MiB, one stream event at 4 MiB.

pub mod parse;
mod stream;

use std::sync::Arc;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use ureq::Agent;

use super::upstream::{Limits, Upstream};
use super::{Backend, Error, Turn, TurnRequest, TurnSink};
use crate::api::openai::{Message, Tool};
use crate::config::BackendConfig;
use crate::secret::Secret;

/// Size caps: a non-stream JSON answer, one stream event.
const LIMITS: Limits = Limits {
    json_bytes: 16 * 1024 * 1024,
    event_bytes: 4 * 1024 * 1024,
};

pub struct OpenAiBackend {
    upstream: Arc<Upstream>,
}

impl OpenAiBackend {
    pub fn new(cfg: &BackendConfig) -> Self {
        let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
        OpenAiBackend {
            upstream: Arc::new(Upstream::new(
                url,
                headers(cfg),
                cfg.timeout,
                LIMITS,
                error_message,
            )),
        }
    }

    /// The HTTP agent (its config is inspected by tests: proxy, timeouts).
    pub fn agent(&self) -> &Agent {
        self.upstream.agent()
    }
}

/// `default_headers` (minus the ones we own), then `Authorization`, then `Content-Type`.
pub(super) fn headers(cfg: &BackendConfig) -> Vec<(String, Secret)> {
    let mut headers: Vec<(String, Secret)> = Vec::new();
    for (name, value) in &cfg.default_headers {
        let owned = name.eq_ignore_ascii_case("content-type")
            || (cfg.api_key.is_some() && name.eq_ignore_ascii_case("authorization"));
        if owned {
            log::debug!("backend default header '{name}' is overridden by aiproxy");
            continue;
        }
        headers.push((name.clone(), value.clone()));
    }
    if let Some(key) = &cfg.api_key {
        headers.push((
            "Authorization".into(),
            Secret::new(format!("Bearer {}", key.expose())),
        ));
    }
    headers.push(("Content-Type".into(), Secret::new("application/json")));
    headers
}

impl Backend for OpenAiBackend {
    fn turn(&self, req: &TurnRequest<'_>, sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        let body = serde_json::to_vec(&build_payload(req))
            .map_err(|e| Error::Protocol(format!("cannot encode request: {e}")))?;
        if req.stream {
            let mut decoder = stream::ChunkDecoder::default();
            return self
                .upstream
                .stream(&body, req.deadline, &mut decoder, sink);
        }
        let body = self.upstream.call(&body, req.deadline)?;
        parse::parse_completion(&body)
    }
}

/// The upstream payload (docs/backends.md#openai): model, messages (an assistant message with `tool_calls` and
/// no content gets `content: ""`: llama-cpp-python fails on a missing key, Ollama and
/// llama-cpp-python refuse `null`, and every upstream accepts a string), the merged params,
/// tools unless this is the final round, `stream` (+ `stream_options.include_usage`), then
/// `extra_body` last. A `null`
/// in `extra_body` removes that key (so an operator can drop e.g. `stream_options` for a server
/// that rejects it).
fn build_payload<'a>(req: &TurnRequest<'a>) -> Payload<'a> {
    let mut members = Map::new();
    members.insert("model".into(), Value::String(req.model.to_string()));
    for (k, v) in req.params {
        // These are ours to set; a stray copy in params must not replace them.
        if !matches!(k.as_str(), "model" | "messages" | "stream") {
            members.insert(k.clone(), v.clone());
        }
    }
    let offer_tools = !req.final_round && !req.tools.is_empty();
    if offer_tools {
        members.remove("tools");
        if let Some(choice) = req.tool_choice {
            members.insert("tool_choice".into(), choice.clone());
        }
    } else {
        // OpenAI rejects these without `tools`; the final round must not fail.
        for k in ["tools", "tool_choice", "parallel_tool_calls"] {
            members.remove(k);
        }
    }
    members.insert("stream".into(), Value::Bool(req.stream));
    if req.stream {
        let mut opts = match members.remove("stream_options") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        opts.insert("include_usage".into(), Value::Bool(true));
        members.insert("stream_options".into(), Value::Object(opts));
    } else {
        // "stream_options is only allowed when stream is enabled".
        members.remove("stream_options");
    }
    let mut payload = Payload {
        members,
        messages: Some(req.messages),
        tools: offer_tools.then_some(req.tools),
    };
    for (k, v) in req.extra_body {
        payload.set(k, v);
    }
    payload
}

/// The request body: the small members in a map, merged as above; the messages and the tools
/// serialized straight from the request, with no `Value` copy of either (a tool round's body
/// carries every tool schema and the whole conversation, twice per request).
struct Payload<'a> {
    members: Map<String, Value>,
    /// `None` once `extra_body` replaced or removed them.
    messages: Option<&'a [Message]>,
    tools: Option<&'a [Tool]>,
}

impl Payload<'_> {
    /// An `extra_body` entry: set `key` to `value`, or remove it when `value` is `null`.
    fn set(&mut self, key: &str, value: &Value) {
        match key {
            "messages" => self.messages = None,
            "tools" => self.tools = None,
            _ => {}
        }
        if value.is_null() {
            self.members.remove(key);
        } else {
            self.members.insert(key.to_string(), value.clone());
        }
    }
}

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let typed = usize::from(self.messages.is_some()) + usize::from(self.tools.is_some());
        let mut map = s.serialize_map(Some(self.members.len() + typed))?;
        if let Some(messages) = self.messages {
            map.serialize_entry("messages", &Messages(messages))?;
        }
        if let Some(tools) = self.tools {
            map.serialize_entry("tools", tools)?;
        }
        for (k, v) in &self.members {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The conversation as upstreams take it: an assistant message with `tool_calls` and no
/// content gets `content: ""`.
struct Messages<'a>(&'a [Message]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for m in self.0 {
            let calls = m.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
            if calls && m.content.is_none() {
                let mut v = serde_json::to_value(m).map_err(serde::ser::Error::custom)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("content".into(), Value::String(String::new()));
                }
                seq.serialize_element(&v)?;
            } else {
                seq.serialize_element(m)?;
            }
        }
        seq.end()
    }
}

/// The message of an error body (`{"error":{"message",…}}` or `{"error":"text"}`).
fn error_message(text: &str) -> Option<String> {
    let v = serde_json::from_str::<Value>(text).ok()?;
    parse::upstream_error(&v).map(|e| match e {
        Error::Status { message, .. } => message,
        Error::Protocol(m) => m.trim_start_matches("upstream error: ").to_string(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests;
