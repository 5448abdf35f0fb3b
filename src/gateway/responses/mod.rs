//! The OpenAI Responses API on top of the same assistants and tool loop as chat completions:
//! `POST /v1/responses`, `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`.
//!
//! A request is translated into a chat request (`input`: the items → messages, `instructions` →
//! the leading system message, function tools, `tool_choice`, `text.format` →
//! `response_format`, `reasoning.effort` → `reasoning_effort`, `max_output_tokens` →
//! `max_completion_tokens`) and prepared by [`agent::prepare`], so parameters, the system
//! prompt rule and client tools behave exactly as in chat completions. The loop runs with an
//! [`output::Builder`] as its sink: every MCP tool call it runs becomes an `mcp_call` output
//! item, the text a `message` item, client tool calls `function_call` items; `stream: true`
//! writes the semantic events as they happen ([`stream`]).
//!
//! Finished responses are kept in the bounded per-process [`store::Store`] (unless `store:
//! false`) with their whole conversation, so `previous_response_id` continues it and
//! `item_reference` input items resolve to stored items; entries are visible only to the
//! credentials that created them. Runs on the HTTP worker thread that owns
//! the request, like chat completions.

pub mod input;
pub mod object;
pub mod output;
pub mod store;
pub mod stream;
mod translate;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::agent::{self, LoopError, Run};
use crate::api::responses::{Input, ResponsesRequest};
use crate::app::Snapshot;
use crate::auth::Caller;
use crate::cancel::Cancel;
use crate::clock::unix_now;
use crate::error::ApiError;
use crate::gateway::decode;
use crate::gateway::reply::{headers_ref, send_error, send_json};
use crate::gateway::run::{Metered, ended, log_failure, refresh_degraded, run_headers};
use crate::http::{Request, Responder};
use crate::metrics::{Metrics, Status};
use crate::tools::ToolSet;
use object::Echo;
use output::Builder;
use store::{Item, Store, Stored};
use stream::{Quiet, SseWriter};
use translate::translate;

/// Response header listing `include` values that were ignored.
pub const IGNORED_INCLUDE_HEADER: &str = "X-Aiproxy-Ignored-Include";

/// What the access line and the metrics report about a request.
#[derive(Debug, Default)]
pub struct Served {
    pub status: Status,
    pub assistant: Option<String>,
    pub tool_calls: u32,
    pub rounds: u32,
}

/// What a Responses request needs from the gateway.
pub struct Ctx<'a> {
    pub snap: &'a Snapshot,
    pub metrics: &'a Arc<Metrics>,
    pub store: &'a Store,
    pub request_id: &'a str,
    /// An allowed browser origin: the response carries its CORS headers.
    pub cors_origin: Option<&'a str>,
    /// Who asks: the assistant scope and limits of its API key.
    pub caller: &'a Caller,
}

/// Whether a path belongs to this API.
pub fn owns(path: &str) -> bool {
    path == "/v1/responses" || path.starts_with("/v1/responses/")
}

/// Serve `/v1/responses[/{id}]` (auth already checked).
pub fn handle(ctx: &Ctx<'_>, req: &Request, resp: &mut Responder<'_>) -> Served {
    let id_header = [("X-Request-Id", ctx.request_id)];
    let mut served = Served::default();
    let id = req.path.strip_prefix("/v1/responses/").unwrap_or("");
    served.status = match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/responses") => return create(ctx, req, resp),
        (_, "/v1/responses") => send_error(resp, &id_header, &method_not_allowed(req)),
        ("GET" | "HEAD", _) if valid_id(id) => match ctx.store.get(id, owner_of(req, ctx.snap)) {
            Some(s) => send_text(resp, &id_header, &s.response),
            None => send_error(resp, &id_header, &not_found(id)),
        },
        ("DELETE", _) if valid_id(id) => {
            if ctx.store.delete(id, owner_of(req, ctx.snap)) {
                let body = json!({"id": id, "object": "response", "deleted": true});
                send_json(resp, 200, &id_header, &body)
            } else {
                send_error(resp, &id_header, &not_found(id))
            }
        }
        ("GET" | "HEAD" | "DELETE", _) => send_error(resp, &id_header, &not_found(id)),
        _ => send_error(resp, &id_header, &method_not_allowed(req)),
    };
    served
}

