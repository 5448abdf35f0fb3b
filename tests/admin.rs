//! The admin API against the in-process gateway: CRUD changing what /v1 does, validation,
//! redaction of every secret, reload from a file, persistence, and live changes not breaking
//! a stream that started on the old config.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::gateway::{TestGateway, request};

const SECRETS: &[&str] = &[
    "sk-backend-secret",
    "hdr-secret",
    "env-secret",
    "mcp-hdr-secret",
    "apiman-secret",
    "proxy-key-secret",
];

fn secret_config() -> String {
    r#"
mcp_servers:
  demo:
    command: ${AIPROXY_EXE}
    args: [demo-mcp]
    env: {TOKEN: env-secret}
  remote:
    transport: http
    url: http://127.0.0.1:9/mcp
    headers: {Authorization: "Bearer mcp-hdr-secret"}
backends:
  mock: {kind: mock}
  openai:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    api_key: sk-backend-secret
    default_headers: {OpenAI-Organization: hdr-secret}
assistants:
  - name: demo
    backend: mock
    model: mock
    mcp_servers: [demo]
proxy_api_keys: [proxy-key-secret]
apiman:
  enabled: false
  mode: trusted_header
  header: X-Gw
  secret: apiman-secret
"#
    .to_string()
}

/// The same without proxy keys, for tests that talk to /v1 with plain clients.
fn open_config() -> String {
    secret_config().replace("proxy_api_keys: [proxy-key-secret]\n", "")
}

fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let b = body.map(|b| b.to_string()).unwrap_or_default();
    // On the admin listener, as a local client (no ADMIN_API_KEY: keyless).
    let r = gw.admin(
        method,
        path,
        &[("Content-Type", "application/json")],
        b.as_bytes(),
    );
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, v)
}

fn chat(gw: &TestGateway, model: &str, text: &str) -> (u16, Value) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": text}]}).to_string();
    let r = request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer proxy-key-secret")],
        body.as_bytes(),
    );
    (r.status, r.json())
}

#[test]
fn no_admin_response_contains_a_secret() {
    let gw = TestGateway::start(&secret_config());
    let paths = [
        "/admin/config",
        "/admin/backends",
        "/admin/backends/openai",
        "/admin/mcp",
        "/admin/mcp/demo",
        "/admin/mcp/remote",
        "/admin/assistants",
        "/admin/assistants/demo",
    ];
    for p in paths {
        let (status, v) = admin(&gw, "GET", p, None);
        assert_eq!(status, 200, "{p}: {v}");
        let text = v.to_string();
        for s in SECRETS {
            assert!(!text.contains(s), "{p} leaks {s}: {text}");
        }
    }
    let (_, cfg) = admin(&gw, "GET", "/admin/config", None);
    assert_eq!(cfg["backends"]["openai"]["api_key"], "***");
    assert_eq!(cfg["mcp_servers"]["demo"]["env"]["TOKEN"], "***");
    assert_eq!(cfg["proxy_api_keys"], json!(["***"]));
    assert_eq!(cfg["auth_providers"], json!(["static"]));
    // PUT responses are redacted too.
    let (status, v) = admin(
        &gw,
        "PUT",
        "/admin/backends/b2",
        Some(
            json!({"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-new-secret", "default_headers": {"X-K": "hdr-new-secret"}}),
        ),
    );
    assert_eq!(status, 200, "{v}");
    assert!(!v.to_string().contains("new-secret"), "{v}");
}

