//! A bounded server-sent-events parser, shared by the LLM backends (OpenAI and Anthropic
//! streams) and the MCP HTTP transports.
//!
//! It follows the WHATWG event-stream rules that matter to us: LF, CRLF and CR line endings;
//! `:` comment lines (keep-alives) skipped; `data:` lines joined with `\n`; one optional space
//! after the colon removed; `event`, `id` (ignored when it contains NUL) and `retry` (digits
//! only); an event is dispatched at a blank line, and events without data lines are dropped
//! unless they carry `id`/`retry` (MCP priming events). A line or event larger than the cap is
//! an `InvalidData` error (or, with [`SseReader::skip_oversized`], dropped as it arrives, its
//! two ends kept), so a hostile peer cannot make us buffer without bound. Reading is
//! synchronous on the caller's thread; the underlying reader's timeouts apply.
//!
//! A peer that sends only comments (or trickles bytes) never completes an event, and its reads
//! never time out. [`SseReader::next_item`] therefore also returns [`SseItem::Idle`] on every comment
//! line and, with [`SseReader::with_idle_tick`], when the tick passes mid-line, so that callers
//! can check their deadline and whether anyone still waits, and abandon a silent stream.
//! A read error leaves the reader as it was (a partly read line and event are kept), so a
//! caller whose reader times out on purpose (an idle tick) may simply call again.

#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io::{self, BufRead};
use std::time::{Duration, Instant};

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

/// What [`SseReader::next_item`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A complete event.
    Event(SseEvent),
    /// No event yet, but the peer is alive: a comment line (keep-alive) was read, or the idle
    /// tick passed while bytes trickled in. The caller checks its deadline and whether anyone
    /// still waits, then calls again; a partly read event is kept.
    Idle,
}

pub struct SseReader<R> {
    inner: R,
    max_event_bytes: usize,
    line: Vec<u8>,
    /// A CR ended the previous line: a directly following LF belongs to it.
    after_cr: bool,
    /// `line` holds the start of a line cut short by an idle tick.
    line_pending: bool,
    /// The event being assembled (kept across [`SseItem::Idle`] returns).
    ev: SseEvent,
    has_data: bool,
    has_fields: bool,
    size: usize,
    /// [`SseReader::next_item`] returns `Idle` after this long without an event.
    tick: Option<Duration>,
    /// Drop an oversized event instead of failing the stream ([`SseReader::skip_oversized`]).
    skip_oversized: bool,
    /// The event being assembled is oversized: its data is dropped as it arrives.
    dropping: bool,
    /// The current line overflowed and is being dropped up to its end.
    dropping_line: bool,
    over_head: Vec<u8>,
    over_tail: Vec<u8>,
    /// Head and tail of the last dropped event, until [`SseReader::take_oversized`].
    dropped: Option<(Vec<u8>, Vec<u8>)>,
}

/// Bytes kept from each end of a dropped oversized event.
pub const OVERSIZED_KEEP: usize = 512;

fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(
        more.get(more.len().saturating_sub(OVERSIZED_KEEP)..)
            .unwrap_or_default(),
    );
    let excess = tail.len().saturating_sub(OVERSIZED_KEEP);
    tail.drain(..excess);
}

impl<R: BufRead> SseReader<R> {
    pub fn new(inner: R, max_event_bytes: usize) -> Self {
        SseReader {
            inner,
            max_event_bytes,
            line: Vec::new(),
            after_cr: false,
            line_pending: false,
            ev: SseEvent::default(),
            has_data: false,
            has_fields: false,
            size: 0,
            tick: None,
            skip_oversized: false,
            dropping: false,
            dropping_line: false,
            over_head: Vec::new(),
            over_tail: Vec::new(),
            dropped: None,
        }
    }

    /// An event larger than the cap is dropped as it arrives (never buffered past the cap)
    /// instead of being an error: [`SseReader::next_item`] returns `Idle` when it ends, and
    /// [`SseReader::take_oversized`] then gives its first and last [`OVERSIZED_KEEP`] data
    /// bytes. For streams that carry independent messages (MCP), where one oversized message
    /// must not end the others.
    pub fn skip_oversized(mut self) -> Self {
        self.skip_oversized = true;
        self
    }

    /// The first and last bytes of the data of an oversized event dropped since the last call.
    pub fn take_oversized(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.dropped.take()
    }

