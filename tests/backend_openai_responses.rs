//! The `openai-responses` backend against the in-tree fake Responses API
//! (`support::fake_responses`, which refuses what the real API refuses): an MCP tool round
//! behind `/v1/chat/completions` and behind `/v1/responses`, stream and non-stream; a reasoning
//! item carried into the second round; the encrypted-reasoning fallback; 401/429/5xx; and a
//! trickling stream cut at the deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aiproxy::api::openai::{Content, Message, Role, Tool};
use aiproxy::backend::openai_responses::OpenAiResponsesBackend;
use aiproxy::backend::{Backend, CREDENTIALS_REJECTED, Error, NoSink, Turn, TurnRequest};
use aiproxy::config::{BackendConfig, BackendKind};
use aiproxy::error::ApiError;
use aiproxy::secret::Secret;
use serde_json::{Map, Value, json};

use crate::support::fake_responses::{API_KEY, FakeResponses, Reply};
use crate::support::gateway::TestGateway;

fn gateway(fake: &FakeResponses, model: &str) -> TestGateway {
    TestGateway::start(&format!(
        r#"
mcp_servers:
  demo:
    command: ${{AIPROXY_EXE}}
    args: [demo-mcp]
backends:
  resp:
    kind: openai-responses
    base_url: {}
    api_key: {API_KEY}
assistants:
  - name: calc
    backend: resp
    model: {model}
    system_prompt: You add numbers with the tools.
    mcp_servers: [demo]
"#,
        fake.base_url()
    ))
}

fn round() -> Vec<Reply> {
    vec![
        Reply::call("call_1", "demo__add", json!({"a": 2, "b": 3})),
        Reply::text("2 + 3 = 5."),
    ]
}

/// The JSON objects of an SSE body's `data:` lines (`[DONE]` skipped).
fn data_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// The second request of a tool round: the call and its real MCP result went back as items.
fn assert_tool_items_sent(fake: &FakeResponses, stream: bool) {
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/v1/responses");
        assert_eq!(r.body["store"], false);
        assert_eq!(r.body.get("stream") == Some(&json!(true)), stream);
        assert_eq!(r.body["instructions"], "You add numbers with the tools.");
        assert_eq!(r.body["tools"][0]["name"], "demo__add");
        assert_eq!(r.body["tools"][0]["strict"], false);
    }
    let input = reqs[1].body["input"].as_array().unwrap();
    let call = input.iter().find(|i| i["type"] == "function_call").unwrap();
    assert_eq!(
        (call["call_id"].as_str(), call["name"].as_str()),
        (Some("call_1"), Some("demo__add"))
    );
    let out = input
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .unwrap();
    assert_eq!(out["call_id"], "call_1");
    assert_eq!(out["output"], "5");
}

#[test]
fn chat_completion_with_an_mcp_tool_round_stream_and_not() {
    for stream in [false, true] {
        let fake = FakeResponses::start(round());
        let gw = gateway(&fake, "gpt-5");
        let body = json!({"model": "calc", "stream": stream,
            "messages": [{"role": "user", "content": "what is 2 + 3?"}]});
        let r = gw.chat(&body);
        assert_eq!(r.status, 200, "{}", r.text());
        if stream {
            let chunks = data_lines(&r.text());
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert!(text.ends_with("2 + 3 = 5."), "{text}");
        } else {
            let v = r.json();
            assert!(
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .ends_with("2 + 3 = 5."),
                "{v}"
            );
            assert_eq!(v["choices"][0]["finish_reason"], "stop");
            // Summed over both rounds: 30 + 30 in, 10 + 10 of them cached.
            assert_eq!(v["usage"]["prompt_tokens"], 60);
            assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 20);
        }
        assert_tool_items_sent(&fake, stream);
    }
}

