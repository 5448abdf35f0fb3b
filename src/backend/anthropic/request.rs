//! A [`TurnRequest`] (OpenAI shapes) → the Messages API request body, and the request headers.
//! Pure; the mapping table is in the module docs of `backend::anthropic`.

use serde_json::{Map, Value, json};

use super::messages;
use super::types::{API_VERSION, DEFAULT_MAX_TOKENS};
use crate::api::openai::Tool;
use crate::backend::TurnRequest;
use crate::config::BackendConfig;
use crate::secret::Secret;

/// `content-type`, `anthropic-version`, then `default_headers` (which may replace either, or
/// add `anthropic-beta`), then `x-api-key` when a key is configured.
pub fn headers(cfg: &BackendConfig) -> Vec<(String, Secret)> {
    let mut out: Vec<(String, Secret)> = vec![
        ("content-type".into(), Secret::new("application/json")),
        ("anthropic-version".into(), Secret::new(API_VERSION)),
    ];
    let mut set = |name: &str, value: &Secret| {
        out.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        out.push((name.to_string(), value.clone()));
    };
    for (name, value) in &cfg.default_headers {
        set(name, value);
    }
    if let Some(key) = cfg.api_key.as_ref().filter(|k| !k.is_empty()) {
        set("x-api-key", key);
    }
    out
}

/// Build the body for `POST /messages`. `prompt_caching` marks the fixed prefix (the last tool
/// definition and the last system block) with `cache_control: ephemeral`.
pub fn build(req: &TurnRequest<'_>, prompt_caching: bool) -> Value {
    let conv = messages::translate(req.messages);
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("max_tokens".into(), json!(max_tokens(req.params)));

    let mut system = conv.system;
    if prompt_caching && let Some(Value::Object(last)) = system.last_mut() {
        last.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
    // One block without cache_control goes as a plain string: some servers that translate
    // the Messages API pass `system` on to backends that only take a string.
    match system.as_slice() {
        [] => {}
        [one] if one.get("cache_control").is_none() && one.get("type") == Some(&json!("text")) => {
            body.insert(
                "system".into(),
                one.get("text").cloned().unwrap_or_default(),
            );
        }
        _ => {
            body.insert("system".into(), Value::Array(system));
        }
    }

    let (tools, stubbed) = tools(req.tools, &conv.messages, prompt_caching);
    body.insert("messages".into(), Value::Array(conv.messages));
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        // The final round keeps the definitions (history has tool blocks, which the API only
        // accepts with `tools`) but must not call them; stub definitions must never be called.
        let choice = if req.final_round || stubbed {
            Some(json!({"type": "none"}))
        } else {
            tool_choice(req.tool_choice, req.params)
        };
        if let Some(choice) = choice {
            body.insert("tool_choice".into(), choice);
        }
    }

    sampling(req.params, &mut body);
    if req.stream {
        body.insert("stream".into(), json!(true));
    }
    for (k, v) in req.extra_body {
        body.insert(k.clone(), v.clone());
    }
    fit_thinking(&mut body);
    Value::Object(body)
}

/// `max_completion_tokens`, else `max_tokens`, else the default; a non-positive or non-integer
/// value falls back to the default (the API requires an integer ≥ 1).
fn max_tokens(params: &Map<String, Value>) -> u64 {
    let value = params
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| params.get("max_tokens").filter(|v| !v.is_null()));
    match value {
        None => DEFAULT_MAX_TOKENS,
        Some(v) => match v.as_u64().filter(|n| *n > 0) {
            Some(n) => n,
            None => {
                log::debug!("anthropic: unusable max_tokens value, using {DEFAULT_MAX_TOKENS}");
                DEFAULT_MAX_TOKENS
            }
        },
    }
}

