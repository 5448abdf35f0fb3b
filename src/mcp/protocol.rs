//! MCP protocol payloads for a tools-only client (legacy revisions 2024-11-05 … 2025-11-25).
//!
//! Owns: the `initialize` request parameters and version negotiation, `tools/list` page parsing
//! (with tasks-only tools dropped), `tools/call` parameters and `CallToolResult` decoding. Pure
//! functions over `serde_json::Value`; no threads, no I/O.

use serde_json::{Map, Value, json};

use super::{CallResult, Error, LeftOut, ToolInfo};

/// Revisions we speak, newest first; the first is offered in `initialize`.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Our `clientInfo.name`.
pub const CLIENT_NAME: &str = "aiproxy";

/// `initialize` params: the newest version, no capabilities (so servers never send
/// `roots/list`, `sampling/createMessage` or `elicitation/create`; notes A.3, A.17).
pub fn initialize_params() -> Value {
    json!({
        "protocolVersion": SUPPORTED_VERSIONS[0],
        "capabilities": {},
        "clientInfo": {"name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION")},
    })
}

/// What we keep of an `InitializeResult`.
#[derive(Debug, Clone, PartialEq)]
pub struct Initialized {
    pub protocol_version: String,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    /// Whether the server declared the `tools` capability (we still list when it did not:
    /// some older servers omit it yet serve tools; listing errors are then reported).
    pub has_tools: bool,
}

/// Check the server's answer to `initialize`: the version it chose must be one we speak
/// (lifecycle.mdx: "If the client does not support the version in the server's response, it
/// SHOULD disconnect").
pub fn parse_initialize(result: &Value) -> Result<Initialized, Error> {
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Protocol("initialize result without protocolVersion".into()))?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(Error::Protocol(format!(
            "server chose protocol version {} which we do not support (we speak {})",
            cut(version, 40),
            SUPPORTED_VERSIONS.join(", ")
        )));
    }
    let info = result.get("serverInfo");
    let field = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .map(|s| cut(s, 100))
    };
    Ok(Initialized {
        protocol_version: version.to_string(),
        server_name: field("name"),
        server_version: field("version"),
        has_tools: result
            .get("capabilities")
            .and_then(|c| c.get("tools"))
            .is_some(),
    })
}

/// `tools/list` params for one page.
pub fn list_params(cursor: Option<&str>) -> Option<Value> {
    cursor.map(|c| json!({ "cursor": c }))
}

/// One page of `tools/list`: the usable tools, the ones left out (with why), the next cursor.
pub type ToolsPage = (Vec<ToolInfo>, Vec<LeftOut>, Option<String>);

/// One page of `tools/list`: the usable tools and the cursor of the next page. Tools that can
/// only run as tasks (`execution.taskSupport == "required"`) are dropped: we do not support
/// tasks, and a plain call would fail (notes A.5). Nameless entries are dropped too.
pub fn parse_tools_page(result: &Value) -> Result<ToolsPage, Error> {
    let tools = result
        .get("tools")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Protocol("tools/list result without a tools array".into()))?;
    let mut out = Vec::with_capacity(tools.len());
    let mut left_out = Vec::new();
    for t in tools {
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            log::warn!("mcp: skipping a listed tool without a name");
            left_out.push(LeftOut {
                raw: t.clone(),
                reason: "no name".into(),
            });
            continue;
        };
        let task_support = t
            .get("execution")
            .and_then(|e| e.get("taskSupport"))
            .and_then(Value::as_str);
        if task_support == Some("required") {
            log::debug!("mcp: skipping tool {name:?}: it can only run as a task");
            left_out.push(LeftOut {
                raw: t.clone(),
                reason: "it can only run as a task (execution.taskSupport is \"required\"); tasks are not supported".into(),
            });
            continue;
        }
        let input_schema = match t.get("inputSchema") {
            Some(s @ Value::Object(_)) => s.clone(),
            _ => json!({"type": "object"}),
        };
        out.push(ToolInfo {
            name: name.to_string(),
            description: t
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            parameters: std::sync::Arc::new(parameters_schema(&input_schema)),
            input_schema,
            raw: t.clone(),
        });
    }
    // Cursors are opaque; an empty string is treated like an absent one so a sloppy server
    // cannot make us loop.
    let next = match result.get("nextCursor") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Ok((out, left_out, next))
}

