//! The I/O half of the backend: one `POST {base_url}/messages` with ureq, answered as JSON or as
//! an SSE stream read event by event on the calling worker thread.
//!
//! The agent is built once per backend (a connection pool shared by all workers) with connect,
//! response-head, per-read and per-write timeouts — the only global limit is the request's
//! deadline, checked on every event and idle tick too —, `http_status_as_error(false)` so
//! Anthropic's error bodies can be read (401/403 texts are logged scrubbed, never passed on),
//! and no proxy taken from the environment (a stray `HTTPS_PROXY` must not reroute an upstream).
//! Bodies are capped. While streaming, text deltas go to the [`TurnSink`] as they arrive; when
//! the sink reports the client gone the reader is dropped, which closes the upstream connection.

use std::io::{self, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::Agent;
use ureq::http::Response;
use ureq::unversioned::transport::DefaultConnector;

use super::response::Reply;
use super::stream::StreamMachine;
use super::types::{API_VERSION, error_text, parse_error};
use crate::backend::resolve::CachingResolver;
use crate::backend::{Error, TurnSink, remaining, truncate_for_error};
use crate::config::BackendConfig;
use crate::secret::Secret;
use crate::sse_codec::{SseItem, SseReader};

/// A whole JSON response (the API's own request limit is 32 MB; answers are far smaller).
const MAX_JSON_BYTES: u64 = 32 * 1024 * 1024;
/// A whole stream. Long answers are a few MB of SSE at most.
const MAX_STREAM_BYTES: u64 = 128 * 1024 * 1024;
/// One SSE event (a `content_block_start` of a server tool result can be large).
const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;
/// What is read of an error body.
const MAX_ERROR_BYTES: u64 = 64 * 1024;
/// How often the sink hears from a stream that sends no text (pings, thinking).
const IDLE_EVERY: Duration = Duration::from_secs(1);
/// Idle pooled connections kept per host: about one per concurrently busy worker.
const MAX_IDLE_PER_HOST: usize = 32;

pub struct Http {
    agent: Agent,
    url: String,
    /// Sent in order; values may be credentials, so they stay `Secret` until the wire.
    headers: Vec<(String, Secret)>,
}

impl Http {
    pub fn new(cfg: &BackendConfig) -> Http {
        let t = Some(cfg.timeout);
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_connect(t)
            .timeout_recv_response(t)
            .timeout_per_read(t)
            .timeout_per_write(t)
            .max_idle_connections_per_host(MAX_IDLE_PER_HOST)
            // Small per-connection buffers (ureq's 128 KiB defaults are all resident).
            .input_buffer_size(crate::backend::openai::INPUT_BUFFER)
            .output_buffer_size(crate::backend::openai::OUTPUT_BUFFER)
            .max_response_header_size(crate::backend::openai::MAX_RESPONSE_HEAD)
            .user_agent(concat!("aiproxy/", env!("CARGO_PKG_VERSION")))
            .build();
        // Our resolver: ureq's default looks the host up again for every request.
        let agent = Agent::with_parts(
            config,
            DefaultConnector::default(),
            CachingResolver::default(),
        );
        Http {
            agent,
            url: format!("{}/messages", cfg.base_url.trim_end_matches('/')),
            headers: headers(cfg),
        }
    }

    /// A non-streaming request.
    pub fn call(&self, body: &Value, deadline: Instant) -> Result<Reply, Error> {
        let resp = self.post(body, deadline)?;
        let text = resp
            .into_body()
            .into_with_config()
            .limit(MAX_JSON_BYTES)
            .read_to_string()
            .map_err(map_ureq)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            Error::Protocol(format!(
                "response is not JSON ({e}): {}",
                truncate_for_error(&text)
            ))
        })?;
        Reply::from_json(&v)
    }

    /// A streaming request: text deltas go to `sink` as they arrive.
    pub fn stream(
        &self,
        body: &Value,
        sink: &mut dyn TurnSink,
        deadline: Instant,
    ) -> Result<Reply, Error> {
        let resp = self.post(body, deadline)?;
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("text/event-stream"));
        let reader = resp
            .into_body()
            .into_with_config()
            .limit(MAX_STREAM_BYTES)
            .reader();
        if !is_sse {
            // Some gateways in front of the API answer a streaming request with plain JSON.
            let text =
                io::read_to_string(io::Read::take(reader, MAX_JSON_BYTES)).map_err(map_io)?;
            let v: Value = serde_json::from_str(&text).map_err(|_| {
                Error::Protocol(format!(
                    "expected an event stream, got: {}",
                    truncate_for_error(&text)
                ))
            })?;
            let reply = Reply::from_json(&v)?;
            let text = reply.to_turn().content;
            if !text.is_empty() {
                sink.text(&text)?;
            }
            return Ok(reply);
        }
        let mut events =
            SseReader::new(BufReader::new(reader), MAX_EVENT_BYTES).with_idle_tick(IDLE_EVERY);
        let mut machine = StreamMachine::new();
        let mut last_signal = Instant::now();
        while !machine.is_done() {
            // Every event and every idle tick: pings or empty deltas must not outlive the
            // request (returning drops the reader, which closes the connection).
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            let ev = match events.next_item().map_err(map_io)? {
                None => break,
                Some(SseItem::Event(ev)) => ev,
                Some(SseItem::Idle) => {
                    if last_signal.elapsed() >= IDLE_EVERY {
                        sink.idle()?;
                        last_signal = Instant::now();
                    }
                    continue;
                }
            };
            match machine.feed(ev.event.as_deref().unwrap_or(""), &ev.data)? {
                Some(text) => {
                    sink.text(&text)?;
                    last_signal = Instant::now();
                }
                None if last_signal.elapsed() >= IDLE_EVERY => {
                    sink.idle()?;
                    last_signal = Instant::now();
                }
                None => {}
            }
        }
        // Stop reading at message_stop: dropping the reader ends the exchange.
        machine.finish()
    }

    /// Send the request; a non-2xx answer becomes `Error::Status` with Anthropic's message.
    fn post(&self, body: &Value, deadline: Instant) -> Result<Response<ureq::Body>, Error> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::Protocol(format!("cannot encode request: {e}")))?;
        let mut req = self.agent.post(&self.url);
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.expose());
        }
        // The request deadline bounds the whole exchange, body included (a trickle of pings
        // never trips the per-read timeout).
        let resp = req
            .config()
            .timeout_global(Some(remaining(deadline)?))
            .build()
            .send(&bytes[..])
            .map_err(map_ureq)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp
            .into_body()
            .into_with_config()
            .limit(MAX_ERROR_BYTES)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        let message = match parse_error(&text) {
            Some((kind, message)) => error_text(&kind, &message),
            None if text.trim().is_empty() => format!("HTTP {status}"),
            None => truncate_for_error(&text),
        };
        let secrets = crate::backend::header_secrets(&self.headers);
        Err(crate::backend::upstream_status(
            status,
            &message,
            retry_after,
            &secrets,
        ))
    }
}

