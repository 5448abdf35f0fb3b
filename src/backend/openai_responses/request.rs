//! A [`TurnRequest`] (OpenAI chat shapes) → the Responses API request body. Pure; the mapping
//! table is in the module docs of `backend::openai_responses`.

// Builds from client input: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use serde_json::{Map, Value, json};

use super::types::{ENCRYPTED_REASONING, MIN_OUTPUT_TOKENS};
use crate::api::openai::{Content, Message, Role, Tool, ToolImage};
use crate::backend::TurnRequest;

/// Build the body for `POST /responses`. `encrypted_reasoning`: ask for reasoning items with
/// `encrypted_content` (off for models that refuse it).
pub fn build(req: &TurnRequest<'_>, encrypted_reasoning: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    let (instructions, input) = input(req.messages);
    if let Some(i) = instructions {
        body.insert("instructions".into(), json!(i));
    }
    body.insert("input".into(), Value::Array(input));

    let tools: Vec<Value> = req.tools.iter().filter_map(tool).collect();
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        // The last round keeps the definitions (the history has calls) but must not call.
        let choice = if req.final_round {
            Some(json!("none"))
        } else {
            req.tool_choice.and_then(tool_choice)
        };
        if let Some(c) = choice {
            body.insert("tool_choice".into(), c);
        }
        if let Some(p) = req
            .params
            .get("parallel_tool_calls")
            .filter(|p| p.is_boolean())
        {
            body.insert("parallel_tool_calls".into(), p.clone());
        }
    }
    params(req.params, &mut body);
    body.insert("store".into(), json!(false));
    if req.stream {
        body.insert("stream".into(), json!(true));
    }
    for (k, v) in req.extra_body {
        if v.is_null() {
            body.remove(k);
        } else {
            body.insert(k.clone(), v.clone());
        }
    }
    // Without storage the reasoning of one round can only be sent back encrypted.
    let stored = body.get("store") == Some(&Value::Bool(true));
    if encrypted_reasoning && !stored && !req.extra_body.contains_key("include") {
        let list = body.entry("include").or_insert_with(|| json!([]));
        if let Value::Array(items) = list
            && !items.iter().any(|i| i == ENCRYPTED_REASONING)
        {
            items.push(json!(ENCRYPTED_REASONING));
        }
    }
    Value::Object(body)
}

/// Leading system / developer messages → `instructions`; every other message → input items.
fn input(messages: &[Message]) -> (Option<String>, Vec<Value>) {
    let lead = messages
        .iter()
        .take_while(|m| matches!(m.role, Role::System | Role::Developer))
        .count();
    let (head, rest) = messages.split_at(lead);
    let instructions: Vec<String> = head
        .iter()
        .map(Message::text_content)
        .filter(|t| !t.trim().is_empty())
        .collect();
    let mut items = Vec::new();
    for m in rest {
        match m.role {
            Role::System | Role::Developer => {
                let text = m.text_content();
                if !text.trim().is_empty() {
                    let role = if m.role == Role::System {
                        "system"
                    } else {
                        "developer"
                    };
                    items.push(json!({"role": role, "content": text}));
                }
            }
            Role::User => {
                if let Some(content) = user_content(m.content.as_ref()) {
                    items.push(json!({"role": "user", "content": content}));
                }
            }
            Role::Assistant => assistant_items(m, &mut items),
            Role::Tool => items.push(tool_output(m)),
            Role::Function => log::debug!("openai-responses: legacy 'function' message dropped"),
        }
    }
    let instructions = (!instructions.is_empty()).then(|| instructions.join("\n\n"));
    (instructions, items)
}

