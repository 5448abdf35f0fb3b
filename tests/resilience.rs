//! Resilience of the whole gateway (issue #7): a burst of 500 mixed requests, 500 idle and
//! slowloris connections, upstream and MCP faults end to end, and hostile request bodies.
//! What `gateway.rs`, `gateway_upstream.rs`, `http_server.rs` and `mcp_stdio.rs` already
//! cover (each upstream status, truncated SSE, the MCP client's own fault handling, 300-socket
//! tests of the bare HTTP server) is not repeated here.
//!
//! Loopback only; every wait has a timeout. The load tests run aiproxy as a child process
//! (`ProcGateway`) so its memory and threads can be read from `/proc` without the test
//! process's own sockets and threads in the figures; they run one at a time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::{TestGateway, request, stream_text};
use crate::support::proc_gateway::ProcGateway;

/// Socket timeout of every client in this module.
const IO: Duration = Duration::from_secs(10);

fn upstream_config(url: &str, server: Value, timeout: &str) -> String {
    Config::new()
        .server(server)
        .demo_mcp()
        .openai("up", url, json!({"timeout": timeout}))
        .assistant(json!({"name": "plain", "backend": "up", "model": "m"}))
        .assistant(json!({"name": "calc", "backend": "up", "model": "m", "mcp_servers": ["demo"]}))
        .yaml()
}

