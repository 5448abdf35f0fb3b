//! Config that follows its file (issue 17, point 4): `server.watch_config` reloads when a
//! Kubernetes-style ConfigMap swaps its `..data` symlink, with a request in flight finishing on
//! the old config; an invalid file is refused and the running config stays; `admin.read_only`
//! refuses admin writes with 405 while reads work.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::gateway::TestGateway;
use crate::support::wait;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aiproxy-watch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(assistant: &str, extra: &str) -> String {
    format!(
        "server: {{watch_config: true}}
mcp_servers:
  demo: {{command: '${{AIPROXY_EXE}}', args: [demo-mcp]}}
backends: {{m: {{kind: mock}}}}
assistants:
  - {{name: {assistant}, backend: m, mcp_servers: [demo]}}
{extra}"
    )
}

/// Write a new ConfigMap version the way the kubelet does: a new timestamped directory, a new
/// `..data_tmp` symlink to it, renamed over `..data` (atomic).
fn publish(root: &Path, version: &str, text: &str) {
    let v = root.join(version);
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("config.yaml"), text).unwrap();
    let tmp = root.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
}

fn models(gw: &TestGateway) -> Vec<String> {
    let r = gw.get("/v1/models");
    r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn configmap_symlink_swap_reloads_and_in_flight_request_finishes_on_old_config() {
    let root = dir("cm");
    publish(&root, "..2026_a", &config("old-a", ""));
    symlink("..data/config.yaml", root.join("config.yaml")).unwrap();
    let gw = TestGateway::start_file(&root.join("config.yaml"));
    let metrics = Arc::new(aiproxy::metrics::Metrics::new());
    let _watcher =
        aiproxy::watch::spawn(&gw.app, Arc::clone(&metrics), Duration::from_millis(200)).unwrap();
    assert_eq!(models(&gw), ["old-a"]);
    // Let the watcher take its first look at version a.
    std::thread::sleep(Duration::from_millis(600));

    // A slow request on the old assistant: the demo `sleep` tool holds it for 4 s.
    let addr = gw.addr;
    let started = Instant::now();
    let slow = std::thread::spawn(move || {
        crate::support::gateway::request(
            addr,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            json!({"model": "old-a", "messages": [{"role": "user", "content": "sleep 4000"}]})
                .to_string()
                .as_bytes(),
        )
    });
    // Wait until the tool call is running (the sleep tool is counted when it ends, so look
    // at the MCP server having started instead), then swap the ConfigMap.
    std::thread::sleep(Duration::from_millis(800));
    publish(&root, "..2026_b", &config("new-b", ""));
    wait::until(Duration::from_secs(20), "reload to new-b", || {
        models(&gw) == ["new-b"]
    });
    assert!(
        !slow.is_finished(),
        "the slow request ended before the swap was seen"
    );
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = r.json();
    assert_eq!(v["model"], "old-a");
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("slept"),
        "{v}"
    );
    // The old assistant is gone for new requests.
    let r = gw.chat(&json!({"model": "old-a", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(r.status, 404);
    assert!(
        metrics
            .render(&[])
            .contains("aiproxy_config_reloads_total{result=\"ok\"} 1")
    );

    // An invalid version is refused; the running config stays.
    publish(
        &root,
        "..2026_c",
        "server: {watch_config: true}\nassistants: [{name: x}]\n",
    );
    wait::until(Duration::from_secs(20), "refused reload", || {
        metrics
            .render(&[])
            .contains("aiproxy_config_reloads_total{result=\"failed\"} 1")
    });
    assert_eq!(models(&gw), ["new-b"]);
    // And a good one after it is picked up.
    publish(&root, "..2026_d", &config("new-d", ""));
    wait::until(Duration::from_secs(20), "reload to new-d", || {
        models(&gw) == ["new-d"]
    });
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn watch_off_ignores_changes() {
    let root = dir("off");
    let path = root.join("config.yaml");
    std::fs::write(
        &path,
        config("one", "").replace("watch_config: true", "watch_config: false"),
    )
    .unwrap();
    let gw = TestGateway::start_file(&path);
    let metrics = Arc::new(aiproxy::metrics::Metrics::new());
    let _watcher =
        aiproxy::watch::spawn(&gw.app, Arc::clone(&metrics), Duration::from_millis(100)).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    std::fs::write(&path, config("two", "")).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(models(&gw), ["one"]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn read_only_admin_refuses_writes_and_serves_reads() {
    let root = dir("ro");
    let path = root.join("config.yaml");
    std::fs::write(&path, config("one", "admin: {read_only: true}\n")).unwrap();
    let gw = TestGateway::start_file(&path);
    let body = br#"{"backend": "m"}"#;
    for (method, p) in [
        ("PUT", "/admin/assistants/two"),
        ("PUT", "/admin/assistants/one"),
        ("DELETE", "/admin/assistants/one"),
        ("PUT", "/admin/backends/x"),
        ("DELETE", "/admin/mcp/demo"),
    ] {
        let r = gw.admin(method, p, &[("Content-Type", "application/json")], body);
        assert_eq!(r.status, 405, "{method} {p}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"], "admin_read_only", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("read-only")
        );
    }
    assert_eq!(models(&gw), ["one"]);
    for p in [
        "/admin/assistants",
        "/admin/assistants/one",
        "/admin/config",
        "/admin/mcp/demo/tools",
    ] {
        let r = gw.admin("GET", p, &[], b"");
        assert_eq!(r.status, 200, "{p}: {}", r.text());
    }
    let tools = gw.admin("GET", "/admin/mcp/demo/tools", &[], b"").json();
    assert!(tools.to_string().contains("sleep"), "{tools}");
    // Reloading from the file still works (that is how a read-only replica changes).
    std::fs::write(&path, config("two", "admin: {read_only: true}\n")).unwrap();
    let r = gw.admin("POST", "/admin/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(models(&gw), ["two"]);
    // Without read_only the same write works (the 405 is the flag's doing).
    std::fs::write(&path, config("two", "")).unwrap();
    assert_eq!(gw.admin("POST", "/admin/reload", &[], b"").status, 200);
    let r = gw.admin(
        "PUT",
        "/admin/assistants/three",
        &[("Content-Type", "application/json")],
        body,
    );
    assert!(matches!(r.status, 200 | 201), "{}", r.text());
    let _ = std::fs::remove_dir_all(&root);
}
