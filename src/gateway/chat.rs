//! `POST /v1/chat/completions`: decode and check the request, run the tool loop for the
//! assistant (on this worker thread), and answer one `chat.completion` or a stream of
//! `chat.completion.chunk` events ([`super::sse`]).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::reply::{headers_ref, send_error, send_json};
use super::routes::{Gateway, Served, unique_hex};
use super::run::{Metered, ended, log_failure, run_headers};
use crate::agent::{self, Collect, Outcome, Run};
use crate::api::openai::ChatRequest;
use crate::app::Snapshot;
use crate::cancel::Cancel;
use crate::clock::unix_now;
use crate::error::ApiError;
use crate::gateway::decode;
use crate::gateway::sse::ChunkWriter;
use crate::http::{Request, Responder};
use crate::metrics::Status;
use crate::tools::ToolSet;

impl Gateway {
    pub(super) fn chat(
        &self,
        snap: &Snapshot,
        req: &Request,
        resp: &mut Responder<'_>,
        request_id: &str,
        cors_origin: Option<&str>,
    ) -> Served {
        let mut served = Served::default();
        let id_header = [("X-Request-Id", request_id)];
        let chat: ChatRequest =
            match decode::chat_request(&req.body, snap.config.server.max_body_bytes) {
                Ok(c) => c,
                Err(e) => {
                    served.status = send_error(resp, &id_header, &e);
                    return served;
                }
            };
        let Some(assistant) = snap.config.assistant(&chat.model) else {
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
            .with_max_calls(assistant.max_tool_calls_per_turn);
        let headers = run_headers(request_id, &tools, cors_origin);
        let cancel = Cancel::new();
        let metered = Metered {
            inner: backend.as_ref(),
            name: &assistant.backend,
            metrics: &self.metrics,
        };
        let run = Run {
            assistant,
            backend: &metered,
            tools: &tools,
            cancel: &cancel,
            deadline: Instant::now() + snap.config.server.request_timeout,
        };
        let completion_id = completion_id();
        let created = unix_now();

        if prepared.stream {
            let mut writer = ChunkWriter::new(
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
        let hdrs = headers_ref(&headers);
        served.status = match result {
            Ok(out) => {
                served.tool_calls = out.tool_calls;
                served.rounds = out.rounds;
                send_json(
                    resp,
                    200,
                    &hdrs,
                    &completion_json(&completion_id, created, &assistant.name, &out),
                )
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

fn completion_json(id: &str, created: u64, model: &str, out: &Outcome) -> Value {
    let mut message = json!({"role": "assistant", "content": out.content, "refusal": null});
    if !out.client_tool_calls.is_empty() {
        message["tool_calls"] = serde_json::to_value(&out.client_tool_calls).unwrap_or(Value::Null);
        if out.content.is_empty() {
            message["content"] = Value::Null;
        }
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": out.finish_reason.as_str()}],
        "usage": out.usage.to_json(),
    })
}

fn completion_id() -> String {
    format!("chatcmpl-{}", unique_hex())
}
