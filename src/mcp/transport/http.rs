//! Streamable HTTP transport (2025-03-26 … 2025-11-25 basic/transports.mdx, and the stateless
//! 2026-07-28 basic/transports/streamable-http.mdx).
//!
//! Every client message is one `POST` to the MCP endpoint with `Accept: application/json,
//! text/event-stream`. Notifications and responses get `202` and are sent on the caller's
//! thread. A request's reply comes as a JSON body or as an SSE stream that may also carry
//! notifications and server requests; it is read on a worker thread of its own (so concurrent
//! calls stay concurrent), and a stream cut before the reply is resumed with `GET` +
//! `Last-Event-ID` after the server's `retry` delay (`http_stream.rs`). Legacy sessions carry
//! `Mcp-Session-Id` (from the `initialize` response) and `MCP-Protocol-Version`, get a
//! standalone `GET` stream for server messages when the server offers one, and are ended with
//! `DELETE`. Modern (2026-07-28) requests carry the version from their `_meta` plus
//! `Mcp-Method` / `Mcp-Name` headers, and have no session, GET stream or DELETE.
//!
//! Session expiry: a `404` (or a `400` that mentions the session: server-everything's quirk) to
//! a request that carried a session id marks the transport dead and fails that request as never
//! delivered, so the client re-initializes and retries it once. A connection that cannot be
//! made marks it dead too. In-flight streams of a dead transport still finish.
//!
//! Thread model: worker threads (one per request in flight, plus one for the GET stream) are
//! bounded by [`RemoteSpec::max_streams`]; each owns its response. Closing shuts the
//! connection's ureq agent down, which interrupts every blocked read at once.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use ureq::Agent;
use ureq::http::Response;

use super::exchange::{self, Exchange};
use super::web::{self, RemoteSpec, Slots};
use super::{Grace, Inbound, Outbound, RequestFailure, SendError, Transport};
use crate::mcp::jsonrpc::{Id, Message, decode_frame};
use crate::mcp::protocol::cut;
use crate::mcp::{era, headers};

/// A connected streamable-HTTP server. Dropping it ends the session.
pub struct HttpTransport {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) name: String,
    pub(super) spec: RemoteSpec,
    pub(super) agent: Agent,
    pub(super) inbound: Arc<dyn Inbound>,
    session_id: Mutex<Option<String>>,
    /// The negotiated legacy revision, sent as `MCP-Protocol-Version` after the handshake.
    version: Mutex<Option<String>>,
    pub(super) modern: AtomicBool,
    open: AtomicBool,
    pub(super) closing: AtomicBool,
    notified: AtomicBool,
    pub(super) streams: Slots,
    shutdown_done: Mutex<bool>,
    shutdown_cv: Condvar,
    /// The exchange of each request in flight (at most `max_streams`), for cancellation.
    exchanges: Mutex<HashMap<Id, Arc<Exchange>>>,
}

