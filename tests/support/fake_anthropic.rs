//! An in-process fake of Anthropic's Messages API (`POST /v1/messages`) on `127.0.0.1:0`.
//!
//! It checks what the real API checks and refuses the same requests with a 400 and Anthropic's
//! error body (error texts as the real API words them): the `x-api-key` and `anthropic-version`
//! headers, a required `max_tokens`, unknown top-level fields, a non-empty conversation that
//! starts with a user turn and alternates roles, non-empty text blocks, `tool_use` /
//! `tool_result` blocks only with `tools` defined, every `tool_result` matching a `tool_use` of
//! the previous assistant turn (and every `tool_use` answered in the next user turn,
//! `tool_result`s first), `tool_choice` only with tools, and with extended thinking on: the last
//! assistant turn that used tools must start with a (signed) thinking block, no forced tool
//! choice, `budget_tokens < max_tokens`. Valid requests are answered from a script, as JSON or as
//! an SSE stream (chunked, one event per chunk) according to the request's `stream`. Every
//! request is recorded. It runs on the shared [`super::fake_http`] base (a thread per
//! connection); every answer closes its connection.

use std::collections::VecDeque;
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::fake_http::{Conn, FakeHttp};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete message (rendered as JSON or as a stream).
    Message {
        content: Vec<Value>,
        stop_reason: String,
        usage: Value,
    },
    /// An HTTP error with Anthropic's error body.
    Status {
        status: u16,
        error_type: String,
        message: String,
        retry_after: Option<String>,
    },
    /// A stream that sends these text blocks' start and deltas, then an `error` event.
    StreamError {
        text: String,
        error_type: String,
        message: String,
    },
    /// A stream cut off (connection closed) before `message_stop`.
    CutStream { text: String },
    /// Read the request, then never answer (until the fake stops).
    Hang,
    /// A stream: text "first", then `pings` pings `gap` apart, then text "second".
    Slow { gap: Duration, pings: usize },
    /// These SSE events as given (each a complete `event:`/`data:` text ending in a blank
    /// line), for translating servers that do not speak quite like the real API.
    RawStream(Vec<String>),
}

impl Reply {
    pub fn text(text: &str) -> Reply {
        Reply::Message {
            content: vec![json!({"type": "text", "text": text})],
            stop_reason: "end_turn".into(),
            usage: json!({"input_tokens": 30, "output_tokens": 12,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
        }
    }

    pub fn tool_use(id: &str, name: &str, input: Value) -> Reply {
        Reply::Message {
            content: vec![
                json!({"type": "text", "text": "Let me calculate that."}),
                json!({"type": "tool_use", "id": id, "name": name, "input": input}),
            ],
            stop_reason: "tool_use".into(),
            usage: json!({"input_tokens": 50, "output_tokens": 20,
                "cache_creation_input_tokens": 400, "cache_read_input_tokens": 0}),
        }
    }

    pub fn thinking_tool_use(
        thinking: &str,
        signature: &str,
        id: &str,
        name: &str,
        input: Value,
    ) -> Reply {
        Reply::Message {
            content: vec![
                json!({"type": "thinking", "thinking": thinking, "signature": signature}),
                json!({"type": "tool_use", "id": id, "name": name, "input": input}),
            ],
            stop_reason: "tool_use".into(),
            usage: json!({"input_tokens": 50, "output_tokens": 80,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 400}),
        }
    }

    /// A `pause_turn` answer (server tools paused a long turn).
    pub fn paused(text: &str) -> Reply {
        Reply::Message {
            content: vec![json!({"type": "text", "text": text})],
            stop_reason: "pause_turn".into(),
            usage: json!({"input_tokens": 10, "output_tokens": 5}),
        }
    }

    pub fn status(
        status: u16,
        error_type: &str,
        message: &str,
        retry_after: Option<&str>,
    ) -> Reply {
        Reply::Status {
            status,
            error_type: error_type.into(),
            message: message.into(),
            retry_after: retry_after.map(str::to_string),
        }
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// What the fake answered (400/401 for refused requests).
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    requests: Vec<Recorded>,
}

pub struct FakeAnthropic {
    http: FakeHttp,
    state: Arc<Mutex<State>>,
}

pub const API_KEY: &str = "sk-ant-test-key";

impl FakeAnthropic {
    pub fn start(script: Vec<Reply>) -> FakeAnthropic {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            requests: Vec::new(),
        }));
        let st = Arc::clone(&state);
        let http = FakeHttp::start("fake-anthropic", move |c| handle(c, &st));
        FakeAnthropic { http, state }
    }

