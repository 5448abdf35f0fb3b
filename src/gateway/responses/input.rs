//! Responses request → the chat shapes the agent loop runs on: input items → chat messages,
//! function tools → chat tool definitions, `tool_choice`, `text.format` → `response_format`,
//! `reasoning.effort` → `reasoning_effort`.
//!
//! Items a client sends back from an earlier output are understood: `message` (any role),
//! `function_call` / `function_call_output` (client tools), and aiproxy's own `mcp_call` items,
//! which become an assistant tool call plus its tool result so the model sees its earlier tool
//! results. `reasoning` and `mcp_list_tools` items carry nothing the chat shape can hold and are
//! skipped. `item_reference` items are replaced by the stored items they name
//! ([`resolve_references`], before translation). Anything else is a 400 naming the item and its
//! type. Pure functions.

use serde_json::{Map, Value, json};
use std::borrow::Cow;

use crate::api::openai::{Content, FunctionDef, Message, Role, Tool, ToolCall};
use crate::error::ApiError;
use crate::tools::result::ERROR_PREFIX;

/// Tool types of the Responses API that run on OpenAI's side; aiproxy cannot run them.
const BUILT_IN: &[&str] = &[
    "web_search",
    "web_search_preview",
    "file_search",
    "code_interpreter",
    "computer_use_preview",
    "computer",
    "image_generation",
    "local_shell",
    "shell",
    "apply_patch",
    "custom",
];

/// The item a string `input` stands for: one user message.
pub fn user_text_item(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
}

/// A conversation item to translate: as the client sent it (a `Value`), or as stored
/// ([`super::store::Item`], built in its JSON shape only when translated).
pub trait ConversationItem {
    /// The item in the API's JSON shape.
    fn json(&self) -> Cow<'_, Value>;
    /// Its `id`, when it has one.
    fn id(&self) -> Option<&str>;
}

impl ConversationItem for Value {
    fn json(&self) -> Cow<'_, Value> {
        Cow::Borrowed(self)
    }
    fn id(&self) -> Option<&str> {
        self.get("id").and_then(Value::as_str)
    }
}

/// Replace every `item_reference` item (`{"type": "item_reference", "id": …}`, as the Vercel AI
/// SDK sends for earlier output it saw stored) by the stored item `find` returns. A reference to
/// an item that is already in the conversation (in `known` ids, or earlier in `items`) is dropped,
/// so an item referenced twice (a call and its result) appears once. Unknown ids are a 400.
pub fn resolve_references(
    items: &mut Vec<Value>,
    known: &[impl ConversationItem],
    find: &dyn Fn(&str) -> Option<Value>,
) -> Result<(), ApiError> {
    if !items.iter().any(is_reference) {
        return Ok(());
    }
    let mut seen: std::collections::HashSet<String> = known
        .iter()
        .filter_map(ConversationItem::id)
        .chain(
            items
                .iter()
                .filter(|i| !is_reference(i))
                .filter_map(ConversationItem::id),
        )
        .map(String::from)
        .collect();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in std::mem::take(items).into_iter().enumerate() {
        if !is_reference(&item) {
            out.push(item);
            continue;
        }
        let p = format!("input[{i}]");
        let id = match item.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            _ => return Err(bad(&format!("{p}.id"), "must be a non-empty string")),
        };
        if seen.contains(id) {
            continue;
        }
        let Some(found) = find(id) else {
            let shown: String = id.chars().take(64).collect();
            return Err(bad(
                &p,
                &format!(
                    "item '{shown}' not found: it was never stored here, was evicted, or belongs \
                     to another caller; send the full item instead of a reference"
                ),
            ));
        };
        seen.insert(id.to_string());
        out.push(found);
    }
    *items = out;
    Ok(())
}

fn is_reference(item: &Value) -> bool {
    item.get("type").and_then(Value::as_str) == Some("item_reference")
}

