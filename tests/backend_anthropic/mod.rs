//! `AnthropicBackend` against the in-tree fake Messages API (`support::fake_anthropic`), which
//! refuses what the real API refuses: the loop's two-round tool exchange (tool_use, then the
//! final round with `tool_choice: none`) in both modes, extended thinking carried across the
//! tool turn, `pause_turn` continuation, header handling, and the error mappings.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aiproxy::api::openai::{Content, FinishReason, Message, Role, Tool, ToolImage};
use aiproxy::backend::anthropic::AnthropicBackend;
use aiproxy::backend::{Backend, Cancelled, Error, NoSink, Turn, TurnRequest, TurnSink};
use aiproxy::config::{BackendConfig, BackendKind};
use aiproxy::error::ApiError;
use aiproxy::secret::Secret;
use serde_json::{Map, Value, json};

use crate::support::fake_anthropic::{API_KEY, FakeAnthropic, Reply};

fn config(base_url: String) -> BackendConfig {
    BackendConfig {
        kind: BackendKind::Anthropic,
        base_url,
        api_key: Some(Secret::new(API_KEY)),
        default_headers: BTreeMap::new(),
        timeout: Duration::from_secs(10),
        prompt_caching: true,
    }
}

fn add_tool() -> Tool {
    serde_json::from_value(json!({"type": "function", "function": {
        "name": "demo__add", "description": "Add two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                       "required": ["a", "b"]}}}))
    .unwrap()
}

/// Records deltas; optionally reports the client gone at the first one.
#[derive(Default)]
struct RecSink {
    deltas: Vec<String>,
    gone: bool,
}

impl TurnSink for RecSink {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        if self.gone {
            return Err(Cancelled);
        }
        self.deltas.push(delta.to_string());
        Ok(())
    }
}

struct Round<'a> {
    messages: &'a [Message],
    tools: &'a [Tool],
    final_round: bool,
    stream: bool,
    params: Map<String, Value>,
    extra: Map<String, Value>,
}

impl Round<'_> {
    fn run(&self, backend: &AnthropicBackend, sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        let req = TurnRequest {
            model: "claude-sonnet-4-5",
            messages: self.messages,
            tools: self.tools,
            tool_choice: None,
            final_round: self.final_round,
            params: &self.params,
            extra_body: &self.extra,
            stream: self.stream,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(60),
        };
        backend.turn(&req, sink)
    }
}

fn round<'a>(
    messages: &'a [Message],
    tools: &'a [Tool],
    final_round: bool,
    stream: bool,
) -> Round<'a> {
    Round {
        messages,
        tools,
        final_round,
        stream,
        params: Map::new(),
        extra: Map::new(),
    }
}

/// What the agent loop appends after a tool round: the assistant turn (with its provider
/// state) and one tool message per call.
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

fn start_history() -> Vec<Message> {
    vec![
        Message::text(Role::System, "You are a calculator."),
        Message::text(Role::User, "what is 2 + 3?"),
    ]
}

