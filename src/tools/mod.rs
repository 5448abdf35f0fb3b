//! The tools one request may use: the MCP tools of its assistant under their exposed names
//! (`naming`), and their execution (`result` maps what comes back).
//!
//! A [`ToolSet`] is built per request from the snapshot's MCP servers: servers are started
//! lazily and concurrently (scoped threads, each bounded by its `startup_timeout`); a server that
//! cannot start is left out and reported as degraded instead of failing the request. All tool
//! calls of one turn run concurrently in scoped threads (at most [`MAX_PARALLEL_CALLS`] at a
//! time; each server also bounds its own concurrency), so no thread outlives its request, and
//! results come back in the model's order. Each call is timed and counted in the gateway's
//! metrics when the set carries them.
//!
//! Hostile peers: at most `max_tools` tools of each server are offered (the first of its
//! listing; default 1000, one warning per listing), and at most the assistant's
//! `max_tool_calls_per_turn` calls of one turn run (default 128); each call beyond gets a
//! `[tool error]` result. Names and lookups are maps, linear in the number of tools.
//! [`printable`] escapes server-sent text for terminals.

pub mod naming;
pub mod result;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use serde_json::{Map, Value, json};

use crate::agent::ToolExecutor;
use crate::api::openai::{FunctionDef, Message, Tool, ToolCall};
use crate::cancel::Cancel;
use crate::mcp::{self, Supervisor};
use crate::metrics::{Metrics, ToolOutcome};
use result::ToolOutput;

/// Tool calls of one turn running at once.
pub const MAX_PARALLEL_CALLS: usize = 16;
/// Tool calls run per turn unless the assistant says otherwise (`max_tool_calls_per_turn`).
pub const DEFAULT_MAX_CALLS: usize = 128;

/// Per server name, the listing last warned about (by address), so a capped listing is
/// reported once, not on every request. Bounded by the number of configured server names.
static CAPPED: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

fn warn_capped_once(server: &str, tools: &Arc<Vec<mcp::ToolInfo>>, cap: usize) {
    let listing = Arc::as_ptr(tools) as usize;
    let mut warned = CAPPED.lock();
    if warned.len() >= 1024 {
        warned.clear();
    }
    match warned.iter_mut().find(|(name, _)| name == server) {
        Some((_, last)) if *last == listing => return,
        Some((_, last)) => *last = listing,
        None => warned.push((server.to_string(), listing)),
    }
    log::warn!(
        "mcp server '{server}' lists {} tools; offering the first {cap} (max_tools)",
        tools.len()
    );
}

struct Route {
    server: Arc<Supervisor>,
    tool: String,
}

pub struct ToolSet {
    /// OpenAI definitions of the MCP tools, in server then listing order.
    pub tools: Vec<Tool>,
    routes: HashMap<String, Route>,
    /// Servers left out because they could not start, with the reason.
    pub degraded: Vec<(String, String)>,
    metrics: Option<Arc<Metrics>>,
    /// MCP tool calls run per turn (the assistant's `max_tool_calls_per_turn`).
    max_calls: usize,
}

impl ToolSet {
    pub fn empty() -> ToolSet {
        ToolSet {
            tools: Vec::new(),
            routes: HashMap::new(),
            degraded: Vec::new(),
            metrics: None,
            max_calls: DEFAULT_MAX_CALLS,
        }
    }

    /// Run at most `n` tool calls per turn (at least one).
    pub fn with_max_calls(mut self, n: usize) -> ToolSet {
        self.max_calls = n.max(1);
        self
    }

