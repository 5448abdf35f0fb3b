//! The strict schema reader: small functions that read one YAML value as a given type and, when
//! it does not fit, record a `path: message` problem instead of stopping. Section readers
//! (`items`, `validate`) walk each mapping in document order and dispatch on the key with a
//! `match`, so every unknown key and every bad value is reported, in the order an operator reads
//! the file. (serde derive with `deny_unknown_fields` stops at the first error and has no path.)
//!
//! Every reader accepts the forms env expansion produces: numbers and booleans may arrive as
//! strings (`cache_ttl: ${TTL:-60}`); numbers and durations live in `numbers`. `null` (an empty
//! YAML value) counts as "not set".
//! Pure functions; no I/O, no threads.

use std::collections::BTreeMap;
use std::fmt;

use serde_yaml::Value as Yaml;

use crate::secret::Secret;

/// Where a value sits in the document, printed as `assistants[1].temperature`.
#[derive(Debug, Clone)]
pub(super) struct Path {
    text: String,
    /// Printed instead of an empty path (the document itself, or an admin request body).
    root: &'static str,
}

impl Path {
    pub(super) fn root(label: &'static str) -> Path {
        Path {
            text: String::new(),
            root: label,
        }
    }

    /// A child key; keys other than `[A-Za-z0-9_-]+` are quoted so the path stays unambiguous.
    pub(super) fn key(&self, key: &str) -> Path {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let key = if plain {
            key.to_string()
        } else {
            serde_json::Value::from(key).to_string()
        };
        let text = if self.text.is_empty() {
            key
        } else {
            format!("{}.{key}", self.text)
        };
        Path {
            text,
            root: self.root,
        }
    }

    pub(super) fn index(&self, i: usize) -> Path {
        Path {
            text: format!("{}[{i}]", self.text),
            root: self.root,
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str(self.root)
        } else {
            f.write_str(&self.text)
        }
    }
}

/// Every problem found so far, each already formatted as `path: message`.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    pub(super) fn add(&mut self, path: &Path, message: impl fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }

    pub(super) fn unknown(&mut self, path: &Path) {
        self.add(path, "unknown field");
    }

    pub(super) fn missing(&mut self, path: &Path) {
        self.add(path, "missing required field");
    }

    pub(super) fn extend(&mut self, more: Vec<String>) {
        self.0.extend(more);
    }

    pub(super) fn into_result<T>(self, value: T) -> Result<T, Vec<String>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

/// What a value is, for "expected X, found Y".
fn kind_of(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "nothing",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

fn mismatch(problems: &mut Problems, path: &Path, expected: &str, v: &Yaml) {
    problems.add(path, format!("expected {expected}, found {}", kind_of(v)));
}

/// A mapping key as text. YAML allows numbers and booleans as keys; they read as their text.
pub(super) fn key_text(key: &Yaml) -> Option<String> {
    match key {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The entries of a mapping in document order. `null` reads as an empty mapping.
pub(super) fn entries<'a>(
    problems: &mut Problems,
    path: &Path,
    v: &'a Yaml,
) -> Vec<(String, &'a Yaml)> {
    match v {
        Yaml::Null => Vec::new(),
        Yaml::Mapping(m) => m
            .iter()
            .filter_map(|(k, v)| match key_text(k) {
                Some(k) => Some((k, v)),
                None => {
                    problems.add(path, format!("keys must be strings, found {}", kind_of(k)));
                    None
                }
            })
            .collect(),
        other => {
            mismatch(problems, path, "a mapping", other);
            Vec::new()
        }
    }
}

/// The fields of an item (an MCP server, a backend, an assistant): like [`entries`], but `None`
/// when the value is not a mapping at all, so the reader reports that once and stops instead of
/// also listing every required field as missing.
pub(super) fn fields<'a>(
    problems: &mut Problems,
    path: &Path,
    v: &'a Yaml,
) -> Option<Vec<(String, &'a Yaml)>> {
    match v {
        Yaml::Null | Yaml::Mapping(_) => Some(entries(problems, path, v)),
        other => {
            mismatch(problems, path, "a mapping", other);
            None
        }
    }
}

/// The elements of a list. `null` reads as an empty list.
pub(super) fn elements<'a>(problems: &mut Problems, path: &Path, v: &'a Yaml) -> &'a [Yaml] {
    match v {
        Yaml::Null => &[],
        Yaml::Sequence(s) => s,
        other => {
            mismatch(problems, path, "a list", other);
            &[]
        }
    }
}

