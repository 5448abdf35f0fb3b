//! Running the tool calls of one turn ([`ToolSet`] as the loop's [`ToolExecutor`]): arguments
//! checked ([`parse_arguments`]), calls run concurrently in scoped threads (at most
//! [`MAX_PARALLEL_CALLS`] at a time, at most the assistant's `max_tool_calls_per_turn` per
//! turn), each one timed and counted in the metrics, written to the audit log and traced as an
//! `execute_tool` span when the set carries those; a failure becomes a short, stable text for
//! the model naming the server, with the details in the log.

use std::time::Instant;

use serde_json::{Value, json};

use super::result::{self, ToolOutput};
use super::{MAX_PARALLEL_CALLS, ToolSet, naming, printable};
use crate::agent::ToolExecutor;
use crate::api::openai::{Message, Tool, ToolCall};
use crate::audit;
use crate::cancel::Cancel;
use crate::mcp::{self, Supervisor};
use crate::metrics::ToolOutcome;

impl ToolSet {
    fn call_one(&self, call: &ToolCall, cancel: &Cancel) -> ToolOutput {
        let started = Instant::now();
        let name = &call.function.name;
        let mut span = self.trace.as_ref().map(|t| self.tool_span(t, call));
        let (output, outcome) = {
            // An HTTP MCP server gets this call's span as its `traceparent`.
            let _trace = span
                .as_ref()
                .map(|s| crate::telemetry::enter(Some(s.ctx().clone())));
            self.run_call(call, cancel)
        };
        let elapsed = started.elapsed();
        if let Some(span) = &mut span {
            span.set("aiproxy.tool.outcome", outcome.label());
            span.set("aiproxy.tool.duration_ms", elapsed.as_millis() as u64);
            if outcome != ToolOutcome::Ok {
                span.fail(outcome.label());
            }
        }
        if let Some(m) = &self.metrics {
            // A name the model made up is not a label (it would be unbounded).
            let known = self.routes.contains_key(name).then_some(name.as_str());
            m.tool_call(known, outcome, elapsed);
        }
        if let Some((log, who)) = &self.audit {
            let origin = self.origin(name);
            let queued = log.record(&audit::Record {
                request_id: &who.request_id,
                key: who.key.as_deref(),
                assistant: &who.assistant,
                server: origin.map(|o| o.0),
                tool: origin.map(|o| o.1),
                exposed: name,
                arguments: &call.function.arguments,
                duration: elapsed,
                outcome: outcome.label(),
            });
            if let Some(m) = &self.metrics {
                m.audit_line(queued);
            }
        }
        output
    }

    /// `execute_tool {tool}` (GenAI semantic conventions), a child of the request's span;
    /// the outcome is added when the call ends.
    fn tool_span(&self, trace: &crate::telemetry::Ctx, call: &ToolCall) -> crate::telemetry::Span {
        let origin = self.origin(&call.function.name);
        let tool = origin.map_or(call.function.name.as_str(), |o| o.1);
        let mut span = trace.child(
            &format!("execute_tool {tool}"),
            crate::telemetry::Kind::Internal,
        );
        span.set("gen_ai.operation.name", "execute_tool");
        span.set("gen_ai.tool.name", tool);
        span.set("gen_ai.tool.call.id", call.id.as_str());
        span.set("gen_ai.tool.type", "extension");
        if let Some((server, _)) = origin {
            span.set("aiproxy.mcp.server", server);
        }
        span.set("aiproxy.tool.exposed_name", call.function.name.as_str());
        span
    }

    fn run_call(&self, call: &ToolCall, cancel: &Cancel) -> (ToolOutput, ToolOutcome) {
        let name = &call.function.name;
        let Some(route) = self.routes.get(name) else {
            // A name under a down server's prefix is that server's, not a made-up tool.
            if let Some(srv) = self
                .down
                .iter()
                .find(|s| naming::under_server(name, s.name()))
            {
                let out = ToolOutput::error(unavailable(srv.name()));
                return (out, ToolOutcome::Error);
            }
            let out = ToolOutput::error(format!("unknown tool '{name}'"));
            return (out, ToolOutcome::Invalid);
        };
        let args = match parse_arguments(&call.function.arguments) {
            Ok(a) => a,
            Err(e) => {
                let out = ToolOutput::error(match e {
                    ArgError::Json(e) => format!("invalid JSON arguments for '{name}': {e}"),
                    ArgError::NotObject(kind) => format!(
                        "invalid arguments for '{name}': the arguments must be a JSON object \
                         matching the tool's input schema, not {kind}"
                    ),
                });
                return (out, ToolOutcome::Invalid);
            }
        };
        let server = &route.server;
        match server.call_tool(&route.tool, args, cancel) {
            Ok(r) => {
                let out = result::from_call_result(&r);
                let outcome = if out.is_error {
                    ToolOutcome::Error
                } else {
                    ToolOutcome::Ok
                };
                (out, outcome)
            }
            Err(e) => {
                let outcome = match e {
                    mcp::Error::Timeout => ToolOutcome::Timeout,
                    mcp::Error::Cancelled => ToolOutcome::Cancelled,
                    _ => ToolOutcome::Error,
                };
                // The server itself is gone (not a slow or refused call): the request is
                // degraded, as if it had been down from the start.
                if matches!(
                    e,
                    mcp::Error::Start(_) | mcp::Error::Stopped(_) | mcp::Error::Closed(_)
                ) {
                    self.note_down(server.name());
                }
                if !matches!(e, mcp::Error::Cancelled) {
                    log::warn!(
                        "{}mcp[{}]: tools/call {} failed: {}",
                        mcp::logctx::prefix(),
                        server.name(),
                        printable(&protocol_cut(&route.tool)),
                        printable(mcp::without_stderr(&server.redact(&e.to_string())))
                    );
                }
                (ToolOutput::error(failure_text(name, server, &e)), outcome)
            }
        }
    }
}

