//! The `mock` backend (docs/backends.md#mock): a deterministic offline model for the demo config and tests.
//!
//! Every answer is decided from the request alone (no state), looking at the messages after
//! the last user message:
//! - the conversation ends with tool results → answer in text from them ("2 + 3 = 5.");
//! - else, unless this is the final round, the user asked for something an offered tool can do
//!   (`intent`; tools match on the part after the last `__` of their exposed name) → call
//!   it, with a short lead-in text and `finish_reason: tool_calls`;
//! - else, unless this is the final round, a client-defined tool whose name the user's text
//!   mentions (`extras`) → call it with arguments from its schema;
//! - else → `You said: <text>` (or, on a final round that needed a tool, a refusal in text).
//!
//! A JSON `response_format` turns the final text into JSON (`{"answer": …}`, or an instance of
//! the requested schema) and drops the lead-in text of tool calls.
//!
//! Tool-call ids are `call_<n>`, numbered after the calls already in the history. Usage counts
//! words (prompt: every message; completion: the answer plus one per tool call). `max_tokens`
//! cuts the text to that many words with `finish_reason: length`. Streaming sends the text word
//! by word through the sink on the calling thread; `model` is ignored.

mod extras;
mod intent;

use serde_json::Value;

use super::{Backend, Error, Turn, TurnRequest, TurnSink};
use crate::api::openai::{FinishReason, Message, Role, Tool, ToolCall, Usage};
use intent::Intent;

pub struct MockBackend;

impl Backend for MockBackend {
    fn turn(&self, req: &TurnRequest<'_>, sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        let mut turn = decide(req);
        if let Some(max) = max_tokens(req) {
            let words = split_words(&turn.content);
            if turn.tool_calls.is_empty() && words.len() as u64 > max {
                turn.content = words[..max as usize].concat();
                turn.finish_reason = FinishReason::Length;
            }
        }
        if let Some(json) = extras::structured(req.params, &turn.content) {
            // A structured answer has no chatty lead-in before its tool calls.
            turn.content = if turn.tool_calls.is_empty() {
                json
            } else {
                String::new()
            };
        }
        turn.usage = Usage {
            prompt_tokens: req
                .messages
                .iter()
                .map(|m| word_count(&m.text_content()))
                .sum(),
            completion_tokens: word_count(&turn.content) + turn.tool_calls.len() as u64,
            ..Usage::default()
        };
        if req.stream {
            for delta in split_words(&turn.content) {
                sink.text(delta)?;
            }
        }
        Ok(turn)
    }
}

fn decide(req: &TurnRequest<'_>) -> Turn {
    let msgs = req.messages;
    let last_user = msgs.iter().rposition(|m| m.role == Role::User);
    if msgs.last().is_some_and(|m| m.role == Role::Tool) {
        return text_turn(answer_from_tools(msgs));
    }
    let Some(user_text) = last_user.map(|i| msgs[i].text_content()) else {
        return text_turn("Hello! I am the mock model; ask me something.".into());
    };
    let wanted: Vec<(Intent, &Tool)> = intent::parse(&user_text)
        .into_iter()
        .filter_map(|i| {
            let tool = req
                .tools
                .iter()
                .find(|t| base_name(&t.function.name) == i.tool())?;
            Some((i, tool))
        })
        .collect();
    if wanted.is_empty() {
        if let (false, Some((tool, args))) = (
            req.final_round,
            extras::client_tool_call(req.tools, &user_text),
        ) {
            let id = format!(
                "call_{}",
                1 + msgs
                    .iter()
                    .filter_map(|m| m.tool_calls.as_ref())
                    .map(Vec::len)
                    .sum::<usize>()
            );
            let mut turn = text_turn(String::new());
            turn.tool_calls = vec![ToolCall::new(
                id,
                tool.function.name.clone(),
                args.to_string(),
            )];
            turn.finish_reason = FinishReason::ToolCalls;
            return turn;
        }
        return text_turn(format!("You said: {user_text}"));
    }
    if req.final_round {
        return text_turn(format!("I can't use tools now; you asked: {user_text}"));
    }
    let first_id = 1 + msgs
        .iter()
        .filter_map(|m| m.tool_calls.as_ref())
        .map(Vec::len)
        .sum::<usize>();
    let mut calls = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (intent, tool) in &wanted {
        let (args, copies) = intent.arguments();
        let args = fit_text_argument(args, tool);
        for _ in 0..copies {
            let id = format!("call_{}", first_id + calls.len());
            calls.push(ToolCall::new(
                id,
                tool.function.name.clone(),
                args.to_string(),
            ));
        }
        if !names.contains(&intent.tool()) {
            names.push(intent.tool());
        }
    }
    let lead = match names.as_slice() {
        [one] => format!("Let me use the {one} tool."),
        [init @ .., last] => format!("Let me use the {} and {last} tools.", init.join(", ")),
        [] => String::new(),
    };
    Turn {
        content: lead,
        tool_calls: calls,
        finish_reason: FinishReason::ToolCalls,
        usage: Usage::default(),
        provider_state: None,
    }
}

