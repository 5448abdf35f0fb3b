//! End-to-end through the gateway: HTTP server + routes + agent loop + mock backend + a real
//! stdio MCP server (the built-in demo server, spawned from the built binary).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::{TestGateway, request, stream_text};

fn ask(text: &str) -> Value {
    json!({"model": "demo", "messages": [{"role": "user", "content": text}]})
}

fn ask_stream(text: &str) -> Value {
    json!({"model": "demo", "stream": true, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": text}]})
}

/// A config with one mock assistant on the demo MCP server, tunable timeouts.
fn demo_config(call_timeout: &str, extra_server_yaml: &str) -> String {
    format!(
        r#"
mcp_servers:
  demo:
    command: ${{AIPROXY_EXE}}
    args: [demo-mcp]
    call_timeout: {call_timeout}
{extra_server_yaml}
backends:
  mock: {{kind: mock}}
assistants:
  - name: demo
    backend: mock
    model: mock
    mcp_servers: [demo]
"#
    )
}

#[test]
fn demo_answers_with_a_real_tool_call() {
    let gw = TestGateway::demo();
    let r = gw.chat(&ask("what is 2 + 3?"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "demo");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains('5'), "{content}");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(r.header("X-Request-Id").is_some());
}

#[test]
fn stream_and_non_stream_give_the_same_text() {
    let gw = TestGateway::demo();
    let plain = gw.chat(&ask("what is 2 + 3?")).json();
    let plain_text = plain["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();

    let client = gw.stream(&ask_stream("what is 2 + 3?"));
    assert_eq!(client.status, 200);
    assert_eq!(client.header("Content-Type"), Some("text/event-stream"));
    let events = client.collect();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!(c["id"], id, "one completion id");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "demo");
        assert!(c["created"].is_u64());
        if let Some(choices) = c["choices"].as_array().filter(|a| !a.is_empty()) {
            assert_eq!(choices[0]["index"], 0);
            assert!(choices[0]["delta"].is_object());
            assert!(choices[0].get("finish_reason").is_some());
            assert!(
                choices[0]["delta"].get("tool_calls").is_none(),
                "MCP tool calls never shown"
            );
        }
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(
        finishes,
        [&json!("stop")],
        "exactly one finish reason, no intermediate ones"
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"]["total_tokens"],
        plain["usage"]["total_tokens"]
    );
    assert_eq!(stream_text(&events), plain_text);
}

#[test]
fn models_are_the_assistants() {
    let gw = TestGateway::demo();
    let v = gw.get("/v1/models").json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "demo");
    assert_eq!(v["data"][0]["owned_by"], "aiproxy");
    assert!(
        v["data"][0].get("backend").is_none(),
        "no internal topology"
    );
    assert_eq!(gw.get("/v1/models/demo").json()["id"], "demo");
    let r = gw.get("/v1/models/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert_eq!(gw.get("/health").json(), json!({"status": "ok"}));
}

#[test]
fn bad_requests_get_openai_shaped_errors() {
    let gw = TestGateway::demo();
    let cases: Vec<(&[u8], u16)> = vec![
        (b"{not json", 400),
        (b"[1,2]", 400),
        (b"\xff\xfe", 400),
        (br#"{"model":"demo"}"#, 400),
        (br#"{"model":"demo","messages":"hi"}"#, 400),
        (
            br#"{"model":"demo","messages":[{"role":"wizard","content":"x"}]}"#,
            400,
        ),
        (
            br#"{"model":"demo","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
            400,
        ),
        (
            br#"{"model":"demo","messages":[{"role":"user","content":"x"}],"n":3}"#,
            400,
        ),
        (
            br#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
            404,
        ),
    ];
    for (body, status) in cases {
        let r = request(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            body,
        );
        assert_eq!(
            r.status,
            status,
            "{} → {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        let e = r.json();
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{e}"
        );
        assert!(e["error"]["type"].is_string());
        assert!(e["error"].get("param").is_some() && e["error"].get("code").is_some());
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        deep.as_bytes(),
    );
    assert_eq!(r.status, 400, "deeply nested JSON is refused, not a crash");
    let big = vec![b'x'; 5 * 1024 * 1024];
    let r = request(gw.addr, "POST", "/v1/chat/completions", &[], &big);
    assert_eq!(r.status, 413);
    assert_eq!(gw.get("/health").status, 200, "still serving");
}

#[test]
fn four_parallel_sleeps_in_one_turn_take_about_one_second() {
    let gw = TestGateway::start(&demo_config("30s", ""));
    // Start the demo MCP server first: its start-up is not what is measured.
    assert_eq!(gw.chat(&ask("what is 2 + 3?")).status, 200);
    let t = Instant::now();
    let r = gw.chat(&ask("sleep 1000 x4"));
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    // One after another they take 4 s; in parallel about 1 s (bound: twice that plus 1 s).
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(content.matches("slept 1000 ms").count(), 4, "{content}");
}

/// A lone slow tool call runs on the request's worker; its waits call back, so the stream
/// still gets its keep-alive comment (every 5 s of silence) while it runs, then the answer.
#[test]
fn a_lone_slow_tool_call_keeps_the_stream_alive() {
    let gw = TestGateway::start(&demo_config("30s", ""));
    let mut s = gw.stream(&ask_stream("sleep 6000"));
    let mut keep_alive = None;
    let mut data = Vec::new();
    while let Some((block, at)) = s.next_block() {
        if block.starts_with(": keep-alive") {
            keep_alive.get_or_insert(at);
        } else if let Some(d) = block.strip_prefix("data: ") {
            data.push(d.to_string());
        }
    }
    let at = keep_alive.expect("a keep-alive comment while the tool ran");
    assert!(
        at > Duration::from_secs(4) && at < Duration::from_secs(6),
        "{at:?}"
    );
    assert!(stream_text(&data).contains("slept 6000 ms"), "{data:?}");
}

#[test]
fn a_hanging_tool_becomes_a_tool_error_after_call_timeout() {
    let gw = TestGateway::start(&demo_config("1s", ""));
    let t = Instant::now();
    let r = gw.chat(&ask("sleep 10000"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        content.contains("failed") && content.contains("timed out"),
        "{content}"
    );
}

/// A server that dies during a tool call (up when the request started) is named in
/// `X-Aiproxy-Degraded` of a non-stream answer, chat and Responses alike, after the servers
/// known down at the start; a stream names only those known at the start.
#[test]
fn a_server_that_dies_during_a_call_is_named_in_the_degraded_header() {
    let script = format!("{}/tests/support/mcp_faults.py", env!("CARGO_MANIFEST_DIR"));
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let up = FakeOpenAi::start();
    let yaml = format!(
        "mcp_servers:\n  faulty:\n    command: {python}\n    args: [{script}, crash]\n    \
         startup_timeout: 10s\n  broken:\n    command: /nonexistent/mcp-server\n    \
         startup_timeout: 2s\nbackends:\n  up: {{kind: openai, base_url: \"{}\", timeout: 10s}}\n\
         assistants:\n  - {{name: a, backend: up, model: m, mcp_servers: [faulty, broken]}}\n",
        up.url()
    );
    let gw = TestGateway::start(&yaml);
    let crash_round = || {
        up.push(Reply::tool_call("faulty__crash", "{}"));
        up.push(Reply::text("done"));
    };
    let last_tool_text = || {
        let last = up.last_request().unwrap();
        let msgs = last.body["messages"].as_array().unwrap().clone();
        msgs.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string()
    };

    crash_round();
    let r = gw.chat(&json!({"model": "a", "messages": [{"role": "user", "content": "crash"}]}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        last_tool_text(),
        "[tool error] server 'faulty' stopped (exit status 3)"
    );
    assert_eq!(r.header("X-Aiproxy-Degraded"), Some("broken,faulty"));

    // Started again for the next request, which crashes it again: the Responses API too.
    crash_round();
    let r = gw.post_json(
        "/v1/responses",
        &json!({"model": "a", "input": "crash again"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "completed", "{}", r.text());
    assert_eq!(r.header("X-Aiproxy-Degraded"), Some("broken,faulty"));

    // A call that works leaves the server out.
    up.push(Reply::tool_call("faulty__echo", r#"{"text":"fine"}"#));
    up.push(Reply::text("done"));
    let r = gw.chat(&json!({"model": "a", "messages": [{"role": "user", "content": "echo"}]}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(last_tool_text(), "fine");
    assert_eq!(r.header("X-Aiproxy-Degraded"), Some("broken"));

    // A stream's head carries what was known when it started.
    crash_round();
    let s = gw.stream(&json!({"model": "a", "stream": true,
        "messages": [{"role": "user", "content": "crash in a stream"}]}));
    assert_eq!(s.header("X-Aiproxy-Degraded"), Some("broken"));
    assert!(stream_text(&s.collect()).contains("done"));
}

#[test]
fn a_server_that_cannot_start_degrades_the_request() {
    let extra = "  broken:\n    command: /nonexistent/mcp-server\n    startup_timeout: 2s\n";
    let yaml =
        demo_config("30s", extra).replace("mcp_servers: [demo]", "mcp_servers: [demo, broken]");
    let gw = TestGateway::start(&yaml);
    let r = gw.chat(&ask("what is 2 + 3?"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Aiproxy-Degraded"), Some("broken"));
    assert!(
        r.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains('5')
    );
}

/// Pids of live processes whose environment holds `marker`.
fn pids_with_marker(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_killed_mcp_child_is_restarted_on_the_next_request() {
    let marker = format!("AIPROXY_TEST_MARKER=restart-{}", std::process::id());
    let yaml = demo_config("30s", "").replace(
        "    call_timeout: 30s\n",
        &format!(
            "    call_timeout: 30s\n    env: {{AIPROXY_TEST_MARKER: \"{}\"}}\n",
            &marker[20..]
        ),
    );
    let gw = TestGateway::start(&yaml);
    assert!(gw.chat(&ask("what is 2 + 3?")).text().contains('5'));
    let pids = pids_with_marker(&marker);
    assert_eq!(pids.len(), 1, "one demo server child: {pids:?}");
    // SAFETY: kill(2) takes no pointers; the pid is a process this test started.
    unsafe {
        libc::kill(pids[0] as i32, libc::SIGKILL);
    }
    crate::support::wait::until(Duration::from_secs(10), "the killed child is gone", || {
        !pids_with_marker(&marker).contains(&pids[0])
    });
    let r = gw.chat(&ask("what is 20 + 22?"));
    assert_eq!(r.status, 200);
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.contains("42"), "{content}");
    let after = pids_with_marker(&marker);
    assert_eq!(after.len(), 1);
    assert_ne!(after, pids, "a new child");
    drop(gw);
    crate::support::wait::until(
        Duration::from_secs(5),
        "no child left after shutdown",
        || pids_with_marker(&marker).is_empty(),
    );
}
