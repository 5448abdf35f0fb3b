//! Routing and the OpenAI API surface (docs/api.md): `GET /health` (liveness: the process serves),
//! `GET /ready` (readiness: 503 while draining or while the main pool admits no more requests),
//! `GET /v1/models[/{id}]` (a trailing slash on the list is accepted), `POST
//! /v1/chat/completions` (answered in [`super::chat`]), the legacy `POST /v1/completions`
//! ([`super::completions`]), the Responses API (`/v1/responses[/{id}]`, in
//! [`super::responses`]), plus `/admin/*` and `GET /metrics` behind the admin guard. A 404 for
//! an unknown route names the endpoints served (clients such as pydantic-ai and LangChain JS
//! otherwise report it as "model not found").
//! Every error leaves here OpenAI-shaped; this is the edge where domain errors are mapped and
//! logged once, with one access line per request, and where requests and upstream calls are
//! counted for the metrics. A request whose client went away is reported as such
//! ([`Status::ClientGone`]: `status=client_gone` in the access line, `status="499"` in the
//! metrics), whatever was still written to its socket.
//!
//! One [`Gateway`] serves each listener ([`Listener`]): the main one serves everything above
//! (admin and `/metrics` only with `ADMIN_API_KEY`); the admin listener (`admin.listen`) serves
//! `/admin/*`, `/metrics` and `/health` and answers 404 to the rest (`/ready` too: readiness
//! is the main listener's, where the traffic goes). Paths with dot segments
//! (raw or encoded) are refused with 400 on both, so a proxy that normalises a path cannot
//! route it differently from us. Browser requests: with no `/v1` auth provider configured, a
//! request whose `Origin` is not in `server.cors.allowed_origins` is refused with 403 (a
//! page on any origin could otherwise use an open gateway through a visitor's browser);
//! allowed origins get CORS headers (`Access-Control-Expose-Headers` names `X-Request-Id`,
//! `Retry-After` and `X-Aiproxy-Degraded`) and an answer to their preflight, before auth (a
//! browser sends no credentials with it): methods `GET, POST, DELETE, OPTIONS`, and the
//! headers the browser asked for when they are a plain list of header names (the OpenAI SDKs
//! send `x-stainless-*` ones), else a fixed list that includes `Authorization`, `X-API-Key`
//! and `api-key`.
//!
//! `/v1` requests carry the [`Caller`] auth found (its key's assistant scope filters the
//! models it sees; an out-of-scope model is answered like an unknown one); model requests are
//! admitted against the key's `rpm`/`tpm` before anything else (`keys`; 429 + `Retry-After`).
//!
//! Runs on the HTTP worker thread that owns the request; the endpoints it calls run their whole
//! tool loop there. The control plane never waits for that pool ([`Handler::lane`]): `/health`,
//! `/ready` and `/metrics` go to the server's quick lane, `/admin/*` to its control lane, on
//! both listeners, so probes, scrapes and operators are answered while every chat worker is
//! busy with long streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use super::reply::{send_error, send_json};
use crate::admin;
use crate::app::{App, Snapshot};
use crate::auth::{AdminAuth, Caller, Listener};
use crate::config::BackendKind;
use crate::error::ApiError;
use crate::gateway::responses::{self, store::Store as ResponseStore};
use crate::http::{Handler, Lane, Request, Responder};
use crate::metrics::{Metrics, Route, Status};
use crate::secret::Secret;
use crate::telemetry::{Span, Tracer};

pub struct Gateway {
    pub(super) app: Arc<App>,
    pub(super) metrics: Arc<Metrics>,
    /// `/admin/*` and `/metrics`: `ADMIN_API_KEY` as a Bearer token; without it, local
    /// clients of the admin listener only.
    admin_auth: AdminAuth,
    /// The listener this handler serves.
    listener: Listener,
    /// Stored responses behind `previous_response_id` and `/v1/responses/{id}`.
    responses: Arc<ResponseStore>,
    /// Trace export (`telemetry:`), when an endpoint is configured.
    tracer: Option<Arc<Tracer>>,
}