/// Text from the tool results that end the conversation, matched to the calls that asked.
fn answer_from_tools(msgs: &[Message]) -> String {
    let start = msgs
        .iter()
        .rposition(|m| m.role != Role::Tool)
        .map_or(0, |i| i + 1);
    let calls: &[ToolCall] = start
        .checked_sub(1)
        .and_then(|i| msgs[i].tool_calls.as_deref())
        .unwrap_or(&[]);
    let parts: Vec<String> = msgs[start..]
        .iter()
        .map(|m| {
            let result = m.text_content();
            let result = result.trim();
            let call = calls
                .iter()
                .find(|c| Some(&c.id) == m.tool_call_id.as_ref());
            describe_result(call, result)
        })
        .collect();
    parts.join(" ")
}

fn describe_result(call: Option<&ToolCall>, result: &str) -> String {
    let Some(call) = call else {
        return format!("A tool returned: {result}");
    };
    let tool = base_name(&call.function.name);
    if let Some(err) = result.strip_prefix("[tool error]") {
        return format!("The {tool} tool failed: {}", err.trim());
    }
    if tool == "add" {
        let args: Value = serde_json::from_str(&call.function.arguments).unwrap_or(Value::Null);
        if let (Some(a), Some(b)) = (args.get("a"), args.get("b")) {
            return format!("{a} + {b} = {result}.");
        }
    }
    format!("The {tool} tool returned: {result}")
}

fn text_turn(content: String) -> Turn {
    Turn {
        content,
        tool_calls: Vec::new(),
        finish_reason: FinishReason::Stop,
        usage: Usage::default(),
        provider_state: None,
    }
}

/// A one-text-argument call (`{"text": …}`) renamed to the tool's own string parameter when its
/// schema has exactly one (server-everything's `echo` takes `message`), so the mock can drive
/// real servers too.
fn fit_text_argument(args: Value, tool: &Tool) -> Value {
    let Some(text) = args
        .get("text")
        .filter(|_| args.as_object().is_some_and(|o| o.len() == 1))
    else {
        return args;
    };
    let props = tool
        .function
        .parameters
        .as_deref()
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object);
    let strings: Vec<&String> = props
        .map(|p| {
            p.iter()
                .filter(|(_, v)| v.get("type").and_then(Value::as_str) == Some("string"))
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default();
    match strings.as_slice() {
        [only] if only.as_str() != "text" => serde_json::json!({ only.as_str(): text }),
        _ => args,
    }
}

/// `server__tool` → `tool`; names without `__` are their own base (client tools).
fn base_name(exposed: &str) -> &str {
    exposed.rsplit("__").next().unwrap_or(exposed)
}

fn max_tokens(req: &TurnRequest<'_>) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.params.get(*k).and_then(Value::as_u64))
}

/// Words with their leading whitespace, so the pieces concatenate back to the text.
fn split_words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() && in_word {
            out.push(&text[start..i]);
            start = i;
            in_word = false;
        } else if !c.is_whitespace() {
            in_word = true;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[cfg(test)]
mod tests;
