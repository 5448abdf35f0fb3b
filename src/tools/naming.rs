//! Exposed tool names and tool filters (docs/agent-loop.md#tool-names).
//!
//! An MCP tool is offered to the model as `<server>__<tool>`, with characters outside
//! `[A-Za-z0-9_-]` replaced by `_`, at most 64 characters (the OpenAI function-name rule).
//! The tool's own name is what tells the model what it does, so it is kept whole wherever it
//! fits: a name that is too long has its SERVER part shortened and marked with 8 hex digits of
//! a hash of the original server name (`<server prefix>_<hash>__<tool>`); two servers whose
//! names sanitize alike get the same treatment. Only when the tool's own name does not fit (or
//! two tools of one server collide) is the whole name cut and suffixed with a hash of the
//! original server and tool names. Hashes make the same tool get the same name in every
//! request and after restarts, whatever order the servers answer in; the tool set adds the
//! server's name to the description of every name that is not the plain form.

use std::collections::HashMap;

/// The longest function name upstream APIs accept.
pub const MAX_NAME: usize = 64;
const SUFFIX_LEN: usize = 9; // "_" + 8 hex digits

pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_sanitized(&mut out, s);
    out
}

fn push_sanitized(out: &mut String, s: &str) {
    out.extend(s.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    }));
}

/// The plain `<server>__<tool>` form, sanitized (possibly too long). Built in one string: it
/// is worked out for every tool of every request.
pub fn plain_name(server: &str, tool: &str) -> String {
    let mut name = String::with_capacity(server.len() + 2 + tool.len());
    push_sanitized(&mut name, server);
    name.push_str("__");
    push_sanitized(&mut name, tool);
    name
}

/// The exposed name before collision handling: the plain form when it fits, else the server
/// part shortened ([`server_hashed`]), else the whole name cut ([`hashed_name`]).
pub fn base_name(server: &str, tool: &str) -> String {
    let name = plain_name(server, tool);
    if name.len() <= MAX_NAME {
        return name;
    }
    server_hashed(server, tool).unwrap_or_else(|| hashed_name(&name, server, tool))
}

/// `<server prefix>_<hash of server>__<tool>` within the limit, keeping the tool's own name
/// whole; `None` when the tool's name leaves no room for at least one server character.
pub fn server_hashed(server: &str, tool: &str) -> Option<String> {
    let (s, t) = (sanitize(server), sanitize(tool));
    let room = MAX_NAME.checked_sub(t.len() + 2 + SUFFIX_LEN)?;
    if room == 0 {
        return None;
    }
    // Sanitized names are ASCII: any byte index is a char boundary.
    let keep = s.len().min(room);
    Some(format!(
        "{}_{:08x}__{t}",
        &s[..keep],
        fnv1a(server, "") as u32
    ))
}

/// Whether an exposed name lies under `server`'s prefix (`<server>__…`): a call to such a
/// name while the server is down is that server's, not a made-up tool.
pub fn under_server(name: &str, server: &str) -> bool {
    let s = sanitize(server);
    if name
        .strip_prefix(&s)
        .is_some_and(|rest| rest.starts_with("__"))
    {
        return true;
    }
    // The shortened form: `<prefix of server>_<hash of server>__…`.
    let marker = format!("_{:08x}__", fnv1a(server, "") as u32);
    name.find(&marker)
        .is_some_and(|i| i > 0 && name.get(..i).is_some_and(|p| s.starts_with(p)))
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
/// is renamed (not just the later ones), so names don't depend on listing order: first by a
/// hash of its server name in the server part (the tool's name stays whole: this separates
/// servers whose names sanitize alike), and where that still collides (two tools of one
/// server, e.g. `a.b` and `a_b`) by a hash suffix of server and tool. Linear in the number of
/// pairs (a hostile server may list tens of thousands of tools).
pub fn assign_names(pairs: &[(&str, &str)]) -> Vec<String> {
    let base: Vec<String> = pairs.iter().map(|(s, t)| base_name(s, t)).collect();
    let counts = |names: &[String]| {
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(names.len());
        for name in names {
            *seen.entry(name.clone()).or_default() += 1;
        }
        seen
    };
    let seen = counts(&base);
    let collides =
        |seen: &HashMap<String, usize>, name: &str| seen.get(name).is_some_and(|&n| n > 1);
    let second: Vec<String> = base
        .iter()
        .zip(pairs)
        .map(|(name, (s, t))| {
            if collides(&seen, name) {
                server_hashed(s, t).unwrap_or_else(|| hashed_name(name, s, t))
            } else {
                name.clone()
            }
        })
        .collect();
    let seen = counts(&second);
    second
        .iter()
        .zip(&base)
        .zip(pairs)
        .map(|((name, first), (s, t))| {
            if collides(&seen, name) {
                hashed_name(first, s, t)
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
    fn long_server_names_are_shortened_first_keeping_the_tool_whole() {
        let server = "a".repeat(50);
        let name = base_name(&server, "get-resource-links");
        assert_eq!(name.len(), MAX_NAME);
        assert!(name.ends_with("__get-resource-links"), "{name}");
        assert!(name.starts_with("aaaa"), "{name}");
        assert_eq!(name, base_name(&server, "get-resource-links"), "stable");
        // Shortened with the server's hash: the same for every shortened tool of it.
        let other = base_name(&server, "get-structured-content");
        assert_eq!(
            other.split("__").next().unwrap().rsplit('_').next(),
            name.split("__").next().unwrap().rsplit('_').next(),
            "{other} / {name}"
        );
        // Servers sharing a long prefix stay apart.
        assert_ne!(
            base_name(&format!("{server}x"), "echo"),
            base_name(&format!("{server}y"), "echo")
        );
    }

    #[test]
    fn names_under_a_server() {
        assert!(under_server("demo__add", "demo"));
        assert!(!under_server("demox__add", "demo"));
        assert!(!under_server("other__add", "demo"));
        let long = "s".repeat(60);
        assert!(under_server(&base_name(&long, "tool"), &long));
        assert!(!under_server(&base_name(&long, "tool"), &"t".repeat(60)));
    }

    #[test]
    fn servers_that_sanitize_alike_keep_the_tool_name_whole() {
        let names = assign_names(&[("my.every", "echo"), ("my_every", "echo")]);
        assert_ne!(names[0], names[1]);
        for n in &names {
            assert!(n.starts_with("my_every_") && n.ends_with("__echo"), "{n}");
        }
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
