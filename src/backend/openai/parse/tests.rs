//! Unit tests of the OpenAI answer and stream-chunk decoding.
use super::*;
use serde_json::json;

impl StreamState {
    fn feed_value(&mut self, chunk: &Value) -> Result<Option<String>, Error> {
        Ok(self.feed(&chunk.to_string())?.map(str::to_string))
    }
}

fn feed_all(chunks: &[Value]) -> (Vec<String>, Turn) {
    let mut st = StreamState::default();
    let mut deltas = Vec::new();
    for c in chunks {
        if let Some(d) = st.feed_value(c).unwrap() {
            deltas.push(d);
        }
    }
    (deltas, st.into_turn())
}

#[test]
fn non_stream_text_usage_and_details() {
    let body = json!({"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}],
        "usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4},
                 "completion_tokens_details":{"reasoning_tokens":2}}});
    let t = parse_completion(body.to_string().as_bytes()).unwrap();
    assert_eq!(t.content, "hi");
    assert_eq!(t.finish_reason, FinishReason::Length);
    assert_eq!(
        t.usage,
        Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
            cached_tokens: 4,
            cache_creation_tokens: 0,
            reasoning_tokens: 2
        }
    );
}

#[test]
fn non_stream_tool_calls_defaults() {
    let body = json!({"choices":[{"message":{"content":null,"tool_calls":[
        {"type":"function","function":{"name":"a__f","arguments":""}},
        {"id":"x","function":{"name":"a__g","arguments":{"k":1}}},
        {"id":"y","function":{"arguments":"{}"}}]},"finish_reason":"stop"}]});
    let t = parse_completion(body.to_string().as_bytes()).unwrap();
    assert_eq!(t.content, "");
    assert_eq!(
        t.tool_calls,
        vec![
            ToolCall::new("call_0", "a__f", "{}"),
            ToolCall::new("x", "a__g", r#"{"k":1}"#)
        ]
    );
    // "stop" beside tool calls is read as tool_calls; usage absent → zeros.
    assert_eq!(t.finish_reason, FinishReason::ToolCalls);
    assert_eq!(t.usage, Usage::default());
}

#[test]
fn non_stream_failures() {
    let e = parse_completion(b"{\"choices\": [").unwrap_err();
    assert!(
        matches!(e, Error::Protocol(ref m) if m.contains("{\"choices\": [")),
        "{e}"
    );
    let e = parse_completion(b"{\"object\":\"x\"}").unwrap_err();
    assert!(
        matches!(e, Error::Protocol(ref m) if m.contains("no choices")),
        "{e}"
    );
    let e = parse_completion(br#"{"error":{"message":"quota","code":429}}"#).unwrap_err();
    assert_eq!(
        e,
        Error::Status {
            status: 429,
            message: "quota".into(),
            retry_after: None
        }
    );
    let e = parse_completion(br#"{"error":"boom"}"#).unwrap_err();
    assert_eq!(e, Error::Protocol("upstream error: boom".into()));
}

#[test]
fn stream_text_deltas_and_final_usage_chunk() {
    let (deltas, t) = feed_all(&[
        json!({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}),
        json!({"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}),
        json!({"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}),
        json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
        json!({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}),
    ]);
    assert_eq!(deltas, ["Hel", "lo"]);
    assert_eq!(t.content, "Hello");
    assert_eq!(t.finish_reason, FinishReason::Stop);
    assert_eq!((t.usage.prompt_tokens, t.usage.completion_tokens), (5, 2));
}

#[test]
fn stream_tool_calls_split_arguments_by_index() {
    let (_, t) = feed_all(&[
        json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c0","type":"function","function":{"name":"s__add","arguments":""}}]}}]}),
        json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c1","type":"function","function":{"name":"s__echo","arguments":"{\"te"}}]}}]}),
        json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":2,"}}]}}]}),
        json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"b\":3}"}}]}}]}),
        json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"xt\":\"hi\"}"}}]}}]}),
        json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
    ]);
    assert_eq!(
        t.tool_calls,
        vec![
            ToolCall::new("c0", "s__add", r#"{"a":2,"b":3}"#),
            ToolCall::new("c1", "s__echo", r#"{"text":"hi"}"#)
        ]
    );
    assert_eq!(t.finish_reason, FinishReason::ToolCalls);
}

#[test]
fn stream_tool_call_indices_are_mapped_and_capped() {
    // Huge and sparse indices allocate nothing per index value; distinct calls are capped.
    let mut s = StreamState::default();
    let calls: Vec<Value> = (0..MAX_STREAM_CALLS as u64)
        .map(|i| json!({"index": u64::MAX - i, "function": {"name": "f"}}))
        .collect();
    s.feed_value(&json!({"choices":[{"delta":{"tool_calls": calls}}]}))
        .unwrap();
    assert_eq!(s.calls.len(), MAX_STREAM_CALLS);
    let more =
        json!({"choices":[{"delta":{"tool_calls":[{"index": 7, "function": {"name": "g"}}]}}]});
    assert!(matches!(s.feed_value(&more), Err(Error::Protocol(_))));
    let again = json!({"choices":[{"delta":{"tool_calls":[{"index": u64::MAX, "function": {"arguments": "{}"}}]}}]});
    assert!(s.feed_value(&again).is_ok(), "a known index still appends");
}

#[test]
fn stream_llama_cpp_repeats_names_ids_and_sends_nulls() {
    // As llama-cpp-python 0.3.36 streams: id/type/name in every delta, a legacy
    // `function_call`, explicit nulls, no usage, and no index on the choice.
    let chunk = |args: &str| {
        json!({"choices":[{"delta":{"role":null,"content":null,
            "function_call":{"name":"get_weather","arguments":args},
            "tool_calls":[{"index":0,"id":"call_abc","type":"function",
                "function":{"name":"get_weather","arguments":args}}]},
            "finish_reason":null,"logprobs":null}]})
    };
    let (deltas, t) = feed_all(&[
        chunk("{\"city\""),
        chunk(": \"Pa"),
        chunk("ris\"}"),
        json!({"choices":[{"delta":{"content":null,"tool_calls":null},"finish_reason":"tool_calls"}]}),
    ]);
    assert!(deltas.is_empty());
    assert_eq!(
        t.tool_calls,
        vec![ToolCall::new(
            "call_abc",
            "get_weather",
            r#"{"city": "Paris"}"#
        )]
    );
    assert_eq!(t.usage, Usage::default());
}

#[test]
fn stream_missing_ids_indices_and_empty_arguments() {
    let (_, t) = feed_all(&[
        json!({"choices":[{"delta":{"tool_calls":[{"function":{"name":"a__x"}},{"function":{"name":"a__y","arguments":null}}]}}]}),
        json!({"choices":[{"delta":{"tool_calls":[{"index":5,"function":{"arguments":"{}"}}]},"finish_reason":"tool_calls"}]}),
    ]);
    // The nameless fragment at index 5 is dropped; ids default to call_<index>.
    assert_eq!(
        t.tool_calls,
        vec![
            ToolCall::new("call_0", "a__x", "{}"),
            ToolCall::new("call_1", "a__y", "{}")
        ]
    );
}

#[test]
fn stream_error_chunk_and_unfinished_state() {
    let mut st = StreamState::default();
    assert!(!st.finished());
    st.feed_value(&json!({"choices":[{"delta":{"content":"a"}}]}))
        .unwrap();
    assert!(!st.finished());
    let e = st
        .feed_value(&json!({"error":{"message":"overloaded","type":"server_error"}}))
        .unwrap_err();
    assert_eq!(e, Error::Protocol("upstream error: overloaded".into()));
    let e = st
        .feed_value(&json!({"error":{"message":"slow down","code":"429"}}))
        .unwrap_err();
    assert!(matches!(e, Error::Status { status: 429, .. }));
}

#[test]
fn stream_content_leaves_are_read_leniently() {
    let (deltas, t) = feed_all(&[
        json!({"choices":[{"delta":{"content":"line\n\"q\" é"}}]}),
        json!({"choices":[{"delta":{"content":[{"type":"text","text":"a"},7,{"text":"b"}]}}]}),
        json!({"choices":[{"delta":{"content":{"text":"not a part list"},"tool_calls":{}}}]}),
        json!({"choices":[{"delta":{"content":42}}],"usage":"n/a"}),
        json!({"choices":[{"index":1,"delta":{"content":"other choice"}},
                          {"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]}),
    ]);
    assert_eq!(deltas, ["line\n\"q\" é", "ab", "!"]);
    assert_eq!(t.content, "line\n\"q\" éab!");
    assert_eq!(t.finish_reason, FinishReason::Stop);
    // A container of the wrong kind is a protocol error, with the chunk quoted.
    let e = StreamState::default()
        .feed(r#"{"choices":{"0":1}}"#)
        .unwrap_err();
    assert!(
        matches!(e, Error::Protocol(ref m) if m.contains("invalid JSON in stream") && m.contains("choices")),
        "{e}"
    );
}

#[test]
fn stream_total_size_is_capped() {
    let mut st = StreamState::default();
    let big = "x".repeat(MAX_TURN_BYTES / 2 + 1);
    st.feed_value(&json!({"choices":[{"delta":{"content":big}}]}))
        .unwrap();
    let e = st
        .feed_value(&json!({"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":big}}]}}]}))
        .unwrap_err();
    assert_eq!(e, Error::TooLarge);
}
