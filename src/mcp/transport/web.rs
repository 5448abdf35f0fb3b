//! What the two HTTP transports (legacy HTTP+SSE and streamable HTTP) share: the ureq agent
//! (one per connection, so closing it interrupts every blocked read at once), configured
//! headers, classification of ureq errors into "never delivered" or "maybe delivered",
//! bounded body reads, relative-URL resolution for the legacy `endpoint` event, and a bounded
//! count of stream-reading threads.
//!
//! No threads of its own. Configured header values are [`Secret`]s: they are exposed only when
//! put on a request and never appear in a log line or an error message. URLs are shown through
//! [`crate::secret::display_url`] (no userinfo, no `?token=…`), and server error texts through
//! [`crate::secret::scrub`].

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use ureq::http::{HeaderName, HeaderValue};
use ureq::{Agent, RequestBuilder};

use super::SendError;
use crate::secret::Secret;

/// TCP (and TLS) connection setup limit; a request's own deadline may cut it shorter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest single wait for a stream slot, so the caller's hook runs meanwhile.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// Largest JSON body (reply, error) we read from a POST response.
pub const MAX_BODY: u64 = 16 * 1024 * 1024;
/// Largest SSE event we accept (one JSON-RPC message, possibly with base64 images).
pub const MAX_EVENT: usize = 16 * 1024 * 1024;
/// Error bodies are only quoted, so only their head is read.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Extra time given to ureq's own timeouts beyond the caller's deadline, so the caller's
/// deadline (which is precise and cancels properly) is what normally fires first.
pub const MARGIN: Duration = Duration::from_secs(2);

/// Where a remote server is and how to reach it.
#[derive(Debug, Clone)]
pub struct RemoteSpec {
    pub url: String,
    /// Sent on every request (e.g. `Authorization`); values are never logged.
    pub headers: Vec<(String, Secret)>,
    /// A long-lived stream silent for this long (not even a keep-alive comment) is given up
    /// (legacy SSE: the session ends; streamable HTTP: the GET stream is reopened).
    pub idle: Duration,
    /// Concurrent reply streams (one thread each) per connection.
    pub max_streams: usize,
    /// CA certificates (PEM) to trust instead of the bundled roots (`ca_file`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl RemoteSpec {
    /// Check the URL and the header names and values (without echoing values).
    pub fn validate(&self) -> Result<(), String> {
        let lower = self.url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(format!(
                "url {:?} is not http(s)",
                crate::secret::display_url(&self.url)
            ));
        }
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            HeaderValue::from_str(value.expose())
                .map_err(|_| format!("the value of header {name:?} is not a valid header value"))?;
        }
        Ok(())
    }
}

/// One agent per connection: pooled keep-alive connections for its requests, no proxy from the
/// environment (a stray `HTTPS_PROXY` must not reroute a loopback MCP server), error statuses
/// returned as responses so their bodies can be read.
pub fn agent(max_conns: usize, ca_file: Option<&Path>) -> Result<Agent, String> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(path) = ca_file {
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&ca_certs(path)?));
    }
    let config = Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .proxy(None)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        // Redirects are not followed: a POST would lose its body, and configured credential
        // headers must not travel to another host. A 3xx is reported with its target instead.
        .max_redirects(0)
        .max_idle_connections(max_conns)
        .max_idle_connections_per_host(max_conns)
        .user_agent(concat!("aiproxy/", env!("CARGO_PKG_VERSION")))
        .build();
    // Every connection is tracked, so a cancelled call's exchange can be shut down at once.
    Ok(Agent::with_parts(
        config,
        super::exchange::Cancellable::default(),
        ureq::unversioned::resolver::DefaultResolver::default(),
    ))
}

/// The CA certificates of a PEM file (`ca_file`), at least one; at most 1 MiB is read.
fn ca_certs(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let shown = path.display();
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1024 * 1024).read_to_end(&mut pem))
        .map_err(|e| format!("cannot read ca_file {shown}: {e}"))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("ca_file {shown} holds no PEM certificate"));
    }
    Ok(certs)
}

/// Put the configured headers on a request.
pub fn with_headers<B>(
    mut req: RequestBuilder<B>,
    headers: &[(String, Secret)],
) -> RequestBuilder<B> {
    for (name, value) in headers {
        req = req.header(name.as_str(), value.expose());
    }
    req
}

