//! The gateway against the in-tree fake OpenAI upstream: the tool loop on a real backend,
//! streaming timing, client disconnects, and every upstream failure mapped per docs/api.md#errors.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::fake_openai::{FakeOpenAi, Reply, Trickle};
use crate::support::gateway::{TestGateway, stream_text};

fn config(upstream: &str, max_iter: u32, timeout: &str) -> String {
    Config::new()
        .demo_mcp()
        .openai(
            "up",
            upstream,
            json!({"api_key": "sk-upstream", "timeout": timeout}),
        )
        .assistant(json!({
            "name": "calc", "backend": "up", "model": "gpt-test",
            "system_prompt": "You add numbers.", "mcp_servers": ["demo"],
            "max_tool_iterations": max_iter, "temperature": 0.1,
            "extra_body": {"custom_flag": true},
        }))
        .yaml()
}

fn ask(text: &str, stream: bool) -> Value {
    json!({"model": "calc", "stream": stream, "stream_options": {"include_usage": true}, "seed": 7,
           "messages": [{"role": "user", "content": text}]})
}

#[test]
fn tool_loop_on_an_openai_upstream() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#).with_text("Adding."));
    up.push(Reply::text("The answer is 5."));
    let gw = TestGateway::start(&config(&up.url(), 8, "30s"));
    let r = gw.chat(&ask("what is 2 + 3?", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Adding.\n\nThe answer is 5."
    );
    assert_eq!(
        v["usage"]["prompt_tokens"], 20,
        "usage summed over both rounds"
    );

    let reqs = up.completions();
    assert_eq!(reqs.len(), 2);
    let first = &reqs[0].body;
    assert_eq!(first["model"], "gpt-test");
    assert_eq!(first["messages"][0]["role"], "system");
    assert_eq!(first["temperature"], 0.1);
    assert_eq!(first["seed"], 7, "unknown client parameters pass through");
    assert_eq!(first["custom_flag"], true, "extra_body merged");
    assert_eq!(reqs[0].header("Authorization"), Some("Bearer sk-upstream"));
    assert!(reqs[0].tool_names().contains(&"demo__add".to_string()));
    let second = &reqs[1].body["messages"];
    let tool_msg = second.as_array().unwrap().last().unwrap();
    assert_eq!(tool_msg["role"], "tool");
    assert_eq!(tool_msg["content"], "5");
    assert_eq!(tool_msg["tool_call_id"], second[2]["tool_calls"][0]["id"]);
}

#[test]
fn final_round_offers_no_tools() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("demo__add", r#"{"a":1,"b":1}"#));
    up.push(Reply::text("Done."));
    let gw = TestGateway::start(&config(&up.url(), 1, "30s"));
    let r = gw.chat(&ask("1+1", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let reqs = up.completions();
    assert!(!reqs[0].tool_names().is_empty());
    assert!(reqs[1].body.get("tools").is_none(), "{}", reqs[1].body);
}

/// Whether a chunk's data carries a non-empty content delta.
fn carries_content(data: &str) -> bool {
    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    v["choices"][0]["delta"]["content"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
}

#[test]
fn stream_deltas_arrive_one_by_one() {
    let up = FakeOpenAi::start();
    up.push(
        Reply::deltas(&["one ", "two ", "three ", "four"]).chunk_delay(Duration::from_millis(150)),
    );
    let gw = TestGateway::start(&config(&up.url(), 8, "30s"));
    let mut client = gw.stream(&ask("count", true));
    assert_eq!(client.status, 200);
    let mut times = Vec::new();
    let mut events = Vec::new();
    while let Some((d, t)) = client.next_data() {
        if carries_content(&d) {
            times.push(t);
        }
        events.push(d);
    }
    assert_eq!(stream_text(&events), "one two three four");
    assert_eq!(times.len(), 4);
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(80),
            "deltas were batched: {times:?}"
        );
    }
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], 15);
}

#[test]
fn deltas_that_arrive_together_leave_together() {
    let up = FakeOpenAi::start();
    up.push(Reply::deltas(&["one ", "two ", "three ", "four"]).in_one_write());
    let gw = TestGateway::start(&config(&up.url(), 8, "30s"));
    let mut client = gw.stream(&ask("count", true));
    assert_eq!(client.status, 200);
    let mut events = Vec::new();
    let mut chunk_of_content = Vec::new();
    while let Some((d, _)) = client.next_data() {
        if carries_content(&d) {
            chunk_of_content.push(client.chunks_read);
        }
        events.push(d);
    }
    assert_eq!(stream_text(&events), "one two three four");
    assert_eq!(
        chunk_of_content,
        [1, 1, 1, 1],
        "one write for the four deltas"
    );
    // The role and the deltas, then the finish, usage and [DONE] with the end of the body.
    assert_eq!(client.chunks_read, 2, "{events:?}");
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["total_tokens"], 15);
}

