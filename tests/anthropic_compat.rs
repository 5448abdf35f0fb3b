//! Servers that translate to the Messages API without being Anthropic (issue 14 point 7), with
//! the fake Messages API speaking as LiteLLM's `/v1/messages` does: one tool call split over
//! several `tool_use` blocks with the same id, an error as a bare `data: {"error":…}`, and a
//! `system` that must be a plain string when it can be.

use serde_json::{Value, json};

use crate::support::fake_anthropic::{API_KEY, FakeAnthropic, Reply};
use crate::support::gateway::TestGateway;

fn config(base_url: &str, caching: bool) -> String {
    format!(
        r#"
mcp_servers:
  demo:
    command: ${{AIPROXY_EXE}}
    args: [demo-mcp]
backends:
  claude:
    kind: anthropic
    base_url: {base_url}
    api_key: {API_KEY}
    prompt_caching: {caching}
assistants:
  - name: calc
    backend: claude
    model: claude-test
    system_prompt: You add numbers with the tools.
    mcp_servers: [demo]
"#
    )
}

fn sse(data: Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap()
    )
}

/// One `add` call whose input arrives over three `tool_use` blocks sharing the id.
fn split_tool_call() -> Reply {
    let start = |i: u64| {
        sse(json!({"type": "content_block_start", "index": i,
            "content_block": {"type": "tool_use", "id": "call_1", "name": "demo__add", "input": {}}}))
    };
    let delta = |i: u64, s: &str| {
        sse(json!({"type": "content_block_delta", "index": i,
            "delta": {"type": "input_json_delta", "partial_json": s}}))
    };
    let stop = |i: u64| sse(json!({"type": "content_block_stop", "index": i}));
    Reply::RawStream(vec![
        sse(
            json!({"type": "message_start", "message": {"id": "m", "type": "message",
            "role": "assistant", "content": [], "usage": {"input_tokens": 5, "output_tokens": 0}}}),
        ),
        start(0),
        delta(0, "{\"a\": 2,"),
        stop(0),
        start(1),
        delta(1, " "),
        stop(1),
        start(2),
        delta(2, "\"b\": 3}"),
        stop(2),
        sse(
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9}}),
        ),
        sse(json!({"type": "message_stop"})),
    ])
}

fn ask(stream: bool) -> Value {
    json!({"model": "calc", "stream": stream,
        "messages": [{"role": "user", "content": "what is 2 + 3?"}]})
}

#[test]
fn tool_use_blocks_sharing_an_id_are_one_call() {
    let fake = FakeAnthropic::start(vec![split_tool_call(), Reply::text("5")]);
    let gw = TestGateway::start(&config(&fake.base_url(), false));
    let client = gw.stream(&ask(true));
    assert_eq!(client.status, 200);
    let text = crate::support::gateway::stream_text(&client.collect());
    assert_eq!(text, "5");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "one tool round, then the answer");
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    let calls: Vec<&Value> = msgs
        .iter()
        .flat_map(|m| m["content"].as_array().unwrap().iter())
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(calls.len(), 1, "{msgs:?}");
    assert_eq!(calls[0]["input"], json!({"a": 2, "b": 3}));
    let result = msgs
        .iter()
        .flat_map(|m| m["content"].as_array().unwrap().iter())
        .find(|b| b["type"] == "tool_result")
        .unwrap();
    assert_eq!(result["content"][0]["text"], "5");
}

#[test]
fn a_bare_error_data_line_reaches_the_client() {
    let fake = FakeAnthropic::start(vec![Reply::RawStream(vec![
        "data: {\"error\": {\"type\": \"api_error\", \"message\": \"litellm.APIError: backend down ünïcode\"}}\n\n"
            .to_string(),
    ])]);
    let gw = TestGateway::start(&config(&fake.base_url(), false));
    let r = gw.post_json("/v1/chat/completions", &ask(true));
    let body = r.text();
    assert!(
        body.contains("backend down ünïcode"),
        "the upstream's message, not a parse error: {body}"
    );
    assert!(!body.contains("is not JSON"), "{body}");
}

#[test]
fn unusable_tool_input_is_a_502_not_an_empty_success() {
    let cut = Reply::RawStream(vec![
        sse(json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}})),
        sse(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "c", "name": "demo__add", "input": {}}})),
        sse(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "{\"a\": 2, "}})),
        sse(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}})),
        sse(json!({"type": "message_stop"})),
    ]);
    let fake = FakeAnthropic::start(vec![cut]);
    let gw = TestGateway::start(&config(&fake.base_url(), false));
    let r = gw.post_json("/v1/chat/completions", &ask(true));
    assert_eq!(r.status, 502, "{}", r.text());
}

#[test]
fn system_is_a_plain_string_unless_cached() {
    for (caching, string) in [(false, true), (true, false)] {
        let fake = FakeAnthropic::start(vec![Reply::text("hi")]);
        let gw = TestGateway::start(&config(&fake.base_url(), caching));
        let r = gw.chat(&ask(false));
        assert_eq!(r.status, 200, "{}", r.text());
        let system = &fake.requests()[0].body["system"];
        if string {
            assert_eq!(system, &json!("You add numbers with the tools."));
        } else {
            assert_eq!(system[0]["cache_control"]["type"], "ephemeral", "{system}");
        }
    }
}
