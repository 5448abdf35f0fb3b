//! Streaming exchanges: send the request, read the upstream's SSE, and feed each event to the
//! provider's [`Decoder`], which hands text to the sink and says when the answer is complete.
//!
//! Thread model: everything runs **on the calling worker**, no thread per stream. Every wait
//! for input on the worker lasts at most [`IDLE_TICK`] (`tick.rs`): while ureq waits for the
//! response head, its transport calls back into this exchange at each tick; while the body
//! is read, the read returns at each tick. Either way a quiet upstream, or one sending only
//! pings or comments, still gives the sink an idle tick ([`TurnSink::idle`]) about once a
//! second: keep-alives go out and a departed client is noticed. The request deadline is
//! checked on every event and tick: a stream of empty deltas, pings or keep-alive comments
//! ends with [`Error::Timeout`] at the deadline, and ureq's global timeout (the deadline)
//! bounds a fully silent one. Silence while the body is read is also limited by the backend's
//! per-read timeout, counted here across ticks (while the head is awaited, ureq counts it).
//!
//! Text deltas are passed to the sink held ([`TurnSink::text_held`]) and flushed before every
//! read that may wait and before returning, so the deltas of events that arrived in one read
//! leave in one write, and none waits for later input (at worst, behind an event that
//! dispatches nothing, one idle tick). What is held is bounded by the event reader's buffer:
//! the deltas of at most [`READ_BUFFER`] bytes of upstream input.
//!
//! When the answer is complete, the worker reads on for at most [`END_WAIT`] to see the end of
//! the body (it normally comes with the last event), which returns the connection to the pool.
//! When the client is gone or the deadline passed, the worker returns and drops the response
//! reader (or, during the head wait, ends ureq's call) at once, which closes the unfinished
//! upstream connection.
//!
//! An upstream that answers a stream request with a JSON body (some gateways and servers do)
//! is read whole and given to [`Decoder::whole`].

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use ureq::http::Response;

use super::{MAX_STREAM_BYTES, Upstream, map_io_error, read_json, tick};
use crate::backend::{Cancelled, Error, TurnSink};
use crate::sse_codec::{SseEvent, SseItem, SseReader};

/// How often a quiet stream gives the sink an idle tick.
pub(super) const IDLE_TICK: Duration = Duration::from_secs(1);
/// The event reader's buffer, per stream.
const READ_BUFFER: usize = 4 * 1024;
/// How long a complete answer waits for the end of its body (see [`finish`]).
const END_WAIT: Duration = Duration::from_millis(20);
/// A provider's reading of its event stream. Runs on the calling worker thread.
pub trait Decoder {
    type Output;
    /// One event, in order; text for the client goes to `sink` (its `Err` becomes
    /// [`Error::Cancelled`]). `Some` when the answer is complete: reading stops.
    fn event(
        &mut self,
        ev: &SseEvent,
        sink: &mut dyn TurnSink,
    ) -> Result<Option<Self::Output>, Error>;
    /// The upstream answered with a whole JSON body instead of a stream.
    fn whole(&mut self, body: &[u8], sink: &mut dyn TurnSink) -> Result<Self::Output, Error>;
    /// The body ended (or the connection dropped) before [`Decoder::event`] returned `Some`.
    fn end(&mut self) -> Result<Self::Output, Error>;
}

pub(super) fn run<D: Decoder>(
    up: &Upstream,
    body: &[u8],
    deadline: Instant,
    decoder: &mut D,
    sink: &mut dyn TurnSink,
) -> Result<D::Output, Error> {
    let mut consumer = Consumer {
        decoder,
        sink: Watched {
            sink,
            last_signal: Instant::now(),
        },
        deadline,
    };
    let resp = head(up, body, &mut consumer)?;
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if is_json {
        let body = read_json(resp, up.limits.json_bytes)?;
        let output = consumer.decoder.whole(&body, &mut consumer.sink);
        consumer.flush()?;
        return output;
    }
    let body = resp
        .into_body()
        .into_with_config()
        .limit(MAX_STREAM_BYTES)
        .reader();
    // Small: ureq's input buffer is in front of it, and a longer event spans several fills.
    let body = BufReader::with_capacity(READ_BUFFER, body);
    let mut reader = SseReader::new(body, up.limits.event_bytes).with_idle_tick(IDLE_TICK);
    // The tick hides ureq's per-read limit on the body; silence is counted here instead.
    let per_read = up.agent.config().timeout_per_read();
    let mut heard = Instant::now();
    // Returning drops `reader`, which closes an unfinished upstream connection.
    loop {
        // Text of events that came in one read is held, and leaves together before a wait.
        if !reader.next_item_buffered() {
            consumer.flush()?;
        }
        let item = tick::with_tick(IDLE_TICK, || reader.next_item());
        let step = match item {
            Ok(Some(SseItem::Idle)) => {
                heard = Instant::now();
                consumer.tick().map(|()| None)
            }
            Ok(Some(SseItem::Event(ev))) => {
                heard = Instant::now();
                consumer.event(&ev)
            }
            Ok(None) => consumer.end().map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => consumer.end().map(Some),
            Err(e) if tick::is_tick(&e) => {
                if per_read.is_some_and(|limit| heard.elapsed() >= limit) {
                    Err(Error::Timeout)
                } else {
                    consumer.tick().map(|()| None)
                }
            }
            Err(e) => Err(map_io_error(e)),
        };
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                // What was held goes out before the error is written.
                let _ = consumer.flush();
                return Err(e);
            }
        };
        if let Some(output) = step {
            consumer.flush()?;
            finish(&mut reader);
            return Ok(output);
        }
    }
}

