//! A minimal HTTP/1.1 client for the load generator: one request at a time on a keep-alive
//! connection, timing the response head, the first content delta of a stream and the end of
//! the body. Reads `Content-Length`, chunked and close-delimited bodies; in streams it counts
//! SSE `data:` events that carry content and notes the end (`[DONE]`, or `response.completed`
//! of a Responses API stream) and error events.
//!
//! Thread model: a `Conn` belongs to one load thread; every read has a timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct Conn {
    reader: BufReader<TcpStream>,
}

/// What one request gave.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status: u16,
    /// Time to the end of the response head.
    pub head: Duration,
    /// Time to the first SSE event carrying non-empty content (streams only).
    pub first_content: Option<Duration>,
    /// Time to the end of the body.
    pub total: Duration,
    /// SSE events with non-empty content.
    pub content_events: usize,
    /// `data: [DONE]` (chat) or a `response.completed` event seen.
    pub done: bool,
    /// A `data: {"error":…}` (chat), `error` or `response.failed` event seen.
    pub error_event: bool,
    /// The body (non-stream only; empty for streams).
    pub body: Vec<u8>,
    /// The server will close this connection.
    pub close: bool,
}

impl Outcome {
    /// One more event with content, at `start.elapsed()`.
    fn content(&mut self, start: Instant) {
        self.content_events += 1;
        if self.first_content.is_none() {
            self.first_content = Some(start.elapsed());
        }
    }
}

impl Conn {
    pub fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 * 1024, s),
        })
    }

    /// Send one complete request (head + body bytes) and read the whole response.
    pub fn exchange(&mut self, request: &[u8], stream: bool) -> io::Result<Outcome> {
        let start = Instant::now();
        self.reader.get_mut().write_all(request)?;
        let mut out = Outcome::default();
        let (chunked, length) = self.read_head(&mut out)?;
        out.head = start.elapsed();
        let mut sse = Sse::default();
        let mut on_data = |data: &[u8], out: &mut Outcome| {
            if stream {
                sse.feed(data, out, start);
            } else {
                out.body.extend_from_slice(data);
            }
        };
        if chunked {
            self.read_chunked(&mut out, &mut on_data)?;
        } else if let Some(n) = length {
            let mut left = n;
            while left > 0 {
                let buf = self.reader.fill_buf()?;
                if buf.is_empty() {
                    return Err(eof());
                }
                let take = buf.len().min(left);
                let data = buf[..take].to_vec();
                self.reader.consume(take);
                on_data(&data, &mut out);
                left -= take;
            }
        } else {
            out.close = true;
            let mut rest = Vec::new();
            self.reader.read_to_end(&mut rest)?;
            on_data(&rest, &mut out);
        }
        out.total = start.elapsed();
        Ok(out)
    }

    fn read_line(&mut self, line: &mut String) -> io::Result<()> {
        line.clear();
        if self.reader.read_line(line)? == 0 {
            return Err(eof());
        }
        Ok(())
    }

    /// Status and framing: `(chunked, content-length)`.
    fn read_head(&mut self, out: &mut Outcome) -> io::Result<(bool, Option<usize>)> {
        let mut line = String::new();
        self.read_line(&mut line)?;
        out.status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
        let (mut chunked, mut length) = (false, None);
        loop {
            self.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                return Ok((chunked, length));
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                out.close = true;
            }
        }
    }

    fn read_chunked(
        &mut self,
        out: &mut Outcome,
        on_data: &mut dyn FnMut(&[u8], &mut Outcome),
    ) -> io::Result<()> {
        let mut line = String::new();
        let mut data = Vec::new();
        loop {
            self.read_line(&mut line)?;
            let size_text = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text.trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    self.read_line(&mut line)?;
                    if line.trim_end().is_empty() {
                        return Ok(());
                    }
                }
            }
            data.resize(size + 2, 0);
            self.reader.read_exact(&mut data)?;
            on_data(&data[..size], out);
        }
    }
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed mid-response",
    )
}

/// Incremental SSE event splitter (events end at a blank line; `\n` line ends, as both the
/// fake upstream and aiproxy write them).
#[derive(Default)]
struct Sse {
    buf: Vec<u8>,
}

impl Sse {
    fn feed(&mut self, data: &[u8], out: &mut Outcome, start: Instant) {
        self.buf.extend_from_slice(data);
        let mut used = 0;
        while let Some(end) = find(&self.buf[used..], b"\n\n") {
            let event = &self.buf[used..used + end];
            used += end + 2;
            // Responses API events are named (`event: response.…`); the name says what the
            // event is, so its payload (a whole response object for some) is not scanned.
            let mut name: Option<&[u8]> = None;
            for line in event.split(|b| *b == b'\n') {
                if let Some(n) = line.strip_prefix(b"event: ") {
                    name = Some(n);
                    continue;
                }
                let Some(payload) = line.strip_prefix(b"data: ") else {
                    continue;
                };
                match name {
                    Some(b"response.completed") => out.done = true,
                    Some(b"response.failed" | b"error") => out.error_event = true,
                    Some(b"response.output_text.delta") if non_empty(payload, b"\"delta\":\"") => {
                        out.content(start);
                    }
                    Some(_) => {}
                    None if payload == b"[DONE]" => out.done = true,
                    None if payload.starts_with(b"{\"error\"") => out.error_event = true,
                    None if non_empty(payload, b"\"content\":\"") => out.content(start),
                    None => {}
                }
            }
        }
        self.buf.drain(..used);
    }
}

/// Whether `"key":"…"` (key given with its opening quote) holds a non-empty string.
fn non_empty(payload: &[u8], key: &[u8]) -> bool {
    find(payload, key).is_some_and(|i| payload.get(i + key.len()) != Some(&b'"'))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete `POST` request with a JSON body.
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A `GET` request.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_counts_content_done_and_errors() {
        let mut out = Outcome::default();
        let mut sse = Sse::default();
        let t = Instant::now();
        sse.feed(
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            &mut out,
            t,
        );
        assert_eq!(out.content_events, 0);
        sse.feed(b"data: {\"delta\":{\"content\":\"t0 \"}}\n", &mut out, t);
        assert_eq!(out.content_events, 0, "event not complete yet");
        sse.feed(
            b"\n: comment\n\ndata: {\"delta\":{\"content\":\"t1 \"}}\n\ndata: [DONE]\n\n",
            &mut out,
            t,
        );
        assert_eq!(out.content_events, 2);
        assert!(out.first_content.is_some() && out.done && !out.error_event);
        sse.feed(b"data: {\"error\":{\"message\":\"x\"}}\n\n", &mut out, t);
        assert!(out.error_event);
    }

    #[test]
    fn sse_reads_responses_events_by_name() {
        let mut out = Outcome::default();
        let mut sse = Sse::default();
        let t = Instant::now();
        let created = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"output\":[{\"content\":\"x\"}]}}\n\n";
        sse.feed(created, &mut out, t);
        assert_eq!(out.content_events, 0, "a response object is not content");
        sse.feed(
            b"event: response.output_text.delta\ndata: {\"delta\":\"\"}\n\nevent: response.output_text.delta\ndata: {\"delta\":\"t0 \"}\n\n",
            &mut out,
            t,
        );
        assert_eq!(out.content_events, 1);
        assert!(!out.done);
        sse.feed(
            b"event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n",
            &mut out,
            t,
        );
        assert!(out.done && !out.error_event);
        sse.feed(b"event: response.failed\ndata: {}\n\n", &mut out, t);
        assert!(out.error_event);
    }
}
