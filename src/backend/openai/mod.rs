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

use serde_json::{Map, Value};
use ureq::Agent;

use super::upstream::{Limits, Upstream};
use super::{Backend, Error, Turn, TurnRequest, TurnSink};
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
        let payload = build_payload(req)?;
        let body = serde_json::to_vec(&Value::Object(payload))
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
fn build_payload(req: &TurnRequest<'_>) -> Result<Map<String, Value>, Error> {
    let encode = |e: serde_json::Error| Error::Protocol(format!("cannot encode request: {e}"));
    let mut p = Map::new();
    p.insert("model".into(), Value::String(req.model.to_string()));
    let mut messages = serde_json::to_value(req.messages).map_err(encode)?;
    if let Value::Array(list) = &mut messages {
        for m in list.iter_mut().filter_map(Value::as_object_mut) {
            let calls = m
                .get("tool_calls")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty());
            if calls && m.get("content").is_none_or(Value::is_null) {
                m.insert("content".into(), Value::String(String::new()));
            }
        }
    }
    p.insert("messages".into(), messages);
    for (k, v) in req.params {
        // These are ours to set; a stray copy in params must not replace them.
        if !matches!(k.as_str(), "model" | "messages" | "stream") {
            p.insert(k.clone(), v.clone());
        }
    }
    if !req.final_round && !req.tools.is_empty() {
        p.insert(
            "tools".into(),
            serde_json::to_value(req.tools).map_err(encode)?,
        );
        if let Some(choice) = req.tool_choice {
            p.insert("tool_choice".into(), choice.clone());
        }
    } else {
        // OpenAI rejects these without `tools`; the final round must not fail.
        for k in ["tools", "tool_choice", "parallel_tool_calls"] {
            p.remove(k);
        }
    }
    p.insert("stream".into(), Value::Bool(req.stream));
    if req.stream {
        let mut opts = match p.remove("stream_options") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        opts.insert("include_usage".into(), Value::Bool(true));
        p.insert("stream_options".into(), Value::Object(opts));
    } else {
        // "stream_options is only allowed when stream is enabled".
        p.remove("stream_options");
    }
    for (k, v) in req.extra_body {
        if v.is_null() {
            p.remove(k);
        } else {
            p.insert(k.clone(), v.clone());
        }
    }
    Ok(p)
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
