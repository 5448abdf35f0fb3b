//! What the mock model reads in a user message: requests the demo tools can serve
//! (`a + b`, `echo …`, `uppercase …`, `sleep <ms> [xN]`), several of them when joined by
//! " and ". Pure string work; no I/O.

use serde_json::{Number, Value, json};

/// Parallel sleeps one request may ask for (`sleep 100 x4`).
const MAX_SLEEP_COPIES: usize = 16;

/// One thing the user asked for that a demo tool can do.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Intent {
    Add(Number, Number),
    Echo(String),
    Uppercase(String),
    /// `count` parallel calls of `sleep {ms}`.
    Sleep {
        ms: u64,
        count: usize,
    },
}

impl Intent {
    /// The MCP tool name (the part after the last `__` of the exposed name).
    pub(super) fn tool(&self) -> &'static str {
        match self {
            Intent::Add(..) => "add",
            Intent::Echo(_) => "echo",
            Intent::Uppercase(_) => "uppercase",
            Intent::Sleep { .. } => "sleep",
        }
    }

    /// The tool arguments, and how many identical calls to make.
    pub(super) fn arguments(&self) -> (Value, usize) {
        match self {
            Intent::Add(a, b) => (json!({"a": a, "b": b}), 1),
            Intent::Echo(t) | Intent::Uppercase(t) => (json!({"text": t}), 1),
            Intent::Sleep { ms, count } => (json!({"ms": ms}), *count),
        }
    }
}

const KEYWORDS: [&str; 5] = ["add", "echo", "uppercase", "shout", "sleep"];
const FILLERS: [&str; 6] = ["then", "also", "please", "and", "now", "finally"];

/// Every intent in `text`, in order.
pub(super) fn parse(text: &str) -> Vec<Intent> {
    segments(text)
        .iter()
        .filter_map(|s| parse_segment(s))
        .collect()
}

/// Split at " and " where the next part is a request of its own (it starts with a tool
/// keyword or holds a sum), so "add 2 and 3" and "echo salt and pepper" stay whole.
fn segments(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in split_ci(text, " and ") {
        let starts_new =
            out.is_empty() || leading_keyword(part).is_some() || find_sum(part).is_some();
        match out.last_mut() {
            Some(last) if !starts_new => {
                last.push_str(" and ");
                last.push_str(part);
            }
            _ => out.push(part.to_string()),
        }
    }
    out
}

/// Split on an ASCII separator, case-insensitively.
fn split_ci<'a>(text: &'a str, sep: &str) -> Vec<&'a str> {
    let lower = text.to_ascii_lowercase();
    let mut parts = Vec::new();
    let mut start = 0;
    while let Some(i) = lower[start..].find(sep) {
        parts.push(&text[start..start + i]);
        start += i + sep.len();
    }
    parts.push(&text[start..]);
    parts
}

/// The tool keyword a segment starts with (after filler words), and the text after it.
fn leading_keyword(seg: &str) -> Option<(&'static str, &str)> {
    let mut rest = seg.trim_start();
    loop {
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ':' || c == ',')
            .unwrap_or(rest.len());
        let word = rest[..end].to_ascii_lowercase();
        let after = &rest[end..];
        if let Some(k) = KEYWORDS.iter().find(|k| **k == word) {
            return Some((k, after));
        }
        if !FILLERS.contains(&word.as_str()) || after.is_empty() {
            return None;
        }
        rest = after.trim_start();
    }
}

fn parse_segment(seg: &str) -> Option<Intent> {
    // A leading keyword wins, so "echo 1 + 1" echoes; otherwise a sum anywhere is an add.
    let Some((keyword, rest)) = leading_keyword(seg) else {
        return find_sum(seg).map(|(a, b)| Intent::Add(a, b));
    };
    let arg = rest
        .trim_start_matches([' ', ':', ','])
        .trim()
        .trim_matches(['"', '\''])
        .to_string();
    match keyword {
        "add" => {
            let t = tokens(rest);
            let nums: Vec<Number> = t.iter().filter_map(|w| number(w)).collect();
            (nums.len() >= 2).then(|| Intent::Add(nums[0].clone(), nums[1].clone()))
        }
        "echo" if !arg.is_empty() => Some(Intent::Echo(arg)),
        "uppercase" | "shout" if !arg.is_empty() => Some(Intent::Uppercase(arg)),
        "sleep" => parse_sleep(&tokens(rest)),
        _ => None,
    }
}

