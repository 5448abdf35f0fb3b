//! The fuzz targets' bodies, as plain functions: libFuzzer drives them through
//! `fuzz_targets/*.rs` (`cargo +nightly fuzz run <name>`), and `tests/replay.rs` runs them over
//! the seeds and saved regression inputs on stable. Each one feeds arbitrary bytes to one of
//! aiproxy's parsers of untrusted input and checks what must hold besides "no panic".
//!
//! Thread model: pure functions on the calling thread.

use std::io::{BufReader, Cursor};

use aiproxy::backend::anthropic::stream::StreamMachine;
use aiproxy::config::{self, MapEnv};
use aiproxy::http::fuzzing;
use aiproxy::mcp::jsonrpc::decode_frame;
use aiproxy::sse_codec::SseReader;

/// Event cap used for the SSE targets: small, so oversize handling is reached.
const MAX_EVENT: usize = 4096;
/// Events read from one input at most (the input is finite anyway; this bounds a loop bug).
const MAX_EVENTS: usize = 100_000;

/// The first byte picks the reader's buffer size (1..=64), so lines and CRLF pairs are split
/// across reads in every possible way; the rest is the stream.
fn sse_input(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((b, rest)) => (usize::from(b % 64) + 1, rest),
        None => (1, data),
    }
}

/// `sse_codec`: the SSE parser shared by the backends and MCP transports. Every event it
/// returns respects the cap; the same bytes give the same events whatever the read sizes.
pub fn sse_codec(data: &[u8]) {
    let (buf, stream) = sse_input(data);
    let read_all = |capacity: usize| {
        let mut reader = SseReader::new(
            BufReader::with_capacity(capacity, Cursor::new(stream)),
            MAX_EVENT,
        );
        let mut events = Vec::new();
        for _ in 0..MAX_EVENTS {
            match reader.next_event() {
                Ok(Some(ev)) => {
                    assert!(ev.data.len() <= MAX_EVENT, "event over the cap");
                    events.push(ev);
                }
                Ok(None) => return Ok(events),
                Err(e) => return Err(e.kind()),
            }
        }
        Ok(events)
    };
    let small = read_all(buf);
    let large = read_all(64 * 1024);
    assert_eq!(small, large, "read size changed the parse (buffer {buf})");
}

/// `jsonrpc`: decoding of MCP frames. A decoded message re-encodes to a line that decodes to
/// the same message.
pub fn jsonrpc(data: &[u8]) {
    let Ok((messages, _bad)) = decode_frame(data) else {
        return;
    };
    for m in messages {
        let line = m.to_line();
        assert!(
            !line.contains('\n'),
            "a frame line must not contain a newline"
        );
        let again = decode_frame(line.as_bytes());
        assert!(
            matches!(&again, Ok((ms, bad)) if ms.len() == 1 && ms[0] == m && bad.is_empty()),
            "round trip changed {m:?} into {again:?} via {line}"
        );
    }
}

/// `anthropic_stream`: the Messages-API stream converter, fed the SSE events of the input.
/// Text it returns is text (never empty), and finishing never panics. Finishing succeeds only
/// after `message_stop` (it may still fail then: a tool call whose input is not JSON is an
/// error, not an empty success).
pub fn anthropic_stream(data: &[u8]) {
    let (buf, stream) = sse_input(data);
    let mut reader = SseReader::new(
        BufReader::with_capacity(buf, Cursor::new(stream)),
        64 * 1024,
    );
    let mut machine = StreamMachine::new();
    for _ in 0..MAX_EVENTS {
        match reader.next_event() {
            Ok(Some(ev)) => match machine.feed(ev.event.as_deref().unwrap_or(""), &ev.data) {
                Ok(Some(text)) => assert!(!text.is_empty(), "empty text delta forwarded"),
                Ok(None) => {}
                Err(_) => return,
            },
            Ok(None) | Err(_) => break,
        }
    }
    let done = machine.is_done();
    let finished = machine.finish();
    assert!(
        done || finished.is_err(),
        "finish succeeded before message_stop"
    );
}

/// `config`: YAML config loading (parse, `${VAR}` expansion, validation). Any input gives a
/// config or an error that names at least one problem.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = MapEnv::new()
        .with("AIPROXY_EXE", "/usr/bin/aiproxy")
        .with("KEY", "sk-fuzz")
        .with("EMPTY", "");
    if let Err(e) = config::parse(text, "fuzz.yaml", &env) {
        assert!(
            !e.to_string().trim().is_empty(),
            "an error without a message"
        );
    }
}

/// `http_head`: the HTTP/1.1 request-head parser every request goes through (httparse plus
/// aiproxy's framing rules), with small and default limits.
pub fn http_head(data: &[u8]) {
    fuzzing::http_head(data);
}

/// `http_chunked`: the chunked request-body decoder, fed the input whole and in pieces (the
/// first byte picks the piece size); every split must decode the same.
pub fn http_chunked(data: &[u8]) {
    fuzzing::http_chunked(data);
}

/// `request_body`: admitting a `/v1/chat/completions` body (the allocation-free size estimate,
/// then the typed decode with its diagnosis). Any bytes give a request or an OpenAI-shaped
/// 400 / 413 / 503, and a body the estimate accepts within a generous limit decodes without
/// the estimate having under-priced it below its own length.
pub fn request_body(data: &[u8]) {
    let limit = 1 << 20;
    if let Ok(cost) = aiproxy::gateway::decode::estimate(data, limit) {
        assert!(cost <= limit, "estimate {cost} above its limit {limit}");
    }
    match aiproxy::gateway::decode::chat_request(data, 64 * 1024) {
        Ok(_) => {}
        Err(e) => assert!(
            matches!(e.status, 400 | 413 | 503),
            "unexpected status {} for a bad body",
            e.status
        ),
    }
}
