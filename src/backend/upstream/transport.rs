//! The agent's TCP transport: ureq's own, minus the per-request syscalls a busy gateway pays
//! on every pooled connection.
//!
//! ureq's `TcpTransport` checks a pooled connection before reuse by switching the socket to
//! non-blocking, reading, and switching back (`ioctl` ×2 + `recv`), and sets the socket's
//! read or write timeout whenever the next timeout differs from the last one set. With a
//! request deadline (`timeout_global`) the next timeout is the deadline's remainder, new on
//! every call, so each exchange also paid a `setsockopt` per phase. This transport checks
//! liveness with one `recv(MSG_PEEK | MSG_DONTWAIT)` ([`crate::sys::net::peer_alive`]) and
//! keeps the socket's timeout when the wanted one is within 1/64 of it (a 30 s timeout may fire
//! up to ~0.5 s early or late; a deadline that matters more than that is the request's own,
//! checked again between reads by ureq). Everything else is as ureq does it: connect with the
//! connect timeout, `TCP_NODELAY` as configured, the socket registered for
//! `Agent::shutdown`, ureq's lazily allocated buffers; TLS wraps this transport
//! (`RustlsConnector`), so HTTPS upstreams get the same savings.
//!
//! Thread model: a transport belongs to one request at a time (ureq's pool hands it out), on
//! the worker thread making that request; the shutdown handle may close its socket from any.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};
use ureq::{Error, Timeout};

/// A socket timeout within this fraction of the wanted one is kept as it is.
const TIMEOUT_SLACK_DIVISOR: u32 = 64;

/// Opens plain TCP connections as [`TcpTransport`]s (first in the agent's connector chain).
#[derive(Debug, Default)]
pub(super) struct TcpConnector;

impl<In: Transport> Connector<In> for TcpConnector {
    type Out = Either<In, TcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if chained.is_some() {
            return Ok(chained.map(Either::A));
        }
        let budget = details.timeout.not_zero().map(|d| *d);
        let stream = connect(&details.addrs, budget)?;
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let config = details.config;
        let transport = TcpTransport {
            stream: Arc::new(stream),
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
            read_timeout: None,
            write_timeout: None,
        };
        (details.register_shutdown)(Arc::downgrade(&transport.stream) as Weak<dyn ShutdownHandle>)?;
        Ok(Some(Either::B(transport)))
    }
}

/// Try each resolved address in turn within `budget` overall.
fn connect(addrs: &[SocketAddr], budget: Option<Duration>) -> Result<TcpStream, Error> {
    let deadline = budget.map(|b| Instant::now() + b);
    let mut last = None;
    for addr in addrs {
        let attempt = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout(Timeout::Connect));
                }
                TcpStream::connect_timeout(addr, left)
            }
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                return Err(Error::Timeout(Timeout::Connect));
            }
            // Refused, unreachable…: the next address may still answer.
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused")
    })))
}

pub(super) struct TcpTransport {
    /// Shared (weakly) with the agent's shutdown handle.
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
    /// The socket's current `SO_RCVTIMEO` / `SO_SNDTIMEO` (`None`: none set).
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransport")
            .field("fd", &self.stream.as_raw_fd())
            .finish()
    }
}

/// Whether the socket's timeout `current` may stand in for `wanted`.
fn close_enough(current: Option<Duration>, wanted: Option<Duration>) -> bool {
    match (current, wanted) {
        (None, None) => true,
        (Some(c), Some(w)) => c.abs_diff(w) <= w / TIMEOUT_SLACK_DIVISOR,
        _ => false,
    }
}

/// The wanted timeout of the next I/O, or the timeout error when there is no time left.
fn wanted(timeout: NextTimeout) -> Result<Option<Duration>, Error> {
    if timeout.after.is_zero() {
        return Err(Error::Timeout(timeout.reason));
    }
    Ok(timeout.not_zero().map(|d| *d))
}

fn io_error(e: io::Error, reason: Timeout) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(reason),
        _ => Error::Io(e),
    }
}

impl Transport for TcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        let want = wanted(timeout)?;
        if !close_enough(self.write_timeout, want) {
            self.stream.set_write_timeout(want)?;
            self.write_timeout = want;
        }
        let output = self.buffers.output();
        let output = output.get(..amount).unwrap_or(output);
        (&*self.stream)
            .write_all(output)
            .map_err(|e| io_error(e, timeout.reason))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = timeout.for_read();
        let want = wanted(timeout)?;
        if !close_enough(self.read_timeout, want) {
            self.stream.set_read_timeout(want)?;
            self.read_timeout = want;
        }
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&*self.stream).read(input) {
                // Every thread blocks the process's signals, so this is rare; the socket's
                // timeout starts again, within the request deadline ureq checks.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other.map_err(|e| io_error(e, timeout.reason))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        crate::sys::net::peer_alive(self.stream.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_within_the_slack_are_kept() {
        let s = Duration::from_secs;
        assert!(close_enough(None, None));
        assert!(close_enough(
            Some(s(30)),
            Some(s(30) - Duration::from_millis(200))
        ));
        assert!(close_enough(
            Some(s(30)),
            Some(s(30) + Duration::from_millis(200))
        ));
        assert!(!close_enough(Some(s(30)), Some(s(29))));
        assert!(!close_enough(Some(s(30)), None));
        assert!(!close_enough(None, Some(s(30))));
    }
}
