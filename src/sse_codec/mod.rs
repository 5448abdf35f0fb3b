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
mod tests;
