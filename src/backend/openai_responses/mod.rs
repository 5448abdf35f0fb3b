//! The `openai-responses` backend: one loop round as a Responses API call (`POST
//! {base_url}/responses`, `Authorization: Bearer`), for models served only through that API and
//! for any server that speaks it. Works behind both inbound APIs: the loop speaks chat shapes.
//!
//! Layout: [`request`] builds the body (pure), [`stream`] is the event state machine and stream
//! decoder (pure), [`response`] turns a response object into a [`Turn`] (pure), [`types`] holds
//! usage, finish reasons and error shapes. The I/O is the shared upstream layer
//! ([`super::upstream`]); this folder only translates. Bodies are capped at 16 MiB (JSON) and
//! 8 MiB (one stream event).
//!
//! # Chat → Responses
//!
//! | Chat (the loop's `TurnRequest`) | Responses request |
//! |---|---|
//! | leading `system` / `developer` messages | `instructions` (joined by a blank line) |
//! | later `system` / `developer` messages | `{"role":"system"/"developer","content"}` input messages |
//! | `user` text / `text`, `image_url`, `file` parts | `{"role":"user","content"}`: the string, or `input_text` / `input_image` (`detail` kept, else `auto`) / `input_file`; audio dropped |
//! | `assistant` text (+ `refusal`) | `{"role":"assistant","content":"…"}` |
//! | `assistant` `tool_calls` | `function_call` items (`call_id`, `name`, `arguments`; `""` → `{}`) |
//! | `Message::provider_state` of an assistant message (the round's output with reasoning) | those output items verbatim (reasoning, message, `function_call` with their ids) |
//! | `tool` messages (+ `tool_images`) | `function_call_output` (`output`: the text, or `input_text` + `input_image` parts) |
//! | `tools` (function) | `{"type":"function","name","description","parameters","strict":false}` (`strict` kept when the tool sets it) |
//! | `tool_choice` `auto` / `none` / `required` / `{"type":"function","function":{"name"}}` / `allowed_tools` | the same strings / `{"type":"function","name"}` / `{"type":"allowed_tools","mode","tools":[{"type":"function","name"}]}` |
//! | `parallel_tool_calls` | the same (with tools only) |
//! | final round of the loop | `tools` kept, `tool_choice: "none"` |
//! | `max_completion_tokens`, `max_tokens` | `max_output_tokens` (at least 16, the API's minimum) |
//! | `response_format` `text` / `json_object` / `json_schema{name,schema,strict}` | `text.format` `text` / `json_object` / `json_schema` with those fields flattened |
//! | `verbosity` | `text.verbosity` |
//! | `reasoning_effort` | `reasoning.effort` |
//! | `temperature`, `top_p`, `top_logprobs`, `user`, `safety_identifier`, `metadata`, `prompt_cache_key`, `service_tier`, `truncation`, `max_tool_calls` | the same |
//! | — | `store: false`; `include: ["reasoning.encrypted_content"]` (so reasoning can go back without storage) |
//! | `stream: true` | `stream: true` |
//! | assistant `extra_body` | merged last (`null` removes a key; `store: true` or an own `include` turn the automatic `include` off) |
//! | `stop`, `seed`, `n`, `frequency_penalty`, `presence_penalty`, `logit_bias`, `logprobs`, … | dropped, one debug line naming them |
//!
//! A model without reasoning refuses the `include` (`400 Encrypted content is not supported with
//! this model`): the request is sent once more without it, and the model is remembered (up to
//! [`MAX_REMEMBERED_MODELS`] per backend) so later requests leave it out at once.
//!
//! # Responses → chat
//!
//! | Responses | `Turn` |
//! |---|---|
//! | `message` items: `output_text` (`response.output_text.delta`) | `content` (deltas to the sink as they arrive) |
//! | `refusal` parts (`response.refusal.delta`) | `content`, finish `content_filter` |
//! | `function_call` items (`response.output_item.added`, `function_call_arguments.delta` / `.done`, `output_item.done`) | `tool_calls` (`call_id` → id); unfinished calls dropped |
//! | `reasoning` items | `provider_state`: the round's reasoning, message and call items, verbatim |
//! | `status` `completed` / `incomplete` + `max_output_tokens` / `incomplete` + `content_filter` | `stop` or `tool_calls` / `length` / `content_filter` |
//! | `usage` `input_tokens` (+ `input_tokens_details.cached_tokens`), `output_tokens` (+ `output_tokens_details.reasoning_tokens`) | `prompt_tokens` (`cached_tokens`), `completion_tokens` (`reasoning_tokens`) |
//! | `response.failed`, `error` event, `status: failed` body | `Error::Status` when the code names a class (`rate_limit_exceeded` 429, `server_error` 500, `invalid_*` 400, …), else `Error::Protocol` |
//! | stream ending before `response.completed` / `.incomplete` | `Error::Protocol` |
//! | built-in tool items, reasoning summary and content-part events, unknown events | tolerated, not shown |