fn ask(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

/// One request on its own connection; `(status, Retry-After, body)`; bounded by `timeout`.
fn exchange(addr: SocketAddr, body: &Value, timeout: Duration) -> (u16, Option<String>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    let body = body.to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let retry_after = head
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .map(String::from);
    (status, retry_after, rest.to_string())
}

// ------------------------------------------------------------------------------------ load

#[test]
fn five_hundred_mixed_requests_complete_or_get_503_and_memory_comes_back() {
    let up = FakeOpenAi::start();
    up.set_default(
        Reply::text("alpha beta gamma delta")
            .head_delay(Duration::from_millis(20))
            .chunk_delay(Duration::from_millis(5)),
    );
    // A small pool so that 500 at once overflow it: some are served, the rest shed.
    let gw = ProcGateway::start(&upstream_config(
        &up.url(),
        json!({"workers": 16, "max_in_flight": 64}),
        "10s",
    ));
    for i in 0..20 {
        let (status, _, _) = exchange(gw.addr, &ask("plain", "warm", i % 2 == 0), IO);
        assert_eq!(status, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let idle = gw.mem();

    let gate = Arc::new(Barrier::new(500));
    let addr = gw.addr;
    let clients: Vec<_> = (0..500)
        .map(|i| {
            let gate = Arc::clone(&gate);
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    gate.wait();
                    let stream = i % 2 == 0;
                    let (status, retry_after, body) =
                        exchange(addr, &ask("plain", "go", stream), Duration::from_secs(30));
                    match status {
                        200 if stream => {
                            assert!(
                                body.contains("data: [DONE]"),
                                "stream {i} incomplete: {body}"
                            );
                            assert!(body.contains("delta"), "{body}");
                        }
                        200 => assert!(
                            body.contains("\"alpha beta gamma delta\""),
                            "answer {i}: {body}"
                        ),
                        503 => {
                            assert_eq!(retry_after.as_deref(), Some("1"));
                            assert!(body.contains("overloaded"), "{body}");
                        }
                        other => panic!("request {i}: unexpected {other}: {body}"),
                    }
                    status
                })
                .unwrap()
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let served = statuses.iter().filter(|s| **s == 200).count();
    let shed = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(served + shed, 500);
    assert!(
        served >= 64,
        "at least a pool's worth served: {served} served, {shed} shed"
    );

    let mut gw = gw;
    assert!(gw.alive());
    assert_eq!(request(gw.addr, "GET", "/health", &[], b"").status, 200);
    assert_eq!(exchange(gw.addr, &ask("plain", "after", false), IO).0, 200);
    // Stream reader threads end and memory goes back near idle.
    let end = Instant::now() + Duration::from_secs(5);
    while gw.mem().threads > idle.threads + 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = gw.mem();
    assert!(
        after.threads <= idle.threads + 2,
        "threads {idle:?} → {after:?}"
    );
    assert!(
        after.rss_kb <= idle.rss_kb + 16 * 1024,
        "RSS did not come back near idle: {idle:?} → {after:?}"
    );
    eprintln!("500 requests: {served} served, {shed} shed; memory {idle:?} → {after:?}");
}

#[test]
fn five_hundred_idle_and_slowloris_connections_do_not_delay_a_completion() {
    let mut gw = ProcGateway::start(aiproxy::demo::CONFIG_YAML);
    let question =
        json!({"model": "demo", "messages": [{"role": "user", "content": "what is 2 + 3?"}]});
    // Warm: the demo MCP server starts on first use.
    assert_eq!(exchange(gw.addr, &question, IO).0, 200);

    // From two other addresses, each under `server.max_connections_per_ip` (256): this is
    // about many clients; one client over its cap is refused (http_server tests that).
    let (a, b) = ([127, 0, 0, 3].into(), [127, 0, 0, 4].into());
    let mut idle: Vec<TcpStream> = (0..250).map(|_| connect_from(a, gw.addr)).collect();
    let mut slow: Vec<TcpStream> = (0..250).map(|_| connect_from(b, gw.addr)).collect();
    for s in &mut slow {
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nX-Slow: ")
            .unwrap();
    }
    // Keep every slowloris head growing, a byte at a time, while the real client is served.
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let (round_tx, round_rx) = crossbeam_channel::bounded::<()>(1);
    let trickler = std::thread::spawn(move || {
        while stop_rx.recv_timeout(Duration::from_millis(100)).is_err() {
            for s in &mut slow {
                let _ = s.write_all(b"a");
            }
            let _ = round_tx.try_send(());
        }
        slow
    });
    // Serve only once the slowloris heads are growing.
    for _ in 0..2 {
        round_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    for _ in 0..3 {
        let t = Instant::now();
        let (status, _, body) = exchange(gw.addr, &question, IO);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains('5'), "{body}");
        // Nominally a few ms; served behind the slow heads it would wait out their timeouts.
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        let mut ask = question.clone();
        ask["stream"] = json!(true);
        let (status, _, body) = exchange(gw.addr, &ask, IO);
        assert!(status == 200 && body.contains("[DONE]"), "{status} {body}");
        // Nominally a few ms; served behind the slow heads it would wait out their timeouts.
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
    }
    stop_tx.send(()).unwrap();
    drop(trickler.join().unwrap());
    // The idle ones are still open (nothing timed them out early) and the server is alive.
    idle[0].set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(
        idle[0].read(&mut byte),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    ));
    idle.clear();
    assert!(gw.alive());
}

/// A client socket bound to `src` (any of 127.0.0.0/8 works on Linux), so one test can be
/// many clients.
fn connect_from(src: std::net::Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(dst) = addr else {
        panic!("IPv4 only")
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket owned by the TcpStream at once; bind/connect get valid
    // sockaddr_in structs of the stated length.
    let s = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let s = TcpStream::from_raw_fd(fd);
        let local = sockaddr(src, 0);
        let rc = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "bind {src}: {}", std::io::Error::last_os_error());
        let remote = sockaddr(*dst.ip(), dst.port());
        let rc = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        s
    };
    s.set_read_timeout(Some(IO)).unwrap();
    s.set_write_timeout(Some(IO)).unwrap();
    s
}

// --------------------------------------------------------------------------- upstream faults

#[test]
fn upstream_faults_mid_body_mid_stream_and_mid_loop_are_clean_errors() {
    let up = FakeOpenAi::start();
    let gw = TestGateway::start(&upstream_config(&up.url(), json!({}), "2s"));

    // A JSON answer cut in the middle: 502 saying so.
    up.push(Reply::text("a long enough answer to cut").close_after(1));
    let r = gw.chat(&ask("plain", "hi", false));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream")
    );

    // A stream that goes silent after its first delta: an error event at the backend
    // timeout, never a hang and never a `[DONE]`.
    up.push(Reply::deltas(&["first ", "second"]).hang_after(2));
    let t = Instant::now();
    let events = gw.stream(&ask("plain", "hi", true)).collect();
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(stream_text(&events), "first ");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{last}"
    );
    assert!(!events.iter().any(|e| e == "[DONE]"));

    // The upstream fails on the round after a tool call: the first round's text already went
    // out, so the stream ends with an error event; without streaming it is a 502.
    for stream in [true, false] {
        up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#).with_text("Adding."));
        up.push(Reply::error(500, "exploded on round two"));
        if stream {
            let events = gw.stream(&ask("calc", "add", true)).collect();
            assert_eq!(stream_text(&events), "Adding.");
            let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
            assert!(
                last["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("exploded"),
                "{last}"
            );
        } else {
            let r = gw.chat(&ask("calc", "add", false));
            assert_eq!(r.status, 502, "{}", r.text());
            assert!(r.text().contains("exploded"));
        }
        // The tool ran between the rounds: its result reached the failing round.
        let last = up.last_request().unwrap();
        let tool_msg = last.body["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            (tool_msg["role"].as_str(), tool_msg["content"].as_str()),
            (Some("tool"), Some("5"))
        );
    }
    assert_eq!(gw.get("/health").status, 200);
}