#[test]
fn crud_changes_models_and_chat_live() {
    let gw = TestGateway::start(&open_config());
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/assistants/calc",
        Some(
            json!({"backend": "mock", "model": "mock", "mcp_servers": ["demo"], "system_prompt": "Add things."}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "calc");
    let ids: Vec<String> =
        serde_json::from_value::<Vec<Value>>(gw.get("/v1/models").json()["data"].clone())
            .map(|d| {
                d.iter()
                    .map(|m| m["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
    assert!(ids.contains(&"calc".to_string()), "{ids:?}");
    let (s, v) = chat(&gw, "calc", "what is 2 + 3?");
    assert_eq!(s, 200, "{v}");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains('5')
    );

    let (s, _) = admin(&gw, "DELETE", "/admin/assistants/calc", None);
    assert_eq!(s, 200);
    let (s, v) = chat(&gw, "calc", "hi");
    assert_eq!(s, 404, "{v}");
    assert_eq!(admin(&gw, "DELETE", "/admin/assistants/calc", None).0, 404);
    assert_eq!(admin(&gw, "GET", "/admin/assistants/calc", None).0, 404);
}

#[test]
fn validation_errors_are_422_and_in_use_deletes_are_409() {
    let gw = TestGateway::start(&secret_config());
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/assistants/x",
        Some(json!({"backend": "nope", "model": "m"})),
    );
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nope"),
        "{v}"
    );
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/assistants/x",
        Some(json!({"backend": "mock", "model": "m", "temprature": 1})),
    );
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temprature"),
        "{v}"
    );
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/mcp/bad",
        Some(json!({"transport": "stdio"})),
    );
    assert_eq!(s, 422, "{v}");
    let (s, _) = admin(&gw, "PUT", "/admin/assistants/x", Some(json!([1])));
    assert_eq!(s, 400);
    let (s, v) = admin(&gw, "DELETE", "/admin/backends/mock", None);
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("demo"),
        "names the assistant: {v}"
    );
    let (s, v) = admin(&gw, "DELETE", "/admin/mcp/demo", None);
    assert_eq!(s, 409, "{v}");
    assert_eq!(admin(&gw, "DELETE", "/admin/mcp/remote", None).0, 200);
    assert_eq!(admin(&gw, "GET", "/admin/nope", None).0, 404);
}

#[test]
fn mcp_status_and_tools() {
    let gw = TestGateway::start(&secret_config());
    let (s, v) = admin(&gw, "GET", "/admin/mcp/demo/tools", None);
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tool"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "echo", "uppercase", "sleep"]);
    assert_eq!(v["tools"][0]["aiproxy"]["exposed_name"], "demo__add", "{v}");
    let (_, v) = admin(&gw, "GET", "/admin/mcp", None);
    assert_eq!(v["demo"]["status"]["state"], "ready", "{v}");
    assert_eq!(v["demo"]["status"]["tool_count"], 4);
    let (s, _) = admin(&gw, "GET", "/admin/mcp/remote/tools", None);
    assert_eq!(s, 502, "an unreachable server is a 502, not a hang");
}