/// User content: a string stays a string; parts become `input_text` / `input_image` /
/// `input_file` (audio and unknown parts are dropped, logged).
fn user_content(content: Option<&Content>) -> Option<Value> {
    match content? {
        Content::Text(s) => Some(json!(s)),
        Content::Parts(parts) => {
            let out: Vec<Value> = parts.iter().filter_map(input_part).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
    }
}

fn input_part(p: &Value) -> Option<Value> {
    let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" | "input_text" => Some(json!({"type": "input_text",
            "text": p.get("text").and_then(Value::as_str).unwrap_or("")})),
        "image_url" => {
            let (url, detail) = match p.get("image_url") {
                Some(Value::String(s)) => (Some(s.as_str()), None),
                Some(v) => (v.get("url").and_then(Value::as_str), v.get("detail")),
                None => (None, None),
            };
            let detail = detail.filter(|d| d.is_string()).cloned();
            Some(json!({"type": "input_image", "image_url": url?,
                "detail": detail.unwrap_or_else(|| json!("auto"))}))
        }
        "file" => {
            let f = p.get("file")?;
            let mut part = Map::new();
            part.insert("type".into(), json!("input_file"));
            for k in ["file_id", "file_data", "filename"] {
                if let Some(v) = f.get(k).filter(|v| v.is_string()) {
                    part.insert(k.into(), v.clone());
                }
            }
            Some(Value::Object(part))
        }
        "input_image" | "input_file" => Some(p.clone()),
        other => {
            log::debug!("openai-responses: content part '{other}' has no Responses form, dropped");
            None
        }
    }
}

/// An assistant message: its output items as received when they carry reasoning
/// (`provider_state`, the round's output, verbatim — reasoning items must precede the calls
/// they led to, under the same ids), otherwise its text and one `function_call` per call.
fn assistant_items(m: &Message, items: &mut Vec<Value>) {
    let calls = m.tool_calls.as_deref().unwrap_or_default();
    if let Some(Value::Array(state)) = &m.provider_state {
        let stored_calls: Vec<&str> = state
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call"))
            .filter_map(|i| i.get("call_id").and_then(Value::as_str))
            .collect();
        let wanted: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        if stored_calls == wanted {
            items.extend(state.iter().filter(|i| i.is_object()).cloned());
            return;
        }
        // The calls changed since: keep the reasoning, rebuild the rest.
        items.extend(
            state
                .iter()
                .filter(|i| i.get("type").and_then(Value::as_str) == Some("reasoning"))
                .cloned(),
        );
    }
    let mut text = m.text_content();
    if let Some(Value::String(refusal)) = m.rest.get("refusal") {
        text.push_str(refusal);
    }
    if !text.is_empty() {
        items.push(json!({"role": "assistant", "content": text}));
    }
    for c in calls {
        let args = if c.function.arguments.trim().is_empty() {
            "{}"
        } else {
            c.function.arguments.as_str()
        };
        items.push(json!({"type": "function_call", "call_id": c.id,
            "name": c.function.name, "arguments": args}));
    }
}

/// A tool result → `function_call_output`; with images, `output` is a list of `input_text` and
/// `input_image` parts, else the text.
fn tool_output(m: &Message) -> Value {
    let call_id = m.tool_call_id.as_deref().unwrap_or("");
    let text = m.text_content();
    let output = if m.tool_images.is_empty() {
        json!(text)
    } else {
        let mut parts = vec![json!({"type": "input_text", "text": text})];
        parts.extend(m.tool_images.iter().map(image_part));
        Value::Array(parts)
    };
    json!({"type": "function_call_output", "call_id": call_id, "output": output})
}

fn image_part(img: &ToolImage) -> Value {
    json!({"type": "input_image", "image_url": format!("data:{};base64,{}", img.media_type, img.data)})
}

/// A chat function tool → a Responses function tool. `strict` is `false` unless the tool says
/// otherwise: the Responses API defaults to strict schemas, which MCP tool schemas rarely meet.
fn tool(t: &Tool) -> Option<Value> {
    if t.kind != "function" {
        log::debug!("openai-responses: tool of type '{}' dropped", t.kind);
        return None;
    }
    let mut def = Map::new();
    def.insert("type".into(), json!("function"));
    def.insert("name".into(), json!(t.function.name));
    if let Some(d) = t.function.description.as_deref().filter(|d| !d.is_empty()) {
        def.insert("description".into(), json!(d));
    }
    let params = match t.function.parameters.as_deref() {
        Some(Value::Object(p)) => Value::Object(p.clone()),
        _ => json!({"type": "object", "properties": {}}),
    };
    def.insert("parameters".into(), params);
    let strict = t.function.rest.get("strict").filter(|s| s.is_boolean());
    def.insert("strict".into(), strict.cloned().unwrap_or(json!(false)));
    Some(Value::Object(def))
}

