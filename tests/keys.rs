//! API keys with names, assistant scopes and `rpm`/`tpm` limits (issue 17, point 3), through
//! the official OpenAI Python SDK: scoped model lists, out-of-scope models answered like
//! unknown ones, 429 with `Retry-After` and the SDK's own retries, and the per-key metrics.

use std::process::Command;

use crate::support::gateway::TestGateway;

const CONFIG: &str = "\
backends: {m: {kind: mock}}
assistants:
  - {name: team-a-chat, backend: m}
  - {name: team-a-code, backend: m}
  - {name: secret-b, backend: m}
proxy_api_keys:
  - open-key
  - {name: team-a, key: sk-team-a, assistants: ['team-a-*'], rpm: 60}
  - {name: tokens, key: sk-tokens, tpm: 6000}
";

#[test]
fn keys_scopes_and_limits_through_the_python_sdk() {
    let gw = TestGateway::start(CONFIG);
    let python =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-peers/venv/bin/python");
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/keys_sdk.py"
        ))
        .arg(gw.url("/v1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = gw.admin("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    let metrics = r.text();
    let value = |series: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
    };
    assert!(value("aiproxy_key_requests_total{key=\"team-a\"}") >= 40);
    assert!(value("aiproxy_key_rate_limited_total{key=\"team-a\",limit=\"rpm\"}") >= 2);
    assert!(value("aiproxy_key_rate_limited_total{key=\"tokens\",limit=\"tpm\"}") >= 2);
    assert!(value("aiproxy_key_tokens_total{key=\"tokens\"}") > 6000);
    assert!(value("aiproxy_key_requests_total{key=\"key-1\"}") >= 2);
    assert!(!metrics.contains("sk-team-a") && !metrics.contains("open-key"));
}
