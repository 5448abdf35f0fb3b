//! `POST /v1/completions`, the legacy completions API (LlamaIndex `OpenAILike` with its default
//! `is_chat_model=False`, `litellm.text_completion`, the SDKs' `completions.create`).
//!
//! The prompt becomes one user message to the assistant (its system prompt applies) and the
//! whole tool loop runs as for chat completions (`Gateway::run_completion`); the answer is a
//! `text_completion` object, or a stream of `text_completion` events. The prompt is a string or
//! an array of exactly one string. Features that have no meaning for an assistant are refused
//! with a 400 naming the field: `echo: true`, `logprobs` (a number above 0 or `true`),
//! `suffix` (a non-empty string), `best_of > 1`, `n > 1`, and token-array prompts. Other
//! parameters (`max_tokens`, `temperature`, `stop`, `seed`, `user`, …) pass to the upstream as
//! for chat.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::chat::{Flavor, RequestMeta};
use super::decode;
use super::reply::send_error;
use super::routes::{Gateway, Served, cors_response_headers};
use crate::api::openai::{ChatRequest, Message, Role, StreamOptions};
use crate::app::Snapshot;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{Request, Responder};

/// The legacy request body: typed where we read it, the rest passed on.
#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    #[serde(default)]
    prompt: Value,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl Gateway {
    pub(super) fn completions(
        &self,
        snap: &Snapshot,
        req: &Request,
        resp: &mut Responder<'_>,
        request_id: &str,
        cors_origin: Option<&str>,
        caller: &Caller,
    ) -> Served {
        let decoded: Result<CompletionRequest, ApiError> =
            decode::request_body(&req.body, snap.config.server.max_body_bytes);
        match decoded.and_then(to_chat) {
            Ok(chat) => {
                let meta = RequestMeta {
                    request_id,
                    cors_origin,
                    caller,
                };
                self.run_completion(snap, chat, resp, &meta, Flavor::Text)
            }
            Err(e) => {
                let mut h: Vec<(&str, &str)> = vec![("X-Request-Id", request_id)];
                let cors = cors_origin.map(cors_response_headers).unwrap_or_default();
                h.extend(cors.iter().map(|(k, v)| (*k, v.as_str())));
                Served {
                    status: send_error(resp, &h, &e),
                    ..Served::default()
                }
            }
        }
    }
}

/// The legacy request as a chat request of one user message.
fn to_chat(r: CompletionRequest) -> Result<ChatRequest, ApiError> {
    let refuse = |field: &str, why: &str| {
        Err(ApiError::bad_request(format!(
            "'{field}' is not supported by this gateway's /v1/completions ({why})"
        ))
        .with_param(field))
    };
    let mut rest = r.rest;
    if rest.get("echo").is_some_and(|v| v == &json!(true)) {
        return refuse(
            "echo",
            "the answer comes from an assistant, not a continuation",
        );
    }
    if let Some(v) = rest.get("logprobs")
        && (v == &json!(true) || v.as_u64().is_some_and(|n| n > 0))
    {
        return refuse(
            "logprobs",
            "an assistant's answer has no token log-probabilities",
        );
    }
    if rest
        .get("suffix")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return refuse("suffix", "insertion is not supported");
    }
    if rest
        .get("best_of")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return refuse("best_of", "one answer per request");
    }
    if rest.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return refuse("n", "one answer per request");
    }
    let prompt = match r.prompt {
        Value::String(s) => s,
        Value::Array(items) => match items.as_slice() {
            [Value::String(s)] => s.clone(),
            [] => return refuse("prompt", "it must not be empty"),
            [Value::String(_), ..] => return refuse("prompt", "send one prompt per request"),
            _ => return refuse("prompt", "token arrays are not supported; send text"),
        },
        Value::Null => {
            return Err(
                ApiError::bad_request("missing required parameter: 'prompt'").with_param("prompt"),
            );
        }
        _ => return refuse("prompt", "it must be a string"),
    };
    // Fields of the legacy API with no chat counterpart; their neutral values are dropped.
    for k in ["echo", "logprobs", "suffix", "best_of", "n"] {
        rest.remove(k);
    }
    // Never tools or a tool choice from here: the legacy API has none.
    for k in [
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "messages",
    ] {
        rest.remove(k);
    }
    Ok(ChatRequest {
        model: r.model,
        messages: vec![Message::text(Role::User, prompt)],
        stream: r.stream,
        stream_options: r.stream_options,
        tools: None,
        tool_choice: None,
        n: None,
        rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<ChatRequest, ApiError> {
        to_chat(serde_json::from_value(body).unwrap())
    }

    #[test]
    fn a_prompt_becomes_one_user_message_and_parameters_pass_on() {
        let c = chat(
            json!({"model": "m", "prompt": ["héllo"], "max_tokens": 5, "echo": false,
            "logprobs": null, "best_of": 1, "suffix": ""}),
        )
        .unwrap();
        assert_eq!(c.messages.len(), 1);
        assert_eq!(c.messages[0].text_content(), "héllo");
        assert_eq!(c.rest.get("max_tokens"), Some(&json!(5)));
        for k in ["echo", "logprobs", "best_of", "suffix", "prompt"] {
            assert!(!c.rest.contains_key(k), "{k}");
        }
    }

    #[test]
    fn unsupported_features_name_their_field() {
        for (body, field) in [
            (json!({"model": "m", "prompt": "x", "echo": true}), "echo"),
            (
                json!({"model": "m", "prompt": "x", "logprobs": 2}),
                "logprobs",
            ),
            (
                json!({"model": "m", "prompt": "x", "suffix": "end"}),
                "suffix",
            ),
            (
                json!({"model": "m", "prompt": "x", "best_of": 3}),
                "best_of",
            ),
            (json!({"model": "m", "prompt": "x", "n": 2}), "n"),
            (json!({"model": "m", "prompt": [1, 2, 3]}), "prompt"),
            (json!({"model": "m", "prompt": ["a", "b"]}), "prompt"),
            (json!({"model": "m"}), "prompt"),
        ] {
            let e = chat(body).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.param.as_deref(), Some(field), "{}", e.message);
        }
    }
}
