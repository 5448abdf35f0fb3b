//! `GET /metrics` on the real binary: guarded like the admin API, Prometheus text, and the
//! numbers follow what was actually served (requests, rounds, upstream and tool calls, MCP
//! state, in-flight, shed).

use std::time::{Duration, Instant};

use serde_json::json;

use super::proc::{TempDir, serve, serve_cmd, wait_for};
use crate::support::gateway::{Response, SseClient, request};

const CONFIG: &str = r#"
server:
  workers: 4
  max_in_flight: 2
mcp_servers:
  demo:
    command: ${AIPROXY_EXE}
    args: [demo-mcp]
backends:
  mock: {kind: mock}
assistants:
  - name: demo
    backend: mock
    model: mock
    mcp_servers: [demo]
"#;

const KEY: &str = "metrics-test-admin-key";

fn scrape(addr: std::net::SocketAddr) -> (Response, String) {
    let auth = format!("Bearer {KEY}");
    let r = request(addr, "GET", "/metrics", &[("Authorization", &auth)], b"");
    let text = r.text();
    (r, text)
}

/// The value of the sample `series` (name plus labels, exactly as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn metrics_follow_what_was_served() {
    let dir = TempDir::new("metrics");
    let config = dir.write("config.yaml", CONFIG);
    let mut cmd = serve_cmd(dir.path(), &["--config", config.to_str().unwrap()]);
    cmd.env("ADMIN_API_KEY", KEY);
    let (_proc, addr) = serve(cmd, Duration::from_secs(20));

    // Guarded like the admin API.
    let denied = request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(denied.status, 401, "{}", denied.text());
    let wrong = request(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);

    let (r, text) = scrape(addr);
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    assert_eq!(must(&text, "aiproxy_mcp_server_up{server=\"demo\"}"), 0.0);
    assert_eq!(
        value(
            &text,
            "aiproxy_requests_total{assistant=\"demo\",status=\"200\"}"
        ),
        None
    );

    let chat = |content: &str, model: &str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": content}]});
        request(
            addr,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let ok = chat("what is 2 + 3?", "demo");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().contains('5'));
    assert_eq!(chat("hi", "nope").status, 404);
    assert_eq!(request(addr, "GET", "/health", &[], b"").status, 200);

    // One stream in flight while we look.
    let stream_body = json!({"model": "demo", "stream": true,
        "messages": [{"role": "user", "content": "sleep 1500"}]});
    let mut a = SseClient::open(addr, &stream_body);
    a.next_data().expect("first chunk");
    let (_, text) = scrape(addr);
    assert!(
        must(&text, "aiproxy_in_flight_requests") >= 1.0,
        "the stream is in flight:\n{text}"
    );
    // A second stream fills max_in_flight (2): the next chat request is shed with 503, and
    // readiness says so, while liveness (its own lane) still answers 200.
    let mut b = SseClient::open(addr, &stream_body);
    b.next_data().expect("first chunk");
    assert_eq!(chat("hi", "demo").status, 503);
    assert_eq!(request(addr, "GET", "/ready", &[], b"").status, 503);
    assert_eq!(request(addr, "GET", "/health", &[], b"").status, 200);
    for s in [a, b] {
        let events = s.collect();
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }

    // A stream's numbers are recorded when its handler returns, just after `[DONE]` left.
    let text = wait_for(
        Duration::from_secs(10),
        "the streams to be recorded",
        || {
            let (_, text) = scrape(addr);
            let done = value(
                &text,
                "aiproxy_requests_total{assistant=\"demo\",status=\"200\"}",
            );
            (done == Some(3.0)).then_some(text)
        },
    );
    let m = |s: &str| must(&text, s);
    assert_eq!(
        m("aiproxy_http_requests_total{route=\"chat\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        m("aiproxy_http_requests_total{route=\"chat\",status=\"404\"}"),
        1.0
    );
    // `/health` twice; `/ready` (counted as a probe) once, refusing while saturated.
    assert_eq!(
        m("aiproxy_http_requests_total{route=\"health\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        m("aiproxy_http_requests_total{route=\"health\",status=\"503\"}"),
        1.0
    );
    assert_eq!(
        m("aiproxy_http_requests_total{route=\"metrics\",status=\"401\"}"),
        2.0
    );
    assert!(m("aiproxy_http_requests_total{route=\"metrics\",status=\"200\"}") >= 2.0);
    assert_eq!(
        m("aiproxy_requests_total{assistant=\"demo\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        m("aiproxy_request_duration_seconds_count{assistant=\"demo\"}"),
        3.0
    );
    assert!(
        m("aiproxy_request_duration_seconds_sum{assistant=\"demo\"}") >= 3.0,
        "two streams slept 1.5 s each"
    );
    // Every request took two rounds: the tool call, then the answer.
    assert_eq!(m("aiproxy_loop_iterations_count{assistant=\"demo\"}"), 3.0);
    assert_eq!(m("aiproxy_loop_iterations_sum{assistant=\"demo\"}"), 6.0);
    assert_eq!(
        m("aiproxy_loop_iterations_bucket{assistant=\"demo\",le=\"1\"}"),
        0.0
    );
    assert_eq!(
        m("aiproxy_loop_iterations_bucket{assistant=\"demo\",le=\"2\"}"),
        3.0
    );
    assert_eq!(m("aiproxy_upstream_requests_total{backend=\"mock\"}"), 6.0);
    assert_eq!(
        value(
            &text,
            "aiproxy_upstream_errors_total{backend=\"mock\",kind=\"status\"}"
        ),
        None
    );
    assert_eq!(
        m("aiproxy_tool_calls_total{tool=\"demo__add\",outcome=\"ok\"}"),
        1.0
    );
    assert_eq!(
        m("aiproxy_tool_calls_total{tool=\"demo__sleep\",outcome=\"ok\"}"),
        2.0
    );
    assert!(m("aiproxy_tool_call_duration_seconds_sum{tool=\"demo__sleep\"}") >= 3.0);
    assert_eq!(
        m("aiproxy_tool_call_duration_seconds_bucket{tool=\"demo__sleep\",le=\"1\"}"),
        0.0
    );
    assert_eq!(m("aiproxy_mcp_server_up{server=\"demo\"}"), 1.0);
    assert_eq!(m("aiproxy_mcp_server_tools{server=\"demo\"}"), 4.0);
    assert_eq!(m("aiproxy_mcp_server_restarts_total{server=\"demo\"}"), 0.0);
    assert!(m("aiproxy_shed_requests_total") >= 1.0);
    assert!(m("aiproxy_open_connections") >= 1.0);
    let build = format!(
        "aiproxy_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(m(&build), 1.0);
}

/// Close with a reset (SO_LINGER 0), which the gateway notices without writing.
fn reset(s: std::net::TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid, correctly sized linger struct on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// A client that leaves mid-run is an outcome, not an error status: the access line says
/// `status=client_gone` and the metrics count it under the documented `status="499"` label,
/// streaming or not. (Before, a fake 499 travelled inside the error and the log said 499.)
/// The tool call it leaves (a lone call, run on the request's worker) is cancelled at once:
/// the request ends seconds before the 20 s call would have.
#[test]
fn a_departed_client_is_logged_as_gone_and_counted_as_499() {
    let dir = TempDir::new("metrics-gone");
    let config = dir.write("config.yaml", CONFIG);
    let mut cmd = serve_cmd(dir.path(), &["--config", config.to_str().unwrap()]);
    cmd.env("ADMIN_API_KEY", KEY);
    let (mut proc, addr) = serve(cmd, Duration::from_secs(20));
    let access_line = |l: &str| l.contains("POST /v1/chat/completions assistant=demo");
    let upstream_calls = || {
        let (_, text) = scrape(addr);
        value(&text, "aiproxy_upstream_requests_total{backend=\"mock\"}").unwrap_or(0.0)
    };

    // Streaming: the tool call is announced, then the client hangs up while it runs.
    let body = json!({"model": "demo", "stream": true,
        "messages": [{"role": "user", "content": "sleep 20000"}]});
    let mut stream = SseClient::open(addr, &body);
    assert_eq!(stream.status, 200);
    while let Some((block, _)) = stream.next_block() {
        if block.starts_with(": running tools") {
            break;
        }
        assert!(
            !block.contains("[DONE]"),
            "the stream ended before the tool call"
        );
    }
    let left = Instant::now();
    reset(stream.into_stream());
    let line = proc.wait_line(Duration::from_secs(20), access_line);
    assert!(line.contains(" status=client_gone "), "{line}");
    assert!(
        left.elapsed() < Duration::from_secs(8),
        "{:?}",
        left.elapsed()
    );

    // Not streaming: once the first round is done (the tool is running), the client hangs up.
    let before = upstream_calls();
    let body = json!({"model": "demo",
        "messages": [{"role": "user", "content": "sleep 20000"}]})
    .to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut s, head.as_bytes()).unwrap();
    wait_for(Duration::from_secs(10), "the first round", || {
        (upstream_calls() > before).then_some(())
    });
    let left = Instant::now();
    reset(s);
    let line = proc.wait_line(Duration::from_secs(20), access_line);
    assert!(line.contains(" status=client_gone "), "{line}");
    assert!(
        left.elapsed() < Duration::from_secs(8),
        "{:?}",
        left.elapsed()
    );

    let (_, text) = scrape(addr);
    let m = |s: &str| must(&text, s);
    assert_eq!(
        m("aiproxy_requests_total{assistant=\"demo\",status=\"499\"}"),
        2.0,
        "{text}"
    );
    assert_eq!(
        m("aiproxy_http_requests_total{route=\"chat\",status=\"499\"}"),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "aiproxy_http_requests_total{route=\"chat\",status=\"500\"}"
        ),
        None,
        "a departed client is not a server error"
    );
}
