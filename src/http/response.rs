//! Writing responses: `Responder` (one complete response or a stream), `BodyStream` (one chunk
//! per `write`, flushed at once; its head sent at once or with the first chunk), and the small
//! canned error responses the poller sends (each with a fresh `X-Request-Id`, as the gateway's
//! own answers have).
//!
//! The server owns framing: it writes `Content-Length`, `Transfer-Encoding` and `Connection`,
//! so handlers cannot desynchronise a keep-alive connection. Header names and values are
//! checked so a handler cannot split a response with CR/LF.
//!
//! Thread model: a `Responder` lives on the worker thread serving one request, borrowing that
//! connection's socket for the duration of the handler. The socket stays non-blocking (as the
//! poller left it); each write that finds the send buffer full waits up to `io_timeout` for
//! room, as a blocking socket with a send timeout would. A probe the poller answers itself
//! (`Handler::answered_by_poller`) gets a responder whose writes never wait.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::body::{LAST_CHUNK, encode_chunk};
use super::{Shared, Version};
use crate::sys::net as sys;

/// Bodies up to this size are copied behind the head so the response leaves in one write.
const COALESCE_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RespState {
    /// Nothing written yet.
    Pending,
    /// A complete response was written.
    Sent,
    /// A `BodyStream` is open.
    Streaming,
    /// The stream was finished properly.
    Finished,
    /// A write failed or a stream was abandoned: the connection cannot be reused.
    Broken,
}

/// Handed to the handler to answer one request: either one full response or a stream.
pub struct Responder<'a> {
    stream: &'a TcpStream,
    version: Version,
    head_only: bool,
    keep_alive: bool,
    shared: &'a Shared,
    state: RespState,
    /// How long a write waits for room in the send buffer: `io_timeout`, or zero on the poller.
    write_wait: Duration,
}

/// How busy the server is, as a handler sees it (for a readiness endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// Shutdown has begun.
    pub draining: bool,
    /// Main-lane requests admitted (running + queued).
    pub in_flight: usize,
    pub max_in_flight: usize,
}

impl Busy {
    /// True when a new main-lane request would be refused with 503.
    pub fn saturated(&self) -> bool {
        self.draining || self.in_flight >= self.max_in_flight
    }
}

