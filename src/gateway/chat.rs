//! `POST /v1/chat/completions`: decode and check the request, run the tool loop for the
//! assistant (on this worker thread), and answer one `chat.completion` or a stream of
//! `chat.completion.chunk` events ([`super::sse`]). `Gateway::run_completion` is shared with
//! the legacy completions endpoint ([`super::completions`]), which answers `text_completion`
//! objects from the same loop.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::decode;
use super::reply::{headers_ref, send_error, send_json};
use super::routes::{Gateway, Served, cors_response_headers, unique_hex};
use super::run::{Metered, ended, log_failure, refresh_degraded, run_headers};
use crate::agent::{self, Collect, Outcome, Run};
use crate::api::openai::{ChatRequest, ToolCall, UsageWire};
use crate::app::Snapshot;
use crate::auth::Caller;
use crate::cancel::Cancel;
use crate::clock::unix_now;
use crate::error::ApiError;
use crate::gateway::sse::ChunkWriter;
use crate::http::{Request, Responder};
use crate::metrics::Status;
use crate::tools::{ToolSet, Who};

impl Gateway {
    pub(super) fn chat(
        &self,
        snap: &Snapshot,
        req: &Request,
        resp: &mut Responder<'_>,
        request_id: &str,
        cors_origin: Option<&str>,
        caller: &Caller,
    ) -> Served {
        let mut served = Served::default();
        // Errors before the run carry the CORS headers too (a browser cannot read them else).
        let cors = cors_origin.map(cors_response_headers).unwrap_or_default();
        let mut id_header: Vec<(&str, &str)> = vec![("X-Request-Id", request_id)];
        id_header.extend(cors.iter().map(|(k, v)| (*k, v.as_str())));
        let chat: ChatRequest =
            match decode::chat_request(&req.body, snap.config.server.max_body_bytes) {
                Ok(c) => c,
                Err(e) => {
                    served.status = send_error(resp, &id_header, &e);
                    return served;
                }
            };
        let meta = RequestMeta {
            request_id,
            cors_origin,
            caller,
        };
        self.run_completion(snap, chat, resp, &meta, Flavor::Chat)
    }

    /// Run the loop for a decoded request and answer it in the given flavor.
    pub(super) fn run_completion(
        &self,
        snap: &Snapshot,
        chat: ChatRequest,
        resp: &mut Responder<'_>,
        meta: &RequestMeta<'_>,
        flavor: Flavor,
    ) -> Served {
        let &RequestMeta {
            request_id,
            cors_origin,
            caller,
        } = meta;
        let mut served = Served::default();
        // Errors before the run carry the CORS headers too (a browser cannot read them else).
        let cors = cors_origin.map(cors_response_headers).unwrap_or_default();
        let mut id_header: Vec<(&str, &str)> = vec![("X-Request-Id", request_id)];
        id_header.extend(cors.iter().map(|(k, v)| (*k, v.as_str())));
        // Out of the key's scope reads exactly like an unknown model.
        let visible = snap.config.assistant(&chat.model);
        let Some(assistant) = visible.filter(|a| caller.may_use(&a.name)) else {
            served.status = send_error(resp, &id_header, &ApiError::model_not_found(&chat.model));
            return served;
        };
        served.assistant = Some(assistant.name.clone());
        let Some(backend) = snap.backends.get(&assistant.backend) else {
            let e = ApiError::internal(format!("assistant '{}' has no backend", assistant.name));
            served.status = send_error(resp, &id_header, &e);
            return served;
        };
        let prepared = match agent::prepare(chat, assistant) {
            Ok(p) => p,
            Err(e) => {
                served.status = send_error(resp, &id_header, &e);
                return served;
            }
        };
        let servers: Vec<_> = assistant
            .mcp_servers
            .iter()
            .filter_map(|n| snap.mcp.get(n).cloned())
            .collect();
        let tools = ToolSet::build(&servers, &assistant.allowed_tools, &assistant.denied_tools)
            .with_metrics(Arc::clone(&self.metrics))
            .with_max_calls(assistant.max_tool_calls_per_turn)
            .with_audit(snap.audit.clone(), || {
                who(request_id, caller, &assistant.name)
            });
        let mut headers = run_headers(request_id, &tools, cors_origin);
        let cancel = Cancel::new();
        let metered = Metered {
            inner: backend.as_ref(),
            name: &assistant.backend,
            metrics: &self.metrics,
            caller,
        };
        let run = Run {
            assistant,
            backend: &metered,
            tools: &tools,
            cancel: &cancel,
            deadline: Instant::now() + snap.config.server.request_timeout,
        };
        let completion_id = flavor.new_id();
        let created = unix_now();

        if prepared.stream {
            let new_writer = match flavor {
                Flavor::Chat => ChunkWriter::new,
                Flavor::Text => ChunkWriter::text_completion,
            };
            let mut writer = new_writer(
                resp,
                &completion_id,
                created,
                &assistant.name,
                headers.clone(),
            );
            let result = run.run(&prepared, &mut writer);
            served.status = Status::Http(200);
            match result {
                Ok(out) => {
                    served.tool_calls = out.tool_calls;
                    served.rounds = out.rounds;
                    let usage = prepared.include_usage.then_some(&out.usage);
                    if writer
                        .finish(&out.client_tool_calls, out.finish_reason, usage)
                        .is_err()
                    {
                        served.status = Status::ClientGone;
                    }
                }
                Err(e) => {
                    let api = ApiError::from(&e);
                    log_failure(request_id, &e, &api);
                    if let Some((resp, api)) = writer.fail(&api) {
                        served.status = send_error(resp, &headers_ref(&headers), &api);
                    }
                    served.status = ended(&e, served.status);
                }
            }
            return served;
        }

        let mut sink = Collect {
            client_gone: || resp.client_gone(),
        };
        let result = run.run(&prepared, &mut sink);
        refresh_degraded(&mut headers, &tools);
        let hdrs = headers_ref(&headers);
        served.status = match result {
            Ok(out) => {
                served.tool_calls = out.tool_calls;
                served.rounds = out.rounds;
                let (id, model) = (completion_id.as_str(), assistant.name.as_str());
                match flavor {
                    Flavor::Chat => send_json(
                        resp,
                        200,
                        &hdrs,
                        &chat_completion_body(id, created, model, &out),
                    ),
                    Flavor::Text => send_json(
                        resp,
                        200,
                        &hdrs,
                        &text_completion_body(id, created, model, &out),
                    ),
                }
            }
            Err(e) => {
                let api = ApiError::from(&e);
                log_failure(request_id, &e, &api);
                ended(&e, send_error(resp, &hdrs, &api))
            }
        };
        served
    }
}

