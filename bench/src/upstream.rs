//! The fake OpenAI-compatible upstream (`aiproxy-bench upstream`): `POST …/chat/completions`
//! answered as JSON or SSE with a scripted shape, on aiproxy's own HTTP server so it is as
//! fast as the thing it measures.
//!
//! The shape comes from `key=value` words in the last user message (so one running upstream
//! serves every scenario, and the direct and proxied requests carry the very same text):
//! - `chunks=N`: the answer is N content deltas `"tN "` (default 8; non-stream: their join);
//! - `latency=MS`: wait before the response head (non-stream) or the first delta (stream);
//! - `gap=MS`: wait between deltas of a stream;
//! - `tools=K`: while the conversation holds fewer than K tool results and a tool whose name
//!   ends in `echo` is offered, answer with a call to it (`{"text":"ping"}`) instead.
//!
//! Thread model: aiproxy's HTTP server (one poller, `--workers` worker threads); a handler
//! sleeps on its worker thread for the scripted latency, so `--workers` must cover the highest
//! concurrency measured.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use aiproxy::http::{Handler, Limits, Request, Responder, Server};
use serde_json::{Value, json};

struct Shape {
    chunks: usize,
    latency: Duration,
    gap: Duration,
    /// A tool call to answer with instead of text.
    tool: Option<String>,
}

fn shape(body: &Value) -> Shape {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // The content is a string, or text parts (as a Responses API `input` string arrives).
    let last_user: String = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            c => c.as_str().unwrap_or("").to_string(),
        })
        .unwrap_or_default();
    let mut s = Shape {
        chunks: 8,
        latency: Duration::ZERO,
        gap: Duration::ZERO,
        tool: None,
    };
    let mut tools_wanted = 0usize;
    for word in last_user.split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            continue;
        };
        let Ok(n) = v.parse::<u64>() else { continue };
        match k {
            "chunks" => s.chunks = usize::try_from(n).unwrap_or(8).clamp(1, 100_000),
            "latency" => s.latency = Duration::from_millis(n),
            "gap" => s.gap = Duration::from_millis(n),
            "tools" => tools_wanted = usize::try_from(n).unwrap_or(0),
            _ => {}
        }
    }
    let results = messages.iter().filter(|m| m["role"] == "tool").count();
    if results < tools_wanted {
        s.tool = body["tools"].as_array().and_then(|tools| {
            tools
                .iter()
                .filter_map(|t| t["function"]["name"].as_str())
                .find(|n| n.ends_with("echo"))
                .map(String::from)
        });
    }
    s
}

struct Upstream;

impl Handler for Upstream {
    fn handle(&self, req: Request, resp: &mut Responder<'_>) {
        if req.method != "POST" || !req.path.ends_with("/chat/completions") {
            let _ = resp.send(404, &[("Content-Type", "application/json")], b"{}");
            return;
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(_) => {
                let err = br#"{"error":{"message":"bad json","type":"invalid_request_error"}}"#;
                let _ = resp.send(400, &[("Content-Type", "application/json")], err);
                return;
            }
        };
        let s = shape(&body);
        let stream = body["stream"] == json!(true);
        let usage = body["stream_options"]["include_usage"] == json!(true);
        let model = body["model"].as_str().unwrap_or("fake");
        if stream {
            let _ = stream_reply(resp, &s, model, usage);
        } else {
            std::thread::sleep(s.latency);
            let out = completion(&s, model).to_string();
            let _ = resp.send(200, &[("Content-Type", "application/json")], out.as_bytes());
        }
    }
}

const USAGE: &str = r#"{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}"#;

fn completion(s: &Shape, model: &str) -> Value {
    let (message, finish) = match &s.tool {
        Some(name) => (
            json!({"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
                "function":{"name":name,"arguments":"{\"text\":\"ping\"}"}}]}),
            "tool_calls",
        ),
        None => {
            let text: String = (0..s.chunks).map(|i| format!("t{i} ")).collect();
            (json!({"role":"assistant","content":text}), "stop")
        }
    };
    json!({"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":model,
        "choices":[{"index":0,"message":message,"finish_reason":finish}],
        "usage": serde_json::from_str::<Value>(USAGE).unwrap_or(Value::Null)})
}

fn stream_reply(resp: &mut Responder<'_>, s: &Shape, model: &str, usage: bool) -> io::Result<()> {
    let mut out = resp.stream(
        200,
        &[
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
        ],
    )?;
    let head = format!(
        r#"data: {{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"{model}","choices":["#
    );
    let event = |choice: &str| format!("{head}{choice}]}}\n\n");
    std::thread::sleep(s.latency);
    out.write(
        event(r#"{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}"#)
            .as_bytes(),
    )?;
    let finish = match &s.tool {
        Some(name) => {
            let call = format!(
                r#"{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","type":"function","function":{{"name":"{name}","arguments":"{{\"text\":\"ping\"}}"}}}}]}},"finish_reason":null}}"#
            );
            out.write(event(&call).as_bytes())?;
            "tool_calls"
        }
        None => {
            for i in 0..s.chunks {
                if i > 0 && !s.gap.is_zero() {
                    std::thread::sleep(s.gap);
                }
                let delta =
                    format!(r#"{{"index":0,"delta":{{"content":"t{i} "}},"finish_reason":null}}"#);
                out.write(event(&delta).as_bytes())?;
            }
            "stop"
        }
    };
    out.write(
        event(&format!(
            r#"{{"index":0,"delta":{{}},"finish_reason":"{finish}"}}"#
        ))
        .as_bytes(),
    )?;
    if usage {
        out.write(
            format!(
                r#"data: {{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"{model}","choices":[],"usage":{USAGE}}}

"#
            )
            .as_bytes(),
        )?;
    }
    out.write(b"data: [DONE]\n\n")?;
    out.finish()
}

/// Serve until the process is killed. Prints `listening <addr>` on stdout once ready.
pub fn run(listen: &str, workers: usize) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    let limits = Limits {
        workers,
        max_in_flight: workers * 2,
        max_connections: 8192,
        ..Limits::default()
    };
    let server = Server::start(listener, limits, Arc::new(Upstream))?;
    println!("listening {}", server.local_addr());
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_shape_the_answer() {
        let body = json!({"messages":[{"role":"user","content":"hi chunks=3 latency=5 gap=2 tools=2"}],
            "tools":[{"type":"function","function":{"name":"demo__add"}},{"type":"function","function":{"name":"demo__echo"}}]});
        let s = shape(&body);
        assert_eq!(s.chunks, 3);
        assert_eq!(s.latency, Duration::from_millis(5));
        assert_eq!(s.gap, Duration::from_millis(2));
        assert_eq!(s.tool.as_deref(), Some("demo__echo"));
        let done = json!({"messages":[{"role":"user","content":"tools=1"},{"role":"tool","content":"x"}],
            "tools":[{"type":"function","function":{"name":"demo__echo"}}]});
        assert!(shape(&done).tool.is_none());
        let text = completion(
            &shape(&json!({"messages":[{"role":"user","content":"chunks=2"}]})),
            "m",
        );
        assert_eq!(text["choices"][0]["message"]["content"], "t0 t1 ");
    }
}
