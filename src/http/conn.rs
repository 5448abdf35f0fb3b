//! One client connection and the state machine that turns the bytes it sends into complete
//! requests: idle → head → body → ready, with the deadline of each state and how much may be read
//! next (so buffers stay within the limits whatever the client declares).
//!
//! Thread model: a `Conn` is owned by exactly one thread at a time: the poller while reading a
//! request (or idle, or lingering), then the worker serving it (which may read the next
//! request too), then the poller again. The socket
//! sits in an `Arc` only so the poller can force it shut (`shutdown`) at the end of a drain.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use super::body::{ChunkError, ChunkedDecoder};
use super::parse::{Framing, Head, Reject, parse_head};
use super::peers::PeerSlot;
use super::{Limits, Request};

/// Largest single read; also the read size while decoding chunked bodies or lingering.
pub(super) const READ_CHUNK: usize = 16 * 1024;

pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) stream: Arc<TcpStream>,
    pub(super) peer: SocketAddr,
    /// Received bytes not yet consumed: a partial head, body bytes not yet moved, or the start
    /// of a pipelined next request.
    pub(super) buf: Vec<u8>,
    pub(super) state: State,
    /// How far `buf` was searched for a line end, so a trickled head is not re-parsed per byte.
    scanned: usize,
    /// Length of `buf` at the last parse attempt of the current head.
    parsed_len: usize,
    /// This connection's place in the per-address count; released when the `Conn` is dropped.
    _slot: PeerSlot,
}

pub(super) enum State {
    /// Waiting for a (next) request; `since` starts the idle timeout, or the first-byte
    /// timeout while `fresh` (no request started on this connection yet; blank lines do not
    /// count).
    Idle {
        since: Instant,
        fresh: bool,
    },
    /// Reading a head; `started` is the arrival of its first byte.
    Head {
        started: Instant,
    },
    Body(Box<BodyProgress>),
    /// An error response was sent and our side shut: discard input briefly so the client reads
    /// the response instead of a reset, then close.
    Linger {
        until: Instant,
        discarded: usize,
    },
}

pub(super) struct BodyProgress {
    head: Head,
    data: Vec<u8>,
    kind: BodyKind,
    deadline: Instant,
    send_continue: bool,
}

enum BodyKind {
    Length { remaining: usize },
    Chunked(ChunkedDecoder),
}

/// A complete request ready for a worker.
pub(super) struct Ready {
    pub(super) request: Request,
    pub(super) keep_alive: bool,
    pub(super) head_only: bool,
}

pub(super) enum Advance {
    /// Read more.
    NeedMore,
    /// Send `100 Continue`, then read more.
    SendContinue,
    Ready(Box<Ready>),
    /// Answer with this error and close.
    Reject(Reject),
}

impl Conn {
    pub(super) fn new(
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        slot: PeerSlot,
        now: Instant,
    ) -> Conn {
        Conn {
            id,
            stream: Arc::new(stream),
            peer,
            buf: Vec::new(),
            state: State::Idle {
                since: now,
                fresh: true,
            },
            scanned: 0,
            parsed_len: 0,
            _slot: slot,
        }
    }

    /// When this connection's current state times out.
    pub(super) fn deadline(&self, limits: &Limits) -> Instant {
        match &self.state {
            State::Idle { since, fresh } => {
                *since
                    + if *fresh {
                        limits.first_byte_timeout
                    } else {
                        limits.idle_timeout
                    }
            }
            State::Head { started } => *started + limits.head_timeout,
            State::Body(b) => b.deadline,
            State::Linger { until, .. } => *until,
        }
    }

    /// How many bytes the next read may take. A head may not exceed `max_head_bytes` (one more
    /// byte proves it is too long); a Content-Length body is read exactly, so pipelined bytes stay
    /// in the kernel until this request is answered.
    pub(super) fn read_budget(&self, limits: &Limits) -> usize {
        let budget = match &self.state {
            State::Idle { .. } | State::Head { .. } => {
                (limits.max_head_bytes + 1).saturating_sub(self.buf.len())
            }
            State::Body(b) => match b.kind {
                BodyKind::Length { remaining } => remaining.saturating_sub(self.buf.len()),
                BodyKind::Chunked(_) => READ_CHUNK,
            },
            State::Linger { .. } => READ_CHUNK,
        };
        // Never zero: a state that cannot take more bytes has already been resolved by `advance`.
        budget.clamp(1, READ_CHUNK)
    }

    /// Method and path of a request whose head is read and whose body is not complete yet.
    pub(super) fn pending_head(&self) -> Option<(&str, &str)> {
        match &self.state {
            State::Body(b) => Some((b.head.method.as_str(), b.head.path.as_str())),
            _ => None,
        }
    }

    /// Ready for the next request on a kept-alive connection (pipelined bytes may be waiting).
    pub(super) fn reset_for_next(&mut self, now: Instant) {
        self.state = State::Idle {
            since: now,
            fresh: false,
        };
        self.scanned = 0;
        self.parsed_len = 0;
    }

