//! The MCP client over legacy HTTP+SSE and streamable HTTP (and the 2026-07-28 era over stdio),
//! end to end through `Supervisor`: server-everything in `sse` and `streamableHttp` modes, the
//! Python `mcp` SDK server over stdio, sse and streamable-http, and the scripted fault server
//! `support/mcp_http_faults.py`.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use aiproxy::config::McpTransport;
use aiproxy::mcp::{CallResult, ClientOptions, Era, Error, ServerState, Supervisor};
use serde_json::{Value, json};

use crate::support::peers::{
    self, call, everything, free_port, http_faults, http_transport, python_server, server_config,
    sse_transport, text, tool_names,
};

fn kinds(r: &CallResult) -> Vec<String> {
    r.content
        .iter()
        .map(|c| c["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn server(name: &str, transport: McpTransport) -> Arc<Supervisor> {
    Supervisor::new(name, server_config(transport, 15_000, 15_000))
}

fn mcp_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/mcp")
}

fn sse_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/sse")
}

/// Start-up (connect, handshake, first listing) and the mean of 20 sequential calls, printed
/// for the record.
fn measure(s: &Supervisor, tool: &str, args: Value) {
    let t0 = Instant::now();
    s.tools().unwrap();
    let start = t0.elapsed();
    let t1 = Instant::now();
    for _ in 0..20 {
        call(s, tool, args.clone()).unwrap();
    }
    eprintln!(
        "{}: ready in {} ms, {tool} {} µs per call",
        s.name(),
        start.as_millis(),
        t1.elapsed().as_micros() / 20
    );
}

