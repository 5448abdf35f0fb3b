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
use std::io::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use super::object::{Echo, Failure, ItemStatus, OutputItem, OutputText, State};
use super::stream::{Arguments, Event, Events, ItemRef, TextDone, WithItem, WithPart};
use super::unique_id;
use crate::agent::{LoopSink, Outcome};
use crate::api::openai::{FinishReason, Message, ToolCall};
use crate::backend::Cancelled;
use crate::error::ApiError;
use crate::tools::result::ERROR_PREFIX;

/// The finished response.
pub struct Done {
    /// The response object, serialized (as returned and as stored).
    pub response: String,
    /// Output items for the store: hidden `mcp_call` items, then the visible ones.
    pub items: Vec<OutputItem>,
}

struct OpenMessage {
    index: usize,
    id: String,
    text: String,
    /// `response.output_text.delta`'s members after `sequence_number`, up to the delta's
    /// value: the same for every delta of the message, so rendered once.
    delta_members: String,
}

pub struct Builder<'r, E: Events> {
    echo: &'r Echo,
    events: E,
    /// Exposed tool name → (server, tool).
    origins: &'r HashMap<String, (String, String)>,
    show_mcp: bool,
    output: Vec<OutputItem>,
    hidden: Vec<OutputItem>,
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
        send_event(&mut self.events, &mut self.seq, kind, data)
    }

    /// `response.output_item.added` or `.done` for the item at `index`.
    fn emit_item(&mut self, kind: &str, index: usize) -> Result<(), Cancelled> {
        if !self.events.streaming() {
            return Ok(());
        }
        self.emit_now_start()?;
        // The item is borrowed from `output` while the writer and the counter are used.
        let item = WithItem {
            output_index: index,
            item: &self.output[index],
        };
        send_event(&mut self.events, &mut self.seq, kind, item)
    }

    fn open_message(&mut self) -> Result<(), Cancelled> {
        let id = format!("msg_{}", unique_id());
        let index = self.output.len();
        self.output.push(OutputItem::message(
            id.clone(),
            ItemStatus::InProgress,
            None,
        ));
        self.emit_item("response.output_item.added", index)?;
        self.emit(
            "response.content_part.added",
            WithPart {
                item_id: &id,
                output_index: index,
                content_index: 0,
                part: &OutputText::new(String::new()),
            },
        )?;
        let delta_members = format!(
            r#","item_id":{},"output_index":{index},"content_index":0,"delta":"#,
            Value::from(id.as_str())
        );
        self.open = Some(OpenMessage {
            index,
            id,
            text: String::new(),
            delta_members,
        });
        Ok(())
    }

    fn close_message(&mut self, status: ItemStatus) -> Result<(), Cancelled> {
        let Some(m) = self.open.take() else {
            return Ok(());
        };
        let (id, index) = (m.id, m.index);
        self.emit(
            "response.output_text.done",
            TextDone {
                item_id: &id,
                output_index: index,
                content_index: 0,
                text: &m.text,
                logprobs: [],
            },
        )?;
        let part = OutputText::new(m.text);
        self.emit(
            "response.content_part.done",
            WithPart {
                item_id: &id,
                output_index: index,
                content_index: 0,
                part: &part,
            },
        )?;
        self.output[index] = OutputItem::message(id, status, Some(part.text));
        self.emit_item("response.output_item.done", index)
    }

    /// A whole message at once (non-streaming mode).
    fn push_message(&mut self, text: String, status: ItemStatus) {
        let id = format!("msg_{}", unique_id());
        self.output
            .push(OutputItem::message(id, status, Some(text)));
    }

    /// A new `mcp_call` item for `call`, in progress.
    fn mcp_item(&self, call: &ToolCall) -> OutputItem {
        let (server_label, name) = self
            .origins
            .get(&call.function.name)
            .cloned()
            .unwrap_or_else(|| (String::new(), call.function.name.clone()));
        OutputItem::McpCall {
            id: mcp_item_id(),
            server_label,
            name,
            arguments: call.function.arguments.clone(),
            status: ItemStatus::InProgress,
            output: None,
            error: None,
        }
    }

    /// The status and the output or error an `mcp_call` item gets from its result message.
    fn finish_mcp(item: &mut OutputItem, result: Option<&Message>) {
        let OutputItem::McpCall {
            status,
            output,
            error,
            ..
        } = item
        else {
            return;
        };
        let text = result.map(Message::text_content).unwrap_or_default();
        if result.is_none_or(|m| m.tool_error) {
            let msg = text.strip_prefix(ERROR_PREFIX).unwrap_or(&text);
            *error = Some(if msg.is_empty() {
                "tool call failed".to_string()
            } else {
                msg.to_string()
            });
            *status = ItemStatus::Failed;
        } else {
            *output = Some(text);
            *status = ItemStatus::Completed;
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
            ItemStatus::Incomplete
        } else {
            ItemStatus::Completed
        };
        if self.events.streaming() {
            // Everything from here on is the end of the stream: it leaves with the end of the
            // body, in one write, when the caller closes the writer.
            self.events.hold(true);
            let need_message = self.open.is_none()
                && out.client_tool_calls.is_empty()
                && !self.output.last().is_some_and(OutputItem::is_message);
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
                self.push_message(text.to_string(), msg_status);
            }
        }
        for call in &out.client_tool_calls {
            let index = self.output.len();
            let id = format!("fc_{}", unique_id());
            self.output.push(OutputItem::FunctionCall {
                id: id.clone(),
                status: ItemStatus::InProgress,
                call_id: call.id.clone(),
                name: call.function.name.clone(),
                arguments: String::new(),
            });
            self.emit_item("response.output_item.added", index)?;
            let args = &call.function.arguments;
            self.emit(
                "response.function_call_arguments.delta",
                Arguments {
                    item_id: &id,
                    output_index: index,
                    delta: Some(args),
                    name: None,
                    arguments: None,
                },
            )?;
            self.emit(
                "response.function_call_arguments.done",
                Arguments {
                    item_id: &id,
                    output_index: index,
                    delta: None,
                    name: Some(&call.function.name),
                    arguments: Some(args),
                },
            )?;
            if let OutputItem::FunctionCall {
                status, arguments, ..
            } = &mut self.output[index]
            {
                arguments.clone_from(args);
                *status = ItemStatus::Completed;
            }
            self.emit_item("response.output_item.done", index)?;
        }
        let (status, kind) = match incomplete {
            Some(_) => ("incomplete", "response.incomplete"),
            None => ("completed", "response.completed"),
        };
        let output = std::mem::take(&mut self.output);
        let response = self.echo.object(&State {
            status,
            output: &output,
            usage: Some(&out.usage),
            error: None,
            incomplete,
        });
        if self.events.streaming() {
            self.emit_now_start()?;
        }
        self.emit_response(kind, &response)?;
        let mut items = std::mem::take(&mut self.hidden);
        items.extend(output);
        Ok(Done { response, items })
    }

    /// After a failure: the writer back, with the `error` event and the `response.failed`
    /// event (serialized) to send when the stream has started (`None` when nothing was
    /// written: send a real status).
    pub fn fail(mut self, err: &ApiError) -> (E, Option<(Value, String)>) {
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
            self.output[m.index] = OutputItem::message(m.id, ItemStatus::Incomplete, Some(m.text));
        }
        let response = self.echo.object(&State {
            status: "failed",
            output: &self.output,
            error: Some(Failure {
                code,
                message: &err.message,
            }),
            ..State::in_progress()
        });
        let failed = response_event("response.failed", self.seq, &response);
        (self.events, Some((error, failed)))
    }
}

