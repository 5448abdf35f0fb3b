//! An Anthropic assistant end to end: the OpenAI Python SDK → aiproxy → the in-tree fake
//! Messages API (which refuses what the real API refuses), with a real MCP tool round.

use std::process::Command;

use serde_json::json;

use crate::support::fake_anthropic::{API_KEY, FakeAnthropic, Reply};
use crate::support::gateway::TestGateway;

fn config(base_url: &str, max_iter: u32) -> String {
    format!(
        r#"
mcp_servers:
  demo:
    command: ${{AIPROXY_EXE}}
    args: [demo-mcp]
backends:
  claude:
    kind: anthropic
    base_url: {base_url}
    api_key: {API_KEY}
assistants:
  - name: calc
    backend: claude
    model: claude-test
    system_prompt: You add numbers with the tools.
    mcp_servers: [demo]
    max_tool_iterations: {max_iter}
"#
    )
}

fn sdk_check(gw: &TestGateway, prompt: &str, expected: &str) {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.test-peers/venv/bin/python");
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/chat_check.py"
        ))
        .args([&gw.url("/v1"), "calc", prompt, expected])
        .output()
        .expect("test peers missing: run tests/peers/install.sh");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sdk_through_a_tool_round_on_claude_stream_and_not() {
    let round = || {
        vec![
            Reply::tool_use("toolu_1", "demo__add", json!({"a": 2, "b": 3})),
            Reply::text("2 + 3 = 5."),
        ]
    };
    let fake = FakeAnthropic::start([round(), round()].concat());
    let gw = TestGateway::start(&config(&fake.base_url(), 8));
    sdk_check(&gw, "what is 2 + 3?", "2 + 3 = 5.");
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 4);
    // The tool result went back as a tool_result block with the real MCP output.
    let second = &reqs[1].body;
    let blocks = second["messages"].as_array().unwrap().last().unwrap()["content"].clone();
    assert_eq!(blocks[0]["type"], "tool_result");
    assert_eq!(blocks[0]["tool_use_id"], "toolu_1");
    assert!(blocks.to_string().contains('5'), "{blocks}");
    assert_eq!(
        second["system"][0]["text"],
        "You add numbers with the tools."
    );
}

#[test]
fn the_final_round_is_accepted_by_the_api() {
    // Budget 1: round 2 is final and must keep tools with tool_choice none, or the API
    // rejects the tool blocks in the history (the original project's defect).
    let script = vec![
        Reply::tool_use("toolu_1", "demo__add", json!({"a": 1, "b": 1})),
        Reply::text("That is 2."),
        Reply::tool_use("toolu_2", "demo__add", json!({"a": 1, "b": 1})),
        Reply::text("That is 2."),
    ];
    let fake = FakeAnthropic::start(script);
    let gw = TestGateway::start(&config(&fake.base_url(), 1));
    sdk_check(&gw, "1 + 1", "That is 2.");
    assert!(fake.rejections().is_empty(), "{:?}", fake.rejections());
    let last = fake.requests()[1].body.clone();
    assert_eq!(last["tool_choice"], json!({"type": "none"}));
    assert!(last["tools"].as_array().is_some_and(|t| !t.is_empty()));
}