/// The same checks for server-everything over any transport.
fn exercise_everything(s: &Supervisor) {
    measure(s, "echo", json!({"message": "m"}));
    let tools = tool_names(s);
    for t in [
        "echo",
        "get-tiny-image",
        "get-structured-content",
        "get-resource-links",
        "get-resource-reference",
    ] {
        assert!(tools.iter().any(|n| n == t), "{t} missing from {tools:?}");
    }
    // Task-only tools are not offered (we do not support tasks).
    assert!(!tools.iter().any(|n| n == "simulate-research-query"));
    assert_eq!(
        text(&call(s, "echo", json!({"message": "hi there"})).unwrap()),
        "Echo: hi there"
    );
    let img = call(s, "get-tiny-image", json!({})).unwrap();
    assert!(kinds(&img).contains(&"image".to_string()), "{img:?}");
    let image = img.content.iter().find(|c| c["type"] == "image").unwrap();
    assert_eq!(image["mimeType"], "image/png");
    assert!(image["data"].as_str().unwrap().len() > 100);
    let structured = call(s, "get-structured-content", json!({"location": "New York"})).unwrap();
    assert!(structured.structured_content.as_ref().unwrap()["temperature"].is_number());
    let links = call(s, "get-resource-links", json!({"count": 2})).unwrap();
    assert_eq!(
        kinds(&links)
            .iter()
            .filter(|k| *k == "resource_link")
            .count(),
        2
    );
    let reference = call(
        s,
        "get-resource-reference",
        json!({"resourceType": "Text", "resourceId": 1}),
    )
    .unwrap();
    assert!(kinds(&reference).contains(&"resource".to_string()));
    let unknown = call(s, "no-such-tool", json!({})).unwrap();
    assert!(unknown.is_error);
    let st = s.status();
    assert_eq!(st.state, ServerState::Ready);
    assert_eq!(st.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(st.pid, None);
}

#[test]
fn everything_over_legacy_sse() {
    let port = free_port();
    let _peer = everything("sse", port);
    let s = server("everything-sse", sse_transport(sse_url(port)));
    exercise_everything(&s);
}

#[test]
fn everything_over_streamable_http() {
    let port = free_port();
    let _peer = everything("streamableHttp", port);
    let s = server("everything-http", http_transport(mcp_url(port), &[]));
    exercise_everything(&s);
    // Progress notifications on the reply stream are tolerated, and concurrent calls run
    // concurrently (each reply stream on its own thread).
    let t0 = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            thread::spawn(move || {
                call(
                    &s,
                    "trigger-long-running-operation",
                    json!({"duration": 1, "steps": 4}),
                )
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap().unwrap();
        assert!(!r.is_error, "{r:?}");
        assert!(text(&r).contains("completed"), "{}", text(&r));
    }
    let wall = t0.elapsed();
    eprintln!(
        "4 parallel 1 s operations over streamable HTTP: {} ms",
        wall.as_millis()
    );
    // One after another they take 4 s; the bound is twice the nominal 1 s plus 1 s.
    assert!(wall < Duration::from_secs(3), "{wall:?}");
}

/// The Python SDK server's tools, one per content kind.
fn exercise_python(s: &Supervisor, protocol: &str) {
    measure(s, "echo", json!({"text": "m"}));
    assert_eq!(
        tool_names(s),
        ["echo", "add", "image", "audio", "link", "fail", "slow"]
    );
    assert_eq!(s.status().protocol_version.as_deref(), Some(protocol));
    assert_eq!(
        text(&call(s, "echo", json!({"text": "héllo"})).unwrap()),
        "héllo"
    );
    let add = call(s, "add", json!({"a": 2, "b": 40})).unwrap();
    assert_eq!(text(&add), "42");
    assert_eq!(add.structured_content, Some(json!({"result": 42})));
    let img = call(s, "image", json!({})).unwrap();
    assert_eq!(kinds(&img), ["image"]);
    assert_eq!(img.content[0]["mimeType"], "image/png");
    let audio = call(s, "audio", json!({})).unwrap();
    assert_eq!(kinds(&audio), ["audio"]);
    assert_eq!(audio.content[0]["mimeType"], "audio/wav");
    let link = call(s, "link", json!({})).unwrap();
    assert_eq!(kinds(&link), ["resource_link", "resource"]);
    assert_eq!(link.content[0]["uri"], "file:///srv/readme.txt");
    assert_eq!(link.content[1]["resource"]["text"], "memo one");
    let fail = call(s, "fail", json!({"reason": "boom"})).unwrap();
    assert!(fail.is_error);
    assert!(text(&fail).contains("fail"), "{}", text(&fail));
    assert_eq!(
        text(&call(s, "slow", json!({"ms": 50})).unwrap()),
        "slept 50 ms"
    );
}

#[test]
fn python_sdk_over_stdio_speaks_the_stateless_revision() {
    let script = peers::support_script("py_mcp_server.py");
    let transport = McpTransport::Stdio {
        command: peers::venv_python(),
        args: vec![script, "stdio".into()],
        env: Default::default(),
        cwd: None,
        inherit_env: false,
    };
    let s = server("py-stdio", transport);
    exercise_python(&s, "2026-07-28");
    assert!(s.status().pid.is_some());
}

#[test]
fn python_sdk_over_stdio_legacy_when_asked() {
    let script = peers::support_script("py_mcp_server.py");
    let transport = McpTransport::Stdio {
        command: peers::venv_python(),
        args: vec![script, "stdio".into()],
        env: Default::default(),
        cwd: None,
        inherit_env: false,
    };
    let s = Supervisor::with_era(
        "py-stdio-legacy",
        server_config(transport, 15_000, 15_000),
        Era::Legacy,
    );
    exercise_python(&s, "2025-11-25");
}

#[test]
fn python_sdk_over_legacy_sse() {
    let port = free_port();
    let _peer = python_server("sse", port, &[]);
    let s = server("py-sse", sse_transport(sse_url(port)));
    exercise_python(&s, "2025-11-25");
}

#[test]
fn python_sdk_over_streamable_http_speaks_the_stateless_revision() {
    let port = free_port();
    let _peer = python_server("http", port, &[]);
    let s = server("py-http", http_transport(mcp_url(port), &[]));
    exercise_python(&s, "2026-07-28");
}

#[test]
fn python_sdk_over_streamable_http_with_json_replies_and_a_session() {
    let port = free_port();
    let _peer = python_server("http", port, &["json"]);
    let s = Supervisor::with_era(
        "py-http-json",
        server_config(http_transport(mcp_url(port), &[]), 15_000, 15_000),
        Era::Legacy,
    );
    exercise_python(&s, "2025-11-25");
}

#[test]
fn expired_session_404_is_reinitialized_and_the_call_retried() {
    let port = free_port();
    let mut peer = python_server("http", port, &[]);
    // Legacy era, so there is a session to lose (the SDK also speaks stateless 2026-07-28).
    let s = Supervisor::with_era(
        "py-expiry",
        server_config(http_transport(mcp_url(port), &[]), 15_000, 15_000),
        Era::Legacy,
    );
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "one"})).unwrap()),
        "one"
    );
    // Restarted under the proxy: the new process answers the old session id with 404
    // "Session not found", as the spec says.
    peer.kill();
    let _peer2 = python_server("http", port, &[]);
    let t0 = Instant::now();
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "two"})).unwrap()),
        "two"
    );
    eprintln!(
        "call across an expired session (404 → initialize → retry): {} ms",
        t0.elapsed().as_millis()
    );
    let st = s.status();
    assert_eq!(st.restarts, 1, "{st:?}");
    assert_eq!(st.state, ServerState::Ready);
}