/// Connection setup within `deadline` (and never beyond [`CONNECT_TIMEOUT`]).
pub fn connect_within(deadline: Instant) -> Option<Duration> {
    Some(
        deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), CONNECT_TIMEOUT),
    )
}

/// Time left until `deadline` plus [`MARGIN`], as ureq wants it.
pub fn until(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now()) + MARGIN)
}

/// A failed HTTP exchange: whether the request surely never reached the server, and why.
pub struct Failed {
    pub not_delivered: bool,
    pub reason: String,
}

/// Classify a ureq error. Failures while connecting mean the request was never sent; anything
/// later (a reset, a timeout waiting for the answer) may have reached the server.
/// A POST that got no answer. A timeout is a timeout; a message that never left (refused,
/// unreachable) means the session is unreachable: `die` ends it and the caller may retry on a
/// new one; otherwise the server may have read the body, so it is not safe to call the message
/// "not sent" and it is reported as refused.
pub fn post_failure(e: &ureq::Error, url: &str, die: impl FnOnce(&str)) -> SendError {
    if matches!(e, ureq::Error::Timeout(_)) {
        return SendError::Timeout;
    }
    let f = classify(e);
    if f.not_delivered {
        // The configured URL, never an SSE endpoint: its query carries the session id.
        let reason = format!(
            "cannot reach {}: {}",
            crate::secret::display_url(url),
            f.reason
        );
        die(&reason);
        SendError::Closed(reason)
    } else {
        SendError::Rejected(format!("POST failed: {}", f.reason))
    }
}

pub fn classify(e: &ureq::Error) -> Failed {
    use ureq::Timeout;
    let not_delivered = match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::NotConnected
        ),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => true,
        _ => false,
    };
    Failed {
        not_delivered,
        // ureq's text may quote the URL (bad URI) and never a header; key shapes are masked
        // all the same.
        reason: crate::secret::scrub(&e.to_string(), &[]),
    }
}

/// Read a whole body, at most `limit` bytes (more is an error).
pub fn read_body(body: ureq::Body, limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    body.into_reader()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("reading the response: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("response larger than {limit} bytes"));
    }
    Ok(out)
}

/// The first bytes of an error body, as text for a message.
pub fn error_text(body: ureq::Body) -> String {
    let mut out = Vec::new();
    let _ = body
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut out);
    let text = crate::secret::scrub(String::from_utf8_lossy(&out).trim(), &[]);
    crate::mcp::protocol::cut(&text, 300)
}

/// A 3xx answer as an error message naming where the server points.
pub fn redirect_text(res: &ureq::http::Response<ureq::Body>) -> String {
    let to = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "elsewhere".to_string(),
            |l| crate::mcp::protocol::cut(l, 200),
        );
    format!(
        "HTTP {} redirect to {to} (redirects are not followed: configure that URL)",
        res.status().as_u16()
    )
}

/// The media type of a response (`text/event-stream`, `application/json`), lowercased.
pub fn media_type(res: &ureq::http::Response<ureq::Body>) -> String {
    res.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// `scheme://authority` of an absolute http(s) URL, lowercased.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() {
        return None;
    }
    Some(format!("{}://{}", scheme, authority).to_ascii_lowercase())
}

/// Resolve `reference` (the legacy `endpoint` event's data) against `base` (the SSE URL), as a
/// browser resolves a link: absolute, scheme-relative, absolute-path or relative-path.
pub fn resolve(base: &str, reference: &str) -> Result<String, String> {
    let reference = reference.trim();
    if reference.is_empty() {
        return Err("empty endpoint".into());
    }
    let lower = reference.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(reference.to_string());
    }
    let origin = origin(base).ok_or_else(|| format!("bad base url {base:?}"))?;
    let scheme = origin.split("://").next().unwrap_or("http");
    if let Some(rest) = reference.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if reference.starts_with('/') {
        return Ok(format!("{origin}{reference}"));
    }
    // Relative path: replace the last segment of the base path; a query-only reference keeps
    // the whole path.
    let after = base.split_once("://").map_or(base, |(_, rest)| rest);
    let base_path = match after.find('/') {
        Some(i) => after
            .get(i..)
            .and_then(|p| p.split(['?', '#']).next())
            .unwrap_or("/"),
        None => "/",
    };
    if reference.starts_with('?') {
        return Ok(format!("{origin}{base_path}{reference}"));
    }
    let dir = base_path
        .get(..base_path.rfind('/').map_or(0, |i| i + 1))
        .unwrap_or_default();
    let dir = if dir.is_empty() { "/" } else { dir };
    Ok(format!("{origin}{dir}{reference}"))
}

