//! Idle ticks for exchanges served on the request's own thread.
//!
//! A stream is sent, and its body read, by the worker that serves the request (`stream.rs`),
//! and that worker must wake at least once per [`super::stream::IDLE_TICK`] while the upstream
//! is silent: to send the client a keep-alive, notice that it left, and check the request
//! deadline. ureq's per-read timeout is the backend `timeout` (tens of seconds) and is fixed
//! per request, and a timeout while waiting for the response head ends the call, so the tick
//! cannot be a ureq timeout. Instead every agent's connections are wrapped in
//! [`TickTransport`]: while a thread is inside [`with_tick`] or [`with_tick_hook`], a wait for
//! input on *that thread* lasts at most the tick.
//! - Reading a body ([`with_tick`]): a wait cut short by the tick fails with an [`io::Error`]
//!   that [`is_tick`] recognizes. ureq leaves the body reader as it was (nothing was read), so
//!   the next read goes on where it stopped; the caller keeps its own count of silence against
//!   the backend's per-read limit (the tick hides it).
//! - Waiting for the response head inside ureq's call ([`with_tick_hook`]): the transport
//!   calls the caller's hook at each tick (through [`crate::sys::scoped`]) and waits on while
//!   it says so, up to ureq's own limit; when the hook says stop, the wait fails with the tick
//!   error and ureq's call ends.
//!
//! Outside those (sending, non-stream exchanges, the pool's checks) the wrapper only forwards.
//!
//! Thread model: the tick is a thread-local set for the duration of one read or one call, so a
//! pooled connection handed to another thread never inherits it.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use ureq::Error;
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

/// Run `f` (a ureq call) with `hook` called at every tick of its waits for input on this
/// thread's upstream connections; the wait goes on while `hook` returns true, and fails with
/// the tick error when it returns false.
pub(super) fn with_tick_hook<T>(
    tick: Duration,
    hook: &mut dyn FnMut() -> bool,
    f: impl FnOnce() -> T,
) -> T {
    crate::sys::scoped::with_hook(hook, || with_tick(tick, f))
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
        let Some(tick) = TICK.get() else {
            return self.inner.await_input(timeout);
        };
        let limit: Duration = *timeout.for_read().after;
        let started = Instant::now();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            if left <= tick {
                // The real limit comes first: its own error, unchanged.
                let last = NextTimeout {
                    after: left.into(),
                    ..timeout
                };
                return self.inner.await_input(last);
            }
            let capped = NextTimeout {
                after: tick.into(),
                ..timeout
            };
            match self.inner.await_input(capped) {
                Err(Error::Timeout(_)) => {}
                Err(Error::Io(e)) if matches!(e.kind(), io::ErrorKind::TimedOut) => {}
                other => return other,
            }
            // A tick: a hook that says go on waits for the next one; otherwise (no hook, as
            // for body reads) the wait ends with the tick error.
            if crate::sys::scoped::call_hook() != Some(true) {
                return Err(tick_error());
            }
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
