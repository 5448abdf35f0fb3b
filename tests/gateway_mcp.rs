//! A real chat completion with a tool round through every MCP transport and reference peer:
//! server-everything (stdio, sse, streamableHttp) and the Python `mcp` SDK server (stdio, sse,
//! streamable-http), each behind the gateway with the mock model calling `<server>__echo`.

use serde_json::{Value, json};

use crate::support::gateway::TestGateway;
use crate::support::peers::{self, Peer};

fn assistant_yaml(server_yaml: &str) -> String {
    format!(
        "mcp_servers:\n  peer:\n{server_yaml}    startup_timeout: 20s\n    call_timeout: 20s\n\
         backends:\n  mock: {{kind: mock}}\nassistants:\n  - {{name: demo, backend: mock, mcp_servers: [peer]}}\n"
    )
}

fn echo_round(gw: &TestGateway, what: &str) {
    for stream in [false, true] {
        let body = json!({"model": "demo", "stream": stream,
            "messages": [{"role": "user", "content": "echo hello from the gateway"}]});
        let text = if stream {
            let events = gw.stream(&body).collect();
            crate::support::gateway::stream_text(&events)
        } else {
            let r = gw.chat(&body);
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            if r.header("X-Aiproxy-Degraded").is_some() {
                let status = gw.admin("GET", "/admin/mcp/peer", &[], b"").text();
                panic!("{what}: the server was left out: {status}");
            }
            let v: Value = r.json();
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        assert!(text.contains("Let me use the echo tool."), "{what}: {text}");
        assert!(
            text.contains("hello from the gateway"),
            "{what} (stream={stream}): {text}"
        );
        assert!(!text.contains("failed"), "{what}: {text}");
    }
}

#[test]
fn server_everything_over_stdio() {
    let yaml = format!(
        "    command: {}\n    args: [\"{}\", stdio]\n",
        peers::node(),
        peers::everything_js()
    );
    echo_round(
        &TestGateway::start(&assistant_yaml(&yaml)),
        "everything stdio",
    );
}

#[test]
fn server_everything_over_sse() {
    let port = peers::free_port();
    let _peer: Peer = peers::everything("sse", port);
    let yaml = format!("    transport: sse\n    url: http://127.0.0.1:{port}/sse\n");
    echo_round(
        &TestGateway::start(&assistant_yaml(&yaml)),
        "everything sse",
    );
}

#[test]
fn server_everything_over_streamable_http() {
    let port = peers::free_port();
    let _peer = peers::everything("streamableHttp", port);
    let yaml = format!("    transport: streamable-http\n    url: http://127.0.0.1:{port}/mcp\n");
    echo_round(
        &TestGateway::start(&assistant_yaml(&yaml)),
        "everything streamableHttp",
    );
}

#[test]
fn python_sdk_server_over_stdio() {
    let yaml = format!(
        "    command: {}\n    args: [\"{}\", stdio]\n",
        peers::venv_python(),
        peers::support_script("py_mcp_server.py")
    );
    echo_round(&TestGateway::start(&assistant_yaml(&yaml)), "python stdio");
}

#[test]
fn python_sdk_server_over_sse() {
    let port = peers::free_port();
    let _peer = peers::python_server("sse", port, &[]);
    let yaml = format!("    transport: sse\n    url: http://127.0.0.1:{port}/sse\n");
    echo_round(&TestGateway::start(&assistant_yaml(&yaml)), "python sse");
}

#[test]
fn python_sdk_server_over_streamable_http() {
    let port = peers::free_port();
    let _peer = peers::python_server("http", port, &[]);
    let yaml = format!("    transport: http\n    url: http://127.0.0.1:{port}/mcp\n");
    echo_round(
        &TestGateway::start(&assistant_yaml(&yaml)),
        "python streamable-http",
    );
}
