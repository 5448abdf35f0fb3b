//! SSE streams of the streamable-HTTP transport: a request's reply stream (with resumption) and
//! the standalone `GET` stream for server-initiated messages.
//!
//! Resumption (2025-11-25 transports.mdx "Resumability and Redelivery", SEP-1699): a stream that
//! ends before the reply arrived, after the server gave its events ids, is reopened with `GET`
//! and `Last-Event-ID` once the server's `retry` delay has passed; the server replays what
//! followed. The modern revision has no resumption: its broken streams lose the request.
//!
//! Thread model: each function runs on the worker thread that owns the stream (a request's
//! worker, or the listener thread); waits are sliced so closing is noticed within ~50 ms, and
//! the agent's shutdown interrupts blocked reads. A reply stream ends when its caller gives up:
//! the SSE reader returns on every comment and idle tick, so a server that keeps the stream
//! alive with keep-alive comments cannot hold the thread (and its slot and connection); a
//! fully silent one is cut by the per-read timeout, and the POST's global timeout ends the
//! exchange at the call deadline (+ a small margin) whatever the server does.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};
use ureq::http::Response;

use super::RequestFailure;
use super::http::{Shared, answers};
use super::web;
use crate::mcp::jsonrpc::{Id, decode_frame};
use crate::mcp::protocol::cut;
use crate::sse_codec::{SseItem, SseReader};

/// Reconnect delay when the server gave no `retry`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// Longest `retry` we honour (a hostile value must not park a worker for hours).
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Resumptions of one reply stream before the request is given up.
const MAX_RESUMES: u32 = 5;
/// Standalone GET stream: reconnects after failures, with doubling back-off, before giving up.
const MAX_LISTEN_FAILURES: u32 = 6;
const SLEEP_SLICE: Duration = Duration::from_millis(50);
/// How often a reply stream that carries no events (only comments, or trickled bytes) is
/// checked for a caller that gave up.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// The handshake waits this long at most for the GET stream to open.
const OPEN_WAIT: Duration = Duration::from_secs(5);
/// A GET stream that ends sooner than this without an event counts as a failed attempt.
const QUICK_END: Duration = Duration::from_secs(5);

/// Where a stream left off.
#[derive(Default)]
struct Cursor {
    last_event_id: Option<String>,
    retry: Option<Duration>,
    /// Events seen so far (a stream that ends without any counts as a failure).
    events: u64,
}

enum End {
    /// The reply we wanted came.
    Replied,
    /// Nobody waits any more, or we are closing.
    Abandoned,
    /// The stream ended or broke.
    Ended(String),
    /// An event over [`web::MAX_EVENT`] bytes came: the reply was too large to keep.
    TooLarge,
}

impl Shared {
    /// Read a request's reply stream until its reply arrives, resuming it when cut.
    pub(super) fn follow(self: &Arc<Self>, id: &Id, body: ureq::Body, deadline: Instant) {
        let mut cursor = Cursor::default();
        let mut body = body;
        let mut resumes = 0;
        loop {
            let reason = match self.pump(body, Some(id), &mut cursor, deadline) {
                End::Replied | End::Abandoned => return,
                End::TooLarge => {
                    return self
                        .inbound
                        .on_request_failed(id, RequestFailure::TooLarge(web::MAX_EVENT));
                }
                End::Ended(reason) => reason,
            };
            let lost = |why: String| {
                self.inbound
                    .on_request_failed(id, RequestFailure::Lost(why));
            };
            let Some(last) = cursor.last_event_id.clone() else {
                return lost(format!("{reason} before the reply"));
            };
            if self.modern.load(Ordering::Acquire) || resumes >= MAX_RESUMES {
                return lost(format!("{reason} before the reply"));
            }
            resumes += 1;
            let wait = cursor.retry.unwrap_or(DEFAULT_RETRY).min(MAX_RETRY);
            if !self.sleep(wait, deadline, Some(id)) {
                return lost(format!("{reason}; gave up before resuming"));
            }
            log::debug!(
                "mcp[{}]: resuming reply stream of #{id} after {} ms",
                self.name,
                wait.as_millis()
            );
            match self.get(Some(&last), deadline, web::until(deadline)) {
                Ok(res) if is_stream(&res) => body = res.into_body(),
                Ok(res) => {
                    let status = res.status().as_u16();
                    let _ = web::error_text(res.into_body());
                    return lost(format!("{reason}; resuming it was refused (HTTP {status})"));
                }
                Err(e) => {
                    return lost(format!(
                        "{reason}; resuming it failed: {}",
                        web::classify(&e).reason
                    ));
                }
            }
        }
    }

