//! The `openai` backend: any OpenAI-compatible `POST {base_url}/chat/completions` (OpenAI, Groq,
//! vLLM, Ollama, llama.cpp, …).
//!
//! One ureq [`Agent`] per backend, built once and shared by every worker thread (it is a
//! connection pool; up to 64 idle connections per host are kept so workers reuse them; names are
//! resolved through `super::resolve::CachingResolver`, not once per request). Its
//! timeouts all come from the backend `timeout`: resolve, connect (incl. TLS), sending, waiting
//! for the response head, and **per read** — an idle-gap limit, never a global one, which would
//! cut long streams; the request's deadline is the one global limit on each exchange. Non-2xx
//! answers are read (not turned into ureq errors) so the upstream's message (scrubbed; a
//! 401/403 text is only logged) and `Retry-After` reach the client. Redirects are not followed
//! (a 3xx is an error).
//!
//! **Proxies:** the agent uses no HTTP proxy, whatever `HTTPS_PROXY`/`ALL_PROXY`/… say. ureq
//! would otherwise take the first of those variables for every scheme and tunnel even
//! `http://127.0.0.1` upstreams through it. Operators who need a proxy reach the upstream
//! through it explicitly (a future `proxy` backend key).
//!
//! Non-stream turns run on the calling worker thread (body capped at 16 MiB). Streaming turns
//! are in `stream`: a short-lived pump thread reads the SSE so the caller can give the sink
//! idle ticks while the upstream is quiet. Chunk and body decoding is in `parse`.

mod parse;
mod stream;

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use ureq::Agent;
use ureq::http::Response;
use ureq::unversioned::transport::DefaultConnector;

use super::resolve::CachingResolver;
use super::{Backend, Error, Turn, TurnRequest, TurnSink, remaining, truncate_for_error};
use crate::config::BackendConfig;
use crate::secret::Secret;

/// Largest non-stream JSON answer.
const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;
/// How much of an error body we read to find its message.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Idle connections kept per upstream host: about the worker count.
const IDLE_PER_HOST: usize = 64;
/// Per-connection buffers. ureq's defaults (128 KiB each way) are zero-filled when a connection
/// first sends, so every pooled or streaming connection cost 256 KiB of resident memory: 64 MiB
/// of a 256-stream load (`make bench`). Bodies stream through these in pieces, so their size
/// bounds only the response head (and the request head: ours are small).
pub(crate) const INPUT_BUFFER: usize = 32 * 1024;
pub(crate) const OUTPUT_BUFFER: usize = 16 * 1024;
/// Largest upstream response head (ureq's default is 64 KiB); must stay below `INPUT_BUFFER`
/// so an oversized head is reported as too large.
pub(crate) const MAX_RESPONSE_HEAD: usize = 16 * 1024;

pub struct OpenAiBackend {
    agent: Agent,
    url: String,
    /// `default_headers` (minus the ones we own), then `Authorization`.
    headers: Vec<(String, Secret)>,
}

/// One ready-to-send upstream request; shared with a stream's pump thread.
pub(crate) struct Prepared {
    url: String,
    headers: Vec<(String, Secret)>,
    body: Vec<u8>,
    /// The request's deadline: the whole exchange (head and body) ends by then.
    deadline: Instant,
}

impl OpenAiBackend {
    pub fn new(cfg: &BackendConfig) -> Self {
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
        OpenAiBackend {
            agent: build_agent(cfg.timeout),
            url: format!("{}/chat/completions", cfg.base_url.trim_end_matches('/')),
            headers,
        }
    }

    /// The HTTP agent (its config is inspected by tests: proxy, timeouts).
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    fn prepare(&self, req: &TurnRequest<'_>) -> Result<Prepared, Error> {
        let payload = build_payload(req)?;
        let body = serde_json::to_vec(&Value::Object(payload))
            .map_err(|e| Error::Protocol(format!("cannot encode request: {e}")))?;
        let mut headers = self.headers.clone();
        if req.stream {
            headers.push(("Accept".into(), Secret::new("text/event-stream")));
            // A compressed event stream may be buffered by the encoder; ask for it plain.
            headers.push(("Accept-Encoding".into(), Secret::new("identity")));
        }
        Ok(Prepared {
            url: self.url.clone(),
            headers,
            body,
            deadline: req.deadline,
        })
    }
}

impl Backend for OpenAiBackend {
    fn turn(&self, req: &TurnRequest<'_>, sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        let prepared = self.prepare(req)?;
        if req.stream {
            return stream::run(&self.agent, Arc::new(prepared), sink);
        }
        let resp = send(&self.agent, &prepared)?;
        let body = resp
            .into_body()
            .into_with_config()
            .limit(MAX_JSON_BYTES)
            .read_to_vec()
            .map_err(|e| map_error(e, Phase::Body))?;
        parse::parse_completion(&body)
    }
}

