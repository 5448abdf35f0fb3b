//! CORS in a real headless browser (issue 14 point 5): Debian's `chromium` (scripts/setup.sh),
//! driven by playwright-core (tests/peers) through tests/browser/cors.mjs. A page served on
//! another local origin calls the gateway with `fetch`: the preflight is answered without a key,
//! the answers (stream included) are readable, and so are `X-Request-Id` and `Retry-After`.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::TestGateway;
use crate::support::peers;

#[test]
fn a_page_on_another_origin_calls_the_gateway_with_fetch() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium missing: run scripts/setup.sh (make setup)"
    );
    let pw = peers::peers_dir().join("node_modules/playwright-core/index.mjs");
    assert!(
        pw.exists(),
        "playwright-core missing: run tests/peers/install.sh"
    );
    let up = FakeOpenAi::start();
    up.push(Reply::text("héllo from the gateway"));
    up.push(Reply::deltas(&["one ", "two ", "three"]));
    up.push(Reply::error(429, "slow down").retry_after("7"));
    let page_port = peers::free_port();
    let yaml = format!(
        r#"
server:
  cors:
    allowed_origins: ["http://127.0.0.1:{page_port}"]
proxy_api_keys: [browser-key]
backends:
  up:
    kind: openai
    base_url: {}
assistants:
  - name: calc
    backend: up
    model: gpt-test
"#,
        up.url()
    );
    let gw = TestGateway::start(&yaml);
    let out = Command::new(peers::node())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/cors.mjs"
        ))
        .arg(format!("file://{}", pw.display()))
        .arg(page_port.to_string())
        .arg(format!("http://{}", gw.addr))
        .arg("browser-key")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["plain"]["status"], 200, "{seen}");
    assert_eq!(seen["plain"]["content"], "héllo from the gateway");
    assert!(
        seen["plain"]["requestId"].is_string(),
        "X-Request-Id exposed: {seen}"
    );
    assert_eq!(seen["stream"]["status"], 200);
    assert_eq!(seen["stream"]["text"], "one two three", "{seen}");
    assert_eq!(seen["stream"]["done"], true);
    assert!(seen["stream"]["requestId"].is_string());
    assert_eq!(seen["limited"]["status"], 429, "{seen}");
    assert_eq!(
        seen["limited"]["retryAfter"], "7",
        "Retry-After exposed: {seen}"
    );
    assert!(seen["limited"]["requestId"].is_string());
    assert_eq!(
        seen["noKey"],
        json!({"status": 401, "type": "authentication_error"})
    );
    assert_eq!(seen["models"], json!({"status": 200, "id": "calc"}));
    // The preflights reached the gateway without a key and were answered (no upstream call
    // for them); the three chat calls and nothing else reached the upstream.
    assert_eq!(up.completions().len(), 3);
}