impl Gateway {
    /// The handler of the main listener.
    pub fn new(app: Arc<App>) -> Gateway {
        let key = app.env_var("ADMIN_API_KEY").map(Secret::new);
        let tracer = Tracer::start(&app.snapshot().config.telemetry, |k| app.env_var(k));
        Gateway {
            tracer,
            admin_auth: AdminAuth::from_env_value(key),
            responses: Arc::new(ResponseStore::from_config(&app.snapshot().config.responses)),
            metrics: Arc::new(Metrics::new()),
            app,
            listener: Listener::Main,
        }
    }

    /// The handler of the admin listener: the same app, admin key and metrics registry.
    pub fn admin_listener(&self) -> Gateway {
        Gateway {
            app: Arc::clone(&self.app),
            metrics: Arc::clone(&self.metrics),
            admin_auth: self.admin_auth.clone(),
            listener: Listener::Admin,
            responses: Arc::clone(&self.responses),
            tracer: self.tracer.clone(),
        }
    }

    /// The registry behind `GET /metrics` (the caller attaches the HTTP server's counters).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// What the access line and the metrics report about a request.
#[derive(Default)]
pub(super) struct Served {
    pub(super) status: Status,
    pub(super) assistant: Option<String>,
    pub(super) tool_calls: u32,
    /// LLM rounds the tool loop ran (0 when it did not get that far).
    pub(super) rounds: u32,
}

impl Handler for Gateway {
    fn lane(&self, _method: &str, path: &str) -> Lane {
        match path {
            "/health" | "/ready" | "/metrics" => Lane::Quick,
            p if p == "/admin" || p.starts_with("/admin/") => Lane::Control,
            _ => Lane::Main,
        }
    }

    /// Liveness and readiness are answered by the server's poller thread itself: they read
    /// two atomics and write one small answer, and a probe must not wait for a thread to be
    /// scheduled among a thousand busy stream workers.
    fn answered_by_poller(&self, method: &str, path: &str) -> bool {
        matches!(method, "GET" | "HEAD") && matches!(path, "/health" | "/ready")
    }

