//! The Messages API stream as a pure state machine: fed `(event name, data JSON)` pairs in order,
//! it returns the text deltas to forward and finally rebuilds the whole message as a [`Reply`],
//! so streaming and non-streaming turns go through the same conversion.
//!
//! Events (Anthropic "Streaming messages"): `message_start`; per content block
//! `content_block_start`, `content_block_delta`s (`text_delta`, `input_json_delta` — partial JSON
//! accumulated and parsed at `content_block_stop`, an empty string meaning `{}` —,
//! `thinking_delta`, `signature_delta`, `citations_delta`), `content_block_stop`; `message_delta`
//! (stop reason, cumulative usage); `message_stop`. `ping` may appear anywhere; an `error` event
//! is an error, never a silent stop; unknown events and delta types are ignored, as the API's
//! versioning policy asks. No I/O, no threads: [`StreamMachine`] is the [`Decoder`] the shared
//! upstream layer (`backend::upstream`) feeds, which does the reading.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::response::Reply;
use super::types::{RawUsage, error_event};
use crate::backend::upstream::Decoder;
use crate::backend::{Error, TurnSink};
use crate::sse_codec::SseEvent;

/// One content block being rebuilt.
struct Block {
    value: Map<String, Value>,
    /// Accumulated `input_json_delta`s (tool_use and server tool blocks).
    partial_json: Option<String>,
}

#[derive(Default)]
pub struct StreamMachine {
    blocks: BTreeMap<u64, Block>,
    stop_reason: Option<String>,
    usage: RawUsage,
    stopped: bool,
}

impl StreamMachine {
    pub fn new() -> Self {
        Self::default()
    }

    /// `message_stop` was seen: nothing more is expected.
    pub fn is_done(&self) -> bool {
        self.stopped
    }

    /// Feed one event. `event` is the SSE event name (empty or "message" when absent: the data's
    /// `type` decides then). Returns the text to show the client, if any.
    pub fn feed(&mut self, event: &str, data: &str) -> Result<Option<String>, Error> {
        if self.stopped {
            return Ok(None);
        }
        let data: Value = serde_json::from_str(data)
            .map_err(|e| Error::Protocol(format!("stream event '{event}' is not JSON: {e}")))?;
        let kind = match event {
            "" | "message" => data.get("type").and_then(Value::as_str).unwrap_or(""),
            named => named,
        };
        match kind {
            "ping" => Ok(None),
            "message_start" => {
                self.usage
                    .merge(&RawUsage::from_value(data.pointer("/message/usage")));
                Ok(None)
            }
            "content_block_start" => self.block_start(&data),
            "content_block_delta" => self.block_delta(&data),
            "content_block_stop" => {
                let index = index_of(&data)?;
                if let Some(block) = self.blocks.get_mut(&index) {
                    finish_block(block);
                }
                Ok(None)
            }
            "message_delta" => {
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_string());
                }
                self.usage.merge(&RawUsage::from_value(data.get("usage")));
                Ok(None)
            }
            "message_stop" => {
                self.stopped = true;
                Ok(None)
            }
            "error" => Err(error_event(&data)),
            other => {
                log::debug!("anthropic: unknown stream event '{other}' ignored");
                Ok(None)
            }
        }
    }

    fn block_start(&mut self, data: &Value) -> Result<Option<String>, Error> {
        let index = index_of(data)?;
        let Some(Value::Object(value)) = data.get("content_block") else {
            return Err(Error::Protocol(
                "content_block_start without content_block".to_string(),
            ));
        };
        let value = value.clone();
        let text = match value.get("type").and_then(Value::as_str) {
            Some("text") => value
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            _ => None,
        };
        // The start block carries `input: {}`; the real input arrives as JSON deltas.
        let partial_json = value.contains_key("input").then(String::new);
        self.blocks.insert(
            index,
            Block {
                value,
                partial_json,
            },
        );
        Ok(text)
    }

    fn block_delta(&mut self, data: &Value) -> Result<Option<String>, Error> {
        let index = index_of(data)?;
        let block = self.blocks.get_mut(&index).ok_or_else(|| {
            Error::Protocol(format!("content_block_delta for unknown block {index}"))
        })?;
        let delta = data.get("delta").unwrap_or(&Value::Null);
        let field = |name: &str| delta.get(name).and_then(Value::as_str).unwrap_or("");
        match delta.get("type").and_then(Value::as_str).unwrap_or("") {
            "text_delta" => {
                let text = field("text");
                append_str(&mut block.value, "text", text);
                let is_text = block.value.get("type").and_then(Value::as_str) == Some("text");
                Ok((is_text && !text.is_empty()).then(|| text.to_string()))
            }
            "input_json_delta" => {
                block
                    .partial_json
                    .get_or_insert_with(String::new)
                    .push_str(field("partial_json"));
                Ok(None)
            }
            "thinking_delta" => {
                append_str(&mut block.value, "thinking", field("thinking"));
                Ok(None)
            }
            "signature_delta" => {
                append_str(&mut block.value, "signature", field("signature"));
                Ok(None)
            }
            "citations_delta" => {
                if let Some(c) = delta.get("citation") {
                    let list = block.value.entry("citations").or_insert_with(|| json!([]));
                    if !list.is_array() {
                        *list = json!([]);
                    }
                    if let Value::Array(items) = list {
                        items.push(c.clone());
                    }
                }
                Ok(None)
            }
            other => {
                log::debug!("anthropic: unknown delta type '{other}' ignored");
                Ok(None)
            }
        }
    }

    /// The rebuilt message. A stream that ended without `message_stop` was cut off: that is an
    /// error, not a short answer.
    pub fn finish(mut self) -> Result<Reply, Error> {
        if !self.stopped {
            return Err(Error::Protocol(
                "stream ended before message_stop".to_string(),
            ));
        }
        let content = std::mem::take(&mut self.blocks)
            .into_values()
            .map(|mut b| {
                finish_block(&mut b);
                Value::Object(b.value)
            })
            .collect();
        Ok(Reply {
            content,
            stop_reason: self.stop_reason,
            usage: self.usage,
        })
    }
}