impl HttpTransport {
    /// Nothing is sent yet: the first request (the era probe or `initialize`) opens the
    /// connection.
    pub fn connect(
        name: &str,
        spec: RemoteSpec,
        inbound: Arc<dyn Inbound>,
    ) -> Result<HttpTransport, String> {
        spec.validate()?;
        let agent = web::agent(spec.max_streams, spec.ca_file.as_deref())?;
        let streams = Slots::new(spec.max_streams);
        log::debug!(
            "mcp[{name}]: streamable HTTP to {}",
            crate::secret::display_url(&spec.url)
        );
        Ok(HttpTransport {
            shared: Arc::new(Shared {
                name: name.to_string(),
                spec,
                agent,
                inbound,
                session_id: Mutex::new(None),
                version: Mutex::new(None),
                modern: AtomicBool::new(false),
                open: AtomicBool::new(true),
                closing: AtomicBool::new(false),
                notified: AtomicBool::new(false),
                streams,
                shutdown_done: Mutex::new(false),
                shutdown_cv: Condvar::new(),
                exchanges: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl Outbound for HttpTransport {
    fn send(&self, msg: &Message, deadline: Instant) -> Result<(), SendError> {
        self.shared.send(msg, deadline)
    }
    fn send_with_headers(
        &self,
        msg: &Message,
        deadline: Instant,
        headers: &[(String, String)],
    ) -> Result<(), SendError> {
        self.shared.send_with_headers(msg, deadline, headers)
    }
}

impl Transport for HttpTransport {
    fn close(&self, grace: Grace) {
        self.shared.shutdown(grace);
    }
    fn is_open(&self) -> bool {
        self.shared.open.load(Ordering::Acquire)
    }
    /// Shut the request's connection down now: the server sees its stream close (the
    /// 2026-07-28 cancellation) and the worker reading the reply wakes at once.
    fn cancel_request(&self, id: &Id) {
        let exchange = self.shared.exchanges.lock().get(id).cloned();
        if let Some(ex) = exchange {
            ex.cancel();
        }
    }
    fn negotiated(&self, protocol_version: &str) {
        *self.shared.version.lock() = Some(protocol_version.to_string());
    }
    fn session_ready(&self, protocol_version: &str, deadline: Instant) {
        if era::is_modern(protocol_version) {
            self.shared.modern.store(true, Ordering::Release);
            return;
        }
        *self.shared.version.lock() = Some(protocol_version.to_string());
        // Without a session the server cannot tell whose stream a GET would be (stateless
        // servers answer 405, or hold it open for nothing).
        if self.shared.session_id.lock().is_some() {
            self.shared.clone().start_listening(deadline);
        }
    }
}

impl Drop for HttpTransport {
    fn drop(&mut self) {
        self.shared.shutdown(Grace::QUICK);
    }
}

impl Outbound for Arc<Shared> {
    fn send(&self, msg: &Message, deadline: Instant) -> Result<(), SendError> {
        self.send_with_headers(msg, deadline, &[])
    }

    fn send_with_headers(
        &self,
        msg: &Message,
        deadline: Instant,
        headers: &[(String, String)],
    ) -> Result<(), SendError> {
        if !self.open.load(Ordering::Acquire) {
            return Err(SendError::Closed("the session is over".into()));
        }
        match msg {
            Message::Request { id, .. } => {
                let slot = self.streams.acquire(deadline).ok_or(SendError::Timeout)?;
                let me = self.clone();
                let (id, msg, headers) = (id.clone(), msg.clone(), headers.to_vec());
                let had_session = self.session_id.lock().is_some();
                // Registered before the thread starts, so a cancel never misses it.
                let exchange = Arc::new(Exchange::default());
                let key = id.clone();
                self.exchanges
                    .lock()
                    .insert(key.clone(), Arc::clone(&exchange));
                let spawned = thread::Builder::new()
                    .name(format!("mcp-{}-req", self.name))
                    .spawn(move || {
                        let _slot = slot;
                        {
                            let _entered = exchange::enter(&exchange);
                            me.run_request(&id, &msg, &headers, deadline, had_session);
                        }
                        me.exchanges.lock().remove(&id);
                    });
                spawned.map(|_| ()).map_err(|e| {
                    self.exchanges.lock().remove(&key);
                    SendError::Closed(format!("cannot start a thread: {e}"))
                })
            }
            _ => self.send_one_way(msg, deadline),
        }
    }
}

/// Whether an error answer says the session is unknown: `404` always (transports.mdx), and
/// `400` when its text mentions the session (server-everything answers "Bad Request: No valid
/// session ID provided"); only for a request that carried a session id.
fn session_gone(status: u16, text: &str, had_session: bool) -> bool {
    had_session
        && (status == 404 || (status == 400 && text.to_ascii_lowercase().contains("session")))
}

impl Shared {
    /// The protocol headers of one message.
    fn protocol_headers(&self, msg: &Message) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let (method, params) = match msg {
            Message::Request { method, params, .. } | Message::Notification { method, params } => {
                (Some(method.as_str()), params.as_ref())
            }
            _ => (None, None),
        };
        match era::meta_version(params) {
            Some(v) => {
                out.push(("MCP-Protocol-Version", v.to_string()));
                if let Some(m) = method {
                    out.push(("Mcp-Method", headers::header_value(m)));
                    let key = match m {
                        "tools/call" | "prompts/get" => Some("name"),
                        "resources/read" => Some("uri"),
                        _ => None,
                    };
                    if let Some(name) = key
                        .and_then(|k| params.and_then(|p| p.get(k)))
                        .and_then(|v| v.as_str())
                    {
                        out.push(("Mcp-Name", headers::header_value(name)));
                    }
                }
            }
            // Never on `initialize` itself: a dual-era server would take it for modern.
            None if method != Some("initialize") => {
                if let Some(v) = self.version.lock().clone() {
                    out.push(("MCP-Protocol-Version", v));
                }
            }
            None => {}
        }
        out
    }

    /// Headers every request of this session carries: configured ones, session id, version.
    pub(super) fn request<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let mut req = web::with_headers(req, &self.spec.headers);
        if let Some(sid) = self.session_id.lock().clone() {
            req = req.header("Mcp-Session-Id", sid);
        }
        if let Some(v) = self.version.lock().clone() {
            req = req.header("MCP-Protocol-Version", v);
        }
        req
    }

    fn post(
        &self,
        msg: &Message,
        extra: &[(String, String)],
        deadline: Instant,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut req = web::with_headers(
            self.agent
                .post(&self.spec.url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream"),
            &self.spec.headers,
        );
        if let Some(sid) = self.session_id.lock().clone() {
            req = req.header("Mcp-Session-Id", sid);
        }
        for (k, v) in self.protocol_headers(msg) {
            req = req.header(k, v);
        }
        for (k, v) in extra {
            req = req.header(k.as_str(), v.as_str());
        }
        // The whole exchange, reply stream included, ends at the deadline (+ margin): a reply
        // that has not come by then has no caller, and a server that trickles keep-alive
        // comments must not keep this connection and its thread.
        req.config()
            .timeout_connect(web::connect_within(deadline))
            .timeout_recv_response(web::until(deadline))
            .timeout_per_read(web::until(deadline))
            .timeout_global(web::until(deadline))
            .build()
            .send(msg.to_line())
    }

    /// A worker thread: POST one request and deliver its reply (or its failure).
    fn run_request(
        self: &Arc<Self>,
        id: &Id,
        msg: &Message,
        extra: &[(String, String)],
        deadline: Instant,
        had_session: bool,
    ) {
        let res = match self.post(msg, extra, deadline) {
            Ok(res) => res,
            Err(e) => {
                let f = web::classify(&e);
                if f.not_delivered && !self.closing.load(Ordering::Acquire) {
                    let reason = format!(
                        "cannot reach {}: {}",
                        crate::secret::display_url(&self.spec.url),
                        f.reason
                    );
                    self.die(&reason);
                    self.inbound
                        .on_request_failed(id, RequestFailure::NotDelivered(reason));
                } else {
                    self.inbound
                        .on_request_failed(id, RequestFailure::Lost(f.reason));
                }
                return;
            }
        };
        let status = res.status().as_u16();
        let is_initialize =
            matches!(msg, Message::Request { method, .. } if method == "initialize");
        if is_initialize && (200..300).contains(&status) {
            self.keep_session_id(&res);
        }
        if (300..400).contains(&status) {
            let why = web::redirect_text(&res);
            return self
                .inbound
                .on_request_failed(id, RequestFailure::Refused(why));
        }
        if !(200..300).contains(&status) {
            return self.request_refused(id, status, res.into_body(), had_session);
        }
        match web::media_type(&res).as_str() {
            "text/event-stream" => self.follow(id, res.into_body(), deadline),
            "application/json" => self.json_reply(id, res.into_body()),
            other => {
                let _ = web::error_text(res.into_body());
                self.inbound.on_request_failed(
                    id,
                    RequestFailure::Lost(format!(
                        "HTTP {status} ({}) without a reply",
                        if other.is_empty() { "no body" } else { other }
                    )),
                );
            }
        }
    }

    fn keep_session_id(&self, res: &Response<ureq::Body>) {
        let sid = res
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        if let Some(sid) = sid {
            *self.session_id.lock() = Some(sid.to_string());
        }
    }

    /// A JSON body: deliver every message in it; the reply to `id` must be among them.
    fn json_reply(self: &Arc<Self>, id: &Id, body: ureq::Body) {
        let bytes = match web::read_body(body, web::MAX_BODY) {
            Ok(b) => b,
            Err(e) if e.starts_with("response larger than") => {
                let limit = usize::try_from(web::MAX_BODY).unwrap_or(usize::MAX);
                return self
                    .inbound
                    .on_request_failed(id, RequestFailure::TooLarge(limit));
            }
            Err(e) => return self.inbound.on_request_failed(id, RequestFailure::Lost(e)),
        };
        match decode_frame(&bytes) {
            Ok((msgs, _)) => {
                let mut answered = false;
                for m in msgs {
                    let m = with_id(m, id);
                    answered |= answers(&m, id);
                    self.inbound.on_message(m, self);
                }
                if !answered {
                    self.inbound.on_request_failed(
                        id,
                        RequestFailure::Lost("the JSON response holds no reply".into()),
                    );
                }
            }
            Err(e) => self.inbound.on_request_failed(
                id,
                RequestFailure::Lost(format!("undecodable JSON response: {e}")),
            ),
        }
    }

    /// An error status: session expiry, a JSON-RPC error body, or a plain HTTP refusal.
    fn request_refused(
        self: &Arc<Self>,
        id: &Id,
        status: u16,
        body: ureq::Body,
        had_session: bool,
    ) {
        let text = web::error_text(body);
        if session_gone(status, &text, had_session) {
            // Dead before the failure is reported, so the retry starts a fresh session.
            self.die(&format!("session expired (HTTP {status})"));
            self.inbound.on_request_failed(
                id,
                RequestFailure::NotDelivered(format!("session expired (HTTP {status})")),
            );
            return;
        }
        if let Ok((msgs, _)) = decode_frame(text.as_bytes())
            && let Some(m) = msgs
                .into_iter()
                .find(|m| matches!(m, Message::Error { .. }))
        {
            let m = with_id(m, id);
            if answers(&m, id) {
                return self.inbound.on_message(m, self);
            }
        }
        self.inbound.on_request_failed(
            id,
            RequestFailure::Refused(format!("HTTP {status}: {}", cut(&text, 300))),
        );
    }

    /// Notifications and responses: POST, expect 2xx, on the caller's thread.
    fn send_one_way(&self, msg: &Message, deadline: Instant) -> Result<(), SendError> {
        if self.modern.load(Ordering::Acquire)
            && matches!(msg, Message::Notification { method, .. } if method == "notifications/cancelled")
        {
            // 2026-07-28: a request is cancelled by closing its stream, which the worker does
            // once nobody waits for the reply.
            return Ok(());
        }
        let had_session = self.session_id.lock().is_some();
        match self.post(msg, &[], deadline) {
            Ok(res) => {
                let status = res.status().as_u16();
                let streamed = web::media_type(&res) == "text/event-stream";
                let text = if streamed {
                    String::new()
                } else {
                    web::error_text(res.into_body())
                };
                match status {
                    200..=299 => Ok(()),
                    s if session_gone(s, &text, had_session) => {
                        self.die(&format!("session expired (HTTP {s})"));
                        Err(SendError::Closed("session expired".into()))
                    }
                    s => Err(SendError::Rejected(format!("HTTP {s}: {text}"))),
                }
            }
            Err(e) => Err(web::post_failure(&e, &self.spec.url, |r| self.die(r))),
        }
    }

    /// The session is over for new requests; in-flight streams finish on their own.
    pub(super) fn die(&self, reason: &str) {
        if self.open.swap(false, Ordering::AcqRel) && !self.closing.load(Ordering::Acquire) {
            log::warn!("mcp[{}]: session ended: {reason}", self.name);
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire) && !self.closing.load(Ordering::Acquire)
    }

    fn shutdown(&self, grace: Grace) {
        if self.closing.swap(true, Ordering::AcqRel) {
            let limit = Instant::now() + Duration::from_secs(5);
            let mut done = self.shutdown_done.lock();
            while !*done {
                if self.shutdown_cv.wait_until(&mut done, limit).timed_out() {
                    break;
                }
            }
            return;
        }
        let was_open = self.open.swap(false, Ordering::AcqRel);
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.inbound.on_closed("server stopped");
        }
        let sid = self.session_id.lock().clone();
        if was_open && sid.is_some() && !self.modern.load(Ordering::Acquire) {
            self.delete(
                grace
                    .polite
                    .clamp(Duration::from_millis(500), Duration::from_secs(2)),
            );
        }
        // Interrupts every blocked read (reply streams, the GET stream) at once.
        self.agent.clone().shutdown();
        if !self.streams.drain(Instant::now() + Duration::from_secs(3)) {
            log::warn!("mcp[{}]: stream threads did not stop in time", self.name);
        }
        *self.shutdown_done.lock() = true;
        self.shutdown_cv.notify_all();
    }

    /// End the session politely (transports.mdx "Session Management"); 405 is fine too.
    fn delete(&self, limit: Duration) {
        let req = self
            .request(self.agent.delete(&self.spec.url))
            .config()
            .timeout_global(Some(limit))
            .build();
        match req.call() {
            Ok(res) => {
                let status = res.status().as_u16();
                let _ = web::error_text(res.into_body());
                log::debug!("mcp[{}]: session deleted (HTTP {status})", self.name);
            }
            Err(e) => log::debug!(
                "mcp[{}]: DELETE failed: {}",
                self.name,
                web::classify(&e).reason
            ),
        }
    }
}

/// An id-less error answers the request whose response carried it.
fn with_id(m: Message, id: &Id) -> Message {
    match m {
        Message::Error { id: None, error } => Message::Error {
            id: Some(id.clone()),
            error,
        },
        other => other,
    }
}

/// Whether `m` is the reply to `id` (ids we send are integers; a string echo counts).
pub(super) fn answers(m: &Message, id: &Id) -> bool {
    let got = match m {
        Message::Response { id, .. } | Message::Error { id: Some(id), .. } => id,
        _ => return false,
    };
    got == id || got.to_string().trim_matches('"') == id.to_string().trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_sessions_are_recognised() {
        assert!(session_gone(404, "", true));
        assert!(session_gone(
            400,
            r#"{"error":{"message":"Bad Request: No valid session ID provided"}}"#,
            true
        ));
        assert!(!session_gone(
            400,
            "Bad Request: Server not initialized",
            true
        ));
        assert!(!session_gone(404, "", false));
        assert!(!session_gone(500, "session", true));
    }

    #[test]
    fn replies_match_by_id_even_as_strings() {
        let r = Message::Response {
            id: Id::Str("7".into()),
            result: serde_json::json!({}),
        };
        assert!(answers(&r, &Id::Int(7)));
        assert!(!answers(&r, &Id::Int(8)));
        let e = with_id(Message::error(None, -32022, "v"), &Id::Int(3));
        assert!(answers(&e, &Id::Int(3)));
        assert!(!answers(
            &Message::notification("notifications/progress", None),
            &Id::Int(3)
        ));
    }
}