    /// Open the standalone GET stream on a thread of its own, when a slot is free, and wait
    /// (until `deadline`, at most [`OPEN_WAIT`]) for the server's answer to the first GET.
    pub(super) fn start_listening(self: Arc<Self>, deadline: Instant) {
        let Some(slot) = self.streams.acquire(Instant::now()) else {
            log::debug!("mcp[{}]: no thread slot for the GET stream", self.name);
            return;
        };
        let (opened_tx, opened) = bounded::<()>(1);
        let name = format!("mcp-{}-get", self.name);
        let me = self.clone();
        let spawned = thread::Builder::new().name(name).spawn(move || {
            let _slot = slot;
            me.listen(opened_tx);
        });
        match spawned {
            Ok(_) => {
                let wait = deadline
                    .saturating_duration_since(Instant::now())
                    .min(OPEN_WAIT);
                let _ = opened.recv_timeout(wait);
            }
            Err(e) => log::warn!(
                "mcp[{}]: cannot start the GET stream thread: {e}",
                self.name
            ),
        }
    }

    /// The standalone GET stream: server requests and notifications unrelated to any request.
    /// A server without one answers 405 (or 404, as the conformance mocks do): then there is
    /// none. A stream that ends is reopened after `retry`, with `Last-Event-ID` when known.
    fn listen(self: Arc<Self>, opened: Sender<()>) {
        let mut cursor = Cursor::default();
        let mut failures = 0u32;
        while self.is_open() {
            // Far enough that only the idle limit and closing end a healthy stream.
            let horizon = Instant::now() + self.spec.idle;
            let res = self.get(
                cursor.last_event_id.as_deref(),
                horizon,
                Some(self.spec.idle),
            );
            // The first answer (stream, refusal or failure) releases the handshake.
            let _ = opened.try_send(());
            match res {
                Ok(res) if is_stream(&res) => {
                    let (before, opened_at) = (cursor.events, Instant::now());
                    if let End::Ended(reason) =
                        self.pump(res.into_body(), None, &mut cursor, horizon)
                    {
                        log::debug!("mcp[{}]: GET stream: {reason}", self.name);
                    }
                    // A server that keeps closing an empty stream at once is not polled at full
                    // speed (a quiet stream that lived a while is fine).
                    let useful = cursor.events > before || opened_at.elapsed() > QUICK_END;
                    failures = if useful { 0 } else { failures + 1 };
                }
                Ok(res) => {
                    let status = res.status().as_u16();
                    let _ = web::error_text(res.into_body());
                    log::debug!("mcp[{}]: no GET stream (HTTP {status})", self.name);
                    return;
                }
                Err(e) => {
                    failures += 1;
                    log::debug!(
                        "mcp[{}]: GET stream failed: {}",
                        self.name,
                        web::classify(&e).reason
                    );
                }
            }
            if failures >= MAX_LISTEN_FAILURES {
                return;
            }
            let backoff = DEFAULT_RETRY.saturating_mul(1 << failures.min(5));
            let wait = match failures {
                0 => cursor.retry.unwrap_or(DEFAULT_RETRY),
                _ => backoff,
            };
            let wait = wait.min(MAX_RETRY);
            if !self.sleep(wait, Instant::now() + wait + SLEEP_SLICE, None) {
                return;
            }
        }
    }