/// A 200 with a JSON body already serialized.
fn send_text(resp: &mut Responder<'_>, headers: &[(&str, &str)], body: &str) -> Status {
    let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    // A failed write means the client left; there is nobody to tell.
    let _ = resp.send(200, &h, body.as_bytes());
    Status::Http(200)
}

fn method_not_allowed(req: &Request) -> ApiError {
    ApiError::method_not_allowed(format!("method {} not allowed here", req.method))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(128).collect();
    ApiError::not_found(format!(
        "response '{shown}' not found (responses are kept in memory by the replica that created \
         them, for a limited time)"
    ))
}

fn previous_not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(128).collect();
    ApiError::bad_request(format!(
        "previous response '{shown}' not found: it was never stored here, was deleted, or was \
         evicted. Responses are kept in memory per aiproxy replica for a limited time; send the \
         full conversation as input instead, or route a conversation's requests to the same \
         replica"
    ))
    .with_param("previous_response_id")
    .with_code("previous_response_not_found")
}

/// `POST /v1/responses`.
fn create(ctx: &Ctx<'_>, req: &Request, resp: &mut Responder<'_>) -> Served {
    let mut served = Served::default();
    let id_header = [("X-Request-Id", ctx.request_id)];
    let mut r = match parse_body(&req.body, ctx.snap.config.server.max_body_bytes) {
        Ok(r) => r,
        Err(e) => {
            served.status = send_error(resp, &id_header, &e);
            return served;
        }
    };
    let visible = ctx.snap.config.assistant(&r.model);
    let Some(assistant) = visible.filter(|a| ctx.caller.may_use(&a.name)) else {
        served.status = send_error(resp, &id_header, &ApiError::model_not_found(&r.model));
        return served;
    };
    served.assistant = Some(assistant.name.clone());
    let Some(backend) = ctx.snap.backends.get(&assistant.backend) else {
        let e = ApiError::internal(format!("assistant '{}' has no backend", assistant.name));
        served.status = send_error(resp, &id_header, &e);
        return served;
    };
    let owner = owner_of(req, ctx.snap);
    let previous = match r.previous_response_id.as_deref() {
        None | Some("") => None,
        Some(id) => match ctx.store.get(id, owner) {
            Some(s) => Some(s),
            None => {
                served.status = send_error(resp, &id_header, &previous_not_found(id));
                return served;
            }
        },
    };
    if let Some(Input::Items(items)) = r.input.as_mut() {
        let known = previous.as_ref().map_or(&[][..], |p| p.items.as_slice());
        let find = |id: &str| ctx.store.find_item(id, owner);
        if let Err(e) = input::resolve_references(items, known, &find) {
            served.status = send_error(resp, &id_header, &e);
            return served;
        }
    }

    let servers: Vec<_> = assistant
        .mcp_servers
        .iter()
        .filter_map(|n| ctx.snap.mcp.get(n).cloned())
        .collect();
    let tools = ToolSet::build(&servers, &assistant.allowed_tools, &assistant.denied_tools)
        .with_metrics(Arc::clone(ctx.metrics))
        .with_max_calls(assistant.max_tool_calls_per_turn)
        .with_audit(ctx.snap.audit.clone(), || {
            crate::gateway::chat::who(ctx.request_id, ctx.caller, &assistant.name)
        });
    let origins: HashMap<String, (String, String)> = tools
        .tools
        .iter()
        .filter_map(|t| {
            let (s, n) = tools.origin(&t.function.name)?;
            Some((t.function.name.clone(), (s.to_string(), n.to_string())))
        })
        .collect();

    let translated = match translate(&r, previous.as_ref(), &origins) {
        Ok(t) => t,
        Err(e) => {
            served.status = send_error(resp, &id_header, &e);
            return served;
        }
    };
    let prepared = match agent::prepare(translated.chat, assistant) {
        Ok(p) => p,
        Err(e) => {
            served.status = send_error(resp, &id_header, &e);
            return served;
        }
    };

    let mut headers = run_headers(ctx.request_id, &tools, ctx.cors_origin);
    if !translated.ignored_include.is_empty() {
        headers.push((
            IGNORED_INCLUDE_HEADER.to_string(),
            translated.ignored_include.join(","),
        ));
    }
    let echo = Echo::new(
        format!("resp_{}", unique_id()),
        unix_now(),
        assistant.name.clone(),
        &r,
        &prepared.client_tools,
        assistant,
    );
    let cancel = Cancel::new();
    let metered = Metered {
        inner: backend.as_ref(),
        name: &assistant.backend,
        metrics: ctx.metrics,
        caller: ctx.caller,
    };
    let run = Run {
        assistant,
        backend: &metered,
        tools: &tools,
        cancel: &cancel,
        deadline: Instant::now() + ctx.snap.config.server.request_timeout,
    };
    let show_mcp = assistant.responses_mcp_items;
    // This request's input items, for the store (the request needs them no more).
    let keep = r.store.unwrap_or(true).then(|| {
        let input: Vec<Item> = match r.input.take() {
            Some(Input::Text(t)) => vec![Item::UserText(t)],
            Some(Input::Items(items)) => items.into_iter().map(Item::Input).collect(),
            None => Vec::new(),
        };
        (input, previous)
    });
    // Keeps the finished response; hands its text back for the reply, with the entries the
    // store evicted for it (freed once the reply is out: off the client's wait).
    let remember = |done: output::Done| -> (Arc<str>, Option<store::Evicted>) {
        let response: Arc<str> = Arc::from(done.response);
        let mut evicted = None;
        if let Some((input_items, previous)) = keep {
            // The earlier items are shared, not copied; only the new ones are measured.
            let (mut items, mut items_bytes) = match &previous {
                Some(p) => (p.items.as_ref().clone(), p.items_bytes),
                None => (Vec::new(), 0),
            };
            items.reserve(input_items.len() + done.items.len());
            let output = done.items.into_iter().map(Item::Output);
            for item in input_items.into_iter().chain(output) {
                items_bytes += item.json_len();
                items.push(Arc::new(item));
            }
            let stored = Stored {
                response: Arc::clone(&response),
                items: Arc::new(items),
                items_bytes,
            };
            evicted = ctx.store.put(&echo.id, owner, stored);
            if evicted.is_none() {
                log::warn!(
                    "{} response {} too large for the response store; not kept",
                    ctx.request_id,
                    echo.id
                );
            }
        }
        (response, evicted)
    };

    if prepared.stream {
        let writer = SseWriter::new(resp, headers.clone());
        let mut builder = Builder::new(&echo, writer, &origins, show_mcp);
        let result = run.run(&prepared, &mut builder);
        served.status = Status::Http(200);
        match result {
            Ok(out) => {
                served.tool_calls = out.tool_calls;
                served.rounds = out.rounds;
                match builder.finish(&out) {
                    Ok((done, writer)) => {
                        let (_, evicted) = remember(done);
                        if writer.close().is_err() {
                            served.status = Status::ClientGone;
                        }
                        drop(evicted);
                    }
                    Err(_) => served.status = Status::ClientGone,
                }
            }
            Err(e) => {
                let api = ApiError::from(&e);
                log_failure(ctx.request_id, &e, &api);
                let (writer, events) = builder.fail(&api);
                match events {
                    // Nobody to tell.
                    Some(_) if matches!(e, LoopError::Cancelled) => {}
                    Some((error, failed)) => writer.fail_started(&error, &failed),
                    None => {
                        if let Some(resp) = writer.into_unstarted() {
                            served.status = send_error(resp, &headers_ref(&headers), &api);
                        }
                    }
                }
                served.status = ended(&e, served.status);
            }
        }
        return served;
    }

    let quiet = Quiet(|| resp.client_gone());
    let mut builder = Builder::new(&echo, quiet, &origins, show_mcp);
    let result = run.run(&prepared, &mut builder);
    let finished = match result {
        Ok(out) => {
            served.tool_calls = out.tool_calls;
            served.rounds = out.rounds;
            builder
                .finish(&out)
                .map(|(done, _)| done)
                .map_err(|_| LoopError::Cancelled)
        }
        Err(e) => Err(e),
    };
    refresh_degraded(&mut headers, &tools);
    let hdrs = headers_ref(&headers);
    served.status = match finished {
        Ok(done) => {
            let (text, evicted) = remember(done);
            let status = send_text(resp, &hdrs, &text);
            drop(evicted);
            status
        }
        Err(e) => {
            let api = ApiError::from(&e);
            log_failure(ctx.request_id, &e, &api);
            ended(&e, send_error(resp, &hdrs, &api))
        }
    };
    served
}