/// `content-type`, `anthropic-version`, then `default_headers` (which may replace either, or
/// add `anthropic-beta`), then `x-api-key` when a key is configured.
fn headers(cfg: &BackendConfig) -> Vec<(String, Secret)> {
    let mut out: Vec<(String, Secret)> = vec![
        ("content-type".into(), Secret::new("application/json")),
        ("anthropic-version".into(), Secret::new(API_VERSION)),
    ];
    let mut set = |name: &str, value: &Secret| {
        out.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        out.push((name.to_string(), value.clone()));
    };
    for (name, value) in &cfg.default_headers {
        set(name, value);
    }
    if let Some(key) = cfg.api_key.as_ref().filter(|k| !k.is_empty()) {
        set("x-api-key", key);
    }
    out
}

fn map_ureq(e: ureq::Error) -> Error {
    use ureq::Timeout as T;
    match e {
        ureq::Error::Timeout(T::Connect | T::Resolve) => {
            Error::Connect("connect timed out".to_string())
        }
        ureq::Error::Timeout(_) => Error::Timeout,
        ureq::Error::BodyExceedsLimit(_) => Error::TooLarge,
        ureq::Error::Io(io) => map_io(io),
        e @ (ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::ConnectProxyFailed(_)
        | ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::BadUri(_)) => Error::Connect(truncate_for_error(&e.to_string())),
        e => Error::Protocol(truncate_for_error(&e.to_string())),
    }
}

/// Errors from reading a body: ureq wraps its own errors (timeouts, the body limit) in
/// `io::Error`; our SSE reader reports an oversized event as `InvalidData`.
fn map_io(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
        return match e.into_inner().map(|b| b.downcast::<ureq::Error>()) {
            Some(Ok(ue)) => map_ureq(*ue),
            _ => Error::Protocol("upstream read failed".to_string()),
        };
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout,
        io::ErrorKind::InvalidData => Error::TooLarge,
        io::ErrorKind::ConnectionRefused => Error::Connect(truncate_for_error(&e.to_string())),
        _ => Error::Protocol(format!(
            "upstream read failed: {}",
            truncate_for_error(&e.to_string())
        )),
    }
}