    /// Count and time every call of this set in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> ToolSet {
        self.metrics = Some(metrics);
        self
    }

    /// Start (if needed) and list the given servers, apply the assistant's filters.
    pub fn build(servers: &[Arc<Supervisor>], allowed: &[String], denied: &[String]) -> ToolSet {
        let listed: Vec<Result<Arc<Vec<mcp::ToolInfo>>, mcp::Error>> = match servers {
            [] => Vec::new(),
            [one] => vec![one.tools()],
            many => std::thread::scope(|s| {
                let handles: Vec<_> = many
                    .iter()
                    .map(|srv| s.spawn(move || srv.tools()))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(mcp::Error::Start("panicked while starting".into()))
                        })
                    })
                    .collect()
            }),
        };
        let mut set = ToolSet::empty();
        let mut entries: Vec<(&Arc<Supervisor>, &mcp::ToolInfo)> = Vec::new();
        for (srv, res) in servers.iter().zip(&listed) {
            match res {
                Ok(tools) => {
                    let cap = srv.max_tools();
                    if tools.len() > cap {
                        warn_capped_once(srv.name(), tools, cap);
                    }
                    entries.extend(tools.iter().take(cap).map(|t| (srv, t)));
                }
                Err(e) => {
                    log::warn!(
                        "mcp server '{}' left out of this request: {}",
                        srv.name(),
                        printable(&e.to_string())
                    );
                    set.degraded.push((srv.name().to_string(), e.to_string()));
                }
            }
        }
        let pairs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(s, t)| (s.name(), t.name.as_str()))
            .collect();
        let names = naming::assign_names(&pairs);
        for ((srv, info), name) in entries.into_iter().zip(names) {
            let plain = naming::base_name(srv.name(), &info.name);
            if !naming::tool_allowed(&[&name, &plain], allowed, denied) {
                continue;
            }
            set.tools.push(Tool {
                kind: "function".into(),
                function: FunctionDef {
                    name: name.clone(),
                    description: Some(info.description.clone().unwrap_or_default()),
                    parameters: Some(parameters_schema(&info.input_schema)),
                    rest: Map::new(),
                },
            });
            set.routes.insert(
                name,
                Route {
                    server: Arc::clone(srv),
                    tool: info.name.clone(),
                },
            );
        }
        set
    }

    /// The MCP server and original tool name behind an exposed name.
    pub fn origin(&self, exposed: &str) -> Option<(&str, &str)> {
        self.routes
            .get(exposed)
            .map(|r| (r.server.name(), r.tool.as_str()))
    }

    fn call_one(&self, call: &ToolCall, cancel: &Cancel) -> ToolOutput {
        let started = Instant::now();
        let name = &call.function.name;
        let (output, outcome) = self.run_call(call, cancel);
        if let Some(m) = &self.metrics {
            // A name the model made up is not a label (it would be unbounded).
            let known = self.routes.contains_key(name).then_some(name.as_str());
            m.tool_call(known, outcome, started.elapsed());
        }
        output
    }

    fn run_call(&self, call: &ToolCall, cancel: &Cancel) -> (ToolOutput, ToolOutcome) {
        let name = &call.function.name;
        let Some(route) = self.routes.get(name) else {
            let out = ToolOutput::error(format!("unknown tool '{name}'"));
            return (out, ToolOutcome::Invalid);
        };
        let args = match parse_arguments(&call.function.arguments) {
            Ok(a) => a,
            Err(e) => {
                let out = ToolOutput::error(format!("invalid JSON arguments for '{name}': {e}"));
                return (out, ToolOutcome::Invalid);
            }
        };
        match route.server.call_tool(&route.tool, args, cancel) {
            Ok(r) => {
                let out = result::from_call_result(&r);
                let outcome = if out.is_error {
                    ToolOutcome::Error
                } else {
                    ToolOutcome::Ok
                };
                (out, outcome)
            }
            Err(mcp::Error::Timeout) => (
                ToolOutput::error(format!("'{name}' timed out")),
                ToolOutcome::Timeout,
            ),
            Err(mcp::Error::Cancelled) => (
                ToolOutput::error(format!("'{name}' failed: cancelled")),
                ToolOutcome::Cancelled,
            ),
            Err(e) => (
                ToolOutput::error(format!("'{name}' failed: {e}")),
                ToolOutcome::Error,
            ),
        }
    }
}

impl ToolExecutor for ToolSet {
    fn definitions(&self) -> &[Tool] {
        &self.tools
    }

