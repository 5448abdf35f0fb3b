//! Streaming exchanges: send the request, read the upstream's SSE, and feed each event to the
//! provider's [`Decoder`], which hands text to the sink and says when the answer is complete.
//!
//! Thread model: the request is sent and its SSE read by a short-lived **pump thread** that
//! passes events over a bounded channel (backpressure: it stops reading when the writer is
//! slow). The calling worker waits with a one-second `recv_timeout` and calls
//! [`TurnSink::idle`] whenever a second passed without text (a quiet upstream, or one sending
//! only pings), so keep-alives go out and a departed client is noticed even while the upstream
//! thinks or queues. The request deadline is checked on every message and tick: a stream of
//! empty deltas, pings or keep-alive comments ends with [`Error::Timeout`] at the deadline.
//! When the answer is complete, the client is gone or the deadline passed, the worker returns
//! at once and drops the receiver; the pump notices on its next send or on its next idle tick
//! (the SSE reader returns one on every comment and every quiet second), and drops the response
//! reader, which closes an unfinished upstream connection. After the provider's last event the
//! pump has normally read one more item already: the end of the body, which returns the
//! connection to the pool. A fully silent upstream holds the pump at most until the per-read timeout, and
//! never past the deadline (ureq's global timeout on the exchange). Pump threads are capped
//! process-wide ([`MAX_PUMPS`]); beyond the cap, or if a thread cannot be spawned, the same code
//! runs inline on the worker (no idle ticks while waiting for the head).
//!
//! An upstream that answers a stream request with a JSON body (some gateways and servers do)
//! is read whole and given to [`Decoder::whole`].

use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TrySendError, bounded};

use super::{MAX_STREAM_BYTES, Upstream, map_io_error, read_json};
use crate::backend::{Cancelled, Error, TurnSink};
use crate::sse_codec::{SseEvent, SseItem, SseReader};

/// How often a quiet stream gives the sink an idle tick.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Events buffered between the pump and the worker.
const CHANNEL_CAP: usize = 64;
/// Pump threads alive at once, over all backends (active streams + ones finishing after a
/// cancel).
pub const MAX_PUMPS: usize = 512;

static PUMPS: AtomicUsize = AtomicUsize::new(0);

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

/// What the pump hands the worker.
enum Msg {
    Event(SseEvent),
    /// The upstream answered the stream request with a plain JSON body.
    Whole(Result<Vec<u8>, Error>),
    /// The body ended, cleanly or with the connection dropped (a stream that already has its
    /// answer may end either way without harm; the decoder decides).
    End,
    Failed(Error),
    /// The upstream is alive but sent no event (a keep-alive comment, or bytes trickling):
    /// time to check the deadline and the client.
    Idle,
}

/// One request, shared with the pump thread.
struct Exchange {
    upstream: Arc<Upstream>,
    body: Vec<u8>,
    deadline: Instant,
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
    });
    let mut consumer = Consumer {
        decoder,
        sink: Watched {
            sink,
            last_signal: Instant::now(),
        },
        deadline,
    };
    match spawn_pump(&ex) {
        // Returning drops `rx`: the pump's next send or idle tick sees it and stops.
        Some(rx) => loop {
            let msg = match rx.recv_timeout(IDLE_TICK) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => Msg::Idle,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Protocol("upstream reader stopped".into()));
                }
            };
            if let Some(result) = consumer.on(msg) {
                return result;
            }
        },
        None => {
            let mut result = None;
            produce(&ex, &mut |msg| match consumer.on(msg) {
                None => true,
                Some(r) => {
                    result = Some(r);
                    false
                }
            });
            result.unwrap_or_else(|| Err(Error::Protocol("upstream stream ended early".into())))
        }
    }
}

/// Start a pump thread, or `None` to run inline (cap reached or spawn failed).
fn spawn_pump(ex: &Arc<Exchange>) -> Option<Receiver<Msg>> {
    if PUMPS.fetch_add(1, Ordering::AcqRel) >= MAX_PUMPS {
        PUMPS.fetch_sub(1, Ordering::AcqRel);
        log::warn!("{MAX_PUMPS} upstream stream readers busy; reading this stream inline");
        return None;
    }
    let guard = PumpGuard;
    let (tx, rx) = bounded(CHANNEL_CAP);
    let ex = Arc::clone(ex);
    let spawned = std::thread::Builder::new()
        .name("upstream-stream".into())
        .stack_size(crate::http::DEFAULT_STACK_SIZE)
        .spawn(move || {
            let _guard = guard;
            produce(&ex, &mut |msg| match msg {
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
/// ends. Returning drops the reader, which closes an unfinished connection (a finished one is
/// back in the pool already).
fn produce(ex: &Exchange, emit: &mut dyn FnMut(Msg) -> bool) {
    let up = &ex.upstream;
    let resp = match up.send(&ex.body, true, ex.deadline) {
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
        emit(Msg::Whole(read_json(resp, up.limits.json_bytes)));
        return;
    }
    let body = resp
        .into_body()
        .into_with_config()
        .limit(MAX_STREAM_BYTES)
        .reader();
    let mut reader =
        SseReader::new(BufReader::new(body), up.limits.event_bytes).with_idle_tick(IDLE_TICK);
    loop {
        if Instant::now() >= ex.deadline {
            emit(Msg::Failed(Error::Timeout));
            return;
        }
        let msg = match reader.next_item() {
            Ok(Some(SseItem::Idle)) => Msg::Idle,
            Ok(Some(SseItem::Event(ev))) => Msg::Event(ev),
            Ok(None) => Msg::End,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Msg::End,
            Err(e) => Msg::Failed(map_io_error(e)),
        };
        let last = matches!(msg, Msg::End | Msg::Failed(_));
        if !emit(msg) || last {
            return;
        }
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

/// Turns pump messages into decoder and sink calls; `Some` is the end of the exchange.
struct Consumer<'a, 's, D> {
    decoder: &'a mut D,
    sink: Watched<'s>,
    deadline: Instant,
}

impl<D: Decoder> Consumer<'_, '_, D> {
    fn on(&mut self, msg: Msg) -> Option<Result<D::Output, Error>> {
        // Checked on every message: empty deltas or keep-alives must not outlive the request.
        if Instant::now() >= self.deadline && !matches!(msg, Msg::Failed(_) | Msg::Whole(_)) {
            return Some(Err(Error::Timeout));
        }
        match msg {
            Msg::Idle => {}
            Msg::Event(ev) => match self.decoder.event(&ev, &mut self.sink) {
                Ok(None) => {}
                done => return done.transpose(),
            },
            Msg::Whole(Ok(body)) => return Some(self.decoder.whole(&body, &mut self.sink)),
            Msg::Whole(Err(e)) | Msg::Failed(e) => return Some(Err(e)),
            Msg::End => return Some(self.decoder.end()),
        }
        // Nothing for the client for a second (a quiet upstream, or pings only): a tick.
        if self.sink.last_signal.elapsed() >= IDLE_TICK && self.sink.idle().is_err() {
            return Some(Err(Error::Cancelled));
        }
        None
    }
}
