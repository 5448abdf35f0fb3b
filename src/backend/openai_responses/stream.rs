//! The Responses API event stream as a pure state machine and the stream [`Decoder`]: fed
//! events in order, it hands text deltas to the sink as they arrive and finally rebuilds the
//! response as a [`Reply`], so streaming and non-streaming turns go through the same conversion.
//!
//! Events (API reference "Streaming events"): `response.output_item.added` / `.done` carry each
//! output item (the `.done` one is authoritative); `response.output_text.delta` and
//! `response.refusal.delta` are the text shown to the client; `response.function_call_arguments
//! .delta` / `.done` build a call's arguments; `response.completed` and `response.incomplete`
//! end the answer with the whole response (status, usage, and usually the output again, which
//! replaces the rebuilt items); `response.failed` and `error` are errors, never a silent stop.
//! `response.created`, `.in_progress`, content-part, reasoning-summary and unknown events are
//! ignored. A body that ends before the final event is a truncated answer. No I/O: the shared
//! upstream layer (`backend::upstream`) does the reading.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::response::Reply;
use super::types::error_of;
use crate::backend::upstream::Decoder;
use crate::backend::{Error, Turn, TurnSink};
use crate::sse_codec::SseEvent;

/// Largest text + arguments one turn may accumulate from a stream.
const MAX_TURN_BYTES: usize = 16 * 1024 * 1024;
/// Output items one response may have.
const MAX_ITEMS: usize = 4096;

#[derive(Default)]
pub struct EventMachine {
    items: BTreeMap<u64, Value>,
    /// The text given to the client so far.
    streamed: String,
    bytes: usize,
    finished: Option<Reply>,
}

impl EventMachine {
    pub fn new() -> Self {
        Self::default()
    }

    /// The final event (`response.completed` / `.incomplete`) was seen.
    pub fn is_done(&self) -> bool {
        self.finished.is_some()
    }

    /// Feed one event. `event` is the SSE event name (empty or "message" when absent: the data's
    /// `type` decides then). Returns the text to show the client, if any.
    pub fn feed(&mut self, event: &str, data: &str) -> Result<Option<String>, Error> {
        if self.finished.is_some() || data.trim().is_empty() {
            return Ok(None);
        }
        let data: Value = serde_json::from_str(data)
            .map_err(|e| Error::Protocol(format!("stream event '{event}' is not JSON: {e}")))?;
        let kind = match event {
            "" | "message" => data.get("type").and_then(Value::as_str).unwrap_or(""),
            named => named,
        };
        match kind {
            "response.output_text.delta" | "response.refusal.delta" => {
                let delta = data.get("delta").and_then(Value::as_str).unwrap_or("");
                self.grow(delta.len())?;
                self.streamed.push_str(delta);
                Ok((!delta.is_empty()).then(|| delta.to_string()))
            }
            "response.output_item.added" | "response.output_item.done" => {
                let index = index_of(&data)?;
                let item = data
                    .get("item")
                    .filter(|i| i.is_object())
                    .ok_or_else(|| Error::Protocol(format!("{kind} without an item")))?;
                if !self.items.contains_key(&index) && self.items.len() >= MAX_ITEMS {
                    return Err(Error::Protocol("too many output items".into()));
                }
                self.items.insert(index, item.clone());
                Ok(None)
            }
            "response.function_call_arguments.delta" => {
                let delta = data.get("delta").and_then(Value::as_str).unwrap_or("");
                self.grow(delta.len())?;
                let item = self.item(&data)?;
                let mut args = item
                    .get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                args.push_str(delta);
                item.insert("arguments".into(), json!(args));
                Ok(None)
            }
            "response.function_call_arguments.done" => {
                if let Some(args) = data.get("arguments").and_then(Value::as_str) {
                    let args = args.to_string();
                    self.item(&data)?.insert("arguments".into(), json!(args));
                }
                Ok(None)
            }
            "response.completed" | "response.incomplete" => {
                let response = data.get("response").unwrap_or(&Value::Null);
                let mut reply = Reply::from_json(response)?;
                // The final object's items are authoritative; events filled in what it omits.
                for (i, item) in std::mem::take(&mut reply.output).into_iter().enumerate() {
                    self.items.insert(i as u64, item);
                }
                reply.output = std::mem::take(&mut self.items).into_values().collect();
                self.finished = Some(reply);
                Ok(None)
            }
            "response.failed" => Err(error_of(
                data.pointer("/response/error")
                    .filter(|e| e.is_object())
                    .unwrap_or(&data),
                "response failed",
            )),
            "error" => Err(error_of(&data, "error event")),
            other => {
                if !other.starts_with("response.") {
                    log::debug!("openai-responses: unknown stream event '{other}' ignored");
                }
                Ok(None)
            }
        }
    }

    fn grow(&mut self, n: usize) -> Result<(), Error> {
        self.bytes += n;
        if self.bytes > MAX_TURN_BYTES {
            return Err(Error::TooLarge);
        }
        Ok(())
    }

    /// The item an arguments event belongs to (by `output_index`).
    fn item(&mut self, data: &Value) -> Result<&mut Map<String, Value>, Error> {
        let index = index_of(data)?;
        self.items
            .get_mut(&index)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| Error::Protocol(format!("arguments for unknown output item {index}")))
    }

    /// The turn. A stream that ended without its final event was cut off: an error, not a short
    /// answer. `content` is exactly the text given to the client.
    pub fn finish(mut self) -> Result<Turn, Error> {
        let Some(reply) = self.finished.take() else {
            return Err(Error::Protocol(
                "stream ended before response.completed".into(),
            ));
        };
        let mut turn = reply.to_turn();
        if !self.streamed.is_empty() {
            turn.content = std::mem::take(&mut self.streamed);
        }
        Ok(turn)
    }
}

impl Decoder for EventMachine {
    type Output = Turn;

    fn event(&mut self, ev: &SseEvent, sink: &mut dyn TurnSink) -> Result<Option<Turn>, Error> {
        if let Some(text) = self.feed(ev.event.as_deref().unwrap_or(""), &ev.data)? {
            sink.text(&text)?;
        }
        if !self.is_done() {
            return Ok(None);
        }
        let streamed = !self.streamed.is_empty();
        let turn = std::mem::take(self).finish()?;
        // A server that sent no text deltas (only the final object): the text goes out now.
        if !streamed && !turn.content.is_empty() {
            sink.text(&turn.content)?;
        }
        Ok(Some(turn))
    }

    /// Some servers answer a streaming request with the plain response object.
    fn whole(&mut self, body: &[u8], sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        let turn = Reply::from_body(body)?.to_turn();
        if !turn.content.is_empty() {
            sink.text(&turn.content)?;
        }
        Ok(turn)
    }

    fn end(&mut self) -> Result<Turn, Error> {
        std::mem::take(self).finish()
    }
}

fn index_of(data: &Value) -> Result<u64, Error> {
    data.get("output_index")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::Protocol("stream event without output_index".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_streams_bad_json_and_orphan_arguments_are_errors() {
        let mut m = EventMachine::new();
        m.feed(
            "",
            r#"{"type":"response.output_text.delta","output_index":0,"delta":"Hi"}"#,
        )
        .unwrap();
        assert!(matches!(m.finish(), Err(Error::Protocol(_))));
        let mut m = EventMachine::new();
        assert!(matches!(m.feed("x", "{nope"), Err(Error::Protocol(_))));
        assert!(matches!(
            m.feed(
                "response.function_call_arguments.delta",
                r#"{"output_index":7,"delta":"{"}"#
            ),
            Err(Error::Protocol(_))
        ));
    }
}
