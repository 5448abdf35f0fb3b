//! What the providers' golden tests share (`*/golden_tests.rs`): fixture cases, comparing with
//! (or, with `UPDATE_GOLDEN=1`, rewriting) their `.expected.json` files — refused when `CI` is
//! set, since a rewrite makes every case pass — and the JSON views of a turn and an error.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::backend::{Error, Turn};

/// The fixture cases of a directory with a given extension, sorted; at least `min` of them
/// (a missing fixture directory must fail, not pass vacuously).
pub(crate) fn cases(dir: &Path, ext: &str, min: usize) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.ends_with(ext) && !name.ends_with(".expected.json")
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= min,
        "expected ≥ {min} {}/*{ext} fixtures, found {}",
        dir.display(),
        out.len()
    );
    out
}

fn expected_path(case: &Path) -> PathBuf {
    let name = case.file_name().unwrap().to_str().unwrap();
    let stem = name.rsplit_once('.').unwrap().0;
    case.with_file_name(format!("{stem}.expected.json"))
}

/// Compare with (or, with UPDATE_GOLDEN, write) the expected file; returns a failure message.
pub(crate) fn check(case: &Path, actual: &Value) -> Option<String> {
    let path = expected_path(case);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        // Rewriting makes every case pass: never in CI.
        assert!(
            std::env::var_os("CI").is_none(),
            "UPDATE_GOLDEN is refused when CI is set"
        );
        fs::write(&path, pretty).unwrap();
        return None;
    }
    let want: Value = match fs::read_to_string(&path) {
        Ok(s) => serde_json::from_str(&s).unwrap(),
        Err(_) => {
            return Some(format!(
                "{}: missing expected file; got\n{pretty}",
                path.display()
            ));
        }
    };
    (want != *actual).then(|| {
        format!(
            "{}: mismatch\n--- expected\n{}\n--- actual\n{pretty}",
            path.display(),
            serde_json::to_string_pretty(&want).unwrap()
        )
    })
}

pub(crate) fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

pub(crate) fn turn_json(t: &Turn) -> Value {
    json!({
        "content": t.content,
        "tool_calls": t.tool_calls.iter().map(|c| json!({
            "id": c.id, "name": c.function.name, "arguments": c.function.arguments,
        })).collect::<Vec<_>>(),
        "finish_reason": t.finish_reason.as_str(),
        "usage": {
            "prompt_tokens": t.usage.prompt_tokens,
            "completion_tokens": t.usage.completion_tokens,
            "cached_tokens": t.usage.cached_tokens,
            "cache_creation_tokens": t.usage.cache_creation_tokens,
            "reasoning_tokens": t.usage.reasoning_tokens,
        },
        "provider_state": t.provider_state,
    })
}

pub(crate) fn error_json(e: &Error) -> Value {
    match e {
        Error::Status {
            status,
            message,
            retry_after,
        } => json!({"status": status, "message": message, "retry_after": retry_after}),
        Error::Protocol(m) => json!({"protocol": m}),
        other => json!({"other": other.to_string()}),
    }
}