    /// Run the calls concurrently; one tool message per call, in the given order. Calls
    /// beyond `max_calls` are not run: each gets a tool error saying so.
    fn call_all(&self, calls: &[ToolCall], cancel: &Cancel) -> Vec<Message> {
        let (run, over) = calls.split_at(calls.len().min(self.max_calls));
        if !over.is_empty() {
            log::warn!(
                "model asked for {} tool calls in one turn; ran the first {}, answered the rest with a tool error (max_tool_calls_per_turn)",
                calls.len(),
                run.len()
            );
        }
        let mut messages = self.run_all(run, cancel);
        messages.extend(over.iter().map(|c| {
            ToolOutput::error(format!(
                "not run: more than {} tool calls in one turn (max_tool_calls_per_turn); \
                 ask for fewer calls at a time",
                self.max_calls
            ))
            .into_message(&c.id)
        }));
        messages
    }
}

impl ToolSet {
    fn run_all(&self, calls: &[ToolCall], cancel: &Cancel) -> Vec<Message> {
        let outputs: Vec<ToolOutput> = match calls {
            [] => Vec::new(),
            [one] => vec![self.call_one(one, cancel)],
            many => {
                let mut out = Vec::with_capacity(many.len());
                for batch in many.chunks(MAX_PARALLEL_CALLS) {
                    std::thread::scope(|s| {
                        // Small fixed stacks, like the worker's; a call whose thread cannot
                        // be started runs here instead.
                        let handles: Vec<_> = batch
                            .iter()
                            .map(|c| {
                                std::thread::Builder::new()
                                    .stack_size(crate::http::DEFAULT_STACK_SIZE)
                                    .spawn_scoped(s, move || self.call_one(c, cancel))
                                    .map_err(|_| c)
                            })
                            .collect();
                        for h in handles {
                            out.push(match h {
                                Ok(h) => h
                                    .join()
                                    .unwrap_or_else(|_| ToolOutput::error("tool call panicked")),
                                Err(c) => self.call_one(c, cancel),
                            });
                        }
                    });
                }
                out
            }
        };
        outputs
            .into_iter()
            .zip(calls)
            .map(|(o, c)| o.into_message(&c.id))
            .collect()
    }
}

/// `s` safe to print on a terminal: control characters (ESC, CR, BEL, …) and invisible
/// direction/format characters as `\u{..}` escapes (`\r`, `\n`, `\t` for those), backslashes
/// doubled; everything else as is.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let invisible = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        if c.is_control() || invisible || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Model-produced arguments → a JSON object for `tools/call`. Empty means `{}`; a non-object
/// value is wrapped as `{"value": v}`.
pub fn parse_arguments(raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(v) => Ok(json!({ "value": v })),
        Err(e) => Err(e.to_string()),
    }
}

/// MCP `inputSchema` → OpenAI `parameters`: an object schema without the `$schema` marker that
/// TypeScript servers add (strict providers reject unknown top-level keywords).
fn parameters_schema(input: &Value) -> Value {
    let mut schema = match input {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    schema.remove("$schema");
    if !schema.contains_key("type") {
        schema.insert("type".into(), json!("object"));
    }
    if schema.get("type") == Some(&json!("object")) && !schema.contains_key("properties") {
        schema.insert("properties".into(), json!({}));
    }
    Value::Object(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(parse_arguments("").unwrap(), json!({}));
        assert_eq!(parse_arguments(r#"{"a":1}"#).unwrap(), json!({"a":1}));
        assert_eq!(parse_arguments("3").unwrap(), json!({"value":3}));
        assert!(parse_arguments("{oops").is_err());
    }

    #[test]
    fn schema_cleanup() {
        let s = parameters_schema(
            &json!({"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"a":{"type":"number"}}}),
        );
        assert_eq!(
            s,
            json!({"type":"object","properties":{"a":{"type":"number"}}})
        );
        assert_eq!(
            parameters_schema(&Value::Null),
            json!({"type":"object","properties":{}})
        );
    }
}
