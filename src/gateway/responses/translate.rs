//! A Responses request as a chat request: `input` items → messages (after `instructions` and
//! a previous response's items), function tools, `tool_choice`, `text.format` →
//! `response_format`, `reasoning.effort`, `max_output_tokens` → `max_completion_tokens`, and
//! the settings the response object echoes. Refuses what aiproxy cannot serve (`conversation`,
//! `background`, stored `prompt`s) with a 400 that names it.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::input;
use super::object::EchoFields;
use super::store::Stored;
use crate::api::openai::{ChatRequest, Message, Role};
use crate::api::responses::{Input, ResponsesRequest};
use crate::error::ApiError;
use crate::tools::naming;

/// A Responses request as a chat request, plus what the response and the store need.
pub(super) struct Translated {
    pub(super) chat: ChatRequest,
    /// This request's input items (normalized), for the store.
    pub(super) items: Vec<Value>,
    pub(super) ignored_include: Vec<String>,
}

pub(super) fn translate(
    r: &ResponsesRequest,
    previous: Option<&Stored>,
    origins: &HashMap<String, (String, String)>,
) -> Result<Translated, ApiError> {
    if r.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(ApiError::bad_request(
            "'conversation' (the Conversations API) is not supported by aiproxy; use \
             previous_response_id or send the full input",
        )
        .with_param("conversation"));
    }
    if r.rest
        .get("background")
        .is_some_and(|b| b == &Value::Bool(true))
    {
        return Err(
            ApiError::bad_request("background responses are not supported by aiproxy")
                .with_param("background"),
        );
    }
    if r.rest.get("prompt").is_some_and(|p| !p.is_null()) {
        return Err(ApiError::bad_request(
            "'prompt' (stored prompt templates) is not supported by aiproxy; send instructions",
        )
        .with_param("prompt"));
    }
    let client_tools = input::client_tools(r.tools.as_deref().unwrap_or_default())?;
    let tool_choice = r
        .tool_choice
        .as_ref()
        .filter(|v| !v.is_null())
        .map(input::tool_choice)
        .transpose()?;
    let response_format = match &r.text {
        Some(t) if !t.is_null() => input::response_format(t)?,
        _ => None,
    };

    let reverse: HashMap<(&str, &str), &str> = origins
        .iter()
        .map(|(exposed, (s, t))| ((s.as_str(), t.as_str()), exposed.as_str()))
        .collect();
    let exposed = |server: &str, tool: &str| -> String {
        reverse
            .get(&(server, tool))
            .map(|e| e.to_string())
            .unwrap_or_else(|| naming::base_name(server, tool))
    };

    let items: Vec<Value> = match &r.input {
        Some(Input::Text(t)) => input::items_of_text(t),
        Some(Input::Items(items)) => items.clone(),
        None => Vec::new(),
    };
    let mut messages: Vec<Message> = Vec::new();
    if let Some(i) = r.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
        messages.push(Message::text(Role::System, i));
    }
    let lead = messages.len();
    if let Some(p) = previous {
        input::to_messages(&p.items, "previous_response", &exposed, &mut messages)?;
    }
    match &r.input {
        // The common form, straight to its message (the same one its item translates to).
        Some(Input::Text(t)) => messages.push(Message::text(Role::User, t.as_str())),
        _ => input::to_messages(&items, "input", &exposed, &mut messages)?,
    }
    if messages.len() == lead {
        return Err(
            ApiError::bad_request("missing required parameter: 'input'").with_param("input")
        );
    }

    let mut rest = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            rest.insert(k.to_string(), v);
        }
    };
    put("temperature", r.temperature.map(Value::from));
    put("top_p", r.top_p.map(Value::from));
    put(
        "max_completion_tokens",
        r.max_output_tokens.map(Value::from),
    );
    put("response_format", response_format);
    put(
        "reasoning_effort",
        r.reasoning.as_ref().and_then(|x| x.get("effort")).cloned(),
    );
    put(
        "verbosity",
        r.text.as_ref().and_then(|t| t.get("verbosity")).cloned(),
    );
    put("user", r.user.clone().map(Value::from));
    if !client_tools.is_empty() {
        put(
            "parallel_tool_calls",
            r.parallel_tool_calls.map(Value::from),
        );
    }
    for k in [
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "seed",
    ] {
        put(k, r.rest.get(k).cloned());
    }
    let chat = ChatRequest {
        model: r.model.clone(),
        messages,
        stream: r.stream,
        stream_options: None,
        tools: (!client_tools.is_empty()).then_some(client_tools),
        tool_choice,
        n: None,
        rest,
    };
    Ok(Translated {
        chat,
        items,
        ignored_include: r.include.clone().unwrap_or_default(),
    })
}

/// The settings every response object echoes.
pub(super) fn echo_fields(
    r: &ResponsesRequest,
    client_tools: &[crate::api::openai::Tool],
    assistant: &crate::config::AssistantConfig,
) -> EchoFields {
    let mut text = r
        .text
        .clone()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if text.get("format").is_none_or(Value::is_null) {
        text["format"] = json!({"type": "text"});
    }
    // The rest of what the specification's response object requires: the client's value when
    // it sent one of the right type, else the default a model service reports.
    let rest = |k: &str, ok: fn(&Value) -> bool, default: Value| -> Value {
        r.rest.get(k).filter(|v| ok(v)).cloned().unwrap_or(default)
    };
    EchoFields {
        instructions: r.instructions.clone(),
        metadata: r.metadata.clone().unwrap_or_default(),
        parallel_tool_calls: r.parallel_tool_calls.unwrap_or(true),
        temperature: r.temperature.or(assistant.temperature).unwrap_or(1.0),
        top_p: r.top_p.or(assistant.top_p).unwrap_or(1.0),
        tool_choice: r
            .tool_choice
            .clone()
            .filter(|v| !v.is_null())
            .unwrap_or_else(|| json!("auto")),
        tools: input::echo_tools(client_tools),
        max_output_tokens: r.max_output_tokens,
        previous_response_id: r.previous_response_id.clone(),
        reasoning: r
            .reasoning
            .clone()
            .filter(|v| v.is_object())
            .unwrap_or_else(|| json!({"effort": null, "summary": null})),
        store: r.store.unwrap_or(true),
        text,
        truncation: "disabled",
        user: r.user.clone(),
        background: false,
        presence_penalty: rest("presence_penalty", Value::is_number, json!(0.0)),
        frequency_penalty: rest("frequency_penalty", Value::is_number, json!(0.0)),
        top_logprobs: rest("top_logprobs", Value::is_u64, json!(0)),
        max_tool_calls: rest("max_tool_calls", Value::is_u64, Value::Null),
        service_tier: "default",
        safety_identifier: rest("safety_identifier", Value::is_string, Value::Null),
        prompt_cache_key: rest("prompt_cache_key", Value::is_string, Value::Null),
    }
}
