//! MCP tool results → the tool message the model sees (docs/agent-loop.md#tool-results).
//!
//! Text blocks are joined; `structuredContent` is given as JSON when there is no text; resource
//! links and embedded resources become short text (a blob with a text MIME type, valid UTF-8,
//! is decoded and shown as text, within the cap); images travel as real image blocks for
//! backends that take them (`Message::tool_images`) and as a short placeholder in the text;
//! binary data never appears as base64 in the text. Failures are marked (`Message::tool_error`
//! plus a `[tool error]` prefix). Text is passed byte for byte (blocks joined with `\n`, nothing
//! trimmed); only output above the cap is cut, head + tail with a marker.

use serde_json::Value;

use crate::api::openai::{Content, Message, Role, ToolImage};
use crate::mcp::CallResult;

/// Largest tool output (bytes of text) handed to the model.
pub const MAX_TOOL_OUTPUT: usize = 64 * 1024;
pub const ERROR_PREFIX: &str = "[tool error] ";

/// Everything the loop needs to build a tool message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
    pub images: Vec<ToolImage>,
}

impl ToolOutput {
    pub fn error(message: impl Into<String>) -> Self {
        ToolOutput {
            text: message.into(),
            is_error: true,
            images: Vec::new(),
        }
    }

    pub fn into_message(self, tool_call_id: &str) -> Message {
        let text = if self.is_error {
            format!("{ERROR_PREFIX}{}", self.text)
        } else {
            self.text
        };
        let mut m = Message::new(
            Role::Tool,
            Some(Content::Text(cap_output(&text, MAX_TOOL_OUTPUT))),
        );
        m.tool_call_id = Some(tool_call_id.to_string());
        m.tool_error = self.is_error;
        m.tool_images = self.images;
        m
    }
}

pub fn from_call_result(r: &CallResult) -> ToolOutput {
    let mut parts: Vec<String> = Vec::new();
    let mut images = Vec::new();
    let mut has_text = false;
    for block in &r.content {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        let s = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" => {
                has_text = true;
                parts.push(s("text").to_string());
            }
            "image" => {
                let mime = non_empty(s("mimeType"), "image/png");
                parts.push(format!("[image: {mime}, {} bytes]", base64_len(s("data"))));
                if !s("data").is_empty() {
                    images.push(ToolImage {
                        media_type: mime.to_string(),
                        data: s("data").to_string(),
                    });
                }
            }
            "audio" => {
                let mime = non_empty(s("mimeType"), "audio");
                parts.push(format!(
                    "[audio: {mime}, {} bytes, not shown]",
                    base64_len(s("data"))
                ));
            }
            "resource_link" => {
                let mut t = format!("[resource link: {}", non_empty(s("name"), s("uri")));
                if !s("uri").is_empty() && !s("name").is_empty() {
                    t.push_str(&format!(" <{}>", s("uri")));
                }
                if !s("description").is_empty() {
                    t.push_str(&format!(" - {}", s("description")));
                }
                t.push(']');
                parts.push(t);
            }
            "resource" => parts.push(embedded_resource(
                block.get("resource").unwrap_or(&Value::Null),
            )),
            other => parts.push(format!(
                "[{} content not shown]",
                non_empty(other, "unknown")
            )),
        }
    }
    if let (false, Some(sc)) = (has_text, &r.structured_content) {
        parts.insert(0, sc.to_string());
    }
    // Byte for byte: indentation and trailing newlines are part of the output (a later edit
    // may have to match them exactly). Only the cap in `into_message` may cut.
    let mut text = parts.join("\n");
    if text.is_empty() {
        text = "(no output)".into();
    }
    ToolOutput {
        text,
        is_error: r.is_error,
        images,
    }
}

fn embedded_resource(res: &Value) -> String {
    let s = |k: &str| res.get(k).and_then(Value::as_str).unwrap_or("");
    // A blob with a text MIME type is text the server chose to encode: shown decoded.
    let decoded = (is_text_mime(s("mimeType")))
        .then(|| decode_base64(s("blob")))
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match res
        .get("text")
        .and_then(Value::as_str)
        .or(decoded.as_deref())
    {
        Some(text) => format!("[resource {}]\n{text}", s("uri")),
        None => format!(
            "[resource {}: {}, {} bytes, not shown]",
            s("uri"),
            non_empty(s("mimeType"), "binary"),
            base64_len(s("blob"))
        ),
    }
}

/// `text/*`, JSON, XML, YAML, JavaScript and `+json` / `+xml` types (parameters ignored).
fn is_text_mime(mime: &str) -> bool {
    let m = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    m.starts_with("text/")
        || m.ends_with("+json")
        || m.ends_with("+xml")
        || matches!(
            m.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/yaml"
                | "application/x-yaml"
                | "application/toml"
                | "application/x-sh"
                | "application/sql"
        )
}

/// Standard base64 (padding optional, whitespace ignored); `None` when it is not base64.
fn decode_base64(b64: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b64.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in b64.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn non_empty<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() { default } else { s }
}

/// Decoded size of a base64 string, without decoding it.
fn base64_len(b64: &str) -> usize {
    let n = b64.trim_end_matches('=').len();
    n * 3 / 4
}

