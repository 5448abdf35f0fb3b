//! `Secret`: a string that never prints. Config values that carry credentials (API keys, header
//! values, MCP `env` values, the Apiman secret, proxy keys) are held in it so that a stray `{:?}`
//! in a log line or an admin dump shows `***` instead of the value.
//!
//! Text that comes from outside and may echo a credential (an upstream's 401 body, an MCP
//! server's stderr) goes through [`scrub`], the one redaction function of the project: it masks
//! every configured secret value it is given, `Bearer`/`Basic` credentials, `sk-…`-style keys,
//! `key=…`/`"token": "…"`-style assignments and long high-entropy tokens. URLs are shown with
//! [`display_url`], which drops userinfo (`user:pass@`), the query and the fragment (where
//! `?token=…` lives).

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::cmp::Reverse;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every redacted value looks like in logs and admin output.
pub const REDACTED: &str = "***";

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value, for the one place that must send it (an upstream header, a child's env).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Serializing a secret redacts it: admin dumps go through serde.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Constant-time equality for credentials: the time taken does not depend on where the first
/// differing byte is (lengths may leak, which is acceptable for random keys).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Shortest configured secret value [`scrub`] masks (shorter ones would mask ordinary words).
const MIN_SECRET_LEN: usize = 4;
/// A token at least this long that mixes letters and digits is taken for a credential.
const LONG_TOKEN: usize = 32;
/// Names whose value, after `=` or `:`, is masked (matched as substrings, case-insensitively).
const SECRET_NAMES: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "signature",
    "credential",
    "session",
];
/// Prefixes of well-known API key formats.
const KEY_PREFIXES: &[&str] = &[
    "sk-", "sk_", "pk-", "pk_", "rk_", "ghp_", "gho_", "xox", "AIza",
];

/// Mask credentials in untrusted text before it is logged or shown: every value in `secrets`
/// (configured API keys, header and env values; values shorter than 4 bytes are ignored), the
/// word after `Bearer`/`Basic`, `sk-…`-style keys, the value of `key=`, `token:`, `"secret":
/// "…"` and similar, and long tokens that mix letters and digits. Each becomes `***`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut known: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|v| v.len() >= MIN_SECRET_LEN)
        .collect();
    known.sort_by_key(|v| Reverse(v.len()));
    let mut text = text.to_string();
    for v in known {
        if text.contains(v) {
            text = text.replace(v, REDACTED);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let mut prev = String::new();
    let mut sep = String::new();
    for c in text.chars() {
        if is_token_char(c) {
            if word.is_empty() {
                out.push_str(&sep);
            }
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push_str(if masks(&word, &prev, &sep) {
                REDACTED
            } else {
                &word
            });
            prev = std::mem::take(&mut word);
            sep.clear();
        }
        sep.push(c);
    }
    if word.is_empty() {
        out.push_str(&sep);
    } else {
        out.push_str(if masks(&word, &prev, &sep) {
            REDACTED
        } else {
            &word
        });
    }
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '~')
}

/// Whether `word`, preceded by `prev` and the separator `sep`, is a credential.
fn masks(word: &str, prev: &str, sep: &str) -> bool {
    let scheme = |w: &str| w.eq_ignore_ascii_case("bearer") || w.eq_ignore_ascii_case("basic");
    if scheme(word) || word == REDACTED {
        return false;
    }
    if scheme(prev) && !sep.is_empty() && sep.chars().all(char::is_whitespace) {
        return true;
    }
    let assigned = sep
        .trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .ends_with(['=', ':']);
    if assigned {
        let name = prev.to_ascii_lowercase();
        if SECRET_NAMES.iter().any(|n| name.contains(n)) {
            return true;
        }
    }
    if KEY_PREFIXES.iter().any(|p| word.starts_with(p)) && word.len() >= 10 {
        return true;
    }
    word.len() >= LONG_TOKEN
        && word.bytes().any(|b| b.is_ascii_digit())
        && word.bytes().any(|b| b.is_ascii_alphabetic())
}

/// A URL as it may be shown in logs, errors and `check` output: without userinfo
/// (`user:pass@`), query and fragment. `https://u:p@host/mcp?token=x` → `https://host/mcp`.
/// Text that is not a URL is returned up to its first `?` or `#`.
pub fn display_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = no_query.split_once("://") else {
        return no_query.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn scrub_masks_configured_values_and_key_shapes() {
        let text = "Incorrect API key provided: Bearer sk-proj-abcdefghij1234. \
                    Also key=hunter2 and \"access_token\": \"tok123\", x-api-key: myconfigured";
        let out = scrub(text, &["myconfigured", "ab"]);
        for leak in [
            "sk-proj",
            "abcdefghij1234",
            "hunter2",
            "tok123",
            "myconfigured",
        ] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(
            out.starts_with("Incorrect API key provided: Bearer ***"),
            "{out}"
        );
        assert!(out.contains("key=***"), "{out}");
        // Short configured values are not masked (they would eat ordinary words).
        assert!(scrub("about", &["ab"]).contains("about"));
    }

    #[test]
    fn scrub_masks_long_mixed_tokens_but_keeps_prose() {
        let token = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7";
        let out = scrub(&format!("session {token} expired at 12:00"), &[]);
        assert_eq!(out, "session *** expired at 12:00");
        let prose = "The model gpt-4o-mini does not exist or you do not have access to it.";
        assert_eq!(scrub(prose, &[]), prose);
        assert_eq!(scrub("", &[]), "");
        assert_eq!(scrub("é Bearer ü", &[]), "é Bearer ü");
    }

    #[test]
    fn display_url_drops_userinfo_query_and_fragment() {
        assert_eq!(
            display_url("https://user:pa55@mcp.example.com:8443/mcp?token=abc#frag"),
            "https://mcp.example.com:8443/mcp"
        );
        assert_eq!(display_url("http://host?apikey=1"), "http://host");
        assert_eq!(display_url("http://h/p@x"), "http://h/p@x");
        assert_eq!(display_url("not a url?k=v"), "not a url");
    }
}
