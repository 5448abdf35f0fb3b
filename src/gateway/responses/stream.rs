//! The Responses API's stream events: their payloads, and their writer as server-sent events
//! (`event: <type>` + `data: {…}`). Events that always come in a burst are written together,
//! one flushed chunk per burst ending in a delta, the end of an item or a terminal event (so the
//! first text delta leaves in the same write as `response.created` … `content_part.added`).
//! The HTTP head goes out lazily with the first event, so a failure before anything was
//! written still gets a real error status. Keep-alives are SSE comments only, at most every
//! `KEEPALIVE_EVERY` of silence while tools run or the upstream is quiet.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::object::{OutputItem, OutputText};
use crate::backend::Cancelled;
use crate::gateway::sse::EventStream;
use crate::http::Responder;

/// Longest silence on a stream while tools run (docs/api.md#streaming-events).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);

/// `{"output_index": …, "item": …}`: `response.output_item.added` / `.done`.
#[derive(Serialize)]
pub(super) struct WithItem<'a> {
    pub(super) output_index: usize,
    pub(super) item: &'a OutputItem,
}

/// `response.content_part.added` / `.done`.
#[derive(Serialize)]
pub(super) struct WithPart<'a> {
    pub(super) item_id: &'a str,
    pub(super) output_index: usize,
    pub(super) content_index: u32,
    pub(super) part: &'a OutputText,
}

/// `response.output_text.done`.
#[derive(Serialize)]
pub(super) struct TextDone<'a> {
    pub(super) item_id: &'a str,
    pub(super) output_index: usize,
    pub(super) content_index: u32,
    pub(super) text: &'a str,
    pub(super) logprobs: [u8; 0],
}

/// `response.mcp_call.in_progress` / `.completed` / `.failed`.
#[derive(Serialize)]
pub(super) struct ItemRef<'a> {
    pub(super) item_id: &'a str,
    pub(super) output_index: usize,
}

/// The arguments events of MCP and function calls (`name` only on `function_call_arguments.done`).
#[derive(Serialize)]
pub(super) struct Arguments<'a> {
    pub(super) item_id: &'a str,
    pub(super) output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) arguments: Option<&'a str>,
}

/// What [`Builder::emit`] writes: the payload with `type` and `sequence_number` in front.
#[derive(Serialize)]
pub(super) struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub(super) kind: &'a str,
    pub(super) sequence_number: u64,
    #[serde(flatten)]
    pub(super) data: T,
}

/// Where the output builder's events go.
pub trait Events {
    /// Whether events are written at all (false for non-streaming requests).
    fn streaming(&self) -> bool;
    /// An event whose `data` JSON `write` appends to the buffer.
    fn send_with(&mut self, kind: &str, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), Cancelled>;
    fn send<T: Serialize + ?Sized>(&mut self, kind: &str, data: &T) -> Result<(), Cancelled> {
        // The payloads have string keys only, so this cannot fail.
        self.send_with(kind, |buf| {
            let _ = serde_json::to_writer(buf, data);
        })
    }
    /// An event whose `data` is already serialized JSON.
    fn send_text(&mut self, kind: &str, json: &str) -> Result<(), Cancelled> {
        self.send_with(kind, |buf| buf.extend_from_slice(json.as_bytes()))
    }
    /// An SSE comment line (ignored by clients).
    fn comment(&mut self, text: &str) -> Result<(), Cancelled>;
    /// Called about once a second while the upstream or tools are busy.
    fn waiting(&mut self) -> Result<(), Cancelled>;
    /// While on, even the events that end a burst are held, until [`Events::flush`] (more of
    /// the upstream's answer is already in memory).
    fn hold(&mut self, _on: bool) {}
    /// Write what is held.
    fn flush(&mut self) -> Result<(), Cancelled> {
        Ok(())
    }
}

/// Non-streaming: no events, only a check that the client is still there.
pub struct Quiet<F: FnMut() -> bool>(pub F);