/// Translate items (at `path[i]` for error messages) and append the messages to `out`.
/// `exposed` maps an `mcp_call` item's `(server_label, name)` to the tool's exposed name.
pub fn to_messages(
    items: &[impl ConversationItem],
    path: &str,
    exposed: &dyn Fn(&str, &str) -> String,
    out: &mut Vec<Message>,
) -> Result<(), ApiError> {
    for (i, item) in items.iter().enumerate() {
        let item = item.json();
        let p = format!("{path}[{i}]");
        let Some(obj) = item.as_object() else {
            return Err(bad(&p, "must be an object"));
        };
        let kind = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            None | Some(Value::Null) if obj.contains_key("role") => "message",
            _ => return Err(bad(&p, "needs a 'type'")),
        };
        match kind {
            "message" => out.push(message(obj, &p)?),
            "function_call" => {
                let call = ToolCall::new(
                    req_str(obj, "call_id", &p)?,
                    req_str(obj, "name", &p)?,
                    arguments(obj),
                );
                push_call(out, call);
            }
            "function_call_output" => {
                let mut m = Message::new(Role::Tool, Some(Content::Text(output_text(obj, &p)?)));
                m.tool_call_id = Some(req_str(obj, "call_id", &p)?);
                out.push(m);
            }
            "mcp_call" => {
                let output = obj.get("output").and_then(Value::as_str);
                let error = obj.get("error").and_then(Value::as_str);
                if output.is_none() && error.is_none() {
                    // A call that never finished: nothing the model could use.
                    continue;
                }
                let id = req_str(obj, "id", &p)?;
                let server = obj
                    .get("server_label")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let name = req_str(obj, "name", &p)?;
                push_call(
                    out,
                    ToolCall::new(&id, exposed(server, &name), arguments(obj)),
                );
                let text = match (output, error) {
                    (_, Some(e)) => format!("{ERROR_PREFIX}{e}"),
                    (Some(o), None) => o.to_string(),
                    (None, None) => String::new(),
                };
                let mut m = Message::new(Role::Tool, Some(Content::Text(text)));
                m.tool_call_id = Some(id);
                m.tool_error = error.is_some();
                out.push(m);
            }
            "reasoning" | "mcp_list_tools" | "mcp_approval_request" | "mcp_approval_response" => {}
            other => {
                return Err(bad(
                    &p,
                    &format!("input items of type '{other}' are not supported by aiproxy"),
                ));
            }
        }
    }
    Ok(())
}

fn bad(path: &str, msg: &str) -> ApiError {
    ApiError::bad_request(format!("invalid request: {path}: {msg}")).with_param(path)
}

fn req_str(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, ApiError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(bad(&format!("{path}.{key}"), "must be a non-empty string")),
    }
}

fn arguments(obj: &Map<String, Value>) -> String {
    match obj.get("arguments") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        _ => "{}".into(),
    }
}

/// Attach a call to the assistant message that ends the conversation, or start one.
fn push_call(out: &mut Vec<Message>, call: ToolCall) {
    match out.last_mut() {
        Some(m) if m.role == Role::Assistant => {
            m.tool_calls.get_or_insert_with(Vec::new).push(call)
        }
        _ => {
            let mut m = Message::new(Role::Assistant, None);
            m.tool_calls = Some(vec![call]);
            out.push(m);
        }
    }
}

/// `function_call_output.output`: a string, or a list of parts whose text is joined.
fn output_text(obj: &Map<String, Value>, path: &str) -> Result<String, ApiError> {
    match obj.get("output") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("")),
        Some(v @ Value::Object(_)) => Ok(v.to_string()),
        _ => Err(bad(
            &format!("{path}.output"),
            "must be a string or a list of parts",
        )),
    }
}

fn message(obj: &Map<String, Value>, path: &str) -> Result<Message, ApiError> {
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        _ => {
            return Err(bad(
                &format!("{path}.role"),
                "must be one of user, assistant, system, developer",
            ));
        }
    };
    let cpath = format!("{path}.content");
    let content = match obj.get("content") {
        Some(Value::String(s)) => Content::Text(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                out.push(content_part(part, &format!("{cpath}[{j}]"), role)?);
            }
            let lone_text = match out.as_slice() {
                [part] if part["type"] == "text" => part["text"].as_str().map(str::to_string),
                _ => None,
            };
            if let Some(text) = lone_text {
                // One text part is plain content, as chat clients send it (smaller upstream
                // requests, and servers without content-part support understand it).
                Content::Text(text)
            } else if role == Role::User {
                Content::Parts(out)
            } else {
                // Only user messages take images and files; the others are text.
                Content::Text(Content::Parts(out).to_text())
            }
        }
        _ => return Err(bad(&cpath, "must be a string or a list of content parts")),
    };
    Ok(Message::new(role, Some(content)))
}