    /// Move through as many states as the buffered bytes allow.
    pub(super) fn advance(&mut self, limits: &Limits, now: Instant) -> Advance {
        loop {
            match &mut self.state {
                State::Idle { .. } => {
                    // RFC 9112 §2.2: ignore empty lines before a request line. Dropping them here
                    // means a client cannot make us re-parse an ever-growing run of them.
                    let blank = self
                        .buf
                        .iter()
                        .take_while(|b| matches!(b, b'\r' | b'\n'))
                        .count();
                    let blank = if self.buf.get(blank.wrapping_sub(1)) == Some(&b'\r') {
                        blank - 1
                    } else {
                        blank
                    };
                    self.buf.drain(..blank);
                    if self.buf.is_empty() || self.buf == b"\r" {
                        return Advance::NeedMore;
                    }
                    self.state = State::Head { started: now };
                    self.scanned = 0;
                    self.parsed_len = 0;
                }
                State::Head { .. } => match self.try_head(limits, now) {
                    Ok(true) => {}
                    Ok(false) => return Advance::NeedMore,
                    Err(reject) => return Advance::Reject(reject),
                },
                State::Linger { .. } => return Advance::NeedMore,
                State::Body(body) => {
                    let done = match &mut body.kind {
                        BodyKind::Length { remaining } => {
                            let take = (*remaining).min(self.buf.len());
                            body.data.extend(self.buf.drain(..take));
                            *remaining -= take;
                            *remaining == 0
                        }
                        BodyKind::Chunked(decoder) => {
                            match decoder.decode(&self.buf, &mut body.data) {
                                Ok((used, done)) => {
                                    self.buf.drain(..used);
                                    done
                                }
                                Err(e) => return Advance::Reject(chunk_reject(e)),
                            }
                        }
                    };
                    if done {
                        return self.finish_request(now);
                    }
                    if std::mem::take(&mut body.send_continue) {
                        return Advance::SendContinue;
                    }
                    return Advance::NeedMore;
                }
            }
        }
    }

    /// Parse the head if a new line end arrived; `Ok(true)` when it moved to the body state.
    fn try_head(&mut self, limits: &Limits, now: Instant) -> Result<bool, Reject> {
        let new_line = self
            .buf
            .get(self.scanned..)
            .is_some_and(|unscanned| unscanned.contains(&b'\n'));
        self.scanned = self.buf.len();
        // Parse when a line ended, at the limit, or when the buffer doubled since the last try:
        // garbage without any newline (a TLS hello) is refused at once, while a head trickled
        // byte by byte costs O(lines + log n) parses instead of one per byte.
        let grown = self.buf.len() >= 2 * self.parsed_len;
        if !new_line && !grown && self.buf.len() < limits.max_head_bytes {
            return Ok(false);
        }
        self.parsed_len = self.buf.len();
        let Some(head) = parse_head(&self.buf, limits)? else {
            return Ok(false);
        };
        self.buf.drain(..head.len);
        self.scanned = 0;
        self.parsed_len = 0;
        let kind = match head.framing {
            Framing::None | Framing::Length(0) => BodyKind::Length { remaining: 0 },
            Framing::Length(n) => BodyKind::Length { remaining: n },
            Framing::Chunked => BodyKind::Chunked(ChunkedDecoder::new(
                limits.max_body_bytes,
                limits.max_head_bytes,
            )),
        };
        let send_continue = head.expect_continue;
        self.state = State::Body(Box::new(BodyProgress {
            head,
            data: Vec::new(),
            kind,
            // The body must arrive within one I/O timeout of the head (slow uploads end).
            deadline: now + limits.io_timeout,
            send_continue,
        }));
        Ok(true)
    }

    fn finish_request(&mut self, now: Instant) -> Advance {
        let idle = State::Idle {
            since: now,
            fresh: false,
        };
        let State::Body(body) = std::mem::replace(&mut self.state, idle) else {
            return Advance::NeedMore;
        };
        let BodyProgress { head, data, .. } = *body;
        let head_only = head.method == "HEAD";
        let request = Request {
            method: head.method,
            path: head.path,
            query: head.query,
            version: head.version,
            headers: head.headers,
            body: data,
            peer: self.peer,
        };
        Advance::Ready(Box::new(Ready {
            request,
            keep_alive: head.keep_alive,
            head_only,
        }))
    }
}

