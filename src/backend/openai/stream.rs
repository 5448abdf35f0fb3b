//! Streaming turns: read the upstream's SSE, hand each text delta to the sink as it arrives,
//! accumulate tool calls, and return the whole [`Turn`].
//!
//! Thread model: the request is sent and its SSE read by a short-lived **pump thread** that
//! passes events over a bounded channel (backpressure: it stops reading when the writer is
//! slow). The calling worker waits with a one-second `recv_timeout` and calls
//! [`TurnSink::idle`] on each quiet second, so keep-alives go out and a departed client is
//! noticed even while the upstream thinks or queues. The request deadline is checked on every
//! message and tick: a stream of empty deltas or keep-alive comments ends with
//! [`Error::Timeout`] at the deadline. When the client is gone or the deadline passed, the
//! worker returns at once and drops the receiver; the pump notices on its next send or on its
//! next idle tick (the SSE reader returns one on every comment and every quiet second), and
//! drops the response reader, which closes the upstream connection. A fully silent upstream
//! holds it at most until the per-read timeout, and never past the deadline (ureq's global
//! timeout on the exchange). After `[DONE]` the pump reads the (tiny) rest of the
//! body so the connection goes back to the pool. Pump threads are capped; beyond the cap, or if
//! a thread cannot be spawned, the same code runs inline on the worker (no idle ticks).

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, TrySendError, bounded};
use ureq::Agent;

use super::parse::{StreamState, excerpt, parse_completion};
use super::{MAX_JSON_BYTES, Prepared, map_error, map_io_error, send};
use crate::backend::{Error, Turn, TurnSink};
use crate::sse_codec::{SseEvent, SseItem, SseReader};

/// Largest single SSE event.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// How often a quiet stream gives the sink an idle tick.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Events buffered between the pump and the worker.
const CHANNEL_CAP: usize = 64;
/// Pump threads alive at once (active streams + ones finishing after a cancel).
const MAX_PUMPS: usize = 512;
/// Events the pump reads past `[DONE]` to let the connection be pooled.
const MAX_DRAIN_EVENTS: usize = 8;

static PUMPS: AtomicUsize = AtomicUsize::new(0);

/// What the producer hands the consumer.
enum Msg {
    Event(SseEvent),
    /// The upstream answered a stream request with a plain JSON completion.
    Whole(Result<Turn, Error>),
    /// Clean end of the body.
    End,
    /// The connection died mid-body (reported apart: a stream that already has its
    /// `finish_reason` may end this way without harm).
    Eof,
    Failed(Error),
    /// The upstream is alive but sent no event (a keep-alive comment, or bytes trickling):
    /// time to check the deadline and the client.
    Idle,
}

enum Flow {
    Continue,
    Done(Result<Turn, Error>),
}

pub(super) fn run(
    agent: &Agent,
    req: Arc<Prepared>,
    sink: &mut dyn TurnSink,
) -> Result<Turn, Error> {
    let mut consumer = Consumer {
        state: StreamState::default(),
        sink,
        deadline: req.deadline,
        last_idle: Instant::now(),
    };
    match spawn_pump(agent, &req) {
        // Returning drops `rx`: the pump's next send or idle tick sees it and stops.
        Some(rx) => loop {
            let msg = match rx.recv_timeout(IDLE_TICK) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => Msg::Idle,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Protocol("upstream reader stopped".into()));
                }
            };
            if let Flow::Done(r) = consumer.on(msg) {
                return r;
            }
        },
        None => {
            let mut result = None;
            produce(agent, &req, false, &mut |msg| match consumer.on(msg) {
                Flow::Continue => true,
                Flow::Done(r) => {
                    result = Some(r);
                    false
                }
            });
            result.unwrap_or_else(|| Err(Error::Protocol("upstream stream ended early".into())))
        }
    }
}

/// Start a pump thread, or `None` to run inline (cap reached or spawn failed).
fn spawn_pump(agent: &Agent, req: &Arc<Prepared>) -> Option<crossbeam_channel::Receiver<Msg>> {
    if PUMPS.fetch_add(1, Ordering::AcqRel) >= MAX_PUMPS {
        PUMPS.fetch_sub(1, Ordering::AcqRel);
        log::warn!("{MAX_PUMPS} upstream stream readers busy; reading this stream inline");
        return None;
    }
    let guard = PumpGuard;
    let (tx, rx) = bounded(CHANNEL_CAP);
    let (agent, req) = (agent.clone(), Arc::clone(req));
    let spawned = std::thread::Builder::new()
        .name("openai-stream".into())
        .spawn(move || {
            let _guard = guard;
            produce(&agent, &req, true, &mut |msg| match msg {
                // Never blocks on a slow writer; only a departed worker stops the pump here.
                Msg::Idle => !matches!(tx.try_send(msg), Err(TrySendError::Disconnected(_))),
                msg => tx.send(msg).is_ok(),
            });
        });
    match spawned {
        Ok(_) => Some(rx),
        Err(e) => {
            // The closure (and with it the guard) was dropped, so the count is already right.
            log::warn!("cannot spawn stream reader thread ({e}); reading inline");
            None
        }
    }
}

