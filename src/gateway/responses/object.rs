//! The response object as written: the fixed fields, the settings it echoes from the request
//! ([`Echo`], [`EchoFields`]) and the usage in the Responses API's names. Serialized straight
//! from borrowed, typed parts, so writing one builds no `Value` tree.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::openai::Usage;

/// The settings a response object echoes (fixed for the request).
#[derive(Debug, Clone)]
pub struct Echo {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    /// Fields copied into every response object, after the fixed ones.
    pub fields: EchoFields,
}

/// The request settings every response object echoes: typed, so writing a response object
/// builds no map.
#[derive(Debug, Clone, Serialize)]
pub struct EchoFields {
    pub instructions: Option<String>,
    pub metadata: Map<String, Value>,
    pub parallel_tool_calls: bool,
    pub temperature: f64,
    pub top_p: f64,
    pub tool_choice: Value,
    pub tools: Vec<Value>,
    pub max_output_tokens: Option<u64>,
    pub previous_response_id: Option<String>,
    pub reasoning: Value,
    pub store: bool,
    pub text: Value,
    pub truncation: &'static str,
    pub user: Option<String>,
    pub background: bool,
    pub presence_penalty: Value,
    pub frequency_penalty: Value,
    pub top_logprobs: Value,
    pub max_tool_calls: Value,
    pub service_tier: &'static str,
    pub safety_identifier: Value,
    pub prompt_cache_key: Value,
}

impl Echo {
    /// The response object, serialized straight from these borrowed parts (no `Value` tree).
    pub fn object<'a>(
        &'a self,
        status: &'a str,
        output: &'a [Value],
        usage: Option<&Usage>,
        error: Value,
        incomplete: Option<&str>,
    ) -> ResponseObject<'a> {
        ResponseObject {
            id: &self.id,
            object: "response",
            created_at: self.created_at,
            status,
            // Required by the specification, null until the response completes.
            completed_at: (status == "completed").then(crate::clock::unix_now),
            error,
            incomplete_details: incomplete.map(|r| Incomplete {
                reason: r.to_string(),
            }),
            model: &self.model,
            output,
            fields: &self.fields,
            usage: usage.map(ResponseUsage::from),
        }
    }
}

/// A response object as written: the fixed fields, the echoed settings, the usage.
#[derive(Debug, Serialize)]
pub struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'a str,
    completed_at: Option<u64>,
    error: Value,
    incomplete_details: Option<Incomplete>,
    model: &'a str,
    output: &'a [Value],
    #[serde(flatten)]
    fields: &'a EchoFields,
    usage: Option<ResponseUsage>,
}

#[derive(Debug, Serialize)]
struct Incomplete {
    reason: String,
}

/// A response object's `usage`, in the Responses API's names (written without a `Value`).
#[derive(Debug, Serialize)]
pub struct ResponseUsage {
    input_tokens: u64,
    input_tokens_details: InputDetails,
    output_tokens: u64,
    output_tokens_details: OutputDetails,
    total_tokens: u64,
}

#[derive(Debug, Serialize)]
struct InputDetails {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(Debug, Serialize)]
struct OutputDetails {
    reasoning_tokens: u64,
}

impl From<&Usage> for ResponseUsage {
    fn from(u: &Usage) -> Self {
        ResponseUsage {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputDetails {
                cached_tokens: u.cached_tokens,
                cache_write_tokens: u.cache_creation_tokens,
            },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputDetails {
                reasoning_tokens: u.reasoning_tokens,
            },
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}