/// A string value.
pub(super) fn string(problems: &mut Problems, path: &Path, v: &Yaml) -> Option<String> {
    match v {
        Yaml::Null => None,
        Yaml::String(s) => Some(s.clone()),
        other => {
            mismatch(problems, path, "a string", other);
            None
        }
    }
}

/// A string, where YAML users naturally write numbers or booleans too (`args`, `env` and header
/// values, keys): `DEBUG: 1` means the text "1".
pub(super) fn text(problems: &mut Problems, path: &Path, v: &Yaml) -> Option<String> {
    match v {
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        other => string(problems, path, other),
    }
}

/// A non-empty string (after trimming), or `None` with a problem when empty.
pub(super) fn non_empty(problems: &mut Problems, path: &Path, v: &Yaml) -> Option<String> {
    let s = string(problems, path, v)?;
    if s.trim().is_empty() {
        problems.add(path, "must not be empty");
        return None;
    }
    Some(s)
}

pub(super) fn boolean(problems: &mut Problems, path: &Path, v: &Yaml) -> Option<bool> {
    let parsed = match v {
        Yaml::Null => return None,
        Yaml::Bool(b) => Some(*b),
        Yaml::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    };
    if parsed.is_none() {
        problems.add(path, "expected true or false");
    }
    parsed
}

/// One of a fixed set of names, e.g. `kind: openai`.
pub(super) fn choice<T: Copy>(
    problems: &mut Problems,
    path: &Path,
    v: &Yaml,
    table: &[(&str, T)],
) -> Option<T> {
    let s = string(problems, path, v)?;
    let found = table.iter().find(|(name, _)| *name == s.trim());
    if found.is_none() {
        let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
        problems.add(path, format!("expected one of {}", names.join(", ")));
    }
    found.map(|(_, value)| *value)
}

/// A list of strings (numbers and booleans read as their text).
pub(super) fn string_list(problems: &mut Problems, path: &Path, v: &Yaml) -> Vec<String> {
    elements(problems, path, v)
        .iter()
        .enumerate()
        .filter_map(|(i, item)| text(problems, &path.index(i), item))
        .collect()
}

/// A list of non-empty strings, e.g. tool globs and server names.
pub(super) fn name_list(problems: &mut Problems, path: &Path, v: &Yaml) -> Vec<String> {
    elements(problems, path, v)
        .iter()
        .enumerate()
        .filter_map(|(i, item)| non_empty(problems, &path.index(i), item))
        .collect()
}

/// A `name: value` map whose values may be credentials (`env`, `headers`, `default_headers`).
pub(super) fn secret_map(
    problems: &mut Problems,
    path: &Path,
    v: &Yaml,
) -> BTreeMap<String, Secret> {
    string_map(problems, path, v, false)
}

/// [`secret_map`] for HTTP headers: names must be tokens and values must not break the header
/// block (checked here so a bad header fails at load, not on the first request).
pub(super) fn header_map(
    problems: &mut Problems,
    path: &Path,
    v: &Yaml,
) -> BTreeMap<String, Secret> {
    string_map(problems, path, v, true)
}

fn string_map(
    problems: &mut Problems,
    path: &Path,
    v: &Yaml,
    headers: bool,
) -> BTreeMap<String, Secret> {
    let mut map = BTreeMap::new();
    for (key, value) in entries(problems, path, v) {
        let p = path.key(&key);
        if headers && !is_header_name(&key) {
            problems.add(&p, "not a valid HTTP header name");
        }
        if value.is_null() {
            // `KEY:` with nothing after it is almost always a forgotten value.
            problems.add(&p, "expected a string, found nothing");
            continue;
        }
        let Some(value) = text(problems, &p, value) else {
            continue;
        };
        if headers && !is_header_value(&value) {
            problems.add(&p, "header value must not contain CR, LF or NUL");
        }
        map.insert(key, Secret::new(value));
    }
    map
}

/// An RFC 9110 token.
pub(super) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value(s: &str) -> bool {
    !s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Any YAML mapping as a JSON object (`extra_body`, merged into upstream payloads).
pub(super) fn json_object(
    problems: &mut Problems,
    path: &Path,
    v: &Yaml,
) -> serde_json::Map<String, serde_json::Value> {
    match v {
        Yaml::Null => serde_json::Map::new(),
        Yaml::Mapping(_) => match serde_json::to_value(v) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                problems.add(path, "must be representable as a JSON object");
                serde_json::Map::new()
            }
        },
        other => {
            mismatch(problems, path, "a mapping", other);
            serde_json::Map::new()
        }
    }
}

