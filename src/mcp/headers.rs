//! 2026-07-28 request-metadata headers beyond the version (streamable-http.mdx "Request
//! Metadata", SEP-2243): the header-safe encoding of `Mcp-Method` / `Mcp-Name` / `Mcp-Param-*`
//! values, and tool parameters annotated with `x-mcp-header`, which a client must mirror into
//! `Mcp-Param-<Name>` headers; a tool whose annotations are invalid must not be offered.
//!
//! Pure functions over `serde_json::Value`; no threads, no I/O.

use std::collections::HashSet;

use serde_json::Value;

/// The annotation key in a parameter's schema.
const ANNOTATION: &str = "x-mcp-header";

/// `Mcp-Name` / `Mcp-Param-*` values: plain when header-safe, else `=?base64?…?=` (also when
/// the plain value merely looks like that form; 2026-07-28 streamable-http.mdx).
pub fn header_value(v: &str) -> String {
    let printable = v.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let looks_encoded = v.starts_with("=?base64?") && v.ends_with("?=");
    let plain =
        !v.is_empty() && printable && !v.starts_with(' ') && !v.ends_with(' ') && !looks_encoded;
    if plain {
        v.to_string()
    } else {
        format!("=?base64?{}?=", base64(v.as_bytes()))
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One annotated parameter: where it sits in the arguments, and the header it goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamHeader {
    pub path: Vec<String>,
    pub name: String,
}

/// The annotated parameters of a tool's `inputSchema`, or why the annotations are invalid.
/// Valid: on a parameter reached through `properties` only, of type string, integer or
/// boolean, a non-empty HTTP token, unique regardless of case.
pub fn param_headers(schema: &Value) -> Result<Vec<ParamHeader>, String> {
    let mut found = Vec::new();
    walk(schema, &mut Vec::new(), &mut found)?;
    if count_annotations(schema) != found.len() {
        return Err(format!("{ANNOTATION} outside a plain properties path"));
    }
    let mut seen = HashSet::new();
    for p in &found {
        if !seen.insert(p.name.to_ascii_lowercase()) {
            return Err(format!("duplicate {ANNOTATION} {:?}", p.name));
        }
    }
    Ok(found)
}

fn walk(
    schema: &Value,
    path: &mut Vec<String>,
    found: &mut Vec<ParamHeader>,
) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, prop) in props {
        path.push(key.clone());
        if let Some(h) = prop.get(ANNOTATION) {
            let name = h
                .as_str()
                .filter(|n| !n.is_empty() && n.bytes().all(is_tchar))
                .ok_or_else(|| format!("{ANNOTATION} of {key:?} is not a header name"))?;
            match prop.get("type").and_then(Value::as_str) {
                Some("string" | "integer" | "boolean") => {}
                _ => {
                    return Err(format!(
                        "{ANNOTATION} on {key:?}, which is not a string, integer or boolean"
                    ));
                }
            }
            found.push(ParamHeader {
                path: path.clone(),
                name: name.to_string(),
            });
        }
        walk(prop, path, found)?;
        path.pop();
    }
    Ok(())
}

fn count_annotations(v: &Value) -> usize {
    match v {
        Value::Object(m) => {
            usize::from(m.contains_key(ANNOTATION))
                + m.values().map(count_annotations).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(count_annotations).sum(),
        _ => 0,
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `Mcp-Param-*` headers for one call's arguments: strings encoded, integers in decimal,
/// booleans as `true`/`false`; null, absent or other values are omitted.
pub fn mirror(params: &[ParamHeader], arguments: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in params {
        let mut v = arguments;
        for key in &p.path {
            v = v.get(key).unwrap_or(&Value::Null);
        }
        let value = match v {
            Value::String(s) => header_value(s),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (_, Some(u), _) => u.to_string(),
                // A whole number the model wrote as 42.0.
                #[allow(clippy::cast_possible_truncation, reason = "checked to be a whole i64")]
                (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => (f as i64).to_string(),
                _ => continue,
            },
            _ => continue,
        };
        out.push((format!("Mcp-Param-{}", p.name), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_values_are_plain_or_base64() {
        assert_eq!(header_value("get_weather"), "get_weather");
        assert_eq!(header_value("file:///a b.txt"), "file:///a b.txt");
        assert_eq!(header_value("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(header_value(" lead"), "=?base64?IGxlYWQ=?=");
        assert_eq!(header_value("=?base64?x?="), "=?base64?PT9iYXNlNjQ/eD89?=");
        assert_eq!(header_value("a\nb"), "=?base64?YQpi?=");
        assert_eq!(base64(b"Hello"), "SGVsbG8=");
        assert_eq!(base64(b"Hi"), "SGk=");
        assert_eq!(base64(b"Hey"), "SGV5");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn valid_annotations_are_found_and_mirrored() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "priority": {"type": "integer", "x-mcp-header": "Priority"},
            "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
            "where": {"type": "object", "properties": {
                "zone": {"type": "string", "x-mcp-header": "Zone"}}},
            "query": {"type": "string"}
        }});
        let params = param_headers(&schema).unwrap();
        assert_eq!(params.len(), 4);
        let h = mirror(
            &params,
            &json!({"region": "us-west1", "priority": 42, "verbose": null,
                    "where": {"zone": "b c"}, "query": "SELECT 1"}),
        );
        assert_eq!(
            h,
            [
                ("Mcp-Param-Priority".to_string(), "42".to_string()),
                ("Mcp-Param-Region".to_string(), "us-west1".to_string()),
                ("Mcp-Param-Zone".to_string(), "b c".to_string()),
            ]
        );
        let h = mirror(
            &params,
            &json!({"region": "Hello, 世界", "priority": 7.0, "verbose": false}),
        );
        assert!(h.contains(&(
            "Mcp-Param-Region".into(),
            "=?base64?SGVsbG8sIOS4lueVjA==?=".into()
        )));
        assert!(h.contains(&("Mcp-Param-Priority".into(), "7".into())));
        assert!(h.contains(&("Mcp-Param-Verbose".into(), "false".into())));
        assert_eq!(param_headers(&json!({"type": "object"})).unwrap(), []);
    }

    #[test]
    fn invalid_annotations_are_refused() {
        let bad = [
            json!({"properties": {"v": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"v": {"type": "object", "x-mcp-header": "V"}}}),
            json!({"properties": {"v": {"type": "array", "x-mcp-header": "V"}}}),
            json!({"properties": {"v": {"type": "null", "x-mcp-header": "V"}}}),
            json!({"properties": {"v": {"type": "number", "x-mcp-header": "V"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "My"},
                                  "b": {"type": "string", "x-mcp-header": "my"}}}),
            json!({"properties": {"v": {"type": "string", "x-mcp-header": "a b"}}}),
            json!({"properties": {"v": {"type": "string", "x-mcp-header": "a:b"}}}),
            json!({"properties": {"v": {"type": "string", "x-mcp-header": "ünï"}}}),
            json!({"properties": {"v": {"type": "string", "x-mcp-header": "a\u{1}"}}}),
            json!({"properties": {"v": {"type": "array", "items": {"type": "string", "x-mcp-header": "I"}}}}),
        ];
        for schema in bad {
            assert!(param_headers(&schema).is_err(), "{schema}");
        }
    }
}
