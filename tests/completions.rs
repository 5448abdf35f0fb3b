//! The legacy `POST /v1/completions` endpoint and the smaller compatibility points of issue 14:
//! `/v1/models/` with a trailing slash, the Azure `api-key` header, a 404 that names the
//! endpoints, and CORS headers outside the browser (the browser itself: tests/browser.rs).

use std::process::Command;

use serde_json::{Value, json};

use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::{TestGateway, request};
use crate::support::peers;

fn config(upstream: &str) -> String {
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
assistants:
  - name: calc
    backend: up
    model: gpt-test
    system_prompt: You add numbers.
    mcp_servers: [demo]
"#
    )
}

fn post(gw: &TestGateway, body: &Value) -> crate::support::gateway::Response {
    gw.post_json("/v1/completions", body)
}

#[test]
fn completion_runs_the_tool_loop_and_answers_text_completion() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#));
    up.push(Reply::text("2 + 3 = 5 ✓"));
    let gw = TestGateway::start(&config(&up.url()));
    let r = post(
        &gw,
        &json!({"model": "calc", "prompt": "what is 2 + 3?", "max_tokens": 50, "echo": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("X-Request-Id").is_some());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["choices"][0]["text"], "2 + 3 = 5 ✓");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["logprobs"].is_null());
    assert_eq!(v["usage"]["prompt_tokens"], 20);
    let reqs = up.completions();
    assert_eq!(reqs.len(), 2);
    let msgs = &reqs[0].body["messages"];
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(
        msgs[1],
        json!({"role": "user", "content": "what is 2 + 3?"})
    );
    assert_eq!(reqs[0].body["max_tokens"], 50);
    assert!(reqs[0].body.get("echo").is_none());
}