/// A chat completion, serialized in place (no `Value` tree per answer); fields in the order a
/// `Value` would print them, so the bytes are as they were (but tool calls, whose members now
/// print in their declared order).
#[derive(Serialize)]
struct Completion<'a, C> {
    choices: [C; 1],
    created: u64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    usage: UsageWire,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    finish_reason: &'static str,
    index: u32,
    logprobs: Option<()>,
    message: ChatMessage<'a>,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    /// `null` when the answer is only tool calls.
    content: Option<&'a str>,
    refusal: Option<()>,
    role: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tool_calls: &'a [ToolCall],
}

/// A legacy completion's one choice: the loop's text as `text`.
#[derive(Serialize)]
struct TextChoice<'a> {
    finish_reason: &'static str,
    index: u32,
    logprobs: Option<()>,
    text: &'a str,
}

fn chat_completion_body<'a>(
    id: &'a str,
    created: u64,
    model: &'a str,
    out: &'a Outcome,
) -> Completion<'a, ChatChoice<'a>> {
    let tool_calls = out.client_tool_calls.as_slice();
    let content =
        (tool_calls.is_empty() || !out.content.is_empty()).then_some(out.content.as_str());
    Completion {
        choices: [ChatChoice {
            finish_reason: out.finish_reason.as_str(),
            index: 0,
            logprobs: None,
            message: ChatMessage {
                content,
                refusal: None,
                role: "assistant",
                tool_calls,
            },
        }],
        created,
        id,
        model,
        object: "chat.completion",
        usage: out.usage.wire(),
    }
}

/// Who asked, for a run: the request id, an allowed browser origin (its CORS headers go on
/// every answer) and the API key's caller (scope, limits, audit name).
#[derive(Clone, Copy)]
pub(super) struct RequestMeta<'a> {
    pub(super) request_id: &'a str,
    pub(super) cors_origin: Option<&'a str>,
    pub(super) caller: &'a Caller,
}

/// The answer's shape: chat completions or legacy `text_completion` objects.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Flavor {
    Chat,
    Text,
}

impl Flavor {
    fn new_id(self) -> String {
        match self {
            Flavor::Chat => format!("chatcmpl-{}", unique_hex()),
            Flavor::Text => format!("cmpl-{}", unique_hex()),
        }
    }
}

/// A legacy completion: the loop's text as the one choice's `text`.
fn text_completion_body<'a>(
    id: &'a str,
    created: u64,
    model: &'a str,
    out: &'a Outcome,
) -> Completion<'a, TextChoice<'a>> {
    Completion {
        choices: [TextChoice {
            finish_reason: out.finish_reason.as_str(),
            index: 0,
            logprobs: None,
            text: &out.content,
        }],
        created,
        id,
        model,
        object: "text_completion",
        usage: out.usage.wire(),
    }
}

/// Who the audit log names for this request's tool calls.
pub(super) fn who(request_id: &str, caller: &Caller, assistant: &str) -> Who {
    Who {
        request_id: request_id.to_string(),
        key: caller.name().map(str::to_string),
        assistant: assistant.to_string(),
    }
}
