//! The fuzz targets' bodies, as plain functions: libFuzzer drives them through
//! `fuzz_targets/*.rs` (`cargo +nightly fuzz run <name>`), and `tests/replay.rs` runs them over
//! the seeds and saved regression inputs on stable. Each one feeds arbitrary bytes to one of
//! aiproxy's parsers of untrusted input and checks what must hold besides "no panic".
//!
//! Thread model: pure functions on the calling thread.

use std::io::{BufReader, Cursor};

use aiproxy::api::responses::{Input, ResponsesRequest};
use aiproxy::backend::anthropic::stream::StreamMachine;
use aiproxy::backend::openai::parse::{StreamState, parse_completion};
use aiproxy::backend::openai_responses::stream::EventMachine;
use aiproxy::backend::upstream::Decoder;
use aiproxy::backend::{Cancelled, TurnSink};
use aiproxy::config::{self, MapEnv};
use aiproxy::error::ApiError;
use aiproxy::gateway::responses::input;
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
            // Looks at the buffer only (the upstream stream asks before every read).
            let _ = reader.next_item_buffered();
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

/// `openai_answer`: the `openai` backend's answer decoding. The first byte picks the path: even,
/// the rest is a whole non-stream completion body; odd, each line of the rest is one stream
/// chunk (JSON) fed in order. A decoded turn's tool calls all have a name and JSON-text
/// arguments; a stream's `content` is exactly the deltas it handed out, none empty.
pub fn openai_answer(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(turn) = parse_completion(rest) {
            for call in &turn.tool_calls {
                assert!(!call.function.name.is_empty(), "tool call without a name");
                assert!(!call.function.arguments.is_empty(), "empty arguments kept");
            }
        }
        return;
    }
    let mut state = StreamState::default();
    let mut handed = String::new();
    for line in rest.split(|b| *b == b'\n').take(MAX_EVENTS) {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        match state.feed(line) {
            Ok(Some(text)) => {
                assert!(!text.is_empty(), "empty text delta forwarded");
                handed.push_str(text);
            }
            // A refused chunk (invalid JSON, an error object, over a cap) changes no content.
            Ok(None) | Err(_) => {}
        }
    }
    let turn = state.into_turn();
    assert_eq!(turn.content, handed, "content differs from the deltas handed out");
    for call in &turn.tool_calls {
        assert!(!call.function.name.is_empty(), "tool call without a name");
    }
}

/// Collects the text a decoder hands the client.
#[derive(Default)]
struct Collect(String);

impl TurnSink for Collect {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        assert!(!delta.is_empty(), "empty text delta forwarded");
        self.0.push_str(delta);
        Ok(())
    }
}

/// `responses_stream`: the `openai-responses` backend's stream decoder, fed the SSE events of
/// the input as the upstream layer feeds them (then the same bytes as a whole JSON body, the
/// path for a server that answers a stream request with the plain response object). A turn's
/// `content` is exactly the text handed to the client; a stream that ends before
/// `response.completed` / `.incomplete` is an error, never a short success.
pub fn responses_stream(data: &[u8]) {
    let (buf, stream) = sse_input(data);
    let mut reader = SseReader::new(
        BufReader::with_capacity(buf, Cursor::new(stream)),
        64 * 1024,
    );
    let mut machine = EventMachine::new();
    let mut sink = Collect::default();
    let mut turn = None;
    for _ in 0..MAX_EVENTS {
        match reader.next_event() {
            Ok(Some(ev)) => match machine.event(&ev, &mut sink) {
                Ok(Some(t)) => {
                    turn = Some(t);
                    break;
                }
                Ok(None) => {}
                Err(_) => return,
            },
            Ok(None) | Err(_) => break,
        }
    }
    match turn {
        Some(t) => assert_eq!(t.content, sink.0, "content differs from the streamed text"),
        None => assert!(
            machine.end().is_err(),
            "a stream without its final event ended in success"
        ),
    }
    let mut sink = Collect::default();
    if let Ok(t) = EventMachine::new().whole(stream, &mut sink) {
        assert_eq!(
            t.content, sink.0,
            "whole-body content differs from the text sent"
        );
    }
}

/// `responses_request`: a `/v1/responses` body, decoded under the same admission guards as
/// every request body, then its client-controlled parts translated to the chat shapes the loop
/// runs on (input items with `item_reference`s, function tools, `tool_choice`, `text.format`),
/// as `gateway::responses` does. Every failure is an OpenAI-shaped 400 (413 / 503 from
/// admission); a translation error names the parameter at fault.
pub fn responses_request(data: &[u8]) {
    let r: ResponsesRequest = match aiproxy::gateway::decode::request_body(data, 64 * 1024) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                matches!(e.status, 400 | 413 | 503),
                "unexpected status {} for a bad body",
                e.status
            );
            return;
        }
    };
    let named = |e: ApiError| {
        assert_eq!(e.status, 400, "translation error {e:?} is not a 400");
        assert!(
            e.param.is_some(),
            "translation error {e:?} names no parameter"
        );
    };
    if let Some(tools) = &r.tools {
        match input::client_tools(tools) {
            Ok(tools) => assert_eq!(input::echo_tools(&tools).len(), tools.len()),
            Err(e) => named(e),
        }
    }
    if let Some(Err(e)) = r.tool_choice.as_ref().map(input::tool_choice) {
        named(e);
    }
    if let Some(Err(e)) = r.text.as_ref().map(input::response_format) {
        named(e);
    }
    let mut items = match &r.input {
        Some(Input::Text(t)) => vec![input::user_text_item(t)],
        Some(Input::Items(items)) => items.clone(),
        None => Vec::new(),
    };
    // One stored item, so references both resolve and fail.
    let stored = |id: &str| {
        (id == "msg_stored")
            .then(|| serde_json::json!({"type": "message", "role": "assistant", "content": "kept"}))
    };
    if let Err(e) = input::resolve_references(&mut items, &[] as &[serde_json::Value], &stored) {
        return named(e);
    }
    let mut messages = Vec::new();
    let exposed = |server: &str, tool: &str| format!("{server}__{tool}");
    match input::to_messages(&items, "input", &exposed, &mut messages) {
        Ok(()) => {
            for m in &messages {
                assert!(
                    serde_json::to_vec(m).is_ok(),
                    "a message that cannot be sent"
                );
            }
        }
        Err(e) => named(e),
    }
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