fn two_round_exchange(stream: bool) {
    let fake = FakeAnthropic::start(vec![
        Reply::tool_use("toolu_01Add", "demo__add", json!({"a": 2, "b": 3})),
        Reply::text("2 + 3 = 5"),
    ]);
    let backend = AnthropicBackend::new(&config(fake.base_url()));
    let tools = vec![add_tool()];
    let mut history = start_history();

    let mut sink = RecSink::default();
    let first = round(&history, &tools, false, stream)
        .run(&backend, &mut sink)
        .unwrap();
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    assert_eq!(first.tool_calls.len(), 1);
    assert_eq!(first.tool_calls[0].id, "toolu_01Add");
    assert_eq!(first.tool_calls[0].function.name, "demo__add");
    assert_eq!(
        serde_json::from_str::<Value>(&first.tool_calls[0].function.arguments).unwrap(),
        json!({"a": 2, "b": 3})
    );
    assert_eq!(first.content, "Let me calculate that.");
    assert_eq!(first.usage.cache_creation_tokens, 400);
    assert_eq!(first.usage.prompt_tokens, 450);

    append_tool_round(&mut history, &first, "5");
    let last = round(&history, &tools, true, stream)
        .run(&backend, &mut sink)
        .unwrap();
    assert_eq!(last.content, "2 + 3 = 5");
    assert_eq!(last.finish_reason, FinishReason::Stop);
    assert!(last.tool_calls.is_empty());

    if stream {
        assert_eq!(sink.deltas.concat(), "Let me calculate that.2 + 3 = 5");
        assert!(
            sink.deltas.len() >= 4,
            "deltas arrive piecewise: {:?}",
            sink.deltas
        );
    } else {
        assert!(sink.deltas.is_empty());
    }
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.header("x-api-key"), Some(API_KEY));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body["max_tokens"], 4096);
        assert_eq!(r.body.get("stream") == Some(&json!(true)), stream);
        // The fixed prefix is marked for caching.
        assert_eq!(
            r.body["system"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(
            r.body["tools"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
    }
    assert!(reqs[0].body.get("tool_choice").is_none());
    // Final round: tools kept, calling them forbidden.
    assert_eq!(reqs[1].body["tool_choice"], json!({"type": "none"}));
    assert_eq!(reqs[1].body["tools"][0]["name"], "demo__add");
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
    assert_eq!(
        msgs[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_01Add",
        "content": [{"type": "text", "text": "5"}]})
    );
}

#[test]
fn tool_exchange_non_stream() {
    two_round_exchange(false);
}

#[test]
fn tool_exchange_stream() {
    two_round_exchange(true);
}

#[test]
fn thinking_blocks_survive_the_tool_turn() {
    for stream in [false, true] {
        let signature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";
        let fake = FakeAnthropic::start(vec![
            Reply::thinking_tool_use(
                "I should add them.",
                signature,
                "toolu_01T",
                "demo__add",
                json!({"a": 2, "b": 3}),
            ),
            Reply::text("The sum is 5."),
            // For the negative check below: never reached, the request is refused first.
            Reply::text("unused"),
        ]);
        let backend = AnthropicBackend::new(&config(fake.base_url()));
        let tools = vec![add_tool()];
        let mut history = start_history();
        let thinking_round = |history: &[Message], final_round: bool| {
            let mut r = round(history, &tools, final_round, stream);
            r.extra.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": 2048}),
            );
            r.params.insert("temperature".into(), json!(0.2));
            r.run(&backend, &mut NoSink)
        };
        let first = thinking_round(&history, false).unwrap();
        let state = first.provider_state.clone().expect("thinking kept");
        assert_eq!(
            state,
            json!([{"type": "thinking", "thinking": "I should add them.", "signature": signature}])
        );
        assert_eq!(first.usage.cached_tokens, 400);

        // Without the thinking block the API refuses the next request (the original defect).
        let mut stripped = history.clone();
        let mut turn_without = first.clone();
        turn_without.provider_state = None;
        append_tool_round(&mut stripped, &turn_without, "5");
        match thinking_round(&stripped, true) {
            Err(Error::Status {
                status: 400,
                message,
                ..
            }) => {
                assert!(
                    message.contains("Expected `thinking` or `redacted_thinking`"),
                    "{message}"
                )
            }
            other => panic!("expected a 400, got {other:?}"),
        }

        append_tool_round(&mut history, &first, "5");
        let last = thinking_round(&history, true).unwrap();
        assert_eq!(last.content, "The sum is 5.");
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[1].status, 400);
        let accepted = &reqs[2];
        assert_eq!(accepted.status, 200);
        assert_eq!(
            accepted.body["messages"][1]["content"][0]["signature"],
            signature
        );
        // Adjusted for thinking: temperature dropped, max_tokens above the budget.
        assert!(accepted.body.get("temperature").is_none());
        assert!(accepted.body["max_tokens"].as_u64().unwrap() > 2048);
        assert_eq!(fake.remaining_script(), 1);
    }
}