#[test]
fn restarted_server_everything_400_session_is_recovered() {
    let port = free_port();
    let mut peer = everything("streamableHttp", port);
    let s = server("everything-restart", http_transport(mcp_url(port), &[]));
    assert_eq!(
        text(&call(&s, "echo", json!({"message": "before"})).unwrap()),
        "Echo: before"
    );
    // A call in flight when the server dies fails within a resumption attempt, never hangs.
    let in_flight = {
        let s = s.clone();
        thread::spawn(move || {
            let r = call(
                &s,
                "trigger-long-running-operation",
                json!({"duration": 10, "steps": 10}),
            );
            (r, Instant::now())
        })
    };
    // Let the call get under way (had it not, it would fail to start, not with `Closed`).
    thread::sleep(Duration::from_millis(1000));
    let killed_at = Instant::now();
    // Restart under the proxy: the new process knows no session and answers 400
    // "No valid session ID provided" (its quirk; the spec says 404).
    peer.kill();
    let (r, ended) = in_flight.join().unwrap();
    assert!(matches!(r, Err(Error::Closed(_))), "{r:?}");
    let after = ended.duration_since(killed_at);
    eprintln!(
        "in-flight call failed {} ms after the kill",
        after.as_millis()
    );
    assert!(after < Duration::from_secs(3), "{after:?}");
    let _peer2 = everything("streamableHttp", port);
    let t0 = Instant::now();
    assert_eq!(
        text(&call(&s, "echo", json!({"message": "after"})).unwrap()),
        "Echo: after"
    );
    eprintln!(
        "call across a server restart (400 → initialize → retry): {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(s.status().restarts, 1);
}

#[test]
fn legacy_sse_server_restart_is_recovered_after_backoff() {
    let port = free_port();
    let mut peer = everything("sse", port);
    let s = server("everything-sse-restart", sse_transport(sse_url(port)));
    assert_eq!(
        text(&call(&s, "echo", json!({"message": "a"})).unwrap()),
        "Echo: a"
    );
    // The stream is cut mid-call: the call fails at once, never hangs.
    let in_flight = {
        let s = s.clone();
        thread::spawn(move || {
            let r = call(
                &s,
                "trigger-long-running-operation",
                json!({"duration": 10, "steps": 10}),
            );
            (r, Instant::now())
        })
    };
    // Let the call get under way (had it not, it would fail to start, not with `Closed`).
    thread::sleep(Duration::from_millis(1000));
    let killed_at = Instant::now();
    peer.kill();
    let (r, ended) = in_flight.join().unwrap();
    assert!(matches!(r, Err(Error::Closed(_))), "{r:?}");
    let after = ended.duration_since(killed_at);
    eprintln!(
        "legacy SSE: in-flight call failed {} ms after the kill",
        after.as_millis()
    );
    assert!(after < Duration::from_secs(1), "{after:?}");
    // The stream ends with the process: the session is over, and with the server down the
    // restart fails fast (connection refused) and backs off.
    let t0 = Instant::now();
    let err = call(&s, "echo", json!({"message": "b"})).unwrap_err();
    assert!(matches!(err, Error::Start(_)), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(s.status().state, ServerState::Failed);
    let _peer2 = everything("sse", port);
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        text(&call(&s, "echo", json!({"message": "c"})).unwrap()),
        "Echo: c"
    );
    assert_eq!(s.status().restarts, 1);
}

fn faults_server(mode: &str, port: u16, startup_ms: u64, call_ms: u64) -> Arc<Supervisor> {
    Supervisor::new(
        mode,
        server_config(
            http_transport(
                mcp_url(port),
                &[("Authorization", "Bearer s3cret"), ("X-Extra", "1")],
            ),
            startup_ms,
            call_ms,
        ),
    )
}

/// The fault server's request log.
fn request_log(s: &Supervisor) -> Vec<Value> {
    let r = call(s, "log", json!({})).unwrap();
    serde_json::from_str(&text(&r)).unwrap()
}

#[test]
fn headers_session_and_version_are_sent_and_the_session_deleted() {
    let port = free_port();
    let _peer = http_faults("normal", port);
    let s = faults_server("headers", port, 10_000, 10_000);
    assert_eq!(text(&call(&s, "echo", json!({"text": "x"})).unwrap()), "x");
    let log = request_log(&s);
    // The era probe, then the handshake, then the listing and calls.
    let rpc: Vec<&str> = log.iter().filter_map(|e| e["rpc"].as_str()).collect();
    assert_eq!(
        &rpc[..5],
        [
            "server/discover",
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/call"
        ]
    );
    for e in &log {
        assert_eq!(e["authorization"], "Bearer s3cret", "{e}");
        assert_eq!(e["x-extra"], "1", "{e}");
    }
    let init = log.iter().find(|e| e["rpc"] == "initialize").unwrap();
    assert!(init.get("mcp-session-id").is_none() && init.get("mcp-protocol-version").is_none());
    assert_eq!(init["accept"], "application/json, text/event-stream");
    let discover = &log[0];
    assert_eq!(discover["mcp-protocol-version"], "2026-07-28");
    assert_eq!(discover["mcp-method"], "server/discover");
    for e in log
        .iter()
        .skip_while(|e| e["rpc"] != "notifications/initialized")
    {
        assert!(e["mcp-session-id"].is_string(), "{e}");
        assert_eq!(e["mcp-protocol-version"], "2025-11-25", "{e}");
    }
    // The standalone GET stream was asked for (this server has none: 405).
    assert!(log.iter().any(|e| e["http"] == "GET"));
    let sid = log.last().unwrap()["mcp-session-id"]
        .as_str()
        .unwrap()
        .to_string();
    s.stop();
    // Stopping ended the session with DELETE: a fresh client's probe shows it in the log.
    let s2 = faults_server("headers-2", port, 10_000, 10_000);
    let log = request_log(&s2);
    let delete = log
        .iter()
        .find(|e| e["http"] == "DELETE")
        .expect("no DELETE");
    assert_eq!(delete["mcp-session-id"], sid.as_str());
    assert_eq!(delete["authorization"], "Bearer s3cret");
}

#[test]
fn cut_reply_stream_is_resumed_after_the_retry_delay() {
    for mode in ["normal", "json"] {
        let port = free_port();
        let _peer = http_faults(mode, port);
        let s = faults_server(mode, port, 10_000, 10_000);
        s.tools().unwrap();
        if mode == "json" {
            // JSON replies: every other tool is fine; only `cut` streams.
            assert_eq!(text(&call(&s, "echo", json!({"text": "j"})).unwrap()), "j");
        }
        let t0 = Instant::now();
        let r = call(&s, "cut", json!({})).unwrap();
        let took = t0.elapsed();
        assert_eq!(text(&r), "resumed after the cut");
        eprintln!(
            "{mode}: cut stream resumed, call took {} ms (retry 300 ms)",
            took.as_millis()
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
        let log = request_log(&s);
        let resume = log
            .iter()
            .find(|e| e["http"] == "GET" && e.get("last-event-id").is_some())
            .expect("no resumption GET");
        assert!(resume["last-event-id"].as_str().unwrap().starts_with("p-"));
        assert!(resume["mcp-session-id"].is_string());
        assert_eq!(resume["authorization"], "Bearer s3cret");
    }
}

#[test]
fn cut_reply_stream_that_cannot_resume_fails_fast() {
    let port = free_port();
    let _peer = http_faults("no-resume", port);
    let s = faults_server("no-resume", port, 10_000, 10_000);
    s.tools().unwrap();
    for tool in ["cut", "cut_no_id"] {
        let t0 = Instant::now();
        let err = call(&s, tool, json!({})).unwrap_err();
        let took = t0.elapsed();
        eprintln!("{tool}: failed after {} ms: {err}", took.as_millis());
        assert!(matches!(err, Error::Closed(_)), "{err:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    // The session is still good.
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "ok"})).unwrap()),
        "ok"
    );
    assert_eq!(s.status().restarts, 0);
}

