//! The built-in demo MCP server (`aiproxy demo-mcp`): tools `add`, `echo`, `uppercase` and
//! `sleep`, over stdio, for the demo config, the smoke test and the tests.
//!
//! Thread model: the main thread reads stdin line by line and answers every request whose
//! answer is immediate itself, including calls of the instant tools (`add`, `echo`,
//! `uppercase`: a thread start would cost more than the tool). Each `sleep` runs on its own
//! thread (at most [`MAX_CALLS`] at once; the reader waits for a free slot, which is the
//! backpressure), so parallel `sleep`s overlap and instant calls are answered meanwhile. Writes
//! to stdout are serialized by a mutex, one line each. The process exits when stdin closes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};

use crate::mcp::jsonrpc::{Id, METHOD_NOT_FOUND, Message, decode_frame};
use crate::mcp::protocol::SUPPORTED_VERSIONS;

/// Calls running at once.
pub const MAX_CALLS: usize = 64;
/// Longest `sleep` the tool performs.
pub const MAX_SLEEP_MS: u64 = 60_000;
/// Longest request line read; longer lines are skipped.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// Run the demo server on stdin/stdout until stdin closes.
pub fn run_stdio() -> io::Result<()> {
    let out: Arc<Mutex<io::Stdout>> = Arc::new(Mutex::new(io::stdout()));
    let busy = Arc::new((Mutex::new(0usize), Condvar::new()));
    let mut input = BufReader::new(io::stdin().lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            // Skip the rest of the overlong line.
            let mut sink = Vec::new();
            while !sink.ends_with(b"\n") {
                sink.clear();
                if (&mut input)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut sink)?
                    == 0
                {
                    return Ok(());
                }
            }
            write_msg(&out, &Message::error(None, -32600, "request too large"));
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msgs = match decode_frame(&line) {
            Ok((msgs, _bad)) => msgs,
            Err(e) => {
                write_msg(
                    &out,
                    &Message::error(None, -32700, &format!("parse error: {e}")),
                );
                continue;
            }
        };
        for msg in msgs {
            let Message::Request { id, method, params } = msg else {
                continue; // notifications and responses need no answer
            };
            if method == "tools/call" && takes_time(params.as_ref()) {
                wait_for_slot(&busy);
                let (out, slots) = (out.clone(), busy.clone());
                let spawned = thread::Builder::new()
                    .name("demo-call".into())
                    .spawn(move || {
                        let reply = Message::Response {
                            id,
                            result: call(params.as_ref()),
                        };
                        write_msg(&out, &reply);
                        let (count, cv) = &*slots;
                        *count.lock() -= 1;
                        cv.notify_one();
                    });
                if spawned.is_err() {
                    let (count, _) = &*busy;
                    *count.lock() -= 1;
                }
                continue;
            }
            let reply = if method == "tools/call" {
                Message::Response {
                    id,
                    result: call(params.as_ref()),
                }
            } else {
                answer(id, &method, params.as_ref())
            };
            write_msg(&out, &reply);
        }
    }
}

fn wait_for_slot(busy: &(Mutex<usize>, Condvar)) {
    let (count, cv) = busy;
    let mut n = count.lock();
    while *n >= MAX_CALLS {
        cv.wait_for(&mut n, Duration::from_millis(100));
    }
    *n += 1;
}

fn write_msg(out: &Mutex<io::Stdout>, msg: &Message) {
    let mut line = msg.to_line();
    line.push('\n');
    let mut out = out.lock();
    // The client is gone if this fails; the read loop ends on stdin EOF right after.
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

/// Whether a `tools/call` waits (`sleep`), so it runs on a thread of its own.
fn takes_time(params: Option<&Value>) -> bool {
    params.and_then(|p| p.get("name")).and_then(Value::as_str) == Some("sleep")
}

/// Every request except `tools/call`.
fn answer(id: Id, method: &str, params: Option<&Value>) -> Message {
    let result = match method {
        "initialize" => {
            let asked = params
                .and_then(|p| p.get("protocolVersion"))
                .and_then(Value::as_str);
            let version = asked
                .filter(|v| SUPPORTED_VERSIONS.contains(v))
                .unwrap_or(SUPPORTED_VERSIONS[0]);
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "aiproxy-demo", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "Demo tools: add two numbers, echo or upper-case text, sleep.",
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({ "tools": tool_list() }),
        _ => return Message::error(Some(id), METHOD_NOT_FOUND, "Method not found"),
    };
    Message::Response { id, result }
}

pub fn tool_list() -> Value {
    json!([
        {
            "name": "add",
            "description": "Add two numbers and return the sum.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "a": {"type": "number", "description": "The first addend."},
                    "b": {"type": "number", "description": "The second addend."}
                },
                "required": ["a", "b"]
            }
        },
        {
            "name": "echo",
            "description": "Return the given text unchanged.",
            "inputSchema": {
                "type": "object",
                "properties": {"text": {"type": "string", "description": "The text to echo."}},
                "required": ["text"]
            }
        },
        {
            "name": "uppercase",
            "description": "Return the given text in upper case.",
            "inputSchema": {
                "type": "object",
                "properties": {"text": {"type": "string", "description": "The text to upper-case."}},
                "required": ["text"]
            }
        },
        {
            "name": "sleep",
            "description": "Wait for the given number of milliseconds (at most 60000), then say so.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "ms": {"type": "integer", "minimum": 0, "maximum": MAX_SLEEP_MS,
                           "description": "How long to sleep, in milliseconds."}
                },
                "required": ["ms"]
            }
        }
    ])
}