struct PumpGuard;

impl Drop for PumpGuard {
    fn drop(&mut self) {
        PUMPS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Send the request and emit what the upstream says until `emit` returns false or the body
/// ends. Returning drops the reader, which closes an unfinished connection.
fn produce(agent: &Agent, req: &Prepared, drain: bool, emit: &mut dyn FnMut(Msg) -> bool) {
    let resp = match send(agent, req) {
        Ok(r) => r,
        Err(e) => {
            emit(Msg::Failed(e));
            return;
        }
    };
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if is_json {
        let whole = resp
            .into_body()
            .into_with_config()
            .limit(MAX_JSON_BYTES)
            .read_to_vec()
            .map_err(|e| map_error(e, super::Phase::Body))
            .and_then(|b| parse_completion(&b));
        emit(Msg::Whole(whole));
        return;
    }
    let mut reader = SseReader::new(
        BufReader::new(resp.into_body().into_reader()),
        MAX_EVENT_BYTES,
    )
    .with_idle_tick(IDLE_TICK);
    loop {
        if Instant::now() >= req.deadline {
            emit(Msg::Failed(Error::Timeout));
            return;
        }
        let msg = match reader.next_item() {
            Ok(Some(SseItem::Idle)) => {
                if !emit(Msg::Idle) {
                    return;
                }
                continue;
            }
            Ok(Some(SseItem::Event(ev))) => {
                let done = ev.data.trim() == "[DONE]";
                if !emit(Msg::Event(ev)) {
                    return;
                }
                if done {
                    if drain {
                        drain_rest(reader);
                    }
                    return;
                }
                continue;
            }
            Ok(None) => Msg::End,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Msg::Eof,
            Err(e) => Msg::Failed(map_io_error(e)),
        };
        emit(msg);
        return;
    }
}

/// Read the end of a finished stream so ureq can return the connection to its pool. Normally
/// only the chunked terminator follows `[DONE]`; a server that keeps talking is cut off.
fn drain_rest<R: std::io::BufRead>(mut reader: SseReader<R>) {
    for _ in 0..MAX_DRAIN_EVENTS {
        match reader.next_event() {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        }
    }
}

/// Turns producer messages into sink calls and, at the end, the [`Turn`].
struct Consumer<'s> {
    state: StreamState,
    sink: &'s mut dyn TurnSink,
    deadline: Instant,
    /// When the sink last got an idle tick (keep-alive comments may come far more often).
    last_idle: Instant,
}

impl Consumer<'_> {
    fn on(&mut self, msg: Msg) -> Flow {
        // Checked on every message: empty deltas or keep-alives must not outlive the request.
        if Instant::now() >= self.deadline && !matches!(msg, Msg::Failed(_) | Msg::Whole(_)) {
            return Flow::Done(Err(Error::Timeout));
        }
        match msg {
            Msg::Idle => {
                if self.last_idle.elapsed() >= IDLE_TICK {
                    self.last_idle = Instant::now();
                    if self.sink.idle().is_err() {
                        return Flow::Done(Err(Error::Cancelled));
                    }
                }
                Flow::Continue
            }
            Msg::Event(ev) => self.on_event(&ev),
            Msg::Whole(Ok(turn)) => {
                if !turn.content.is_empty() && self.sink.text(&turn.content).is_err() {
                    return Flow::Done(Err(Error::Cancelled));
                }
                Flow::Done(Ok(turn))
            }
            Msg::Whole(Err(e)) | Msg::Failed(e) => Flow::Done(Err(e)),
            Msg::End | Msg::Eof => Flow::Done(self.finish_at_eof()),
        }
    }

    fn on_event(&mut self, ev: &SseEvent) -> Flow {
        let data = ev.data.trim();
        if data.is_empty() {
            // `event: ping` and other data-less events (some servers send them) are no chunks.
            return Flow::Continue;
        }
        if data == "[DONE]" {
            let state = std::mem::take(&mut self.state);
            return Flow::Done(Ok(state.into_turn()));
        }
        let chunk: serde_json::Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                return Flow::Done(Err(Error::Protocol(format!(
                    "invalid JSON in stream ({e}): {}",
                    excerpt(data.as_bytes())
                ))));
            }
        };
        match self.state.feed(&chunk) {
            Ok(Some(delta)) => match self.sink.text(&delta) {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::Done(Err(Error::Cancelled)),
            },
            Ok(None) if ev.kind() == "error" => Flow::Done(Err(Error::Protocol(format!(
                "upstream error event: {}",
                excerpt(data.as_bytes())
            )))),
            Ok(None) => Flow::Continue,
            Err(e) => Flow::Done(Err(e)),
        }
    }

    /// The body ended without `[DONE]`: fine once a `finish_reason` came (some servers omit
    /// `[DONE]`), a truncated answer otherwise.
    fn finish_at_eof(&mut self) -> Result<Turn, Error> {
        if !self.state.finished() {
            return Err(Error::Protocol("upstream stream ended early".into()));
        }
        Ok(std::mem::take(&mut self.state).into_turn())
    }
}
