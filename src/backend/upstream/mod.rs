//! The one upstream HTTP layer under the LLM backends: the ureq agent, sending a request,
//! reading error bodies, mapping ureq errors, and (in `stream.rs`) reading an event stream with
//! idle ticks and the request deadline. The provider folders (`openai`, `anthropic`) keep only
//! translation: they build the body, name the URL and headers, and decode what comes back (a
//! [`Decoder`] for streams, a function for error bodies); every HTTP decision lives here, so the
//! backends cannot drift apart.
//!
//! **Agent** ([`Upstream::new`]), one per backend, built once and shared by every worker thread
//! (it is a connection pool): up to [`IDLE_CONNECTIONS`] idle connections are kept, overall and
//! per host (ureq's defaults are 10 and 3, which would cap a busy gateway), so workers reuse
//! them; names are resolved through `backend::resolve::CachingResolver`, not once per request.
//! Its timeouts all come from the backend `timeout`: resolve, connect (incl. TLS), sending,
//! waiting for the response head, and **per read** — an idle-gap limit, never a global one,
//! which would cut long streams; the request's deadline is the one global limit on each
//! exchange. TLS is rustls. Non-2xx answers are read (not turned into ureq errors) so the
//! upstream's message (scrubbed; a 401/403 text is only logged) and `Retry-After` reach the
//! client. **Redirects are not followed**: a 3xx is an [`Error::Status`] (an API endpoint that
//! moves is a configuration problem, and following would resend the credentials elsewhere).
//!
//! **Proxies:** the agent uses no HTTP proxy, whatever `HTTPS_PROXY`/`ALL_PROXY`/… say. ureq
//! would otherwise take the first of those variables for every scheme and tunnel even
//! `http://127.0.0.1` upstreams through it. Operators who need a proxy reach the upstream
//! through it explicitly (a future `proxy` backend key).
//!
//! **Errors** (`map_error`): a timeout anywhere — resolving, connecting, the head, a read, the
//! deadline — is [`Error::Timeout`] (the client gets 504 and the metrics count a timeout); a
//! refused or failed connection, TLS or name failure is [`Error::Connect`] (502); a body over
//! its cap is [`Error::TooLarge`]; a connection lost mid-body is [`Error::Protocol`].

mod stream;
mod tick;
mod transport;

pub use stream::Decoder;

use std::io::Read;
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::http::header::{ACCEPT, ACCEPT_ENCODING, HeaderName, HeaderValue};
use ureq::http::{Response, Uri};
use ureq::unversioned::transport::{Connector, RustlsConnector};

use self::transport::TcpConnector;
use super::resolve::CachingResolver;
use super::{Error, TurnSink, header_secrets, remaining, truncate_for_error, upstream_status};
use crate::secret::Secret;

/// Idle connections kept, overall and per upstream host: about the worker count.
pub const IDLE_CONNECTIONS: usize = 64;
/// Per-connection buffers. ureq's defaults (128 KiB each way) are zero-filled when a connection
/// first sends, so every pooled or streaming connection cost 256 KiB of resident memory (64 MiB
/// of a 256-stream load, `make bench`); at 1,000 streams even 32 + 16 KiB were 48 MiB. Bodies
/// stream through these in pieces, so their size bounds only the response head (and the request
/// head: ours are small). ureq borrows at least 10 KiB of the input buffer while it sends a
/// request body, so a smaller one would only be grown again.
const INPUT_BUFFER: usize = 16 * 1024;
const OUTPUT_BUFFER: usize = 8 * 1024;
/// Largest upstream response head (ureq's default is 64 KiB; providers send 1–2 KiB, and nginx
/// in front of an upstream refuses more than 4–8 KiB by default); must stay below
/// `INPUT_BUFFER` so an oversized head is reported as too large.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;
const _: () = assert!(MAX_RESPONSE_HEAD < INPUT_BUFFER);
/// How much of an error body is read to find its message.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// A whole event stream (long answers are a few MB of SSE at most).
const MAX_STREAM_BYTES: u64 = 128 * 1024 * 1024;

/// A provider's size caps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A whole JSON answer (non-stream, or a JSON answer to a stream request).
    pub json_bytes: u64,
    /// One SSE event.
    pub event_bytes: usize,
}