impl<'a> Responder<'a> {
    pub(super) fn new(
        stream: &'a TcpStream,
        version: Version,
        head_only: bool,
        keep_alive: bool,
        shared: &'a Shared,
    ) -> Responder<'a> {
        Responder {
            stream,
            version,
            head_only,
            keep_alive,
            shared,
            state: RespState::Pending,
            write_wait: shared.limits.io_timeout,
        }
    }

    /// The same responder whose writes never wait for room: a full send buffer breaks the
    /// response (the connection is then closed) instead of holding the poller.
    pub(super) fn never_waiting(mut self) -> Self {
        self.write_wait = Duration::ZERO;
        self
    }

    /// A complete response with `Content-Length`. Extra headers must not include
    /// Content-Length / Transfer-Encoding / Connection (the server sets those; passing them is an
    /// `InvalidInput` error and nothing is written).
    pub fn send(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> io::Result<()> {
        self.check_can_start(status, headers)?;
        let bodiless = status == 204 || status == 304;
        if bodiless && !body.is_empty() {
            return Err(invalid("204 and 304 responses cannot have a body"));
        }
        self.decide_keep_alive();
        let length = (!bodiless).then_some(body.len());
        let mut out = head_bytes(
            status,
            headers,
            Framing::Length(length),
            self.connection_header(),
        );
        let write_body = !self.head_only && !body.is_empty();
        if write_body && body.len() <= COALESCE_LIMIT {
            out.extend_from_slice(body);
        }
        self.write(&out)?;
        if write_body && body.len() > COALESCE_LIMIT {
            self.write(body)?;
        }
        self.state = RespState::Sent;
        Ok(())
    }

    /// Start a streamed response: HTTP/1.1 → chunked; HTTP/1.0 → raw bytes then close.
    /// The head is written and flushed at once.
    pub fn stream(&mut self, status: u16, headers: &[(&str, &str)]) -> io::Result<BodyStream<'_>> {
        let mut body = self.stream_lazily(status, headers)?;
        body.write(&[])?;
        Ok(body)
    }

    /// Like [`Responder::stream`], but the head leaves with the first chunk (or with the end of
    /// the body): one write instead of two.
    pub fn stream_lazily(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
    ) -> io::Result<BodyStream<'_>> {
        self.check_can_start(status, headers)?;
        if status == 204 || status == 304 {
            return Err(invalid("204 and 304 responses cannot be streamed"));
        }
        let chunked = self.version == Version::Http11;
        if chunked {
            self.decide_keep_alive();
        } else {
            // HTTP/1.0 has no chunking: the end of the body is the end of the connection.
            self.keep_alive = false;
        }
        let framing = if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
        let head = head_bytes(status, headers, framing, self.connection_header());
        self.state = RespState::Streaming;
        Ok(BodyStream {
            stream: self.stream,
            timeout: self.write_wait,
            state: &mut self.state,
            chunked,
            head_only: self.head_only,
            unsent: head,
        })
    }

    /// True when the client is gone: a write failed, or the connection was reset or hung up.
    /// A client that only half-closed (sent its request, then `shutdown(SHUT_WR)`) is still
    /// there; one that closed completely shows up after the next write. Non-blocking.
    pub fn client_gone(&self) -> bool {
        self.state == RespState::Broken || sys::peer_gone(self.stream.as_raw_fd())
    }

    /// The server's load now (main lane), e.g. for a readiness answer.
    pub fn busy(&self) -> Busy {
        let stats = &self.shared.stats;
        Busy {
            draining: self.shared.draining.load(Ordering::Acquire),
            in_flight: stats.in_flight.load(Ordering::Relaxed),
            max_in_flight: stats.max_in_flight,
        }
    }

    pub(super) fn state(&self) -> RespState {
        self.state
    }

    /// Whether the connection may serve another request after this response.
    pub(super) fn reusable(&self) -> bool {
        self.keep_alive && matches!(self.state, RespState::Sent | RespState::Finished)
    }

    /// Answer 500 to a request whose handler returned without responding; the connection
    /// stays usable.
    pub(super) fn fail_unanswered(&mut self) {
        self.send_internal_error();
    }

    /// After a handler panicked: answer 500 if nothing was sent yet, and shut the connection
    /// (a response may be half-written).
    pub(super) fn fail_after_panic(&mut self) {
        self.keep_alive = false;
        self.send_internal_error();
        if self.state != RespState::Sent {
            self.state = RespState::Broken;
        }
    }

    fn send_internal_error(&mut self) {
        if self.state == RespState::Pending {
            let body = error_body(500, "internal server error");
            let _ = self.send(500, &[("Content-Type", "application/json")], &body);
        }
    }

    fn check_can_start(&self, status: u16, headers: &[(&str, &str)]) -> io::Result<()> {
        if self.state != RespState::Pending {
            return Err(invalid("a response was already started"));
        }
        if !(200..=999).contains(&status) {
            return Err(invalid("status must be in 200..=999"));
        }
        headers.iter().try_for_each(|(n, v)| check_header(n, v))
    }

    fn decide_keep_alive(&mut self) {
        // During shutdown, tell the client this connection ends after the response.
        if self.shared.draining.load(Ordering::Acquire) {
            self.keep_alive = false;
        }
    }

    fn connection_header(&self) -> Option<&'static str> {
        match (self.keep_alive, self.version) {
            (false, _) => Some("close"),
            (true, Version::Http10) => Some("keep-alive"),
            (true, Version::Http11) => None,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let result = write_to(self.stream, bytes, self.write_wait);
        if result.is_err() {
            self.state = RespState::Broken;
        }
        result
    }
}

/// A streamed response body. Each `write` is one chunk, written and flushed before it returns
/// (with the head, when that has not gone out yet). Dropping it without `finish` leaves the
/// body incomplete, so the connection is then closed.
pub struct BodyStream<'a> {
    stream: &'a TcpStream,
    /// Longest wait for room in the send buffer, per write.
    timeout: Duration,
    state: &'a mut RespState,
    chunked: bool,
    head_only: bool,
    /// The head, until the first write takes it along ([`Responder::stream_lazily`]).
    unsent: Vec<u8>,
}

impl BodyStream<'_> {
    /// Write one chunk and flush it to the socket. An error means the client is gone.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.send(data, false)
    }

    /// Non-blocking check that the client is gone (see [`Responder::client_gone`]): each
    /// `write` to a client that closed draws a reset, so streams notice within one write.
    pub fn client_gone(&self) -> bool {
        *self.state == RespState::Broken || sys::peer_gone(self.stream.as_raw_fd())
    }

    /// Terminate the body (`0\r\n\r\n` for chunked) and flush.
    pub fn finish(self) -> io::Result<()> {
        self.finish_with(&[])
    }

    /// Write a last chunk and terminate the body, in one write.
    pub fn finish_with(mut self, last: &[u8]) -> io::Result<()> {
        self.send(last, true)?;
        *self.state = RespState::Finished;
        Ok(())
    }

    /// Write what is unsent, `data` as one chunk (an empty one would read as the end of the
    /// body, so it is left out; HEAD responses carry no body) and, with `end`, the last chunk.
    fn send(&mut self, data: &[u8], end: bool) -> io::Result<()> {
        if *self.state != RespState::Streaming {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "response stream is closed",
            ));
        }
        let mut out = std::mem::take(&mut self.unsent);
        if !self.head_only {
            if !self.chunked {
                out.extend_from_slice(data);
            } else if !data.is_empty() {
                encode_chunk(data, &mut out);
            }
            if self.chunked && end {
                out.extend_from_slice(LAST_CHUNK);
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        let result = write_to(self.stream, &out, self.timeout);
        if result.is_err() {
            *self.state = RespState::Broken;
        }
        result
    }
}