/// OpenAI function tools → Anthropic tool definitions. With no tools offered but tool blocks in
/// the history, stub definitions named after the used tools are sent instead (returned flag:
/// `true`), because the API rejects such a history without `tools`.
fn tools(offered: &[Tool], messages: &[Value], prompt_caching: bool) -> (Vec<Value>, bool) {
    let mut out: Vec<Value> = offered
        .iter()
        .filter(|t| {
            let ok = t.kind == "function";
            if !ok {
                log::debug!("anthropic: tool of type '{}' dropped", t.kind);
            }
            ok
        })
        .map(|t| {
            let mut schema = match t.function.parameters.as_deref() {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            // The API requires an object schema; `{}` is OpenAI's "no parameters".
            schema.entry("type").or_insert_with(|| json!("object"));
            let mut def = Map::new();
            def.insert("name".into(), json!(t.function.name));
            if let Some(d) = t.function.description.as_deref().filter(|d| !d.is_empty()) {
                def.insert("description".into(), json!(d));
            }
            def.insert("input_schema".into(), Value::Object(schema));
            Value::Object(def)
        })
        .collect();
    let mut stubbed = false;
    if out.is_empty() && messages::has_tool_blocks(messages) {
        let mut names = messages::tool_use_names(messages);
        if names.is_empty() {
            names.push("unavailable_tool".to_string());
        }
        out = names
            .into_iter()
            .map(|name| {
                json!({
                    "name": name,
                    "description": "Not available in this request.",
                    "input_schema": {"type": "object"},
                })
            })
            .collect();
        stubbed = true;
    }
    if prompt_caching
        && !stubbed
        && let Some(Value::Object(last)) = out.last_mut()
    {
        last.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
    (out, stubbed)
}

/// OpenAI `tool_choice` (+ `parallel_tool_calls`) → Anthropic `tool_choice`.
fn tool_choice(choice: Option<&Value>, params: &Map<String, Value>) -> Option<Value> {
    let mut out = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            other => {
                log::debug!("anthropic: tool_choice '{other}' not understood, dropped");
                None
            }
        },
        Some(v) => match v.get("type").and_then(Value::as_str) {
            Some("function") => v
                .pointer("/function/name")
                .and_then(Value::as_str)
                .map(|name| json!({"type": "tool", "name": name})),
            // `allowed_tools` restricts the set; Anthropic cannot, so only the mode is kept.
            Some("allowed_tools") => match v.pointer("/allowed_tools/mode").and_then(Value::as_str)
            {
                Some("required") => Some(json!({"type": "any"})),
                _ => Some(json!({"type": "auto"})),
            },
            _ => {
                log::debug!("anthropic: tool_choice object not understood, dropped");
                None
            }
        },
    };
    if params.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = out.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    out
}

/// temperature, top_p, top_k, stop, user / safety_identifier / metadata.user_id; everything else is dropped with one debug line (the
/// API rejects unknown fields). Values are never logged.
fn sampling(params: &Map<String, Value>, body: &mut Map<String, Value>) {
    let mut dropped = Vec::new();
    for (key, value) in params {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "max_tokens" | "max_completion_tokens" => {}
            "temperature" => match value.as_f64() {
                // OpenAI allows 0–2, Anthropic 0–1.
                Some(t) => {
                    body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
                }
                None => dropped.push(key.as_str()),
            },
            "top_p" | "top_k" => {
                body.insert(key.clone(), value.clone());
            }
            "stop" => {
                let list: Vec<&str> = match value {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                // The API refuses whitespace-only stop sequences (OpenAI allows "\n").
                let kept: Vec<&str> = list.into_iter().filter(|s| !s.trim().is_empty()).collect();
                if !kept.is_empty() {
                    body.insert("stop_sequences".into(), json!(kept));
                }
            }
            "user" | "safety_identifier" | "metadata" => {}
            // Mapped into `tool_choice` (the loop strips model, messages, stream, tools, …).
            "parallel_tool_calls" => {}
            _ => dropped.push(key.as_str()),
        }
    }
    // OpenAI's end-user id (newest name first) → `metadata.user_id`.
    let user_id = ["safety_identifier", "user"]
        .iter()
        .find_map(|k| params.get(*k).and_then(Value::as_str))
        .or_else(|| params.get("metadata")?.get("user_id")?.as_str());
    if let Some(id) = user_id {
        body.insert("metadata".into(), json!({"user_id": id}));
    }
    if !dropped.is_empty() {
        log::debug!(
            "anthropic: parameters without an Anthropic equivalent dropped: {}",
            dropped.join(", ")
        );
    }
}

/// With extended thinking on (usually through `extra_body.thinking`), the API requires
/// `budget_tokens < max_tokens`, no `temperature` / `top_k`, `top_p` ≥ 0.95, and no forced tool
/// use. Adjust the body instead of letting the request fail.
fn fit_thinking(body: &mut Map<String, Value>) {
    let thinking_on = body
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t != "disabled");
    if !thinking_on {
        return;
    }
    let budget = body
        .get("thinking")
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64);
    if let Some(budget) = budget {
        let max = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
        if budget >= max {
            log::debug!("anthropic: max_tokens raised above the thinking budget");
            body.insert("max_tokens".into(), json!(budget + DEFAULT_MAX_TOKENS));
        }
    }
    for key in ["temperature", "top_k"] {
        if body.remove(key).is_some() {
            log::debug!("anthropic: {key} dropped (not allowed with extended thinking)");
        }
    }
    if body
        .get("top_p")
        .and_then(Value::as_f64)
        .is_some_and(|p| p < 0.95)
    {
        body.remove("top_p");
        log::debug!("anthropic: top_p dropped (must be ≥ 0.95 with extended thinking)");
    }
    if let Some(choice) = body.get_mut("tool_choice")
        && matches!(choice["type"].as_str(), Some("any") | Some("tool"))
    {
        log::debug!("anthropic: forced tool_choice relaxed to auto (extended thinking)");
        let disable = choice.get("disable_parallel_tool_use").cloned();
        *choice = json!({"type": "auto"});
        if let Some(d) = disable {
            choice["disable_parallel_tool_use"] = d;
        }
    }
}
