//! Issue 15 regressions at the client level, against the Python SDK server
//! `support/py_mcp_points.py` (and server-everything where it shows the point): oversized
//! replies, cancellation per transport, stale tool lists, blob resources.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use aiproxy::config::McpTransport;
use aiproxy::mcp::{Error, Supervisor};
use serde_json::json;

use crate::support::peers::{
    self, Peer, call, free_port, http_transport, server_config, sse_transport, text,
};

const MIB: usize = 1024 * 1024;

fn script() -> String {
    peers::support_script("py_mcp_points.py")
}

fn stdio_transport(env: &[(&str, &str)]) -> McpTransport {
    McpTransport::Stdio {
        command: peers::venv_python(),
        args: vec![script(), "stdio".into()],
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), aiproxy::secret::Secret::new(*v)))
            .collect(),
        cwd: None,
        inherit_env: false,
    }
}

/// The points server over HTTP (`sse`, or `http` with options) on a fresh port.
fn remote_peer(mode: &str, opts: &[&str], env: &[(&str, String)]) -> Peer {
    let port = free_port();
    let script = script();
    let port_s = port.to_string();
    let mut args = vec![script.as_str(), mode, port_s.as_str()];
    args.extend_from_slice(opts);
    Peer::spawn(&peers::venv_python(), &args, env, port)
}

fn supervisor(name: &str, transport: McpTransport, call_ms: u64) -> Arc<Supervisor> {
    Supervisor::new(name, server_config(transport, 20_000, call_ms))
}

/// A reply over 16 MiB fails its own call with a clear error; a call running beside it on
/// the same session completes, and the session is not restarted.
fn oversized_reply_fails_only_its_call(s: &Arc<Supervisor>) {
    s.tools().unwrap();
    let s2 = Arc::clone(s);
    let beside = thread::spawn(move || call(&s2, "slow", json!({"ms": 2500})));
    thread::sleep(Duration::from_millis(300));
    let err = call(s, "huge", json!({"size": 17 * MIB})).unwrap_err();
    assert_eq!(err, Error::TooLarge(16 * MIB), "{}", s.name());
    let beside = beside.join().unwrap().unwrap();
    assert_eq!(text(&beside), "slept 2500 ms");
    assert_eq!(
        text(&call(s, "echo", json!({"text": "still here"})).unwrap()),
        "still here"
    );
    assert_eq!(s.status().restarts, 0);
}

#[test]
fn oversized_reply_over_stdio_fails_only_its_call() {
    let s = supervisor("big-stdio", stdio_transport(&[]), 60_000);
    oversized_reply_fails_only_its_call(&s);
}

#[test]
fn oversized_reply_over_legacy_sse_fails_only_its_call() {
    let peer = remote_peer("sse", &[], &[]);
    let url = format!("http://127.0.0.1:{}/sse", peer.port);
    let s = supervisor("big-sse", sse_transport(url), 60_000);
    oversized_reply_fails_only_its_call(&s);
}

#[test]
fn oversized_reply_over_streamable_http_fails_only_its_call() {
    let peer = remote_peer("http", &[], &[]);
    let url = format!("http://127.0.0.1:{}/mcp", peer.port);
    let s = supervisor("big-http", http_transport(url, &[]), 60_000);
    oversized_reply_fails_only_its_call(&s);
}

/// Wait until `file` has a line `want`, up to `limit`.
fn wait_mark(file: &std::path::Path, want: &str, limit: Duration) -> Option<Duration> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().any(|l| l == want) {
            return Some(t0.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

fn mark_file(name: &str) -> std::path::PathBuf {
    let f = std::env::temp_dir().join(format!("aiproxy-marks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&f);
    f
}

/// A cancelled call and a timed-out call both reach the server at once: its handler is
/// cancelled within 2 s of the caller giving up (the 10 s sleep never completes).
fn cancellation_reaches_the_server(s: &Arc<Supervisor>, marks: &std::path::Path) {
    s.tools().unwrap();
    let cancel = aiproxy::cancel::Cancel::new();
    let c2 = cancel.clone();
    let s2 = Arc::clone(s);
    let call = thread::spawn(move || s2.call_tool("slow", json!({"ms": 10_000, "tag": "c"}), &c2));
    assert!(wait_mark(marks, "start c", Duration::from_secs(10)).is_some());
    cancel.cancel();
    assert_eq!(call.join().unwrap(), Err(Error::Cancelled));
    let took = wait_mark(marks, "cancelled c", Duration::from_secs(5));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(2)),
        "{}: not cancelled: {took:?}",
        s.name()
    );

    // The call timeout (3 s in these tests) cancels the same way.
    let t0 = std::time::Instant::now();
    let err = s.call_tool(
        "slow",
        json!({"ms": 10_000, "tag": "t"}),
        &aiproxy::cancel::Cancel::new(),
    );
    assert_eq!(err, Err(Error::Timeout));
    let took = wait_mark(marks, "cancelled t", Duration::from_secs(5));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(2)),
        "{}: not cancelled after the timeout: {took:?}",
        s.name()
    );
    assert!(t0.elapsed() < Duration::from_secs(6));
    assert!(!std::fs::read_to_string(marks).unwrap().contains("done"));
    // The session is still usable.
    assert_eq!(text(&call_ok(s, "echo", json!({"text": "ok"}))), "ok");
}

