//! OpenAI messages → Anthropic `system` blocks and a strictly alternating `messages` list.
//!
//! Rules (the mapping table is in the module docs of `backend::anthropic`): system and
//! developer messages, wherever they are, become `system` text blocks in order; user parts map
//! to text / image / document blocks; an assistant turn is its `provider_state` blocks
//! (thinking, first), its text, then one `tool_use` per tool call; tool messages become
//! `tool_result` blocks of the following user turn (first in it, as the API requires), with
//! `is_error` and image blocks; consecutive same-role turns are merged; the list starts with a
//! user turn. Empty and whitespace-only text blocks are never sent (the API rejects them). Pure.

use serde_json::{Map, Value, json};

use crate::api::openai::{Content, Message, Role, ToolImage};

/// Text of the user turn inserted when a conversation does not start with one (the API
/// requires it).
pub const LEADING_USER_TEXT: &str = "(continued)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    User,
    Assistant,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::User => "user",
            Side::Assistant => "assistant",
        }
    }
}

/// The translated conversation.
#[derive(Debug, Default, PartialEq)]
pub struct Conversation {
    pub system: Vec<Value>,
    /// `{"role","content":[blocks]}` values, alternating, starting with `user`.
    pub messages: Vec<Value>,
}

pub fn translate(messages: &[Message]) -> Conversation {
    let mut system = Vec::new();
    let mut turns: Vec<(Side, Vec<Value>)> = Vec::new();
    for m in messages {
        match m.role {
            Role::System | Role::Developer => {
                system.extend(content_blocks(m.content.as_ref(), Allowed::TextOnly));
            }
            Role::User => push(&mut turns, Side::User, user_blocks(m)),
            Role::Assistant => push(&mut turns, Side::Assistant, assistant_blocks(m)),
            Role::Tool => push(&mut turns, Side::User, vec![tool_result(m)]),
            Role::Function => {
                log::debug!("anthropic: legacy 'function' message dropped");
            }
        }
    }
    for (side, blocks) in &mut turns {
        if *side == Side::User {
            // tool_result blocks must come first in their user turn.
            blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
        }
    }
    if turns.first().map(|t| t.0) != Some(Side::User) {
        turns.insert(0, (Side::User, vec![text_block(LEADING_USER_TEXT)]));
    }
    let mut messages: Vec<Value> = turns
        .into_iter()
        .map(|(side, content)| json!({"role": side.as_str(), "content": content}))
        .collect();
    trim_final_assistant(&mut messages);
    Conversation { system, messages }
}

/// Append blocks to the conversation, merging with the previous turn of the same role.
fn push(turns: &mut Vec<(Side, Vec<Value>)>, side: Side, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, existing)) if *last == side => existing.extend(blocks),
        _ => turns.push((side, blocks)),
    }
}

/// Append an assistant turn (the content of a paused response) to a translated `messages`
/// list, merging with a trailing assistant turn; empty text blocks are left out.
pub fn append_assistant(messages: &mut Vec<Value>, content: &[Value]) {
    let blocks: Vec<Value> = content
        .iter()
        .filter(|b| {
            b.get("type").and_then(Value::as_str) != Some("text")
                || b.get("text")
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.trim().is_empty())
        })
        .cloned()
        .collect();
    if blocks.is_empty() {
        return;
    }
    let last_is_assistant = messages
        .last()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("assistant");
    match messages.last_mut().and_then(|m| m.get_mut("content")) {
        Some(Value::Array(existing)) if last_is_assistant => existing.extend(blocks),
        _ => messages.push(json!({"role": "assistant", "content": blocks})),
    }
    trim_final_assistant(messages);
}

