//! An in-process fake of the Responses API (`POST /v1/responses`) on `127.0.0.1:0`, on the
//! shared [`super::fake_http`] base (a thread per connection; every answer closes it).
//!
//! It refuses, with a 4xx and the API's error body, what the real API refuses and a translating
//! client can get wrong: a missing or wrong `Authorization` (401), unknown top-level fields
//! ("Unknown parameter"), an `input` that is not a list, a `function_call_output` without a
//! `function_call` of the same `call_id` before it, a function tool without `strict` whose
//! schema is not strict-valid, `include: ["reasoning.encrypted_content"]` for a model named
//! `gpt-4o…` ("Encrypted content is not supported with this model."), and — as reasoning models
//! do with `store: false` — a `function_call` sent back without the reasoning item (same id,
//! same `encrypted_content`) that came before it in the answer that made it. Valid requests are
//! answered from a script, as JSON or as an event stream (one event per chunk: created, per item
//! added / deltas / done, completed) according to `stream`. Every request is recorded.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::fake_http::{Conn, FakeHttp};

pub const API_KEY: &str = "sk-resp-test-key";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A completed response with these output items.
    Output(Vec<Value>),
    /// An HTTP error with the API's error body.
    Status {
        status: u16,
        code: &'static str,
        message: String,
        retry_after: Option<&'static str>,
    },
    /// A stream: `response.created`, a "first" text delta, then an empty delta every `gap`
    /// until the client leaves; it never completes.
    Trickle { gap: Duration },
}

impl Reply {
    pub fn text(text: &str) -> Reply {
        Reply::Output(vec![message(text)])
    }

    pub fn call(call_id: &str, name: &str, args: Value) -> Reply {
        Reply::Output(vec![
            message("Let me calculate that."),
            function_call(call_id, name, args),
        ])
    }

    /// A reasoning item (with `encrypted_content`) before the call, as reasoning models answer.
    pub fn reasoning_call(call_id: &str, name: &str, args: Value, encrypted: &str) -> Reply {
        Reply::Output(vec![
            json!({"type": "reasoning", "id": format!("rs_{call_id}"), "summary": [
                {"type": "summary_text", "text": "Add the numbers with the tool."}],
                "encrypted_content": encrypted}),
            function_call(call_id, name, args),
        ])
    }

