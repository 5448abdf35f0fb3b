//! The response object and its output items, built from what the agent loop reports, with the
//! semantic stream events emitted as the items form.
//!
//! One [`Builder`] serves both modes, so a stream and a non-streaming call give the same final
//! response. In stream mode it follows the loop's deltas: a `message` item opens at the first
//! text of a round and closes when the round's tool calls start; each MCP tool call becomes an
//! `mcp_call` item (`in_progress` when the round starts, `completed`/`failed` with its output or
//! error when it ends); client tool calls end the output as `function_call` items. In
//! non-streaming mode (the backend reports no deltas) the same items are built from each round's
//! text when its tools are done, and from the outcome at the end. With `mcp_call` items hidden
//! (assistant option `responses_mcp_items: false`) all text is one message, as in chat
//! completions, and the calls are kept only for the store.
//!
//! Events: `response.created` and `response.in_progress` go out lazily with the first item (so
//! an upstream failure before any output still gets a real HTTP status), every event carries
//! `type` and a `sequence_number` counting from 0.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::object::Echo;
use super::stream::Events;
use super::unique_id;
use crate::agent::{LoopSink, Outcome};
use crate::api::openai::{FinishReason, Message, ToolCall};
use crate::backend::Cancelled;
use crate::error::ApiError;
use crate::tools::result::ERROR_PREFIX;

/// `{"output_index": …, "item": …}`: `response.output_item.added` / `.done`.
#[derive(Serialize)]
struct WithItem<'a> {
    output_index: usize,
    item: &'a Value,
}

/// `response.output_text.delta`, the one event per upstream chunk (flat: no `flatten`).
#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    delta: &'a str,
    logprobs: [u8; 0],
}

/// What [`Builder::emit`] writes: the payload with `type` and `sequence_number` in front.
#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    data: T,
}

/// The finished response.
pub struct Done {
    /// The response object, serialized (as returned and as stored).
    pub response: String,
    /// Output items for the store: visible items plus hidden `mcp_call` items.
    pub items: Vec<Value>,
}

struct OpenMessage {
    index: usize,
    id: String,
    text: String,
}

pub struct Builder<'r, E: Events> {
    echo: &'r Echo,
    events: E,
    /// Exposed tool name → (server, tool).
    origins: &'r HashMap<String, (String, String)>,
    show_mcp: bool,
    output: Vec<Value>,
    hidden: Vec<Value>,
    open: Option<OpenMessage>,
    /// Output indices of this round's `mcp_call` items (stream mode).
    pending: Vec<usize>,
    /// Text of the finished tool rounds, joined like the loop joins it.
    rounds_text: String,
    after_tools: bool,
    started: bool,
    seq: u64,
}

impl<'r, E: Events> Builder<'r, E> {
    pub fn new(
        echo: &'r Echo,
        events: E,
        origins: &'r HashMap<String, (String, String)>,
        show_mcp: bool,
    ) -> Self {
        Builder {
            echo,
            events,
            origins,
            show_mcp,
            output: Vec::new(),
            hidden: Vec::new(),
            open: None,
            pending: Vec::new(),
            rounds_text: String::new(),
            after_tools: false,
            started: false,
            seq: 0,
        }
    }

    fn emit(&mut self, kind: &str, data: impl Serialize) -> Result<(), Cancelled> {
        if !self.events.streaming() {
            return Ok(());
        }
        self.emit_now_start()?;
        self.emit_now(kind, data)
    }

    fn emit_now(&mut self, kind: &str, data: impl Serialize) -> Result<(), Cancelled> {
        let event = Event {
            kind,
            sequence_number: self.seq,
            data,
        };
        self.seq += 1;
        self.events.send(kind, &event)
    }

    fn open_message(&mut self) -> Result<(), Cancelled> {
        let id = format!("msg_{}", unique_id());
        let index = self.output.len();
        let item = json!({"id": id, "type": "message", "role": "assistant", "status": "in_progress", "content": []});
        self.output.push(item.clone());
        self.emit(
            "response.output_item.added",
            WithItem {
                output_index: index,
                item: &item,
            },
        )?;
        self.emit(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": text_part("")}),
        )?;
        self.open = Some(OpenMessage {
            index,
            id,
            text: String::new(),
        });
        Ok(())
    }