impl Drop for BodyStream<'_> {
    fn drop(&mut self) {
        if *self.state == RespState::Streaming {
            *self.state = RespState::Broken;
        }
    }
}

enum Framing {
    /// `Content-Length: n`, or none at all for 204/304.
    Length(Option<usize>),
    Chunked,
    /// HTTP/1.0 stream: the body ends when the connection closes.
    UntilClose,
}

fn head_bytes(
    status: u16,
    headers: &[(&str, &str)],
    framing: Framing,
    connection: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (name, value) in headers {
        push_header(&mut out, name, value);
    }
    match framing {
        Framing::Length(Some(n)) => push_header(&mut out, "Content-Length", &n.to_string()),
        Framing::Length(None) | Framing::UntilClose => {}
        Framing::Chunked => push_header(&mut out, "Transfer-Encoding", "chunked"),
    }
    if let Some(value) = connection {
        push_header(&mut out, "Connection", value);
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Names must be RFC 9110 tokens; values must not contain CR, LF or NUL (response splitting).
fn check_header(name: &str, value: &str) -> io::Result<()> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(tchar) {
        return Err(invalid("invalid response header name"));
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(invalid("invalid response header value"));
    }
    for reserved in ["content-length", "transfer-encoding", "connection"] {
        if name.eq_ignore_ascii_case(reserved) {
            return Err(invalid("framing headers are set by the server"));
        }
    }
    Ok(())
}

/// Write all bytes on the non-blocking socket, waiting at most `timeout` for room each time
/// the send buffer is full (a blocking write with a send timeout, without switching the
/// socket's mode per request). `TcpStream` is unbuffered, so this is also the flush.
fn write_to(mut stream: &TcpStream, mut bytes: &[u8], timeout: Duration) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sys::wait_writable(stream.as_raw_fd(), timeout)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// OpenAI-shaped error body, so every client sees one error format, even for framing errors.
pub(super) fn error_body(status: u16, message: &str) -> Vec<u8> {
    let kind = match status {
        503 => "overloaded_error",
        408 => "timeout_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    };
    let body = serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    body.to_string().into_bytes()
}

/// A complete error response that closes the connection (503 also carries `Retry-After: 1`).
pub(super) fn error_response(status: u16, message: &str) -> Vec<u8> {
    let body = error_body(status, message);
    let id = poller_request_id();
    let mut headers = vec![("Content-Type", "application/json"), ("X-Request-Id", &id)];
    if status == 503 {
        headers.push(("Retry-After", "1"));
    }
    let mut out = head_bytes(
        status,
        &headers,
        Framing::Length(Some(body.len())),
        Some("close"),
    );
    out.extend_from_slice(&body);
    out
}

static POLLER_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A request id for an answer the poller gives itself (the request never reached a handler).
fn poller_request_id() -> String {
    let n = POLLER_SEQ.fetch_add(1, Ordering::Relaxed);
    let t = crate::clock::unix_nanos();
    format!("req-{:012x}p{:05x}", t & 0xffff_ffff_ffff, n & 0xf_ffff)
}

pub(super) const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        // The reason phrase is optional (RFC 9112 §4); the space before it is not.
        _ => "",
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

    #[test]
    fn head_has_framing_and_connection() {
        let h = head_bytes(
            200,
            &[("Content-Type", "text/plain")],
            Framing::Length(Some(5)),
            Some("close"),
        );
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        );
        let h = head_bytes(299, &[], Framing::Chunked, None);
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "HTTP/1.1 299 \r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let h = head_bytes(204, &[], Framing::Length(None), Some("keep-alive"));
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn header_checks_refuse_splitting_and_framing_headers() {
        assert!(check_header("X-Ok", "a value\twith tab").is_ok());
        assert!(check_header("X-Bad", "a\r\nInjected: 1").is_err());
        assert!(check_header("X-Bad", "a\nb").is_err());
        assert!(check_header("Bad Name", "v").is_err());
        assert!(check_header("", "v").is_err());
        assert!(check_header("content-length", "5").is_err());
        assert!(check_header("Transfer-Encoding", "chunked").is_err());
        assert!(check_header("CONNECTION", "close").is_err());
    }

    #[test]
    fn error_response_is_openai_shaped_and_closes() {
        let r = String::from_utf8(error_response(503, "server overloaded")).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nRetry-After: 1"));
        assert!(head.contains("\r\nX-Request-Id: req-"), "{head}");
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!(v["error"]["message"], "server overloaded");
        assert!(v["error"]["param"].is_null() && v["error"]["code"].is_null());
        let r = String::from_utf8(error_response(413, "too big")).unwrap();
        assert!(!r.contains("Retry-After"));
        assert!(r.contains("invalid_request_error"));
    }
}