    /// The `base_url` to configure (with `/v1`, as for the real API).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.http.addr())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests the fake refused, as `status: body` lines.
    pub fn rejections(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.status != 200)
            .map(|r| format!("{}: {}", r.status, r.body))
            .collect()
    }

    pub fn remaining_script(&self) -> usize {
        self.state.lock().unwrap().script.len()
    }
}

fn handle(mut conn: Conn, state: &Mutex<State>) {
    let Some(req) = conn.next_request() else {
        return;
    };
    let request_line = format!("{} {} HTTP/1.1", req.method, req.target);
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = req.body;
    // The answer is written through a second handle, so that `conn` stays free to wait on.
    let Ok(mut out) = conn.stream.try_clone() else {
        return;
    };
    let body_text = String::from_utf8_lossy(&body).to_string();
    let parsed: Value = serde_json::from_str(&body_text).unwrap_or(Value::Null);

    let path_ok = request_line.starts_with("POST /v1/messages ");
    let verdict = if !path_ok {
        Err((
            404,
            "not_found_error",
            format!("no route: {}", request_line.trim()),
        ))
    } else {
        validate(&headers, &body_text)
    };
    let reply = match &verdict {
        Ok(()) => state.lock().unwrap().script.pop_front(),
        Err(_) => None,
    };
    let status = match (&verdict, &reply) {
        (Err((s, _, _)), _) => *s,
        (Ok(()), Some(Reply::Status { status, .. })) => *status,
        (Ok(()), None) => 500,
        _ => 200,
    };
    state.lock().unwrap().requests.push(Recorded {
        headers: headers.clone(),
        body: parsed.clone(),
        status,
    });
    if let Err((status, kind, message)) = verdict {
        write_error(&mut out, status, kind, &message, None);
        return;
    }
    let stream = parsed.get("stream") == Some(&Value::Bool(true));
    let model = parsed["model"].as_str().unwrap_or("claude").to_string();
    match reply {
        None => write_error(
            &mut out,
            500,
            "api_error",
            "the fake's script is exhausted",
            None,
        ),
        Some(Reply::Status {
            status,
            error_type,
            message,
            retry_after,
        }) => write_error(
            &mut out,
            status,
            &error_type,
            &message,
            retry_after.as_deref(),
        ),
        Some(Reply::RawStream(events)) => write_stream(&mut out, &events),
        Some(Reply::Hang) => {
            conn.pause(Duration::from_secs(30));
        }
        Some(Reply::Message {
            content,
            stop_reason,
            usage,
        }) => {
            if stream {
                let mut events = message_events(&model, &content, &usage);
                events.push(event(
                    "message_delta",
                    json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": usage["output_tokens"]}}),
                ));
                events.push(event("message_stop", json!({"type": "message_stop"})));
                write_stream(&mut out, &events);
            } else {
                let body = json!({"id": "msg_fake", "type": "message", "role": "assistant",
                    "model": model, "content": content, "stop_reason": stop_reason,
                    "stop_sequence": null, "usage": usage});
                write_json(&mut out, 200, &body, None);
            }
        }
        Some(Reply::StreamError {
            text,
            error_type,
            message,
        }) => {
            if !stream {
                write_error(&mut out, 529, &error_type, &message, None);
                return;
            }
            let mut events = message_events(
                &model,
                &[json!({"type": "text", "text": text})],
                &json!({"input_tokens": 5, "output_tokens": 1}),
            );
            events.pop(); // the text block is never finished
            events.push(event(
                "error",
                json!({"type": "error", "error": {"type": error_type, "message": message}}),
            ));
            write_stream(&mut out, &events);
        }
        Some(Reply::Slow { gap, pings }) => {
            let mut events = message_events(
                &model,
                &[json!({"type": "text", "text": "first"})],
                &json!({"input_tokens": 5, "output_tokens": 1}),
            );
            events.pop(); // keep the block open
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            let _ = out.write_all(head.as_bytes());
            let chunk = |out: &mut TcpStream, ev: &str| {
                let _ = write!(out, "{:x}\r\n{ev}\r\n", ev.len());
                let _ = out.flush();
            };
            for ev in &events {
                chunk(&mut out, ev);
            }
            for _ in 0..pings {
                if !conn.pause(gap) {
                    return;
                }
                chunk(&mut out, &event("ping", json!({"type": "ping"})));
            }
            for ev in [
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "second"}}),
                ),
                event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
                event(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
                ),
                event("message_stop", json!({"type": "message_stop"})),
            ] {
                chunk(&mut out, &ev);
            }
            let _ = out.write_all(b"0\r\n\r\n");
        }
        Some(Reply::CutStream { text }) => {
            let events = message_events(
                &model,
                &[json!({"type": "text", "text": text})],
                &json!({"input_tokens": 5, "output_tokens": 1}),
            );
            write_stream(&mut out, &events);
        }
    }
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// `message_start`, then each block as start / deltas / stop (text and JSON split in pieces,
/// thinking with its signature delta, a `ping` after the first block start).
fn message_events(model: &str, content: &[Value], usage: &Value) -> Vec<String> {
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    let mut out = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    )];
    for (i, block) in content.iter().enumerate() {
        let delta = |d: Value| {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i, "delta": d}),
            )
        };
        let start = |b: Value| {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": i, "content_block": b}),
            )
        };
        match block["type"].as_str().unwrap_or("") {
            "text" => {
                out.push(start(json!({"type": "text", "text": ""})));
                for piece in halves(block["text"].as_str().unwrap_or("")) {
                    out.push(delta(json!({"type": "text_delta", "text": piece})));
                }
            }
            "tool_use" => {
                out.push(start(json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}})));
                out.push(delta(
                    json!({"type": "input_json_delta", "partial_json": ""}),
                ));
                for piece in halves(&block["input"].to_string()) {
                    out.push(delta(
                        json!({"type": "input_json_delta", "partial_json": piece}),
                    ));
                }
            }
            "thinking" => {
                out.push(start(
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                ));
                for piece in halves(block["thinking"].as_str().unwrap_or("")) {
                    out.push(delta(json!({"type": "thinking_delta", "thinking": piece})));
                }
                out.push(delta(
                    json!({"type": "signature_delta", "signature": block["signature"]}),
                ));
            }
            _ => out.push(start(block.clone())),
        }
        if i == 0 {
            out.push(event("ping", json!({"type": "ping"})));
        }
        out.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    out
}