#[test]
fn stalled_reply_stream_times_out_and_is_cancelled() {
    let port = free_port();
    let _peer = http_faults("normal", port);
    let s = faults_server("stall", port, 10_000, 1_000);
    s.tools().unwrap();
    let t0 = Instant::now();
    assert_eq!(call(&s, "stall", json!({})), Err(Error::Timeout));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let log = request_log(&s);
    let cancelled = log
        .iter()
        .find(|e| e["rpc"] == "notifications/cancelled")
        .expect("no notifications/cancelled");
    assert!(cancelled["mcp-session-id"].is_string());
    // Other calls are unaffected while the stalled stream is still open.
    assert_eq!(text(&call(&s, "echo", json!({"text": "y"})).unwrap()), "y");
}

fn threads_of_this_process() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn comment_only_reply_streams_fail_at_the_call_timeout_and_release_their_thread() {
    let port = free_port();
    let _peer = http_faults("normal", port);
    let s = faults_server("comments", port, 10_000, 500);
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "warm"})).unwrap()),
        "warm"
    );
    let before = threads_of_this_process();
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let t0 = Instant::now();
        let r = call(&s, "comments", json!({}));
        let took = t0.elapsed();
        slowest = slowest.max(took);
        assert_eq!(r, Err(Error::Timeout), "call {i}");
        assert!(took < Duration::from_secs(2), "call {i}: {took:?}");
    }
    // The reader threads notice within a tick that nobody waits any more.
    let deadline = Instant::now() + Duration::from_secs(5);
    let active = loop {
        let n: u32 = text(&call(&s, "active", json!({})).unwrap())
            .parse()
            .unwrap();
        if n == 0 || Instant::now() > deadline {
            break n;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let after = threads_of_this_process();
    eprintln!(
        "30 comment-only calls: slowest {} ms (call_timeout 500 ms); threads {before} -> {after}; \
         server-side streams still open: {active}",
        slowest.as_millis()
    );
    assert_eq!(active, 0, "the client left comment-only streams open");
    assert!(after <= before + 3, "threads grew: {before} -> {after}");
    // Still usable, and its state says so truthfully.
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "ok"})).unwrap()),
        "ok"
    );
    assert_eq!(s.status().state, ServerState::Ready);
    assert_eq!(s.status().restarts, 0);
}