fn build_agent(timeout: Duration) -> Agent {
    let t = Some(timeout);
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_resolve(t)
        .timeout_connect(t)
        .timeout_send_request(t)
        .timeout_send_body(t)
        .timeout_recv_response(t)
        .timeout_per_read(t)
        .timeout_per_write(t)
        .max_idle_connections(IDLE_PER_HOST)
        .max_idle_connections_per_host(IDLE_PER_HOST)
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .max_response_header_size(MAX_RESPONSE_HEAD)
        .user_agent(concat!("aiproxy/", env!("CARGO_PKG_VERSION")))
        .build();
    // Our resolver: ureq's default looks the host up (on a new thread) for every request.
    Agent::with_parts(
        config,
        DefaultConnector::default(),
        CachingResolver::default(),
    )
}

/// The upstream payload (docs/backends.md#openai): model, messages, the merged params, tools unless this is the
/// final round, `stream` (+ `stream_options.include_usage`), then `extra_body` last. A `null`
/// in `extra_body` removes that key (so an operator can drop e.g. `stream_options` for a server
/// that rejects it).
fn build_payload(req: &TurnRequest<'_>) -> Result<Map<String, Value>, Error> {
    let encode = |e: serde_json::Error| Error::Protocol(format!("cannot encode request: {e}"));
    let mut p = Map::new();
    p.insert("model".into(), Value::String(req.model.to_string()));
    p.insert(
        "messages".into(),
        serde_json::to_value(req.messages).map_err(encode)?,
    );
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

/// Send the request and wait for the head; a non-2xx status becomes [`Error::Status`].
fn send(agent: &Agent, req: &Prepared) -> Result<Response<ureq::Body>, Error> {
    let mut rb = agent.post(&req.url);
    for (name, value) in &req.headers {
        rb = rb.header(name.as_str(), value.expose());
    }
    // The request deadline bounds the whole exchange, body reads included: an upstream that
    // trickles bytes (keep-alives, whitespace) never trips the per-read timeout, this one fires.
    let resp = rb
        .config()
        .timeout_global(Some(remaining(req.deadline)?))
        .build()
        .send(&req.body[..])
        .map_err(|e| map_error(e, Phase::Call))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    Err(status_error(resp, &super::header_secrets(&req.headers)))
}

/// A non-2xx answer as [`Error::Status`]; `secrets` (our header values) are masked in its text.
fn status_error(resp: Response<ureq::Body>, secrets: &[&str]) -> Error {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string());
    let mut body = Vec::new();
    // The message is best effort: a body that fails to read still leaves the status.
    let _ = resp
        .into_body()
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body);
    let from_json = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| parse::upstream_error(&v))
        .map(|e| match e {
            Error::Status { message, .. } => message,
            Error::Protocol(m) => m.trim_start_matches("upstream error: ").to_string(),
            other => other.to_string(),
        });
    let message = match from_json {
        Some(m) => m,
        None if text.trim().is_empty() => status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string(),
        None => truncate_for_error(&text),
    };
    super::upstream_status(status.as_u16(), &message, retry_after, secrets)
}

/// Where a ureq error happened: before the head (connecting) or while reading the body.
#[derive(Clone, Copy)]
enum Phase {
    Call,
    Body,
}

/// ureq errors → backend errors. Messages come from ureq's `Display`, which names no secrets
/// (header values are never included).
fn map_error(e: ureq::Error, phase: Phase) -> Error {
    use std::io::ErrorKind as K;
    use ureq::Error as U;
    match e {
        U::Timeout(_) => Error::Timeout,
        U::BodyExceedsLimit(_) | U::LargeResponseHeader(..) => Error::TooLarge,
        U::Io(io) if matches!(io.kind(), K::TimedOut | K::WouldBlock) => Error::Timeout,
        // SseReader reports an oversized event as InvalidData.
        U::Io(io) if matches!(phase, Phase::Body) && io.kind() == K::InvalidData => Error::TooLarge,
        U::Io(io) => match phase {
            Phase::Call => Error::Connect(io.to_string()),
            Phase::Body => Error::Protocol(format!("upstream connection lost: {io}")),
        },
        U::HostNotFound => Error::Connect("host not found".into()),
        e @ (U::ConnectionFailed
        | U::Tls(_)
        | U::Rustls(_)
        | U::BadUri(_)
        | U::Http(_)
        | U::RequireHttpsOnly(_)
        | U::ConnectProxyFailed(_)
        | U::InvalidProxyUrl
        | U::TlsRequired) => Error::Connect(truncate_for_error(&e.to_string())),
        other => Error::Protocol(truncate_for_error(&other.to_string())),
    }
}

/// A read error from a body reader (ureq wraps its own errors in `io::Error`).
fn map_io_error(e: std::io::Error) -> Error {
    map_error(ureq::Error::from(e), Phase::Body)
}

#[cfg(test)]
mod tests;
