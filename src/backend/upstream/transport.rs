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
//! checked again between reads by ureq). ureq probes a connection twice per use, when it goes
//! back to the pool and when it leaves it; the first of those is answered without a syscall,
//! since the second looks at the same socket later and refuses it for the same reasons (unasked
//! bytes, or the peer gone). On plain HTTP the request head is held back until the body's first
//! bytes ([`Outgoing`]), so a request leaves in one write: one segment, one wake-up of the
//! upstream, instead of two. Everything else is as ureq does it: connect with the
//! connect timeout, `TCP_NODELAY` as configured, the socket registered for
//! `Agent::shutdown`, ureq's lazily allocated buffers; TLS wraps this transport
//! (`RustlsConnector`), so HTTPS upstreams get the same savings but the head hold (under TLS
//! the transport sees records, not the request).
//!
//! Thread model: a transport belongs to one request at a time (ureq's pool hands it out), on
//! the worker thread making that request; the shutdown handle may close its socket from any.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
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
        // Under TLS this transport carries records, not HTTP: nothing to hold back.
        let plain_http = details.uri.scheme_str() == Some("http");
        let transport = TcpTransport {
            stream: Arc::new(stream),
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
            read_timeout: None,
            write_timeout: None,
            outgoing: Outgoing::new(plain_http),
            used_since_probe: false,
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
    outgoing: Outgoing,
    /// Whether the socket was written or read since ureq last asked [`Transport::is_open`].
    used_since_probe: bool,
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
        self.used_since_probe = true;
        let output = self.buffers.output();
        let output = output.get(..amount).unwrap_or(output);
        self.outgoing
            .send(&mut &*self.stream, output)
            .map_err(|e| io_error(e, timeout.reason))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.used_since_probe = true;
        self.outgoing
            .before_read(&mut &*self.stream)
            .map_err(|e| io_error(e, Timeout::SendRequest))?;
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
        // ureq asks once as the connection goes back to the pool, right after its last read,
        // and again as it takes it out: only that second probe, the one that matters after
        // an idle time, costs a syscall.
        if std::mem::take(&mut self.used_since_probe) {
            return true;
        }
        crate::sys::net::peer_alive(self.stream.as_raw_fd())
    }
}

/// What goes out on a plain-HTTP connection: a request head that announces a body is held
/// until the body's first bytes and leaves with them in one write (ureq writes the two
/// separately). Anything held goes out before the connection is read, so a request that waits
/// for an answer before its body (`Expect: 100-continue`) still works.
#[derive(Debug, Default)]
struct Outgoing {
    /// Off under TLS: everything is written as it comes.
    hold_heads: bool,
    /// A head, or its first pieces, not sent yet.
    held: Vec<u8>,
    /// Whether something was sent since the last read: the next write after a read starts a
    /// request.
    sending: bool,
}

impl Outgoing {
    fn new(hold_heads: bool) -> Self {
        Outgoing {
            hold_heads,
            ..Outgoing::default()
        }
    }

    fn send(&mut self, out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
        let starts_request = !std::mem::replace(&mut self.sending, true);
        let in_head = starts_request || !(self.held.is_empty() || head_ends(&self.held));
        if self.hold_heads && in_head {
            self.held.extend_from_slice(bytes);
            if !head_ends(&self.held) || announces_body(&self.held) {
                return Ok(());
            }
            return self.flush(out);
        }
        if self.held.is_empty() {
            return out.write_all(bytes);
        }
        let result = write_all_vectored(out, &mut [IoSlice::new(&self.held), IoSlice::new(bytes)]);
        self.held.clear();
        result
    }

    /// Before the connection is read: send what is held; the next write starts a request.
    fn before_read(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.sending = false;
        self.flush(out)
    }

    fn flush(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let result = out.write_all(&self.held);
        self.held.clear();
        result
    }
}

fn head_ends(bytes: &[u8]) -> bool {
    bytes.ends_with(b"\r\n\r\n")
}

/// Whether a request head announces a body that follows at once: a non-zero `Content-Length`
/// or a `Transfer-Encoding`, and no `Expect` (which waits for the server first).
fn announces_body(head: &[u8]) -> bool {
    let mut body = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"expect") {
            return false;
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"content-length") && value.iter().any(|&b| b != b'0')
        {
            body = true;
        }
    }
    body
}

fn write_all_vectored(out: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match out.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each write call as one segment.
    #[derive(Default)]
    struct Segments(Vec<Vec<u8>>);

    impl Write for Segments {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.0
                .push(bufs.iter().flat_map(|b| b.iter().copied()).collect());
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const POST: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 2\r\n\r\n";

    #[test]
    fn a_head_with_a_body_leaves_with_the_body_in_one_write() {
        let mut out = Segments::default();
        let mut outgoing = Outgoing::new(true);
        for _ in 0..2 {
            outgoing.send(&mut out, POST).unwrap();
            assert!(
                out.0.is_empty() || out.0.len() == 1,
                "the head waits for the body"
            );
            outgoing.send(&mut out, b"{}").unwrap();
            outgoing.before_read(&mut out).unwrap();
        }
        let expected = [POST, b"{}"].concat();
        assert_eq!(out.0, vec![expected.clone(), expected]);
    }

    #[test]
    fn heads_without_a_body_or_awaiting_100_continue_go_out_at_once() {
        for head in [
            &b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n"[..],
            b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        ] {
            let mut out = Segments::default();
            Outgoing::new(true).send(&mut out, head).unwrap();
            assert_eq!(
                out.0,
                vec![head.to_vec()],
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        assert!(announces_body(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn a_head_in_pieces_is_held_whole_and_a_read_sends_what_is_held() {
        let mut out = Segments::default();
        let mut outgoing = Outgoing::new(true);
        let (first, rest) = POST.split_at(10);
        outgoing.send(&mut out, first).unwrap();
        outgoing.send(&mut out, rest).unwrap();
        assert!(out.0.is_empty());
        outgoing.before_read(&mut out).unwrap();
        assert_eq!(out.0, vec![POST.to_vec()]);
    }

    #[test]
    fn under_tls_every_write_goes_out_as_it_comes() {
        let mut out = Segments::default();
        let mut outgoing = Outgoing::new(false);
        outgoing.send(&mut out, POST).unwrap();
        outgoing.send(&mut out, b"{}").unwrap();
        assert_eq!(out.0, vec![POST.to_vec(), b"{}".to_vec()]);
    }

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