#[test]
fn tool_errors_and_images_reach_the_model() {
    let fake = FakeAnthropic::start(vec![
        Reply::tool_use("toolu_01Img", "demo__add", json!({})),
        Reply::text("done"),
    ]);
    let backend = AnthropicBackend::new(&config(fake.base_url()));
    let tools = vec![add_tool()];
    let mut history = start_history();
    let first = round(&history, &tools, false, false)
        .run(&backend, &mut NoSink)
        .unwrap();
    append_tool_round(&mut history, &first, "[tool error] bad input");
    let last = history.last_mut().unwrap();
    last.tool_error = true;
    last.tool_images = vec![ToolImage {
        media_type: "image/png".into(),
        data: "iVBORw0KGgo=".into(),
    }];
    round(&history, &tools, false, false)
        .run(&backend, &mut NoSink)
        .unwrap();
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
    let result = &fake.requests()[1].body["messages"][2]["content"][0];
    assert_eq!(result["is_error"], true);
    assert_eq!(result["content"][1]["type"], "image");
    assert_eq!(result["content"][1]["source"]["media_type"], "image/png");
}

#[test]
fn pause_turn_is_continued() {
    for stream in [false, true] {
        let fake = FakeAnthropic::start(vec![
            Reply::paused("Searching the web."),
            Reply::text("Found it."),
        ]);
        let backend = AnthropicBackend::new(&config(fake.base_url()));
        let history = start_history();
        let mut sink = RecSink::default();
        let turn = round(&history, &[], false, stream)
            .run(&backend, &mut sink)
            .unwrap();
        assert_eq!(turn.content, "Searching the web.Found it.");
        assert_eq!(turn.finish_reason, FinishReason::Stop);
        assert_eq!(turn.usage.completion_tokens, 5 + 12);
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 2, "{:?}", fake.rejections());
        let msgs = reqs[1].body["messages"].as_array().unwrap();
        assert_eq!(
            msgs.last().unwrap(),
            &json!({"role": "assistant", "content": [{"type": "text", "text": "Searching the web."}]})
        );
        if stream {
            assert_eq!(sink.deltas.concat(), turn.content);
        }
    }
}

#[test]
fn default_headers_override_version_and_add_beta() {
    let fake = FakeAnthropic::start(vec![Reply::text("ok")]);
    let mut cfg = config(fake.base_url());
    cfg.default_headers
        .insert("Anthropic-Version".into(), Secret::new("2023-01-01"));
    cfg.default_headers.insert(
        "anthropic-beta".into(),
        Secret::new("token-efficient-tools-2025-02-19"),
    );
    let backend = AnthropicBackend::new(&cfg);
    let history = start_history();
    round(&history, &[], false, false)
        .run(&backend, &mut NoSink)
        .unwrap();
    let r = &fake.requests()[0];
    assert_eq!(r.header_count("anthropic-version"), 1);
    assert_eq!(r.header("anthropic-version"), Some("2023-01-01"));
    assert_eq!(
        r.header("anthropic-beta"),
        Some("token-efficient-tools-2025-02-19")
    );
}