/// The answer is complete: read the end of the body if it comes within [`END_WAIT`] (it
/// normally arrives with the last event), which returns the connection to the pool; otherwise
/// dropping the reader closes it.
fn finish(reader: &mut SseReader<impl BufRead>) {
    let until = Instant::now() + END_WAIT;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match tick::with_tick(left, || reader.next_item()) {
            // A trailing comment.
            Ok(Some(SseItem::Idle)) => {}
            // The end, an unexpected event, an error or the wait passed.
            _ => return,
        }
    }
}

/// Send the request and wait for the response head, the consumer ticking meanwhile.
fn head<D: Decoder>(
    up: &Upstream,
    body: &[u8],
    consumer: &mut Consumer<'_, '_, D>,
) -> Result<Response<ureq::Body>, Error> {
    let deadline = consumer.deadline;
    let traceparent = crate::telemetry::traceparent();
    // Why the consumer stopped the wait (the client left, the deadline passed).
    let mut stopped = None;
    let mut tick = || match consumer.tick() {
        Ok(()) => true,
        Err(e) => {
            stopped = Some(e);
            false
        }
    };
    let sent = tick::with_tick_hook(IDLE_TICK, &mut tick, || {
        up.send(body, true, deadline, traceparent.as_deref())
    });
    match stopped {
        Some(e) => Err(e),
        None => sent,
    }
}

/// The sink, watched: when did the client last hear from us?
struct Watched<'s> {
    sink: &'s mut dyn TurnSink,
    last_signal: Instant,
}

/// Every delta is passed on held: [`run`] flushes before each wait and before it returns.
impl TurnSink for Watched<'_> {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.last_signal = Instant::now();
        self.sink.text_held(delta)
    }

    fn idle(&mut self) -> Result<(), Cancelled> {
        self.last_signal = Instant::now();
        self.sink.idle()
    }
}

/// Hands events and ticks to the decoder and the sink, checking the deadline on each.
struct Consumer<'a, 's, D> {
    decoder: &'a mut D,
    sink: Watched<'s>,
    deadline: Instant,
}

impl<D: Decoder> Consumer<'_, '_, D> {
    /// Checked on every event and tick: empty deltas or keep-alives must not outlive the
    /// request.
    fn check_deadline(&self) -> Result<(), Error> {
        if Instant::now() >= self.deadline {
            return Err(Error::Timeout);
        }
        Ok(())
    }

    /// The upstream is quiet (or sent no event): nothing for the client for a second means a
    /// keep-alive, which also notices a departed client.
    fn tick(&mut self) -> Result<(), Error> {
        self.check_deadline()?;
        if self.sink.last_signal.elapsed() >= IDLE_TICK && self.sink.idle().is_err() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// One event; `Some` when the answer is complete.
    fn event(&mut self, ev: &SseEvent) -> Result<Option<D::Output>, Error> {
        self.check_deadline()?;
        if let Some(output) = self.decoder.event(ev, &mut self.sink)? {
            return Ok(Some(output));
        }
        // Events without text (pings, empty deltas) still let a second pass: a tick.
        self.tick()?;
        Ok(None)
    }

    /// Send the text held so far.
    fn flush(&mut self) -> Result<(), Error> {
        self.sink.sink.flush().map_err(|Cancelled| Error::Cancelled)
    }

    /// The body ended before the answer was complete (the decoder decides).
    fn end(&mut self) -> Result<D::Output, Error> {
        self.check_deadline()?;
        self.decoder.end()
    }
}
