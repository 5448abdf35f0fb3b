//! Entry points for the cargo-fuzz targets in `fuzz/` (`http_head`, `http_chunked`): not an
//! API. They run the request-head parser and the chunked decoder on arbitrary bytes and check
//! what must hold besides "no panic".
//!
//! Thread model: plain functions on the caller's thread.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use super::Limits;
use super::body::{ChunkError, ChunkedDecoder};
use super::parse::{Framing, parse_head};

/// `parse_head` with small and default limits: a complete head lies within the input and
/// the head limit, and a Content-Length never exceeds the body limit.
pub fn http_head(data: &[u8]) {
    let small = Limits {
        max_head_bytes: 256,
        max_headers: 4,
        max_body_bytes: 1000,
        ..Limits::default()
    };
    for limits in [small, Limits::default()] {
        if let Ok(Some(head)) = parse_head(data, &limits) {
            assert!(head.len <= data.len() && head.len <= limits.max_head_bytes);
            if let Framing::Length(n) = head.framing {
                assert!(n > 0 && n <= limits.max_body_bytes);
            }
            assert!(!head.path.is_empty());
        }
    }
}

/// The chunked decoder fed `data` whole and in pieces whose sizes come from the first
/// byte: every split gives the same body, the same consumed count and the same error.
pub fn http_chunked(data: &[u8]) {
    let (step, input) = match data.split_first() {
        Some((b, rest)) => (usize::from(*b % 32) + 1, rest),
        None => (1, data),
    };
    let whole = decode(input, input.len().max(1));
    let split = decode(input, step);
    assert_eq!(whole, split, "split size {step} changed the result");
    if let Ok((body, used)) = &whole {
        assert!(body.len() <= MAX_BODY && *used <= input.len());
    }
}

const MAX_BODY: usize = 4096;

/// Decode `input` fed `step` bytes at a time, like the poller does: unconsumed bytes are
/// offered again with the next piece. `Ok((body, consumed))` once complete.
fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), ChunkError> {
    let mut d = ChunkedDecoder::new(MAX_BODY, 256);
    let mut out = Vec::new();
    let mut used = 0;
    let mut end = 0;
    while end < input.len() {
        end = (end + step).min(input.len());
        let pending = input.get(used..end).unwrap_or_default();
        let (n, done) = d.decode(pending, &mut out)?;
        used += n;
        if done {
            return Ok((out, used));
        }
        assert_eq!(n, pending.len(), "an incomplete body consumes everything");
    }
    Err(ChunkError::Malformed("incomplete"))
}