#[test]
fn status_errors_keep_message_status_and_retry_after() {
    let fake = FakeAnthropic::start(vec![
        Reply::status(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            Some("7"),
        ),
        Reply::status(529, "overloaded_error", "Overloaded", None),
        Reply::status(500, "api_error", "Internal server error", None),
    ]);
    let backend = AnthropicBackend::new(&config(fake.base_url()));
    let history = start_history();
    let call = || {
        round(&history, &[], false, false)
            .run(&backend, &mut NoSink)
            .unwrap_err()
    };

    let e = call();
    assert_eq!(
        e,
        Error::Status {
            status: 429,
            message:
                "rate_limit_error: Number of request tokens has exceeded your per-minute rate limit"
                    .into(),
            retry_after: Some("7".into()),
        }
    );
    let api = ApiError::from(&e);
    assert_eq!((api.status, api.retry_after.as_deref()), (429, Some("7")));

    let e = call();
    assert!(
        matches!(&e, Error::Status { status: 529, message, .. } if message == "overloaded_error: Overloaded")
    );
    assert_eq!(ApiError::from(&e).status, 503);

    let e = call();
    assert!(matches!(&e, Error::Status { status: 500, .. }));
    assert_eq!(ApiError::from(&e).status, 502);

    // A request the API refuses: the upstream's explanation reaches the client as a 400.
    let mut bad = round(&history, &[], false, false);
    bad.params.insert("max_tokens".into(), json!(2000));
    bad.extra.insert(
        "thinking".into(),
        json!({"type": "enabled", "budget_tokens": 10}),
    );
    let e = bad.run(&backend, &mut NoSink).unwrap_err();
    assert!(
        matches!(&e, Error::Status { status: 400, message, .. } if message.contains("budget_tokens")),
        "{e:?}"
    );
    assert_eq!(ApiError::from(&e).status, 400);
}

#[test]
fn error_event_mid_stream_is_an_error_not_a_stop() {
    let fake = FakeAnthropic::start(vec![Reply::StreamError {
        text: "Partial answer".into(),
        error_type: "overloaded_error".into(),
        message: "Overloaded".into(),
    }]);
    let backend = AnthropicBackend::new(&config(fake.base_url()));
    let history = start_history();
    let mut sink = RecSink::default();
    let e = round(&history, &[], false, true)
        .run(&backend, &mut sink)
        .unwrap_err();
    assert_eq!(sink.deltas.concat(), "Partial answer");
    assert!(matches!(&e, Error::Status { status: 529, .. }), "{e:?}");
    assert_eq!(ApiError::from(&e).status, 503);
}

#[test]
fn stream_cut_before_message_stop_is_a_protocol_error() {
    let fake = FakeAnthropic::start(vec![Reply::CutStream {
        text: "Half".into(),
    }]);
    let backend = AnthropicBackend::new(&config(fake.base_url()));
    let history = start_history();
    let e = round(&history, &[], false, true)
        .run(&backend, &mut NoSink)
        .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    assert_eq!(ApiError::from(&e).status, 502);
}

/// Records when each delta and idle call arrived.
#[derive(Default)]
struct TimedSink {
    deltas: Vec<(String, Instant)>,
    idles: usize,
}

impl TurnSink for TimedSink {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.deltas.push((delta.to_string(), Instant::now()));
        Ok(())
    }
    fn idle(&mut self) -> Result<(), Cancelled> {
        self.idles += 1;
        Ok(())
    }
}

#[test]
fn deltas_are_forwarded_as_they_arrive_and_quiet_streams_signal_idle() {
    let gap = Duration::from_millis(600);
    let fake = FakeAnthropic::start(vec![Reply::Slow { gap, pings: 3 }]);
    let backend = AnthropicBackend::new(&config(fake.base_url()));
    let history = start_history();
    let mut sink = TimedSink::default();
    let turn = round(&history, &[], false, true)
        .run(&backend, &mut sink)
        .unwrap();
    assert_eq!(turn.content, "firstsecond");
    let texts: Vec<&str> = sink.deltas.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(texts, ["fi", "rst", "second"]);
    // "first" was handed on long before the stream ended, not buffered until the end.
    let spread = sink.deltas[2].1 - sink.deltas[1].1;
    assert!(spread >= gap * 2, "deltas {spread:?} apart");
    // About 1.8 s of pings without text: the sink heard from the backend in between.
    assert!(sink.idles >= 1, "idle called {} times", sink.idles);
}

#[test]
fn departed_client_cancels_the_stream() {
    let fake = FakeAnthropic::start(vec![Reply::text("a long answer that nobody reads")]);
    let backend = AnthropicBackend::new(&config(fake.base_url()));
    let history = start_history();
    let mut sink = RecSink {
        gone: true,
        ..Default::default()
    };
    let e = round(&history, &[], false, true)
        .run(&backend, &mut sink)
        .unwrap_err();
    assert_eq!(e, Error::Cancelled);
}