/// Cut `s` to about `max` bytes keeping the head and the tail, with a marker in between.
pub fn cap_output(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let half = max / 2;
    let mut head = half;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - half;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[… {} bytes omitted …]\n{}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(content: Value, structured: Option<Value>, is_error: bool) -> CallResult {
        CallResult {
            content: content.as_array().cloned().unwrap_or_default(),
            structured_content: structured,
            is_error,
        }
    }

    #[test]
    fn text_blocks_joined() {
        let r = result(
            json!([{"type":"text","text":"a"},{"type":"text","text":"b"}]),
            None,
            false,
        );
        assert_eq!(from_call_result(&r).text, "a\nb");
    }

    #[test]
    fn structured_content_only_without_text() {
        let r = result(json!([]), Some(json!({"t":1})), false);
        assert_eq!(from_call_result(&r).text, r#"{"t":1}"#);
        let r = result(
            json!([{"type":"text","text":"{\"t\":1}"}]),
            Some(json!({"t":1})),
            false,
        );
        assert_eq!(from_call_result(&r).text, r#"{"t":1}"#, "not duplicated");
    }

    #[test]
    fn images_become_blocks_and_a_placeholder_never_base64() {
        let data = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
        let r = result(
            json!([{"type":"image","data":data,"mimeType":"image/png"}]),
            None,
            false,
        );
        let out = from_call_result(&r);
        assert!(out.text.starts_with("[image: image/png, "));
        assert!(!out.text.contains(data));
        assert_eq!(
            out.images,
            vec![ToolImage {
                media_type: "image/png".into(),
                data: data.into()
            }]
        );
    }

    #[test]
    fn resources_and_links_are_short_text() {
        let r = result(
            json!([
                {"type":"resource_link","uri":"file:///a.txt","name":"a.txt","description":"A file"},
                {"type":"resource","resource":{"uri":"file:///b.txt","text":"hello"}},
                {"type":"resource","resource":{"uri":"file:///c.bin","mimeType":"application/octet-stream","blob":"AAAAAAAA"}},
                {"type":"audio","data":"AAAA","mimeType":"audio/wav"}
            ]),
            None,
            false,
        );
        let t = from_call_result(&r).text;
        assert!(
            t.contains("[resource link: a.txt <file:///a.txt> - A file]"),
            "{t}"
        );
        assert!(t.contains("[resource file:///b.txt]\nhello"), "{t}");
        assert!(
            t.contains("[resource file:///c.bin: application/octet-stream, 6 bytes, not shown]"),
            "{t}"
        );
        assert!(t.contains("[audio: audio/wav, 3 bytes, not shown]"), "{t}");
        assert!(!t.contains("AAAAAAAA"));
    }

    #[test]
    fn text_blobs_are_decoded() {
        // "héllo {\"a\":1}\n" in base64.
        let b64 = "aMOpbGxvIHsiYSI6MX0K";
        assert_eq!(decode_base64(b64).unwrap(), "héllo {\"a\":1}\n".as_bytes());
        assert_eq!(decode_base64("!!"), None);
        let block = |mime: &str| {
            let r = result(
                json!([{"type":"resource","resource":{"uri":"mem://b","mimeType":mime,"blob":b64}}]),
                None,
                false,
            );
            from_call_result(&r).text
        };
        for mime in [
            "text/plain",
            "application/json",
            "text/csv; charset=utf-8",
            "application/ld+json",
        ] {
            assert_eq!(
                block(mime),
                "[resource mem://b]\nhéllo {\"a\":1}\n",
                "{mime}"
            );
        }
        assert!(block("application/octet-stream").contains("not shown"));
        assert!(block("image/png").contains("not shown"));
        // Not UTF-8: still binary.
        let r = result(
            json!([{"type":"resource","resource":{"uri":"mem://b","mimeType":"text/plain","blob":"//79"}}]),
            None,
            false,
        );
        assert!(from_call_result(&r).text.contains("not shown"));
    }

    #[test]
    fn errors_are_marked() {
        let r = result(json!([{"type":"text","text":"boom"}]), None, true);
        let m = from_call_result(&r).into_message("call_1");
        assert_eq!(m.text_content(), "[tool error] boom");
        assert!(m.tool_error);
        assert_eq!(m.tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(m.role, Role::Tool);
    }

    #[test]
    fn text_is_passed_byte_for_byte() {
        let code = "    def f():\n        return 1\n\n\n";
        let r = result(json!([{"type":"text","text":code}]), None, false);
        assert_eq!(from_call_result(&r).text, code);
        assert_eq!(from_call_result(&r).into_message("c").text_content(), code);
        let r = result(json!([{"type":"text","text":" \t\n"}]), None, false);
        assert_eq!(from_call_result(&r).text, " \t\n");
    }

    #[test]
    fn empty_output_is_said() {
        assert_eq!(
            from_call_result(&result(json!([]), None, false)).text,
            "(no output)"
        );
    }

    #[test]
    fn output_cap_keeps_head_and_tail() {
        let s = format!("{}{}", "a".repeat(1000), "z".repeat(1000));
        let c = cap_output(&s, 100);
        assert!(c.starts_with(&"a".repeat(50)));
        assert!(c.ends_with(&"z".repeat(50)));
        assert!(c.contains("[… 1900 bytes omitted …]"));
        assert_eq!(cap_output("short", 100), "short");
        let multibyte = "é".repeat(100);
        assert!(cap_output(&multibyte, 51).contains("omitted"));
    }
}