    fn handle(&self, req: Request, resp: &mut Responder<'_>) {
        let started = Instant::now();
        let request_id = request_id(&req);
        // MCP log lines of this request name it.
        let _log_ctx = crate::mcp::logctx::enter(&request_id);
        let mut served = Served::default();
        let route = route_of(&req.path);
        // The snapshot this request works with, start to end (auth included).
        let snap = self.app.snapshot();
        let v1 = req.path.starts_with("/v1/");
        let admin_only = self.listener == Listener::Admin && !admin_listener_route(&req.path);
        let cors = if v1 && !admin_only {
            cors_check(&req, &snap)
        } else {
            Cors::None
        };
        let checked =
            (v1 && !admin_only && req.method != "OPTIONS").then(|| snap.auth.identify(&req));
        let caller = match &checked {
            Some(Ok(c)) => c.clone(),
            _ => Caller::default(),
        };
        let denied = checked.and_then(Result::err);
        // The request's trace span (`/v1` only); its context is this thread's until the end.
        let mut span = match &self.tracer {
            Some(t) if v1 && !admin_only => {
                let name = format!("{} {}", req.method, route.label());
                Some(Span::request(t, req.header("traceparent"), &name))
            }
            _ => None,
        };
        let _trace = span
            .as_ref()
            .map(|s| crate::telemetry::enter(Some(s.ctx().clone())));
        let limited = denied
            .is_none()
            .then(|| super::keys::admit(&self.metrics, &caller, &req))
            .flatten();
        let cors_origin = match &cors {
            Cors::Allowed(o) => Some(o.as_str()),
            _ => None,
        };
        let cors_headers = cors_origin.map(cors_response_headers).unwrap_or_default();
        let mut base_headers: Vec<(&str, &str)> = vec![("X-Request-Id", request_id.as_str())];
        base_headers.extend(cors_headers.iter().map(|(k, v)| (*k, v.as_str())));
        let id_header = base_headers.as_slice();
        match (req.method.as_str(), req.path.as_str()) {
            (_, path) if has_dot_segment(path) => {
                let e = ApiError::bad_request("invalid path: dot segments are not allowed")
                    .with_code("invalid_path");
                served.status = send_error(resp, id_header, &e);
            }
            _ if admin_only => {
                let e = ApiError::not_found(format!(
                    "no route for {} {} on the admin listener (it serves /admin/*, /metrics and /health)",
                    req.method, req.path
                ));
                served.status = send_error(resp, id_header, &e);
            }
            _ if matches!(cors, Cors::Refused) => {
                let e = ApiError::forbidden(
                    "cross-origin request refused: this gateway has no API keys configured and the request's Origin is not in server.cors.allowed_origins",
                )
                .with_code("origin_not_allowed");
                served.status = send_error(resp, id_header, &e);
            }
            ("OPTIONS", _) if v1 => {
                // A CORS preflight: answered for allowed origins, before auth (a browser sends
                // no credentials with it).
                let mut h = base_headers.clone();
                h.push(("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"));
                let asked = req.header("Access-Control-Request-Headers");
                h.push(("Access-Control-Allow-Headers", preflight_headers(asked)));
                h.push(("Access-Control-Max-Age", "600"));
                let _ = resp.send(204, &h, b"");
                served.status = Status::Http(204);
            }
            _ if denied.is_some() => {
                let e = denied
                    .map(ApiError::from)
                    .unwrap_or_else(ApiError::unauthorized);
                served.status = send_error(resp, id_header, &e);
            }
            _ if limited.is_some() => {
                if let Some(l) = &limited {
                    let mut h = base_headers.clone();
                    h.push(("retry-after-ms", l.retry_after_ms.as_str()));
                    served.status = send_error(resp, &h, &l.error);
                }
            }
            ("GET" | "HEAD", "/health") => {
                served.status = send_json(resp, 200, id_header, &json!({"status": "ok"}));
            }
            ("GET" | "HEAD", "/ready") => {
                let busy = resp.busy();
                let (status, body) = if busy.draining {
                    (503, json!({"status": "draining"}))
                } else if busy.saturated() {
                    (
                        503,
                        json!({"status": "busy", "in_flight": busy.in_flight,
                               "max_in_flight": busy.max_in_flight}),
                    )
                } else {
                    (200, json!({"status": "ready"}))
                };
                served.status = send_json(resp, status, id_header, &body);
            }
            ("GET" | "HEAD", "/v1/models" | "/v1/models/") => {
                let data: Vec<Value> = snap
                    .config
                    .assistants
                    .iter()
                    .filter(|a| caller.may_use(&a.name))
                    .map(|a| model_json(&a.name, &snap))
                    .collect();
                served.status = send_json(
                    resp,
                    200,
                    id_header,
                    &json!({"object": "list", "data": data}),
                );
            }
            ("GET" | "HEAD", path) if path.starts_with("/v1/models/") => {
                let id = &path["/v1/models/".len()..];
                let visible = snap
                    .config
                    .assistant(id)
                    .filter(|a| caller.may_use(&a.name));
                served.status = match visible {
                    Some(a) => send_json(resp, 200, id_header, &model_json(&a.name, &snap)),
                    None => send_error(resp, id_header, &ApiError::model_not_found(id)),
                };
            }
            ("POST", "/v1/chat/completions") => {
                served = self.chat(&snap, &req, resp, &request_id, cors_origin, &caller);
            }
            ("POST", "/v1/completions") => {
                served = self.completions(&snap, &req, resp, &request_id, cors_origin, &caller);
            }
            (_, path) if responses::owns(path) => {
                let ctx = responses::Ctx {
                    snap: &snap,
                    metrics: &self.metrics,
                    store: &self.responses,
                    request_id: &request_id,
                    cors_origin,
                    caller: &caller,
                };
                let r = responses::handle(&ctx, &req, resp);
                served = Served {
                    status: r.status,
                    assistant: r.assistant,
                    tool_calls: r.tool_calls,
                    rounds: r.rounds,
                };
            }
            ("GET" | "HEAD", "/metrics") => {
                let guard = self.admin_auth.check(&req, self.listener);
                served.status = match guard.map_err(ApiError::from) {
                    Ok(()) => self.send_metrics(resp, id_header),
                    Err(e) => send_error(resp, id_header, &e),
                };
            }
            (_, path) if path == "/admin" || path.starts_with("/admin/") => {
                // An ambiguous path is refused before anything else (400).
                let checked = admin::parse_path(path).and_then(|_| {
                    self.admin_auth
                        .check(&req, self.listener)
                        .map_err(ApiError::from)
                });
                served.status = match checked {
                    Ok(()) => {
                        let reply = admin::handle(&self.app, &req);
                        send_json(resp, reply.status, id_header, &reply.body)
                    }
                    Err(e) => send_error(resp, id_header, &e),
                };
            }
            (
                _,
                "/health"
                | "/ready"
                | "/v1/models"
                | "/v1/chat/completions"
                | "/v1/completions"
                | "/metrics",
            ) => {
                let e =
                    ApiError::method_not_allowed(format!("method {} not allowed here", req.method));
                served.status = send_error(resp, id_header, &e);
            }
            (_, path) => {
                let e = ApiError::not_found(format!(
                    "no route for {} {path}; this server serves {SERVED_ENDPOINTS}",
                    req.method
                ))
                .with_code("unknown_route");
                served.status = send_error(resp, id_header, &e);
            }
        }
        let elapsed = started.elapsed();
        if let Some(span) = &mut span {
            request_attributes(span, &req, route, &served, &snap, &request_id);
        }
        self.metrics.request(route, served.status);
        if let Some(assistant) = &served.assistant {
            self.metrics
                .chat(assistant, served.status, elapsed, served.rounds);
        }
        log::info!(
            "{request_id} {} {} assistant={} status={} duration_ms={} tool_calls={}",
            req.method,
            req.path,
            served.assistant.as_deref().unwrap_or("-"),
            served.status,
            elapsed.as_millis(),
            served.tool_calls,
        );
    }
}

/// The request span's name (`chat {assistant}` for model requests) and attributes (GenAI and
/// HTTP semantic conventions).
fn request_attributes(
    span: &mut Span,
    req: &Request,
    route: Route,
    served: &Served,
    snap: &Snapshot,
    request_id: &str,
) {
    span.set("http.request.method", req.method.as_str());
    span.set("http.route", route_path(route));
    span.set("aiproxy.request_id", request_id);
    let code = match served.status {
        Status::Http(c) => c,
        Status::ClientGone => 499,
    };
    span.set("http.response.status_code", i64::from(code));
    if let Some(a) = &served.assistant {
        span.rename(format!("chat {a}"));
        span.set("gen_ai.operation.name", "chat");
        span.set("gen_ai.request.model", a.as_str());
        let kind = snap
            .config
            .assistant(a)
            .and_then(|a| snap.config.backends.get(&a.backend))
            .map(|b| b.kind);
        if let Some(kind) = kind {
            let provider = match kind {
                BackendKind::OpenAi | BackendKind::OpenAiResponses => "openai",
                BackendKind::Anthropic => "anthropic",
                BackendKind::Mock => "aiproxy.mock",
            };
            span.set("gen_ai.system", provider);
            span.set("gen_ai.provider.name", provider);
        }
        span.set("aiproxy.rounds", u64::from(served.rounds));
        span.set("aiproxy.tool_calls", u64::from(served.tool_calls));
    }
    if served.status == Status::ClientGone {
        span.fail("client_gone");
    } else if code >= 500 {
        span.fail(&code.to_string());
    }
}

fn route_path(route: Route) -> &'static str {
    match route {
        Route::Chat => "/v1/chat/completions",
        Route::Completions => "/v1/completions",
        Route::Responses => "/v1/responses",
        Route::Models => "/v1/models",
        _ => route.label(),
    }
}

