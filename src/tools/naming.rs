//! Exposed tool names and tool filters (docs/agent-loop.md#tool-names).
//!
//! An MCP tool is offered to the model as `<server>__<tool>`, with characters outside
//! `[A-Za-z0-9_-]` replaced by `_`, at most 64 characters (the OpenAI function-name rule). A name
//! that is too long, or that collides with another exposed name, gets a short hash suffix of
//! the ORIGINAL server and tool names, so the same tool gets the same name in every request and
//! after restarts, whatever order the servers answer in.

use std::collections::HashMap;

/// The longest function name upstream APIs accept.
pub const MAX_NAME: usize = 64;
const SUFFIX_LEN: usize = 9; // "_" + 8 hex digits

pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The plain exposed name (before collision handling).
pub fn base_name(server: &str, tool: &str) -> String {
    let name = format!("{}__{}", sanitize(server), sanitize(tool));
    if name.len() > MAX_NAME {
        hashed_name(&name, server, tool)
    } else {
        name
    }
}

/// `name` cut to fit, plus `_` and 8 hex digits of a stable hash of the original names.
pub fn hashed_name(name: &str, server: &str, tool: &str) -> String {
    let keep = name.len().min(MAX_NAME - SUFFIX_LEN);
    format!("{}_{:08x}", &name[..keep], fnv1a(server, tool) as u32)
}

/// FNV-1a over `server \0 tool`: tiny, stable across releases and platforms (unlike std's
/// `DefaultHasher`, whose algorithm may change).
fn fnv1a(server: &str, tool: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in server.bytes().chain([0u8]).chain(tool.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Assign exposed names to `(server, tool)` pairs, in order. Every member of a collision group
/// gets a hash suffix (not just the later ones), so names don't depend on listing order.
/// Linear in the number of pairs (a hostile server may list tens of thousands of tools).
pub fn assign_names(pairs: &[(&str, &str)]) -> Vec<String> {
    let base: Vec<String> = pairs.iter().map(|(s, t)| base_name(s, t)).collect();
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(base.len());
    for name in &base {
        *seen.entry(name.as_str()).or_default() += 1;
    }
    base.iter()
        .zip(pairs)
        .map(|(name, (s, t))| {
            let collides = seen.get(name.as_str()).is_some_and(|&n| n > 1);
            if collides {
                hashed_name(name, s, t)
            } else {
                name.clone()
            }
        })
        .collect()
}

/// `*` matches any run of characters (including none); everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A tool is offered when it matches `allowed` (or `allowed` is empty) and no `denied` pattern.
/// Patterns are matched against the exposed name and against the plain `server__tool` form, so
/// `*__add` still matches a tool whose exposed name got a hash suffix.
pub fn tool_allowed(names: &[&str], allowed: &[String], denied: &[String]) -> bool {
    let matches = |p: &String| names.iter().any(|n| glob_match(p, n));
    (allowed.is_empty() || allowed.iter().any(matches)) && !denied.iter().any(matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_and_namespaces() {
        assert_eq!(base_name("demo", "add"), "demo__add");
        assert_eq!(
            base_name("my.server", "get weather/now"),
            "my_server__get_weather_now"
        );
        assert_eq!(base_name("a-b", "c_d"), "a-b__c_d");
    }

    #[test]
    fn long_names_are_cut_with_a_stable_hash() {
        let tool = "x".repeat(100);
        let a = base_name("srv", &tool);
        assert_eq!(a.len(), MAX_NAME);
        assert_eq!(a, base_name("srv", &tool), "stable");
        assert!(a.starts_with("srv__xxx"));
        let b = base_name("srv", &format!("{tool}y"));
        assert_ne!(a, b, "different originals get different names");
    }

    #[test]
    fn collisions_get_suffixes_independent_of_order() {
        let pairs = [("s", "a.b"), ("s", "a_b"), ("s", "c")];
        let names = assign_names(&pairs);
        assert_eq!(names[2], "s__c");
        assert_ne!(names[0], names[1]);
        assert!(names[0].starts_with("s__a_b_") && names[0].len() == "s__a_b".len() + 9);
        let reversed = assign_names(&[pairs[1], pairs[0], pairs[2]]);
        assert_eq!(reversed[0], names[1]);
        assert_eq!(reversed[1], names[0]);
    }

    #[test]
    fn globs() {
        assert!(glob_match("demo__*", "demo__add"));
        assert!(glob_match("*__add", "demo__add"));
        assert!(glob_match("*", ""));
        assert!(glob_match("d*o__a*d", "demo__add"));
        assert!(!glob_match("demo__a", "demo__add"));
        assert!(!glob_match("x*", "demo"));
        assert!(glob_match("demo__add", "demo__add"));
    }

    #[test]
    fn allow_and_deny() {
        let allow = vec!["demo__*".to_string()];
        let deny = vec!["*__sleep".to_string()];
        assert!(tool_allowed(&["demo__add"], &allow, &deny));
        assert!(!tool_allowed(&["demo__sleep"], &allow, &deny));
        assert!(!tool_allowed(&["other__add"], &allow, &deny));
        assert!(tool_allowed(&["other__add"], &[], &deny));
        let suffixed = ["demo__sleep_d4e8e2df", "demo__sleep"];
        assert!(
            !tool_allowed(&suffixed, &allow, &deny),
            "deny sees through the suffix"
        );
    }
}
