//! The `openai` backend against the in-process fake upstream: request shape, text and tool
//! streaming, every fault mapped to the right `backend::Error`, cancellation closing the
//! upstream connection, idle ticks, connection reuse, and proxy variables ignored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use aiproxy::api::openai::{FinishReason, FunctionDef, Message, Role, Tool, ToolCall};
use aiproxy::backend::openai::OpenAiBackend;
use aiproxy::backend::{Backend, Cancelled, Error, NoSink, Turn, TurnRequest, TurnSink};
use aiproxy::config::{BackendConfig, BackendKind};
use aiproxy::secret::Secret;

use crate::support::fake_openai::{FakeOpenAi, Reply};

fn cfg(url: &str, key: Option<&str>, headers: &[(&str, &str)], timeout: Duration) -> BackendConfig {
    BackendConfig {
        kind: BackendKind::OpenAi,
        base_url: url.to_string(),
        api_key: key.map(Secret::new),
        default_headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect::<BTreeMap<_, _>>(),
        timeout,
        prompt_caching: false,
    }
}

fn backend(fake: &FakeOpenAi) -> OpenAiBackend {
    OpenAiBackend::new(&cfg(&fake.url(), None, &[], Duration::from_secs(5)))
}

fn tool(name: &str) -> Tool {
    Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: name.into(),
            description: Some("d".into()),
            parameters: Some(std::sync::Arc::new(json!({"type":"object"}))),
            rest: Map::new(),
        },
    }
}

/// Owns everything a `TurnRequest` borrows.
struct Call {
    messages: Vec<Message>,
    tools: Vec<Tool>,
    tool_choice: Option<Value>,
    params: Map<String, Value>,
    extra: Map<String, Value>,
    final_round: bool,
    stream: bool,
    deadline: std::time::Instant,
}

impl Call {
    fn new(stream: bool) -> Self {
        Call {
            messages: vec![Message::text(Role::User, "hi")],
            tools: Vec::new(),
            tool_choice: None,
            params: Map::new(),
            extra: Map::new(),
            final_round: false,
            stream,
            deadline: std::time::Instant::now() + Duration::from_secs(60),
        }
    }

    fn run(&self, b: &dyn Backend, sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        b.turn(
            &TurnRequest {
                model: "up-model",
                messages: &self.messages,
                tools: &self.tools,
                tool_choice: self.tool_choice.as_ref(),
                final_round: self.final_round,
                params: &self.params,
                extra_body: &self.extra,
                stream: self.stream,
                deadline: self.deadline,
            },
            sink,
        )
    }
}

/// Records deltas with arrival times; can refuse text after `fail_after` deltas or on idle.
#[derive(Default)]
struct Rec {
    deltas: Vec<(String, Instant)>,
    fail_after: Option<usize>,
    idles: usize,
    fail_on_idle: bool,
}

