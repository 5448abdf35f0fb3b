//! A bounded server-sent-events parser, shared by the LLM backends (OpenAI and Anthropic
//! streams) and the MCP HTTP transports.
//!
//! It follows the WHATWG event-stream rules that matter to us: LF, CRLF and CR line endings;
//! `:` comment lines (keep-alives) skipped; `data:` lines joined with `\n`; one optional space
//! after the colon removed; `event`, `id` (ignored when it contains NUL) and `retry` (digits
//! only); an event is dispatched at a blank line, and events without data lines are dropped
//! unless they carry `id`/`retry` (MCP priming events). A line or event larger than the cap is
//! an `InvalidData` error, so a hostile peer cannot make us buffer without bound. Reading is
//! synchronous on the caller's thread; the underlying reader's timeouts apply.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io::{self, BufRead};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `event:` field; `None` means the default type "message".
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
    pub id: Option<String>,
    /// `retry:` in milliseconds.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// The event type, defaulting to "message".
    pub fn kind(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

pub struct SseReader<R> {
    inner: R,
    max_event_bytes: usize,
    line: Vec<u8>,
    /// A CR ended the previous line: a directly following LF belongs to it.
    after_cr: bool,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(inner: R, max_event_bytes: usize) -> Self {
        SseReader {
            inner,
            max_event_bytes,
            line: Vec::new(),
            after_cr: false,
        }
    }

    /// Next complete event; `Ok(None)` at end of stream (a trailing event without its blank
    /// line is dropped, as the spec says). Comments are skipped. An event larger than
    /// `max_event_bytes` is an `InvalidData` error.
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        let mut ev = SseEvent::default();
        let mut has_data = false;
        let mut has_fields = false;
        let mut size = 0usize;
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            if self.line.is_empty() {
                if has_data || ev.id.is_some() || ev.retry.is_some() {
                    return Ok(Some(ev));
                }
                // An empty dispatch (only comments or only `event:`): reset and go on.
                if has_fields {
                    ev = SseEvent::default();
                    has_fields = false;
                    size = 0;
                }
                continue;
            }
            size += self.line.len();
            if size > self.max_event_bytes {
                return Err(too_large(self.max_event_bytes));
            }
            let line = String::from_utf8_lossy(&self.line);
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, v)) => (field, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            has_fields = true;
            match field {
                "data" => {
                    if has_data {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value);
                    has_data = true;
                }
                "event" => ev.event = Some(value.to_string()),
                "id" if !value.contains('\0') => ev.id = Some(value.to_string()),
                "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                    ev.retry = value.parse().ok();
                }
                _ => {}
            }
        }
    }

    /// Read one line into `self.line` without its terminator. Returns false at EOF with no
    /// pending bytes.
    fn read_line(&mut self) -> io::Result<bool> {
        self.line.clear();
        loop {
            let (consumed, done) = {
                let buf = match self.inner.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if buf.is_empty() {
                    return Ok(!self.line.is_empty());
                }
                let mut rest = buf;
                if self.after_cr {
                    self.after_cr = false;
                    if let Some(after_lf) = rest.strip_prefix(b"\n") {
                        rest = after_lf;
                    }
                }
                let skipped = buf.len() - rest.len();
                match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                    Some(i) => {
                        let (line, tail) = rest.split_at(i);
                        self.line.extend_from_slice(line);
                        if tail.first() == Some(&b'\r') {
                            self.after_cr = true;
                        }
                        (skipped + i + 1, true)
                    }
                    None => {
                        self.line.extend_from_slice(rest);
                        (buf.len(), false)
                    }
                }
            };
            self.inner.consume(consumed);
            if self.line.len() > self.max_event_bytes {
                return Err(too_large(self.max_event_bytes));
            }
            if done {
                return Ok(true);
            }
        }
    }
}

fn too_large(max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("SSE event larger than {max} bytes"),
    )
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a test failure"
)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn parse_all(input: &[u8], cap: usize) -> io::Result<Vec<SseEvent>> {
        // A 1-byte buffer exercises every split point.
        let mut r = SseReader::new(BufReader::with_capacity(1, input), cap);
        let mut out = Vec::new();
        while let Some(ev) = r.next_event()? {
            out.push(ev);
        }
        Ok(out)
    }

    fn data(ev: &[SseEvent]) -> Vec<&str> {
        ev.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn lf_crlf_and_cr_endings() {
        for input in [
            &b"data: a\n\ndata: b\n\n"[..],
            b"data: a\r\n\r\ndata: b\r\n\r\n",
            b"data: a\r\rdata: b\r\r",
        ] {
            assert_eq!(
                data(&parse_all(input, 1024).unwrap()),
                ["a", "b"],
                "{input:?}"
            );
        }
    }

    #[test]
    fn comments_multiline_fields() {
        let input =
            b": keep-alive\nevent: message_start\nid: 7\nretry: 500\ndata: {\"a\":\ndata:1}\n\n";
        let ev = parse_all(input, 1024).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].event.as_deref(), Some("message_start"));
        assert_eq!(ev[0].data, "{\"a\":\n1}");
        assert_eq!(ev[0].id.as_deref(), Some("7"));
        assert_eq!(ev[0].retry, Some(500));
    }

    #[test]
    fn priming_event_without_data_is_kept_and_empty_events_dropped() {
        let ev = parse_all(
            b"id: ev-1\nretry: 500\ndata:\n\n: only a comment\n\nevent: x\n\ndata: z\n\n",
            1024,
        )
        .unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].id.as_deref(), Some("ev-1"));
        assert_eq!(ev[0].data, "");
        assert_eq!(ev[1].data, "z");
        assert_eq!(ev[1].kind(), "message");
    }

    #[test]
    fn trailing_event_without_blank_line_is_dropped() {
        assert_eq!(
            data(&parse_all(b"data: a\n\ndata: b", 1024).unwrap()),
            ["a"]
        );
    }

    #[test]
    fn oversized_line_or_event_is_an_error() {
        let long = format!("data: {}\n\n", "x".repeat(100));
        assert!(parse_all(long.as_bytes(), 50).is_err());
        let many = "data: 0123456789\n".repeat(10) + "\n";
        assert!(parse_all(many.as_bytes(), 50).is_err());
    }

    #[test]
    fn bad_retry_ignored_and_no_space_after_colon() {
        let ev = parse_all(b"retry: 5x\ndata:a\n\n", 1024).unwrap();
        assert_eq!(ev[0].retry, None);
        assert_eq!(ev[0].data, "a");
    }
}
