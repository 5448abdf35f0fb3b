//! STUB API — bounded SSE event parser shared by backends and MCP transports.
#![allow(dead_code)]
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

pub struct SseReader<R> {
    inner: R,
    max_event_bytes: usize,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(inner: R, max_event_bytes: usize) -> Self {
        SseReader {
            inner,
            max_event_bytes,
        }
    }
    /// Next complete event; `Ok(None)` at end of stream. Comments are skipped. An event larger
    /// than `max_event_bytes` is an `InvalidData` error.
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        Ok(None)
    }
}