impl TurnSink for Rec {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        if self.fail_after == Some(self.deltas.len()) {
            return Err(Cancelled);
        }
        self.deltas.push((delta.to_string(), Instant::now()));
        Ok(())
    }

    fn idle(&mut self) -> Result<(), Cancelled> {
        self.idles += 1;
        if self.fail_on_idle {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

impl Rec {
    fn texts(&self) -> Vec<&str> {
        self.deltas.iter().map(|(d, _)| d.as_str()).collect()
    }
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn non_stream_text_and_usage() {
    let fake = FakeOpenAi::start();
    fake.push(
        Reply::text("Hello there")
            .usage(7, 3)
            .finish_reason("length"),
    );
    let t = Call::new(false).run(&backend(&fake), &mut NoSink).unwrap();
    assert_eq!(t.content, "Hello there");
    assert_eq!(t.finish_reason, FinishReason::Length);
    assert_eq!((t.usage.prompt_tokens, t.usage.completion_tokens), (7, 3));
    let r = fake.last_request().unwrap();
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(r.body["stream"], json!(false));
    assert!(r.body.get("stream_options").is_none());
    assert_eq!(r.body["model"], json!("up-model"));
    assert_eq!(r.body["messages"], json!([{"role":"user","content":"hi"}]));
}

#[test]
fn stream_deltas_reach_the_sink_as_they_arrive() {
    let fake = FakeOpenAi::start();
    fake.push(
        Reply::deltas(&["a", "b", "c", "d"])
            .chunk_delay(Duration::from_millis(100))
            .usage(4, 4),
    );
    let mut sink = Rec::default();
    let t = Call::new(true).run(&backend(&fake), &mut sink).unwrap();
    let done = Instant::now();
    assert_eq!(sink.texts(), ["a", "b", "c", "d"]);
    assert_eq!(t.content, "abcd");
    assert_eq!(
        t.usage.completion_tokens, 4,
        "usage from the final choices:[] chunk"
    );
    for w in sink.deltas.windows(2) {
        let gap = w[1].1 - w[0].1;
        assert!(
            gap >= Duration::from_millis(30),
            "deltas bunched: gap {gap:?}"
        );
    }
    // The first delta was handed on long before the stream ended (≥ 3 more chunk delays).
    assert!(done - sink.deltas[0].1 >= Duration::from_millis(250));
    let r = fake.last_request().unwrap();
    assert_eq!(r.body["stream"], json!(true));
    assert_eq!(r.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(r.header("accept"), Some("text/event-stream"));
}

#[test]
fn streamed_tool_calls_are_accumulated() {
    let fake = FakeOpenAi::start();
    fake.push(
        Reply::tool_calls(&[
            ("demo__add", r#"{"a":2,"b":3}"#),
            ("demo__echo", r#"{"text":"hi"}"#),
        ])
        .with_text("Let me add."),
    );
    let mut sink = Rec::default();
    let t = Call::new(true).run(&backend(&fake), &mut sink).unwrap();
    assert_eq!(sink.texts().concat(), "Let me add.");
    assert_eq!(t.content, "Let me add.");
    assert_eq!(t.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        t.tool_calls,
        [
            ToolCall::new("call_fake_0", "demo__add", r#"{"a":2,"b":3}"#),
            ToolCall::new("call_fake_1", "demo__echo", r#"{"text":"hi"}"#)
        ]
    );
}

#[test]
fn llama_cpp_style_and_missing_ids_are_tolerated() {
    let fake = FakeOpenAi::start();
    fake.push(
        Reply::tool_call("get_weather", r#"{"city": "Paris"}"#)
            .llama_style()
            .no_usage(),
    );
    fake.push(Reply::tool_call("f", "").no_ids());
    let b = backend(&fake);
    let t = Call::new(true).run(&b, &mut NoSink).unwrap();
    assert_eq!(
        t.tool_calls,
        [ToolCall::new(
            "call_fake_0",
            "get_weather",
            r#"{"city": "Paris"}"#
        )]
    );
    assert_eq!(t.usage.prompt_tokens + t.usage.completion_tokens, 0);
    let t = Call::new(true).run(&b, &mut NoSink).unwrap();
    assert_eq!(t.tool_calls, [ToolCall::new("call_0", "f", "{}")]);
}

#[test]
fn tools_sent_except_on_the_final_round() {
    let fake = FakeOpenAi::start();
    let b = backend(&fake);
    let mut call = Call::new(false);
    call.tools = vec![tool("demo__add")];
    call.tool_choice = Some(json!("auto"));
    call.run(&b, &mut NoSink).unwrap();
    let r = fake.last_request().unwrap();
    assert_eq!(r.tool_names(), ["demo__add"]);
    assert_eq!(r.body["tool_choice"], json!("auto"));
    call.final_round = true;
    call.run(&b, &mut NoSink).unwrap();
    let r = fake.last_request().unwrap();
    assert!(
        r.body.get("tools").is_none() && r.body.get("tool_choice").is_none(),
        "{}",
        r.body
    );
}

#[test]
fn headers_and_payload_are_sent_as_configured() {
    let fake = FakeOpenAi::start();
    let b = OpenAiBackend::new(&cfg(
        &fake.url(),
        Some("sk-test"),
        &[("X-Custom", "v1"), ("Authorization", "Bearer wrong")],
        Duration::from_secs(5),
    ));
    let mut call = Call::new(true);
    call.params =
        obj(json!({"temperature":0.1,"max_tokens":5,"stream_options":{"include_usage":false}}));
    call.extra = obj(json!({"temperature":0.9,"top_k":3}));
    call.run(&b, &mut NoSink).unwrap();
    let r = fake.last_request().unwrap();
    let auth: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auth, ["Bearer sk-test"]);
    assert_eq!(r.header("x-custom"), Some("v1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body["temperature"], json!(0.9), "extra_body wins");
    assert_eq!(r.body["max_tokens"], json!(5));
    assert_eq!(r.body["top_k"], json!(3));
    assert_eq!(r.body["stream_options"], json!({"include_usage": true}));
}

fn run_err(reply: Reply, stream: bool, timeout: Duration) -> (Error, Duration) {
    let fake = FakeOpenAi::start();
    fake.push(reply);
    let b = OpenAiBackend::new(&cfg(&fake.url(), None, &[], timeout));
    let start = Instant::now();
    let e = Call::new(stream).run(&b, &mut NoSink).unwrap_err();
    (e, start.elapsed())
}

#[test]
fn status_errors_keep_message_and_retry_after() {
    for stream in [false, true] {
        let (e, _) = run_err(
            Reply::error(429, "slow down").retry_after("7"),
            stream,
            Duration::from_secs(5),
        );
        assert_eq!(
            e,
            Error::Status {
                status: 429,
                message: "slow down".into(),
                retry_after: Some("7".into())
            }
        );
        let (e, _) = run_err(
            Reply::raw(502, "text/html", "<h1>bad gateway</h1>"),
            stream,
            Duration::from_secs(5),
        );
        assert_eq!(
            e,
            Error::Status {
                status: 502,
                message: "<h1>bad gateway</h1>".into(),
                retry_after: None
            }
        );
    }
}

#[test]
fn hangs_and_stalls_time_out() {
    let t = Duration::from_millis(800);
    for stream in [false, true] {
        let (e, took) = run_err(Reply::hang(), stream, t);
        assert_eq!(e, Error::Timeout, "stream={stream}");
        assert!(
            took >= Duration::from_millis(750) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
    let (e, took) = run_err(Reply::text("a b c d").hang_after(2), true, t);
    assert_eq!(e, Error::Timeout);
    assert!(
        took >= Duration::from_millis(750) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn truncated_and_invalid_answers_are_protocol_errors() {
    let t = Duration::from_secs(5);
    let (e, _) = run_err(Reply::text("a b c d").close_after(2), true, t);
    assert_eq!(e, Error::Protocol("upstream stream ended early".into()));
    let (e, _) = run_err(Reply::text("a b c d").close_after(2), false, t);
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    for stream in [false, true] {
        let (e, _) = run_err(Reply::invalid_json(), stream, t);
        assert!(
            matches!(e, Error::Protocol(ref m) if m.contains("invalid JSON")),
            "{e:?}"
        );
    }
    let (e, _) = run_err(
        Reply::raw(200, "application/json", r#"{"object":"chat.completion"}"#),
        false,
        t,
    );
    assert!(
        matches!(e, Error::Protocol(ref m) if m.contains("no choices")),
        "{e:?}"
    );
}

#[test]
fn stream_without_done_is_fine_once_finished() {
    // Events: role, "a", " b", finish, [DONE]; the connection drops before [DONE].
    let fake = FakeOpenAi::start();
    fake.push(Reply::text("a b").no_usage().close_after(4));
    let t = Call::new(true).run(&backend(&fake), &mut NoSink).unwrap();
    assert_eq!(
        (t.content.as_str(), t.finish_reason),
        ("a b", FinishReason::Stop)
    );
}

#[test]
fn mid_stream_error_events_fail_the_turn() {
    let t = Duration::from_secs(5);
    let (e, _) = run_err(
        Reply::text("a b c").error_after(2, "model overloaded", Value::Null),
        true,
        t,
    );
    assert_eq!(
        e,
        Error::Protocol("upstream error: model overloaded".into())
    );
    let (e, _) = run_err(
        Reply::text("a b c").error_after(2, "busy", json!(503)),
        true,
        t,
    );
    assert!(
        matches!(e, Error::Status { status: 503, ref message, .. } if message == "busy"),
        "{e:?}"
    );
}

#[test]
fn oversized_answers_are_too_large() {
    let t = Duration::from_secs(10);
    let (e, _) = run_err(Reply::huge(10 * 1024 * 1024), true, t);
    assert_eq!(e, Error::TooLarge);
    let (e, _) = run_err(Reply::huge(17 * 1024 * 1024), false, t);
    assert_eq!(e, Error::TooLarge);
}

#[test]
fn unreachable_upstream_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = OpenAiBackend::new(&cfg(
        &format!("http://127.0.0.1:{port}/v1"),
        None,
        &[],
        Duration::from_secs(2),
    ));
    for stream in [false, true] {
        let e = Call::new(stream).run(&b, &mut NoSink).unwrap_err();
        assert!(matches!(e, Error::Connect(_)), "{e:?}");
    }
}

#[test]
fn json_answer_to_a_stream_request_still_reaches_the_sink() {
    let fake = FakeOpenAi::start();
    let body = json!({"choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}]});
    fake.push(Reply::raw(200, "application/json", &body.to_string()));
    let mut sink = Rec::default();
    let t = Call::new(true).run(&backend(&fake), &mut sink).unwrap();
    assert_eq!(sink.texts(), ["whole"]);
    assert_eq!(t.content, "whole");
}

#[test]
fn sink_cancel_closes_the_upstream_connection() {
    let fake = FakeOpenAi::start();
    let words = (0..50).map(|i| format!("w{i} ")).collect::<String>();
    fake.push(Reply::text(&words).chunk_delay(Duration::from_millis(100)));
    let mut sink = Rec {
        fail_after: Some(2),
        ..Rec::default()
    };
    let start = Instant::now();
    let e = Call::new(true).run(&backend(&fake), &mut sink).unwrap_err();
    assert_eq!(e, Error::Cancelled);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(sink.deltas.len(), 2);
    assert!(
        fake.wait_open_connections(0, Duration::from_secs(2)),
        "upstream connection still open: {}",
        fake.open_connections()
    );
}

#[test]
fn quiet_upstream_gives_idle_ticks_and_idle_cancel_returns_at_once() {
    let fake = FakeOpenAi::start();
    fake.push(Reply::text("ab").head_delay(Duration::from_millis(2300)));
    let mut sink = Rec::default();
    let t = Call::new(true).run(&backend(&fake), &mut sink).unwrap();
    assert_eq!(t.content, "ab");
    assert!(sink.idles >= 2, "idle ticks: {}", sink.idles);

    fake.push(Reply::text("late").head_delay(Duration::from_secs(5)));
    let mut sink = Rec {
        fail_on_idle: true,
        ..Rec::default()
    };
    let start = Instant::now();
    let e = Call::new(true).run(&backend(&fake), &mut sink).unwrap_err();
    assert_eq!(e, Error::Cancelled);
    // The first idle tick comes after ~1 s, the answer after 5 s.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn connections_are_reused_across_turns() {
    let fake = FakeOpenAi::start();
    let b = backend(&fake);
    for stream in [true, true, false, false, true] {
        Call::new(stream).run(&b, &mut NoSink).unwrap();
    }
    assert_eq!(fake.completions().len(), 5);
    assert_eq!(
        fake.total_connections(),
        1,
        "each turn opened a new connection"
    );
}

/// Run by `proxy_variables_do_not_reroute_loopback` in a child process whose environment
/// names a dead proxy (env vars are process-global, so they are never set in this process).
#[test]
#[ignore = "run as a child process by proxy_variables_do_not_reroute_loopback"]
fn proxy_env_child() {
    assert_eq!(
        std::env::var("HTTPS_PROXY").as_deref(),
        Ok("http://127.0.0.1:1"),
        "run by the parent test only"
    );
    let fake = FakeOpenAi::start();
    fake.push(Reply::text("direct"));
    for stream in [false, true] {
        fake.push(Reply::text("direct"));
        let t = Call::new(stream).run(&backend(&fake), &mut NoSink).unwrap();
        assert_eq!(t.content, "direct");
    }
}

#[test]
fn proxy_variables_do_not_reroute_loopback() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "backend_openai::proxy_env_child",
            "--test-threads=1",
        ])
        .env("HTTPS_PROXY", "http://127.0.0.1:1")
        .env("ALL_PROXY", "http://127.0.0.1:1")
        .env("HTTP_PROXY", "http://127.0.0.1:1")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
