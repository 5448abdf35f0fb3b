//! Request-head parsing on `httparse` plus the framing rules that keep requests unambiguous:
//! head size and header-count limits (431), Content-Length / Transfer-Encoding validation
//! (smuggling guards, RFC 9112 §6), `Expect`, and the keep-alive decision. Header values are
//! trimmed of SP/HTAB only (never Unicode whitespace), lengths are ASCII digits only, and the
//! request target is handled as bytes (any UTF-8 in it is fine).
//!
//! Thread model: pure functions, called by the poller thread.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use super::{Limits, Version};

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body.
    None,
    /// `Content-Length`, already checked against `max_body_bytes`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and validated request head.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) version: Version,
    pub(super) headers: Vec<(String, String)>,
    /// Bytes of the head in the buffer (the body starts here).
    pub(super) len: usize,
    pub(super) framing: Framing,
    pub(super) keep_alive: bool,
    pub(super) expect_continue: bool,
}

/// Why a request is refused before it reaches a handler; the connection is then closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reject {
    pub(super) status: u16,
    pub(super) message: &'static str,
}

impl Reject {
    pub(super) const fn new(status: u16, message: &'static str) -> Reject {
        Reject { status, message }
    }
}

/// Parse the head at the start of `buf`. `Ok(None)`: incomplete, read more.
/// Only the first `max_head_bytes` count: a head not complete within them is a 431.
pub(super) fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Reject> {
    let window = buf.get(..limits.max_head_bytes).unwrap_or(buf);
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(window) {
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head_bytes => {
            Err(Reject::new(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => build(&req, len, limits).map(Some),
        Err(httparse::Error::TooManyHeaders) => Err(Reject::new(431, "too many request headers")),
        Err(httparse::Error::Version) => Err(Reject::new(400, "unsupported HTTP version")),
        Err(_) => Err(Reject::new(400, "malformed request head")),
    }
}

fn build(req: &httparse::Request<'_, '_>, len: usize, limits: &Limits) -> Result<Head, Reject> {
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Reject::new(400, "malformed request head"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                trim_ows(&String::from_utf8_lossy(h.value)).to_string(),
            )
        })
        .collect();

    let mut content_length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    let mut saw_te = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let n = parse_content_length(trim_ows(part))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(Reject::new(400, "conflicting content-length headers"));
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            saw_te = true;
            codings.extend(
                value
                    .split(',')
                    .map(trim_ows)
                    .filter(|c| !c.is_empty())
                    .map(str::to_ascii_lowercase),
            );
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(trim_ows) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") && version == Version::Http11 {
            // RFC 9110 §10.1.1: an HTTP/1.0 client cannot ask for 100-continue, so ignore it.
            if value.eq_ignore_ascii_case("100-continue") {
                expect_continue = true;
            } else {
                return Err(Reject::new(417, "unsupported expectation"));
            }
        }
    }

    let framing = if saw_te {
        // RFC 9112 §6.1/§6.3: both headers, or chunked not last, make the length ambiguous.
        if content_length.is_some() {
            return Err(Reject::new(
                400,
                "both content-length and transfer-encoding",
            ));
        }
        match codings.as_slice() {
            [only] if only == "chunked" => Framing::Chunked,
            [.., last] if last == "chunked" => {
                return Err(Reject::new(501, "unsupported transfer coding"));
            }
            _ => return Err(Reject::new(400, "transfer-encoding must end with chunked")),
        }
    } else {
        match content_length {
            None | Some(0) => Framing::None,
            Some(n) => match usize::try_from(n) {
                Ok(n) if n <= limits.max_body_bytes => Framing::Length(n),
                _ => return Err(Reject::new(413, "request body too large")),
            },
        }
    };

    let keep_alive = match version {
        Version::Http11 => !close,
        // RFC 9112 §6.1: a 1.0 message with Transfer-Encoding must be closed after it.
        Version::Http10 => keep_alive_token && !close && !saw_te,
    };
    let (path, query) = split_target(target);
    Ok(Head {
        method: method.to_string(),
        path,
        query,
        version,
        headers,
        len,
        framing,
        keep_alive,
        expect_continue: expect_continue && framing != Framing::None,
    })
}