/// Run one `tools/call`; tool failures are `isError` results, as the spec prefers.
pub fn call(params: Option<&Value>) -> Value {
    let name = params
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let empty = json!({});
    let args = params.and_then(|p| p.get("arguments")).unwrap_or(&empty);
    let outcome = match name {
        "add" => match (
            args.get("a").and_then(number),
            args.get("b").and_then(number),
        ) {
            (Some(a), Some(b)) => Ok(a.add(b)),
            _ => Err("add needs two numbers, a and b".to_string()),
        },
        "echo" | "uppercase" => match args.get("text").and_then(Value::as_str) {
            Some(t) if name == "echo" => Ok(t.to_string()),
            Some(t) => Ok(t.to_uppercase()),
            None => Err(format!("{name} needs a string argument text")),
        },
        "sleep" => match args.get("ms").and_then(Value::as_u64) {
            Some(ms) => {
                let ms = ms.min(MAX_SLEEP_MS);
                thread::sleep(Duration::from_millis(ms));
                Ok(format!("slept {ms} ms"))
            }
            None => Err("sleep needs a non-negative integer ms".to_string()),
        },
        other => Err(format!("unknown tool: {other}")),
    };
    match outcome {
        Ok(text) => json!({"content": [{"type": "text", "text": text}], "isError": false}),
        Err(text) => json!({"content": [{"type": "text", "text": text}], "isError": true}),
    }
}

/// A JSON number kept exact when it is an integer.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

fn number(v: &Value) -> Option<Num> {
    match v.as_i64() {
        Some(i) => Some(Num::Int(i)),
        None => v.as_f64().map(Num::Float),
    }
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            // Only reached for mixed or overflowing sums, where float precision is expected.
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// The sum as text: integers without a fractional part ("5", not "5.0").
    fn add(self, other: Num) -> String {
        if let (Num::Int(a), Num::Int(b)) = (self, other)
            && let Some(s) = a.checked_add(b)
        {
            return s.to_string();
        }
        let s = self.as_f64() + other.as_f64();
        if s.is_finite() && s.fract() == 0.0 && s.abs() < 1e15 {
            format!("{s:.0}")
        } else {
            s.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(result: &Value) -> &str {
        result["content"][0]["text"].as_str().unwrap()
    }

    #[test]
    fn add_prints_integers_without_fraction() {
        let r = call(Some(&json!({"name": "add", "arguments": {"a": 2, "b": 3}})));
        assert_eq!(text(&r), "5");
        assert_eq!(r["isError"], false);
        let r = call(Some(
            &json!({"name": "add", "arguments": {"a": 2.5, "b": 2.5}}),
        ));
        assert_eq!(text(&r), "5");
        let r = call(Some(
            &json!({"name": "add", "arguments": {"a": 0.1, "b": 0.2}}),
        ));
        assert_eq!(text(&r), (0.1f64 + 0.2).to_string());
        let r = call(Some(
            &json!({"name": "add", "arguments": {"a": -7, "b": 1.5}}),
        ));
        assert_eq!(text(&r), "-5.5");
    }

    #[test]
    fn text_tools_and_errors() {
        let r = call(Some(
            &json!({"name": "uppercase", "arguments": {"text": "héllo"}}),
        ));
        assert_eq!(text(&r), "HÉLLO");
        let r = call(Some(
            &json!({"name": "echo", "arguments": {"text": "a\nb"}}),
        ));
        assert_eq!(text(&r), "a\nb");
        for bad in [
            json!({"name": "add", "arguments": {"a": "2", "b": 3}}),
            json!({"name": "echo", "arguments": {}}),
            json!({"name": "sleep", "arguments": {"ms": -1}}),
            json!({"name": "nope", "arguments": {}}),
        ] {
            assert_eq!(call(Some(&bad))["isError"], true, "{bad}");
        }
    }

    #[test]
    fn sleep_sleeps() {
        let t0 = std::time::Instant::now();
        let r = call(Some(&json!({"name": "sleep", "arguments": {"ms": 50}})));
        assert_eq!(text(&r), "slept 50 ms");
        assert!(t0.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn initialize_negotiates() {
        let m = answer(
            Id::Int(1),
            "initialize",
            Some(&json!({"protocolVersion": "2024-11-05"})),
        );
        let Message::Response { result, .. } = m else {
            panic!()
        };
        assert_eq!(result["protocolVersion"], "2024-11-05");
        let m = answer(
            Id::Int(1),
            "initialize",
            Some(&json!({"protocolVersion": "2099-01-01"})),
        );
        let Message::Response { result, .. } = m else {
            panic!()
        };
        assert_eq!(result["protocolVersion"], SUPPORTED_VERSIONS[0]);
        assert!(matches!(
            answer(Id::Int(2), "resources/list", None),
            Message::Error { .. }
        ));
        let Message::Response { result, .. } = answer(Id::Int(3), "tools/list", None) else {
            panic!()
        };
        let names: Vec<_> = result["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].clone())
            .collect();
        assert_eq!(
            names,
            [
                json!("add"),
                json!("echo"),
                json!("uppercase"),
                json!("sleep")
            ]
        );
    }
}