    pub fn status(status: u16, code: &'static str, message: &str) -> Reply {
        Reply::Status {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

fn message(text: &str) -> Value {
    json!({"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn function_call(call_id: &str, name: &str, args: Value) -> Value {
    json!({"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id,
        "name": name, "arguments": args.to_string(), "status": "completed"})
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// What the fake answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    requests: Vec<Recorded>,
    /// call_id → the reasoning item that came before it.
    reasoning: HashMap<String, Value>,
}

pub struct FakeResponses {
    http: FakeHttp,
    state: Arc<Mutex<State>>,
}

impl FakeResponses {
    pub fn start(script: Vec<Reply>) -> FakeResponses {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let st = Arc::clone(&state);
        let http = FakeHttp::start("fake-responses", move |c| handle(c, &st));
        FakeResponses { http, state }
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

    pub fn open_connections(&self) -> usize {
        self.http.open_connections()
    }
}

const KNOWN_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_output_tokens",
    "text",
    "reasoning",
    "store",
    "stream",
    "include",
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
    "truncation",
    "top_logprobs",
    "max_tool_calls",
    "previous_response_id",
];

type Refusal = (u16, &'static str, String);

fn validate(
    auth: Option<&str>,
    body: &Value,
    reasoning: &HashMap<String, Value>,
) -> Result<(), Refusal> {
    let bad = |m: String| Err((400, "invalid_request_error", m));
    if auth != Some(&format!("Bearer {API_KEY}")) {
        return Err((401, "invalid_api_key", "Incorrect API key provided.".into()));
    }
    let Some(obj) = body.as_object() else {
        return bad("We could not parse the JSON body of your request.".into());
    };
    if let Some(k) = obj.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return bad(format!("Unknown parameter: '{k}'."));
    }
    let model = obj.get("model").and_then(Value::as_str).unwrap_or("");
    let encrypted = obj
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|i| i.iter().any(|v| v == "reasoning.encrypted_content"));
    if encrypted && model.starts_with("gpt-4o") {
        return bad("Encrypted content is not supported with this model.".into());
    }
    for t in obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let strict_ok = t["parameters"]["additionalProperties"] == json!(false);
        if t.get("strict").is_none() && !strict_ok {
            return bad(format!(
                "Invalid schema for function '{}': 'additionalProperties' is required to be supplied and to be false.",
                t["name"].as_str().unwrap_or("")
            ));
        }
    }
    let Some(input) = obj.get("input").and_then(Value::as_array) else {
        return bad("Invalid type for 'input': expected a list.".into());
    };
    let mut calls: Vec<&str> = Vec::new();
    for (i, item) in input.iter().enumerate() {
        match item["type"].as_str() {
            Some("function_call") => {
                let call_id = item["call_id"].as_str().unwrap_or("");
                if let Some(rs) = reasoning.get(call_id) {
                    let before = input[..i].iter().rev().find(|x| x["type"] == "reasoning");
                    let same = before.is_some_and(|b| {
                        b["id"] == rs["id"] && b["encrypted_content"] == rs["encrypted_content"]
                    });
                    if !same {
                        return bad(format!(
                            "Item '{}' of type 'function_call' was provided without its required 'reasoning' item: '{}'.",
                            item["id"].as_str().unwrap_or(call_id),
                            rs["id"].as_str().unwrap_or("")
                        ));
                    }
                }
                calls.push(call_id);
            }
            Some("function_call_output") => {
                let call_id = item["call_id"].as_str().unwrap_or("");
                if !calls.contains(&call_id) {
                    return bad(format!(
                        "No tool call found for function call output with call_id {call_id}."
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn handle(conn: Conn, state: &Mutex<State>) {
    let mut conn = conn;
    let Some(req) = conn.next_request() else {
        return;
    };
    let Ok(mut out) = conn.stream.try_clone() else {
        return;
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let auth = req.header("authorization").map(str::to_string);
    let verdict = if req.method != "POST" || req.target != "/v1/responses" {
        Err((
            404,
            "not_found",
            format!("no route: {} {}", req.method, req.target),
        ))
    } else {
        validate(auth.as_deref(), &body, &state.lock().unwrap().reasoning)
    };
    let reply = match verdict {
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
        path: req.target.clone(),
        authorization: auth,
        body: body.clone(),
        status,
    });
    let error = |out: &mut TcpStream, status, code: &str, message: &str, retry: Option<&str>| {
        let b = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
        write_json(out, status, &b, retry);
    };
    if let Err((status, code, message)) = verdict {
        return error(&mut out, status, code, &message, None);
    }
    let stream = body["stream"] == json!(true);
    match reply {
        None => error(
            &mut out,
            500,
            "server_error",
            "the fake's script is exhausted",
            None,
        ),
        Some(Reply::Status {
            status,
            code,
            message,
            retry_after,
        }) => error(&mut out, status, code, &message, retry_after),
        Some(Reply::Output(output)) => {
            {
                let mut st = state.lock().unwrap();
                let mut last_rs = None;
                for item in &output {
                    match item["type"].as_str() {
                        Some("reasoning") => last_rs = Some(item.clone()),
                        Some("function_call") => {
                            if let Some(rs) = &last_rs {
                                let id = item["call_id"].as_str().unwrap_or("").to_string();
                                st.reasoning.insert(id, rs.clone());
                            }
                        }
                        _ => {}
                    }
                }
            }
            let reasoning_tokens = if output.iter().any(|i| i["type"] == "reasoning") {
                7
            } else {
                0
            };
            let response = json!({"id": "resp_fake", "object": "response", "status": "completed",
                "model": body["model"], "output": output, "usage": {"input_tokens": 30,
                "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 12,
                "output_tokens_details": {"reasoning_tokens": reasoning_tokens}, "total_tokens": 42}});
            if stream {
                write_stream(&mut out, &events(&response));
            } else {
                write_json(&mut out, 200, &response, None);
            }
        }
        Some(Reply::Trickle { gap }) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            let _ = out.write_all(head.as_bytes());
            let created = event(
                json!({"type": "response.created", "response": {"id": "resp_fake", "status": "in_progress", "output": []}}),
            );
            let mut send = |ev: &str| {
                write!(out, "{:x}\r\n{ev}\r\n", ev.len())
                    .and_then(|_| out.flush())
                    .is_ok()
            };
            let delta = |d: &str| {
                event(
                    json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "item_id": "msg_fake", "delta": d}),
                )
            };
            if !send(&created) || !send(&delta("first")) {
                return;
            }
            while !conn.wait_or_gone(gap) {
                if !send(&delta("")) {
                    return;
                }
            }
        }
    }
}

fn event(data: Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap_or("")
    )
}

/// `response.created`, each item as added / deltas / done (text and arguments in two pieces),
/// then `response.completed` with the whole response.
fn events(response: &Value) -> Vec<String> {
    let mut created = response.clone();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    let mut out = vec![event(
        json!({"type": "response.created", "response": created}),
    )];
    for (i, item) in response["output"].as_array().unwrap().iter().enumerate() {
        let mut start = item.clone();
        match item["type"].as_str() {
            Some("message") => start["content"] = json!([]),
            Some("function_call") => start["arguments"] = json!(""),
            Some("reasoning") => {
                start.as_object_mut().unwrap().remove("encrypted_content");
            }
            _ => {}
        }
        out.push(event(
            json!({"type": "response.output_item.added", "output_index": i, "item": start}),
        ));
        match item["type"].as_str() {
            Some("message") => {
                for piece in halves(item["content"][0]["text"].as_str().unwrap_or("")) {
                    out.push(event(
                        json!({"type": "response.output_text.delta", "output_index": i,
                        "content_index": 0, "item_id": item["id"], "delta": piece}),
                    ));
                }
            }
            Some("function_call") => {
                for piece in halves(item["arguments"].as_str().unwrap_or("")) {
                    out.push(event(
                        json!({"type": "response.function_call_arguments.delta",
                        "output_index": i, "item_id": item["id"], "delta": piece}),
                    ));
                }
            }
            _ => {}
        }
        out.push(event(
            json!({"type": "response.output_item.done", "output_index": i, "item": item}),
        ));
    }
    out.push(event(
        json!({"type": "response.completed", "response": response}),
    ));
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
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
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
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
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
