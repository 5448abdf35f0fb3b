//! OpenAI Responses API wire types (`POST /v1/responses`), as clients send them. The fields we
//! read are typed; everything else lands in `rest` (never `deny_unknown_fields`: new OpenAI
//! fields must not break clients). Input items and tools stay JSON values here: their many
//! shapes are checked and translated, with a precise `param` path on errors, by
//! [`crate::gateway::responses`].

use serde::Deserialize;
use serde_json::{Map, Value};

/// `POST /v1/responses` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    /// A string (one user message) or a list of items.
    #[serde(default)]
    pub input: Option<Input>,
    /// Counts as the leading system message (not carried over by `previous_response_id`).
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// `{format: {type: text|json_object|json_schema, …}, verbosity?}`.
    #[serde(default)]
    pub text: Option<Value>,
    /// `{effort?, summary?}`.
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// The Conversations API: refused.
    #[serde(default)]
    pub conversation: Option<Value>,
    /// Everything else (truncation, service_tier, prompt_cache_key, safety_identifier, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_and_item_inputs_and_unknown_fields() {
        let r: ResponsesRequest =
            serde_json::from_value(json!({"model":"m","input":"hi","truncation":"auto"})).unwrap();
        assert_eq!(r.input, Some(Input::Text("hi".into())));
        assert_eq!(r.rest["truncation"], json!("auto"));
        let r: ResponsesRequest = serde_json::from_value(
            json!({"model":"m","input":[{"role":"user","content":"x"}],"store":false}),
        )
        .unwrap();
        assert!(matches!(r.input, Some(Input::Items(ref v)) if v.len() == 1));
        assert_eq!(r.store, Some(false));
    }
}