#[test]
fn silent_upstream_times_out_and_closed_port_fails_to_connect() {
    let fake = FakeAnthropic::start(vec![Reply::Hang]);
    let mut cfg = config(fake.base_url());
    cfg.timeout = Duration::from_millis(300);
    let backend = AnthropicBackend::new(&cfg);
    let history = start_history();
    let started = Instant::now();
    let e = round(&history, &[], false, true)
        .run(&backend, &mut NoSink)
        .unwrap_err();
    assert_eq!(e, Error::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = AnthropicBackend::new(&config(format!("http://127.0.0.1:{port}/v1")));
    let e = round(&history, &[], false, false)
        .run(&backend, &mut NoSink)
        .unwrap_err();
    assert!(matches!(e, Error::Connect(_)), "{e:?}");
}

/// Every golden request body (`tests/fixtures/anthropic/request/*.expected.json`) is one the
/// API accepts.
#[test]
fn golden_request_bodies_pass_the_fake_api_checks() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/anthropic/request");
    let headers = vec![
        ("x-api-key".to_string(), API_KEY.to_string()),
        ("anthropic-version".to_string(), "2023-06-01".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_str().unwrap().ends_with(".expected.json") {
            continue;
        }
        let body = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = crate::support::fake_anthropic::validate(&headers, &body) {
            panic!("{}: refused: {e:?}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} golden requests");
}

/// The fake must refuse what the real API refuses, or the tests above prove nothing.
#[test]
fn fake_refuses_what_the_api_refuses() {
    let fake = FakeAnthropic::start(vec![Reply::text("ok")]);
    let url = format!("{}/messages", fake.base_url());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let post = |key: Option<&str>, body: Value| -> (u16, String) {
        let mut req = agent
            .post(&url)
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01");
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let mut resp = req.send(body.to_string().as_bytes()).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (status, text)
    };
    let user = json!({"role": "user", "content": "hi"});
    let tool_use = json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]});
    let result = |id: &str| json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "r"}]});
    let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    let cases = [
        (
            Some("wrong"),
            json!({"model": "m", "max_tokens": 5, "messages": [user]}),
            401,
            "x-api-key",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "messages": [user]}),
            400,
            "max_tokens: Field required",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "max_tokens": 5, "seed": 1, "messages": [user]}),
            400,
            "Extra inputs",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "max_tokens": 5, "messages": [user, user]}),
            400,
            "roles must alternate",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": "x"}]}),
            400,
            "first message",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "max_tokens": 5, "messages": [user, tool_use, result("toolu_1")]}),
            400,
            "must define tools",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "max_tokens": 5, "tools": tools, "messages": [user, tool_use,
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}, {"type": "tool_result", "tool_use_id": "toolu_2"}]})]}),
            400,
            "unexpected `tool_use_id`",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "max_tokens": 5, "tools": tools, "messages": [user, tool_use, user]}),
            400,
            "without `tool_result`",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "max_tokens": 5, "tool_choice": {"type": "none"}, "messages": [user]}),
            400,
            "tool_choice",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}]}),
            400,
            "non-whitespace",
        ),
        (
            Some(API_KEY),
            json!({"model": "m", "max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": tools, "messages": [user, tool_use, result("toolu_1")]}),
            400,
            "Expected `thinking`",
        ),
    ];
    for (key, body, status, needle) in cases {
        let (got, text) = post(key, body.clone());
        assert_eq!(got, status, "{body} → {text}");
        assert!(text.contains(needle), "{body} → {text}");
        let err: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["type"], "error");
    }
    // And accepts a valid history with tools defined.
    let (got, text) = post(
        Some(API_KEY),
        json!({"model": "m", "max_tokens": 5, "tools": tools,
        "tool_choice": {"type": "none"}, "messages": [user, tool_use, result("toolu_1")]}),
    );
    assert_eq!(got, 200, "{text}");
}