/// One LLM endpoint: where to `POST`, with which headers, through which pool.
pub struct Upstream {
    agent: Agent,
    url: String,
    /// Sent in order; values may be credentials, so they stay `Secret` until the wire.
    headers: Vec<(String, Secret)>,
    /// `url` and `headers` parsed once for every request (credentials marked sensitive);
    /// `None` when one does not parse, and each request then reports it as ureq does.
    parsed: Option<Parsed>,
    limits: Limits,
    /// The provider's reading of an error body: its message, or `None` when it has no known
    /// shape (the text itself is used then, cut and scrubbed).
    error_message: fn(&str) -> Option<String>,
}

impl Upstream {
    pub fn new(
        url: String,
        headers: Vec<(String, Secret)>,
        timeout: Duration,
        limits: Limits,
        error_message: fn(&str) -> Option<String>,
    ) -> Upstream {
        Upstream {
            agent: build_agent(timeout),
            parsed: Parsed::new(&url, &headers),
            url,
            headers,
            limits,
            error_message,
        }
    }

    /// The HTTP agent (its config is inspected by tests: proxy, timeouts, pool).
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn headers(&self) -> &[(String, Secret)] {
        &self.headers
    }

    /// A non-streaming exchange: the whole 2xx body (at most `limits.json_bytes`).
    pub fn call(&self, body: &[u8], deadline: Instant) -> Result<Vec<u8>, Error> {
        let tp = crate::telemetry::traceparent();
        let resp = self.send(body, false, deadline, tp.as_deref())?;
        read_json(resp, self.limits.json_bytes)
    }

    /// A streaming exchange: events go through `decoder` (on the calling thread), which hands
    /// text to `sink`; see `stream.rs` for the idle ticks and the deadline.
    pub fn stream<D: Decoder>(
        &self,
        body: &[u8],
        deadline: Instant,
        decoder: &mut D,
        sink: &mut dyn TurnSink,
    ) -> Result<D::Output, Error> {
        stream::run(self, body, deadline, decoder, sink)
    }

    /// Send the request and wait for the head; a non-2xx status becomes [`Error::Status`].
    /// `traceparent`: the round's trace context (taken on the request's thread).
    fn send(
        &self,
        body: &[u8],
        event_stream: bool,
        deadline: Instant,
        traceparent: Option<&str>,
    ) -> Result<Response<ureq::Body>, Error> {
        let mut rb = match &self.parsed {
            Some(parsed) => {
                let mut rb = self.agent.post(parsed.uri.clone());
                for (name, value) in &parsed.headers {
                    rb = rb.header(name.clone(), value.clone());
                }
                rb
            }
            None => {
                let mut rb = self.agent.post(&self.url);
                for (name, value) in &self.headers {
                    rb = rb.header(name.as_str(), value.expose());
                }
                rb
            }
        };
        // The trace this round belongs to (W3C Trace Context), unless configured headers set one.
        if let Some(tp) = traceparent
            && !self
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("traceparent"))
        {
            rb = rb.header("traceparent", tp);
        }
        let configured = |h: &str| self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(h));
        if event_stream && !configured("accept") {
            rb = rb.header(ACCEPT, HeaderValue::from_static("text/event-stream"));
        }
        if !configured("accept-encoding") {
            // Answers are read plain (see `identity_only`).
            rb = rb.header(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        // The request deadline bounds the whole exchange, body reads included: an upstream that
        // trickles bytes (keep-alives, whitespace) never trips the per-read timeout, this one fires.
        let resp = rb
            .config()
            .timeout_global(Some(remaining(deadline)?))
            .build()
            .send(body)
            .map_err(|e| map_error(e, Phase::Call))?;
        if resp.status().is_success() {
            return identity_only(resp);
        }
        Err(self.status_error(resp))
    }

    /// A non-2xx answer as [`Error::Status`]: the provider's message if the body has one, else
    /// the body's start, else the status's reason; our header values are masked in it, and a
    /// 401/403 text is only logged ([`upstream_status`]).
    fn status_error(&self, resp: Response<ureq::Body>) -> Error {
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
        let reason = || match status.canonical_reason() {
            Some(r) => r.to_string(),
            None => format!("HTTP {}", status.as_u16()),
        };
        let mut message = match (self.error_message)(&text) {
            Some(m) => m,
            None if text.trim().is_empty() => reason(),
            None => truncate_for_error(&text),
        };
        if status.is_redirection() {
            message = format!("{message} (redirects are not followed)");
        }
        upstream_status(
            status.as_u16(),
            &message,
            retry_after,
            &header_secrets(&self.headers),
        )
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
        .max_idle_connections(IDLE_CONNECTIONS)
        .max_idle_connections_per_host(IDLE_CONNECTIONS)
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .max_response_header_size(MAX_RESPONSE_HEAD)
        .user_agent(concat!("aiproxy/", env!("CARGO_PKG_VERSION")))
        .build();
    // Our resolver: ureq's default looks the host up (on a new thread) for every request.
    // Our TCP transport (fewer syscalls per request, `transport.rs`), wrapped in TLS for https,
    // and every connection wrapped for the idle ticks of streams read inline (`tick.rs`).
    let connector =
        ().chain(TcpConnector)
            .chain(RustlsConnector::default())
            .chain(tick::TickConnector);
    Agent::with_parts(config, connector, CachingResolver::default())
}

/// An upstream's URL and configured headers, parsed once.
struct Parsed {
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Parsed {
    fn new(url: &str, headers: &[(String, Secret)]) -> Option<Parsed> {
        let uri = url.parse().ok()?;
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let mut value = HeaderValue::from_str(value.expose()).ok()?;
                value.set_sensitive(true);
                Some((HeaderName::from_bytes(name.as_bytes()).ok()?, value))
            })
            .collect::<Option<_>>()?;
        Some(Parsed { uri, headers })
    }
}

