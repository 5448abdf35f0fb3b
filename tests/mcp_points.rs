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