    fn close_message(&mut self, status: &str) -> Result<(), Cancelled> {
        let Some(m) = self.open.take() else {
            return Ok(());
        };
        let part = text_part(&m.text);
        let item = json!({"id": m.id, "type": "message", "role": "assistant", "status": status, "content": [part]});
        self.output[m.index] = item.clone();
        let (id, index) = (m.id, m.index);
        self.emit(
            "response.output_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": m.text, "logprobs": []}),
        )?;
        self.emit(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        )?;
        self.emit(
            "response.output_item.done",
            WithItem {
                output_index: index,
                item: &item,
            },
        )
    }

    /// A whole message at once (non-streaming mode).
    fn push_message(&mut self, text: &str, status: &str) {
        let id = format!("msg_{}", unique_id());
        self.output.push(json!({"id": id, "type": "message", "role": "assistant", "status": status, "content": [text_part(text)]}));
    }

    fn mcp_item(&self, call: &ToolCall) -> Value {
        let (server, tool) = self
            .origins
            .get(&call.function.name)
            .cloned()
            .unwrap_or_else(|| (String::new(), call.function.name.clone()));
        json!({
            "id": mcp_item_id(),
            "type": "mcp_call",
            "server_label": server,
            "name": tool,
            "arguments": call.function.arguments,
            "status": "in_progress",
            "output": null,
            "error": null,
        })
    }

    /// The text and status an `mcp_call` item gets from its result message.
    fn finish_mcp(item: &mut Value, result: Option<&Message>) {
        let text = result.map(Message::text_content).unwrap_or_default();
        let failed = result.is_none_or(|m| m.tool_error);
        if failed {
            let msg = text.strip_prefix(ERROR_PREFIX).unwrap_or(&text).to_string();
            item["error"] = json!(if msg.is_empty() {
                "tool call failed".into()
            } else {
                msg
            });
            item["status"] = json!("failed");
        } else {
            item["output"] = json!(text);
            item["status"] = json!("completed");
        }
    }

    /// The end of a successful loop: the last message, client tool calls, the final event.
    pub fn finish(mut self, out: &Outcome) -> Result<(Done, E), (Cancelled, E)> {
        match self.finish_inner(out) {
            Ok(done) => Ok((done, self.events)),
            Err(c) => Err((c, self.events)),
        }
    }

    fn finish_inner(&mut self, out: &Outcome) -> Result<Done, Cancelled> {
        let incomplete = match out.finish_reason {
            FinishReason::Length => Some("max_output_tokens"),
            FinishReason::ContentFilter => Some("content_filter"),
            _ => None,
        };
        let msg_status = if incomplete.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        if self.events.streaming() {
            let need_message = self.open.is_none()
                && out.client_tool_calls.is_empty()
                && !matches!(self.output.last(), Some(v) if v["type"] == "message");
            if need_message {
                self.open_message()?;
            }
            self.close_message(msg_status)?;
        } else {
            let text = if self.show_mcp {
                final_text(&out.content, &self.rounds_text)
            } else {
                out.content.as_str()
            };
            if !text.is_empty() || out.client_tool_calls.is_empty() {
                let text = text.to_string();
                self.push_message(&text, msg_status);
            }
        }
        for call in &out.client_tool_calls {
            let index = self.output.len();
            let id = format!("fc_{}", unique_id());
            let mut item = json!({"id": id, "type": "function_call", "status": "in_progress",
                "call_id": call.id, "name": call.function.name, "arguments": ""});
            self.emit(
                "response.output_item.added",
                WithItem {
                    output_index: index,
                    item: &item,
                },
            )?;
            let args = &call.function.arguments;
            self.emit(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": args}),
            )?;
            self.emit(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": index, "name": call.function.name, "arguments": args}),
            )?;
            item["arguments"] = json!(args);
            item["status"] = json!("completed");
            self.output.push(item.clone());
            self.emit(
                "response.output_item.done",
                WithItem {
                    output_index: index,
                    item: &item,
                },
            )?;
        }
        let status = if incomplete.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        let kind = if incomplete.is_some() {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let output = std::mem::take(&mut self.output);
        let echo = self.echo;
        let object = echo.object(status, &output, Some(&out.usage), Value::Null, incomplete);
        // Serializing a response object cannot fail (string keys only).
        let response = serde_json::to_string(&object).unwrap_or_default();
        if self.events.streaming() {
            self.emit_now_start()?;
        }
        self.emit_response(kind, &response)?;
        let mut items = std::mem::take(&mut self.hidden);
        items.extend(output);
        Ok(Done { response, items })
    }

    /// After a failure: the writer back, with the `error` and `response.failed` events to send
    /// when the stream has started (`None` when nothing was written: send a real status).
    pub fn fail(mut self, err: &ApiError) -> (E, Option<(Value, Value)>) {
        if !self.started {
            return (self.events, None);
        }
        let code = match err.status {
            429 => "rate_limit_exceeded",
            _ => "server_error",
        };
        let error = json!({"type": "error", "code": err.code.unwrap_or(code), "message": err.message,
            "param": err.param, "sequence_number": self.seq});
        self.seq += 1;
        if let Some(m) = self.open.take() {
            self.output[m.index] = json!({"id": m.id, "type": "message", "role": "assistant",
                "status": "incomplete", "content": [text_part(&m.text)]});
        }
        let response = self.echo.object(
            "failed",
            &self.output,
            None,
            json!({"code": code, "message": err.message}),
            None,
        );
        let failed = json!({"type": "response.failed", "response": serde_json::to_value(&response).unwrap_or_default(),
            "sequence_number": self.seq});
        (self.events, Some((error, failed)))
    }
}

