//! Two more mock behaviours for client-facing demos: calling a client-defined function tool
//! the user's text names (`get_weather` for "what's the weather in Paris?"), and answering in
//! JSON when the request asks for a JSON `response_format` (an instance of the given schema).
//! Pure functions over the request; no I/O.

use serde_json::{Map, Value, json};

use crate::api::openai::Tool;

/// Words of a tool name that say nothing about what it does.
const VERBS: [&str; 12] = [
    "get", "set", "fetch", "lookup", "look", "find", "list", "run", "call", "do", "the", "current",
];

/// The first client tool (a name without `__`) one of whose meaningful name words appears in
/// `text`, with arguments built from its schema.
pub(super) fn client_tool_call<'a>(tools: &'a [Tool], text: &str) -> Option<(&'a Tool, Value)> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let tool = tools.iter().find(|t| {
        let name = t.function.name.to_lowercase();
        !name.contains("__")
            && name
                .split(['_', '-'])
                .filter(|w| w.len() >= 3 && !VERBS.contains(w))
                .any(|w| {
                    words
                        .iter()
                        .any(|u| u.starts_with(w) || w.starts_with(*u) && u.len() >= 4)
                })
    })?;
    Some((tool, arguments(tool.function.parameters.as_deref(), text)))
}

/// Required properties (else all) of an object schema, filled from the text.
fn arguments(schema: Option<&Value>, text: &str) -> Value {
    let mut out = Map::new();
    let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    else {
        return Value::Object(out);
    };
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, p) in props {
        if !required.is_empty() && !required.contains(&name.as_str()) {
            continue;
        }
        let v = match p.get("type").and_then(Value::as_str) {
            Some("string") => match p
                .get("enum")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
            {
                Some(first) => first.clone(),
                None => json!(place_or_text(text)),
            },
            Some("integer") => json!(last_number(text).map_or(0, |n| n as i64)),
            Some("number") => json!(last_number(text).unwrap_or(0.0)),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => json!(place_or_text(text)),
        };
        out.insert(name.clone(), v);
    }
    Value::Object(out)
}

/// "… in Paris?" → "Paris"; else the whole text, trimmed.
fn place_or_text(text: &str) -> String {
    let t = text.trim().trim_end_matches(['?', '.', '!']);
    let lower = t.to_lowercase();
    for marker in [" in ", " for ", " of ", " at "] {
        if let Some(i) = lower.rfind(marker) {
            let place = t[i + marker.len()..].trim();
            if !place.is_empty() {
                return place.to_string();
            }
        }
    }
    t.to_string()
}

fn last_number(text: &str) -> Option<f64> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .rev()
        .find_map(|w| w.trim_end_matches('.').parse::<f64>().ok())
}

/// The answer as JSON when `response_format` asks for it: `json_object` → `{"answer": text}`;
/// `json_schema` → an instance of the schema (strings get the text, numbers the last number
/// in it). `None` for text formats.
pub(super) fn structured(params: &Map<String, Value>, text: &str) -> Option<String> {
    let format = params.get("response_format")?;
    match format.get("type").and_then(Value::as_str)? {
        "json_object" => Some(json!({ "answer": text }).to_string()),
        "json_schema" => {
            let schema = format.get("json_schema")?.get("schema")?;
            Some(instance(schema, schema, text, 0).to_string())
        }
        _ => None,
    }
}

fn instance(schema: &Value, root: &Value, text: &str, depth: u32) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix("#/")
            .map(|p| p.split('/').try_fold(root, |v, k| v.get(k)))
            .unwrap_or(None);
        return target.map_or(Value::Null, |t| instance(t, root, text, depth + 1));
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let pick = options
                .iter()
                .find(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                .or(options.first());
            return pick.map_or(Value::Null, |o| instance(o, root, text, depth + 1));
        }
    }
    let kind = match schema.get("type") {
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        Some(Value::String(t)) => Some(t.as_str()),
        _ if schema.get("properties").is_some() => Some("object"),
        _ => None,
    };
    match kind {
        Some("object") => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    out.insert(k.clone(), instance(p, root, text, depth + 1));
                }
            }
            Value::Object(out)
        }
        Some("array") => match schema.get("items") {
            Some(items) => json!([instance(items, root, text, depth + 1)]),
            None => json!([]),
        },
        Some("integer") => json!(last_number(text).map_or(0, |n| n as i64)),
        Some("number") => json!(last_number(text).unwrap_or(0.0)),
        Some("boolean") => json!(true),
        Some("null") => Value::Null,
        _ => json!(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::FunctionDef;

    fn tool(name: &str, params: Value) -> Tool {
        Tool {
            kind: "function".into(),
            function: FunctionDef {
                name: name.into(),
                description: None,
                parameters: Some(std::sync::Arc::new(params)),
                rest: Map::new(),
            },
        }
    }

    #[test]
    fn calls_the_client_tool_the_text_names() {
        let tools = [
            tool("demo__add", json!({})),
            tool(
                "get_weather",
                json!({"type":"object","properties":{"location":{"type":"string"},"unit":{"type":"string","enum":["c","f"]}},"required":["location"]}),
            ),
        ];
        let (t, args) = client_tool_call(&tools, "What's the weather in Paris?").unwrap();
        assert_eq!(t.function.name, "get_weather");
        assert_eq!(args, json!({"location": "Paris"}));
        assert!(client_tool_call(&tools, "tell me a joke").is_none());
    }

    #[test]
    fn json_answers_follow_the_schema() {
        let mut p = Map::new();
        p.insert(
            "response_format".into(),
            json!({"type":"json_schema","json_schema":{"name":"x","schema":{
            "type":"object","properties":{"text":{"type":"string"},"result":{"type":"integer"},
            "tags":{"type":"array","items":{"$ref":"#/$defs/Tag"}}},
            "$defs":{"Tag":{"type":"object","properties":{"ok":{"type":"boolean"}}}}}}}),
        );
        let v: Value = serde_json::from_str(&structured(&p, "2 + 3 = 5.").unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"text":"2 + 3 = 5.","result":5,"tags":[{"ok":true}]})
        );
        p.insert("response_format".into(), json!({"type":"json_object"}));
        assert_eq!(structured(&p, "hi").unwrap(), r#"{"answer":"hi"}"#);
        p.insert("response_format".into(), json!({"type":"text"}));
        assert!(structured(&p, "hi").is_none());
    }
}