#[test]
fn ten_megabyte_upstream_answers_are_bounded() {
    const TEN_MB: usize = 10 * 1024 * 1024;
    let up = FakeOpenAi::start();
    let gw = TestGateway::start(&upstream_config(&up.url(), json!({}), "20s"));
    // Non-stream: within the 16 MiB answer cap, so it is delivered whole.
    up.push(Reply::huge(TEN_MB));
    let r = gw.chat(&ask("plain", "big", false));
    assert_eq!(r.status, 200);
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .len();
    assert_eq!(content, TEN_MB);
    // Stream: as one 10 MB SSE event it is over the 4 MiB event cap: a clear error, not a
    // 10 MB buffer per client.
    up.push(Reply::huge(TEN_MB));
    let r = gw.chat(&ask("plain", "big", true));
    assert_eq!(r.status, 502, "{}", &r.text()[..r.text().len().min(300)]);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large"),
        "{}",
        r.text()
    );
    // Stream: as 1 MB deltas it is forwarded as it comes, all of it.
    let piece = "y".repeat(1024 * 1024);
    up.push(Reply::deltas(&[piece.as_str(); 10]));
    let events = gw.stream(&ask("plain", "big", true)).collect();
    assert_eq!(stream_text(&events).len(), TEN_MB);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

// ------------------------------------------------------------------------------ MCP faults

fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn mcp_faults_become_tool_results_and_the_request_goes_on() {
    let script = format!("{}/tests/support/mcp_faults.py", env!("CARGO_MANIFEST_DIR"));
    let server = |mode: &str, arg: &str| {
        format!(
            "  {mode}:\n    command: {}\n    args: [{script}, {mode}{arg}]\n    call_timeout: 1s\n    startup_timeout: 10s\n",
            python()
        )
    };
    let up = FakeOpenAi::start();
    let yaml = format!(
        "mcp_servers:\n{}{}{}{}{}backends:\n  up: {{kind: openai, base_url: \"{}\", timeout: 10s}}\nassistants:\n  - {{name: faulty, backend: up, model: m, mcp_servers: [crash, hang, garbage, huge, flood]}}\n",
        server("crash", ""),
        server("hang", ""),
        server("garbage", ""),
        server("huge", ", 2000000"),
        server("flood", ", 5000"),
        up.url()
    );
    let gw = TestGateway::start(&yaml);
    up.push(Reply::tool_calls(&[
        ("crash__crash", "{}"),
        ("hang__hang", "{}"),
        ("garbage__echo", r#"{"text":"through garbage"}"#),
        ("huge__huge", "{}"),
        ("flood__echo", r#"{"text":"through flood"}"#),
    ]));
    up.push(Reply::text("all done"));
    let t = Instant::now();
    let r = gw.chat(&ask("faulty", "break things", false));
    assert_eq!(r.status, 200, "{}", r.text());
    // Only the server that died during its call is down; the others answered (or timed out).
    assert_eq!(r.header("X-Aiproxy-Degraded"), Some("crash"));
    assert_eq!(r.json()["choices"][0]["message"]["content"], "all done");
    // The hang costs one call_timeout (1 s; all calls of the turn run concurrently), plus the
    // start of five Python servers: well under the upstream's 10 s timeout, which is what a
    // hang that is never cut would cost.
    assert!(t.elapsed() < Duration::from_secs(9), "{:?}", t.elapsed());

    let second = &up.completions()[1];
    let msgs = second.body["messages"].as_array().unwrap();
    let results: Vec<&str> = msgs[msgs.len() - 5..]
        .iter()
        .map(|m| {
            assert_eq!(m["role"], "tool");
            m["content"].as_str().unwrap()
        })
        .collect();
    assert!(
        results[0].starts_with("[tool error]"),
        "crash: {}",
        results[0]
    );
    assert!(
        results[1].starts_with("[tool error]") && results[1].contains("timed out"),
        "hang: {}",
        results[1]
    );
    assert_eq!(results[2], "through garbage");
    assert!(
        results[3].len() < 70 * 1024 && results[3].contains("bytes omitted"),
        "huge output capped: {} bytes",
        results[3].len()
    );
    assert_eq!(results[4], "through flood");

    // The crashed server is started again for the next request; the hung one still answers.
    up.push(Reply::tool_calls(&[
        ("crash__echo", r#"{"text":"back again"}"#),
        ("hang__echo", r#"{"text":"still here"}"#),
    ]));
    up.push(Reply::text("fine"));
    let r = gw.chat(&ask("faulty", "again", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let last = up.last_request().unwrap();
    let msgs = last.body["messages"].as_array().unwrap();
    let tail: Vec<&str> = msgs[msgs.len() - 2..]
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(tail, ["back again", "still here"]);
}

// ------------------------------------------------------------------------------- bad input

fn post_raw(gw: &TestGateway, body: &[u8]) -> (u16, Value) {
    let r = request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        body,
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// A valid request with `pointer` (a JSON pointer) replaced by `value`.
fn with(pointer: &str, value: Value) -> Vec<u8> {
    let mut req = json!({"model": "plain", "stream": false, "stream_options": {"include_usage": true},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "n": 1,
        "messages": [
            {"role": "user", "content": "hi", "name": "u"},
            {"role": "assistant", "content": null,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]});
    *req.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = value;
    req.to_string().into_bytes()
}

#[test]
fn wrong_types_and_hostile_bodies_are_400s_with_a_message() {
    let up = FakeOpenAi::start();
    let gw = TestGateway::start(&upstream_config(&up.url(), json!({}), "5s"));
    // The unmodified request is fine (so each case below fails for its one change).
    up.push(Reply::text("fine"));
    let (status, v) = post_raw(&gw, &with("/n", json!(1)));
    assert_eq!(status, 200, "{v}");

    let wrong_types: Vec<(&str, Value)> = vec![
        ("/model", json!(5)),
        ("/model", json!(null)),
        ("/model", json!(["plain"])),
        ("/messages", json!({"role": "user"})),
        ("/messages", json!(null)),
        ("/messages", json!([])),
        ("/messages/0", json!("hi")),
        ("/messages/0", json!(null)),
        ("/messages/0/role", json!(3)),
        ("/messages/0/role", json!(null)),
        ("/messages/0/role", json!("")),
        ("/messages/0/role", json!("User")),
        ("/messages/0/role", json!("robot")),
        ("/messages/0/content", json!(7)),
        ("/messages/0/content", json!({"text": "hi"})),
        ("/messages/0/content", json!(true)),
        ("/messages/0/name", json!(1)),
        ("/messages/1/tool_calls", json!("f")),
        ("/messages/1/tool_calls", json!([1])),
        ("/messages/1/tool_calls/0/id", json!(9)),
        ("/messages/1/tool_calls/0/function", json!("f")),
        ("/messages/1/tool_calls/0/function/name", json!(null)),
        (
            "/messages/1/tool_calls/0/function/arguments",
            json!({"a": 1}),
        ),
        ("/messages/2/tool_call_id", json!(["c1"])),
        ("/stream", json!("yes")),
        ("/stream", json!(1)),
        ("/stream_options", json!("usage")),
        ("/stream_options/include_usage", json!("yes")),
        ("/tools", json!({"type": "function"})),
        ("/tools", json!("f")),
        ("/tools/0", json!(1)),
        ("/tools/0/type", json!("retrieval")),
        ("/tools/0/function", json!(null)),
        ("/tools/0/function/name", json!(5)),
        ("/tools/0/function/name", json!("")),
        ("/n", json!("one")),
        ("/n", json!(-1)),
        ("/n", json!(1.5)),
        ("/n", json!(2)),
    ];
    for (pointer, value) in wrong_types {
        let (status, v) = post_raw(&gw, &with(pointer, value.clone()));
        assert_eq!(status, 400, "{pointer} = {value}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.len() > 10,
            "{pointer} = {value}: unclear message {v}"
        );
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        // The message names the field (its top-level key at least).
        let key = pointer.split('/').nth(1).unwrap();
        assert!(message.contains(key), "{pointer} = {value}: {message}");
    }

    let deep_object = format!(
        r#"{{"model":"plain","messages":[{{"role":"user","content":"x"}}],"metadata":{}1{}}}"#,
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", Vec::new()),
        ("JSON null", b"null".to_vec()),
        ("a string", br#""hello""#.to_vec()),
        ("empty object", b"{}".to_vec()),
        (
            "trailing garbage",
            [with("/n", json!(1)), b"}}".to_vec()].concat(),
        ),
        (
            "invalid UTF-8 in a string",
            b"{\"model\":\"plain\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}"
                .to_vec(),
        ),
        (
            "lone surrogate escape",
            br#"{"model":"plain","messages":[{"role":"user","content":"\ud800"}]}"#.to_vec(),
        ),
        (
            "NUL outside strings",
            b"{\"model\":\"plain\",\x00\"messages\":[]}".to_vec(),
        ),
        ("deeply nested pass-through field", deep_object.into_bytes()),
        (
            "duplicate-free but huge number",
            br#"{"model":"plain","messages":[{"role":"user","content":"x"}],"n":1e999}"#.to_vec(),
        ),
    ];
    for (what, body) in hostile {
        let (status, v) = post_raw(&gw, &body);
        assert_eq!(status, 400, "{what}: {v}");
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| m.len() > 10),
            "{what}: {v}"
        );
    }
    assert_eq!(gw.get("/health").status, 200, "still serving");
    assert_eq!(
        up.completions().len(),
        1,
        "no bad request reached the upstream"
    );
}

#[test]
fn huge_messages_are_forwarded_whole_or_refused_cleanly() {
    let up = FakeOpenAi::start();
    let gw = TestGateway::start(&upstream_config(&up.url(), json!({}), "10s"));
    // 30 000 small messages (~1.3 MB): all of them reach the upstream, in order.
    let messages: Vec<Value> = (0..30_000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("m{i}")}))
        .collect();
    up.push(Reply::text("read them all"));
    let r = gw.chat(&json!({"model": "plain", "messages": messages}));
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.last_request().unwrap();
    let got = sent.body["messages"].as_array().unwrap();
    assert_eq!(got.len(), 30_000);
    assert_eq!(got[29_999]["content"], "m29999");
    // One 3 MB message, streamed back: intact.
    let big = "z".repeat(3 * 1024 * 1024);
    up.push(Reply::echo_user());
    let events = gw.stream(&ask("plain", &big, true)).collect();
    assert_eq!(stream_text(&events).len(), "You said: ".len() + big.len());
    // Over the body limit: 413, and the connection is not read to the end.
    let over = "z".repeat(5 * 1024 * 1024);
    let r = gw.chat(&ask("plain", &over, false));
    assert_eq!(r.status, 413);
    assert_eq!(gw.get("/health").status, 200);
}

// ---------------------------------------------------------------- hostile input (issue 11)

/// Send raw request bytes on a fresh connection; return what came back before the server
/// closed (or the read timed out). Never hangs: 5 s socket timeouts.
fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // One response is enough: stop at the end of its body.
                let text = String::from_utf8_lossy(&out);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|n| n.trim().parse::<usize>().ok());
                    if len.is_some_and(|n| body.len() >= n) {
                        return out;
                    }
                }
            }
        }
    }
}

