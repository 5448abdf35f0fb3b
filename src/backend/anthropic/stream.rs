//! The Messages API stream as a pure state machine: fed `(event name, data JSON)` pairs in order,
//! it returns the text deltas to forward and finally rebuilds the whole message as a [`Reply`],
//! so streaming and non-streaming turns go through the same conversion.
//!
//! Events (Anthropic "Streaming messages"): `message_start`; per content block
//! `content_block_start`, `content_block_delta`s (`text_delta`, `input_json_delta` — partial JSON
//! accumulated and parsed at `content_block_stop`, an empty string meaning `{}` —,
//! `thinking_delta`, `signature_delta`, `citations_delta`), `content_block_stop`; `message_delta`
//! (stop reason, cumulative usage); `message_stop`. `ping` may appear anywhere; an `error` event
//! is an error, never a silent stop — also as a bare `data: {"error":{…}}` without an `event:`
//! line or `type` (and a non-JSON `data:` that mentions an error becomes that upstream error,
//! not a parse failure); unknown events and delta types are ignored, as the API's
//! versioning policy asks. No I/O, no threads: [`StreamMachine`] is the [`Decoder`] the shared
//! upstream layer (`backend::upstream`) feeds, which does the reading.
//!
//! Servers that translate to the Messages API (LiteLLM's `/v1/messages`) may split one tool call
//! over several `tool_use` blocks with the same id: those are merged into the first (their
//! input JSON concatenated), and the input is parsed when the message ends. A tool call whose
//! input is still not JSON then, when the model was not cut off at `max_tokens`, fails the turn
//! ([`Error::Protocol`], a 502) rather than answering an empty success.

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
    /// Block index → the earlier block with the same `tool_use` id that it continues.
    merged: BTreeMap<u64, u64>,
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
        let raw = data;
        let data: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            // A translating server's error in another notation (a Python dict, plain text).
            Err(_) if matches!(event, "" | "message" | "error") && raw.contains("rror") => {
                return Err(Error::Protocol(format!(
                    "upstream error: {}",
                    crate::backend::truncate_for_error(raw)
                )));
            }
            Err(e) => {
                return Err(Error::Protocol(format!(
                    "stream event '{event}' is not JSON: {e}"
                )));
            }
        };
        let kind = match event {
            "" | "message" => match data.get("type").and_then(Value::as_str) {
                Some(t) => t,
                None if data.get("error").is_some() => "error",
                None => "",
            },
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
            // Tool input is parsed at the end: a later block with the same id may continue it.
            "content_block_stop" => Ok(None),
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
        if value.get("type").and_then(Value::as_str) == Some("tool_use")
            && let Some(id) = value
                .get("id")
                .and_then(Value::as_str)
                .filter(|i| !i.is_empty())
            && let Some((&first, _)) = self
                .blocks
                .iter()
                .find(|(_, b)| b.value.get("id").and_then(Value::as_str) == Some(id))
        {
            self.merged.insert(index, first);
            return Ok(None);
        }
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
        let index = self.merged.get(&index).copied().unwrap_or(index);
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
        let content: Vec<Value> = std::mem::take(&mut self.blocks)
            .into_values()
            .map(|mut b| {
                finish_block(&mut b);
                Value::Object(b.value)
            })
            .collect();
        if self.stop_reason.as_deref() != Some("max_tokens")
            && let Some(bad) = content.iter().find(|b| {
                b.get("type").and_then(Value::as_str) == Some("tool_use")
                    && b.get("input").is_some_and(Value::is_null)
            })
        {
            let name = bad.get("name").and_then(Value::as_str).unwrap_or("?");
            return Err(Error::Protocol(format!(
                "tool call '{}' arrived with input that is not JSON",
                crate::backend::truncate_for_error(name)
            )));
        }
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

    fn feed_all(m: &mut StreamMachine, events: &[&str]) {
        for e in events {
            m.feed("", e).unwrap();
        }
    }

    #[test]
    fn tool_use_blocks_sharing_an_id_are_merged() {
        let mut m = StreamMachine::new();
        feed_all(
            &mut m,
            &[
                r#"{"type":"message_start","message":{}}"#,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t1","name":"add","input":{}}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
                r#"{"type":"content_block_stop","index":0}"#,
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"add","input":{}}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" "}}"#,
                r#"{"type":"content_block_stop","index":1}"#,
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"t1","name":"add","input":{}}}"#,
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"2}"}}"#,
                r#"{"type":"content_block_stop","index":2}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"}}"#,
                r#"{"type":"message_stop"}"#,
            ],
        );
        let r = m.finish().unwrap();
        assert_eq!(r.content.len(), 1, "{:?}", r.content);
        assert_eq!(
            r.content.first().and_then(|b| b.get("input")),
            Some(&json!({"a": 2}))
        );
        assert_eq!(r.to_turn().tool_calls.len(), 1);
    }

    #[test]
    fn unusable_tool_input_is_an_error_unless_cut_off_at_max_tokens() {
        for (reason, ok) in [("tool_use", false), ("max_tokens", true)] {
            let mut m = StreamMachine::new();
            let stop =
                format!(r#"{{"type":"message_delta","delta":{{"stop_reason":"{reason}"}}}}"#);
            feed_all(
                &mut m,
                &[
                    r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t1","name":"add","input":{}}}"#,
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
                    &stop,
                    r#"{"type":"message_stop"}"#,
                ],
            );
            assert_eq!(m.finish().is_ok(), ok, "{reason}");
        }
    }

    #[test]
    fn bare_error_data_is_the_upstreams_error() {
        let mut m = StreamMachine::new();
        let e = m
            .feed(
                "",
                r#"{"error":{"type":"rate_limit_error","message":"slow down"}}"#,
            )
            .unwrap_err();
        assert!(e.to_string().contains("slow down"), "{e}");
        let mut m = StreamMachine::new();
        let e = m
            .feed(
                "",
                "{'error': {'message': 'litellm.BadRequestError: nope'}}",
            )
            .unwrap_err();
        assert!(e.to_string().contains("BadRequestError: nope"), "{e}");
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