#[test]
fn responses_api_with_an_mcp_tool_round_stream_and_not() {
    for stream in [false, true] {
        let fake = FakeResponses::start(round());
        let gw = gateway(&fake, "gpt-5");
        let body = json!({"model": "calc", "input": "what is 2 + 3?", "stream": stream});
        let r = gw.post_json("/v1/responses", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = if stream {
            let events = data_lines(&r.text());
            let last = events.last().unwrap();
            assert_eq!(last["type"], "response.completed");
            last["response"].clone()
        } else {
            r.json()
        };
        let types: Vec<&str> = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["message", "mcp_call", "message"], "{v}");
        assert_eq!(v["output"][1]["output"], "5");
        assert_eq!(v["output"][2]["content"][0]["text"], "2 + 3 = 5.");
        assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 20);
        assert_tool_items_sent(&fake, stream);
    }
}

#[test]
fn reasoning_item_is_carried_into_the_second_round() {
    let encrypted = "gAAAAABoEncryptedReasoningBlob==";
    for stream in [false, true] {
        let fake = FakeResponses::start(vec![
            Reply::reasoning_call("call_r", "demo__add", json!({"a": 2, "b": 3}), encrypted),
            Reply::text("The sum is 5."),
        ]);
        let gw = gateway(&fake, "o4-mini");
        let r = gw.chat(&json!({"model": "calc", "stream": stream,
            "messages": [{"role": "user", "content": "what is 2 + 3?"}]}));
        assert_eq!(r.status, 200, "{}", r.text());
        let text: String = if stream {
            data_lines(&r.text())
                .iter()
                .filter_map(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect()
        } else {
            r.json()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(text, "The sum is 5.");
        assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            reqs[0].body["include"],
            json!(["reasoning.encrypted_content"])
        );
        let input = reqs[1].body["input"].as_array().unwrap();
        let rs = input
            .iter()
            .position(|i| i["type"] == "reasoning")
            .expect("reasoning sent back");
        assert_eq!(input[rs]["encrypted_content"], encrypted);
        assert_eq!(input[rs + 1]["type"], "function_call");
        assert_eq!(input[rs + 1]["id"], "fc_call_r");
    }

    // Without the reasoning item the API refuses the next request (what carrying it prevents).
    let fake = FakeResponses::start(vec![
        Reply::reasoning_call("call_r", "demo__add", json!({"a": 2, "b": 3}), encrypted),
        Reply::text("unused"),
    ]);
    let backend = OpenAiResponsesBackend::new(&config(fake.base_url(), API_KEY));
    let mut history = vec![Message::text(Role::User, "what is 2 + 3?")];
    let first = run(&backend, &history, false, "o4-mini").unwrap();
    assert!(first.provider_state.is_some());
    assert_eq!(first.usage.reasoning_tokens, 7);
    let mut stripped = first.clone();
    stripped.provider_state = None;
    append_tool_round(&mut history, &stripped, "5");
    match run(&backend, &history, false, "o4-mini") {
        Err(Error::Status {
            status: 400,
            message,
            ..
        }) => {
            assert!(
                message.contains("without its required 'reasoning' item"),
                "{message}"
            )
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

fn config(base_url: String, key: &str) -> BackendConfig {
    BackendConfig {
        kind: BackendKind::OpenAiResponses,
        base_url,
        api_key: Some(Secret::new(key)),
        default_headers: BTreeMap::new(),
        timeout: Duration::from_secs(10),
        prompt_caching: true,
    }
}

fn add_tool() -> Tool {
    serde_json::from_value(json!({"type": "function", "function": {
        "name": "demo__add", "description": "Add two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}))
    .unwrap()
}

fn run_with(
    backend: &OpenAiResponsesBackend,
    messages: &[Message],
    stream: bool,
    model: &str,
    deadline: Instant,
) -> Result<Turn, Error> {
    let tools = vec![add_tool()];
    let (params, extra) = (Map::new(), Map::new());
    let req = TurnRequest {
        model,
        messages,
        tools: &tools,
        tool_choice: None,
        final_round: false,
        params: &params,
        extra_body: &extra,
        stream,
        deadline,
    };
    backend.turn(&req, &mut NoSink)
}

fn run(
    backend: &OpenAiResponsesBackend,
    messages: &[Message],
    stream: bool,
    model: &str,
) -> Result<Turn, Error> {
    run_with(
        backend,
        messages,
        stream,
        model,
        Instant::now() + Duration::from_secs(60),
    )
}

/// What the agent loop appends after a tool round.
fn append_tool_round(history: &mut Vec<Message>, turn: &Turn, result: &str) {
    let mut assistant = Message::new(
        Role::Assistant,
        (!turn.content.is_empty()).then(|| Content::Text(turn.content.clone())),
    );
    assistant.tool_calls = Some(turn.tool_calls.clone());
    assistant.provider_state = turn.provider_state.clone();
    history.push(assistant);
    for call in &turn.tool_calls {
        let mut tool = Message::text(Role::Tool, result);
        tool.tool_call_id = Some(call.id.clone());
        history.push(tool);
    }
}

#[test]
fn model_without_encrypted_reasoning_is_asked_again_and_remembered() {
    let fake = FakeResponses::start(vec![Reply::text("one"), Reply::text("two")]);
    let backend = OpenAiResponsesBackend::new(&config(fake.base_url(), API_KEY));
    let history = vec![Message::text(Role::User, "hi")];
    assert_eq!(
        run(&backend, &history, true, "gpt-4o-mini")
            .unwrap()
            .content,
        "one"
    );
    assert_eq!(
        run(&backend, &history, false, "gpt-4o-mini")
            .unwrap()
            .content,
        "two"
    );
    let reqs = fake.requests();
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [400, 200, 200],
        "refused once, then never asked again"
    );
    assert!(reqs[0].body.get("include").is_some());
    assert!(reqs[1].body.get("include").is_none() && reqs[2].body.get("include").is_none());
}

#[test]
fn upstream_errors_map_like_the_other_backends() {
    let fake = FakeResponses::start(vec![
        Reply::Status {
            status: 429,
            code: "rate_limit_exceeded",
            message: "Rate limit reached for requests".into(),
            retry_after: Some("7"),
        },
        Reply::status(500, "server_error", "The server had an error"),
        Reply::status(503, "server_is_overloaded", "Overloaded"),
    ]);
    let backend = OpenAiResponsesBackend::new(&config(fake.base_url(), API_KEY));
    let history = vec![Message::text(Role::User, "hi")];
    for stream in [false, true, false] {
        let e = run(&backend, &history, stream, "gpt-5").unwrap_err();
        let api = ApiError::from(&e);
        match &e {
            Error::Status {
                status: 429,
                message,
                retry_after,
            } => {
                assert_eq!(message, "Rate limit reached for requests");
                assert_eq!(retry_after.as_deref(), Some("7"));
                assert_eq!((api.status, api.retry_after.as_deref()), (429, Some("7")));
            }
            Error::Status { status: 500, .. } => assert_eq!(api.status, 502),
            Error::Status { status: 503, .. } => assert_eq!(api.status, 503),
            other => panic!("{other:?}"),
        }
    }
    // Our key refused: the upstream's text (which may echo the key) is never passed on.
    let key = "sk-wrong-key-123456";
    let backend = OpenAiResponsesBackend::new(&config(fake.base_url(), key));
    let e = run(&backend, &history, false, "gpt-5").unwrap_err();
    assert!(
        matches!(&e, Error::Status { status: 401, message, .. } if message == CREDENTIALS_REJECTED),
        "{e:?}"
    );
    assert_eq!(ApiError::from(&e).status, 502);
    assert!(!e.to_string().contains(key));
}

#[test]
fn trickling_stream_is_cut_at_the_deadline() {
    let fake = FakeResponses::start(vec![Reply::Trickle {
        gap: Duration::from_millis(100),
    }]);
    let backend = OpenAiResponsesBackend::new(&config(fake.base_url(), API_KEY));
    let history = vec![Message::text(Role::User, "hi")];
    let started = Instant::now();
    let deadline = started + Duration::from_millis(1500);
    let e = run_with(&backend, &history, true, "gpt-5", deadline).unwrap_err();
    let took = started.elapsed();
    assert_eq!(e, Error::Timeout);
    assert!(took >= Duration::from_millis(1400), "cut early: {took:?}");
    assert!(
        took < Duration::from_secs(8),
        "not cut at the deadline: {took:?}"
    );
    // The upstream connection is closed, not left trickling.
    let until = Instant::now() + Duration::from_secs(10);
    while fake.open_connections() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fake.open_connections(), 0);
}
