//! A builder for test configs: backends, MCP servers, assistants and `server:` settings as
//! JSON values, rendered as block YAML (strings double-quoted, so URLs, `${AIPROXY_EXE}` and
//! non-ASCII text need no escaping by hand). Instead of a `format!` template per test file:
//!
//! ```ignore
//! let yaml = Config::new()
//!     .openai("up", &fake.url(), json!({"timeout": "2s"}))
//!     .demo_mcp()
//!     .assistant(json!({"name": "calc", "backend": "up", "model": "m", "mcp_servers": ["demo"]}))
//!     .yaml();
//! ```

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Default)]
pub struct Config {
    root: Map<String, Value>,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// Any top-level key (replaces what was there).
    pub fn set(mut self, key: &str, value: Value) -> Config {
        self.root.insert(key.into(), value);
        self
    }

    /// Merge these settings into `server:`.
    pub fn server(mut self, settings: Value) -> Config {
        let server = self.root.entry("server").or_insert_with(|| json!({}));
        if let (Some(s), Value::Object(add)) = (server.as_object_mut(), settings) {
            s.extend(add);
        }
        self
    }

    pub fn backend(self, name: &str, backend: Value) -> Config {
        self.entry("backends", name, backend)
    }

    /// An OpenAI-compatible backend at `base_url`, with `extra` fields (`timeout`, `api_key`…).
    pub fn openai(self, name: &str, base_url: &str, extra: Value) -> Config {
        let mut b = json!({"kind": "openai", "base_url": base_url});
        merge(&mut b, extra);
        self.backend(name, b)
    }

    pub fn mock(self, name: &str) -> Config {
        self.backend(name, json!({"kind": "mock"}))
    }

    pub fn mcp_server(self, name: &str, server: Value) -> Config {
        self.entry("mcp_servers", name, server)
    }

    /// The built-in demo MCP server as `demo` (the test gateways replace `${AIPROXY_EXE}`).
    pub fn demo_mcp(self) -> Config {
        self.mcp_server(
            "demo",
            json!({"command": "${AIPROXY_EXE}", "args": ["demo-mcp"]}),
        )
    }

    /// Append an assistant (`name` and `backend` at least).
    pub fn assistant(mut self, assistant: Value) -> Config {
        let list = self.root.entry("assistants").or_insert_with(|| json!([]));
        if let Some(l) = list.as_array_mut() {
            l.push(assistant);
        }
        self
    }

    pub fn yaml(&self) -> String {
        let mut out = String::new();
        render_map(&self.root, 0, &mut out);
        out
    }

    fn entry(mut self, section: &str, name: &str, value: Value) -> Config {
        let s = self.root.entry(section).or_insert_with(|| json!({}));
        if let Some(s) = s.as_object_mut() {
            s.insert(name.into(), value);
        }
        self
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(i), Value::Object(e)) = (into.as_object_mut(), extra) {
        i.extend(e);
    }
}

/// A scalar or an all-scalar list on one line (JSON is YAML flow syntax); `None` otherwise.
fn inline(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) if !m.is_empty() => None,
        Value::Array(a) if a.iter().any(|x| inline(x).is_none()) => None,
        _ => Some(v.to_string()),
    }
}

fn render_map(m: &Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        let plain = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let key = if plain {
            k.clone()
        } else {
            Value::String(k.clone()).to_string()
        };
        match inline(v) {
            Some(s) => out.push_str(&format!("{pad}{key}: {s}\n")),
            None => {
                out.push_str(&format!("{pad}{key}:\n"));
                render_block(v, indent + 2, out);
            }
        }
    }
}

fn render_block(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) => render_map(m, indent, out),
        Value::Array(items) => {
            let pad = " ".repeat(indent);
            for item in items {
                match inline(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // `- ` then the item's block, its first line on the dash's line.
                        let mut inner = String::new();
                        render_block(item, indent + 2, &mut inner);
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                }
            }
        }
        _ => out.push_str(&format!("{}{v}\n", " ".repeat(indent))),
    }
}

#[test]
fn renders_block_yaml_that_the_gateway_reads() {
    let yaml = Config::new()
        .server(json!({"workers": 4}))
        .server(json!({"max_in_flight": 8}))
        .openai("up", "http://127.0.0.1:9/v1", json!({"timeout": "2s"}))
        .demo_mcp()
        .assistant(json!({"name": "calc", "backend": "up", "model": "m", "mcp_servers": ["demo"],
            "extra_body": {"custom_flag": true}, "system_prompt": "Grüße: \"quoted\" # not a comment"}))
        .mock("offline")
        .assistant(json!({"name": "plain", "backend": "offline"}))
        .yaml();
    let env = super::gateway::TestEnv::new();
    let config =
        aiproxy::config::parse(&yaml, "builder", &env).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
    let names: Vec<&str> = config.assistants.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["calc", "plain"], "{yaml}");
    let calc = config.assistant("calc").unwrap();
    assert_eq!(
        calc.system_prompt.as_deref(),
        Some("Grüße: \"quoted\" # not a comment"),
        "{yaml}"
    );
}