/// A conversation ending in an assistant turn is a prefill, and the API rejects prefill text
/// ending in whitespace: trim it (dropping a block or turn that becomes empty).
fn trim_final_assistant(messages: &mut Vec<Value>) {
    let Some(last) = messages.last_mut() else {
        return;
    };
    if last.get("role").and_then(Value::as_str) != Some("assistant") {
        return;
    }
    let Some(Value::Array(blocks)) = last.get_mut("content") else {
        return;
    };
    if let Some(Value::Object(b)) = blocks.last_mut()
        && b.get("type").and_then(Value::as_str) == Some("text")
        && let Some(Value::String(t)) = b.get_mut("text")
    {
        let trimmed = t.trim_end().len();
        t.truncate(trimmed);
        if t.is_empty() {
            blocks.pop();
        }
    }
    if blocks.is_empty() {
        messages.pop();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// System prompts and assistant text.
    TextOnly,
    /// User and tool content: images and documents too.
    Media,
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// A text block, or nothing for empty / whitespace-only text.
fn nonempty_text(text: &str) -> Option<Value> {
    (!text.trim().is_empty()).then(|| text_block(text))
}

fn content_blocks(content: Option<&Content>, allowed: Allowed) -> Vec<Value> {
    match content {
        None => Vec::new(),
        Some(Content::Text(s)) => nonempty_text(s).into_iter().collect(),
        Some(Content::Parts(parts)) => parts.iter().filter_map(|p| part(p, allowed)).collect(),
    }
}

/// One OpenAI content part → one Anthropic block (or nothing, with a debug log).
fn part(p: &Value, allowed: Allowed) -> Option<Value> {
    let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
    match (kind, allowed) {
        ("text", _) => nonempty_text(p.get("text").and_then(Value::as_str).unwrap_or("")),
        // An assistant's earlier refusal is still what it said.
        ("refusal", _) => nonempty_text(p.get("refusal").and_then(Value::as_str).unwrap_or("")),
        ("image_url", Allowed::Media) => {
            // `image_url` is `{"url": …, "detail": …}`; a few clients send the bare string.
            let url = match p.get("image_url") {
                Some(Value::String(s)) => Some(s.as_str()),
                Some(v) => v.get("url").and_then(Value::as_str),
                None => None,
            };
            url.and_then(image_block)
        }
        ("file", Allowed::Media) => document_block(p.get("file").unwrap_or(&Value::Null)),
        _ => {
            log::debug!("anthropic: content part '{kind}' not translatable here, dropped");
            None
        }
    }
}

/// `data:<media type>;base64,<data>` → (media type, data).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((
        if media_type.is_empty() {
            "image/png"
        } else {
            media_type
        },
        data,
    ))
}

fn image_block(url: &str) -> Option<Value> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Some(json!({"type": "image", "source": {
            "type": "base64", "media_type": media_type, "data": data,
        }}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Some(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    log::debug!("anthropic: image with an unsupported URL scheme dropped");
    None
}

/// OpenAI `file` part with inline PDF data → a `document` block. Uploaded file ids and other
/// media types have no Anthropic equivalent here.
fn document_block(file: &Value) -> Option<Value> {
    let data_url = file.get("file_data").and_then(Value::as_str).unwrap_or("");
    match parse_data_url(data_url) {
        Some(("application/pdf", data)) => {
            let mut doc = json!({"type": "document", "source": {
                "type": "base64", "media_type": "application/pdf", "data": data,
            }});
            if let Some(name) = file.get("filename").and_then(Value::as_str) {
                doc["title"] = json!(name);
            }
            Some(doc)
        }
        _ => {
            log::debug!("anthropic: file part that is not an inline PDF dropped");
            None
        }
    }
}

fn user_blocks(m: &Message) -> Vec<Value> {
    content_blocks(m.content.as_ref(), Allowed::Media)
}

fn assistant_blocks(m: &Message) -> Vec<Value> {
    let mut blocks = Vec::new();
    // Thinking blocks go back first, exactly as received (the signatures cover them).
    match &m.provider_state {
        Some(Value::Array(state)) => blocks.extend(state.iter().filter(|b| b.is_object()).cloned()),
        Some(_) => log::debug!("anthropic: unexpected provider_state shape ignored"),
        None => {}
    }
    blocks.extend(content_blocks(m.content.as_ref(), Allowed::TextOnly));
    if let Some(Value::String(refusal)) = m.rest.get("refusal") {
        blocks.extend(nonempty_text(refusal));
    }
    for call in m.tool_calls.iter().flatten() {
        blocks.push(json!({
            "type": "tool_use",
            "id": tool_id(&call.id),
            "name": call.function.name,
            "input": tool_input(&call.function.name, &call.function.arguments),
        }));
    }
    blocks
}

/// Tool-call arguments (JSON text) → the `input` object Anthropic requires. `""` is `{}`;
/// anything that is not a JSON object also becomes `{}` (logged): the API would reject it.
fn tool_input(name: &str, arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(m)) => Value::Object(m),
        Ok(_) | Err(_) => {
            log::debug!(
                "anthropic: arguments of tool call '{name}' are not a JSON object; sent as {{}}"
            );
            json!({})
        }
    }
}

