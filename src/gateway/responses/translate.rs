//! A Responses request as a chat request: `input` items → messages (after `instructions` and
//! a previous response's items), function tools, `tool_choice`, `text.format` →
//! `response_format`, `reasoning.effort`, `max_output_tokens` → `max_completion_tokens`.
//! Refuses what aiproxy cannot serve (`conversation`, `background`, stored `prompt`s) with a
//! 400 that names it.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::input;
use super::store::Stored;
use crate::api::openai::{ChatRequest, Message, Role};
use crate::api::responses::{Input, ResponsesRequest};
use crate::error::ApiError;
use crate::tools::naming;

/// A Responses request as a chat request, plus the `include` values it ignores.
pub(super) struct Translated {
    pub(super) chat: ChatRequest,
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
        Some(Input::Items(items)) => input::to_messages(items, "input", &exposed, &mut messages)?,
        None => {}
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
        ignored_include: r.include.clone().unwrap_or_default(),
    })
}