fn call_ok(s: &Supervisor, tool: &str, args: serde_json::Value) -> aiproxy::mcp::CallResult {
    call(s, tool, args).unwrap()
}

#[test]
fn cancellation_reaches_a_stateless_streamable_http_server() {
    let marks = mark_file("http-modern");
    let peer = remote_peer("http", &[], &[("MARK_FILE", marks.display().to_string())]);
    let url = format!("http://127.0.0.1:{}/mcp", peer.port);
    let s = supervisor("cancel-http", http_transport(url, &[]), 3000);
    cancellation_reaches_the_server(&s, &marks);
    assert_eq!(s.status().protocol_version.as_deref(), Some("2026-07-28"));
}

#[test]
fn cancellation_reaches_a_legacy_streamable_http_server() {
    let marks = mark_file("http-legacy");
    let peer = remote_peer("http", &[], &[("MARK_FILE", marks.display().to_string())]);
    let url = format!("http://127.0.0.1:{}/mcp", peer.port);
    let s = Supervisor::with_era(
        "cancel-http-legacy",
        server_config(http_transport(url, &[]), 20_000, 3000),
        aiproxy::mcp::Era::Legacy,
    );
    cancellation_reaches_the_server(&s, &marks);
}

#[test]
fn cancellation_reaches_a_stdio_server() {
    let marks = mark_file("stdio");
    let m = marks.display().to_string();
    let s = supervisor("cancel-stdio", stdio_transport(&[("MARK_FILE", &m)]), 3000);
    cancellation_reaches_the_server(&s, &marks);
}

#[test]
fn a_stateless_server_restarted_with_new_tools_is_relisted_on_tool_not_found() {
    let port = free_port();
    let script = script();
    let port_s = port.to_string();
    let args = [script.as_str(), "http", port_s.as_str(), "stateless"];
    let python = peers::venv_python();
    let mut v1 = Peer::spawn(&python, &args, &[("VARIANT", "v1".into())], port);
    let url = format!("http://127.0.0.1:{port}/mcp");
    let s = supervisor("stale", http_transport(url, &[]), 10_000);
    assert!(peers::tool_names(&s).contains(&"old_tool".to_string()));
    assert_eq!(s.status().protocol_version.as_deref(), Some("2026-07-28"));
    v1.kill();
    let _v2 = Peer::spawn(&python, &args, &[("VARIANT", "v2".into())], port);
    // The cached list still names old_tool; the server no longer has it.
    let r = call(&s, "old_tool", json!({})).unwrap();
    assert!(r.is_error, "{r:?}");
    assert!(text(&r).contains("Unknown tool"), "{r:?}");
    // Listed again at once, not after the 60 s cache.
    let names = peers::tool_names(&s);
    assert!(names.contains(&"new_tool".to_string()), "{names:?}");
    assert!(!names.contains(&"old_tool".to_string()), "{names:?}");
    assert_eq!(
        text(&call(&s, "new_tool", json!({})).unwrap()),
        "new tool here"
    );
}

fn everything_yaml() -> String {
    format!(
        "mcp_servers:\n  everything:\n    command: {}\n    args: [\"{}\", stdio]\n    startup_timeout: 20s\n\
         backends:\n  mock: {{kind: mock}}\n\
         assistants:\n  - {{name: a, backend: mock, mcp_servers: [everything]}}\n",
        peers::node(),
        peers::everything_js()
    )
}