/// Decode the body with messages that say what is wrong (400, never 500), within the decode
/// limits every endpoint shares ([`decode::bounded`]): straight into the typed request; only a
/// body that does not fit is decoded again, as a `Value`, to name the field at fault.
fn parse_body(body: &[u8], max_body_bytes: usize) -> Result<ResponsesRequest, ApiError> {
    decode::bounded(body, max_body_bytes, |text| {
        serde_json::from_str::<ResponsesRequest>(text).map_err(|e| diagnose(text, &e))
    })
}

fn diagnose(text: &str, typed: &serde_json::Error) -> ApiError {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return ApiError::bad_request(format!("invalid request: {typed}"));
    };
    let Some(obj) = value.as_object() else {
        return ApiError::bad_request("request body must be a JSON object");
    };
    if obj.get("model").is_none_or(Value::is_null) {
        return ApiError::bad_request("missing required parameter: 'model'").with_param("model");
    }
    // Name the field at fault: decode each field alone beside a valid model.
    let culprit = obj.iter().find(|(k, v)| {
        let mut probe = Map::new();
        probe.insert("model".into(), json!("m"));
        probe.insert((*k).clone(), (*v).clone());
        serde_json::from_value::<ResponsesRequest>(Value::Object(probe)).is_err()
    });
    match culprit {
        Some((k, _)) => {
            ApiError::bad_request(format!("invalid request: {k}: {typed}")).with_param(k.clone())
        }
        None => ApiError::bad_request(format!("invalid request: {typed}")),
    }
}

/// The owner tag of stored responses: a keyed hash of the caller's credentials, so one key's
/// responses are invisible to another.
fn owner_of(req: &Request, snap: &Snapshot) -> u64 {
    let mut h = keys().build_hasher();
    h.write_u8(1);
    for name in ["Authorization", snap.config.apiman.api_key_header.as_str()] {
        h.write(req.header(name).unwrap_or("").as_bytes());
        h.write_u8(0);
    }
    if let Some(name) = &snap.config.apiman.header {
        h.write(req.header(name).unwrap_or("").as_bytes());
    }
    h.finish()
}

fn keys() -> &'static RandomState {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// 32 hex digits nobody can predict: a counter and the clock under a keyed hash (SipHash with
/// per-process random keys), so stored responses cannot be found by guessing ids.
pub fn unique_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = crate::clock::unix_nanos();
    let mut out = String::with_capacity(32);
    for salt in [2u8, 3] {
        let mut h = keys().build_hasher();
        h.write_u8(salt);
        h.write_u64(n);
        h.write_u64(t);
        let x = h.finish();
        out.extend(
            (0..16)
                .rev()
                .map(|i| HEX[((x >> (4 * i)) & 0xf) as usize] as char),
        );
    }
    out
}