fn halves(s: &str) -> Vec<String> {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid += 1;
    }
    [&s[..mid], &s[mid..]]
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn write_stream(out: &mut TcpStream, events: &[String]) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nrequest-id: req_fake\r\nconnection: close\r\n\r\n";
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    for ev in events {
        if write!(out, "{:x}\r\n{ev}\r\n", ev.len()).is_err() || out.flush().is_err() {
            return;
        }
    }
    let _ = out.write_all(b"0\r\n\r\n");
    let _ = out.flush();
}

fn write_json(out: &mut TcpStream, status: u16, body: &Value, retry_after: Option<&str>) {
    let body = body.to_string();
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nrequest-id: req_fake\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(r) = retry_after {
        head.push_str(&format!("retry-after: {r}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body.as_bytes());
    let _ = out.flush();
}

fn write_error(
    out: &mut TcpStream,
    status: u16,
    kind: &str,
    message: &str,
    retry_after: Option<&str>,
) {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"});
    write_json(out, status, &body, retry_after);
}

type Refusal = (u16, &'static str, String);

fn bad(message: impl Into<String>) -> Refusal {
    (400, "invalid_request_error", message.into())
}

const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];

/// The checks of the real API that matter to a translating client.
pub fn validate(headers: &[(String, String)], body: &str) -> Result<(), Refusal> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if header("x-api-key") != Some(API_KEY) {
        return Err((401, "authentication_error", "invalid x-api-key".into()));
    }
    match header("anthropic-version") {
        None => return Err(bad("anthropic-version: header is required")),
        Some("2023-06-01") | Some("2023-01-01") => {}
        Some(v) => return Err(bad(format!("anthropic-version: invalid version '{v}'"))),
    }
    if !header("content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Err(bad("content-type: must be application/json"));
    }
    let body: Value = serde_json::from_str(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Value::Object(b) = &body else {
        return Err(bad("body must be an object"));
    };
    for key in b.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            return Err(bad(format!("{key}: Extra inputs are not permitted")));
        }
    }
    if !b.get("model").is_some_and(Value::is_string) {
        return Err(bad("model: Field required"));
    }
    let max_tokens = match b.get("max_tokens") {
        None => return Err(bad("max_tokens: Field required")),
        Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            bad("max_tokens: Input should be a valid integer greater than or equal to 1")
        })?,
    };
    check_system(b.get("system"))?;
    if let Some(stops) = b.get("stop_sequences").and_then(Value::as_array)
        && stops
            .iter()
            .any(|s| s.as_str().is_none_or(|s| s.trim().is_empty()))
    {
        return Err(bad(
            "stop_sequences: each stop sequence must contain non-whitespace",
        ));
    }
    let tools_defined = b
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    if let Some(tools) = b.get("tools").and_then(Value::as_array) {
        for (i, t) in tools.iter().enumerate() {
            if !t["name"].is_string() || t["input_schema"]["type"] != "object" {
                return Err(bad(format!(
                    "tools.{i}: name and an object input_schema are required"
                )));
            }
        }
    }
    let thinking = b.get("thinking").and_then(|t| t["type"].as_str()) == Some("enabled");
    if let Some(choice) = b.get("tool_choice") {
        if !tools_defined {
            return Err(bad(
                "tool_choice: tool_choice may only be specified while providing tools",
            ));
        }
        match choice["type"].as_str() {
            Some("auto") | Some("none") => {}
            Some("any") | Some("tool") if thinking => {
                return Err(bad(
                    "Thinking may not be enabled when tool_choice forces tool use.",
                ));
            }
            Some("any") => {}
            Some("tool") if choice["name"].is_string() => {}
            _ => return Err(bad("tool_choice: invalid")),
        }
    }
    if thinking {
        let budget = b["thinking"]["budget_tokens"].as_u64().unwrap_or(0);
        if budget < 1024 {
            return Err(bad(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
            ));
        }
        if budget >= max_tokens {
            return Err(bad(
                "`max_tokens` must be greater than `thinking.budget_tokens`",
            ));
        }
        if b.get("temperature")
            .is_some_and(|t| t.as_f64() != Some(1.0))
        {
            return Err(bad(
                "`temperature` may only be set to 1 when thinking is enabled",
            ));
        }
    }
    check_messages(b, tools_defined, thinking)
}

