//! The native Anthropic backend: one loop round as a Messages API call (`POST
//! {base_url}/messages`, `x-api-key`, `anthropic-version: 2023-06-01`), translated faithfully
//! both ways.
//!
//! Layout: [`request`] and [`messages`] build the request body (pure), [`stream`] is the SSE state
//! machine (pure), [`response`] turns a message into a [`Turn`] (pure), [`types`] holds the
//! wire constants, usage and error shapes. The I/O is the shared upstream layer
//! ([`super::upstream`]: pooled agent, timeouts, no redirects, error bodies, streams read
//! with idle ticks and the deadline); this folder only translates. Bodies are capped at 32 MiB
//! (JSON) and 8 MiB (one stream event).
//!
//! # OpenAI → Anthropic
//!
//! | OpenAI request | Anthropic request |
//! |---|---|
//! | `system` and `developer` messages (string or text parts, anywhere) | `system` text blocks, in order |
//! | `user` text / `image_url` (`data:` base64 or `http(s)` URL) / `file` (inline PDF) | `text` / `image` (`base64` or `url` source) / `document` blocks; audio and other parts dropped |
//! | `assistant` content, `refusal`, `tool_calls` | `text` blocks, then `tool_use` (`arguments` JSON text → `input` object; `""` or invalid → `{}`) |
//! | `Message::provider_state` of an assistant message | its `thinking` / `redacted_thinking` blocks, verbatim, first in that turn |
//! | `tool` messages | `tool_result` blocks (first) in the next user turn; `is_error` from `Message::tool_error`; `tool_images` as `image` blocks inside the result |
//! | consecutive same-role turns / history starting with assistant | merged / a minimal user turn inserted first |
//! | `tools` (function) | `tools` (`name`, `description`, `parameters` → `input_schema`, `type: object` ensured) |
//! | `tool_choice` `auto` / `none` / `required` / named function | `auto` / `none` / `any` / `{"type":"tool","name"}` |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` |
//! | final round of the loop | `tools` kept, `tool_choice: {"type":"none"}` |
//! | no tools offered but tool blocks in history | stub definitions of the used tool names, `tool_choice: none` |
//! | `max_completion_tokens`, `max_tokens` | `max_tokens` (always sent; default 4096) |
//! | `temperature` (0–2) / `top_p` / `top_k` | `temperature` clamped to 0–1 / `top_p` / `top_k` |
//! | `stop` (string or list) | `stop_sequences` (whitespace-only entries dropped) |
//! | `safety_identifier`, `user`, `metadata.user_id` | `metadata.user_id` |
//! | `stream: true` | `stream: true` |
//! | assistant `extra_body` | merged last (e.g. `thinking`, `service_tier`) |
//! | `seed`, `response_format`, `frequency_penalty`, `presence_penalty`, `logit_bias`, `logprobs`, `reasoning_effort`, … | dropped, one debug log line naming them |
//!
//! With extended thinking on (`extra_body.thinking`), `max_tokens` is raised above
//! `budget_tokens`, `temperature` / `top_k` (and `top_p` < 0.95) are dropped and a forced
//! `tool_choice` becomes `auto`, as the API requires. With `BackendConfig::prompt_caching` (on by
//! default) the last tool definition and the last system block carry
//! `cache_control: {"type":"ephemeral"}`: tools and system prompt are the fixed prefix.
//!
//! # Anthropic → OpenAI
//!
//! | Anthropic response | `Turn` |
//! |---|---|
//! | `text` blocks (`text_delta`s) | `content` (deltas to the sink as they arrive) |
//! | `tool_use` blocks (`input_json_delta`s parsed at block stop, `""` → `{}`) | `tool_calls` (input → compact JSON text) |
//! | `thinking` / `redacted_thinking` (`thinking_delta`, `signature_delta`) | `provider_state` |
//! | `stop_reason` `end_turn`, `stop_sequence` / `max_tokens` / `tool_use` / `refusal` | `stop` / `length` / `tool_calls` / `content_filter` |
//! | `stop_reason: pause_turn` | the request is sent again with the content appended (at most 3 times) |
//! | `usage` `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens`, `output_tokens` | `prompt_tokens`, `completion_tokens`; `cached_tokens` = cache reads, `cache_creation_tokens` |
//! | `error` event mid-stream; `{"type":"error","error":{type,message}}` body | `Error::Status` (status of the type: `overloaded_error` 529, `rate_limit_error` 429, …, `retry-after` kept) |
//! | stream ending before `message_stop` | `Error::Protocol` |
//! | `ping`, `citations_delta`, unknown events, server-tool blocks | tolerated, not shown |

pub mod messages;
pub mod request;
pub mod response;
pub mod stream;
pub mod types;

#[cfg(test)]
mod golden_tests;

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::upstream::{Limits, Upstream};
use super::{Backend, Error, Turn, TurnRequest, TurnSink};
use crate::config::BackendConfig;
use response::Reply;

/// How many times a `pause_turn` answer is continued within one round.
pub const MAX_PAUSE_CONTINUATIONS: usize = 3;

/// Size caps: a whole JSON answer (the API's own request limit is 32 MB; answers are far
/// smaller), one SSE event (a `content_block_start` of a server tool result can be large).
const LIMITS: Limits = Limits {
    json_bytes: 32 * 1024 * 1024,
    event_bytes: 8 * 1024 * 1024,
};

pub struct AnthropicBackend {
    upstream: Arc<Upstream>,
    prompt_caching: bool,
}

impl AnthropicBackend {
    pub fn new(cfg: &BackendConfig) -> Self {
        let url = format!("{}/messages", cfg.base_url.trim_end_matches('/'));
        AnthropicBackend {
            upstream: Arc::new(Upstream::new(
                url,
                request::headers(cfg),
                cfg.timeout,
                LIMITS,
                types::error_message,
            )),
            prompt_caching: cfg.prompt_caching,
        }
    }

    /// The HTTP agent (its config is inspected by tests: proxy, timeouts).
    pub fn agent(&self) -> &ureq::Agent {
        self.upstream.agent()
    }

    /// One Messages API call; in stream mode text deltas go to `sink` as they arrive.
    fn call(
        &self,
        body: &Value,
        stream: bool,
        deadline: Instant,
        sink: &mut dyn TurnSink,
    ) -> Result<Reply, Error> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::Protocol(format!("cannot encode request: {e}")))?;
        if stream {
            let mut machine = stream::StreamMachine::new();
            return self.upstream.stream(&bytes, deadline, &mut machine, sink);
        }
        Reply::from_body(&self.upstream.call(&bytes, deadline)?)
    }
}

impl Backend for AnthropicBackend {
    fn turn(&self, req: &TurnRequest<'_>, sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        let mut body = request::build(req, self.prompt_caching);
        let mut turn: Option<Turn> = None;
        for attempt in 0..=MAX_PAUSE_CONTINUATIONS {
            let reply = self.call(&body, req.stream, req.deadline, sink)?;
            let part = reply.to_turn();
            match turn.as_mut() {
                Some(acc) => response::merge_turns(acc, part),
                None => turn = Some(part),
            }
            if !reply.paused() {
                break;
            }
            if attempt == MAX_PAUSE_CONTINUATIONS {
                log::warn!(
                    "anthropic: still paused after {MAX_PAUSE_CONTINUATIONS} continuations; ending the turn"
                );
                break;
            }
            // "pause_turn": send the paused content back as the assistant turn and go on.
            if let Some(Value::Array(msgs)) = body.get_mut("messages") {
                messages::append_assistant(msgs, &reply.content);
            }
        }
        turn.ok_or_else(|| Error::Protocol("no response".to_string()))
    }
}