#[test]
fn completion_stream_is_text_completion_events() {
    let up = FakeOpenAi::start();
    up.push(Reply::deltas(&["héllo ", "wörld"]));
    let gw = TestGateway::start(&config(&up.url()));
    let r = post(
        &gw,
        &json!({"model": "calc", "prompt": ["hi"], "stream": true,
                "stream_options": {"include_usage": true}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let events: Vec<Value> = r
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(r.text().trim_end().ends_with("data: [DONE]"));
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "héllo wörld");
    assert!(events.iter().all(|e| e["object"] == "text_completion"));
    assert!(
        events
            .iter()
            .all(|e| e["choices"][0].get("delta").is_none())
    );
    let finish = events
        .iter()
        .find(|e| e["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(events.last().unwrap()["usage"]["total_tokens"], 15);
}

#[test]
fn completion_refuses_what_an_assistant_cannot_do_naming_the_field() {
    let up = FakeOpenAi::start();
    let gw = TestGateway::start(&config(&up.url()));
    for (extra, field) in [
        (json!({"echo": true}), "echo"),
        (json!({"logprobs": 5}), "logprobs"),
        (json!({"suffix": "</code>"}), "suffix"),
        (json!({"best_of": 2}), "best_of"),
    ] {
        let mut body = json!({"model": "calc", "prompt": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = post(&gw, &body);
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["param"], field);
        assert!(v["error"]["message"].as_str().unwrap().contains(field));
    }
    assert!(up.completions().is_empty());
}

#[test]
fn completion_hostile_bodies_are_clean_errors() {
    let up = FakeOpenAi::start();
    up.set_default(Reply::echo_user());
    let gw = TestGateway::start(&config(&up.url()));
    let send = |body: &[u8]| {
        request(
            gw.addr,
            "POST",
            "/v1/completions",
            &[("Content-Type", "application/json")],
            body,
        )
    };
    // Truncated, not JSON, wrong types, unknown model.
    for body in [
        &br#"{"model":"calc","prompt":"unterminated"#[..],
        b"\xff\xfe",
        br#"{"model":"calc","prompt":{"a":1}}"#,
        br#"{"model":"nope","prompt":"x"}"#,
    ] {
        let r = send(body);
        assert!(
            matches!(r.status, 400 | 404),
            "{}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert!(r.json()["error"]["message"].is_string());
    }
    // A huge non-ASCII prompt within the body limit reaches the model whole.
    let prompt = "日本語のテキスト ".repeat(20_000);
    let r = post(&gw, &json!({"model": "calc", "prompt": prompt}));
    assert_eq!(r.status, 200, "{}", &r.text()[..200.min(r.text().len())]);
    assert_eq!(
        r.json()["choices"][0]["text"],
        format!("You said: {prompt}")
    );
}

#[test]
fn openai_sdk_completions_create_stream_and_not() {
    let up = FakeOpenAi::start();
    up.set_default(Reply::echo_user());
    let gw = TestGateway::start(&config(&up.url()));
    let script = r#"
import sys
from openai import OpenAI
c = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=60)
r = c.completions.create(model="calc", prompt="héllo", max_tokens=20)
assert r.object == "text_completion", r
assert r.choices[0].text == "You said: héllo", r
parts = [ch.choices[0].text for ch in c.completions.create(model="calc", prompt="again", stream=True) if ch.choices]
assert "".join(parts) == "You said: again", parts
print("ok")
"#;
    let out = Command::new(peers::venv_python())
        .args(["-c", script, &gw.url("/v1")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn models_list_with_a_trailing_slash() {
    let gw = TestGateway::demo();
    let r = gw.get("/v1/models/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "list");
    assert_eq!(r.json()["data"][0]["id"], "demo");
}

#[test]
fn unknown_route_404_names_the_endpoints() {
    let gw = TestGateway::demo();
    let r = gw.post_json("/v1/embeddings", &json!({"model": "demo", "input": "x"}));
    assert_eq!(r.status, 404);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    for endpoint in ["/v1/chat/completions", "/v1/completions", "/v1/responses"] {
        assert!(msg.contains(endpoint), "{msg}");
    }
    assert_eq!(r.json()["error"]["code"], "unknown_route");
    assert!(
        !msg.contains("model '") && msg.starts_with("no route for POST /v1/embeddings"),
        "must not read as model-not-found: {msg}"
    );
}

#[test]
fn azure_style_api_key_header_is_a_key() {
    let yaml = r#"
backends:
  mock:
    kind: mock
assistants:
  - name: demo
    backend: mock
proxy_api_keys: ["az-secret"]
"#;
    let gw = TestGateway::start(yaml);
    let body = json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]});
    let send = |headers: &[(&str, &str)]| {
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(headers);
        request(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &h,
            body.to_string().as_bytes(),
        )
    };
    assert_eq!(send(&[("api-key", "az-secret")]).status, 200);
    assert_eq!(send(&[("api-key", "wrong")]).status, 401);
    assert_eq!(send(&[]).status, 401);
}

/// The venv of the heavier real clients (tests/peers/requirements-compat.txt).
pub fn compat_python() -> String {
    let p = peers::peers_dir().join("venv-compat/bin/python");
    assert!(
        p.exists(),
        "compat peers missing: run tests/peers/install.sh"
    );
    p.display().to_string()
}

/// Run one check of tests/sdk/legacy_clients.py against the gateway.
pub fn legacy_client(gw: &TestGateway, model: &str, check: &str) {
    let out = Command::new(compat_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/legacy_clients.py"
        ))
        .args([&gw.url("/v1"), model, check])
        // litellm: the bundled model cost map, no telemetry, nothing fetched at import.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{check}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn llamaindex_openai_like_defaults_use_the_completions_endpoint() {
    let up = FakeOpenAi::start();
    up.set_default(Reply::echo_user());
    let gw = TestGateway::start(&config(&up.url()));
    legacy_client(&gw, "calc", "llamaindex");
    assert_eq!(up.completions().len(), 2);
}

#[test]
fn litellm_text_completion_stream_and_not() {
    let up = FakeOpenAi::start();
    up.set_default(Reply::echo_user());
    let gw = TestGateway::start(&config(&up.url()));
    legacy_client(&gw, "calc", "litellm");
    assert_eq!(up.completions().len(), 2);
}

/// An endless body (chunked, never finished) is cut at `server.max_body_bytes` with a 413.
#[test]
fn completion_endless_body_is_cut_at_the_body_limit() {
    use std::io::{Read, Write};
    let up = FakeOpenAi::start();
    let yaml = config(&up.url()).replace(
        "mcp_servers:\n  demo:",
        "server:\n  max_body_bytes: 65536\nmcp_servers:\n  demo:",
    );
    let gw = TestGateway::start(&yaml);
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    s.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let chunk = format!("2000\r\n{}\r\n", "\u{e9}".repeat(4096));
    // At most 1 MiB, far past the limit; the server answers (and stops reading) long before.
    for _ in 0..128 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(up.completions().is_empty());
}
