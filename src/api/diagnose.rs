//! Which field of a chat request is wrong. serde says what was wrong but not where
//! ("invalid type: integer `9`, expected a string", "data did not match any variant of untagged
//! enum Content"), which leaves a client guessing among every string of its request. When a
//! body that is valid JSON does not decode as a [`ChatRequest`], [`locate`] decodes the typed
//! fields one by one, descending into `messages[i]`, `tool_calls[j]`, `tools[k]`, and names
//! the first one that fails, with a message in the client's terms.
//!
//! Only called on the error path (it clones the sub-values it tries); pure, no threads.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::openai::{ChatRequest, Role, StreamOptions};

/// The path of the first wrong field (`messages[1].tool_calls[0].id`) and what is wrong with
/// it; `None` when every field decodes (the caller then reports serde's own message).
pub fn locate(body: &Value) -> Option<(String, String)> {
    let Some(obj) = body.as_object() else {
        return Some((
            String::new(),
            "the request body must be a JSON object".into(),
        ));
    };
    field::<String>(obj, "model", "model")
        .or_else(|| messages(obj))
        .or_else(|| field::<Option<bool>>(obj, "stream", "stream"))
        .or_else(|| field::<Option<StreamOptions>>(obj, "stream_options", "stream_options"))
        .or_else(|| tools(obj))
        .or_else(|| field::<Option<u64>>(obj, "n", "n"))
        .or_else(|| {
            // Every field decodes alone: report the whole, without a path.
            let whole = serde_json::from_value::<ChatRequest>(body.clone()).err()?;
            Some((String::new(), whole.to_string()))
        })
}

/// `key` of `obj` decoded as `T` (absent counts as `null`).
fn field<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Option<(String, String)> {
    let v = obj.get(key).cloned().unwrap_or(Value::Null);
    serde_json::from_value::<T>(v)
        .err()
        .map(|e| (path.to_string(), e.to_string()))
}