/// Issue 11 (#1): `GET /aaaaa\xc3\xa9` (a multi-byte character across byte 7 of the target)
/// panicked the poller thread and the port stopped answering for good. Request targets with
/// non-ASCII and invalid UTF-8 bytes of many shapes, each at every offset around byte 7, must
/// each get an answer, and the gateway must go on serving.
#[test]
fn non_ascii_request_targets_never_stop_the_server() {
    let mut gw = ProcGateway::start(aiproxy::demo::CONFIG_YAML);
    let chars: [&[u8]; 6] = [
        "\u{e9}".as_bytes(),
        "\u{20ac}".as_bytes(),
        "\u{1f600}".as_bytes(),
        b"\xff",
        b"\xc3",
        b"\xe2\x82",
    ];
    let mut targets: Vec<Vec<u8>> = Vec::new();
    for c in chars {
        for n in 0..10 {
            for prefix in [
                &b"/"[..],
                b"http://",
                b"HTTPS://",
                b"/v1/models?q=",
                b"/admin/",
            ] {
                let mut t = prefix.to_vec();
                t.extend(std::iter::repeat_n(b'a', n));
                t.extend_from_slice(c);
                t.extend_from_slice(b"/x?y=");
                t.extend_from_slice(c);
                targets.push(t);
            }
        }
        targets.push(c.to_vec());
    }
    let mut answered = 0;
    for t in &targets {
        let mut raw = b"GET ".to_vec();
        raw.extend_from_slice(t);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let reply = raw_exchange(gw.addr, &raw);
        // An answer (any status) or a close: never silence, which was the dead poller.
        if reply.starts_with(b"HTTP/1.1 ") {
            answered += 1;
        }
        assert!(
            gw.alive(),
            "the gateway exited on {:?}",
            String::from_utf8_lossy(t)
        );
    }
    assert_eq!(answered, targets.len(), "every request got a response");
    let health = request(gw.addr, "GET", "/health", &[], b"");
    assert_eq!(
        health.status,
        200,
        "still serving after {} targets",
        targets.len()
    );
    let r = request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        ask("demo", "what is 2 + 3?", false).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Issue 11 (#1): with systemd's `NOTIFY_SOCKET` (here an abstract socket) and
/// `WATCHDOG_USEC`, `serve` says `READY=1` once it listens, then `WATCHDOG=1` from the poller
/// loop at half the watchdog interval, and `STOPPING=1` on SIGTERM.
#[test]
fn systemd_notify_ready_watchdog_and_stopping() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let name = format!("aiproxy-test-notify-{}", std::process::id());
    let sock =
        UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let gw = ProcGateway::start_with_env(
        aiproxy::demo::CONFIG_YAML,
        &[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    assert_eq!(next(), "READY=1");
    let t = Instant::now();
    for _ in 0..4 {
        assert_eq!(next(), "WATCHDOG=1");
    }
    // 4 pings at 200 ms intervals (the first may come at once); generous on a loaded machine.
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Pings go on while the gateway serves.
    assert_eq!(request(gw.addr, "GET", "/health", &[], b"").status, 200);
    drop(gw); // SIGTERM
    let mut rest = Vec::new();
    loop {
        let m = next();
        if m == "STOPPING=1" {
            break;
        }
        assert_eq!(m, "WATCHDOG=1", "after {rest:?}");
        rest.push(m);
    }
}

/// Issue 11 (#3): a client that sends its request and then half-closes its socket
/// (`shutdown(Write)`, as `nc -N` and some proxies do) is not gone: a slow tool-using request
/// runs to the end and the answer arrives. Before, the FIN counted as a disconnect and the
/// request was cancelled.
#[test]
fn a_half_closed_client_still_gets_its_slow_answer() {
    let gw = TestGateway::demo();
    for stream in [false, true] {
        let body = ask("demo", "sleep 1200", stream).to_string();
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.set_read_timeout(Some(IO)).unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let t = Instant::now();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200 "),
            "stream={stream}: {reply}"
        );
        let finished = if stream {
            // The text comes in many small deltas; the stream must have run to its end.
            reply.contains("running tools: demo__sleep") && reply.contains("data: [DONE]")
        } else {
            reply.contains("slept 1200 ms")
        };
        assert!(finished, "stream={stream}: {reply}");
        assert!(
            t.elapsed() >= Duration::from_millis(1100),
            "the tool really ran"
        );
    }
    assert_eq!(gw.get("/health").status, 200);
}
