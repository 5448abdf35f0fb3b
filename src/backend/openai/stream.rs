//! The stream [`Decoder`] of the openai backend: each `chat.completion.chunk` event is fed to
//! [`StreamState`], text deltas go to the sink as they arrive, tool calls are accumulated, and
//! `[DONE]` (or the end of the body once a `finish_reason` came) completes the [`Turn`]. The
//! stream reading, idle ticks and the deadline are the shared [`crate::backend::upstream`] layer.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use super::parse::{StreamState, excerpt, parse_completion};
use crate::backend::upstream::Decoder;
use crate::backend::{Error, Turn, TurnSink};
use crate::sse_codec::SseEvent;

/// Chunks → one [`Turn`].
#[derive(Default)]
pub(super) struct ChunkDecoder {
    state: StreamState,
}

impl Decoder for ChunkDecoder {
    type Output = Turn;

    fn event(&mut self, ev: &SseEvent, sink: &mut dyn TurnSink) -> Result<Option<Turn>, Error> {
        let data = ev.data.trim();
        if data.is_empty() {
            // `event: ping` and other data-less events (some servers send them) are no chunks.
            return Ok(None);
        }
        if data == "[DONE]" {
            return Ok(Some(std::mem::take(&mut self.state).into_turn()));
        }
        match self.state.feed(data)? {
            Some(delta) => sink.text(delta)?,
            None if ev.kind() == "error" => {
                return Err(Error::Protocol(format!(
                    "upstream error event: {}",
                    excerpt(data.as_bytes())
                )));
            }
            None => {}
        }
        Ok(None)
    }

    fn whole(&mut self, body: &[u8], sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        let turn = parse_completion(body)?;
        if !turn.content.is_empty() {
            sink.text(&turn.content)?;
        }
        Ok(turn)
    }

    /// The body ended without `[DONE]`: fine once a `finish_reason` came (some servers omit
    /// `[DONE]`), a truncated answer otherwise.
    fn end(&mut self) -> Result<Turn, Error> {
        if !self.state.finished() {
            return Err(Error::Protocol("upstream stream ended early".into()));
        }
        Ok(std::mem::take(&mut self.state).into_turn())
    }
}