impl<F: FnMut() -> bool> Events for Quiet<F> {
    fn streaming(&self) -> bool {
        false
    }
    fn send_with(&mut self, _kind: &str, _: impl FnOnce(&mut Vec<u8>)) -> Result<(), Cancelled> {
        Ok(())
    }
    fn comment(&mut self, _text: &str) -> Result<(), Cancelled> {
        self.waiting()
    }
    fn waiting(&mut self) -> Result<(), Cancelled> {
        if (self.0)() { Err(Cancelled) } else { Ok(()) }
    }
}

pub struct SseWriter<'a, 'b> {
    /// Events that always come in a burst with more (see [`flushes`]) are held there and go
    /// out together with the event that ends the burst, in one chunk.
    out: EventStream<'a, 'b>,
    /// Hold even the events that end a burst: the upstream's next event is already in memory
    /// (`LoopSink::text_held`), until [`Events::flush`].
    holding: bool,
}

/// Whether an event ends a burst: text and argument deltas (the client shows them at once),
/// the end of an item, an MCP call's arguments (the tool runs next) and the terminal events.
/// Everything between (`response.created`, `response.in_progress`, `output_item.added`,
/// `content_part.added`, the `.done` events before `output_item.done`) is always followed
/// at once by one of these, so holding it costs no latency and saves a write per event.
fn flushes(kind: &str) -> bool {
    kind.ends_with(".delta")
        || matches!(
            kind,
            "response.output_item.done"
                | "response.mcp_call_arguments.done"
                | "response.completed"
                | "response.incomplete"
                | "response.failed"
                | "error"
        )
}

impl<'a, 'b> SseWriter<'a, 'b> {
    pub fn new(resp: &'a mut Responder<'b>, headers: Vec<(String, String)>) -> Self {
        SseWriter {
            out: EventStream::new(resp, headers),
            holding: false,
        }
    }

    /// End the body (with whatever is held, in one write). An error means the client left.
    pub fn close(self) -> Result<(), Cancelled> {
        self.out.finish()
    }

    /// Before the first byte: hand the responder back so the caller sends a real error status.
    pub fn into_unstarted(self) -> Option<&'a mut Responder<'b>> {
        self.out.into_unstarted()
    }

    /// After the first byte: the `error` event the caller built, then the end of the stream.
    pub fn fail_started(mut self, error_event: &Value, failed_event: &str) {
        let _ = self.send("error", error_event);
        let _ = self.send_text("response.failed", failed_event);
        let _ = self.close();
    }

    /// After an event: write what is held unless the burst goes on.
    fn after_event(&mut self, kind: &str) -> Result<(), Cancelled> {
        if flushes(kind) && !self.holding {
            self.out.flush()?;
        }
        Ok(())
    }
}

impl Events for SseWriter<'_, '_> {
    fn streaming(&self) -> bool {
        true
    }

    fn send_with(&mut self, kind: &str, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), Cancelled> {
        let buf = self.out.held();
        buf.extend_from_slice(b"event: ");
        buf.extend_from_slice(kind.as_bytes());
        buf.extend_from_slice(b"\ndata: ");
        write(buf);
        buf.extend_from_slice(b"\n\n");
        self.after_event(kind)
    }

    fn comment(&mut self, text: &str) -> Result<(), Cancelled> {
        let line = format!(": {}\n\n", text.replace(['\n', '\r'], " "));
        self.out.write(line.as_bytes())
    }

    fn waiting(&mut self) -> Result<(), Cancelled> {
        if self.out.client_gone() {
            return Err(Cancelled);
        }
        self.out.flush()?;
        self.out.keep_alive(KEEPALIVE_EVERY)
    }

    fn hold(&mut self, on: bool) {
        self.holding = on;
    }

    fn flush(&mut self) -> Result<(), Cancelled> {
        self.out.flush()
    }
}