/// Strip optional whitespace (RFC 9110 §5.6.3: SP and HTAB only). `str::trim` would also
/// strip Unicode spaces such as U+00A0, making `Content-Length: \u{a0}2` a valid length here
/// while a proxy in front reads it differently (request smuggling).
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// `1*DIGIT` only (no sign, no spaces, no hex); huge values saturate and then fail the limit.
fn parse_content_length(s: &str) -> Result<u64, Reject> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reject::new(400, "invalid content-length"));
    }
    Ok(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Split the request target into path and query; absolute-form (`http://host/p?q`) keeps only
/// the path (RFC 9112 §3.2.2 says an origin server must accept it).
/// Bytes are compared, never `&str` slices at byte offsets: the target may hold any UTF-8.
fn split_target(target: &str) -> (String, String) {
    let mut rest = target;
    for scheme in ["http://", "https://"] {
        if let Some(after) = strip_prefix_ignore_ascii_case(rest, scheme) {
            rest = after
                .find(['/', '?'])
                .and_then(|i| after.get(i..))
                .unwrap_or("/");
            break;
        }
    }
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = if path.is_empty() { "/" } else { path };
    (path.to_string(), query.to_string())
}

/// `s` without its ASCII-case-insensitive `prefix`, if it starts with it.
fn strip_prefix_ignore_ascii_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix.as_bytes()) {
        return None;
    }
    // The prefix matched ASCII bytes, so its end is a character boundary.
    s.get(prefix.len()..)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a test failure"
)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_head_bytes: 1024,
            max_headers: 8,
            max_body_bytes: 1000,
            ..Limits::default()
        }
    }

    fn parse(s: &str) -> Result<Option<Head>, Reject> {
        parse_head(s.as_bytes(), &limits())
    }

    fn status(s: &str) -> u16 {
        match parse(s) {
            Err(r) => r.status,
            Ok(h) => panic!("expected a rejection, got {h:?}"),
        }
    }

    fn head(s: &str) -> Head {
        parse(s).unwrap().expect("complete head")
    }

    #[test]
    fn simple_get_with_query() {
        let h = head("GET /v1/models?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Thing:  v \r\n\r\nrest");
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/v1/models");
        assert_eq!(h.query, "a=1&b=2");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.headers[1], ("X-Thing".to_string(), "v".to_string()));
        assert_eq!(
            h.len,
            "GET /v1/models?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Thing:  v \r\n\r\n".len()
        );
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert!(parse("").unwrap().is_none());
        assert!(parse("GE").unwrap().is_none());
    }

    #[test]
    fn bare_lf_heads_and_leading_empty_lines_parse() {
        let h = head("\r\n\nPOST /x HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc");
        assert_eq!(h.path, "/x");
        assert_eq!(h.framing, Framing::Length(3));
    }

    #[test]
    fn absolute_form_target_keeps_path() {
        assert_eq!(
            split_target("http://example.com/a/b?c=d"),
            ("/a/b".into(), "c=d".into())
        );
        assert_eq!(split_target("HTTPS://example.com"), ("/".into(), "".into()));
        assert_eq!(split_target("http://h?x"), ("/".into(), "x".into()));
        assert_eq!(split_target("*"), ("*".into(), "".into()));
    }

    #[test]
    fn head_size_limit_is_431() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(status(&big), 431);
        // Incomplete but already over the limit: refuse now rather than wait.
        let line = format!("GET /{}", "a".repeat(1100));
        assert_eq!(status(&line), 431);
        // Exactly at the limit is fine.
        let base = "GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        let exact = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(1024 - base));
        assert_eq!(exact.len(), 1024);
        assert!(parse(&exact).unwrap().is_some());
    }

    #[test]
    fn a_complete_small_head_followed_by_much_body_is_fine() {
        let s = format!(
            "POST / HTTP/1.1\r\nContent-Length: 900\r\n\r\n{}",
            "b".repeat(900)
        );
        assert_eq!(head(&s).framing, Framing::Length(900));
    }

    #[test]
    fn header_count_limit_is_431() {
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..8 {
            s.push_str(&format!("H{i}: v\r\n"));
        }
        assert!(
            parse(&format!("{s}\r\n")).unwrap().is_some(),
            "exactly max_headers is fine"
        );
        s.push_str("H9: v\r\n");
        assert_eq!(status(&s), 431, "detected even before the head is complete");
    }

    #[test]
    fn garbage_and_http2_are_400() {
        assert_eq!(status("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.2\r\n\r\n"), 400);
        assert_eq!(status("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), 400);
        assert_eq!(status("GARBAGE\r\n"), 400);
    }

    #[test]
    fn content_length_parsing() {
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n").framing,
            Framing::Length(10)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").framing,
            Framing::None
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n").framing,
            Framing::Length(1000)
        );
        // Repeated identical values are allowed (RFC 9112 §6.3 item 5).
        let same = "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n";
        assert_eq!(head(same).framing, Framing::Length(5));
        for bad in ["-1", "+5", "0x10", "1 0", "", "5,", "1e3", "five"] {
            let s = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(status(&s), 400, "content-length {bad:?}");
        }
    }

    #[test]
    fn unicode_whitespace_is_not_trimmed_from_framing_headers() {
        for cl in [
            "\u{a0}2",
            "2\u{a0}",
            "\u{2003}2",
            "\u{3000}2",
            "\u{feff}2",
            "\u{0662}",
        ] {
            let s = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\nab");
            assert_eq!(status(&s), 400, "content-length {cl:?}");
        }
        for te in [
            "chunked\u{a0}",
            "\u{a0}chunked",
            "chunked\u{2028}",
            "chunked\u{85}",
        ] {
            let s = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(status(&s), 400, "transfer-encoding {te:?}");
        }
        // SP and HTAB are optional whitespace and still trimmed.
        let h = head("POST / HTTP/1.1\r\nContent-Length: \t2 \r\nX: \t v\t\r\n\r\nab");
        assert_eq!(h.framing, Framing::Length(2));
        assert_eq!(h.headers[1].1, "v");
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: \tchunked \r\n\r\n").framing,
            Framing::Chunked
        );
    }

    #[test]
    fn non_ascii_targets_split_on_bytes_without_panicking() {
        // A multi-byte character across byte 7 (the length of "http://") used to panic.
        assert_eq!(
            split_target("/aaaaa\u{e9}"),
            ("/aaaaa\u{e9}".into(), "".into())
        );
        assert_eq!(
            split_target("/aaaaaaa\u{e9}?q=\u{e9}"),
            ("/aaaaaaa\u{e9}".into(), "q=\u{e9}".into())
        );
        for s in [
            "\u{e9}",
            "/\u{1f600}",
            "http:/\u{e9}",
            "https:/\u{e9}\u{e9}",
            "\u{e9}\u{e9}\u{e9}\u{e9}",
        ] {
            let (path, query) = split_target(s);
            assert_eq!(format!("{path}{query}"), s, "{s:?}");
        }
        assert_eq!(
            split_target("HTTP://h\u{e9}st/p\u{e9}?x"),
            ("/p\u{e9}".into(), "x".into())
        );
        assert_eq!(split_target("http://\u{e9}"), ("/".into(), "".into()));
        // Whatever bytes httparse lets through in the request line parse without a panic.
        for n in 0..10 {
            let mut raw = b"GET /".to_vec();
            raw.extend(std::iter::repeat_n(b'a', n));
            raw.extend_from_slice("\u{e9}\u{1f600} HTTP/1.1\r\n\r\n".as_bytes());
            let _ = parse_head(&raw, &limits());
            let mut raw = b"GET http://".to_vec();
            raw.extend(std::iter::repeat_n(b'a', n));
            raw.extend_from_slice(&[0xc3, 0xa9, b' ']);
            raw.extend_from_slice(b"HTTP/1.1\r\n\r\n");
            let _ = parse_head(&raw, &limits());
        }
    }

    #[test]
    fn conflicting_content_lengths_are_400() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"),
            400
        );
    }

    #[test]
    fn oversized_content_length_is_413_even_when_absurd() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"),
            413
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 100000000000\r\n\r\n"),
            413
        );
        let huge = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            "9".repeat(60)
        );
        assert_eq!(status(&huge), 413);
    }

    #[test]
    fn transfer_encoding_rules() {
        let ok = head("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(ok.framing, Framing::Chunked);
        assert!(ok.keep_alive);
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            status(
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            501
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"),
            400
        );
        // HTTP/1.0 with chunked: accepted, but the connection closes afterwards.
        let h10 =
            head("POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h10.framing, Framing::Chunked);
        assert!(!h10.keep_alive);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(head("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert_eq!(head("GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
    }

    #[test]
    fn expect_rules() {
        let h = head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
        assert!(h.expect_continue);
        // Nothing to continue to without a body.
        assert!(!head("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        assert!(
            head("POST / HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
                .expect_continue
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\n"),
            417
        );
        // Too big is answered before any 100 Continue.
        assert_eq!(
            status("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"),
            413
        );
        // HTTP/1.0 expectations are ignored.
        assert!(
            !head("POST / HTTP/1.0\r\nExpect: foo\r\nContent-Length: 5\r\n\r\n").expect_continue
        );
    }

    #[test]
    fn non_utf8_header_values_are_kept_lossily() {
        let mut raw = b"GET / HTTP/1.1\r\nX-Name: caf".to_vec();
        raw.extend_from_slice(&[0xe9, b'\r', b'\n', b'\r', b'\n']);
        let h = parse_head(&raw, &limits()).unwrap().unwrap();
        assert_eq!(h.headers[0].1, "caf\u{fffd}");
    }
}