#[test]
fn client_disconnect_closes_the_upstream_connection() {
    let up = FakeOpenAi::start();
    let words: Vec<String> = (0..100).map(|i| format!("w{i} ")).collect();
    up.push(Reply::deltas(&words).chunk_delay(Duration::from_millis(100)));
    let gw = TestGateway::start(&config(&up.url(), 8, "30s"));
    let mut client = gw.stream(&ask("talk", true));
    client.next_data().unwrap();
    client.next_data().unwrap();
    assert_eq!(up.open_connections(), 1);
    let sock = client.into_stream();
    sock.shutdown(std::net::Shutdown::Both).unwrap();
    drop(sock);
    assert!(
        up.wait_open_connections(0, Duration::from_secs(2)),
        "upstream still open after 2 s"
    );
    assert_eq!(gw.get("/health").status, 200);
}

#[test]
fn upstream_failures_map_to_openai_errors() {
    let up = FakeOpenAi::start();
    // A generous timeout: the fake builds its 20 MB answer slowly in a debug build.
    let gw = TestGateway::start(&config(&up.url(), 8, "20s"));
    let cases: Vec<(Reply, u16, Option<&str>)> = vec![
        (
            Reply::error(429, "slow down").retry_after("7"),
            429,
            Some("7"),
        ),
        (Reply::error(500, "boom"), 502, None),
        (Reply::error(401, "bad key"), 502, None),
        (Reply::error(400, "bad param"), 400, None),
        (Reply::error(503, "overloaded"), 503, None),
        (Reply::invalid_json(), 502, None),
        (Reply::huge(20 * 1024 * 1024), 502, None),
    ];
    for stream in [false, true] {
        for (reply, status, retry_after) in &cases {
            up.push(reply.clone());
            let r = gw.chat(&ask("hi", stream));
            assert_eq!(r.status, *status, "stream={stream} {reply:?}: {}", r.text());
            let e = r.json();
            assert!(
                e["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            assert!(!r.text().contains("sk-upstream"), "no secret in errors");
            assert_eq!(r.header("Retry-After"), *retry_after);
        }
    }
    let gw = TestGateway::start(&config(&up.url(), 8, "1s"));
    for stream in [false, true] {
        up.push(Reply::hang());
        let t = std::time::Instant::now();
        let r = gw.chat(&ask("hi", stream));
        assert_eq!(r.status, 504, "a hung upstream is a timeout: {}", r.text());
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}

#[test]
fn unreachable_upstream_is_502() {
    let port = crate::support::peers::free_port();
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}/v1"), 8, "2s"));
    let r = gw.chat(&ask("hi", false));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.header("Content-Type")
    );
    // OpenAI's error shape: only `error`, with message, type, param and code.
    let body = r.json();
    assert_eq!(
        body.as_object().map(|o| o.keys().collect::<Vec<_>>()),
        Some(vec![&"error".to_string()]),
        "{body}"
    );
    let e = &body["error"];
    let mut keys: Vec<&String> = e
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(keys, ["code", "message", "param", "type"], "{e}");
    assert_eq!(e["type"], "upstream_error", "{e}");
    assert!(e["code"].is_null() || e["code"].is_string(), "{e}");
    assert!(e["param"].is_null(), "{e}");
    // Says what failed, in words a client can show.
    let message = e["message"].as_str().unwrap_or_else(|| panic!("{e}"));
    assert!(
        message.contains("upstream") && message.to_lowercase().contains("refused"),
        "{message}"
    );
}

#[test]
fn a_failure_after_the_first_byte_is_an_error_event() {
    let up = FakeOpenAi::start();
    up.push(Reply::deltas(&["a ", "b ", "c"]).error_after(2, "upstream exploded", json!(null)));
    let gw = TestGateway::start(&config(&up.url(), 8, "5s"));
    let client = gw.stream(&ask("go", true));
    assert_eq!(client.status, 200);
    let events = client.collect();
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exploded"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "no [DONE] after an error"
    );
    let truncated = FakeOpenAi::start();
    truncated.push(Reply::deltas(&["a ", "b ", "c"]).close_after(2));
    let gw = TestGateway::start(&config(&truncated.url(), 8, "5s"));
    let events = gw.stream(&ask("go", true)).collect();
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last.get("error").is_some(),
        "truncated upstream stream is an error, not a silent stop: {events:?}"
    );
}

#[test]
fn slow_tool_rounds_send_keepalive_comments() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("demo__sleep", r#"{"ms":1200}"#));
    up.push(Reply::text("rested"));
    let gw = TestGateway::start(&config(&up.url(), 8, "30s"));
    let mut client = gw.stream(&ask("rest", true));
    let mut comments = 0;
    let mut text = String::new();
    while let Some((block, _)) = client.next_block() {
        if block.starts_with(':') {
            comments += 1;
        } else if let Some(v) = block
            .strip_prefix("data: ")
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
        {
            text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        }
    }
    assert!(comments >= 1, "a comment when the tool round starts");
    assert_eq!(text, "rested");
}

/// The calc config with a short `server.request_timeout` (the backend's own timeout stays long,
/// so only the request deadline can end a trickling answer).
fn config_with_deadline(upstream: &str, request_timeout: &str) -> String {
    format!(
        "server:\n  request_timeout: {request_timeout}\n{}",
        config(upstream, 8, "30s")
    )
}

