//! A small `.env` parser: `KEY=VALUE` lines, an optional `export ` prefix, single quotes
//! (literal), double quotes (with `\n`, `\t`, `\r`, `\"`, `\\` escapes), `#` comments (a whole
//! line, or after whitespace in an unquoted value) and blank lines. No interpolation and no
//! multi-line values. A bad line is an error naming its line number and never its value (the
//! file holds secrets). Pure function; no I/O.

/// The variables of a `.env` file in order (a later duplicate wins when collected into a map).
/// Errors read `LINE: message`.
pub(super) fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => line,
        };
        let n = i + 1;
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{n}: expected KEY=VALUE"));
        };
        let key = key.trim();
        if !is_var_name(key) {
            return Err(format!("{n}: invalid variable name '{key}'"));
        }
        let value = parse_value(value).map_err(|e| format!("{n}: {e}"))?;
        vars.push((key.to_string(), value));
    }
    Ok(vars)
}

fn parse_value(raw: &str) -> Result<String, &'static str> {
    let value = raw.trim_start();
    if let Some(body) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return after_quote(&body[i + 1..]).map(|()| out),
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    // Unknown escapes stay as written (Windows paths, regexes).
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                _ => out.push(c),
            }
        }
        Err("unterminated double quote")
    } else if let Some(body) = value.strip_prefix('\'') {
        let Some(end) = body.find('\'') else {
            return Err("unterminated single quote");
        };
        after_quote(&body[end + 1..]).map(|()| body[..end].to_string())
    } else {
        // `#` starts a comment only after whitespace, so `KEY=a#b` keeps its `#`.
        let mut cut = raw.len();
        let mut prev_space = false;
        for (i, c) in raw.char_indices() {
            if c == '#' && prev_space {
                cut = i;
                break;
            }
            prev_space = c.is_whitespace();
        }
        Ok(raw[..cut].trim().to_string())
    }
}

fn after_quote(rest: &str) -> Result<(), &'static str> {
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err("unexpected text after the closing quote")
    }
}

/// A variable name: a letter or `_`, then letters, digits and `_` (as in `.env` keys and
/// `${VAR}` references alike).
pub(super) fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn one(line: &str) -> String {
        let vars = pairs(line);
        assert_eq!(vars.len(), 1, "{line}");
        vars[0].1.clone()
    }

    #[test]
    fn plain_lines_comments_and_export() {
        let text = "# comment\n\nOPENAI_API_KEY=sk-abc\r\n  export ANTHROPIC_API_KEY = sk-ant  \nPROXY_API_KEY=\nexport\tLOG_LEVEL=INFO # trailing\n";
        assert_eq!(
            pairs(text),
            [
                ("OPENAI_API_KEY".to_string(), "sk-abc".to_string()),
                ("ANTHROPIC_API_KEY".into(), "sk-ant".into()),
                ("PROXY_API_KEY".into(), "".into()),
                ("LOG_LEVEL".into(), "INFO".into()),
            ]
        );
        // `export` is a prefix only when followed by whitespace.
        assert_eq!(
            pairs("exported=1"),
            [("exported".to_string(), "1".to_string())]
        );
    }

    #[test]
    fn values() {
        assert_eq!(one("A=a#b"), "a#b");
        assert_eq!(one("A=#notacomment"), "#notacomment");
        assert_eq!(one("A= # only a comment"), "");
        assert_eq!(one("A=x=y"), "x=y");
        assert_eq!(one("A='single $quoted # \\n'"), "single $quoted # \\n");
        assert_eq!(
            one("A=\"two\\nlines \\\"q\\\" \\\\ \\d\" # c"),
            "two\nlines \"q\" \\ \\d"
        );
        assert_eq!(one("A=\"  padded  \""), "  padded  ");
        assert_eq!(one("A=''"), "");
        assert_eq!(one("A=${NOT_EXPANDED}"), "${NOT_EXPANDED}");
    }

    #[test]
    fn later_duplicates_come_last() {
        assert_eq!(
            pairs("A=1\nA=2"),
            [("A".to_string(), "1".to_string()), ("A".into(), "2".into())]
        );
    }

    #[test]
    fn bad_lines_name_their_number_not_their_value() {
        let cases = [
            ("A=1\nnot a pair\n", "2: expected KEY=VALUE"),
            ("A=1\n\n# c\n1BAD=x", "4: invalid variable name '1BAD'"),
            ("MY-KEY=x", "1: invalid variable name 'MY-KEY'"),
            ("=x", "1: invalid variable name ''"),
            ("A=\"secret", "1: unterminated double quote"),
            ("A='secret", "1: unterminated single quote"),
            (
                "A='secret' tail",
                "1: unexpected text after the closing quote",
            ),
            ("export", "1: expected KEY=VALUE"),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err(), want, "{text}");
        }
    }
}