/// One Responses content part → a chat content part.
fn content_part(part: &Value, path: &str, role: Role) -> Result<Value, ApiError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    let s = |k: &str| part.get(k).and_then(Value::as_str);
    match kind {
        "input_text" | "output_text" | "text" | "summary_text" => match s("text") {
            Some(t) => Ok(json!({"type": "text", "text": t})),
            None => Err(bad(&format!("{path}.text"), "must be a string")),
        },
        "refusal" => Ok(json!({"type": "text", "text": s("refusal").unwrap_or("")})),
        "input_image" if role == Role::User => match s("image_url") {
            Some(url) => {
                let mut image = json!({ "url": url });
                if let Some(d) = s("detail") {
                    image["detail"] = json!(d);
                }
                Ok(json!({"type": "image_url", "image_url": image}))
            }
            None => Err(bad(
                path,
                "input_image needs an 'image_url' (a URL or a data URL); file_id is not supported",
            )),
        },
        "input_file" if role == Role::User => match s("file_data") {
            Some(data) => {
                let mut file = json!({ "file_data": data });
                if let Some(n) = s("filename") {
                    file["filename"] = json!(n);
                }
                Ok(json!({"type": "file", "file": file}))
            }
            None => Err(bad(
                path,
                "input_file needs 'file_data'; file_id and file_url are not supported",
            )),
        },
        other => Err(bad(
            &format!("{path}.type"),
            &format!("content parts of type '{other}' are not supported here"),
        )),
    }
}

/// `tools`: function tools become chat tools; every other type is refused, by name.
pub fn client_tools(tools: &[Value]) -> Result<Vec<Tool>, ApiError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let p = format!("tools[{i}]");
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "function" => {
                let Some(name) = t
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                else {
                    return Err(bad(&format!("{p}.name"), "a function tool needs a name"));
                };
                let mut rest = Map::new();
                if let Some(strict) = t.get("strict").filter(|v| v.is_boolean()) {
                    rest.insert("strict".into(), strict.clone());
                }
                out.push(Tool {
                    kind: "function".into(),
                    function: FunctionDef {
                        name: name.to_string(),
                        description: t
                            .get("description")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        parameters: t
                            .get("parameters")
                            .filter(|v| !v.is_null())
                            .map(|v| std::sync::Arc::new(v.clone())),
                        rest,
                    },
                });
            }
            "mcp" => {
                return Err(bad(
                    &p,
                    "tools of type 'mcp' are not supported: the assistant's MCP servers are \
                     configured in aiproxy and run server-side",
                ));
            }
            t if BUILT_IN.contains(&t) => {
                return Err(bad(
                    &p,
                    &format!(
                        "tools of type '{t}' are not supported: aiproxy cannot run built-in tools"
                    ),
                ));
            }
            other => {
                return Err(bad(
                    &format!("{p}.type"),
                    &format!("unsupported tool type '{other}'"),
                ));
            }
        }
    }
    Ok(out)
}

/// Responses `tool_choice` → the chat form.
pub fn tool_choice(v: &Value) -> Result<Value, ApiError> {
    match v {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(v.clone()),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => match o.get("name").and_then(Value::as_str) {
                Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
                None => Err(bad("tool_choice.name", "must name the function")),
            },
            Some("allowed_tools") => {
                let tools: Vec<Value> = o
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(|ts| {
                        ts.iter()
                            .filter_map(|t| t.get("name").and_then(Value::as_str))
                            .map(|n| json!({"type": "function", "function": {"name": n}}))
                            .collect()
                    })
                    .unwrap_or_default();
                let mode = o.get("mode").and_then(Value::as_str).unwrap_or("auto");
                Ok(
                    json!({"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": tools}}),
                )
            }
            Some(other) => Err(bad(
                "tool_choice",
                &format!("tool_choice of type '{other}' is not supported"),
            )),
            None => Err(bad("tool_choice", "needs a 'type'")),
        },
        _ => Err(bad(
            "tool_choice",
            "must be auto, none, required or an object",
        )),
    }
}

