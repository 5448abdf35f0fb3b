//! Golden tests over `tests/fixtures/anthropic/` (see its README): request translation, stream
//! conversion and non-stream conversion, one fixture per case. `UPDATE_GOLDEN=1` rewrites the
//! expected files (review the diff by hand before committing).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::request;
use super::response::Reply;
use super::stream::StreamMachine;
use crate::api::openai::{Message, Tool, ToolImage};
use crate::backend::golden::{self, check, error_json, report, turn_json};
use crate::backend::{Error, TurnRequest};
use crate::sse_codec::SseReader;

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/anthropic")
        .join(sub)
}

/// The fixture cases of `sub` with a given extension (at least `min`).
fn cases(sub: &str, ext: &str, min: usize) -> Vec<PathBuf> {
    golden::cases(&dir(sub), ext, min)
}

/// Replay a recorded stream through the SSE parser and the state machine.
fn replay(sse: &str) -> (Vec<String>, Result<Reply, Error>) {
    let mut reader = SseReader::new(sse.as_bytes(), 1 << 20);
    let mut machine = StreamMachine::new();
    let mut deltas = Vec::new();
    while let Some(ev) = reader.next_event().unwrap() {
        match machine.feed(ev.event.as_deref().unwrap_or(""), &ev.data) {
            Ok(Some(text)) => deltas.push(text),
            Ok(None) => {}
            Err(e) => return (deltas, Err(e)),
        }
    }
    (deltas, machine.finish())
}

#[test]
fn golden_streams() {
    let mut failures = Vec::new();
    for case in cases("stream", ".sse", 12) {
        let sse = fs::read_to_string(&case).unwrap();
        let (deltas, reply) = replay(&sse);
        let outcome = match &reply {
            Ok(r) => {
                let turn = r.to_turn();
                // The text given to the sink is exactly the turn's content.
                if deltas.concat() != turn.content {
                    failures.push(format!("{}: deltas differ from content", case.display()));
                }
                json!({"deltas": deltas, "turn": turn_json(&turn)})
            }
            Err(e) => json!({"deltas": deltas, "error": error_json(e)}),
        };
        failures.extend(check(&case, &outcome));
        // Where the same message exists in non-streaming form, both paths must agree.
        let twin = dir("response").join(case.with_extension("json").file_name().unwrap());
        if let (Ok(r), Ok(text)) = (&reply, fs::read_to_string(&twin)) {
            let body: Value = serde_json::from_str(&text).unwrap();
            let non_stream = Reply::from_json(&body).unwrap();
            if non_stream.content != r.content || non_stream.to_turn() != r.to_turn() {
                failures.push(format!(
                    "{}: stream and non-stream disagree\n{:#?}\n{:#?}",
                    case.display(),
                    r.content,
                    non_stream.content
                ));
            }
        }
    }
    report(failures);
}

#[test]
fn golden_responses() {
    let mut failures = Vec::new();
    for case in cases("response", ".json", 8) {
        let body: Value = serde_json::from_str(&fs::read_to_string(&case).unwrap()).unwrap();
        let outcome = match Reply::from_json(&body) {
            Ok(r) => json!({"turn": turn_json(&r.to_turn())}),
            Err(e) => json!({"error": error_json(&e)}),
        };
        failures.extend(check(&case, &outcome));
    }
    report(failures);
}

/// A fixture message: OpenAI JSON plus the loop-only `_provider_state`, `_tool_error` and
/// `_tool_images` fields, which are never (de)serialized on the wire.
fn fixture_message(v: &Value) -> Message {
    let mut obj = v.as_object().unwrap().clone();
    let state = obj.remove("_provider_state");
    let error = obj.remove("_tool_error");
    let images = obj.remove("_tool_images");
    let mut m: Message = serde_json::from_value(Value::Object(obj)).unwrap();
    m.provider_state = state;
    m.tool_error = error == Some(Value::Bool(true));
    m.tool_images = images
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|i| ToolImage {
            media_type: i["media_type"].as_str().unwrap().into(),
            data: i["data"].as_str().unwrap().into(),
        })
        .collect();
    m
}

#[test]
fn golden_requests() {
    let mut failures = Vec::new();
    for case in cases("request", ".json", 9) {
        let input: Value = serde_json::from_str(&fs::read_to_string(&case).unwrap()).unwrap();
        let messages: Vec<Message> = input["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(fixture_message)
            .collect();
        let tools: Vec<Tool> = serde_json::from_value(input["tools"].clone()).unwrap();
        let params: Map<String, Value> = serde_json::from_value(input["params"].clone()).unwrap();
        let extra: Map<String, Value> =
            serde_json::from_value(input["extra_body"].clone()).unwrap();
        let tool_choice = Some(&input["tool_choice"]).filter(|v| !v.is_null());
        let req = TurnRequest {
            model: input["model"].as_str().unwrap(),
            messages: &messages,
            tools: &tools,
            tool_choice,
            final_round: input["final_round"].as_bool().unwrap(),
            params: &params,
            extra_body: &extra,
            stream: input["stream"].as_bool().unwrap(),
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(60),
        };
        let body = request::build(&req, input["prompt_caching"].as_bool().unwrap());
        failures.extend(check(&case, &body));
    }
    report(failures);
}