/// `sleep 200`, `sleep 200ms`, `sleep 200 ms x3`, `sleep 200 x 3`.
fn parse_sleep(t: &[String]) -> Option<Intent> {
    let first = t.first()?;
    let ms = first.trim_end_matches("ms").parse().ok()?;
    let mut count = 1;
    let mut rest = t[1..].iter().skip_while(|w| *w == "ms");
    if let Some(w) = rest.next() {
        let n = match w.strip_prefix('x') {
            Some("") => rest.next().and_then(|n| n.parse().ok()),
            Some(n) => n.parse().ok(),
            None => None,
        };
        count = n.unwrap_or(1);
    }
    Some(Intent::Sleep {
        ms,
        count: count.clamp(1, MAX_SLEEP_COPIES),
    })
}

/// Lowercased words with `+` split out and surrounding punctuation removed.
fn tokens(s: &str) -> Vec<String> {
    s.replace('+', " + ")
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| matches!(c, '?' | '!' | ',' | ';' | ':' | '(' | ')'))
                .trim_end_matches('.')
                .to_ascii_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

fn number(w: &str) -> Option<Number> {
    if w.contains(|c: char| c.is_ascii_digit()) {
        if let Ok(i) = w.parse::<i64>() {
            return Some(i.into());
        }
        return w.parse::<f64>().ok().and_then(Number::from_f64);
    }
    None
}

/// `a + b` or `a plus b` anywhere in the text.
fn find_sum(s: &str) -> Option<(Number, Number)> {
    let t = tokens(s);
    t.windows(3).find_map(|w| {
        if w[1] == "+" || w[1] == "plus" {
            Some((number(&w[0])?, number(&w[2])?))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(a: i64, b: i64) -> Intent {
        Intent::Add(a.into(), b.into())
    }

    #[test]
    fn arithmetic_forms() {
        assert_eq!(parse("what is 2 + 3?"), [add(2, 3)]);
        assert_eq!(parse("What is 2+3"), [add(2, 3)]);
        assert_eq!(parse("10 plus -4"), [add(10, -4)]);
        assert_eq!(parse("please add 7 and 8."), [add(7, 8)]);
        assert_eq!(parse("add 1 to 41"), [add(1, 41)]);
        let f = parse("1.5 + 2");
        assert_eq!(f, [Intent::Add(Number::from_f64(1.5).unwrap(), 2.into())]);
        assert!(parse("add them up").is_empty());
        assert!(parse("2 + two").is_empty());
    }

    #[test]
    fn text_tools_keep_original_case_and_inner_and() {
        assert_eq!(
            parse("echo Hello World"),
            [Intent::Echo("Hello World".into())]
        );
        assert_eq!(
            parse("Echo: salt and pepper"),
            [Intent::Echo("salt and pepper".into())]
        );
        assert_eq!(
            parse("shout hi there"),
            [Intent::Uppercase("hi there".into())]
        );
        assert_eq!(parse("uppercase 'abc'"), [Intent::Uppercase("abc".into())]);
        assert!(parse("echo").is_empty());
        assert_eq!(parse("echo 1 + 1"), [Intent::Echo("1 + 1".into())]);
        assert!(parse("tell me about echoes").is_empty());
    }

    #[test]
    fn several_requests_joined_by_and() {
        assert_eq!(
            parse("what is 2 + 3 and echo hi and then uppercase yo"),
            [
                add(2, 3),
                Intent::Echo("hi".into()),
                Intent::Uppercase("yo".into())
            ]
        );
        assert_eq!(
            parse("echo a AND add 2 and 3"),
            [Intent::Echo("a".into()), add(2, 3)]
        );
    }

    #[test]
    fn sleep_forms() {
        let s = |ms, count| Intent::Sleep { ms, count };
        assert_eq!(parse("sleep 200"), [s(200, 1)]);
        assert_eq!(parse("sleep 200ms x3"), [s(200, 3)]);
        assert_eq!(parse("sleep 50 ms x 4"), [s(50, 4)]);
        assert_eq!(parse("sleep 5 x999"), [s(5, MAX_SLEEP_COPIES)]);
        assert!(parse("sleep well").is_empty());
        assert_eq!(s(5, 2).arguments(), (json!({"ms":5}), 2));
    }
}