/// The endpoints named in a 404 for an unknown route.
const SERVED_ENDPOINTS: &str = "POST /v1/chat/completions, POST /v1/completions, POST /v1/responses, GET|DELETE /v1/responses/{id}, GET /v1/models, GET /v1/models/{id}, GET /health";

/// Headers a preflight allows when the browser's list is not a plain list of header names.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, X-API-Key, api-key, X-Request-Id, OpenAI-Organization, OpenAI-Project";

/// The preflight's `Access-Control-Allow-Headers`: the requested list echoed when it is a
/// short, plain comma-separated list of header names; [`ALLOWED_HEADERS`] otherwise.
fn preflight_headers(asked: Option<&str>) -> &str {
    match asked {
        Some(a)
            if !a.trim().is_empty()
                && a.len() <= 1024
                && a.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b',' | b' ')
                }) =>
        {
            a
        }
        _ => ALLOWED_HEADERS,
    }
}

/// What the admin listener serves.
fn admin_listener_route(path: &str) -> bool {
    matches!(path, "/health" | "/metrics" | "/admin") || path.starts_with("/admin/")
}

/// A `.` or `..` segment, raw or percent-encoded (`%2e`, `%2E`, mixed).
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let mut rest = seg.as_bytes();
        let mut dots = 0;
        while !rest.is_empty() {
            rest = match rest {
                [b'.', tail @ ..] => tail,
                [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
                _ => return false,
            };
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

/// The CORS verdict on a `/v1/*` request.
enum Cors {
    /// No `Origin` header (SDKs, curl), or an origin that is neither allowed nor refused
    /// (auth is configured: the key decides).
    None,
    /// An origin in `server.cors.allowed_origins`: the response carries CORS headers.
    Allowed(String),
    /// No auth provider is configured and the origin is not allowed: 403.
    Refused,
}

fn cors_check(req: &Request, snap: &Snapshot) -> Cors {
    let Some(origin) = req.header("Origin") else {
        return Cors::None;
    };
    let allowed = &snap.config.server.cors_allowed_origins;
    let origin = origin.trim();
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        Cors::Allowed(origin.to_string())
    } else if snap.auth.is_open() {
        Cors::Refused
    } else {
        Cors::None
    }
}

pub(super) fn cors_response_headers(origin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Access-Control-Allow-Origin", origin.to_string()),
        ("Vary", "Origin".to_string()),
        (
            "Access-Control-Expose-Headers",
            "X-Request-Id, Retry-After, X-Aiproxy-Degraded".to_string(),
        ),
    ]
}

