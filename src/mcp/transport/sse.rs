//! Legacy HTTP+SSE transport (2024-11-05 basic/transports.mdx; still served by many servers).
//!
//! The session is one long `GET` event stream: its first event, `endpoint`, names (usually
//! relative, with the session in the query) the URL every client message is `POST`ed to; every
//! server message (replies, notifications, server requests) arrives on the stream as a
//! `message` event. The session lives exactly as long as that stream; there is no resumption.
//!
//! Thread model: one reader thread per connection owns the stream, decodes events with the
//! shared bounded parser and hands messages to the client's dispatcher. Senders `POST` on the
//! caller's thread, bounded by their deadline (servers answer `202` at once and reply on the
//! stream; a POST to an unknown session can hang on some servers, notes A.12). Closing shuts
//! the connection's ureq agent down, which interrupts the reader's blocked read at once.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, bounded};
use parking_lot::{Condvar, Mutex};
use ureq::Agent;

use super::web::{self, RemoteSpec};
use super::{Grace, Inbound, Outbound, SendError, Transport};
use crate::mcp::jsonrpc::{Message, decode_frame, oversized_id};
use crate::mcp::protocol::cut;
use crate::secret::display_url;
use crate::sse_codec::{SseItem, SseReader};

/// Longest single wait for the endpoint event, so the caller's hook runs meanwhile.
const ENDPOINT_WAIT_SLICE: Duration = Duration::from_millis(100);

/// A connected legacy SSE session. Dropping it closes the connection.
pub struct SseTransport {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    spec: RemoteSpec,
    agent: Agent,
    inbound: Arc<dyn Inbound>,
    /// The POST URL from the `endpoint` event; set once before `connect` returns.
    endpoint: Mutex<Option<String>>,
    open: AtomicBool,
    closing: AtomicBool,
    notified: AtomicBool,
    reader_done: Mutex<bool>,
    reader_cv: Condvar,
}

impl SseTransport {
    /// Open the event stream and wait (until `deadline`) for the `endpoint` event.
    pub fn connect(
        name: &str,
        spec: RemoteSpec,
        inbound: Arc<dyn Inbound>,
        deadline: Instant,
    ) -> Result<SseTransport, String> {
        spec.validate()?;
        let agent = web::agent(spec.max_streams.min(16), spec.ca_file.as_deref())?;
        let req = web::with_headers(
            agent
                .get(&spec.url)
                .header("Accept", "text/event-stream")
                .header("Cache-Control", "no-cache"),
            &spec.headers,
        )
        .config()
        .timeout_connect(web::connect_within(deadline))
        .timeout_recv_response(Some(deadline.saturating_duration_since(Instant::now())))
        .timeout_per_read(Some(spec.idle))
        .build();
        let res = req.call().map_err(|e| {
            format!(
                "GET {}: {}",
                display_url(&spec.url),
                web::classify(&e).reason
            )
        })?;
        let status = res.status().as_u16();
        if (300..400).contains(&status) {
            return Err(format!(
                "GET {}: {}",
                display_url(&spec.url),
                web::redirect_text(&res)
            ));
        }
        if !(200..300).contains(&status) {
            let text = web::error_text(res.into_body());
            return Err(format!(
                "GET {}: HTTP {status}: {text}",
                display_url(&spec.url)
            ));
        }
        let media = web::media_type(&res);
        if media != "text/event-stream" {
            return Err(format!(
                "GET {} answered {media:?}, not an event stream (is this an SSE endpoint?)",
                display_url(&spec.url)
            ));
        }
        let shared = Arc::new(Shared {
            name: name.to_string(),
            spec,
            agent,
            inbound,
            endpoint: Mutex::new(None),
            open: AtomicBool::new(true),
            closing: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            reader_done: Mutex::new(false),
            reader_cv: Condvar::new(),
        });
        let transport = SseTransport {
            shared: shared.clone(),
        };
        let (tx, rx) = bounded::<Result<String, String>>(1);
        let body = res.into_body();
        let s = shared.clone();
        if let Err(e) = thread::Builder::new()
            .name(format!("mcp-{name}-sse"))
            .spawn(move || s.read_stream(body, tx))
        {
            *shared.reader_done.lock() = true;
            return Err(format!("cannot start reader thread: {e}"));
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        // In slices, so the caller's hook runs meanwhile (`mcp::tick_caller`).
        let received = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(ENDPOINT_WAIT_SLICE)) {
                Err(RecvTimeoutError::Timeout) if !left.is_zero() => crate::mcp::tick_caller(),
                other => break other,
            }
        };
        let endpoint = match received {
            Ok(Ok(endpoint)) => endpoint,
            Ok(Err(reason)) => return Err(reason),
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "no endpoint event on {} within {} ms",
                    display_url(&shared.spec.url),
                    wait.as_millis()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the event stream ended before the endpoint event".into());
            }
        };
        log::info!(
            "mcp[{name}]: connected to {} (legacy SSE)",
            display_url(&shared.spec.url)
        );
        *shared.endpoint.lock() = Some(endpoint);
        // On any early return above, dropping `transport` closes the connection.
        Ok(transport)
    }
}

impl Outbound for SseTransport {
    fn send(&self, msg: &Message, deadline: Instant) -> Result<(), SendError> {
        self.shared.send(msg, deadline)
    }
}

