//! Routing and the OpenAI API surface (SPEC §4): `GET /health`, `GET /v1/models[/{id}]`,
//! `POST /v1/chat/completions`. Every error leaves here OpenAI-shaped; this is the edge where
//! domain errors are mapped and logged once, with one access line per request.
//!
//! Runs on the HTTP worker thread that owns the request; a chat completion runs its whole tool
//! loop here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use crate::admin;
use crate::agent::{self, Collect, LoopError, Outcome, Run};
use crate::api::openai::ChatRequest;
use crate::app::{App, Snapshot, unix_now};
use crate::cancel::Cancel;
use crate::error::ApiError;
use crate::secret::constant_time_eq;
use crate::server::http::{Handler, Request, Responder};
use crate::server::sse::ChunkWriter;
use crate::tools::ToolSet;

pub struct Gateway {
    app: Arc<App>,
}

impl Gateway {
    pub fn new(app: Arc<App>) -> Gateway {
        Gateway { app }
    }
}

/// What the access line reports about a request.
#[derive(Default)]
struct Served {
    status: u16,
    assistant: Option<String>,
    tool_calls: u32,
}

impl Handler for Gateway {
    fn handle(&self, req: Request, resp: &mut Responder<'_>) {
        let started = Instant::now();
        let request_id = request_id(&req);
        let mut served = Served::default();
        let id_header = [("X-Request-Id", request_id.as_str())];
        match (req.method.as_str(), req.path.as_str()) {
            ("GET" | "HEAD", "/health") => {
                served.status = send_json(resp, 200, &id_header, &json!({"status": "ok"}));
            }
            ("GET" | "HEAD", "/v1/models") => {
                let snap = self.app.snapshot();
                let data: Vec<Value> = snap
                    .config
                    .assistants
                    .iter()
                    .map(|a| model_json(&a.name, &snap))
                    .collect();
                served.status = send_json(
                    resp,
                    200,
                    &id_header,
                    &json!({"object": "list", "data": data}),
                );
            }
            ("GET" | "HEAD", path) if path.starts_with("/v1/models/") => {
                let id = &path["/v1/models/".len()..];
                let snap = self.app.snapshot();
                served.status = match snap.config.assistant(id) {
                    Some(a) => send_json(resp, 200, &id_header, &model_json(&a.name, &snap)),
                    None => send_error(resp, &id_header, &ApiError::model_not_found(id)),
                };
            }
            ("POST", "/v1/chat/completions") => {
                served = self.chat(&req, resp, &request_id);
            }
            (_, path) if path == "/admin" || path.starts_with("/admin/") => {
                served.status = match self.admin_allowed(&req) {
                    Ok(()) => {
                        let reply = admin::handle(&self.app, &req);
                        send_json(resp, reply.status, &id_header, &reply.body)
                    }
                    Err(e) => send_error(resp, &id_header, &e),
                };
            }
            (_, "/health" | "/v1/models" | "/v1/chat/completions") => {
                let e = ApiError::new(
                    405,
                    "invalid_request_error",
                    format!("method {} not allowed here", req.method),
                );
                served.status = send_error(resp, &id_header, &e);
            }
            (_, path) => {
                let e = ApiError::not_found(format!("no route for {} {path}", req.method));
                served.status = send_error(resp, &id_header, &e);
            }
        }
        log::info!(
            "{request_id} {} {} assistant={} status={} duration_ms={} tool_calls={}",
            req.method,
            req.path,
            served.assistant.as_deref().unwrap_or("-"),
            served.status,
            started.elapsed().as_millis(),
            served.tool_calls,
        );
    }
}

