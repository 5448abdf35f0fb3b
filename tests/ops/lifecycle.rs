//! Process lifecycle of `aiproxy serve` (docs/cli.md, docs/operations.md#lifecycle-and-signals): ready at once with MCP servers started
//! lazily; SIGTERM stops accepting, lets a stream in flight finish, stops the MCP children
//! (grandchildren included) and exits 0; a listen failure is one line on stderr and exit 1.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use super::proc::{Proc, TempDir, children_of, exe, group_members, serve, serve_cmd, wait_for};
use crate::support::gateway::{SseClient, stream_text};

/// An MCP server started through a shell that leaves a grandchild behind (as `npx` / `uvx`
/// launchers do), then becomes the demo server.
const CONFIG: &str = r#"
server:
  drain_timeout: 20s
mcp_servers:
  tools:
    transport: stdio
    command: /bin/sh
    args: ["-c", "sleep 60 </dev/null >/dev/null 2>&1 & exec \"$0\" demo-mcp", "${AIPROXY_EXE}"]
backends:
  mock: {kind: mock}
assistants:
  - name: demo
    backend: mock
    model: mock
    mcp_servers: [tools]
"#;

#[test]
fn sigterm_drains_a_stream_in_flight_and_leaves_no_child() {
    let dir = TempDir::new("drain");
    let config = dir.write("config.yaml", CONFIG);
    let started = Instant::now();
    let (mut proc, addr) = serve(
        serve_cmd(dir.path(), &["--config", config.to_str().unwrap()]),
        Duration::from_secs(20),
    );
    let pid = proc.pid();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ready took {:?}",
        started.elapsed()
    );
    assert!(
        children_of(pid).is_empty(),
        "MCP servers start lazily, not before the first request"
    );

    let body = json!({"model": "demo", "stream": true,
        "messages": [{"role": "user", "content": "sleep 2500"}]});
    let mut stream = SseClient::open(addr, &body);
    assert_eq!(stream.status, 200);
    let (first, _) = stream.next_data().expect("first chunk");
    assert!(first.contains("\"role\":\"assistant\""), "{first}");
    // The tool call is running: the MCP child and its grandchild exist.
    let child = wait_for(Duration::from_secs(20), "the MCP child", || {
        children_of(pid).into_iter().next()
    });
    let pgrp = child.pid;
    wait_for(Duration::from_secs(10), "the grandchild", || {
        (group_members(pgrp).len() >= 2).then_some(())
    });

    let sent_term = Instant::now();
    proc.signal(libc::SIGTERM);
    // New connections are refused from now on.
    wait_for(Duration::from_secs(5), "the listener to close", || {
        TcpStream::connect(addr).is_err().then_some(())
    });

    let events = stream.collect();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.contains("\"error\"")),
        "{events:?}"
    );
    let text = stream_text(&events);
    assert!(
        text.contains("sleep"),
        "the answer after the tool round: {text:?}"
    );

    let status = proc.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "stderr:\n{}",
        proc.stderr.join("\n")
    );
    assert!(
        sent_term.elapsed() < Duration::from_secs(15),
        "exit took {:?}",
        sent_term.elapsed()
    );
    let left = group_members(pgrp);
    assert!(left.is_empty(), "MCP processes left behind: {left:?}");
    let log = proc.stderr.join("\n");
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        proc.stderr
            .iter()
            .any(|l| l.contains("POST /v1/chat/completions") && l.contains("status=200")),
        "{log}"
    );
}

#[test]
fn sigint_on_an_idle_server_exits_zero_at_once() {
    let dir = TempDir::new("sigint");
    let (mut proc, _addr) = serve(serve_cmd(dir.path(), &[]), Duration::from_secs(20));
    let t = Instant::now();
    proc.signal(libc::SIGINT);
    let status = proc.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn listen_failure_is_one_line_and_exit_1() {
    let blocker = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let dir = TempDir::new("listen");
    let mut cmd = std::process::Command::new(exe());
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("CONFIG_PATH")
        .env_remove("AIPROXY_LISTEN");
    let mut proc = Proc::spawn(cmd);
    let status = proc.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    let lines: Vec<&String> = proc
        .stderr
        .iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {lines:?}");
    let line = lines[0];
    assert!(
        line.contains(&format!("cannot listen on 127.0.0.1:{port}")) && line.contains("in use"),
        "{line}"
    );
    assert!(proc.stdout.is_empty(), "{:?}", proc.stdout);
    drop(blocker);
}