fn route_of(path: &str) -> Route {
    match path {
        "/health" | "/ready" => Route::Health,
        "/v1/chat/completions" => Route::Chat,
        "/v1/completions" => Route::Completions,
        p if crate::gateway::responses::owns(p) => Route::Responses,
        "/metrics" => Route::Metrics,
        "/v1/models" => Route::Models,
        p if p.starts_with("/v1/models/") => Route::Models,
        p if p == "/admin" || p.starts_with("/admin/") => Route::Admin,
        _ => Route::Other,
    }
}

impl Gateway {
    fn send_metrics(&self, resp: &mut Responder<'_>, headers: &[(&str, &str)]) -> Status {
        let snap = self.app.snapshot();
        let mut mcp: Vec<(String, crate::mcp::ServerStatus)> = snap
            .mcp
            .iter()
            .map(|(name, server)| (name.clone(), server.status()))
            .collect();
        mcp.sort_by(|a, b| a.0.cmp(&b.0));
        let mut body = self.metrics.render(&mcp);
        let (dropped, exported) = self
            .tracer
            .as_ref()
            .map_or((0, 0), |t| (t.dropped(), t.exported()));
        body.push_str(&format!(
            "# HELP aiproxy_trace_spans_dropped_total Trace spans dropped: export queue full, or the collector slow, down or refusing.\n# TYPE aiproxy_trace_spans_dropped_total counter\naiproxy_trace_spans_dropped_total {dropped}\n# HELP aiproxy_trace_spans_exported_total Trace spans the collector accepted.\n# TYPE aiproxy_trace_spans_exported_total counter\naiproxy_trace_spans_exported_total {exported}\n"
        ));
        let mut h: Vec<(&str, &str)> =
            vec![("Content-Type", "text/plain; version=0.0.4; charset=utf-8")];
        h.extend_from_slice(headers);
        // A failed write means the client left; there is nobody to tell.
        let _ = resp.send(200, &h, body.as_bytes());
        Status::Http(200)
    }
}

fn model_json(name: &str, snap: &Snapshot) -> Value {
    json!({"id": name, "object": "model", "created": snap.loaded_at, "owned_by": "aiproxy"})
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A short unique id: process start time mixed with a counter.
pub(super) fn unique_hex() -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = crate::clock::unix_nanos();
    format!("{:012x}{:06x}", t & 0xffff_ffff_ffff, n & 0xff_ffff)
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

#[cfg(test)]
mod tests {
    use super::has_dot_segment;

    #[test]
    fn dot_segments_raw_or_percent_encoded() {
        for path in [
            "/v1/../admin",
            "/v1/./models",
            "/v1/%2e%2E/admin",
            "/v1/.%2e",
            "/v1/%2E",
            "/.",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/v1/models",
            "/v1/...",
            "/v1/%2e%2e%2e",
            "/v1/.hidden",
            "/v1/a.b",
            "/v1/%2f",
            "/v1/%2",
            "/v1/ü/..x",
            "",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }
}
