//! `mcp-conformance-client`: the client side of the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`, `conformance client --command …`), driving aiproxy's
//! own MCP client ([`aiproxy::mcp::Supervisor`] over streamable HTTP) exactly as the gateway
//! does: lazy start with era detection, `tools/list`, `tools/call`.
//!
//! Contract (notes B.2.3): the suite runs `sh -c "<command> <server-url>"`, so the URL is the
//! last argument; the scenario name is in `MCP_CONFORMANCE_SCENARIO` (and the revision in
//! `MCP_CONFORMANCE_PROTOCOL_VERSION` with the 0.2 line, which era detection makes
//! unnecessary). Exit 0 when the scenario's steps succeeded. Without a scenario it lists the
//! server's tools (handy by hand: `mcp-conformance-client http://127.0.0.1:3001/mcp`).
//! Logs go to stderr (`RUST_LOG`, default `debug` for the MCP client); the suite keeps them.

use std::process::ExitCode;
use std::time::Duration;

use aiproxy::cancel::Cancel;
use aiproxy::config::{McpServerConfig, McpTransport};
use aiproxy::mcp::{CallResult, Supervisor};
use serde_json::{Value, json};

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("aiproxy::mcp=debug,info"),
    )
    .init();
    let Some(url) = std::env::args().skip(1).last() else {
        eprintln!("usage: mcp-conformance-client <server-url>");
        return ExitCode::from(2);
    };
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    let revision = std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION").unwrap_or_default();
    log::info!("scenario {scenario:?} (revision {revision:?}) against {url}");
    let cfg = McpServerConfig {
        transport: McpTransport::StreamableHttp {
            url,
            headers: Default::default(),
        },
        description: None,
        startup_timeout: Duration::from_secs(10),
        call_timeout: Duration::from_secs(10),
        max_concurrency: 4,
        max_tools: 1000,
        ca_file: None,
    };
    let server = Supervisor::new("conformance", cfg);
    let outcome = run(&server, &scenario);
    server.stop();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("scenario {scenario:?} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(server: &Supervisor, scenario: &str) -> Result<(), String> {
    let tools = server.tools().map_err(|e| format!("listing tools: {e}"))?;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    log::info!(
        "{} tools: {names:?} (protocol {})",
        names.len(),
        server.status().protocol_version.unwrap_or_default()
    );
    match scenario {
        "tools_call" => expect_ok(call(server, "add_numbers", json!({"a": 5, "b": 3}))?),
        "sse-retry" => expect_ok(call(server, "test_reconnection", json!({}))?),
        // Hand back the focal tool's schema exactly as our client kept it (SEP-1613, SEP-2106).
        "json-schema-2020-12-preservation" => {
            let focal = tools
                .iter()
                .find(|t| t.name == "json_schema_2020_12_tool")
                .ok_or("focal tool not listed")?;
            let args = json!({"schema": focal.input_schema});
            expect_ok(call(server, "json_schema_echo", args)?)
        }
        // Valid tools are offered and callable; tools with broken annotations were left out.
        "http-invalid-tool-headers" => {
            for t in tools.iter() {
                call(server, &t.name, json!({"region": "us-west1"}))?;
            }
            Ok(())
        }
        // Calls the scenario asks for in its context (e.g. `http-custom-headers`); otherwise
        // handshake, listing and request metadata are judged on what was already sent.
        _ => {
            for (tool, args) in context_calls() {
                call(server, &tool, args)?;
            }
            Ok(())
        }
    }
}

/// `toolCalls` from `MCP_CONFORMANCE_CONTEXT`, as (name, arguments).
fn context_calls() -> Vec<(String, Value)> {
    let ctx: Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or(Value::Null);
    ctx.get("toolCalls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .filter_map(|c| {
                    let name = c.get("name")?.as_str()?.to_string();
                    Some((name, c.get("arguments").cloned().unwrap_or(json!({}))))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn call(server: &Supervisor, tool: &str, args: Value) -> Result<CallResult, String> {
    let r = server
        .call_tool(tool, args, &Cancel::new())
        .map_err(|e| format!("calling {tool}: {e}"))?;
    log::info!(
        "{tool} → {}",
        serde_json::to_string(&r.content).unwrap_or_default()
    );
    Ok(r)
}

fn expect_ok(r: CallResult) -> Result<(), String> {
    if r.is_error {
        Err(format!("tool error: {:?}", r.content))
    } else {
        Ok(())
    }
}