#[test]
fn admin_tools_are_the_servers_objects_unchanged_with_aiproxys_fields_beside() {
    let gw = crate::support::gateway::TestGateway::start(&everything_yaml());
    let r = gw.admin("GET", "/admin/mcp/everything/tools", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let tools = v["tools"].as_array().unwrap();
    let find = |name: &str| {
        tools
            .iter()
            .find(|t| t["tool"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {v}"))
            .clone()
    };
    // As the server sent it: inputSchema (not renamed), title, annotations, outputSchema.
    let structured = find("get-structured-content");
    let tool = &structured["tool"];
    assert!(tool["inputSchema"].is_object(), "{tool}");
    assert!(tool["outputSchema"].is_object(), "{tool}");
    assert!(tool["title"].is_string(), "{tool}");
    assert!(tool["annotations"].is_object(), "{tool}");
    assert!(tool.get("input_schema").is_none());
    assert_eq!(
        structured["aiproxy"],
        json!({"exposed_name": "everything__get-structured-content", "offered": true, "reason": null})
    );
    // A task-only tool is listed, marked as not offered, with the reason.
    let task = find("simulate-research-query");
    assert_eq!(
        task["tool"]["execution"]["taskSupport"], "required",
        "{task}"
    );
    assert_eq!(task["aiproxy"]["offered"], false);
    assert!(
        task["aiproxy"]["reason"].as_str().unwrap().contains("task"),
        "{task}"
    );
    // Unknown, non-ASCII and huge names are refused, not looked up.
    let huge = format!("/admin/mcp/{}/tools", "x".repeat(100_000));
    for path in [
        "/admin/mcp/nosuch/tools",
        "/admin/mcp/%C3%A9t%C3%A9/tools",
        huge.as_str(),
    ] {
        let r = gw.admin("GET", path, &[], b"");
        assert!(
            matches!(r.status, 400 | 404 | 414 | 431),
            "{path}: {}",
            r.status
        );
    }
}

#[test]
fn check_connect_names_the_tools_it_does_not_offer() {
    let dir = std::env::temp_dir().join(format!("aiproxy-check-tasks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.yaml");
    std::fs::write(&cfg, everything_yaml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aiproxy"))
        .args(["check", "--connect", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "- 'everything' / 'simulate-research-query' not offered: it can only run as a task"
        ),
        "{stdout}"
    );
}

#[test]
fn blob_resources_with_text_types_reach_the_model_as_text() {
    // server-everything's blob resource is `text/plain`, base64-encoded.
    let yaml = everything_yaml();
    let cfg = aiproxy::config::parse(&yaml, "t", &crate::support::gateway::TestEnv::new()).unwrap();
    let s = Supervisor::new("everything", cfg.mcp_servers["everything"].clone());
    let r = call(
        &s,
        "get-resource-reference",
        json!({"resourceType": "Blob", "resourceId": 3}),
    )
    .unwrap();
    let shown = aiproxy::tools::result::from_call_result(&r).text;
    assert!(
        shown.contains("Resource 3: This is a base64 blob created at"),
        "{shown}\n{r:?}"
    );

    // The Python SDK with an application/json blob.
    let s = supervisor("blob-py", stdio_transport(&[]), 20_000);
    let r = call(
        &s,
        "blob",
        json!({"mime": "application/json", "text": "{\"é\": [1, 2]}\n"}),
    )
    .unwrap();
    assert_eq!(
        aiproxy::tools::result::from_call_result(&r).text,
        "[resource mem://blob]\n{\"é\": [1, 2]}\n"
    );
    let r = call(
        &s,
        "blob",
        json!({"mime": "application/octet-stream", "text": "x"}),
    )
    .unwrap();
    assert!(
        aiproxy::tools::result::from_call_result(&r)
            .text
            .contains("not shown")
    );
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
fn test_ca(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=aiproxy test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[test]
fn https_server_with_a_private_ca_from_ca_file() {
    let dir = std::env::temp_dir().join(format!("aiproxy-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    test_ca(&dir);
    let port = free_port();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let script = script();
    let _peer = Peer::spawn(
        &peers::venv_python(),
        &[
            &script,
            "https",
            &port.to_string(),
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
        ],
        &[],
        port,
    );
    let url = format!("https://127.0.0.1:{port}/mcp");
    let mut cfg = server_config(http_transport(url.clone(), &[]), 20_000, 20_000);

    // Without the CA the bundled roots refuse the certificate.
    let s = Supervisor::new("tls-untrusted", cfg.clone());
    let err = s.tools().unwrap_err();
    assert!(matches!(err, Error::Start(_)), "{err:?}");
    let msg = err.to_string().to_lowercase();
    assert!(
        msg.contains("certificate") || msg.contains("tls") || msg.contains("unknownissuer"),
        "{msg}"
    );

    // With `ca_file` it connects and calls.
    cfg.ca_file = Some(dir.join("ca.pem"));
    let s = Supervisor::new("tls", cfg.clone());
    assert_eq!(
        text(&call(&s, "echo", json!({"text": "über TLS"})).unwrap()),
        "über TLS"
    );

    // A ca_file that holds no certificate is a clear start error.
    std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
    cfg.ca_file = Some(dir.join("empty.pem"));
    let err = Supervisor::new("tls-bad", cfg)
        .tools()
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ca_file_is_read_from_the_config_for_http_transports_only() {
    let env = crate::support::gateway::TestEnv::new();
    let yaml =
        "mcp_servers:\n  r: {transport: http, url: \"https://h/mcp\", ca_file: /etc/ca.pem}\n";
    let cfg = aiproxy::config::parse(yaml, "t", &env).unwrap();
    assert_eq!(
        cfg.mcp_servers["r"].ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
    let yaml = "mcp_servers:\n  s: {command: x, ca_file: /etc/ca.pem}\n";
    let err = aiproxy::config::parse(yaml, "t", &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ca_file") && err.contains("not valid for transport stdio"),
        "{err}"
    );
}