/// Chat `tool_choice` → Responses: the strings as they are, `{"type":"function","function":
/// {"name"}}` → `{"type":"function","name"}`, `allowed_tools` flattened the same way.
fn tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Some(json!(s)),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = o
                    .get("name")
                    .or_else(|| o.get("function").and_then(|f| f.get("name")))
                    .and_then(Value::as_str)?;
                Some(json!({"type": "function", "name": name}))
            }
            Some("allowed_tools") => {
                let inner = o.get("allowed_tools").unwrap_or(choice);
                let mode = inner.get("mode").and_then(Value::as_str).unwrap_or("auto");
                let tools: Vec<Value> = inner
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        t.get("name")
                            .or_else(|| t.get("function").and_then(|f| f.get("name")))
                            .and_then(Value::as_str)
                    })
                    .map(|name| json!({"type": "function", "name": name}))
                    .collect();
                Some(json!({"type": "allowed_tools", "mode": mode, "tools": tools}))
            }
            _ => None,
        },
        _ => {
            log::debug!("openai-responses: tool_choice not understood, dropped");
            None
        }
    }
}

/// Parameters under chat names → Responses fields; the rest is dropped with one debug line (the
/// API refuses unknown parameters). Values are never logged.
fn params(params: &Map<String, Value>, body: &mut Map<String, Value>) {
    let mut dropped = Vec::new();
    let mut text = Map::new();
    for (key, value) in params {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            // Ours, or mapped elsewhere.
            "model"
            | "messages"
            | "input"
            | "stream"
            | "stream_options"
            | "tools"
            | "tool_choice"
            | "parallel_tool_calls"
            | "max_tokens"
            | "max_completion_tokens"
            | "store"
            | "logprobs" => {}
            "temperature"
            | "top_p"
            | "top_logprobs"
            | "user"
            | "safety_identifier"
            | "prompt_cache_key"
            | "prompt_cache_retention"
            | "service_tier"
            | "metadata"
            | "truncation"
            | "max_tool_calls"
            | "include" => {
                body.insert(key.clone(), value.clone());
            }
            "reasoning_effort" => {
                if let Value::Object(r) = body.entry("reasoning").or_insert_with(|| json!({})) {
                    r.insert("effort".into(), value.clone());
                }
            }
            "reasoning" if value.is_object() => {
                let r = body.entry("reasoning").or_insert_with(|| json!({}));
                if let (Value::Object(dst), Value::Object(src)) = (r, value) {
                    for (k, v) in src {
                        dst.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            "response_format" => match format(value) {
                Some(f) => {
                    text.insert("format".into(), f);
                }
                None => dropped.push(key.as_str()),
            },
            "verbosity" => {
                text.insert("verbosity".into(), value.clone());
            }
            _ => dropped.push(key.as_str()),
        }
    }
    let max = params
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| params.get("max_tokens").filter(|v| !v.is_null()))
        .and_then(Value::as_u64);
    if let Some(n) = max {
        if n < MIN_OUTPUT_TOKENS {
            log::debug!("openai-responses: max_output_tokens raised to the API's minimum");
        }
        body.insert("max_output_tokens".into(), json!(n.max(MIN_OUTPUT_TOKENS)));
    }
    if !text.is_empty() {
        body.insert("text".into(), Value::Object(text));
    }
    if !dropped.is_empty() {
        log::debug!(
            "openai-responses: parameters without a Responses equivalent dropped: {}",
            dropped.join(", ")
        );
    }
}

/// Chat `response_format` → `text.format` (`json_schema`'s inner object flattened into it).
fn format(rf: &Value) -> Option<Value> {
    match rf.get("type").and_then(Value::as_str)? {
        "text" => Some(json!({"type": "text"})),
        "json_object" => Some(json!({"type": "json_object"})),
        "json_schema" => {
            let mut f = Map::new();
            f.insert("type".into(), json!("json_schema"));
            if let Some(Value::Object(inner)) = rf.get("json_schema") {
                for (k, v) in inner {
                    f.insert(k.clone(), v.clone());
                }
            }
            f.entry("name").or_insert_with(|| json!("response"));
            Some(Value::Object(f))
        }
        _ => None,
    }
}
