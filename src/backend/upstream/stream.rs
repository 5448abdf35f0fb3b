//! Streaming exchanges: send the request, read the upstream's SSE, and feed each event to the
//! provider's [`Decoder`], which hands text to the sink and says when the answer is complete.
//!
//! Thread model: the body is read **on the calling worker**, no thread per stream. Only the
//! wait for the response head runs on a short-lived **head thread** (ureq cannot be woken in
//! that wait): the worker waits for its answer with a one-second `recv_timeout`, and the head
//! thread ends as soon as it has handed the response over (with an upstream that answers the
//! head at once, it lives for a few milliseconds). Head threads are capped process-wide
//! ([`MAX_HEAD_THREADS`]); beyond the cap, or if a thread cannot be spawned, the worker sends
//! and waits itself (no idle ticks until the head arrives).
//!
//! While the body is read, every wait for input on the worker lasts at most [`IDLE_TICK`]
//! (`tick.rs`), so a quiet upstream, or one sending only pings or comments, still gives the
//! sink an idle tick ([`TurnSink::idle`]) about once a second: keep-alives go out and a
//! departed client is noticed. The request deadline is checked on every event and tick: a
//! stream of empty deltas, pings or keep-alive comments ends with [`Error::Timeout`] at the
//! deadline, and ureq's global timeout (the deadline) bounds a fully silent one. Silence is
//! also limited by the backend's per-read timeout, counted here across ticks.
//!
//! When the answer is complete, the worker reads on for at most [`END_WAIT`] to see the end of
//! the body (it normally comes with the last event), which returns the connection to the pool.
//! When the client is gone or the deadline passed, the worker returns and drops the response
//! reader at once, which closes the unfinished upstream connection. A worker that gives
//! up while the head thread still waits drops the channel; the head thread drops the response
//! when it comes (closing that connection), and is bounded by the deadline.
//!
//! An upstream that answers a stream request with a JSON body (some gateways and servers do)
//! is read whole and given to [`Decoder::whole`].

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, bounded};
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
/// Head threads alive at once, over all backends (waiting for a head, or finishing after the
/// worker gave up). A burst of new streams beyond it waits for its heads inline (upstreams
/// send the head at once; only a slow one delays the first keep-alive); a thread per stream
/// start cost ~20 MiB of stacks at the start of 1,000 streams (`make bench`).
pub const MAX_HEAD_THREADS: usize = 128;

static HEAD_THREADS: AtomicUsize = AtomicUsize::new(0);

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

/// One request, shared with the head thread.
struct Exchange {
    upstream: Arc<Upstream>,
    body: Vec<u8>,
    deadline: Instant,
    /// The round's W3C trace context, taken on the request's thread (the head thread has none).
    traceparent: Option<String>,
}

impl Exchange {
    fn send(&self) -> Result<Response<ureq::Body>, Error> {
        let tp = self.traceparent.as_deref();
        self.upstream.send(&self.body, true, self.deadline, tp)
    }
}

pub(super) fn run<D: Decoder>(
    upstream: &Arc<Upstream>,
    body: Vec<u8>,
    deadline: Instant,
    decoder: &mut D,
    sink: &mut dyn TurnSink,
) -> Result<D::Output, Error> {
    let ex = Arc::new(Exchange {
        upstream: Arc::clone(upstream),
        body,
        deadline,
        traceparent: crate::telemetry::traceparent(),
    });
    let mut consumer = Consumer {
        decoder,
        sink: Watched {
            sink,
            last_signal: Instant::now(),
        },
        deadline,
    };
    let resp = head(&ex, &mut consumer)?;
    let up = &ex.upstream;
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if is_json {
        let body = read_json(resp, up.limits.json_bytes)?;
        return consumer.decoder.whole(&body, &mut consumer.sink);
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
        if let Some(output) = step? {
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

/// Send the request and wait for the response head, on a head thread when one is available
/// so that the consumer gets its ticks meanwhile.
fn head<D: Decoder>(
    ex: &Arc<Exchange>,
    consumer: &mut Consumer<'_, '_, D>,
) -> Result<Response<ureq::Body>, Error> {
    if HEAD_THREADS.fetch_add(1, Ordering::AcqRel) >= MAX_HEAD_THREADS {
        HEAD_THREADS.fetch_sub(1, Ordering::AcqRel);
        log::warn!("{MAX_HEAD_THREADS} upstream head waits busy; waiting inline");
        return ex.send();
    }
    let guard = HeadGuard;
    let (tx, rx) = bounded(1);
    let shared = Arc::clone(ex);
    let spawned = std::thread::Builder::new()
        .name("upstream-head".into())
        .stack_size(crate::http::DEFAULT_STACK_SIZE)
        .spawn(move || {
            let _guard = guard;
            // A worker that gave up has dropped `rx`: the response is dropped here, which
            // closes its connection.
            let _ = tx.send(shared.send());
        });
    if let Err(e) = spawned {
        // The closure (and with it the guard) was dropped, so the count is already right.
        log::warn!("cannot spawn an upstream head thread ({e}); waiting inline");
        return ex.send();
    }
    loop {
        match rx.recv_timeout(IDLE_TICK) {
            Ok(resp) => return resp,
            // Returning drops `rx`; the head thread notices when its wait ends.
            Err(RecvTimeoutError::Timeout) => consumer.tick()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Protocol("upstream head thread stopped".into()));
            }
        }
    }
}

struct HeadGuard;

impl Drop for HeadGuard {
    fn drop(&mut self) {
        HEAD_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The sink, watched: when did the client last hear from us?
struct Watched<'s> {
    sink: &'s mut dyn TurnSink,
    last_signal: Instant,
}

impl TurnSink for Watched<'_> {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.last_signal = Instant::now();
        self.sink.text(delta)
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

    /// The body ended before the answer was complete (the decoder decides).
    fn end(&mut self) -> Result<D::Output, Error> {
        self.check_deadline()?;
        self.decoder.end()
    }
}
