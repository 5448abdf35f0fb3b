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
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "echo", "uppercase", "sleep"]);
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