pub mod request;
pub mod response;
pub mod stream;
pub mod types;

#[cfg(test)]
mod golden_tests;

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::upstream::{Limits, Upstream};
use super::{Backend, Error, Turn, TurnRequest, TurnSink};
use crate::config::BackendConfig;
use response::Reply;

/// Models remembered, per backend, as refusing encrypted reasoning.
pub const MAX_REMEMBERED_MODELS: usize = 256;

/// Size caps: a non-stream JSON answer, one stream event (a `response.completed` repeats the
/// whole output).
const LIMITS: Limits = Limits {
    json_bytes: 16 * 1024 * 1024,
    event_bytes: 8 * 1024 * 1024,
};

pub struct OpenAiResponsesBackend {
    upstream: Arc<Upstream>,
    /// Models that refused `include: ["reasoning.encrypted_content"]`.
    no_encrypted: Mutex<HashSet<String>>,
}

impl OpenAiResponsesBackend {
    pub fn new(cfg: &BackendConfig) -> Self {
        let url = format!("{}/responses", cfg.base_url.trim_end_matches('/'));
        OpenAiResponsesBackend {
            upstream: Arc::new(Upstream::new(
                url,
                super::openai::headers(cfg),
                cfg.timeout,
                LIMITS,
                types::error_message,
            )),
            no_encrypted: Mutex::new(HashSet::new()),
        }
    }

    /// The HTTP agent (its config is inspected by tests: proxy, timeouts).
    pub fn agent(&self) -> &ureq::Agent {
        self.upstream.agent()
    }

    fn call(
        &self,
        body: &Value,
        req: &TurnRequest<'_>,
        sink: &mut dyn TurnSink,
    ) -> Result<Turn, Error> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::Protocol(format!("cannot encode request: {e}")))?;
        if req.stream {
            let mut machine = stream::EventMachine::new();
            return self
                .upstream
                .stream(&bytes, req.deadline, &mut machine, sink);
        }
        Ok(Reply::from_body(&self.upstream.call(&bytes, req.deadline)?)?.to_turn())
    }
}

impl Backend for OpenAiResponsesBackend {
    fn turn(&self, req: &TurnRequest<'_>, sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        let encrypted = !self.no_encrypted.lock().contains(req.model);
        let body = request::build(req, encrypted);
        let asked = body
            .get("include")
            .and_then(Value::as_array)
            .is_some_and(|i| i.iter().any(|v| v == types::ENCRYPTED_REASONING));
        match self.call(&body, req, sink) {
            // Refused before any byte of an answer: safe to ask again without it.
            Err(e) if asked && types::refuses_encrypted_content(&e) => {
                log::debug!(
                    "openai-responses: model '{}' has no encrypted reasoning; asking without it",
                    req.model
                );
                let mut known = self.no_encrypted.lock();
                if known.len() < MAX_REMEMBERED_MODELS {
                    known.insert(req.model.to_string());
                }
                drop(known);
                self.call(&request::build(req, false), req, sink)
            }
            other => other,
        }
    }
}
