//! OpenAI chat-completions wire types, as clients send them and as OpenAI-compatible upstreams
//! receive them. We type the fields we read or rewrite and flatten everything else into `rest`,
//! so parameters and message fields we do not know (new OpenAI features) pass through unchanged.
//! Never `deny_unknown_fields` here.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Client-defined functions, offered beside the MCP tools.
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub n: Option<u64>,
    /// Everything else (temperature, max_tokens, response_format, seed, user, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A tool definition in OpenAI shape: `{"type":"function","function":{name,description,parameters}}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Shared: an MCP tool's schema is built once when its server lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Arc<Value>>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    /// Legacy `function` role results; passed through to OpenAI upstreams.
    Function,
}

/// One chat message. `content` is a string or an array of parts (kept as JSON values: text,
/// image_url, input_audio, file, … are read by the backends that need to translate them).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
    /// Provider-specific blocks that must go back to the same provider on the next round of the
    /// loop (Anthropic thinking/redacted_thinking with their signatures). Never serialized.
    #[serde(skip)]
    pub provider_state: Option<Value>,
    /// For tool results produced by the loop: the tool failed (Anthropic `is_error`).
    #[serde(skip)]
    pub tool_error: bool,
    /// For tool results produced by the loop: image blocks the tool returned
    /// (`{"media_type","data"}`), sent as real images to backends that accept them.
    #[serde(skip)]
    pub tool_images: Vec<ToolImage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolImage {
    pub media_type: String,
    /// Base64, as the MCP server sent it.
    pub data: String,
}

impl Message {
    pub fn new(role: Role, content: Option<Content>) -> Self {
        Message {
            role,
            content,
            name: None,
            tool_calls: None,
            tool_call_id: None,
            rest: Map::new(),
            provider_state: None,
            tool_error: false,
            tool_images: Vec::new(),
        }
    }

    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message::new(role, Some(Content::Text(text.into())))
    }

    /// The plain text of the content: the string, or the `text` parts joined.
    pub fn text_content(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(c) => c.to_text(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl Content {
    pub fn to_text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// A tool call in an assistant message.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as the model produced it.
    #[serde(default)]
    pub arguments: String,
}

impl ToolCall {
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            kind: function_type(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }
}

/// Token usage as reported to clients; summed over every LLM round of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from a provider cache (OpenAI `prompt_tokens_details.cached_tokens`,
    /// Anthropic `cache_read_input_tokens`).
    pub cached_tokens: u64,
    /// Anthropic `cache_creation_input_tokens` (counted in `prompt_tokens` too).
    pub cache_creation_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cache_creation_tokens += other.cache_creation_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.wire()).unwrap_or(Value::Null)
    }

    /// The `usage` object as clients get it, to serialize in place (no `Value` in between).
    pub fn wire(&self) -> UsageWire {
        UsageWire {
            completion_tokens: self.completion_tokens,
            completion_tokens_details: (self.reasoning_tokens > 0).then_some(ReasoningTokens {
                reasoning_tokens: self.reasoning_tokens,
            }),
            prompt_tokens: self.prompt_tokens,
            prompt_tokens_details: (self.cached_tokens > 0).then_some(CachedTokens {
                cached_tokens: self.cached_tokens,
            }),
            total_tokens: self.prompt_tokens + self.completion_tokens,
        }
    }
}

/// [`Usage`] on the wire; fields in the order a `Value` would print them.
#[derive(Debug, Serialize)]
pub struct UsageWire {
    completion_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<ReasoningTokens>,
    prompt_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<CachedTokens>,
    total_tokens: u64,
}

#[derive(Debug, Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

#[derive(Debug, Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

/// Why a completion (or one round) ended, in OpenAI terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }

    /// From an OpenAI-compatible upstream's value; unknown values count as `stop`.
    pub fn parse(s: &str) -> FinishReason {
        match s {
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_string_and_parts_round_trip() {
        let m: Message = serde_json::from_value(json!({"role":"user","content":"hi"})).unwrap();
        assert_eq!(m.content, Some(Content::Text("hi".into())));
        let m: Message = serde_json::from_value(
            json!({"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}),
        )
        .unwrap();
        assert_eq!(m.text_content(), "ab");
        assert!(matches!(m.content, Some(Content::Parts(ref p)) if p.len() == 3));
    }

    #[test]
    fn unknown_fields_pass_through() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model":"m","messages":[{"role":"assistant","content":null,"refusal":"no","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}],
            "temperature":0.5,"logit_bias":{"1":2}
        }))
        .unwrap();
        assert_eq!(req.rest["temperature"], json!(0.5));
        assert!(req.rest.contains_key("logit_bias"));
        let back = serde_json::to_value(&req.messages[0]).unwrap();
        assert_eq!(back["refusal"], json!("no"));
        assert_eq!(back["tool_calls"][0]["function"]["name"], json!("f"));
        assert!(back.get("content").is_none());
    }

    #[test]
    fn unknown_role_is_rejected() {
        let r: Result<Message, _> = serde_json::from_value(json!({"role":"wizard","content":"x"}));
        assert!(r.is_err());
    }

    #[test]
    fn usage_json_has_details_only_when_present() {
        let u = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            ..Default::default()
        };
        assert_eq!(
            u.to_json(),
            json!({"prompt_tokens":3,"completion_tokens":2,"total_tokens":5})
        );
        let u = Usage {
            cached_tokens: 1,
            ..u
        };
        assert_eq!(
            u.to_json()["prompt_tokens_details"]["cached_tokens"],
            json!(1)
        );
    }
}