fn protocol_cut(s: &str) -> String {
    mcp::protocol::cut(s, 80)
}

/// What the model is told when a server cannot be reached.
fn unavailable(server: &str) -> String {
    format!("server '{server}' is unavailable; try again later")
}

/// What the model sees when a call fails: short, stable, naming the server; no internal
/// URLs, OS errors or server stderr (those go to the log).
fn failure_text(name: &str, server: &Supervisor, e: &mcp::Error) -> String {
    let s = server.name();
    match e {
        mcp::Error::Start(_) => unavailable(s),
        mcp::Error::Stopped(status) => format!("server '{s}' stopped ({status})"),
        mcp::Error::Closed(_) => format!("server '{s}' closed the connection before answering"),
        mcp::Error::Timeout => format!("'{name}' timed out"),
        mcp::Error::Cancelled => format!("'{name}' failed: cancelled"),
        // The server's own answer to the client: passed on (scrubbed).
        mcp::Error::Rpc { code, message } => {
            format!("'{name}' failed: error {code}: {}", server.redact(message))
        }
        mcp::Error::Protocol(_) => format!("server '{s}' sent a reply that could not be used"),
        mcp::Error::TooLarge(n) => format!(
            "server '{s}' sent a reply larger than {} MiB; it was discarded",
            n / (1024 * 1024)
        ),
    }
}

impl ToolExecutor for ToolSet {
    fn definitions(&self) -> &[Tool] {
        &self.tools
    }

    /// Run the calls concurrently; one tool message per call, in the given order. Calls
    /// beyond `max_calls` are not run: each gets a tool error saying so.
    fn call_all(&self, calls: &[ToolCall], cancel: &Cancel) -> Vec<Message> {
        // The loop may call from a thread of its own: MCP lines still name the request.
        let _ctx = mcp::logctx::enter_shared(self.request.clone());
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
                                    .spawn_scoped(s, move || {
                                        let _ctx = mcp::logctx::enter_shared(self.request.clone());
                                        self.call_one(c, cancel)
                                    })
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

/// Why model-produced arguments cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgError {
    /// Not JSON at all (the parser's message).
    Json(String),
    /// JSON, but not an object: `a string`, `a number`, `a boolean`, `an array`.
    NotObject(&'static str),
}

/// Model-produced arguments → a JSON object for `tools/call`. Empty, `null` and `""` mean
/// `{}`; any other value that is not an object is refused (never wrapped or guessed at), so
/// the model can be told what is expected.
pub fn parse_arguments(raw: &str) -> Result<Value, ArgError> {
    if raw.trim().is_empty() {
        return Ok(json!({}));
    }
    let kind = match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => return Ok(v),
        Ok(Value::Null) => return Ok(json!({})),
        Ok(Value::String(s)) if s.is_empty() => return Ok(json!({})),
        Ok(Value::String(_)) => "a string",
        Ok(Value::Number(_)) => "a number",
        Ok(Value::Bool(_)) => "a boolean",
        Ok(Value::Array(_)) => "an array",
        Err(e) => return Err(ArgError::Json(e.to_string())),
    };
    Err(ArgError::NotObject(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(parse_arguments("").unwrap(), json!({}));
        assert_eq!(parse_arguments(r#"{"a":1}"#).unwrap(), json!({"a":1}));
        assert_eq!(parse_arguments("null").unwrap(), json!({}));
        assert_eq!(parse_arguments(" \"\" ").unwrap(), json!({}));
        for (raw, kind) in [
            ("3", "a number"),
            ("\"str\"", "a string"),
            ("[\"list\"]", "an array"),
            ("true", "a boolean"),
        ] {
            assert_eq!(parse_arguments(raw), Err(ArgError::NotObject(kind)));
        }
        assert!(matches!(parse_arguments("{oops"), Err(ArgError::Json(_))));
    }
}