impl<E: Events> LoopSink for Builder<'_, E> {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        if !self.events.streaming() || delta.is_empty() {
            return Ok(());
        }
        if self.open.is_none() {
            // The loop separates rounds' text with a blank line; items separate them here.
            if self.show_mcp && self.after_tools && delta == "\n\n" {
                return Ok(());
            }
            self.open_message()?;
        }
        let Some(mut m) = self.open.take() else {
            return Ok(());
        };
        m.text.push_str(delta);
        let kind = "response.output_text.delta";
        let delta = TextDelta {
            kind,
            sequence_number: self.seq,
            item_id: &m.id,
            output_index: m.index,
            content_index: 0,
            delta,
            logprobs: [],
        };
        self.seq += 1;
        let sent = self.events.send(kind, &delta);
        self.open = Some(m);
        sent
    }

    fn tool_round(&mut self, calls: &[ToolCall]) -> Result<(), Cancelled> {
        if self.events.streaming() && self.show_mcp {
            self.close_message("completed")?;
            self.pending.clear();
            for call in calls {
                let index = self.output.len();
                let mut item = self.mcp_item(call);
                let id = item["id"].clone();
                item["arguments"] = json!("");
                self.output.push(item.clone());
                self.emit(
                    "response.output_item.added",
                    WithItem {
                        output_index: index,
                        item: &item,
                    },
                )?;
                self.emit(
                    "response.mcp_call.in_progress",
                    json!({"item_id": id, "output_index": index}),
                )?;
                let args = &call.function.arguments;
                self.emit(
                    "response.mcp_call_arguments.delta",
                    json!({"item_id": id, "output_index": index, "delta": args}),
                )?;
                self.emit(
                    "response.mcp_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": args}),
                )?;
                self.output[index]["arguments"] = json!(args);
                self.pending.push(index);
            }
        } else if self.events.streaming() && !self.started {
            // Nothing visible yet: start the stream so keep-alives can flow while tools run.
            self.emit_now_start()?;
        }
        let names: Vec<&str> = calls.iter().map(|c| c.function.name.as_str()).collect();
        // Tool names only: arguments may hold user data and stay out of the wire comments.
        if self.events.streaming() {
            self.events
                .comment(&format!("running tools: {}", names.join(", ")))
        } else {
            self.events.waiting()
        }
    }

    fn waiting(&mut self) -> Result<(), Cancelled> {
        self.events.waiting()
    }

    fn tools_done(
        &mut self,
        text: &str,
        calls: &[ToolCall],
        results: &[Message],
    ) -> Result<(), Cancelled> {
        self.after_tools = true;
        let streaming = self.events.streaming();
        if !streaming && self.show_mcp && !text.is_empty() {
            self.push_message(text, "completed");
        }
        if !text.is_empty() {
            if !self.rounds_text.is_empty() {
                self.rounds_text.push_str("\n\n");
            }
            self.rounds_text.push_str(text);
        }
        for (i, call) in calls.iter().enumerate() {
            let result = results.get(i);
            if streaming && self.show_mcp {
                let Some(&index) = self.pending.get(i) else {
                    continue;
                };
                let mut item = self.output[index].clone();
                Self::finish_mcp(&mut item, result);
                self.output[index] = item.clone();
                let kind = if item["status"] == "failed" {
                    "response.mcp_call.failed"
                } else {
                    "response.mcp_call.completed"
                };
                self.emit(kind, json!({"item_id": item["id"], "output_index": index}))?;
                self.emit(
                    "response.output_item.done",
                    WithItem {
                        output_index: index,
                        item: &item,
                    },
                )?;
            } else {
                let mut item = self.mcp_item(call);
                Self::finish_mcp(&mut item, result);
                if self.show_mcp {
                    self.output.push(item);
                } else {
                    self.hidden.push(item);
                }
            }
        }
        self.pending.clear();
        Ok(())
    }
}

impl<E: Events> Builder<'_, E> {
    fn emit_now_start(&mut self) -> Result<(), Cancelled> {
        if !self.started {
            self.started = true;
            let r = self
                .echo
                .object("in_progress", &[], None, Value::Null, None);
            let text = serde_json::to_string(&r).unwrap_or_default();
            self.emit_response("response.created", &text)?;
            self.emit_response("response.in_progress", &text)?;
        }
        Ok(())
    }

    /// `{"type": kind, "sequence_number": n, "response": <the serialized response object>}`,
    /// the response written once and reused rather than serialized per event.
    fn emit_response(&mut self, kind: &str, response: &str) -> Result<(), Cancelled> {
        if !self.events.streaming() {
            return Ok(());
        }
        let data = format!(
            "{{\"type\":\"{kind}\",\"sequence_number\":{},\"response\":{response}}}",
            self.seq
        );
        self.seq += 1;
        self.events.send_text(kind, &data)
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The last round's text: the loop's joined text minus the finished tool rounds' text.
fn final_text<'a>(content: &'a str, rounds: &str) -> &'a str {
    match content.strip_prefix(rounds) {
        Some(rest) if !rounds.is_empty() => rest.strip_prefix("\n\n").unwrap_or(rest),
        _ => content,
    }
}

/// A fresh `mcp_…` item id. Not the model's call id: upstreams reuse those across requests
/// (`call_1`), and item ids sent back as input become tool-call ids in the history.
fn mcp_item_id() -> String {
    format!("mcp_{}", unique_id())
}