impl Gateway {
    /// `/admin/*`: `ADMIN_API_KEY` as a Bearer token (constant time); without it, loopback
    /// peers only (SPEC §8).
    fn admin_allowed(&self, req: &Request) -> Result<(), ApiError> {
        match self.app.env_var("ADMIN_API_KEY").filter(|k| !k.is_empty()) {
            Some(key) => {
                let given = req
                    .header("Authorization")
                    .and_then(|h| {
                        h.get(..7)
                            .filter(|p| p.eq_ignore_ascii_case("bearer "))
                            .map(|_| &h[7..])
                    })
                    .unwrap_or("");
                if constant_time_eq(given.trim().as_bytes(), key.as_bytes()) {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        401,
                        "authentication_error",
                        "invalid or missing admin key",
                    ))
                }
            }
            None if is_loopback(req.peer.ip()) => Ok(()),
            None => Err(ApiError::new(
                403,
                "permission_error",
                "the admin API answers loopback clients only; set ADMIN_API_KEY to use it remotely",
            )),
        }
    }

    fn chat(&self, req: &Request, resp: &mut Responder<'_>, request_id: &str) -> Served {
        let mut served = Served::default();
        let id_header = [("X-Request-Id", request_id)];
        let chat: ChatRequest = match parse_body(&req.body) {
            Ok(c) => c,
            Err(e) => {
                served.status = send_error(resp, &id_header, &e);
                return served;
            }
        };
        let snap = self.app.snapshot();
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
        let tools = ToolSet::build(&servers, &assistant.allowed_tools, &assistant.denied_tools);
        let headers = run_headers(request_id, &tools);
        let cancel = Cancel::new();
        let run = Run {
            assistant,
            backend: backend.as_ref(),
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
            served.status = 200;
            match result {
                Ok(out) => {
                    served.tool_calls = out.tool_calls;
                    let usage = prepared.include_usage.then_some(&out.usage);
                    if writer
                        .finish(&out.client_tool_calls, out.finish_reason, usage)
                        .is_err()
                    {
                        served.status = 499;
                    }
                }
                Err(e) => {
                    let api = ApiError::from(&e);
                    log_failure(request_id, &e, &api);
                    if let Some((resp, api)) = writer.fail(&api) {
                        served.status = send_error(resp, &headers_ref(&headers), &api);
                    } else if matches!(e, LoopError::Cancelled) {
                        served.status = 499;
                    }
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
                send_error(resp, &hdrs, &api)
            }
        };
        served
    }
}

fn run_headers(request_id: &str, tools: &ToolSet) -> Vec<(String, String)> {
    let mut h = vec![("X-Request-Id".to_string(), request_id.to_string())];
    if !tools.degraded.is_empty() {
        let names: Vec<&str> = tools.degraded.iter().map(|(n, _)| n.as_str()).collect();
        h.push(("X-Aiproxy-Degraded".to_string(), names.join(",")));
    }
    h
}

fn headers_ref(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn log_failure(request_id: &str, e: &LoopError, api: &ApiError) {
    match e {
        LoopError::Cancelled => log::info!("{request_id} client disconnected; loop stopped"),
        _ => log::warn!(
            "{request_id} request failed: {} ({})",
            api.message,
            api.status
        ),
    }
}

/// Decode the request body with messages that say what is wrong (SPEC §4: 400, never 500).
fn parse_body(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("request body is not valid UTF-8"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    for field in ["model", "messages"] {
        if value.get(field).is_none() {
            return Err(
                ApiError::bad_request(format!("missing required parameter: '{field}'"))
                    .with_param(field),
            );
        }
    }
    serde_json::from_value(value).map_err(|e| {
        // Name the field at fault: serde's message alone does not say where it is.
        let reparsed = serde_json::from_str(text).unwrap_or(Value::Null);
        match crate::api::diagnose::locate(&reparsed) {
            Some((path, msg)) if !path.is_empty() => {
                ApiError::bad_request(format!("invalid request: {path}: {msg}")).with_param(path)
            }
            _ => ApiError::bad_request(format!("invalid request: {e}")),
        }
    })
}

fn model_json(name: &str, snap: &Snapshot) -> Value {
    json!({"id": name, "object": "model", "created": snap.loaded_at, "owned_by": "aiproxy"})
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

fn send_json(resp: &mut Responder<'_>, status: u16, headers: &[(&str, &str)], body: &Value) -> u16 {
    let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    // A failed write means the client left; there is nobody to tell.
    let _ = resp.send(status, &h, body.to_string().as_bytes());
    status
}

fn send_error(resp: &mut Responder<'_>, headers: &[(&str, &str)], e: &ApiError) -> u16 {
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if let Some(ra) = &e.retry_after {
        h.push(("Retry-After", ra.as_str()));
    }
    if e.status == 401 {
        h.push(("WWW-Authenticate", "Bearer"));
    }
    // 499 is for our logs only: the client is gone.
    let status = if e.status == 499 { 500 } else { e.status };
    send_json(resp, status, &h, &e.body());
    e.status
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A short unique id: process start time mixed with a counter.
fn unique_hex() -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{:012x}{:06x}", t & 0xffff_ffff_ffff, n & 0xff_ffff)
}

fn completion_id() -> String {
    format!("chatcmpl-{}", unique_hex())
}

/// The client's `X-Request-Id` when it is short and printable, else a new one.
fn request_id(req: &Request) -> String {
    match req.header("X-Request-Id") {
        Some(id)
            if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id.to_string()
        }
        _ => format!("req-{}", unique_hex()),
    }
}

/// 127.0.0.0/8, ::1 and IPv4-mapped loopback.
fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