/// A 2xx answer whose body is not plain, refused with the coding named.
///
/// Bodies are not decompressed: every request asks for `identity`, LLM answers are small or
/// streamed (a compressed event stream may be held back by the encoder), and ureq's gzip decoder
/// put a 54 KiB frame on every body read's stack — 54 MiB of resident stacks at 1,000 streams.
fn identity_only(resp: Response<ureq::Body>) -> Result<Response<ureq::Body>, Error> {
    let coding = resp
        .headers()
        .get("content-encoding")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
    match coding {
        Some(c) if !c.is_empty() && !c.eq_ignore_ascii_case("identity") => {
            Err(Error::Protocol(format!(
                "the body is {}-encoded, but aiproxy asked for identity and does not decode it \
                 (a configured Accept-Encoding header is passed on as is)",
                truncate_for_error(&c)
            )))
        }
        _ => Ok(resp),
    }
}

/// A whole 2xx body, at most `limit` bytes.
fn read_json(resp: Response<ureq::Body>, limit: u64) -> Result<Vec<u8>, Error> {
    resp.into_body()
        .into_with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| map_error(e, Phase::Body))
}

/// Where a ureq error happened: before the head (connecting, sending) or while reading the body.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Phase {
    Call,
    Body,
}

/// ureq errors → backend errors. Messages come from ureq's `Display`, which names no secrets
/// (header values are never included).
pub(crate) fn map_error(e: ureq::Error, phase: Phase) -> Error {
    use std::io::ErrorKind as K;
    use ureq::Error as U;
    match e {
        // Every timeout, connect and resolve included: the client is told 504 either way.
        U::Timeout(_) => Error::Timeout,
        U::BodyExceedsLimit(_) | U::LargeResponseHeader(..) => Error::TooLarge,
        U::Io(io) if matches!(io.kind(), K::TimedOut | K::WouldBlock) => Error::Timeout,
        // SseReader reports an oversized event as InvalidData.
        U::Io(io) if matches!(phase, Phase::Body) && io.kind() == K::InvalidData => Error::TooLarge,
        U::Io(io) if io.kind() == K::ConnectionRefused => {
            Error::Connect(truncate_for_error(&io.to_string()))
        }
        U::Io(io) => match phase {
            Phase::Call => Error::Connect(truncate_for_error(&io.to_string())),
            Phase::Body => Error::Protocol(format!(
                "upstream connection lost: {}",
                truncate_for_error(&io.to_string())
            )),
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

/// A read error from a body reader (ureq wraps its own errors in `io::Error`; `From` unwraps
/// them again).
pub(crate) fn map_io_error(e: std::io::Error) -> Error {
    map_error(ureq::Error::from(e), Phase::Body)
}

#[cfg(test)]
mod tests;