#[test]
fn a_stream_on_the_old_config_completes_while_the_assistant_is_replaced() {
    let gw = TestGateway::start(&open_config());
    let mut stream = gw.stream(&json!({"model": "demo", "stream": true, "messages": [{"role": "user", "content": "sleep 1500"}]}));
    assert_eq!(stream.status, 200);
    // The first event (the role chunk / tool comment) proves the loop is running.
    assert!(stream.next_block().is_some());
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/mcp/demo",
        Some(json!({"command": "/nonexistent/server"})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, _) = admin(&gw, "DELETE", "/admin/assistants/demo", None);
    assert_eq!(s, 200);
    let mut text = String::new();
    let mut done = false;
    while let Some((d, _)) = stream.next_data() {
        if d == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(&d).unwrap();
        assert!(v.get("error").is_none(), "{v}");
        text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    assert!(done, "stream completed");
    assert!(
        text.contains("slept 1500 ms"),
        "the old server finished the call: {text}"
    );
    assert_eq!(
        chat(&gw, "demo", "hi").0,
        404,
        "new requests see the new config"
    );
}

#[test]
fn reload_refuses_a_broken_file_and_applies_a_good_one_and_persist_keeps_references() {
    let dir = std::env::temp_dir().join(format!("aiproxy-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    let base = "backends:\n  mock: {kind: mock}\nassistants:\n  - {name: one, backend: mock, model: mock}\nadmin: {persist: true}\n";
    std::fs::write(&path, base).unwrap();
    let gw = TestGateway::start_file(&path);
    std::fs::write(
        &path,
        "backends:\n  mock: {kind: mock}\nassistants:\n  - {name: two, backend: nope}\n",
    )
    .unwrap();
    let (s, v) = admin(&gw, "POST", "/admin/reload", None);
    assert_eq!(s, 422, "{v}");
    assert_eq!(chat(&gw, "one", "hi").0, 200, "old config stays");
    std::fs::write(&path, base.replace("one", "two")).unwrap();
    let (s, v) = admin(&gw, "POST", "/admin/reload", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(chat(&gw, "one", "hi").0, 404);
    assert_eq!(chat(&gw, "two", "hi").0, 200);

    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/backends/up",
        Some(
            json!({"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "${SOME_KEY:-x}"}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.contains("${SOME_KEY:-x}"),
        "references kept as written: {written}"
    );
    assert!(written.contains("two"));
    std::thread::sleep(Duration::from_millis(10));
    let _ = std::fs::remove_dir_all(&dir);
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("aiproxy-admin-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn persist_refuses_a_file_with_a_custom_tag_and_keeps_keys_enforced() {
    let dir = temp_dir("tag");
    let path = dir.join("config.yaml");
    let text = "backends:\n  mock: {kind: mock}\nassistants:\n  - name: one\n    backend: mock\n    extra_body: {token: !secret vault/token}\nproxy_api_keys: [tag-key]\nadmin: {persist: true}\n";
    std::fs::write(&path, text).unwrap();
    let gw = TestGateway::start_file(&path);
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/backends/extra",
        Some(json!({"kind": "mock"})),
    );
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "persist_refused");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("!secret") && msg.contains("not applied"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "file unchanged"
    );
    assert_eq!(admin(&gw, "GET", "/admin/backends/extra", None).0, 404);
    // The keys still hold, now and after a reload.
    let body = json!({"model": "one", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let open = |gw: &TestGateway| {
        request(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &[],
            body.as_bytes(),
        )
        .status
    };
    assert_eq!(open(&gw), 401);
    assert_eq!(admin(&gw, "POST", "/admin/reload", None).0, 200);
    assert_eq!(open(&gw), 401);
    assert_eq!(chat(&gw, "one", "hi").0, 401, "a wrong key stays refused");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn persist_keeps_the_mode_and_writes_a_file_that_reloads_to_the_same_config() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("mode");
    let path = dir.join("config.yaml");
    let text = "# operator comment\nbackends:\n  mock: {kind: mock}\nassistants:\n  - {name: one, backend: mock}\nproxy_api_keys: [\"${MODE_KEY:-mode-key}\"]\nadmin: {persist: true}\n";
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let gw = TestGateway::start_file(&path);
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/assistants/two",
        Some(json!({"backend": "mock", "system_prompt": "be brief"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(mode(&path), 0o600, "the mode is kept");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains("${MODE_KEY:-mode-key}"), "{written}");
    let env = crate::support::gateway::TestEnv::new();
    let reloaded = aiproxy::config::parse(&written, "written", &env).unwrap();
    assert_eq!(reloaded, *gw.app.snapshot().config);
    // No temp file is left next to it.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["config.yaml"]);
    // Deleting writes it back too, still 0600.
    assert_eq!(admin(&gw, "DELETE", "/admin/assistants/two", None).0, 200);
    assert_eq!(mode(&path), 0o600);
    assert!(!std::fs::read_to_string(&path).unwrap().contains("be brief"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn admin_responses_show_references_not_their_values() {
    let gw = TestGateway::start_with_env(&open_config(), &[("LEAKY", "env-leak-value-42")]);
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/assistants/probe",
        Some(
            json!({"backend": "mock", "system_prompt": "${LEAKY}", "description": "d ${LEAKY:-x}"}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["system_prompt"], "${LEAKY}");
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/mcp/leak",
        Some(json!({"transport": "http", "url": "http://127.0.0.1:9/${LEAKY}"})),
    );
    assert_eq!(s, 200, "{v}");
    for p in [
        "/admin/assistants/probe",
        "/admin/assistants",
        "/admin/mcp/leak",
        "/admin/mcp",
        "/admin/config",
    ] {
        let (s, v) = admin(&gw, "GET", p, None);
        assert_eq!(s, 200);
        let text = v.to_string();
        assert!(!text.contains("env-leak-value-42"), "{p}: {text}");
        assert!(text.contains("${LEAKY}"), "{p}: {text}");
    }
    // The running config does use the value.
    let snap = gw.app.snapshot();
    let a = snap.config.assistant("probe").unwrap();
    assert_eq!(a.system_prompt.as_deref(), Some("env-leak-value-42"));
}

#[test]
fn admin_listener_refuses_dns_rebinding_and_serves_admin_only() {
    let gw = TestGateway::start(&open_config());
    let host = gw.admin_addr.to_string();
    let at = |h: &[(&str, &str)]| request(gw.admin_addr, "GET", "/admin/config", h, b"");
    assert_eq!(at(&[("Host", &host)]).status, 200);
    assert_eq!(at(&[("Host", "localhost:8001")]).status, 200);
    let r = at(&[("Host", "evil.example")]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "admin_foreign_host");
    let r = at(&[("Host", "evil.example:8001")]);
    assert_eq!(r.status, 403);
    let r = at(&[("Host", &host), ("Origin", "http://evil.example")]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "admin_cross_origin");
    let r = request(
        gw.admin_addr,
        "GET",
        "/metrics",
        &[("Host", "evil.example")],
        b"",
    );
    assert_eq!(r.status, 403);
    // The admin listener serves admin, /metrics and /health only.
    assert_eq!(gw.admin("GET", "/health", &[], b"").status, 200);
    assert_eq!(gw.admin("GET", "/metrics", &[], b"").status, 200);
    assert_eq!(gw.admin("GET", "/v1/models", &[], b"").status, 404);
    // The main listener never answers admin without the key, whatever the Host.
    for h in [("Host", host.as_str()), ("Host", "localhost")] {
        assert_eq!(
            request(gw.addr, "GET", "/admin/config", &[h], b"").status,
            401
        );
        assert_eq!(request(gw.addr, "GET", "/metrics", &[h], b"").status, 401);
    }
}

#[test]
fn ambiguous_admin_paths_and_bad_names_are_400() {
    let gw = TestGateway::start(&open_config());
    let body = json!({"command": "/bin/sh", "args": ["-c", "exit 0"]});
    for path in [
        "/admin/mcp/%2F..%2F..%2Fx",
        "/admin/mcp/a%2Fb",
        "/admin/mcp/a%5Cb",
        "/admin/mcp/..",
        "/admin/mcp/%2e%2E",
        "/admin/./mcp/x",
        "/admin/mcp/x%00",
        "/admin/mcp//x",
        "/admin/mcp/%zz",
    ] {
        let (s, v) = admin(&gw, "PUT", path, Some(body.clone()));
        assert_eq!(s, 400, "{path}: {v}");
        assert_eq!(v["error"]["code"], "invalid_path", "{path}");
    }
    let long = format!("/admin/mcp/{}", "a".repeat(65));
    for path in [
        "/admin/mcp/a%20b",
        "/admin/assistants/caf%C3%A9",
        long.as_str(),
    ] {
        let (s, v) = admin(&gw, "PUT", path, Some(body.clone()));
        assert_eq!(s, 400, "{path}: {v}");
        assert_eq!(v["error"]["code"], "invalid_name", "{path}");
    }
    assert!(!gw.app.snapshot().config.mcp_servers.contains_key(".."));
    // Names in the file follow the same rule.
    let bad =
        "backends:\n  \"a b\": {kind: mock}\nassistants:\n  - {name: \"x/y\", backend: \"a b\"}\n";
    let e = aiproxy::config::parse(bad, "t", &aiproxy::config::MapEnv::new()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("invalid name") && text.contains("assistants[0].name"),
        "{text}"
    );
    // A good name with a dot and dash works.
    let (s, v) = admin(
        &gw,
        "PUT",
        "/admin/backends/my-mock.v2",
        Some(json!({"kind": "mock"})),
    );
    assert_eq!(s, 200, "{v}");
}

#[test]
fn an_open_gateway_refuses_foreign_browser_origins() {
    let gw = TestGateway::start(&open_config());
    let body =
        json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let post = |gw: &TestGateway, h: &[(&str, &str)]| {
        request(gw.addr, "POST", "/v1/chat/completions", h, body.as_bytes())
    };
    // A simple (no-preflight) cross-origin POST from a web page.
    let r = post(
        &gw,
        &[
            ("Content-Type", "text/plain"),
            ("Origin", "http://evil.example"),
        ],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "origin_not_allowed");
    let r = request(gw.addr, "GET", "/v1/models", &[("Origin", "null")], b"");
    assert_eq!(r.status, 403);
    // SDKs and curl send no Origin.
    assert_eq!(
        post(&gw, &[("Content-Type", "application/json")]).status,
        200
    );
    assert_eq!(gw.get("/health").status, 200);

    // An allowed origin: CORS headers and a preflight answer.
    let yaml = format!(
        "{}server:\n  cors:\n    allowed_origins: [\"https://app.example/\"]\n",
        open_config()
    );
    let gw = TestGateway::start(&yaml);
    let r = post(
        &gw,
        &[
            ("Content-Type", "application/json"),
            ("Origin", "https://app.example"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    let r = request(
        gw.addr,
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    assert!(
        r.header("Access-Control-Allow-Methods")
            .is_some_and(|m| m.contains("POST"))
    );
    let r = post(&gw, &[("Origin", "https://other.example")]);
    assert_eq!(r.status, 403);

    // With keys configured, the key decides (a browser client with a key is fine).
    let gw = TestGateway::start(&secret_config());
    let r = post(
        &gw,
        &[
            ("Origin", "http://evil.example"),
            ("Authorization", "Bearer proxy-key-secret"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(post(&gw, &[("Origin", "http://evil.example")]).status, 401);
}