/// The error object of an answer: a plain JSON error, or the last event of a stream that had
/// already started.
fn error_of(r: &crate::support::gateway::Response) -> Value {
    let text = r.text();
    if r.status != 200 {
        return r.json()["error"].clone();
    }
    let last = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap_or_else(|| panic!("no events: {text}"));
    serde_json::from_str::<Value>(last).expect("last event is JSON")["error"].clone()
}

#[test]
fn trickling_upstream_is_cut_at_the_request_timeout() {
    let up = FakeOpenAi::start();
    let gw = TestGateway::start(&config_with_deadline(&up.url(), "2s"));
    for what in [Trickle::Comments, Trickle::EmptyDeltas] {
        for stream in [false, true] {
            up.push(Reply::trickle(what));
            let t = Instant::now();
            let r = gw.chat(&ask("hi", stream));
            let took = t.elapsed();
            let error = error_of(&r);
            eprintln!(
                "{what:?} stream={stream}: answered after {} ms (request_timeout 2000 ms)",
                took.as_millis()
            );
            // A stream that had sent nothing yet is answered with a plain 504 too.
            assert!(
                r.status == 504 || (stream && r.status == 200),
                "{what:?} {stream}: {}",
                r.status
            );
            assert_eq!(error["type"], "timeout_error", "{what:?} {stream}: {error}");
            assert!(
                took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
                "{what:?} stream={stream}: {took:?}"
            );
            // The upstream connection was closed, not left to trickle on.
            assert!(
                up.wait_open_connections(0, Duration::from_secs(3)),
                "{what:?} stream={stream}: upstream connection still open"
            );
        }
    }
    assert_eq!(gw.get("/health").status, 200);
}

#[test]
fn request_timeout_while_a_tool_runs_is_504() {
    let up = FakeOpenAi::start();
    let gw = TestGateway::start(&config_with_deadline(&up.url(), "1s"));
    for stream in [false, true] {
        up.push(Reply::tool_call("demo__sleep", r#"{"ms":5000}"#));
        let t = Instant::now();
        let r = gw.chat(&ask("rest", stream));
        let took = t.elapsed();
        // Streams had started (a keep-alive at the tool round): the error is the last event.
        assert_eq!(r.status, if stream { 200 } else { 504 }, "{}", r.text());
        let error = error_of(&r);
        eprintln!(
            "slow tool stream={stream}: answered after {} ms (request_timeout 1000 ms)",
            took.as_millis()
        );
        assert_eq!(error["type"], "timeout_error", "{error}");
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_millis(4500),
            "{took:?}"
        );
    }
}

#[test]
fn upstream_credentials_never_leave_the_process_even_at_trace() {
    const KEY: &str = "sk-upstream-Zq81TraceKey";
    let up = FakeOpenAi::start();
    up.push(Reply::error(
        401,
        &format!("Incorrect API key provided: Bearer {KEY}. You can find your API key at …"),
    ));
    up.push(Reply::text("fine"));
    let yaml = format!(
        "backends:\n  up:\n    kind: openai\n    base_url: {}\n    api_key: {KEY}\n    timeout: 10s\n\
         assistants:\n  - name: calc\n    backend: up\n    model: gpt-test\n",
        up.url()
    );
    let dir = std::env::temp_dir().join(format!("aiproxy-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cfg, log) = (dir.join("config.yaml"), dir.join("stderr.log"));
    std::fs::write(&cfg, yaml).unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aiproxy"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", &addr.to_string()])
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let ready = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < ready, "aiproxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let chat = |stream: bool| {
        let body = ask("hi", stream).to_string();
        crate::support::gateway::request(
            addr,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    let refused = chat(false);
    let ok = chat(false);
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(refused.status, 502, "{}", refused.text());
    let e = refused.json();
    assert_eq!(
        e["error"]["message"],
        "upstream returned 401: upstream rejected the gateway's credentials"
    );
    assert_eq!(e["error"]["code"], "upstream_auth_failed");
    assert_eq!(ok.status, 200, "{}", ok.text());
    for leak in [KEY, "Zq81TraceKey"] {
        assert!(!refused.text().contains(leak), "key in the client's error");
        assert!(!stderr.contains(leak), "key in the log:\n{stderr}");
    }
    // The upstream's text is logged, scrubbed; trace logging was really on; and the HTTP
    // client crates, whose trace output dumps request heads, said nothing above info.
    assert!(
        stderr.contains("upstream refused the gateway's credentials (HTTP 401): Incorrect API key provided: Bearer ***"),
        "{stderr}"
    );
    assert!(stderr.contains("DEBUG"), "RUST_LOG=trace had no effect");
    for noisy in ["DEBUG ureq", "TRACE ureq", "DEBUG rustls", "TRACE rustls"] {
        assert!(!stderr.contains(noisy), "{noisy} in the log:\n{stderr}");
    }
    assert!(
        !stderr
            .to_ascii_lowercase()
            .contains("authorization: bearer")
    );
}
