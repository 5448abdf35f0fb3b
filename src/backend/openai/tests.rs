//! Unit tests of the openai backend: payload building and headers (the agent and the error
//! mapping are `backend::upstream`'s). Wire behaviour against a live (fake) upstream is in
//! `tests/backend_openai/`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::*;
use crate::api::openai::{FunctionDef, Message, Role, Tool};
use crate::config::BackendKind;

fn tool(name: &str) -> Tool {
    Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: name.into(),
            description: None,
            parameters: Some(std::sync::Arc::new(json!({"type":"object"}))),
            rest: Map::new(),
        },
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

struct Req {
    messages: Vec<Message>,
    tools: Vec<Tool>,
    params: Map<String, Value>,
    extra: Map<String, Value>,
    choice: Option<Value>,
}

impl Req {
    fn new() -> Self {
        Req {
            messages: vec![Message::text(Role::User, "hi")],
            tools: vec![tool("s__add")],
            params: Map::new(),
            extra: Map::new(),
            choice: None,
        }
    }

    /// The body as the upstream gets it.
    fn payload(&self, stream: bool, final_round: bool) -> Map<String, Value> {
        let payload = build_payload(&TurnRequest {
            model: "m1",
            messages: &self.messages,
            tools: &self.tools,
            tool_choice: self.choice.as_ref(),
            final_round,
            params: &self.params,
            extra_body: &self.extra,
            stream,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(60),
        });
        let bytes = serde_json::to_vec(&payload).unwrap();
        let Ok(Value::Object(body)) = serde_json::from_slice(&bytes) else {
            panic!("not an object: {}", String::from_utf8_lossy(&bytes));
        };
        body
    }
}

#[test]
fn payload_has_model_messages_params_and_tools() {
    let mut r = Req::new();
    r.params =
        obj(json!({"temperature":0.2,"max_tokens":9,"model":"evil","parallel_tool_calls":false}));
    r.choice = Some(json!("required"));
    let p = r.payload(false, false);
    assert_eq!(p["model"], json!("m1"));
    assert_eq!(p["messages"], json!([{"role":"user","content":"hi"}]));
    assert_eq!(p["temperature"], json!(0.2));
    assert_eq!(p["max_tokens"], json!(9));
    assert_eq!(p["tools"][0]["function"]["name"], json!("s__add"));
    assert_eq!(p["tool_choice"], json!("required"));
    assert_eq!(p["parallel_tool_calls"], json!(false));
    assert_eq!(p["stream"], json!(false));
    assert!(!p.contains_key("stream_options"));
}

#[test]
fn final_round_and_no_tools_send_neither_tools_nor_tool_choice() {
    let mut r = Req::new();
    r.choice = Some(json!("auto"));
    r.params = obj(json!({"parallel_tool_calls":true}));
    for p in [r.payload(true, true), {
        r.tools.clear();
        r.payload(false, false)
    }] {
        for k in ["tools", "tool_choice", "parallel_tool_calls"] {
            assert!(!p.contains_key(k), "{k} in {p:?}");
        }
    }
}

#[test]
fn stream_options_merged_with_client_value() {
    let mut r = Req::new();
    r.params = obj(json!({"stream_options":{"include_usage":false,"x":1}}));
    let p = r.payload(true, false);
    assert_eq!(p["stream"], json!(true));
    assert_eq!(p["stream_options"], json!({"include_usage":true,"x":1}));
    assert!(!r.payload(false, false).contains_key("stream_options"));
}

#[test]
fn extra_body_is_merged_last_and_null_removes() {
    let mut r = Req::new();
    r.params = obj(json!({"temperature":0.2}));
    r.extra = obj(json!({"temperature":1.0,"model":"forced","stream_options":null,"top_k":5}));
    let p = r.payload(true, false);
    assert_eq!(p["temperature"], json!(1.0));
    assert_eq!(p["model"], json!("forced"));
    assert_eq!(p["top_k"], json!(5));
    assert!(!p.contains_key("stream_options"));
}

#[test]
fn extra_body_replaces_or_removes_the_messages_and_tools_too() {
    let mut r = Req::new();
    r.extra = obj(json!({"tools":null,"messages":[{"role":"user","content":"forced"}]}));
    let p = r.payload(false, false);
    assert!(!p.contains_key("tools"), "{p:?}");
    assert_eq!(p["messages"], json!([{"role":"user","content":"forced"}]));
    let text = serde_json::to_string(&build_payload(&TurnRequest {
        model: "m1",
        messages: &r.messages,
        tools: &r.tools,
        tool_choice: None,
        final_round: false,
        params: &r.params,
        extra_body: &r.extra,
        stream: false,
        deadline: std::time::Instant::now() + std::time::Duration::from_secs(60),
    }))
    .unwrap();
    assert_eq!(text.matches("\"messages\"").count(), 1, "{text}");
}

fn cfg(api_key: Option<&str>, headers: &[(&str, &str)]) -> BackendConfig {
    BackendConfig {
        kind: BackendKind::OpenAi,
        base_url: "http://127.0.0.1:9/v1/".into(),
        api_key: api_key.map(Secret::new),
        default_headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect::<BTreeMap<_, _>>(),
        timeout: Duration::from_secs(7),
        prompt_caching: false,
    }
}

#[test]
fn headers_default_then_auth_and_content_type_owned() {
    let b = OpenAiBackend::new(&cfg(
        Some("sk-1"),
        &[
            ("authorization", "x"),
            ("X-Org", "o"),
            ("content-type", "text/plain"),
        ],
    ));
    assert_eq!(b.upstream.url(), "http://127.0.0.1:9/v1/chat/completions");
    let h: Vec<(&str, &str)> = b
        .upstream
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        h,
        [
            ("X-Org", "o"),
            ("Authorization", "Bearer sk-1"),
            ("Content-Type", "application/json")
        ]
    );
    // Without an API key a configured Authorization header is the operator's choice.
    let b = OpenAiBackend::new(&cfg(None, &[("Authorization", "Basic abc")]));
    assert_eq!(b.upstream.headers()[0].1.expose(), "Basic abc");
    assert_eq!(b.upstream.headers().len(), 2);
}
