//! Idle ticks for event-stream bodies read on the request's own thread.
//!
//! A stream's body is read by the worker that serves the request (`stream.rs`), and that worker
//! must wake at least once per [`super::stream::IDLE_TICK`] while the upstream is silent: to
//! send the client a keep-alive, notice that it left, and check the request deadline. ureq's
//! per-read timeout is the backend `timeout` (tens of seconds) and is fixed per request, and a
//! timeout while waiting for the response head ends the call, so the tick cannot be a ureq
//! timeout. Instead every agent's connections are wrapped in [`TickTransport`]: while a thread
//! is inside [`with_tick`], a wait for input on *that thread* lasts at most the tick, and a wait
//! cut short by it fails with an [`io::Error`] that [`is_tick`] recognizes. ureq leaves the body
//! reader as it was (nothing was read), so the next read goes on where it stopped; the caller
//! keeps its own count of silence against the backend's per-read limit (the tick hides it).
//! Outside [`with_tick`] (sending, the head, non-stream bodies, the pool's checks) the wrapper
//! only forwards.
//!
//! Thread model: the tick is a thread-local set for the duration of one read, so a pooled
//! connection handed to another thread never inherits it.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::time::Duration;

use ureq::Error;
use ureq::unversioned::transport::time::Duration as UreqDuration;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

thread_local! {
    static TICK: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Run `f` with reads on this thread's upstream connections capped at `tick`.
pub(super) fn with_tick<T>(tick: Duration, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Duration>);
    impl Drop for Reset {
        fn drop(&mut self) {
            TICK.set(self.0);
        }
    }
    let _reset = Reset(TICK.replace(Some(tick)));
    f()
}

/// Whether a read failed only because the idle tick passed (nothing was lost).
pub(super) fn is_tick(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<IdleTick>())
}

/// The error of a wait cut short by the tick.
#[derive(Debug)]
struct IdleTick;

impl fmt::Display for IdleTick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("idle tick")
    }
}

impl std::error::Error for IdleTick {}

/// Last in the agent's connector chain: wraps each connection (plain or TLS).
#[derive(Debug)]
pub(super) struct TickConnector;

impl<In: Transport> Connector<In> for TickConnector {
    type Out = TickTransport<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<TickTransport<In>>, Error> {
        Ok(chained.map(|inner| TickTransport { inner }))
    }
}

#[derive(Debug)]
pub(super) struct TickTransport<T> {
    inner: T,
}

impl<T: Transport> Transport for TickTransport<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let tick = match TICK.get() {
            Some(t) if UreqDuration::from(t) < timeout.for_read().after => t,
            // No tick, or a real limit comes first: its own error, unchanged.
            _ => return self.inner.await_input(timeout),
        };
        let capped = NextTimeout {
            after: tick.into(),
            ..timeout
        };
        match self.inner.await_input(capped) {
            Err(Error::Timeout(_)) => Err(tick_error()),
            Err(Error::Io(e)) if matches!(e.kind(), io::ErrorKind::TimedOut) => Err(tick_error()),
            other => other,
        }
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

fn tick_error() -> Error {
    Error::Io(io::Error::new(io::ErrorKind::TimedOut, IdleTick))
}