/// A bounded count of live stream threads. A slot is taken before a thread is spawned and
/// released when the thread ends (the guard moves into the thread).
#[derive(Clone)]
pub struct Slots(Arc<(Mutex<usize>, Condvar, usize)>);

pub struct Slot(Arc<(Mutex<usize>, Condvar, usize)>);

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots(Arc::new((Mutex::new(0), Condvar::new(), max.max(1))))
    }

    /// Take a slot, waiting until `deadline` at most.
    pub fn acquire(&self, deadline: Instant) -> Option<Slot> {
        let (used, freed, max) = &*self.0;
        let mut n = used.lock();
        while *n >= *max {
            // In slices, so the caller's hook runs meanwhile (`mcp::tick_caller`).
            let slice = (Instant::now() + WAIT_SLICE).min(deadline);
            if freed.wait_until(&mut n, slice).timed_out() && *n >= *max {
                if Instant::now() >= deadline {
                    return None;
                }
                MutexGuard::unlocked(&mut n, crate::mcp::tick_caller);
            }
        }
        *n += 1;
        Some(Slot(self.0.clone()))
    }

    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        *self.0.0.lock()
    }

    /// Wait until every slot is back, at most until `deadline`.
    pub fn drain(&self, deadline: Instant) -> bool {
        let (used, freed, _) = &*self.0;
        let mut n = used.lock();
        while *n > 0 {
            if freed.wait_until(&mut n, deadline).timed_out() {
                return *n == 0;
            }
        }
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (used, freed, _) = &*self.0;
        *used.lock() -= 1;
        freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_like_links() {
        let base = "http://127.0.0.1:3101/sse";
        assert_eq!(
            resolve(base, "/message?sessionId=abc").unwrap(),
            "http://127.0.0.1:3101/message?sessionId=abc"
        );
        assert_eq!(
            resolve("http://h:1/a/b/sse?x=1", "messages/?session_id=9").unwrap(),
            "http://h:1/a/b/messages/?session_id=9"
        );
        assert_eq!(
            resolve("http://h:1/a/sse", "?s=1").unwrap(),
            "http://h:1/a/sse?s=1"
        );
        assert_eq!(resolve("http://h:1", "m?s=1").unwrap(), "http://h:1/m?s=1");
        assert_eq!(
            resolve("https://h/sse", "//other/x").unwrap(),
            "https://other/x"
        );
        assert_eq!(
            resolve(base, "http://elsewhere:9/m").unwrap(),
            "http://elsewhere:9/m"
        );
        assert!(resolve(base, "  ").is_err());
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(
            origin("HTTP://Host:80/x?y").as_deref(),
            Some("http://host:80")
        );
        assert_eq!(origin("http://h").as_deref(), Some("http://h"));
        assert_eq!(origin("nope"), None);
    }

    #[test]
    fn spec_validation_names_the_header_but_not_its_value() {
        let spec = |name: &str, value: &str| RemoteSpec {
            url: "http://h/mcp".into(),
            headers: vec![(name.into(), Secret::new(value))],
            idle: Duration::from_secs(1),
            max_streams: 1,
            ca_file: None,
        };
        assert!(spec("Authorization", "Bearer x").validate().is_ok());
        let err = spec("X-Key", "sec\nret").validate().unwrap_err();
        assert!(err.contains("X-Key") && !err.contains("sec"), "{err}");
        assert!(spec("bad name", "v").validate().is_err());
        let mut s = spec("A", "b");
        s.url = "ftp://h".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn slots_bound_and_release() {
        let slots = Slots::new(2);
        let a = slots.acquire(Instant::now()).unwrap();
        let _b = slots.acquire(Instant::now()).unwrap();
        let t0 = Instant::now();
        assert!(
            slots
                .acquire(Instant::now() + Duration::from_millis(50))
                .is_none()
        );
        assert!(t0.elapsed() >= Duration::from_millis(50));
        let s2 = slots.clone();
        let h = std::thread::spawn(move || {
            s2.acquire(Instant::now() + Duration::from_secs(5))
                .is_some()
        });
        std::thread::sleep(Duration::from_millis(30));
        drop(a);
        assert!(h.join().unwrap());
        // The thread's slot went back when it ended; `_b` still holds one.
        assert_eq!(slots.in_use(), 1);
        assert!(!slots.drain(Instant::now() + Duration::from_millis(10)));
    }
}