fn check_system(system: Option<&Value>) -> Result<(), Refusal> {
    match system {
        None | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(blocks)) => {
            for (i, blk) in blocks.iter().enumerate() {
                if blk["type"] != "text" || blk["text"].as_str().is_none_or(|t| t.trim().is_empty())
                {
                    return Err(bad(format!(
                        "system.{i}: text content blocks must contain non-whitespace text"
                    )));
                }
            }
            Ok(())
        }
        Some(_) => Err(bad("system: Input should be a valid string or list")),
    }
}

fn blocks_of(m: &Value) -> Vec<Value> {
    match &m["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    }
}

fn ids(blocks: &[Value], kind: &str, field: &str) -> Vec<String> {
    blocks
        .iter()
        .filter(|b| b["type"] == kind)
        .filter_map(|b| b[field].as_str().map(str::to_string))
        .collect()
}

fn check_messages(
    b: &Map<String, Value>,
    tools_defined: bool,
    thinking: bool,
) -> Result<(), Refusal> {
    let Some(messages) = b.get("messages").and_then(Value::as_array) else {
        return Err(bad("messages: Field required"));
    };
    if messages.is_empty() {
        return Err(bad("messages: at least one message is required"));
    }
    let mut has_tool_blocks = false;
    let mut last_tool_assistant: Option<usize> = None;
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(bad(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        if i == 0 && role != "user" {
            return Err(bad(
                "messages: the first message must use the \"user\" role",
            ));
        }
        if i > 0 && messages[i - 1]["role"] == m["role"] {
            return Err(bad(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
            )));
        }
        let blocks = blocks_of(m);
        if blocks.is_empty() {
            return Err(bad(format!(
                "messages.{i}: all messages must have non-empty content"
            )));
        }
        for (j, blk) in blocks.iter().enumerate() {
            match blk["type"].as_str().unwrap_or("") {
                "text" => {
                    if blk["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}.text: text content blocks must contain non-whitespace text"
                        )));
                    }
                }
                "tool_use" => {
                    has_tool_blocks = true;
                    if role != "assistant"
                        || !blk["input"].is_object()
                        || !blk["id"].as_str().is_some_and(valid_id)
                    {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}: invalid tool_use block"
                        )));
                    }
                    last_tool_assistant = Some(i);
                }
                "tool_result" => {
                    has_tool_blocks = true;
                    if role != "user" {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}: tool_result blocks are only allowed in user messages"
                        )));
                    }
                    if j > 0 && blocks[j - 1]["type"] != "tool_result" {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}: tool_result blocks must come first in the user message"
                        )));
                    }
                }
                "thinking" => {
                    if role != "assistant" || blk["signature"].as_str().is_none_or(str::is_empty) {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}.thinking.signature: Field required"
                        )));
                    }
                }
                "redacted_thinking" | "image" | "document" => {}
                other => {
                    return Err(bad(format!(
                        "messages.{i}.content.{j}.type: unknown block type '{other}'"
                    )));
                }
            }
        }
        // Each tool_result answers a tool_use of the previous assistant message…
        let results = ids(&blocks, "tool_result", "tool_use_id");
        let previous_uses = if i > 0 {
            ids(&blocks_of(&messages[i - 1]), "tool_use", "id")
        } else {
            Vec::new()
        };
        for id in &results {
            if !previous_uses.contains(id) {
                return Err(bad(format!(
                    "messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                )));
            }
        }
        // …and each tool_use is answered in the next message.
        if role == "assistant" && i + 1 < messages.len() {
            let next = ids(&blocks_of(&messages[i + 1]), "tool_result", "tool_use_id");
            for id in ids(&blocks, "tool_use", "id") {
                if !next.contains(&id) {
                    return Err(bad(format!(
                        "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {id}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                        i + 1
                    )));
                }
            }
        }
    }
    if has_tool_blocks && !tools_defined {
        return Err(bad(
            "Requests which include `tool_use` or `tool_result` blocks must define tools.",
        ));
    }
    if thinking && let Some(i) = last_tool_assistant {
        let first = blocks_of(&messages[i])
            .first()
            .map(|b| b["type"].as_str().unwrap_or("").to_string())
            .unwrap_or_default();
        if first != "thinking" && first != "redacted_thinking" {
            return Err(bad(format!(
                "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
            )));
        }
    }
    let breakpoints = body_cache_breakpoints(b);
    if breakpoints > 4 {
        return Err(bad(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
        )));
    }
    Ok(())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn body_cache_breakpoints(b: &Map<String, Value>) -> usize {
    fn count(v: &Value) -> usize {
        match v {
            Value::Object(m) => {
                usize::from(m.contains_key("cache_control")) + m.values().map(count).sum::<usize>()
            }
            Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    b.values().map(count).sum()
}
