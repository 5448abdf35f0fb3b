//! Replays every seed and saved regression input through the fuzz targets' bodies, on stable
//! and without libFuzzer (`cargo test --no-default-features`), plus the repository's own
//! fixtures (recorded Anthropic and Responses API streams, example configs) at several read sizes. A crash found
//! by `make fuzz` is kept under `regressions/<target>/` and so stays tested here.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.file_name().is_some_and(|n| n != ".keep") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Seeds, regressions and (when present) the local libFuzzer corpus of one target.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let mut n = 0;
    for dir in ["seeds", "regressions", "corpus"] {
        for f in files(&here().join(dir).join(target)) {
            let data = std::fs::read(&f).unwrap();
            eprintln!("{target}: {}", f.display());
            run(&data);
            n += 1;
        }
    }
    n
}

/// Repository fixtures, each with a few leading "read size" bytes.
fn fixtures(dir: &str, ext: &str, run: fn(&[u8])) -> usize {
    let mut n = 0;
    for f in files(&here().join("..").join(dir)) {
        if f.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        let body = std::fs::read(&f).unwrap();
        for size in [0u8, 1, 6, 63] {
            run(&[&[size][..], &body].concat());
        }
        n += 1;
    }
    n
}

#[test]
fn sse_codec_inputs() {
    assert!(replay("sse_codec", aiproxy_fuzz::sse_codec) >= 3);
    assert!(
        fixtures(
            "tests/fixtures/anthropic/stream",
            "sse",
            aiproxy_fuzz::sse_codec
        ) >= 5
    );
}

#[test]
fn jsonrpc_inputs() {
    assert!(replay("jsonrpc", aiproxy_fuzz::jsonrpc) >= 4);
}

#[test]
fn anthropic_stream_inputs() {
    assert!(replay("anthropic_stream", aiproxy_fuzz::anthropic_stream) >= 3);
    assert!(
        fixtures(
            "tests/fixtures/anthropic/stream",
            "sse",
            aiproxy_fuzz::anthropic_stream
        ) >= 5
    );
}

#[test]
fn openai_answer_inputs() {
    assert!(replay("openai_answer", aiproxy_fuzz::openai_answer) >= 3);
}

#[test]
fn config_inputs() {
    assert!(replay("config", aiproxy_fuzz::config) >= 2);
    for f in files(&here().join("../tests/fixtures/config"))
        .into_iter()
        .chain([here().join("../config.example.yaml")])
    {
        aiproxy_fuzz::config(&std::fs::read(&f).unwrap());
    }
}

#[test]
fn http_head_inputs() {
    assert!(replay("http_head", aiproxy_fuzz::http_head) >= 4);
}

#[test]
fn http_chunked_inputs() {
    assert!(replay("http_chunked", aiproxy_fuzz::http_chunked) >= 3);
}

#[test]
fn request_body_inputs() {
    assert!(replay("request_body", aiproxy_fuzz::request_body) >= 3);
}

#[test]
fn responses_stream_inputs() {
    assert!(replay("responses_stream", aiproxy_fuzz::responses_stream) >= 4);
    assert!(
        fixtures(
            "tests/fixtures/openai_responses/stream",
            "sse",
            aiproxy_fuzz::responses_stream
        ) >= 5
    );
}

#[test]
fn responses_request_inputs() {
    assert!(replay("responses_request", aiproxy_fuzz::responses_request) >= 4);
}