    /// Start dropping the current event, keeping the ends of what it had so far.
    fn start_dropping(&mut self, pending: &[u8]) {
        if !self.dropping {
            self.dropping = true;
            let mut head = self.ev.data.as_bytes().to_vec();
            head.extend_from_slice(pending);
            head.truncate(OVERSIZED_KEEP);
            self.over_head = head;
            self.over_tail.clear();
            keep_tail(&mut self.over_tail, self.ev.data.as_bytes());
            self.ev.data = String::new();
        }
        keep_tail(&mut self.over_tail, pending);
    }

    /// Also return [`SseItem::Idle`] when `tick` passes without a complete event (checked
    /// whenever bytes arrive; a fully silent peer is bounded by the reader's own timeout).
    pub fn with_idle_tick(mut self, tick: Duration) -> Self {
        self.tick = Some(tick);
        self
    }

    /// Next complete event; `Ok(None)` at end of stream (a trailing event without its blank
    /// line is dropped, as the spec says). Comments are skipped. An event larger than
    /// `max_event_bytes` is an `InvalidData` error. Never returns for a peer that sends only
    /// comments: readers that must notice deadlines use [`SseReader::next_item`].
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        loop {
            match self.next_item()? {
                Some(SseItem::Event(ev)) => return Ok(Some(ev)),
                Some(SseItem::Idle) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Next event or idle tick; `Ok(None)` at end of stream. Every comment line is an `Idle`,
    /// so a stream of keep-alives cannot hold the caller away from its deadline checks.
    pub fn next_item(&mut self) -> io::Result<Option<SseItem>> {
        let started = Instant::now();
        loop {
            if self.tick.is_some_and(|t| started.elapsed() >= t) {
                return Ok(Some(SseItem::Idle));
            }
            if !self.read_line(started)? {
                return Ok(None);
            }
            if self.line_pending {
                return Ok(Some(SseItem::Idle));
            }
            if std::mem::take(&mut self.dropping_line) {
                continue;
            }
            if self.line.is_empty() {
                if self.dropping {
                    self.dropping = false;
                    self.has_data = false;
                    self.has_fields = false;
                    self.size = 0;
                    self.ev = SseEvent::default();
                    let head = std::mem::take(&mut self.over_head);
                    let tail = std::mem::take(&mut self.over_tail);
                    self.dropped = Some((head, tail));
                    return Ok(Some(SseItem::Idle));
                }
                if self.has_data || self.ev.id.is_some() || self.ev.retry.is_some() {
                    self.has_data = false;
                    self.has_fields = false;
                    self.size = 0;
                    return Ok(Some(SseItem::Event(std::mem::take(&mut self.ev))));
                }
                // An empty dispatch (only comments or only `event:`): reset and go on.
                if self.has_fields {
                    self.ev = SseEvent::default();
                    self.has_fields = false;
                    self.size = 0;
                }
                continue;
            }
            if self.line.first() == Some(&b':') {
                // A comment (keep-alive): not part of any event, so not counted in its size.
                return Ok(Some(SseItem::Idle));
            }
            self.size += self.line.len();
            if self.size > self.max_event_bytes || self.dropping {
                if !self.skip_oversized {
                    return Err(too_large(self.max_event_bytes));
                }
                let line = std::mem::take(&mut self.line);
                let data = line.strip_prefix(b"data:").unwrap_or_default();
                let data = data.strip_prefix(b" ").unwrap_or(data);
                self.start_dropping(data);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line);
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            // Invalid UTF-8 reads as U+FFFD, three bytes for one: the text can outgrow the
            // bytes counted above, and the cap holds for the text too.
            if field == "data"
                && self.ev.data.len() + usize::from(self.has_data) + value.len()
                    > self.max_event_bytes
            {
                if !self.skip_oversized {
                    return Err(too_large(self.max_event_bytes));
                }
                let value = value.as_bytes().to_vec();
                self.start_dropping(&value);
                continue;
            }
            self.has_fields = true;
            let ev = &mut self.ev;
            match field {
                "data" => {
                    if self.has_data {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value);
                    self.has_data = true;
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
    /// pending bytes. With an idle tick, a line still incomplete when the tick passes is kept
    /// in `self.line` and continued by the next call.
    fn read_line(&mut self, started: Instant) -> io::Result<bool> {
        if !self.line_pending {
            self.line.clear();
        }
        loop {
            let (consumed, done) = {
                let buf = match self.inner.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // Resumable: a caller may read again after an error (a read timeout
                        // used as a tick), so the start of the line is kept.
                        if !self.line.is_empty() {
                            self.line_pending = true;
                        }
                        return Err(e);
                    }
                };
                if buf.is_empty() {
                    self.line_pending = false;
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
            if self.line.len() > self.max_event_bytes || self.dropping_line {
                if !self.skip_oversized {
                    return Err(too_large(self.max_event_bytes));
                }
                // Drop the line as it arrives; only its ends are kept.
                let mut line = std::mem::take(&mut self.line);
                if !self.dropping_line {
                    self.dropping_line = true;
                    let data = line.strip_prefix(b"data:").unwrap_or_default();
                    let data = data.strip_prefix(b" ").unwrap_or(data).to_vec();
                    line = data;
                }
                self.start_dropping(&line);
            }
            if done {
                self.line_pending = false;
                return Ok(true);
            }
            if self.tick.is_some_and(|t| started.elapsed() >= t) {
                // Keep the partial line; the caller gets `Idle` and calls again.
                self.line_pending = true;
                return Ok(true);
            }
        }
    }
}

impl<R: io::Read> SseReader<io::BufReader<R>> {
    /// Whether the next item is most likely already in memory: the read buffer holds, after
    /// some content, a blank line (the end of an event). [`SseReader::next_item`] then
    /// returns without waiting for input, unless what precedes the blank line dispatches
    /// nothing (only `event:` fields), which is read past. False when unsure.
    pub fn next_item_buffered(&self) -> bool {
        let buf = self.inner.buffer();
        let Some(start) = buf.iter().position(|&b| b != b'\n' && b != b'\r') else {
            return false;
        };
        let rest = buf.get(start..).unwrap_or_default();
        rest.windows(2).any(|w| w == b"\n\n" || w == b"\r\r")
            || rest.windows(4).any(|w| w == b"\r\n\r\n")
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

    #[test]
    fn invalid_utf8_cannot_take_an_event_past_the_cap() {
        // 10 bytes of 0xFF read as 10 replacement characters: 30 bytes of text.
        let mut input = b"data: ".to_vec();
        input.extend_from_slice(&[0xFF; 10]);
        input.extend_from_slice(b"\n\ndata: ok\n\n");
        assert!(parse_all(&input, 20).is_err());
        let mut r = SseReader::new(BufReader::new(&input[..]), 20).skip_oversized();
        assert_eq!(r.next_item().unwrap(), Some(SseItem::Idle), "dropped");
        assert!(r.take_oversized().is_some());
        assert_eq!(r.next_event().unwrap().unwrap().data, "ok");
        // Under the cap, the text is kept as read.
        let ev = &parse_all(&input, 64).unwrap()[0];
        assert_eq!(ev.data, "\u{FFFD}".repeat(10));
    }

    #[test]
    fn the_next_item_is_buffered_when_a_complete_event_is_in_memory() {
        let input: &[u8] = b"data: a\n\ndata: b\r\n\r\n: ping\n\ndata: c";
        let mut r = SseReader::new(BufReader::new(input), 1024);
        assert!(!r.next_item_buffered(), "nothing read yet");
        assert_eq!(r.next_event().unwrap().unwrap().data, "a");
        assert!(r.next_item_buffered(), "b is in memory");
        assert_eq!(r.next_event().unwrap().unwrap().data, "b");
        assert!(r.next_item_buffered(), "the comment is in memory");
        assert_eq!(r.next_item().unwrap(), Some(SseItem::Idle));
        // Only the start of an event: reading on may wait.
        assert!(!r.next_item_buffered());
        // Blank lines alone dispatch nothing.
        let mut r = SseReader::new(BufReader::new(&b"\n\n\r\n"[..]), 1024);
        r.inner.fill_buf().unwrap();
        assert!(!r.next_item_buffered());
    }

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

    #[test]
    fn comments_are_idle_ticks_and_a_partial_event_survives_them() {
        let input = b": keep-alive\ndata: a\n: ping\ndata: b\n\n";
        let mut r = SseReader::new(BufReader::with_capacity(1, &input[..]), 1024);
        let mut items = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            items.push(item);
        }
        let ev = SseEvent {
            data: "a\nb".into(),
            ..SseEvent::default()
        };
        assert_eq!(items, [SseItem::Idle, SseItem::Idle, SseItem::Event(ev)]);
    }

    #[test]
    fn trickled_bytes_give_idle_ticks_without_losing_the_line() {
        /// Hands out one byte per read, slowly.
        struct Slow(Vec<u8>, usize);
        impl io::Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_millis(3));
                match (self.0.get(self.1), buf.first_mut()) {
                    (Some(b), Some(slot)) => {
                        *slot = *b;
                        self.1 += 1;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let slow = Slow(b"data: hello world\n\n".to_vec(), 0);
        let mut r = SseReader::new(BufReader::with_capacity(1, slow), 1024)
            .with_idle_tick(Duration::from_millis(10));
        let (mut idle, mut events) = (0, Vec::new());
        while let Some(item) = r.next_item().unwrap() {
            match item {
                SseItem::Idle => idle += 1,
                SseItem::Event(ev) => events.push(ev.data),
            }
        }
        assert!(idle >= 2, "{idle}");
        assert_eq!(events, ["hello world"]);
    }

    #[test]
    fn a_read_error_loses_nothing_and_reading_goes_on() {
        /// Gives its pieces in order, with a timeout between any two.
        struct Gappy(Vec<&'static [u8]>, bool);
        impl io::Read for Gappy {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.1 = !self.1;
                if self.1 {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "tick"));
                }
                if self.0.is_empty() {
                    return Ok(0);
                }
                let piece = self.0.remove(0);
                buf[..piece.len()].copy_from_slice(piece);
                Ok(piece.len())
            }
        }
        // Cut inside a field name, inside a value, between the lines of one event, and
        // between a CR and its LF.
        let pieces: Vec<&[u8]> = vec![b"da", b"ta: hel", b"lo\r", b"\ndata: w", b"orld\n", b"\n"];
        let mut r = SseReader::new(BufReader::new(Gappy(pieces, false)), 1024);
        let (mut errors, mut events) = (0, Vec::new());
        loop {
            match r.next_item() {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => errors += 1,
                Err(e) => panic!("{e}"),
                Ok(Some(SseItem::Event(ev))) => events.push(ev.data),
                Ok(Some(SseItem::Idle)) => {}
                Ok(None) => break,
            }
        }
        assert_eq!(errors, 7);
        assert_eq!(events, ["hello\nworld"]);
    }

    #[test]
    fn a_comment_flood_does_not_count_towards_the_event_cap() {
        let input = ": keep-alive\n\n".repeat(100) + "data: x\n\n";
        assert_eq!(data(&parse_all(input.as_bytes(), 50).unwrap()), ["x"]);
    }

    #[test]
    fn oversized_events_can_be_skipped_keeping_their_ends() {
        let big = "y".repeat(5000);
        let input = format!(
            "data: small\n\ndata: {{\"id\":3,\"r\":\"{big}\"}}\n\ndata: a\ndata: {big}\ndata: end\n\ndata: after\n\n"
        );
        let mut r = SseReader::new(input.as_bytes(), 1000).skip_oversized();
        let mut seen = Vec::new();
        let mut dropped = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            match item {
                SseItem::Event(ev) => seen.push(ev.data),
                SseItem::Idle => dropped.extend(r.take_oversized()),
            }
        }
        assert_eq!(seen, ["small", "after"]);
        assert_eq!(dropped.len(), 2);
        assert!(
            dropped[0].0.starts_with(b"{\"id\":3,"),
            "{:?}",
            String::from_utf8_lossy(&dropped[0].0)
        );
        assert!(dropped[0].1.ends_with(b"yy\"}"));
        assert!(dropped[0].0.len() <= OVERSIZED_KEEP && dropped[0].1.len() <= OVERSIZED_KEEP);
        assert!(dropped[1].0.starts_with(b"a"));
        assert!(dropped[1].1.ends_with(b"end"));
        // Without the opt-in it is still an error.
        let mut strict = SseReader::new(input.as_bytes(), 1000);
        assert_eq!(strict.next_event().unwrap().unwrap().data, "small");
        assert!(strict.next_event().is_err());
    }
}