/// Tool ids must match `^[a-zA-Z0-9_-]+$`; ids from other providers may not. The same mapping
/// is applied to `tool_use.id` and `tool_result.tool_use_id`, so pairs still match.
fn tool_id(id: &str) -> String {
    if id.is_empty() {
        return "toolu_missing".to_string();
    }
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn tool_result(m: &Message) -> Value {
    let mut content = content_blocks(m.content.as_ref(), Allowed::Media);
    content.extend(m.tool_images.iter().map(tool_image));
    let mut block = Map::new();
    block.insert("type".into(), json!("tool_result"));
    block.insert(
        "tool_use_id".into(),
        json!(tool_id(m.tool_call_id.as_deref().unwrap_or(""))),
    );
    if !content.is_empty() {
        block.insert("content".into(), Value::Array(content));
    }
    if m.tool_error {
        block.insert("is_error".into(), json!(true));
    }
    Value::Object(block)
}

fn tool_image(img: &ToolImage) -> Value {
    json!({"type": "image", "source": {
        "type": "base64", "media_type": img.media_type, "data": img.data,
    }})
}

/// Names of the tools used in the conversation (for stub definitions when none are offered).
pub fn tool_use_names(messages: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for block in messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
    {
        if block.get("type").and_then(Value::as_str) == Some("tool_use")
            && let Some(name) = block.get("name").and_then(Value::as_str)
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_string());
        }
    }
    names
}

/// Whether any `tool_use` / `tool_result` block is in the conversation (then the API requires
/// `tools` to be defined).
pub fn has_tool_blocks(messages: &[Value]) -> bool {
    messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .any(|b| {
            matches!(
                b.get("type").and_then(Value::as_str),
                Some("tool_use") | Some("tool_result")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_and_tool_ids() {
        assert_eq!(
            parse_data_url("data:image/gif;base64,R0lG"),
            Some(("image/gif", "R0lG"))
        );
        assert_eq!(
            parse_data_url("data:;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(parse_data_url("data:image/svg+xml,<svg/>"), None);
        assert_eq!(tool_id("call.1/x"), "call_1_x");
        assert_eq!(tool_id("toolu_01-A"), "toolu_01-A");
        assert_eq!(tool_id(""), "toolu_missing");
    }

    #[test]
    fn paused_content_is_appended_to_the_conversation() {
        let mut msgs = vec![json!({"role": "user", "content": [{"type": "text", "text": "q"}]})];
        append_assistant(&mut msgs, &[json!({"type": "text", "text": ""})]);
        assert_eq!(msgs.len(), 1, "nothing to append");
        let search = json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}});
        append_assistant(
            &mut msgs,
            &[
                json!({"type": "text", "text": "Searching "}),
                search.clone(),
            ],
        );
        append_assistant(&mut msgs, &[json!({"type": "text", "text": "more "})]);
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            msgs[1]["content"],
            json!([{"type": "text", "text": "Searching "}, search, {"type": "text", "text": "more"}])
        );
    }

    #[test]
    fn only_system_messages_still_give_a_user_turn() {
        let conv = translate(&[Message::text(Role::System, "s")]);
        assert_eq!(conv.system, vec![json!({"type": "text", "text": "s"})]);
        assert_eq!(
            conv.messages,
            vec![json!({"role": "user", "content": [{"type": "text", "text": LEADING_USER_TEXT}]})]
        );
    }
}