#[test]
fn url_userinfo_and_query_never_appear_in_errors_or_status() {
    // Nothing listens there: every attempt fails with a message that names the URL.
    let port = free_port();
    let base = format!("http://user:pw-Secret1@127.0.0.1:{port}");
    for transport in [
        http_transport(format!("{base}/mcp?token=q-Secret2"), &[]),
        sse_transport(format!("{base}/sse?token=q-Secret2")),
    ] {
        let s = Supervisor::new("leaky", server_config(transport, 1_000, 1_000));
        let err = s.tools().unwrap_err().to_string();
        let status = format!("{:?}", s.status());
        eprintln!("error: {err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        for leak in ["pw-Secret1", "q-Secret2", "user:"] {
            assert!(!err.contains(leak), "{leak} in {err}");
            assert!(!status.contains(leak), "{leak} in {status}");
        }
    }
}

#[test]
fn server_that_never_answers_initialize_fails_within_the_startup_timeout() {
    let port = free_port();
    let _peer = http_faults("never-init", port);
    let s = faults_server("never-init", port, 1_500, 5_000);
    let t0 = Instant::now();
    let err = s.tools().unwrap_err();
    let took = t0.elapsed();
    let Error::Start(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("initialize"), "{msg}");
    assert!(
        took >= Duration::from_millis(1450) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // Within the back-off, the error comes back at once.
    let t1 = Instant::now();
    assert!(matches!(s.tools(), Err(Error::Start(_))));
    // A new attempt would take the 1.5 s startup timeout.
    assert!(t1.elapsed() < Duration::from_secs(1), "{:?}", t1.elapsed());
}

#[test]
fn one_servers_failure_does_not_affect_another() {
    let port = free_port();
    let _peer = http_faults("normal", port);
    let good = faults_server("good", port, 5_000, 5_000);
    let dead_port = free_port();
    let bad = server("bad", http_transport(mcp_url(dead_port), &[]));
    let bad_sse = server("bad-sse", sse_transport(sse_url(dead_port)));
    let handles: Vec<_> = [bad, bad_sse]
        .into_iter()
        .map(|b| thread::spawn(move || (0..3).all(|_| b.tools().is_err())))
        .collect();
    for _ in 0..5 {
        assert_eq!(
            text(&call(&good, "echo", json!({"text": "z"})).unwrap()),
            "z"
        );
    }
    for h in handles {
        assert!(h.join().unwrap());
    }
    assert_eq!(good.status().restarts, 0);
}

#[test]
fn check_connect_lists_tools_for_every_transport() {
    let sse_port = free_port();
    let _sse = everything("sse", sse_port);
    let http_port = free_port();
    let _http = python_server("http", http_port, &[]);
    let dir = std::env::temp_dir().join(format!("aiproxy-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
mcp_servers:
  local:
    command: {exe}
    args: [demo-mcp]
  ev:
    transport: sse
    url: http://127.0.0.1:{sse_port}/sse
  py:
    transport: streamable-http
    url: http://127.0.0.1:{http_port}/mcp
    headers:
      Authorization: Bearer ${{PY_TOKEN}}
backends:
  mock: {{kind: mock}}
assistants:
  - name: all
    backend: mock
    model: mock
    mcp_servers: [local, ev, py]
"#,
            exe = env!("CARGO_BIN_EXE_aiproxy")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aiproxy"))
        .args(["check", "--connect", "--config"])
        .arg(&cfg)
        .env("PY_TOKEN", "tok-very-secret")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for tool in [
        "local__add",
        "ev__echo",
        "ev__get-tiny-image",
        "py__echo",
        "py__audio",
    ] {
        assert!(stdout.contains(tool), "{tool} missing:\n{stdout}");
    }
    // The header value is a secret: not in any log line, even at debug level.
    assert!(!stderr.contains("tok-very-secret") && !stdout.contains("tok-very-secret"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn silent_sessions_are_pinged_and_a_hung_one_is_replaced() {
    let transport = McpTransport::Stdio {
        command: env!("CARGO_BIN_EXE_aiproxy").into(),
        args: vec!["demo-mcp".into()],
        env: Default::default(),
        cwd: None,
        inherit_env: false,
    };
    let opts = ClientOptions {
        ping_after_idle: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    };
    let s = Supervisor::with_options("ping", server_config(transport, 10_000, 10_000), opts);
    assert_eq!(text(&call(&s, "echo", json!({"text": "a"})).unwrap()), "a");
    let pid = s.status().pid.unwrap();
    // Idle but healthy: the pings (one per 200 ms idle) are answered and the session kept.
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(text(&call(&s, "echo", json!({"text": "b"})).unwrap()), "b");
    assert_eq!(s.status().pid, Some(pid));
    // Hung (stopped): the ping goes unanswered, the child is replaced, the call succeeds.
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGSTOP);
    }
    thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    assert_eq!(text(&call(&s, "echo", json!({"text": "c"})).unwrap()), "c");
    eprintln!(
        "hung session detected by ping and replaced in {} ms",
        t0.elapsed().as_millis()
    );
    let st = s.status();
    assert_ne!(st.pid, Some(pid));
    assert_eq!(st.restarts, 1);
}

/// A raw HTTP server for one connection: answers the first request with an event-stream head
/// and `events`, then holds the connection open until `hold` has passed.
fn raw_event_stream(events: &'static str, hold: Duration) -> (u16, thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let h = thread::spawn(move || {
        let deadline = Instant::now() + hold;
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Err(_) => return,
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let _ = conn.write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n{events}")
                .as_bytes(),
        );
        let _ = conn.flush();
        thread::sleep(deadline.saturating_duration_since(Instant::now()));
    });
    (port, h)
}

#[test]
fn legacy_sse_endpoint_must_arrive_in_time_and_stay_on_the_origin() {
    // A stream that never names its endpoint: the start fails at the startup timeout.
    // The stream stays open well past the bound below, so only the timeout can end the start.
    let (port, _h) = raw_event_stream(": just a comment\n\n", Duration::from_secs(4));
    let s = Supervisor::new(
        "no-endpoint",
        server_config(sse_transport(sse_url(port)), 1_000, 5_000),
    );
    let t0 = Instant::now();
    let err = s.tools().unwrap_err();
    let took = t0.elapsed();
    assert!(
        matches!(&err, Error::Start(m) if m.contains("no endpoint")),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // An endpoint on another host would carry our configured headers there: refused.
    let (port, h) = raw_event_stream(
        "event: endpoint\ndata: http://evil.example:9/message?s=1\n\n",
        Duration::from_millis(500),
    );
    let s = Supervisor::new(
        "cross-origin",
        server_config(sse_transport(sse_url(port)), 5_000, 5_000),
    );
    let err = s.tools().unwrap_err();
    assert!(
        matches!(&err, Error::Start(m) if m.contains("another origin") && !m.contains("s=1")),
        "{err:?}"
    );
    h.join().unwrap();
}
