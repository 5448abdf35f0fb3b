//! Writes one chat completion as `chat.completion.chunk` server-sent events (docs/api.md#streaming), or a
//! legacy completion as `text_completion` events ([`ChunkWriter::text_completion`]: each
//! choice has `text` in place of `delta`; no role chunk, no tool calls).
//!
//! Every chunk carries `id`, `object`, `created`, `model`, `choices[].index`, `delta` and
//! `finish_reason` (the OpenAI SDK stream helpers need all of them); the first delta carries the
//! role. The HTTP head is sent lazily, with the first event, so that a failure before anything
//! was written still gets a real error status. Keep-alives are SSE comments only (an
//! `event: ping` with no data crashes both OpenAI SDKs). Each event is flushed at once, except
//! text deltas whose upstream event had more behind it already in memory: those leave together
//! with the last of them, in one chunk (`LoopSink::text_held`). The end of the body leaves with
//! the last events.
//! A failure after the first byte is sent as `data: {"error":{…}}` and the stream is closed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::agent::LoopSink;
use crate::api::openai::{FinishReason, ToolCall, Usage};
use crate::backend::Cancelled;
use crate::error::ApiError;
use crate::http::{BodyStream, Responder};

/// Longest silence on a stream while tools run (docs/api.md#streaming).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);

/// An event-stream answer, shared by the chat chunk writer and the Responses API's event
/// writer. Its head leaves with the first bytes (so a failure before any output can still be a
/// plain HTTP error); events can be held to leave with the next write, in one chunk; the end
/// of the body leaves with the last events.
pub(super) struct EventStream<'a, 'b> {
    state: State<'a, 'b>,
    headers: Vec<(String, String)>,
    /// Whole events not written yet ([`EventStream::held`]).
    held: Vec<u8>,
    last_write: Instant,
}

enum State<'a, 'b> {
    NotStarted(&'a mut Responder<'b>),
    Started(BodyStream<'a>),
    /// The head could not be written or the client left.
    Gone,
}

impl<'a, 'b> EventStream<'a, 'b> {
    pub(super) fn new(resp: &'a mut Responder<'b>, headers: Vec<(String, String)>) -> Self {
        EventStream {
            state: State::NotStarted(resp),
            headers,
            held: Vec::new(),
            last_write: Instant::now(),
        }
    }

    /// Whether anything was written, or is held to be.
    pub(super) fn has_output(&self) -> bool {
        matches!(self.state, State::Started(_)) || !self.held.is_empty()
    }

    /// Whole events appended here leave with the next write or flush.
    pub(super) fn held(&mut self) -> &mut Vec<u8> {
        &mut self.held
    }

    /// Write what is held, then `data` (one or more whole SSE events), as one chunk. An error
    /// means the client is gone.
    pub(super) fn write(&mut self, data: &[u8]) -> Result<(), Cancelled> {
        self.held.extend_from_slice(data);
        self.flush()
    }

    /// Write what is held, if anything.
    pub(super) fn flush(&mut self) -> Result<(), Cancelled> {
        if self.held.is_empty() {
            return Ok(());
        }
        self.start();
        let sent = match &mut self.state {
            State::Started(body) => body.write(&self.held).map_err(|_| Cancelled),
            _ => Err(Cancelled),
        };
        self.held.clear();
        self.after_write(sent)
    }

    /// Write what is held and end the body, in one write.
    pub(super) fn finish(mut self) -> Result<(), Cancelled> {
        self.start();
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Started(body) => body.finish_with(&self.held).map_err(|_| Cancelled),
            _ => Err(Cancelled),
        }
    }

    /// The responder, when nothing was written or held: the caller can still send a real
    /// error status.
    pub(super) fn into_unstarted(self) -> Option<&'a mut Responder<'b>> {
        match self.state {
            State::NotStarted(resp) if self.held.is_empty() => Some(resp),
            _ => None,
        }
    }

    /// Whether the client is gone (then the stream is, too).
    pub(super) fn client_gone(&mut self) -> bool {
        let gone = match &self.state {
            State::NotStarted(resp) => resp.client_gone(),
            State::Started(body) => body.client_gone(),
            State::Gone => true,
        };
        if gone {
            self.state = State::Gone;
        }
        gone
    }

    /// A keep-alive comment if the stream has been quiet for `every`.
    pub(super) fn keep_alive(&mut self, every: Duration) -> Result<(), Cancelled> {
        if matches!(self.state, State::Started(_)) && self.last_write.elapsed() >= every {
            self.write(b": keep-alive\n\n")?;
        }
        Ok(())
    }

    /// Start the body stream if it was not yet (its head leaves with the first write).
    fn start(&mut self) {
        if let State::NotStarted(_) = self.state {
            let State::NotStarted(resp) = std::mem::replace(&mut self.state, State::Gone) else {
                return;
            };
            let mut head: Vec<(&str, &str)> = vec![
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                ("X-Accel-Buffering", "no"),
            ];
            head.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            if let Ok(body) = resp.stream_lazily(200, &head) {
                self.state = State::Started(body);
            }
        }
    }

    fn after_write(&mut self, sent: Result<(), Cancelled>) -> Result<(), Cancelled> {
        match sent {
            Ok(()) => self.last_write = Instant::now(),
            Err(Cancelled) => self.state = State::Gone,
        }
        sent
    }
}