impl Decoder for StreamMachine {
    type Output = Reply;

    fn event(&mut self, ev: &SseEvent, sink: &mut dyn TurnSink) -> Result<Option<Reply>, Error> {
        if let Some(text) = self.feed(ev.event.as_deref().unwrap_or(""), &ev.data)? {
            sink.text(&text)?;
        }
        if !self.is_done() {
            return Ok(None);
        }
        // Stop reading at message_stop.
        std::mem::take(self).finish().map(Some)
    }

    /// Some gateways in front of the API answer a streaming request with plain JSON.
    fn whole(&mut self, body: &[u8], sink: &mut dyn TurnSink) -> Result<Reply, Error> {
        let reply = Reply::from_body(body)?;
        let text = reply.to_turn().content;
        if !text.is_empty() {
            sink.text(&text)?;
        }
        Ok(reply)
    }

    fn end(&mut self) -> Result<Reply, Error> {
        std::mem::take(self).finish()
    }
}

fn index_of(data: &Value) -> Result<u64, Error> {
    data.get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::Protocol("content block event without index".to_string()))
}

fn append_str(value: &mut Map<String, Value>, key: &str, more: &str) {
    match value.get_mut(key) {
        Some(Value::String(s)) => s.push_str(more),
        _ => {
            value.insert(key.to_string(), Value::String(more.to_string()));
        }
    }
}

/// Parse the accumulated input JSON (once). `""` is a tool without arguments: `{}`. Invalid JSON
/// (a block cut off at `max_tokens`) leaves `input: null`, which the conversion drops.
fn finish_block(block: &mut Block) {
    let Some(raw) = block.partial_json.take() else {
        return;
    };
    let input = if raw.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(&raw) {
            Ok(v) => v,
            Err(e) => {
                log::debug!("anthropic: tool input is not valid JSON ({e})");
                Value::Null
            }
        }
    };
    block.value.insert("input".to_string(), input);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_deltas_are_returned_and_blocks_rebuilt() {
        let mut m = StreamMachine::new();
        assert_eq!(m.feed("message_start", r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#).unwrap(), None);
        m.feed(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        )
        .unwrap();
        assert_eq!(
            m.feed("", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#).unwrap(),
            Some("Hi".to_string())
        );
        m.feed(
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        )
        .unwrap();
        m.feed("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#).unwrap();
        m.feed("brand_new_event", r#"{"type":"brand_new_event"}"#)
            .unwrap();
        m.feed("message_stop", r#"{"type":"message_stop"}"#)
            .unwrap();
        assert!(m.is_done());
        let r = m.finish().unwrap();
        assert_eq!(r.content, vec![json!({"type":"text","text":"Hi"})]);
        assert_eq!(r.usage.output_tokens, Some(5));
        assert_eq!(r.usage.input_tokens, Some(3));
    }

    #[test]
    fn truncated_stream_and_bad_json_are_errors() {
        let mut m = StreamMachine::new();
        m.feed("message_start", r#"{"type":"message_start","message":{}}"#)
            .unwrap();
        assert!(matches!(m.finish(), Err(Error::Protocol(_))));
        let mut m = StreamMachine::new();
        assert!(matches!(
            m.feed("ping", "{not json"),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            m.feed(
                "content_block_delta",
                r#"{"index":3,"delta":{"type":"text_delta","text":"x"}}"#
            ),
            Err(Error::Protocol(_))
        ));
    }
}
