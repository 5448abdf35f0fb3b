//! Tool-loop semantics against the fake OpenAI upstream (issue 14): a forced `tool_choice`
//! holds for the first round only, structured output answers with the final round's text only
//! (chat and the Responses API, stream and not), the assistant message with `tool_calls` has
//! string content, and MCP images reach vision models.

use serde_json::{Value, json};

use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::{TestGateway, stream_text};
use crate::support::peers;

fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
mcp_servers:
  demo:
    command: ${{AIPROXY_EXE}}
    args: [demo-mcp]
backends:
  up:
    kind: openai
    base_url: {upstream}
    api_key: sk-upstream
assistants:
  - name: calc
    backend: up
    model: gpt-test
    mcp_servers: [demo]
    max_tool_iterations: 8
{extra}"#
    )
}

fn ask(stream: bool, extra: Value) -> Value {
    let mut body = json!({"model": "calc", "stream": stream,
        "messages": [{"role": "user", "content": "what is 2 + 3?"}]});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    body
}

/// The answer's text in either mode.
fn answer(gw: &TestGateway, body: &Value) -> String {
    if body["stream"] == true {
        let client = gw.stream(body);
        assert_eq!(client.status, 200);
        stream_text(&client.collect())
    } else {
        let r = gw.chat(body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

#[test]
fn forced_tool_choice_applies_to_the_first_round_only() {
    let named = json!({"type": "function", "function": {"name": "demo__add"}});
    for choice in [json!("required"), named] {
        let up = FakeOpenAi::start();
        up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#));
        up.push(Reply::text("5"));
        // Were the choice re-sent, the model would be made to call again: the fake's default
        // answer is another tool call, so the loop would run until the budget.
        up.set_default(Reply::tool_call("demo__add", r#"{"a":1,"b":1}"#).with_text("again."));
        let gw = TestGateway::start(&config(&up.url(), ""));
        let text = answer(&gw, &ask(false, json!({"tool_choice": choice})));
        assert_eq!(text, "5", "{choice}");
        let reqs = up.completions();
        assert_eq!(reqs.len(), 2, "{choice}: one tool round, then the answer");
        assert_eq!(reqs[0].body["tool_choice"], choice);
        assert_eq!(reqs[1].body["tool_choice"], "auto", "{choice}");
    }
}

#[test]
fn auto_and_none_tool_choice_pass_through_every_round() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#));
    up.push(Reply::text("5"));
    let gw = TestGateway::start(&config(&up.url(), ""));
    answer(&gw, &ask(false, json!({"tool_choice": "auto"})));
    let reqs = up.completions();
    assert_eq!(reqs[1].body["tool_choice"], "auto");
}

#[test]
fn structured_output_is_the_final_rounds_text_in_both_modes() {
    for format in [
        json!({"type": "json_object"}),
        json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}),
    ] {
        for stream in [false, true] {
            let up = FakeOpenAi::start();
            up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#).with_text("Let me check."));
            up.push(Reply::deltas(&["{\"answer\"", ":5}"]));
            let gw = TestGateway::start(&config(&up.url(), ""));
            let text = answer(&gw, &ask(stream, json!({"response_format": format})));
            assert_eq!(text, r#"{"answer":5}"#, "stream={stream} {format}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["answer"], 5);
        }
    }
}

#[test]
fn plain_text_keeps_every_rounds_text() {
    for stream in [false, true] {
        let up = FakeOpenAi::start();
        up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#).with_text("Let me check."));
        up.push(Reply::text("It is 5."));
        let gw = TestGateway::start(&config(&up.url(), ""));
        let fmt = json!({"response_format": {"type": "text"}});
        assert_eq!(answer(&gw, &ask(stream, fmt)), "Let me check.\n\nIt is 5.");
    }
}

#[test]
fn responses_text_format_is_the_final_rounds_text() {
    for stream in [false, true] {
        let up = FakeOpenAi::start();
        up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#).with_text("Let me check."));
        up.push(Reply::text(r#"{"answer":5}"#));
        let gw = TestGateway::start(&config(&up.url(), ""));
        let body = json!({"model": "calc", "input": "what is 2 + 3?", "stream": stream,
            "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}}});
        let r = gw.post_json("/v1/responses", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        let reqs = up.completions();
        assert_eq!(reqs[0].body["response_format"]["type"], "json_schema");
        let raw = r.text();
        let response = if stream {
            let done = raw
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .find(|v| v["type"] == "response.completed")
                .unwrap_or_else(|| panic!("no response.completed in {raw}"));
            assert!(!raw.contains("Let me check."), "{raw}");
            done["response"].clone()
        } else {
            r.json()
        };
        let texts: Vec<String> = response["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "message")
            .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["text"].as_str().map(String::from))
            .collect();
        assert_eq!(texts.concat(), r#"{"answer":5}"#, "stream={stream}");
    }
}

#[test]
fn assistant_message_with_tool_calls_has_empty_string_content() {
    for stream in [false, true] {
        let up = FakeOpenAi::start();
        up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#));
        up.push(Reply::text("5"));
        let gw = TestGateway::start(&config(&up.url(), ""));
        answer(&gw, &ask(stream, json!({})));
        let reqs = up.completions();
        let msgs = reqs[1].body["messages"].as_array().unwrap().clone();
        let assistant = msgs.iter().find(|m| m["role"] == "assistant").unwrap();
        assert!(assistant["tool_calls"].is_array());
        assert_eq!(assistant["content"], json!(""), "{assistant}");
    }
}

fn vision_config(upstream: &str, vision: bool) -> String {
    format!(
        r#"
mcp_servers:
  py:
    command: {python}
    args: ["{script}", stdio]
backends:
  up:
    kind: openai
    base_url: {upstream}
assistants:
  - name: eye
    backend: up
    model: gpt-test
    mcp_servers: [py]
    vision: {vision}
"#,
        python = peers::venv_python(),
        script = peers::support_script("py_mcp_server.py"),
    )
}

#[test]
fn mcp_images_reach_a_vision_model_as_user_image_parts() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("py__image", "{}"));
    up.push(Reply::text("A dot."));
    let gw = TestGateway::start(&vision_config(&up.url(), true));
    let r = gw.chat(&json!({"model": "eye", "messages": [{"role": "user", "content": "look"}]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let reqs = up.completions();
    let msgs = reqs[1].body["messages"].as_array().unwrap().clone();
    let tool_at = msgs.iter().position(|m| m["role"] == "tool").unwrap();
    assert!(
        msgs[tool_at]["content"]
            .as_str()
            .unwrap()
            .starts_with("[image: image/png"),
        "the tool message keeps its placeholder"
    );
    let images = &msgs[tool_at + 1];
    assert_eq!(images["role"], "user", "{msgs:?}");
    let url = images["content"][1]["image_url"]["url"].as_str().unwrap();
    assert!(url.starts_with("data:image/png;base64,iVBOR"), "{url}");
}

#[test]
fn without_vision_images_stay_placeholders() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("py__image", "{}"));
    up.push(Reply::text("A dot."));
    let gw = TestGateway::start(&vision_config(&up.url(), false));
    let r = gw.chat(&json!({"model": "eye", "messages": [{"role": "user", "content": "look"}]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = up.completions()[1].body.to_string();
    assert!(!body.contains("image_url"), "{body}");
    assert!(body.contains("[image: image/png"), "{body}");
}

/// The real client: `chat.completions.parse` and its stream helper with a Pydantic model,
/// across a tool round whose first round says something before calling the tool.
#[test]
fn openai_sdk_parse_with_pydantic_across_a_tool_round() {
    let up = FakeOpenAi::start();
    for _ in 0..2 {
        up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#).with_text("Let me check."));
        up.push(Reply::deltas(&["{\"answer\"", ": 5}"]));
    }
    let gw = TestGateway::start(&config(&up.url(), ""));
    let out = std::process::Command::new(peers::venv_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/structured_parse.py"
        ))
        .arg(gw.url("/v1"))
        .arg("calc")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "parse failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(up.completions().len(), 4);
}

/// instructor in JSON mode with a Pydantic model, across a tool round.
#[test]
fn instructor_json_mode_across_a_tool_round() {
    let up = FakeOpenAi::start();
    // Braces in the pre-tool text: a client that cuts from the first `{` to the last `}` of
    // joined rounds' text cannot rescue it.
    up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#).with_text("Calling add {a, b}."));
    up.push(Reply::text(r#"{"answer": 5}"#));
    let gw = TestGateway::start(&config(&up.url(), ""));
    crate::completions::legacy_client(&gw, "calc", "instructor");
    assert_eq!(up.completions().len(), 2);
    assert_eq!(
        up.completions()[0].body["response_format"]["type"],
        "json_object"
    );
}

/// History sent by the client (an SDK replaying `message` objects with `content: null`) goes
/// upstream with `content: ""` as well.
#[test]
fn client_history_tool_call_messages_get_empty_string_content() {
    let up = FakeOpenAi::start();
    up.push(Reply::text("ok"));
    let gw = TestGateway::start(&config(&up.url(), ""));
    let call =
        json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
    for assistant in [
        json!({"role": "assistant", "content": null, "tool_calls": [call]}),
        json!({"role": "assistant", "tool_calls": [call]}),
    ] {
        up.push(Reply::text("ok"));
        let body = json!({"model": "calc", "messages": [
            {"role": "user", "content": "hi"}, assistant,
            {"role": "tool", "tool_call_id": "c1", "content": "done"}]});
        assert_eq!(gw.chat(&body).status, 200);
        let sent = up.last_request().unwrap().body;
        assert_eq!(sent["messages"][1]["content"], json!(""), "{sent}");
    }
}