fn chunk_reject(e: ChunkError) -> Reject {
    match e {
        ChunkError::Malformed(message) => Reject::new(400, message),
        ChunkError::TooLarge => Reject::new(413, "request body too large"),
        ChunkError::TrailersTooLarge => Reject::new(431, "request trailers too large"),
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a test failure"
)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    fn conn() -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let slot = super::super::peers::PeerTable::new(0)
            .acquire(peer.ip())
            .unwrap();
        (Conn::new(1, server, peer, slot, Instant::now()), client)
    }

    fn limits() -> Limits {
        Limits {
            max_head_bytes: 256,
            max_body_bytes: 100,
            ..Limits::default()
        }
    }

    fn feed(c: &mut Conn, bytes: &[u8]) -> Advance {
        c.buf.extend_from_slice(bytes);
        c.advance(&limits(), Instant::now())
    }

    fn ready(a: Advance) -> Ready {
        match a {
            Advance::Ready(r) => *r,
            _ => panic!("not ready"),
        }
    }

    #[test]
    fn pipelined_requests_come_out_one_at_a_time() {
        let (mut c, _client) = conn();
        let r = ready(feed(
            &mut c,
            b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n",
        ));
        assert_eq!(
            (r.request.path.as_str(), r.request.body.as_slice()),
            ("/a", &b"abc"[..])
        );
        assert_eq!(c.buf, b"GET /b HTTP/1.1\r\n\r\n");
        c.reset_for_next(Instant::now());
        let r = ready(c.advance(&limits(), Instant::now()));
        assert_eq!(r.request.path, "/b");
        assert!(c.buf.is_empty());
    }

    #[test]
    fn body_arrives_in_pieces_and_budget_stops_at_its_end() {
        let (mut c, _client) = conn();
        assert!(matches!(
            feed(&mut c, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n1234"),
            Advance::NeedMore
        ));
        assert_eq!(c.read_budget(&limits()), 6);
        assert!(matches!(feed(&mut c, b"567"), Advance::NeedMore));
        assert_eq!(c.read_budget(&limits()), 3);
        assert_eq!(ready(feed(&mut c, b"890")).request.body, b"1234567890");
    }

    #[test]
    fn head_budget_stops_one_past_the_limit() {
        let (mut c, _client) = conn();
        assert_eq!(c.read_budget(&limits()), 257);
        assert!(matches!(feed(&mut c, b"GET /"), Advance::NeedMore));
        assert_eq!(c.read_budget(&limits()), 252);
        let filler = vec![b'a'; 252];
        match feed(&mut c, &filler) {
            Advance::Reject(r) => assert_eq!(r.status, 431),
            _ => panic!("expected 431"),
        }
    }

    #[test]
    fn expect_continue_is_asked_once_and_only_when_body_missing() {
        let (mut c, _client) = conn();
        let head = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(feed(&mut c, head), Advance::SendContinue));
        assert!(matches!(feed(&mut c, b"a"), Advance::NeedMore));
        assert_eq!(ready(feed(&mut c, b"b")).request.body, b"ab");
        // Body already here: nothing to ask.
        let (mut c, _client) = conn();
        let mut all = head.to_vec();
        all.extend_from_slice(b"ab");
        assert_eq!(ready(feed(&mut c, &all)).request.body, b"ab");
    }

    #[test]
    fn chunked_body_errors_map_to_statuses() {
        let (mut c, _client) = conn();
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(feed(&mut c, head), Advance::NeedMore));
        match feed(&mut c, b"65\r\n") {
            Advance::Reject(r) => assert_eq!(r.status, 413),
            _ => panic!("expected 413"),
        }
        let (mut c, _client) = conn();
        let mut all = head.to_vec();
        all.extend_from_slice(b"zz\r\n");
        match feed(&mut c, &all) {
            Advance::Reject(r) => assert_eq!(r.status, 400),
            _ => panic!("expected 400"),
        }
    }

    #[test]
    fn blank_lines_before_a_request_are_dropped_and_deadlines_follow_state() {
        let (mut c, _client) = conn();
        let l = limits();
        let t0 = Instant::now();
        let State::Idle { since, fresh } = c.state else {
            panic!("a new connection is idle");
        };
        assert!(fresh);
        assert_eq!(c.deadline(&l), since + l.first_byte_timeout);
        c.reset_for_next(t0);
        assert_eq!(c.deadline(&l), t0 + l.idle_timeout);
        assert!(matches!(feed(&mut c, b"\r\n\r\n\n\r"), Advance::NeedMore));
        assert_eq!(c.buf, b"\r", "a lone CR may start a CRLF");
        assert!(matches!(c.state, State::Idle { .. }));
        assert!(matches!(feed(&mut c, b"\nGET"), Advance::NeedMore));
        assert!(matches!(c.state, State::Head { .. }));
        assert!(c.deadline(&l) <= Instant::now() + l.head_timeout);
        assert!(c.deadline(&l) > Instant::now() + l.head_timeout - Duration::from_secs(1));
        assert_eq!(
            ready(feed(&mut c, b" / HTTP/1.1\r\n\r\n")).request.method,
            "GET"
        );
    }

    #[test]
    fn garbage_without_a_newline_is_refused_at_once() {
        let (mut c, _client) = conn();
        match feed(&mut c, b"\x16\x03\x01\x00\xa5\x01\x00") {
            Advance::Reject(r) => assert_eq!(r.status, 400),
            _ => panic!("expected 400"),
        }
        // A valid prefix trickled without newlines is just incomplete.
        let (mut c, _client) = conn();
        for b in b"GET /a-long-path" {
            assert!(matches!(feed(&mut c, &[*b]), Advance::NeedMore));
        }
    }

    #[test]
    fn head_requests_are_flagged() {
        let (mut c, _client) = conn();
        let r = ready(feed(&mut c, b"HEAD /x HTTP/1.0\r\n\r\n"));
        assert!(r.head_only);
        assert!(!r.keep_alive);
    }
}
