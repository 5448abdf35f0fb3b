//! Chunked transfer coding (RFC 9112 §7.1): an incremental, bounded decoder for request bodies
//! and the encoder used for streamed responses.
//!
//! The decoder is fed whatever bytes arrived, in any split, and keeps only a few counters between
//! calls (no buffered lines), so its memory is the decoded body, capped by `max_body`. Framing is
//! strict: every line ends in CRLF (a bare LF is refused, since lenient chunk parsing is a
//! request-smuggling vector behind proxies that disagree); the size is ASCII hex digits only,
//! followed by optional SP/HTAB and then only `;` (extensions) or CRLF (`2 junk` is refused).
//!
//! Thread model: plain values, owned by the poller thread while a body is being read.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

/// Longest chunk-size line (size + extensions) accepted.
const MAX_SIZE_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkError {
    /// Broken framing → 400.
    Malformed(&'static str),
    /// The decoded body would exceed the limit → 413.
    TooLarge,
    /// Trailer section over its limit → 431.
    TrailersTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        value: u64,
        digits: usize,
    },
    /// After the size and optional whitespace (RFC 9112 BWS): only `;` or CR may follow.
    SizeWs {
        value: u64,
    },
    /// After `;`: the extensions, up to CR.
    Extension {
        value: u64,
    },
    /// Saw CR after the size line, expecting LF.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Debug)]
pub(super) struct ChunkedDecoder {
    state: State,
    line_len: usize,
    trailer_bytes: usize,
    max_body: usize,
    max_trailers: usize,
}

impl ChunkedDecoder {
    pub(super) fn new(max_body: usize, max_trailers: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            line_len: 0,
            trailer_bytes: 0,
            max_body,
            max_trailers,
        }
    }

    /// Decode from `input`, appending body bytes to `out` (which holds the body so far).
    /// Returns how many input bytes were consumed and whether the body is complete; once
    /// complete, the unconsumed rest of `input` belongs to the next request. Trailers are
    /// checked for size and dropped.
    pub(super) fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, bool), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { remaining } = self.state {
                let rest = input.get(i..).unwrap_or_default();
                let take = usize::try_from(remaining).map_or(rest.len(), |r| r.min(rest.len()));
                out.extend_from_slice(rest.get(..take).unwrap_or_default());
                i += take;
                let left = remaining - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                continue;
            }
            let Some(&b) = input.get(i) else {
                break;
            };
            i += 1;
            self.step(b, out.len())?;
            if self.state == State::Done {
                return Ok((i, true));
            }
        }
        Ok((i, self.state == State::Done))
    }

    /// Advance over one framing byte (everything except chunk data).
    fn step(&mut self, b: u8, body_len: usize) -> Result<(), ChunkError> {
        use ChunkError::Malformed;
        self.state = match self.state {
            State::Size { value, digits } => {
                self.count_line()?;
                match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = u64::from(hex_value(b));
                        let value = value.checked_mul(16).and_then(|v| v.checked_add(digit));
                        State::Size {
                            value: value.ok_or(ChunkError::TooLarge)?,
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(Malformed("invalid chunk size")),
                    b'\r' => State::SizeLf { value },
                    b';' => State::Extension { value },
                    b' ' | b'\t' => State::SizeWs { value },
                    b'\n' => return Err(Malformed("bare LF in chunk size line")),
                    _ => return Err(Malformed("invalid chunk size")),
                }
            }
            State::SizeWs { value } => {
                self.count_line()?;
                match b {
                    b' ' | b'\t' => State::SizeWs { value },
                    b';' => State::Extension { value },
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(Malformed("bare LF in chunk size line")),
                    // `2 junk`: anything but an extension after the size is refused.
                    _ => return Err(Malformed("invalid chunk size")),
                }
            }
            State::Extension { value } => {
                self.count_line()?;
                match b {
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(Malformed("bare LF in chunk size line")),
                    b'\t' => State::Extension { value },
                    0..=0x1f | 0x7f => {
                        return Err(Malformed("control character in chunk extension"));
                    }
                    _ => State::Extension { value },
                }
            }
            State::SizeLf { value } => {
                if b != b'\n' {
                    return Err(Malformed("expected LF after chunk size"));
                }
                self.line_len = 0;
                if value == 0 {
                    State::TrailerStart
                } else {
                    // Refuse a declared chunk before reading any of its data.
                    let total = (body_len as u64).saturating_add(value);
                    if total > self.max_body as u64 {
                        return Err(ChunkError::TooLarge);
                    }
                    State::Data { remaining: value }
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size {
                value: 0,
                digits: 0,
            },
            State::DataCr | State::DataLf => {
                return Err(Malformed("missing CRLF after chunk data"));
            }
            State::TrailerStart | State::Trailer => match (self.state, b) {
                (State::TrailerStart, b'\r') => State::FinalLf,
                (_, b'\r') => State::TrailerLf,
                (_, b'\n') => return Err(Malformed("bare LF in trailer")),
                _ => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > self.max_trailers {
                        return Err(ChunkError::TrailersTooLarge);
                    }
                    State::Trailer
                }
            },
            State::TrailerLf if b == b'\n' => State::TrailerStart,
            State::FinalLf if b == b'\n' => State::Done,
            State::TrailerLf | State::FinalLf => {
                return Err(Malformed("expected LF in trailer section"));
            }
            // `decode` handles data and stops at Done; reaching here means a caller bug.
            State::Data { .. } | State::Done => return Err(Malformed("data after end of body")),
        };
        Ok(())
    }

    fn count_line(&mut self) -> Result<(), ChunkError> {
        self.line_len += 1;
        if self.line_len > MAX_SIZE_LINE {
            return Err(ChunkError::Malformed("chunk size line too long"));
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// The terminating zero-size chunk with an empty trailer section.
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Append one chunk carrying `data` to `out`. Empty data would be read as the last chunk, so
/// callers skip it.
pub(super) fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a test failure"
)]
mod tests {
    use super::*;

    const BODY_MAX: usize = 1000;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::new(BODY_MAX, 64);
        let mut out = Vec::new();
        let (used, done) = d.decode(input, &mut out)?;
        assert!(done, "incomplete");
        Ok((out, used))
    }

    /// Feed `input` in two parts split at every position, and also one byte at a time; all must
    /// agree with the one-shot result.
    fn decode_split_everywhere(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
        let whole = decode_all(input);
        for cut in 0..=input.len() {
            let mut d = ChunkedDecoder::new(BODY_MAX, 64);
            let mut out = Vec::new();
            let (a, done_a) = match d.decode(&input[..cut], &mut out) {
                Ok(r) => r,
                Err(e) => {
                    assert_eq!(whole, Err(e), "cut {cut}");
                    continue;
                }
            };
            let result = if done_a {
                Ok((out, a))
            } else {
                assert_eq!(a, cut, "must consume everything until done");
                d.decode(&input[cut..], &mut out).map(|(b, done)| {
                    assert!(done, "cut {cut}: incomplete");
                    (out, a + b)
                })
            };
            assert_eq!(result, whole, "cut {cut}");
        }
        let mut d = ChunkedDecoder::new(BODY_MAX, 64);
        let mut out = Vec::new();
        let mut used = 0;
        let mut bytewise = Err(ChunkError::Malformed("incomplete"));
        for b in input {
            match d.decode(std::slice::from_ref(b), &mut out) {
                Ok((n, true)) => {
                    used += n;
                    bytewise = Ok((std::mem::take(&mut out), used));
                    break;
                }
                Ok((n, false)) => used += n,
                Err(e) => {
                    bytewise = Err(e);
                    break;
                }
            }
        }
        assert_eq!(bytewise, whole, "byte at a time");
        whole
    }

    #[test]
    fn decodes_simple_body_and_leaves_pipelined_bytes() {
        let input = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let (body, used) = decode_split_everywhere(input).unwrap();
        assert_eq!(body, b"hello, world");
        assert_eq!(&input[used..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn hex_sizes_extensions_and_trailers() {
        let data = "x".repeat(0x1a);
        let input = format!(
            "1A;name=value;q=\"quoted; str\"\r\n{data}\r\n1 \t;ext\r\ny\r\n0;last\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n"
        );
        let (body, used) = decode_split_everywhere(input.as_bytes()).unwrap();
        assert_eq!(body, format!("{data}y").as_bytes());
        assert_eq!(used, input.len());
    }

    #[test]
    fn leading_zeros_and_empty_body() {
        assert_eq!(
            decode_split_everywhere(b"0000\r\n\r\n").unwrap(),
            (vec![], 8)
        );
        assert_eq!(
            decode_split_everywhere(b"0003\r\nabc\r\n0\r\n\r\n")
                .unwrap()
                .0,
            b"abc"
        );
    }

    #[test]
    fn oversize_is_refused_before_the_data() {
        // One declared chunk over the limit, with no data sent at all.
        let mut d = ChunkedDecoder::new(BODY_MAX, 64);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"3E9\r\n", &mut out), Err(ChunkError::TooLarge));
        // Cumulative total over the limit.
        let input = format!("1f4\r\n{}\r\n1f5\r\n", "a".repeat(500));
        assert_eq!(
            decode_split_everywhere(input.as_bytes()),
            Err(ChunkError::TooLarge)
        );
        // Exactly the limit is fine.
        let input = format!("1f4\r\n{0}\r\n1f4\r\n{0}\r\n0\r\n\r\n", "a".repeat(500));
        assert_eq!(
            decode_split_everywhere(input.as_bytes()).unwrap().0.len(),
            1000
        );
        // A size that overflows u64.
        assert_eq!(
            decode_split_everywhere(b"fffffffffffffffff\r\n"),
            Err(ChunkError::TooLarge)
        );
    }

    #[test]
    fn malformed_framing_is_refused() {
        const SIZE: &str = "invalid chunk size";
        const SIZE_LF: &str = "bare LF in chunk size line";
        const DATA_CRLF: &str = "missing CRLF after chunk data";
        const TRAILER_LF: &str = "bare LF in trailer";
        // Each case with the reason it must be refused for: a decoder that refuses it for
        // another reason (or at another byte) has a different bug.
        let cases: &[(&[u8], &str)] = &[
            (b"\r\n", SIZE),                               // no size
            (b"g\r\n", SIZE),                              // not hex
            (b"-1\r\n", SIZE),                             // sign
            (b"5\nhello\r\n0\r\n\r\n", SIZE_LF),           // bare LF after size
            (b"5\r\nhelloX\r\n0\r\n\r\n", DATA_CRLF),      // data longer than declared
            (b"5\r\nhello\n0\r\n\r\n", DATA_CRLF),         // bare LF after data
            (b"5\r\nhello\r\n0\r\n\n", TRAILER_LF),        // bare LF at the end
            (b"5\r\nhello\r\n0\r\nX: y\n", TRAILER_LF),    // bare LF in trailer
            (b"5\rhello", "expected LF after chunk size"), // CR not followed by LF
            (b";ext\r\n", SIZE),                           // extension without size
            (b"5;ext\x01\r\n", "control character in chunk extension"),
            (b"2 junk\r\nab\r\n0\r\n\r\n", SIZE), // junk after the size
            (b"2\tx\r\nab\r\n0\r\n\r\n", SIZE),   // junk after a tab
            (b"2x\r\nab\r\n0\r\n\r\n", SIZE),     // junk right after the size
            (b"2 \xc2\xa0\r\nab\r\n0\r\n\r\n", SIZE), // U+00A0 is not whitespace here
            (b"\xc2\xa02\r\nab\r\n0\r\n\r\n", SIZE), // nor before the size
            (b" 2\r\nab\r\n0\r\n\r\n", SIZE),     // leading space
            (b"0x2\r\nab\r\n0\r\n\r\n", SIZE),    // 0x prefix
        ];
        for (case, reason) in cases {
            match decode_split_everywhere(case) {
                Err(ChunkError::Malformed(r)) if r == *reason => {}
                other => panic!(
                    "{:?}: want Malformed({reason:?}), got {other:?}",
                    String::from_utf8_lossy(case)
                ),
            }
        }
    }

    #[test]
    fn whitespace_before_an_extension_or_the_crlf_is_allowed() {
        for ok in [
            &b"2 ;a=b\r\nab\r\n0\r\n\r\n"[..],
            b"2\t \r\nab\r\n0 \r\n\r\n",
        ] {
            assert_eq!(decode_split_everywhere(ok).unwrap().0, b"ab");
        }
    }

    #[test]
    fn long_size_lines_and_trailers_are_bounded() {
        let long_ext = format!("5;{}\r\n", "e".repeat(MAX_SIZE_LINE));
        let mut d = ChunkedDecoder::new(BODY_MAX, 64);
        assert!(matches!(
            d.decode(long_ext.as_bytes(), &mut Vec::new()),
            Err(ChunkError::Malformed(_))
        ));
        let big_trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(100));
        assert_eq!(
            decode_split_everywhere(big_trailer.as_bytes()),
            Err(ChunkError::TrailersTooLarge)
        );
    }

    #[test]
    fn incomplete_input_is_fully_consumed_and_not_done() {
        let mut d = ChunkedDecoder::new(BODY_MAX, 64);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"5\r\nhel", &mut out), Ok((6, false)));
        assert_eq!(out, b"hel");
        assert_eq!(d.decode(b"lo\r\n0\r\n", &mut out), Ok((7, false)));
        assert_eq!(d.decode(b"\r\nNEXT", &mut out), Ok((2, true)));
        assert_eq!(out, b"hello");
    }

    #[test]
    fn encoder_round_trips_through_the_decoder() {
        let mut wire = Vec::new();
        encode_chunk(b"data: {\"a\":1}\n\n", &mut wire);
        encode_chunk(&[7u8; 300], &mut wire);
        assert!(wire.starts_with(b"f\r\ndata: {\"a\":1}\n\n\r\n12c\r\n"));
        wire.extend_from_slice(LAST_CHUNK);
        let (body, used) = decode_all(&wire).unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(&body[..15], b"data: {\"a\":1}\n\n");
        assert_eq!(&body[15..], &[7u8; 300][..]);
    }
}