pub struct ChunkWriter<'a, 'b> {
    out: EventStream<'a, 'b>,
    /// `{"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[{"index":0,"delta":`
    prefix: String,
    /// `text_completion` events (the legacy completions endpoint).
    legacy: bool,
    sent_role: bool,
}

impl<'a, 'b> ChunkWriter<'a, 'b> {
    pub fn new(
        resp: &'a mut Responder<'b>,
        id: &str,
        created: u64,
        model: &str,
        headers: Vec<(String, String)>,
    ) -> Self {
        let head = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model}).to_string();
        // `head` is an object: splice the choices array in before its closing brace.
        let prefix = format!(
            "{},\"choices\":[{{\"index\":0,\"delta\":",
            &head[..head.len() - 1]
        );
        ChunkWriter {
            out: EventStream::new(resp, headers),
            prefix,
            legacy: false,
            sent_role: false,
        }
    }

    /// A writer of legacy `text_completion` events.
    pub fn text_completion(
        resp: &'a mut Responder<'b>,
        id: &str,
        created: u64,
        model: &str,
        headers: Vec<(String, String)>,
    ) -> Self {
        let head =
            json!({"id": id, "object": "text_completion", "created": created, "model": model})
                .to_string();
        let prefix = format!(
            "{},\"choices\":[{{\"index\":0,\"text\":",
            &head[..head.len() - 1]
        );
        ChunkWriter {
            out: EventStream::new(resp, headers),
            prefix,
            legacy: true,
            sent_role: true,
        }
    }

    /// Hold one chunk event; `delta` writes the JSON of its `delta` (or legacy `text`).
    fn hold_chunk(&mut self, delta: impl FnOnce(&mut Vec<u8>), finish: Option<FinishReason>) {
        let buf = self.out.held();
        buf.extend_from_slice(b"data: ");
        buf.extend_from_slice(self.prefix.as_bytes());
        delta(buf);
        buf.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => {
                buf.push(b'"');
                buf.extend_from_slice(f.as_str().as_bytes());
                buf.push(b'"');
            }
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b"}]}\n\n");
    }

    fn hold_role(&mut self) {
        if !self.sent_role {
            self.sent_role = true;
            self.hold_chunk(
                |b| b.extend_from_slice(br#"{"content":"","role":"assistant"}"#),
                None,
            );
        }
    }

    /// The last chunks: client tool calls (if any), the finish reason, usage when asked, `[DONE]`,
    /// written with the end of the body.
    pub fn finish(
        mut self,
        client_tool_calls: &[ToolCall],
        finish: FinishReason,
        usage: Option<&Usage>,
    ) -> Result<(), Cancelled> {
        self.hold_role();
        if !client_tool_calls.is_empty() && !self.legacy {
            let calls: Vec<Value> = client_tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"index": i, "id": c.id, "type": "function",
                           "function": {"name": c.function.name, "arguments": c.function.arguments}})
                })
                .collect();
            let delta = json!({ "tool_calls": calls });
            self.hold_chunk(|b| write_json(b, &delta), None);
        }
        let last: &[u8] = if self.legacy { b"\"\"" } else { b"{}" };
        self.hold_chunk(|b| b.extend_from_slice(last), Some(finish));
        if let Some(u) = usage {
            // The usage chunk has an empty `choices` array (OpenAI's `include_usage` shape).
            let head = &self.prefix[..self
                .prefix
                .find(",\"choices\"")
                .unwrap_or(self.prefix.len())];
            let event = format!(
                "data: {head},\"choices\":[],\"usage\":{}}}\n\n",
                u.to_json()
            );
            self.out.held().extend_from_slice(event.as_bytes());
        }
        self.out.held().extend_from_slice(b"data: [DONE]\n\n");
        self.out.finish()
    }

    /// A failure: before the first byte, a real status (returned for the caller to send);
    /// after it, an `error` event and the end of the stream.
    pub fn fail(self, err: &ApiError) -> Option<(&'a mut Responder<'b>, ApiError)> {
        if !self.out.has_output() {
            return self.out.into_unstarted().map(|resp| (resp, err.clone()));
        }
        let mut out = self.out;
        let event = format!("data: {}\n\n", err.body());
        out.held().extend_from_slice(event.as_bytes());
        let _ = out.finish();
        None
    }
}

/// `value` as JSON into `buf` (values built here serialize without fail).
fn write_json(buf: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(buf, value);
}

impl LoopSink for ChunkWriter<'_, '_> {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.text_held(delta)?;
        self.out.flush()
    }

    fn text_held(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.hold_role();
        if self.legacy {
            self.hold_chunk(|b| write_json(b, delta), None);
        } else {
            self.hold_chunk(
                |b| {
                    b.extend_from_slice(br#"{"content":"#);
                    write_json(b, delta);
                    b.push(b'}');
                },
                None,
            );
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Cancelled> {
        self.out.flush()
    }

    fn tool_round(&mut self, calls: &[ToolCall]) -> Result<(), Cancelled> {
        self.hold_role();
        let names: Vec<&str> = calls.iter().map(|c| c.function.name.as_str()).collect();
        // Tool names only: arguments may hold user data and stay out of the wire comments.
        let comment = format!(
            ": running tools: {}\n\n",
            names.join(", ").replace(['\n', '\r'], " ")
        );
        self.out.write(comment.as_bytes())
    }

    fn waiting(&mut self) -> Result<(), Cancelled> {
        if self.out.client_gone() {
            return Err(Cancelled);
        }
        self.out.flush()?;
        self.out.keep_alive(KEEPALIVE_EVERY)
    }
}