/// Checks that `s` is an absolute `http://` or `https://` URL with a host.
pub(super) fn check_http_url(problems: &mut Problems, path: &Path, s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let ok = match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !ok {
        problems.add(path, "expected an http:// or https:// URL");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Yaml {
        serde_yaml::from_str(s).unwrap()
    }

    fn run<T>(f: impl FnOnce(&mut Problems, &Path) -> T) -> (T, Vec<String>) {
        let mut p = Problems::default();
        let out = f(&mut p, &Path::root("(top level)").key("x"));
        (out, p.0)
    }

    #[test]
    fn paths_print_like_the_document() {
        let root = Path::root("(top level)");
        assert_eq!(root.to_string(), "(top level)");
        let p = root.key("assistants").index(1).key("temprature");
        assert_eq!(p.to_string(), "assistants[1].temprature");
        let odd = root.key("mcp_servers").key("my server").key("a.b");
        assert_eq!(odd.to_string(), r#"mcp_servers."my server"."a.b""#);
    }

    #[test]
    fn booleans_from_strings() {
        for (src, want) in [
            ("true", true),
            ("'false'", false),
            ("'Yes'", true),
            ("'0'", false),
        ] {
            let (b, problems) = run(|p, path| boolean(p, path, &y(src)));
            assert_eq!((b, problems.len()), (Some(want), 0), "{src}");
        }
        let (b, problems) = run(|p, path| boolean(p, path, &y("'maybe'")));
        assert_eq!(
            (b, problems),
            (None, vec!["x: expected true or false".to_string()])
        );
    }

    #[test]
    fn type_mismatches_say_what_was_found() {
        let (s, problems) = run(|p, path| string(p, path, &y("[a]")));
        assert_eq!(
            (s, problems),
            (None, vec!["x: expected a string, found a list".to_string()])
        );
        let (e, problems) = run(|p, path| entries(p, path, &y("3")).len());
        assert_eq!(
            (e, problems),
            (0, vec!["x: expected a mapping, found a number".to_string()])
        );
        let (l, problems) = run(|p, path| string_list(p, path, &y("[a, 1, true, [b]]")));
        assert_eq!(l, ["a", "1", "true"]);
        assert_eq!(problems, ["x[3]: expected a string, found a list"]);
    }

    #[test]
    fn headers_are_checked() {
        let (m, problems) = run(|p, path| {
            header_map(
                p,
                path,
                &y("{Authorization: Bearer t, 'bad name': v, X-Empty: }"),
            )
        });
        assert_eq!(m.len(), 2);
        assert_eq!(m["Authorization"].expose(), "Bearer t");
        assert_eq!(
            problems,
            [
                r#"x."bad name": not a valid HTTP header name"#,
                "x.X-Empty: expected a string, found nothing"
            ]
        );
        let (_, problems) = run(|p, path| header_map(p, path, &y("{X-A: \"a\\r\\nb\"}")));
        assert_eq!(
            problems,
            ["x.X-A: header value must not contain CR, LF or NUL"]
        );
    }

    #[test]
    fn urls_must_be_http() {
        for ok in [
            "http://a",
            "https://api.openai.com/v1",
            "HTTP://127.0.0.1:11434/v1",
        ] {
            let (good, problems) = run(|p, path| check_http_url(p, path, ok));
            assert!(good && problems.is_empty(), "{ok}");
        }
        for bad in [
            "ftp://a",
            "api.openai.com",
            "http://",
            "http:///x",
            "http://a b",
        ] {
            let (good, problems) = run(|p, path| check_http_url(p, path, bad));
            assert!(!good, "{bad}");
            assert_eq!(problems, ["x: expected an http:// or https:// URL"]);
        }
    }

    #[test]
    fn choices_list_the_options() {
        let table = [("openai", 1), ("anthropic", 2), ("mock", 3)];
        let (c, problems) = run(|p, path| choice(p, path, &y("anthropic"), &table));
        assert_eq!((c, problems.len()), (Some(2), 0));
        let (c, problems) = run(|p, path| choice(p, path, &y("gpt"), &table));
        assert_eq!(
            (c, problems),
            (
                None,
                vec!["x: expected one of openai, anthropic, mock".to_string()]
            )
        );
    }
}
