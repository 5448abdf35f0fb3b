//! Writes one chat completion as `chat.completion.chunk` server-sent events (docs/api.md#streaming), or a
//! legacy completion as `text_completion` events ([`ChunkWriter::text_completion`]: each
//! choice has `text` in place of `delta`; no role chunk, no tool calls).
//!
//! Every chunk carries `id`, `object`, `created`, `model`, `choices[].index`, `delta` and
//! `finish_reason` (the OpenAI SDK stream helpers need all of them); the first delta carries the
//! role. The HTTP head is sent lazily, with the first event, so that a failure before anything
//! was written still gets a real error status. Keep-alives are SSE comments only (an
//! `event: ping` with no data crashes both OpenAI SDKs). Each event is one chunk, flushed.
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

/// An event-stream answer that writes its head on the first event (so a failure before any
/// output can still be a plain HTTP error). Shared by the chat chunk writer and the Responses
/// API's event writer.
pub(super) enum State<'a, 'b> {
    NotStarted(&'a mut Responder<'b>),
    Started(BodyStream<'a>),
    /// The head could not be written or the client left.
    Gone,
}

impl State<'_, '_> {
    /// Write `data` (one or more whole SSE events), sending the event-stream head with `headers`
    /// first if it has not gone out yet. An error means the client is gone (state `Gone`).
    pub(super) fn write(
        &mut self,
        headers: &[(String, String)],
        data: &[u8],
    ) -> Result<(), Cancelled> {
        if let State::NotStarted(_) = self {
            let State::NotStarted(resp) = std::mem::replace(self, State::Gone) else {
                return Err(Cancelled);
            };
            let mut head: Vec<(&str, &str)> = vec![
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                ("X-Accel-Buffering", "no"),
            ];
            head.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            match resp.stream(200, &head) {
                Ok(stream) => *self = State::Started(stream),
                Err(_) => return Err(Cancelled),
            }
        }
        let State::Started(stream) = self else {
            return Err(Cancelled);
        };
        if stream.write(data).is_err() {
            *self = State::Gone;
            return Err(Cancelled);
        }
        Ok(())
    }
}

pub struct ChunkWriter<'a, 'b> {
    state: State<'a, 'b>,
    headers: Vec<(String, String)>,
    /// `{"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[{"index":0,"delta":`
    prefix: String,
    /// `text_completion` events (the legacy completions endpoint).
    legacy: bool,
    sent_role: bool,
    last_write: Instant,
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
            state: State::NotStarted(resp),
            headers,
            prefix,
            legacy: false,
            sent_role: false,
            last_write: Instant::now(),
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
            state: State::NotStarted(resp),
            headers,
            prefix,
            legacy: true,
            sent_role: true,
            last_write: Instant::now(),
        }
    }

    pub fn started(&self) -> bool {
        matches!(self.state, State::Started(_))
    }

    fn write_raw(&mut self, data: &[u8]) -> Result<(), Cancelled> {
        self.state.write(&self.headers, data)?;
        self.last_write = Instant::now();
        Ok(())
    }

    fn chunk(&mut self, delta: &Value, finish: Option<FinishReason>) -> Result<(), Cancelled> {
        let finish = finish.map_or("null".to_string(), |f| format!("\"{}\"", f.as_str()));
        let event = format!(
            "data: {}{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n",
            self.prefix
        );
        self.write_raw(event.as_bytes())
    }

    fn ensure_role(&mut self) -> Result<(), Cancelled> {
        if !self.sent_role {
            self.sent_role = true;
            self.chunk(&json!({"role": "assistant", "content": ""}), None)?;
        }
        Ok(())
    }

    /// The last chunks: client tool calls (if any), the finish reason, usage when asked, `[DONE]`.
    pub fn finish(
        mut self,
        client_tool_calls: &[ToolCall],
        finish: FinishReason,
        usage: Option<&Usage>,
    ) -> Result<(), Cancelled> {
        self.ensure_role()?;
        if !client_tool_calls.is_empty() && !self.legacy {
            let calls: Vec<Value> = client_tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"index": i, "id": c.id, "type": "function",
                           "function": {"name": c.function.name, "arguments": c.function.arguments}})
                })
                .collect();
            self.chunk(&json!({"tool_calls": calls}), None)?;
        }
        let last = if self.legacy { json!("") } else { json!({}) };
        self.chunk(&last, Some(finish))?;
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
            self.write_raw(event.as_bytes())?;
        }
        self.write_raw(b"data: [DONE]\n\n")?;
        self.close()
    }

    /// A failure: before the first byte, a real status (returned for the caller to send);
    /// after it, an `error` event and the end of the stream.
    pub fn fail(mut self, err: &ApiError) -> Option<(&'a mut Responder<'b>, ApiError)> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::NotStarted(resp) => Some((resp, err.clone())),
            State::Started(stream) => {
                self.state = State::Started(stream);
                let event = format!("data: {}\n\n", err.body());
                let _ = self.write_raw(event.as_bytes());
                let _ = self.close();
                None
            }
            State::Gone => None,
        }
    }

    fn close(&mut self) -> Result<(), Cancelled> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Started(stream) => stream.finish().map_err(|_| Cancelled),
            _ => Ok(()),
        }
    }

    fn client_gone(&self) -> bool {
        match &self.state {
            State::NotStarted(resp) => resp.client_gone(),
            State::Started(stream) => stream.client_gone(),
            State::Gone => true,
        }
    }
}

impl LoopSink for ChunkWriter<'_, '_> {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.ensure_role()?;
        if self.legacy {
            return self.chunk(&json!(delta), None);
        }
        self.chunk(&json!({ "content": delta }), None)
    }

    fn tool_round(&mut self, calls: &[ToolCall]) -> Result<(), Cancelled> {
        self.ensure_role()?;
        let names: Vec<&str> = calls.iter().map(|c| c.function.name.as_str()).collect();
        // Tool names only: arguments may hold user data and stay out of the wire comments.
        let comment = format!(
            ": running tools: {}\n\n",
            names.join(", ").replace(['\n', '\r'], " ")
        );
        self.write_raw(comment.as_bytes())
    }

    fn waiting(&mut self) -> Result<(), Cancelled> {
        if self.client_gone() {
            self.state = State::Gone;
            return Err(Cancelled);
        }
        if self.started() && self.last_write.elapsed() >= KEEPALIVE_EVERY {
            self.write_raw(b": keep-alive\n\n")?;
        }
        Ok(())
    }
}