/// `text.format` → chat `response_format` (`None` for plain text).
pub fn response_format(text: &Value) -> Result<Option<Value>, ApiError> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for k in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                    schema.insert(k.into(), v.clone());
                }
            }
            if !schema.contains_key("schema") {
                return Err(bad(
                    "text.format.schema",
                    "a json_schema format needs a 'schema'",
                ));
            }
            schema.entry("name").or_insert_with(|| json!("response"));
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(bad(
            "text.format.type",
            "must be one of text, json_object, json_schema",
        )),
    }
}

/// Responses tools as echoed in the response object.
pub fn echo_tools(tools: &[Tool]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| {
            json!({
                "type": "function",
                "name": t.function.name,
                "description": t.function.description,
                "parameters": t.function.parameters,
                "strict": t.function.rest.get("strict").cloned().unwrap_or(Value::Bool(false)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposed(server: &str, tool: &str) -> String {
        format!("{server}__{tool}")
    }

    fn translate(items: Value) -> Result<Vec<Message>, ApiError> {
        let mut out = Vec::new();
        to_messages(items.as_array().unwrap(), "input", &exposed, &mut out).map(|()| out)
    }

    #[test]
    fn messages_and_parts() {
        let m = translate(json!([
            {"role": "developer", "content": "be brief"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "what is "},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}
            ]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a cat", "annotations": []}]}
        ]))
        .unwrap();
        assert_eq!(m[0].role, Role::Developer);
        let Some(Content::Parts(parts)) = &m[1].content else {
            panic!()
        };
        assert_eq!(parts[1]["image_url"]["url"], "data:image/png;base64,AAAA");
        assert_eq!(parts[1]["image_url"]["detail"], "low");
        assert_eq!(m[2].content, Some(Content::Text("a cat".into())));
    }

    #[test]
    fn function_and_mcp_calls_become_tool_messages() {
        let m = translate(json!([
            {"role": "user", "content": "hi"},
            {"type": "message", "role": "assistant", "content": "Let me look."},
            {"type": "mcp_call", "id": "mcp_1", "server_label": "demo", "name": "add", "arguments": "{\"a\":1}", "output": "3"},
            {"type": "mcp_call", "id": "mcp_2", "server_label": "demo", "name": "add", "arguments": "{}", "error": "boom"},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "reasoning", "id": "rs_1", "summary": []}
        ]))
        .unwrap();
        assert_eq!(m.len(), 7, "{m:?}");
        let calls = m[1].tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].function.name, "demo__add");
        assert_eq!(m[1].text_content(), "Let me look.");
        assert_eq!((m[2].role, m[2].text_content().as_str()), (Role::Tool, "3"));
        assert!(m[4].text_content().starts_with(ERROR_PREFIX) && m[4].tool_error);
        // The second mcp call follows a tool result: a new assistant message.
        assert_eq!(m[3].tool_calls.as_ref().unwrap()[0].id, "mcp_2");
        let last = m.last().unwrap();
        assert_eq!(last.tool_call_id.as_deref(), Some("c1"));
        let err = translate(json!([{"type": "item_reference", "id": "x"}])).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input[0]"));
        assert!(err.message.contains("item_reference"));
    }

    #[test]
    fn tools_and_formats() {
        let t = client_tools(&[
            json!({"type":"function","name":"f","parameters":{"type":"object"},"strict":true}),
        ])
        .unwrap();
        assert_eq!(t[0].function.name, "f");
        assert_eq!(t[0].function.rest["strict"], json!(true));
        for kind in [
            "web_search",
            "file_search",
            "code_interpreter",
            "computer_use_preview",
            "image_generation",
            "mcp",
        ] {
            let e = client_tools(&[json!({"type": kind})]).unwrap_err();
            assert!(e.message.contains(&format!("'{kind}'")), "{}", e.message);
            assert_eq!(e.status, 400);
        }
        assert_eq!(
            tool_choice(&json!({"type":"function","name":"f"})).unwrap(),
            json!({"type":"function","function":{"name":"f"}})
        );
        let f = response_format(&json!({"format":{"type":"json_schema","name":"x","schema":{"type":"object"},"strict":true}})).unwrap().unwrap();
        assert_eq!(f["json_schema"]["name"], "x");
        assert_eq!(f["json_schema"]["strict"], true);
        assert_eq!(
            response_format(&json!({"format":{"type":"text"}})).unwrap(),
            None
        );
    }
}