impl Transport for SseTransport {
    fn close(&self, _grace: Grace) {
        self.shared.shutdown();
    }
    fn is_open(&self) -> bool {
        self.shared.open.load(Ordering::Acquire)
    }
    fn supports_modern(&self) -> bool {
        false
    }
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

impl Outbound for Shared {
    fn send(&self, msg: &Message, deadline: Instant) -> Result<(), SendError> {
        if !self.open.load(Ordering::Acquire) {
            return Err(SendError::Closed("the event stream is closed".into()));
        }
        let Some(endpoint) = self.endpoint.lock().clone() else {
            return Err(SendError::Closed("no endpoint yet".into()));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SendError::Timeout);
        }
        let req = web::with_headers(
            self.agent
                .post(&endpoint)
                .header("Content-Type", "application/json"),
            &self.spec.headers,
        )
        .config()
        .timeout_global(Some(left))
        .build();
        match req.send(msg.to_line()) {
            Ok(res) => {
                let status = res.status().as_u16();
                // Read the short acknowledgement so the connection can be reused.
                let text = web::error_text(res.into_body());
                match status {
                    200..=299 => Ok(()),
                    // The server forgot the session (Python servers say 404 "Could not find
                    // session"): it is over, and this message was not taken.
                    404 | 410 => {
                        self.die(&format!("session not found (HTTP {status})"));
                        Err(SendError::Closed("session expired".into()))
                    }
                    _ => Err(SendError::Rejected(format!("HTTP {status}: {text}"))),
                }
            }
            Err(e) => Err(web::post_failure(&e, &self.spec.url, |r| self.die(r))),
        }
    }
}

impl Shared {
    /// The reader thread: deliver the endpoint once, then every message, until the stream ends.
    fn read_stream(
        self: Arc<Self>,
        body: ureq::Body,
        endpoint_tx: crossbeam_channel::Sender<Result<String, String>>,
    ) {
        // One oversized message is dropped as it arrives and fails only its own call.
        let mut events =
            SseReader::new(BufReader::new(body.into_reader()), web::MAX_EVENT).skip_oversized();
        let mut have_endpoint = false;
        let reason = loop {
            match events.next_item() {
                Ok(Some(SseItem::Idle)) => {
                    if let Some((head, tail)) = events.take_oversized() {
                        let id = oversized_id(&head, &tail);
                        log::warn!(
                            "mcp[{}]: discarded a message over {} bytes ({})",
                            self.name,
                            web::MAX_EVENT,
                            id.as_ref()
                                .map_or("reply to an unknown request".to_string(), |id| {
                                    format!("reply to request {id}")
                                })
                        );
                        self.inbound.on_oversized(id.as_ref(), web::MAX_EVENT);
                    }
                }
                Ok(Some(SseItem::Event(ev))) => match ev.kind() {
                    "endpoint" if !have_endpoint => {
                        have_endpoint = true;
                        let _ = endpoint_tx.try_send(self.check_endpoint(&ev.data));
                    }
                    "endpoint" => log::debug!("mcp[{}]: ignoring a second endpoint", self.name),
                    "message" if !ev.data.trim().is_empty() => self.deliver(&ev.data),
                    _ => {}
                },
                Ok(None) => break "the server closed the event stream".to_string(),
                Err(e) if e.to_string().contains("timeout") => {
                    break format!(
                        "the event stream was silent for {} s",
                        self.spec.idle.as_secs()
                    );
                }
                Err(e) => break format!("reading the event stream: {e}"),
            }
        };
        if !have_endpoint {
            let _ = endpoint_tx.try_send(Err(reason.clone()));
        }
        if !self.closing.load(Ordering::Acquire) {
            log::warn!("mcp[{}]: session ended: {reason}", self.name);
            self.die(&reason);
        }
        *self.reader_done.lock() = true;
        self.reader_cv.notify_all();
    }

    /// Resolve the endpoint against the stream URL. It must stay on the same origin: the
    /// configured headers (credentials) go with every POST.
    fn check_endpoint(&self, data: &str) -> Result<String, String> {
        let url = web::resolve(&self.spec.url, data)?;
        if web::origin(&url) != web::origin(&self.spec.url) {
            return Err(format!(
                "the server named an endpoint on another origin ({}); refused",
                display_url(&web::origin(&url).unwrap_or_default())
            ));
        }
        Ok(url)
    }

    fn deliver(&self, data: &str) {
        match decode_frame(data.as_bytes()) {
            Ok((msgs, bad)) => {
                for b in bad {
                    log::warn!("mcp[{}]: skipping a bad batch member: {b}", self.name);
                }
                for m in msgs {
                    self.inbound.on_message(m, self);
                }
            }
            Err(e) => log::warn!(
                "mcp[{}]: skipping an undecodable message event ({e}): {}",
                self.name,
                cut(data, 200)
            ),
        }
    }

    /// The session is over (stream ended, session unknown, server unreachable).
    fn die(&self, reason: &str) {
        self.open.store(false, Ordering::Release);
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.inbound.on_closed(reason);
        }
    }

    fn shutdown(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            self.wait_reader(Duration::from_secs(3));
            return;
        }
        self.die("server stopped");
        // Interrupts the reader's blocked read and any POST in flight.
        self.agent.clone().shutdown();
        self.wait_reader(Duration::from_secs(3));
    }

    fn wait_reader(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut done = self.reader_done.lock();
        while !*done {
            if self.reader_cv.wait_until(&mut done, deadline).timed_out() {
                log::warn!("mcp[{}]: event stream reader did not stop", self.name);
                return;
            }
        }
    }
}