    /// GET the endpoint as an event stream (resumption or standalone); `per_read` bounds each
    /// silence on it.
    fn get(
        &self,
        last_event_id: Option<&str>,
        deadline: Instant,
        per_read: Option<Duration>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut req = self.request(
            self.agent
                .get(&self.spec.url)
                .header("Accept", "text/event-stream"),
        );
        if let Some(last) = last_event_id {
            req = req.header("Last-Event-ID", last);
        }
        req.config()
            .timeout_connect(web::connect_within(deadline))
            .timeout_recv_response(web::until(deadline))
            .timeout_per_read(per_read)
            .build()
            .call()
    }

    /// Deliver a stream's messages until the reply to `want` (if any) passes by, the stream
    /// ends, or nobody waits any more.
    fn pump(
        self: &Arc<Self>,
        body: ureq::Body,
        want: Option<&Id>,
        cursor: &mut Cursor,
        deadline: Instant,
    ) -> End {
        let mut events = SseReader::new(BufReader::new(body.into_reader()), web::MAX_EVENT)
            .with_idle_tick(IDLE_TICK);
        // A reply stream is read for one caller: once the caller gave up (its call timeout) or
        // the deadline passed, the stream is dropped, even if the server keeps it alive with
        // comments. Checked on every event and every idle tick.
        let abandoned = |w: &Id| !self.inbound.wants(w) || Instant::now() > deadline + web::MARGIN;
        loop {
            if self.closing.load(Ordering::Acquire) {
                return End::Abandoned;
            }
            let ev = match events.next_item() {
                Ok(Some(SseItem::Event(ev))) => ev,
                Ok(Some(SseItem::Idle)) => {
                    if want.is_some_and(abandoned) {
                        return End::Abandoned;
                    }
                    continue;
                }
                Ok(None) => return End::Ended("the server closed the stream".into()),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData && want.is_some() => {
                    return End::TooLarge;
                }
                Err(e) => return End::Ended(format!("reading the stream: {e}")),
            };
            cursor.events += 1;
            if let Some(id) = ev.id.clone() {
                cursor.last_event_id = (!id.is_empty()).then_some(id);
            }
            if let Some(ms) = ev.retry {
                cursor.retry = Some(Duration::from_millis(ms));
            }
            let mut replied = false;
            if ev.kind() == "message" && !ev.data.trim().is_empty() {
                match decode_frame(ev.data.as_bytes()) {
                    Ok((msgs, _)) => {
                        for m in msgs {
                            replied |= want.is_some_and(|w| answers(&m, w));
                            self.inbound.on_message(m, self);
                        }
                    }
                    Err(e) => log::warn!(
                        "mcp[{}]: skipping an undecodable event ({e}): {}",
                        self.name,
                        cut(&ev.data, 200)
                    ),
                }
            }
            if replied {
                return End::Replied;
            }
            if want.is_some_and(abandoned) {
                // Dropping the stream closes it: in 2026-07-28 that is the cancellation.
                return End::Abandoned;
            }
        }
    }

    /// Sleep `wait` in slices; false when closing, past `deadline`, or nobody waits for `want`.
    fn sleep(&self, wait: Duration, deadline: Instant, want: Option<&Id>) -> bool {
        let until = Instant::now() + wait;
        loop {
            if self.closing.load(Ordering::Acquire) {
                return false;
            }
            if want.is_some_and(|w| !self.inbound.wants(w)) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return now < deadline;
            }
            if now >= deadline {
                return false;
            }
            thread::sleep((until - now).min(SLEEP_SLICE));
        }
    }
}

fn is_stream(res: &Response<ureq::Body>) -> bool {
    (200..300).contains(&res.status().as_u16()) && web::media_type(res) == "text/event-stream"
}