fn array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a [Value], (String, String)> {
    match obj.get(key) {
        Some(Value::Array(items)) => Ok(items),
        None | Some(Value::Null) => Ok(&[]),
        Some(_) => Err((path.to_string(), "must be an array".into())),
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, (String, String)> {
    v.as_object()
        .ok_or_else(|| (path.to_string(), "must be an object".into()))
}

fn messages(obj: &Map<String, Value>) -> Option<(String, String)> {
    if !obj.contains_key("messages") || obj["messages"].is_null() {
        return Some(("messages".into(), "is required".into()));
    }
    let items = match array(obj, "messages", "messages") {
        Ok(items) => items,
        Err(e) => return Some(e),
    };
    items.iter().enumerate().find_map(|(i, m)| {
        let path = format!("messages[{i}]");
        let m = match object(m, &path) {
            Ok(m) => m,
            Err(e) => return Some(e),
        };
        if !m.contains_key("role") {
            return Some((format!("{path}.role"), "is required".into()));
        }
        if let Some(e) = field::<Role>(m, "role", &format!("{path}.role")) {
            let role = m.get("role").map(Value::to_string).unwrap_or_default();
            return Some((
                e.0,
                format!(
                    "unknown role {role}: expected one of system, developer, user, assistant, tool, function"
                ),
            ));
        }
        match m.get("content") {
            None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
            Some(_) => {
                return Some((
                    format!("{path}.content"),
                    "must be a string, an array of content parts, or null".into(),
                ));
            }
        }
        field::<Option<String>>(m, "name", &format!("{path}.name"))
            .or_else(|| field::<Option<String>>(m, "tool_call_id", &format!("{path}.tool_call_id")))
            .or_else(|| tool_calls(m, &path))
    })
}

fn tool_calls(m: &Map<String, Value>, msg_path: &str) -> Option<(String, String)> {
    let base = format!("{msg_path}.tool_calls");
    let items = match array(m, "tool_calls", &base) {
        Ok(items) => items,
        Err(e) => return Some(e),
    };
    items.iter().enumerate().find_map(|(j, c)| {
        let path = format!("{base}[{j}]");
        let c = match object(c, &path) {
            Ok(c) => c,
            Err(e) => return Some(e),
        };
        let f = format!("{path}.function");
        field::<String>(c, "id", &format!("{path}.id"))
            .or_else(|| field::<Option<String>>(c, "type", &format!("{path}.type")))
            .or_else(|| match c.get("function").map(|v| object(v, &f)) {
                None => Some((f.clone(), "is required".into())),
                Some(Err(e)) => Some(e),
                Some(Ok(func)) => {
                    field::<String>(func, "name", &format!("{f}.name")).or_else(|| {
                        field::<Option<String>>(func, "arguments", &format!("{f}.arguments"))
                    })
                }
            })
    })
}

fn tools(obj: &Map<String, Value>) -> Option<(String, String)> {
    let items = match array(obj, "tools", "tools") {
        Ok(items) => items,
        Err(e) => return Some(e),
    };
    items.iter().enumerate().find_map(|(k, t)| {
        let path = format!("tools[{k}]");
        let t = match object(t, &path) {
            Ok(t) => t,
            Err(e) => return Some(e),
        };
        let f = format!("{path}.function");
        field::<String>(t, "type", &format!("{path}.type")).or_else(|| {
            match t.get("function").map(|v| object(v, &f)) {
                None => Some((f.clone(), "is required".into())),
                Some(Err(e)) => Some(e),
                Some(Ok(func)) => {
                    field::<String>(func, "name", &format!("{f}.name")).or_else(|| {
                        field::<Option<String>>(func, "description", &format!("{f}.description"))
                    })
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(v: Value) -> (String, String) {
        locate(&v).expect("a located error")
    }

    #[test]
    fn names_the_wrong_field_at_any_depth() {
        let m = |extra: Value| {
            let mut msg = json!({"role": "user", "content": "hi"});
            for (k, v) in extra.as_object().unwrap() {
                msg[k] = v.clone();
            }
            json!({"model": "a", "messages": [{"role": "system", "content": "s"}, msg]})
        };
        assert_eq!(at(json!({"model": 5, "messages": []})).0, "model");
        assert_eq!(
            at(json!({"model": "a"})),
            ("messages".into(), "is required".into())
        );
        assert_eq!(at(json!({"model": "a", "messages": {}})).0, "messages");
        assert_eq!(at(m(json!({"role": "robot"}))).0, "messages[1].role");
        assert!(
            at(m(json!({"role": "robot"})))
                .1
                .contains("unknown role \"robot\"")
        );
        assert_eq!(at(m(json!({"content": 7}))).0, "messages[1].content");
        assert_eq!(at(m(json!({"name": 1}))).0, "messages[1].name");
        let call = json!({"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]});
        assert_eq!(
            at(m(call)).0,
            "messages[1].tool_calls[0].function.arguments"
        );
        assert_eq!(
            at(m(json!({"tool_calls": [{"function": {"name": "f"}}]}))).0,
            "messages[1].tool_calls[0].id"
        );
        let tool = json!({"model": "a", "messages": [{"role": "user"}], "tools": [{"type": "function", "function": {"name": 3}}]});
        assert_eq!(at(tool).0, "tools[0].function.name");
        assert_eq!(
            at(json!({"model": "a", "messages": [{"role": "user"}], "stream": "yes"})).0,
            "stream"
        );
        assert_eq!(
            at(json!({"model": "a", "messages": [{"role": "user"}], "n": -1})).0,
            "n"
        );
        let opts = json!({"model": "a", "messages": [{"role": "user"}], "stream_options": {"include_usage": 1}});
        assert_eq!(at(opts).0, "stream_options");
    }

    #[test]
    fn a_valid_request_has_nothing_to_locate() {
        let ok = json!({"model": "a", "stream": true, "n": 1,
            "messages": [{"role": "assistant", "content": null,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "x"}]}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]});
        assert_eq!(locate(&ok), None);
        assert_eq!(
            locate(&json!([1])).unwrap().1,
            "the request body must be a JSON object"
        );
    }
}