/// `tools/call` params.
pub fn call_params(tool: &str, arguments: Value) -> Value {
    let arguments = match arguments {
        Value::Null => json!({}),
        other => other,
    };
    json!({ "name": tool, "arguments": arguments })
}

/// Decode a `CallToolResult`. Missing `content` is tolerated (empty); a 2026-07-28
/// `input_required` result cannot be honoured by a client that declares no capabilities.
pub fn parse_call_result(result: Value) -> Result<CallResult, Error> {
    let Value::Object(mut m) = result else {
        return Err(Error::Protocol("tools/call result is not an object".into()));
    };
    if let Some(rt) = m.get("resultType").and_then(Value::as_str)
        && rt != "complete"
    {
        return Err(Error::Protocol(format!(
            "tools/call result type {} is not supported",
            cut(rt, 40)
        )));
    }
    let content = match m.remove("content") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(Error::Protocol("tools/call content is not an array".into())),
    };
    let structured_content = match m.remove("structuredContent") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    };
    Ok(CallResult {
        content,
        structured_content,
        is_error: m.get("isError").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// Whether a `tools/call` answer says the tool does not exist: a JSON-RPC error (`-32602`,
/// `-32601`) or an `isError` result whose text says "unknown tool" / "tool … not found" (the
/// Python SDK's `Unknown tool: x`, the TypeScript SDK's `Tool x not found`).
pub fn tool_not_found(answer: &Result<Value, crate::mcp::client::RequestError>) -> bool {
    let says = |text: &str| {
        let t = text.to_ascii_lowercase();
        t.contains("unknown tool") || (t.contains("tool") && t.contains("not found"))
    };
    match answer {
        Err(crate::mcp::client::RequestError::Rejected(e)) => {
            matches!(e.code, -32602 | -32601) && says(&e.message)
        }
        Ok(v) if v.get("isError").and_then(Value::as_bool) == Some(true) => {
            v.get("content").and_then(Value::as_array).is_some_and(|c| {
                c.iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .any(|t| t.len() < 1000 && says(t))
            })
        }
        _ => false,
    }
}

/// `s` cut to at most `max` characters (server-provided text going into errors and logs).
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// MCP `inputSchema` → OpenAI `parameters`: an object schema without the `$schema` marker that
/// TypeScript servers add (strict providers reject unknown top-level keywords).
pub(crate) fn parameters_schema(input: &Value) -> Value {
    let mut schema = match input {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    schema.remove("$schema");
    if !schema.contains_key("type") {
        schema.insert("type".into(), json!("object"));
    }
    if schema.get("type") == Some(&json!("object")) && !schema.contains_key("properties") {
        schema.insert("properties".into(), json!({}));
    }
    Value::Object(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_cleanup() {
        let s = parameters_schema(
            &json!({"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"a":{"type":"number"}}}),
        );
        assert_eq!(
            s,
            json!({"type":"object","properties":{"a":{"type":"number"}}})
        );
        assert_eq!(
            parameters_schema(&Value::Null),
            json!({"type":"object","properties":{}})
        );
    }

    #[test]
    fn offers_newest_version_and_no_capabilities() {
        let p = initialize_params();
        assert_eq!(p["protocolVersion"], "2025-11-25");
        assert_eq!(p["capabilities"], json!({}));
        assert_eq!(p["clientInfo"]["name"], "aiproxy");
        assert!(p["clientInfo"]["version"].is_string());
    }

    #[test]
    fn accepts_every_supported_version() {
        for v in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
            let r = json!({"protocolVersion": v, "capabilities": {"tools": {}},
                           "serverInfo": {"name": "s", "version": "1"}});
            let init = parse_initialize(&r).unwrap();
            assert_eq!(init.protocol_version, v);
            assert_eq!(init.server_name.as_deref(), Some("s"));
            assert!(init.has_tools);
        }
    }

    #[test]
    fn refuses_unknown_or_missing_versions() {
        for r in [
            json!({"protocolVersion": "2026-07-28", "capabilities": {}}),
            json!({"protocolVersion": "1999-01-01"}),
            json!({"protocolVersion": 5}),
            json!({"capabilities": {}}),
        ] {
            assert!(
                matches!(parse_initialize(&r), Err(Error::Protocol(_))),
                "{r}"
            );
        }
    }

    #[test]
    fn tools_page_skips_task_only_and_nameless_tools() {
        let r = json!({
            "tools": [
                {"name": "a", "description": "A", "inputSchema": {"type": "object", "properties": {"x": {}}}},
                {"name": "t", "inputSchema": {"type": "object"}, "execution": {"taskSupport": "required"}},
                {"name": "o", "execution": {"taskSupport": "optional"}},
                {"description": "no name"}
            ],
            "nextCursor": "c2"
        });
        let (tools, left_out, next) = parse_tools_page(&r).unwrap();
        let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "o"]);
        assert_eq!(tools[0].raw, r["tools"][0], "kept as listed");
        assert_eq!(left_out.len(), 2);
        assert_eq!(left_out[0].raw, r["tools"][1]);
        assert!(
            left_out[0].reason.contains("task"),
            "{}",
            left_out[0].reason
        );
        assert_eq!(tools[0].description.as_deref(), Some("A"));
        assert_eq!(tools[1].input_schema, json!({"type": "object"}));
        assert_eq!(next.as_deref(), Some("c2"));
        let (_, _, next) = parse_tools_page(&json!({"tools": [], "nextCursor": ""})).unwrap();
        assert_eq!(next, None);
        assert!(parse_tools_page(&json!({})).is_err());
    }

    #[test]
    fn call_results_decode() {
        let r = parse_call_result(json!({
            "content": [{"type": "text", "text": "hi"}, {"type": "image", "data": "AA==", "mimeType": "image/png"}],
            "structuredContent": {"t": 1},
            "isError": true
        }))
        .unwrap();
        assert_eq!(r.content.len(), 2);
        assert_eq!(r.structured_content, Some(json!({"t": 1})));
        assert!(r.is_error);
        assert_eq!(parse_call_result(json!({})).unwrap(), CallResult::default());
        assert!(parse_call_result(json!({"resultType": "input_required"})).is_err());
        assert!(parse_call_result(json!({"content": "x"})).is_err());
        assert!(parse_call_result(json!([])).is_err());
    }

    #[test]
    fn call_params_default_arguments_to_an_object() {
        assert_eq!(
            call_params("x", Value::Null),
            json!({"name": "x", "arguments": {}})
        );
        assert_eq!(
            call_params("x", json!({"a": 1}))["arguments"],
            json!({"a": 1})
        );
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "hé…");
        assert_eq!(cut("hi", 2), "hi");
    }

    #[test]
    fn tool_not_found_answers() {
        use crate::mcp::client::RequestError;
        use crate::mcp::jsonrpc::RpcError;
        let rpc = |code, m: &str| {
            Err(RequestError::Rejected(RpcError {
                code,
                message: m.into(),
                data: None,
            }))
        };
        assert!(tool_not_found(&rpc(-32602, "Unknown tool: x")));
        assert!(tool_not_found(&rpc(-32602, "MCP error: Tool x not found")));
        assert!(!tool_not_found(&rpc(-32602, "Invalid arguments")));
        assert!(!tool_not_found(&rpc(-32603, "Unknown tool: x")));
        let err = |t: &str| Ok(json!({"isError": true, "content": [{"type":"text","text": t}]}));
        assert!(tool_not_found(&err("Unknown tool: old")));
        assert!(!tool_not_found(&err("file not found")));
        assert!(!tool_not_found(&Ok(
            json!({"content": [{"type":"text","text":"Unknown tool"}]})
        )));
    }
}