impl<E: Events> LoopSink for Builder<'_, E> {
    fn text_held(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.events.hold(true);
        let sent = self.text(delta);
        self.events.hold(false);
        sent
    }

    fn flush(&mut self) -> Result<(), Cancelled> {
        self.events.flush()
    }

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
        // The one event per upstream chunk, written without a serializer pass over its fixed
        // members (the fields in the order OpenAI sends them).
        let kind = "response.output_text.delta";
        let seq = self.seq;
        self.seq += 1;
        let sent = self.events.send_with(kind, |buf| {
            let _ = write!(
                buf,
                r#"{{"type":"{kind}","sequence_number":{seq}{}"#,
                m.delta_members
            );
            let _ = serde_json::to_writer(&mut *buf, delta);
            buf.extend_from_slice(br#","logprobs":[]}"#);
        });
        self.open = Some(m);
        sent
    }

    fn tool_round(&mut self, calls: &[ToolCall]) -> Result<(), Cancelled> {
        if self.events.streaming() && self.show_mcp {
            self.close_message(ItemStatus::Completed)?;
            self.pending.clear();
            for call in calls {
                let index = self.output.len();
                let mut item = self.mcp_item(call);
                let id = item.id().to_string();
                let OutputItem::McpCall { arguments, .. } = &mut item else {
                    continue;
                };
                // The arguments arrive by their events; the item ends up holding them.
                let args = std::mem::take(arguments);
                self.output.push(item);
                self.emit_item("response.output_item.added", index)?;
                let at = ItemRef {
                    item_id: &id,
                    output_index: index,
                };
                self.emit("response.mcp_call.in_progress", at)?;
                let mut arguments = Arguments {
                    item_id: &id,
                    output_index: index,
                    delta: Some(&args),
                    name: None,
                    arguments: None,
                };
                self.emit("response.mcp_call_arguments.delta", &arguments)?;
                (arguments.delta, arguments.arguments) = (None, Some(args.as_str()));
                self.emit("response.mcp_call_arguments.done", &arguments)?;
                if let OutputItem::McpCall { arguments, .. } = &mut self.output[index] {
                    *arguments = args;
                }
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
            self.push_message(text.to_string(), ItemStatus::Completed);
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
                Self::finish_mcp(&mut self.output[index], result);
                let failed = matches!(
                    self.output[index],
                    OutputItem::McpCall {
                        status: ItemStatus::Failed,
                        ..
                    }
                );
                let kind = if failed {
                    "response.mcp_call.failed"
                } else {
                    "response.mcp_call.completed"
                };
                let id = self.output[index].id().to_string();
                let at = ItemRef {
                    item_id: &id,
                    output_index: index,
                };
                self.emit(kind, at)?;
                self.emit_item("response.output_item.done", index)?;
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
            let text = self.echo.object(&State::in_progress());
            self.emit_response("response.created", &text)?;
            self.emit_response("response.in_progress", &text)?;
        }
        Ok(())
    }

    /// An event carrying the serialized response object, written once and reused rather than
    /// serialized per event.
    fn emit_response(&mut self, kind: &str, response: &str) -> Result<(), Cancelled> {
        if !self.events.streaming() {
            return Ok(());
        }
        let data = response_event(kind, self.seq, response);
        self.seq += 1;
        self.events.send_text(kind, &data)
    }
}

/// `data` with `type` and the next sequence number in front, written to `events`.
fn send_event<E: Events>(
    events: &mut E,
    seq: &mut u64,
    kind: &str,
    data: impl Serialize,
) -> Result<(), Cancelled> {
    let event = Event {
        kind,
        sequence_number: *seq,
        data,
    };
    *seq += 1;
    events.send(kind, &event)
}

/// `{"type": kind, "sequence_number": n, "response": <the serialized response object>}`.
fn response_event(kind: &str, seq: u64, response: &str) -> String {
    format!("{{\"type\":\"{kind}\",\"sequence_number\":{seq},\"response\":{response}}}")
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
