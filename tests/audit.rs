//! The tool audit log (issue 17, point 2): one JSON line per tool call with who and what
//! (key name, never the key; argument size and FNV-1a hash, or the arguments when asked),
//! size-bounded rotation, and reopening on reload for logrotate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::gateway::{TestGateway, request};
use crate::support::wait;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aiproxy-audit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(log: &Path, audit: &str) -> String {
    format!(
        "mcp_servers:
  demo: {{command: '${{AIPROXY_EXE}}', args: [demo-mcp]}}
backends: {{m: {{kind: mock}}}}
assistants:
  - {{name: calc, backend: m, mcp_servers: [demo]}}
proxy_api_keys:
  - {{name: team, key: sk-audit-secret}}
audit: {{path: '{}', {audit}}}
",
        log.display()
    )
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn add(gw: &TestGateway, request_id: &str) {
    let body =
        json!({"model": "calc", "messages": [{"role": "user", "content": "what is 2 + 3?"}]});
    let r = request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer sk-audit-secret"),
            ("X-Request-Id", request_id),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn every_tool_call_is_one_line_with_who_and_a_hash() {
    let d = dir("lines");
    let log = d.join("audit.log");
    let gw = TestGateway::start(&config(&log, "include_arguments: false"));
    add(&gw, "req-audit-1");
    // The Responses API is audited too.
    let r = request(
        gw.addr,
        "POST",
        "/v1/responses",
        &[
            ("Content-Type", "application/json"),
            ("X-API-Key", "sk-audit-secret"),
            ("X-Request-Id", "req-audit-2"),
        ],
        json!({"model": "calc", "input": "echo héllo ✓"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait::until(Duration::from_secs(10), "two audit lines", || {
        lines(&log).len() == 2
    });
    let all = lines(&log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("sk-audit-secret"), "{text}");
    let l = &all[0];
    assert_eq!(l["request_id"], "req-audit-1");
    assert_eq!(l["key"], "team");
    assert_eq!(l["assistant"], "calc");
    assert_eq!(l["server"], "demo");
    assert_eq!(l["tool"], "add");
    assert_eq!(l["exposed_tool"], "demo__add");
    assert_eq!(l["outcome"], "ok");
    assert!(l["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(l.get("arguments").is_none(), "{l}");
    let args = json!({"a": 2, "b": 3}).to_string();
    assert_eq!(l["arguments_bytes"], args.len());
    assert_eq!(
        l["arguments_fnv1a64"],
        format!("{:016x}", aiproxy::audit::fnv1a64(args.as_bytes()))
    );
    let t = l["time"].as_str().unwrap();
    assert!(
        t.len() == 24 && t.ends_with('Z') && t.starts_with("20"),
        "{t}"
    );
    let e = &all[1];
    assert_eq!(
        (&e["request_id"], &e["tool"]),
        (&json!("req-audit-2"), &json!("echo"))
    );
    assert!(!text.contains("héllo"), "arguments leaked: {text}");
    let m = gw.admin("GET", "/metrics", &[], b"").text();
    assert!(m.contains("aiproxy_audit_lines_total 2"), "{m}");
    assert!(m.contains("\naiproxy_audit_dropped_total 0\n"), "{m}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn include_arguments_logs_them() {
    let d = dir("args");
    let log = d.join("audit.log");
    let gw = TestGateway::start(&config(&log, "include_arguments: true"));
    add(&gw, "req-args");
    wait::until(Duration::from_secs(10), "one audit line", || {
        lines(&log).len() == 1
    });
    let l = &lines(&log)[0];
    assert_eq!(l["arguments"], json!({"a": 2, "b": 3}));
    assert!(l.get("arguments_fnv1a64").is_none(), "{l}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn rotates_by_size_and_reopens_on_reload() {
    let d = dir("rotate");
    let log = d.join("audit.log");
    let cfg = d.join("config.yaml");
    std::fs::write(&cfg, config(&log, "max_bytes: 4096, keep: 2")).unwrap();
    let gw = TestGateway::start_file(&cfg);
    let n = 70;
    for i in 0..n {
        add(&gw, &format!("req-rot-{i:03}"));
    }
    let rotated = |k: usize| PathBuf::from(format!("{}.{k}", log.display()));
    wait::until(Duration::from_secs(10), "the last line", || {
        lines(&log)
            .last()
            .is_some_and(|l| l["request_id"] == format!("req-rot-{:03}", n - 1))
    });
    assert!(rotated(1).exists() && rotated(2).exists());
    assert!(!rotated(3).exists(), "keep: 2 keeps two rotated files");
    let mut ids = Vec::new();
    for p in [rotated(2), rotated(1), log.clone()] {
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size <= 4096, "{} is {size} bytes", p.display());
        ids.extend(
            lines(&p)
                .iter()
                .map(|l| l["request_id"].as_str().unwrap().to_string()),
        );
    }
    // Oldest first, consecutive, ending with the last call; the oldest were rotated away.
    assert!(ids.len() < n && ids.len() >= 15, "{ids:?}");
    let first: usize = ids[0]["req-rot-".len()..].parse().unwrap();
    let expected: Vec<String> = (first..n).map(|i| format!("req-rot-{i:03}")).collect();
    assert_eq!(ids, expected);

    // logrotate: move the file away, reload, and the next line goes to a new file.
    let moved = d.join("audit.log.moved");
    std::fs::rename(&log, &moved).unwrap();
    let before = lines(&moved).len();
    let r = gw.admin("POST", "/admin/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    add(&gw, "req-after-reload");
    wait::until(Duration::from_secs(10), "the new file", || {
        lines(&log).len() == 1
    });
    assert_eq!(lines(&log)[0]["request_id"], "req-after-reload");
    assert_eq!(lines(&moved).len(), before);
    let _ = std::fs::remove_dir_all(&d);
}
